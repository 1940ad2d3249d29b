#!/usr/bin/env python3
"""onnxruntime side of benches/peers/run_all.py: the forward pass of each ONNX file on onnxruntime's CPU provider, on
the same inputs and batches as `scorelens bench --onnx FILE` (x = ((i mod 255)/127 − 1) row-major, t = 0.5), one
JSON document on stdout. onnxruntime runs the raw network (no conversion to the score, a few elementwise ops that
scorelens' forward item includes) and has no derivatives.

    python3 benches/peers/ort_forward.py FILE.onnx ... [--quick] [--threads N]

Times: median of repeats filling 2 s (--quick: 0.3 s), at least 3, after a warm-up call; intra-op threads = N
(default: the CPU count), sequential execution, all graph optimisations on (onnxruntime's default level).
"""
import argparse
import json
import os

import numpy as np
import onnxruntime
from timing import median_seconds, stem


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    budget = 0.3 if args.quick else 2.0
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    networks = []
    for path in args.models:
        entry = {"network": stem(path), "items": {}, "errors": {}}
        try:
            session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            x_info, t_info = session.get_inputs()[:2]
            row = [int(d) for d in x_info.shape[1:]]
            for b in ([1, 16] if args.quick else [1, 64]):
                x = (np.arange(b * int(np.prod(row))) % 255 / 127.0 - 1.0).astype(np.float32).reshape([b] + row)
                t = np.full([b], 0.5, np.float32)
                seconds, repeats = median_seconds(lambda: session.run(None, {x_info.name: x, t_info.name: t}), budget)
                entry["items"][f"forward b{b}"] = {"seconds": seconds, "repeats": repeats}
        except Exception as e:  # noqa: BLE001 - a file onnxruntime refuses is a result
            entry["errors"]["network"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        networks.append(entry)
    print(json.dumps({"onnxruntime": onnxruntime.__version__, "threads": args.threads, "networks": networks}, indent=1))


if __name__ == "__main__":
    main()
