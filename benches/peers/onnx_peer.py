#!/usr/bin/env python3
"""onnxruntime peer of `scorelens bench --onnx FILE`: the same ONNX networks' forward passes on onnxruntime's CPU
provider, in the same run as `scorelens bench`, with the ratio of the two (above 1: scorelens is faster).

    python3 benches/peers/onnx_peer.py FILE.onnx ... [--scorelens target/ci/scorelens] [--quick]

onnxruntime has no derivatives; the J·V and Jacobian items of `scorelens bench --onnx` compare with PyTorch's
torch.func in benches/peers/torch_peer.py where the module is at hand (the built-in U-Net is the tutorial's ScoreNet,
the same architecture as tests/fixtures/onnx21/scorenet_tutorial). Times are medians of repeats after a warm-up.
"""
import argparse
import json
import subprocess

import numpy as np
import onnxruntime
from timing import median_seconds, stem


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--scorelens", default="target/ci/scorelens")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    budget = 0.3 if args.quick else 2.0
    batches = [1, 16] if args.quick else [1, 64]
    only = ",".join(f"graph {stem(m)} forward" for m in args.models)
    cmd = [args.scorelens, "bench", "--json", "--only", only] + (["--quick"] if args.quick else [])
    for m in args.models:
        cmd += ["--onnx", m]
    ours = {i["name"]: i["seconds"] for i in json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)["items"]}
    print(f"{'item':<44} {'scorelens ms':>12} {'onnxruntime ms':>15} {'ratio':>7}")
    for path in args.models:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        x_info, t_info = session.get_inputs()[:2]
        row = [d for d in x_info.shape[1:]]
        for b in batches:
            x = (np.arange(b * int(np.prod(row))) % 255 / 127.0 - 1.0).astype(np.float32).reshape([b] + row)
            t = np.full([b], 0.5, np.float32)
            seconds, _ = median_seconds(lambda: session.run(None, {x_info.name: x, t_info.name: t}), budget)
            name = f"graph {stem(path)} forward b{b}"
            mine = ours.get(name)
            ratio = f"{seconds / mine:7.2f}" if mine else "      -"
            print(f"{name:<44} {mine * 1e3 if mine else float('nan'):>12.3f} {seconds * 1e3:>15.3f} {ratio}")


if __name__ == "__main__":
    main()
