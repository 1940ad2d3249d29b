#!/usr/bin/env python3
"""CPU peer for benches/matmul.rs and benches/mlp_forward.rs: the same shapes in float32 NumPy (BLAS).

Prints GFLOP/s per item, so the figures sit beside criterion's (whose Melem/s are MFLOP/s there).
Run on the same machine as the criterion benches: python3 benches/peers/numpy_cpu.py
"""
import time

import numpy as np


def best_seconds(fn, repeats=5):
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    rng = np.random.default_rng(0)
    print("item                          seconds     GFLOP/s")
    for m, n, k in [(64, 64, 64), (256, 256, 256), (1024, 1024, 1024), (4096, 512, 512), (1, 512, 512), (65536, 64, 512)]:
        a = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)  # nn.Linear layout, as the GPU bench (B transposed)
        s = best_seconds(lambda: a @ w.T)
        print(f"matmul {m}x{n}x{k:<14} {s:10.6f} {2 * m * n * k / s / 1e9:10.2f}")

    d, e, hidden = 64, 64, [512, 512, 512]
    widths = [d + e] + hidden + [d]
    weights = [rng.standard_normal((o, i), dtype=np.float32) / np.sqrt(i) for i, o in zip(widths[:-1], widths[1:])]
    biases = [np.zeros(o, dtype=np.float32) for o in widths[1:]]
    flops_per_row = sum(2 * i * o for i, o in zip(widths[:-1], widths[1:]))

    def forward(h):
        for layer, (w, b) in enumerate(zip(weights, biases)):
            h = h @ w.T + b
            if layer < len(weights) - 1:
                h = h / (1 + np.exp(-h))  # silu
        return h

    for rows in [1, 64, 1024, 8192, 65536]:
        h0 = rng.standard_normal((rows, d + e), dtype=np.float32)
        s = best_seconds(lambda: forward(h0), repeats=3)
        print(f"mlp D64-h512x3 rows {rows:<8} {s:10.6f} {flops_per_row * rows / s / 1e9:10.2f}")


if __name__ == "__main__":
    main()
