"""Export a PyTorch score network to ONNX for scorelens, with its metadata, and check the file before returning.
The exporter itself is `scorelens.torch_export.export` (python/scorelens/torch_export.py), which
`scorelens.from_torch` uses too; this file is its command line.

    from export_onnx import export
    export(net, x_example, t_example, "net.onnx", parameterization="epsilon", schedule="vp",
           beta_min=0.1, beta_max=20)

or from the shell, for a module that a Python file builds:

    python3 tools/export_onnx.py my_models.py:make_net net.onnx --x-shape 1,28,28 \
        --parameterization epsilon --schedule vp --beta-min 0.1 --beta-max 20

The module is called as net(x, t) with x [B, ...] float32 and t [B] float32 (t, or σ(t) with time_input="sigma").
PyTorch ≥ 2 uses the dynamo exporter (opset 21); older PyTorch the TorchScript exporter (its newest opset, ≥ 13).
Both with a dynamic batch axis and no external data. The file's metadata_props get scorelens.parameterization,
scorelens.time_input, scorelens.schedule and the schedule's parameters (docs/networks.md). Before returning, the
file is run on random inputs (the scorelens package, or a scorelens binary, with --parameterization score, i.e.
the raw network output, or onnxruntime when neither is found) and compared with the module: a relative error
above `tolerance` raises.
"""
import argparse
import importlib.util
import os
import sys

try:
    from scorelens.torch_export import SCHEDULE_KEYS, export
except ImportError:
    # The package is not installed: its exporter is one standalone file in this clone (it needs neither the
    # compiled extension nor PyTorch to import), and checks the file with a scorelens binary instead.
    _spec = importlib.util.spec_from_file_location(
        "scorelens_torch_export",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python", "scorelens", "torch_export.py"))
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    SCHEDULE_KEYS, export = _module.SCHEDULE_KEYS, _module.export


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("factory", help="FILE.py:FUNCTION returning the module")
    parser.add_argument("output")
    parser.add_argument("--x-shape", required=True, help="per-row shape of x, e.g. 1,28,28")
    parser.add_argument("--parameterization", required=True, choices=["score", "epsilon", "denoiser", "v"])
    parser.add_argument("--schedule", required=True, choices=["ve-song", "ve", "vp"])
    parser.add_argument("--time-input", default="t", choices=["t", "sigma", "c_noise", "log_sigma"])
    for key in SCHEDULE_KEYS:
        parser.add_argument("--" + key.replace("_", "-"), type=float)
    args = parser.parse_args()
    file, function = args.factory.rsplit(":", 1)
    spec = importlib.util.spec_from_file_location("factory", file)
    factory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(factory)
    net = getattr(factory, function)()
    import torch

    shape = tuple(int(d) for d in args.x_shape.split(","))
    x, t = torch.randn((2,) + shape), torch.rand(2) * 0.9 + 0.1
    params = {k: getattr(args, k) for k in SCHEDULE_KEYS}
    export(net, x, t, args.output, args.parameterization, args.schedule, args.time_input, **params)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
