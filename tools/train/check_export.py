#!/usr/bin/env python3
"""Re-check the exported models without PyTorch: read assets/models/<name>.safetensors with the `safetensors`
package, run the `arch = mlp` forward pass in NumPy float64 and compare it with the float64 PyTorch scores that
tools/train/train.py saved in tools/train/reference/. With --engine, also run `target/release/scorelens score`
(float32 on the GPU adapter) on the same inputs and compare.

    python3 tools/train/check_export.py [--engine] [names...]

Needs numpy and safetensors (any python that has them; Debian's /usr/bin/python3 lacks safetensors).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors import safe_open

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
REF = os.path.join(ROOT, "tools", "train", "reference")


def load(path):
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}
    return meta, tensors


def silu(v):
    return v / (1 + np.exp(-v))


def forward(meta, tensors, x, t):
    assert meta["format"] == "scorelens" and meta["arch"] == "mlp" and meta["act"] == "silu"
    sigma = float(meta["sigma"])
    w = tensors["embed.W"]
    proj = 2 * math.pi * t[:, None] * w[None, :]
    h = np.concatenate([x, np.sin(proj), np.cos(proj)], axis=1)
    n = sum(1 for k in tensors if k.endswith(".weight"))
    for i in range(n):
        h = h @ tensors[f"layers.{i}.weight"].T + tensors[f"layers.{i}.bias"]
        if i < n - 1:
            h = silu(h)
    std = np.sqrt((sigma ** (2 * t) - 1) / (2 * math.log(sigma)))
    return h / std[:, None]


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", default=["moons", "circle16", "digits"])
    ap.add_argument("--engine", action="store_true", help="also compare with target/release/scorelens score")
    args = ap.parse_args()
    ok = True
    for name in args.names:
        path = os.path.join(ROOT, "assets", "models", f"{name}.safetensors")
        meta, tensors = load(path)
        x = np.load(os.path.join(REF, f"{name}_x.npy")).astype(np.float64)
        t = np.load(os.path.join(REF, f"{name}_t.npy")).astype(np.float64)
        s_ref = np.load(os.path.join(REF, f"{name}_score.npy"))
        xh = np.load(os.path.join(REF, f"{name}_x_t0.5.npy")).astype(np.float64)
        sh_ref = np.load(os.path.join(REF, f"{name}_score_t0.5.npy"))
        e1 = rel(forward(meta, tensors, x, t), s_ref)
        e2 = rel(forward(meta, tensors, xh, np.full(len(xh), 0.5)), sh_ref)
        line = f"{name}: metadata {json.dumps(meta, sort_keys=True)}\n  numpy f64 vs torch f64: {e1:.1e} (random t), {e2:.1e} (t = 0.5)"
        ok &= max(e1, e2) < 1e-6
        if args.engine:
            exe = os.path.join(ROOT, "target", "release", "scorelens")
            with tempfile.TemporaryDirectory() as tmp:
                errs = []
                for xs, ts, ref in [(f"{name}_x.npy", os.path.join(REF, f"{name}_t.npy"), s_ref),
                                    (f"{name}_x_t0.5.npy", "0.5", sh_ref)]:
                    out = os.path.join(tmp, "out.npy")
                    subprocess.run([exe, "score", path, "--x", os.path.join(REF, xs), "--t", ts, "-o", out],
                                   check=True, capture_output=True)
                    errs.append(rel(np.load(out).astype(np.float64), ref))
            line += f"\n  scorelens f32 vs torch f64 (max |diff| / max |ref|): {errs[0]:.1e} (random t), {errs[1]:.1e} (t = 0.5)"
            ok &= max(errs) < 1e-4
        print(line)
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
