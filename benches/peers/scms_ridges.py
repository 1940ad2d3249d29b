#!/usr/bin/env python3
"""Matrix-free ridges against the dense route and a NumPy peer, on the same data and starting points, timed here.

Data: a noisy unit circle in a random 2-plane of R^D (isotropic noise 0.05/sqrt(D) per coordinate, so the noise
norm is 0.05 whatever D), N points; B starting points near the circle. Runs, in this order:
  scorelens ridge --eigensolver dense    (D x D Hessians on the GPU, f64 eigh on the host)
  scorelens ridge --eigensolver krylov   (block Lanczos on H.V, d + 1 leading pairs, H never formed)
  NumPy dense SCMS (float64; the same step x <- x + E E^T (m - x) and the same stopping rule)
and prints one JSON line per run and one for the comparison: seconds, sweeps, peak RSS (from /usr/bin/time),
the scheduler's planned bytes (summary.json), and the largest distance between the final points of each pair.

Usage: python3 benches/peers/scms_ridges.py --scorelens target/ci/scorelens --D 256 --n 10000 --points 4
           [--peer-points 4] [--bandwidth 0.1] [--tol 1e-4] [--max-iter 50] [--skip-dense] [--work DIR]
"""
import argparse
import json
import os
import subprocess
import time

import numpy as np


def make_data(D, n, points, seed):
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((D, 2)))
    theta = rng.uniform(0, 2 * np.pi, n)
    noise = 0.05 / np.sqrt(D)
    data = np.stack([np.cos(theta), np.sin(theta)], 1) @ basis.T + noise * rng.standard_normal((n, D))
    t0 = rng.uniform(0, 2 * np.pi, points)
    radius = rng.uniform(0.9, 1.1, points)
    x0 = (radius[:, None] * np.stack([np.cos(t0), np.sin(t0)], 1)) @ basis.T
    x0 += 0.02 / np.sqrt(D) * rng.standard_normal((points, D))
    return data.astype(np.float32), x0.astype(np.float32)


def run_scorelens(binary, data_path, x_path, bandwidth, tol, max_iter, solver, out, memory):
    cmd = ["/usr/bin/time", "-f", "%M", binary, "ridge", "--data", data_path, "--bandwidth", str(bandwidth),
           "--x", x_path, "--dim", "1", "--tol", str(tol), "--max-iter", str(max_iter), "--eigensolver", solver,
           "--max-memory", memory, "-o", out]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"scorelens {solver} failed: {proc.stderr[-2000:]}")
    rss_kib = int(proc.stderr.strip().splitlines()[-1])
    summary = json.load(open(os.path.join(out, "summary.json")))
    points = np.load(os.path.join(out, "points.npy"))
    return points, {
        "run": f"scorelens {solver}", "seconds": seconds, "scms_seconds": summary["seconds"]["scms"],
        "sweeps": summary["sweeps"], "converged": summary["converged"], "points": summary["points"],
        "median_iterations": summary["median_iterations"], "peak_rss_bytes": rss_kib * 1024,
        "chosen": summary["eigensolver"]["chosen"], "eigen": summary["eigen"],
    }


def numpy_scms(data, x0, sigma, ridge_dim, tol, max_iter):
    """Dense SCMS in float64, one point at a time (the [D, D] covariance of every point is O(N D^2))."""
    y = data.astype(np.float64)
    var = sigma * sigma
    out = x0.astype(np.float64).copy()
    converged = np.zeros(len(x0), bool)
    iterations = np.zeros(len(x0), int)
    D = y.shape[1]
    for b in range(len(x0)):
        x = out[b]
        for it in range(max_iter + 1):
            diff = y - x
            logits = -(diff * diff).sum(1) / (2 * var)
            w = np.exp(logits - logits.max())
            w /= w.sum()
            shift = w @ diff  # m - x, from differences
            centred = diff - shift
            cov = (centred * w[:, None]).T @ centred
            hessian = cov / (var * var) - np.eye(D) / var
            _, vectors = np.linalg.eigh(hessian)
            e = vectors[:, : D - ridge_dim]
            normal = e @ (e.T @ (shift / var))
            ratio = np.linalg.norm(normal) / max(np.linalg.norm(shift / var), 1e-300)
            if ratio < tol:
                converged[b] = True
                break
            if it == max_iter:
                break
            x = x + var * normal
            iterations[b] += 1
        out[b] = x
    return out, converged, iterations


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scorelens", default="target/ci/scorelens")
    p.add_argument("--D", type=int, required=True)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--points", type=int, default=4)
    p.add_argument("--peer-points", type=int, default=None, help="NumPy on the first P points (default all; 0: none)")
    p.add_argument("--bandwidth", type=float, default=0.1)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--max-iter", type=int, default=50)
    p.add_argument("--max-memory", default="1GiB")
    p.add_argument("--skip-dense", action="store_true")
    p.add_argument("--work", default="/tmp/scms_ridges")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    tag = f"D{a.D}_n{a.n}_b{a.points}"
    data, x0 = make_data(a.D, a.n, a.points, seed=a.D * 1009 + a.n)
    data_path, x_path = os.path.join(a.work, f"data_{tag}.npy"), os.path.join(a.work, f"x0_{tag}.npy")
    np.save(data_path, data)
    np.save(x_path, x0)
    common = dict(D=a.D, N=a.n, B=a.points)
    results = {}
    for solver in (["krylov"] if a.skip_dense else ["dense", "krylov"]):
        pts, info = run_scorelens(a.scorelens, data_path, x_path, a.bandwidth, a.tol, a.max_iter, solver,
                                  os.path.join(a.work, f"out_{tag}_{solver}"), a.max_memory)
        results[solver] = pts
        print(json.dumps({**common, **info}), flush=True)
    peer = a.points if a.peer_points is None else a.peer_points
    if peer > 0:
        t0 = time.perf_counter()
        pts, conv, its = numpy_scms(data, x0[:peer], a.bandwidth, 1, a.tol, a.max_iter)
        seconds = time.perf_counter() - t0
        results["numpy"] = pts
        print(json.dumps({**common, "run": "numpy dense (float64)", "points": peer, "seconds": seconds,
                          "converged": int(conv.sum()), "median_iterations": float(np.median(its)),
                          "numpy": np.__version__}), flush=True)
    names = list(results)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            k = min(len(results[names[i]]), len(results[names[j]]))
            dist = np.linalg.norm(results[names[i]][:k].astype(np.float64) - results[names[j]][:k], axis=1)
            print(json.dumps({**common, "compare": f"{names[i]} vs {names[j]}", "points": k,
                              "max_distance": float(dist.max())}), flush=True)


if __name__ == "__main__":
    main()
