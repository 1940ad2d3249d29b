#!/usr/bin/env python3
"""CPU peer for `scorelens ridge`: the same subspace-constrained mean shift (SCMS) on the Gaussian-smoothed data
distribution, vectorised NumPy (BLAS for the products, batched LAPACK eigh), all points moving every iteration.

One iteration, for every starting point x (blocks of --block points at a time, so the [block, N] weights fit):
  w = softmax(-|x - y_i|^2 / (2 s^2))     (|x-y|^2 = |x|^2 - 2 x.y + |y|^2: one matmul)
  m = w @ Y,  C = w @ (y_i y_i^T) - m m^T  (one matmul against the flattened outer products; data centred on
                                          their mean first, which limits the cancellation of this form)
  H = -I/s^2 + C/s^4,  E = eigenvectors of the D-d smallest eigenvalues (eigh),  x += E E^T (m - x)
Counted work per point and iteration, as for scorelens (docs/BENCHMARKS.md): N (6 D + 2 D^2) flops.

Usage: python3 benches/peers/scms_numpy.py --data DATA.npy --x X0.npy --bandwidth S --dim d --iters K [--dtype f32]
   or: python3 benches/peers/scms_numpy.py --n 100000 --points 10000 --D 2 --iters 5   (generated noisy circle)
Prints one JSON line (seconds per iteration, GFLOP/s).
"""
import argparse
import json
import time

import numpy as np


def noisy_circle(rng, n, dim, noise=0.02):
    theta = rng.uniform(0, 2 * np.pi, n)
    radius = 1 + noise * rng.standard_normal(n)
    data = noise * rng.standard_normal((n, dim))
    data[:, 0] = radius * np.cos(theta)
    data[:, 1] = radius * np.sin(theta)
    return data


def scms_iteration(x, y, y_sq, outer, sigma, ridge_dim, block):
    n, dim = y.shape
    var = sigma * sigma
    for start in range(0, x.shape[0], block):
        xb = x[start:start + block]
        logits = (2 * (xb @ y.T) - y_sq[None, :] - (xb * xb).sum(1, keepdims=True)) / (2 * var)
        logits -= logits.max(1, keepdims=True)
        w = np.exp(logits)
        w /= w.sum(1, keepdims=True)
        m = w @ y
        cov = (w @ outer).reshape(-1, dim, dim) - m[:, :, None] * m[:, None, :]
        hessian = cov / (var * var) - np.eye(dim, dtype=x.dtype) / var
        _, vectors = np.linalg.eigh(hessian)  # ascending: the first D - d columns span the normal space
        e = vectors[:, :, : dim - ridge_dim]
        step = m - xb
        x[start:start + block] = xb + np.einsum("bkj,bj->bk", e, np.einsum("bkj,bk->bj", e, step))
    return x


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data")
    p.add_argument("--x")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--points", type=int, default=10_000)
    p.add_argument("--D", type=int, default=2)
    p.add_argument("--bandwidth", type=float, default=0.1)
    p.add_argument("--dim", type=int, default=1, help="ridge dimension d")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--block", type=int, default=256)
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    a = p.parse_args()
    dtype = np.float32 if a.dtype == "f32" else np.float64
    rng = np.random.default_rng(0)
    if a.data:
        y = np.load(a.data).astype(dtype)
        x = np.load(a.x).astype(dtype)
    else:
        y = noisy_circle(rng, a.n, a.D).astype(dtype)
        x = (y[rng.integers(0, a.n, a.points)] + 0.05 * rng.standard_normal((a.points, a.D))).astype(dtype)
    # Centre on the data mean (distances and covariances do not change; the uncentred forms cancel less).
    centre = y.mean(0)
    y = y - centre
    x = x - centre
    n, dim = y.shape
    y_sq = (y * y).sum(1)
    outer = (y[:, :, None] * y[:, None, :]).reshape(n, dim * dim)
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        x = scms_iteration(x, y, y_sq, outer, a.bandwidth, a.dim, a.block)
        times.append(time.perf_counter() - t0)
    per = float(np.median(times))
    flops = x.shape[0] * n * (6 * dim + 2 * dim * dim)
    print(json.dumps({
        "peer": "numpy", "dtype": a.dtype, "numpy": np.__version__, "N": n, "B": x.shape[0], "D": dim,
        "ridge_dim": a.dim, "iterations": a.iters, "seconds_per_iteration": per, "gflops": flops / per / 1e9,
    }))


if __name__ == "__main__":
    main()
