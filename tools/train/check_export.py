#!/usr/bin/env python3
"""Re-check the exported models without PyTorch: read assets/models/<name>.safetensors with the `safetensors`
package, run the `arch = mlp` forward pass in NumPy float64 and compare it with the float64 PyTorch scores that
tools/train/train.py saved in tools/train/reference/. With --engine, also run the scorelens binary
(target/ci/scorelens, else target/release/scorelens; float32 on the GPU adapter) on the same inputs and compare.
The ONNX U-Net (digits_unet) is checked with the binary only: scores, J·v and full Jacobians (forward and reverse
mode) against the float64 PyTorch references, relative error ‖got − want‖ / ‖want‖ at most 1e-5.

    python3 tools/train/check_export.py [--engine] [names...]

Needs numpy, and safetensors for the MLP files (any python that has them; Debian's /usr/bin/python3 lacks
safetensors; `--engine digits_unet` alone needs numpy only).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
REF = os.path.join(ROOT, "tools", "train", "reference")


def load(path):
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}
    return meta, tensors


def silu(v):
    return v / (1 + np.exp(-v))


ACTS = {"silu": silu, "relu": lambda v: np.maximum(v, 0.0)}


def forward(meta, tensors, x, t):
    assert meta["format"] == "scorelens" and meta["arch"] == "mlp" and meta["act"] in ACTS
    sigma = float(meta["sigma"])
    w = tensors["embed.W"]
    proj = 2 * math.pi * t[:, None] * w[None, :]
    h = np.concatenate([x, np.sin(proj), np.cos(proj)], axis=1)
    n = sum(1 for k in tensors if k.endswith(".weight"))
    for i in range(n):
        h = h @ tensors[f"layers.{i}.weight"].T + tensors[f"layers.{i}.bias"]
        if i < n - 1:
            h = ACTS[meta["act"]](h)
    std = np.sqrt((sigma ** (2 * t) - 1) / (2 * math.log(sigma)))
    return h / std[:, None]


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def check_onnx(exe, name):
    """scorelens on the ONNX file against the float64 references: {quantity: relative error}."""
    path = os.path.join(ROOT, "assets", "models", f"{name}.onnx")
    r = {k: os.path.join(REF, f"{name}_{k}.npy") for k in
         ("x", "t", "score", "x_t0.5", "score_t0.5", "jac_x", "jac_t", "jac_v", "jac_jvp", "jacobian")}
    errs = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npy")
        runs = [("score", ["score", path, "--x", r["x"], "--t", r["t"]], "score"),
                ("score t=0.5", ["score", path, "--x", r["x_t0.5"], "--t", "0.5"], "score_t0.5"),
                ("jvp", ["jvp", path, "--x", r["jac_x"], "--t", r["jac_t"], "--v", r["jac_v"]], "jac_jvp"),
                ("jacobian forward", ["jacobian", path, "--x", r["jac_x"], "--t", r["jac_t"], "--method", "forward"],
                 "jacobian"),
                ("jacobian reverse", ["jacobian", path, "--x", r["jac_x"], "--t", r["jac_t"], "--method", "reverse"],
                 "jacobian")]
        for label, cmd, want in runs:
            subprocess.run([exe] + cmd + ["-o", out], check=True, capture_output=True)
            w = np.load(r[want])
            g = np.load(out).astype(np.float64).reshape(w.shape)
            errs[label] = float(np.linalg.norm(g - w) / np.linalg.norm(w))
    return errs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", default=["moons", "circle16", "digits", "moons_relu", "sphere16",
                                                  "digits_unet"])
    ap.add_argument("--engine", action="store_true", help="also compare with the scorelens binary")
    args = ap.parse_args()
    ok = True
    exe = next((p for p in (os.path.join(ROOT, "target", "ci", "scorelens"),
                            os.path.join(ROOT, "target", "release", "scorelens")) if os.path.exists(p)), None)
    for name in args.names:
        if name == "digits_unet":
            if not args.engine:
                print(f"{name}: ONNX, checked with --engine only")
                continue
            errs = check_onnx(exe, name)
            print(f"{name}: scorelens f32 vs torch f64 (‖diff‖ / ‖ref‖): "
                  + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
            ok &= max(errs.values()) <= 1e-5
            continue
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
