"""Export a PyTorch score network to ONNX for scorelens, with its metadata, and check the file before returning.

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
file is run on random inputs (scorelens itself with --parameterization score, i.e. the raw network output, or
onnxruntime when no scorelens binary is found) and compared with the module: a relative error above `tolerance`
raises.
"""
import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

SCHEDULE_KEYS = ("sigma", "sigma_min", "sigma_max", "beta_min", "beta_max")


def _scorelens_binary():
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.environ.get("SCORELENS_BIN"), os.path.join(here, "..", "target", "ci", "scorelens"),
                      os.path.join(here, "..", "target", "release", "scorelens"), shutil.which("scorelens")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _add_metadata(path, metadata):
    import onnx

    model = onnx.load(path)
    keep = [p for p in model.metadata_props if not p.key.startswith("scorelens.")]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = "scorelens." + key, str(value)
    onnx.save(model, path)


def _run_file(path, x, t):
    """The raw network output of the ONNX file at (x, t)."""
    binary = _scorelens_binary()
    if binary is not None:
        with tempfile.TemporaryDirectory() as tmp:
            xs, ts, out = (os.path.join(tmp, n) for n in ("x.npy", "t.npy", "out.npy"))
            np.save(xs, x)
            np.save(ts, t)
            cmd = [binary, "score", path, "--x", xs, "--t", ts, "-o", out, "--parameterization", "score",
                   "--time-input", "t"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"scorelens refused {path}: {done.stderr.strip()}")
            return np.load(out)
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {names[0]: x, names[1]: t})[0]


def export(module, x, t, path, parameterization, schedule, time_input="t", check=True, tolerance=1e-4,
           opset=None, **schedule_params):
    """Exports `module` (called as module(x, t)) to `path` with the scorelens metadata; returns the path."""
    import torch

    unknown = set(schedule_params) - set(SCHEDULE_KEYS)
    if unknown:
        raise ValueError(f"unknown schedule parameters {sorted(unknown)}; expected some of {SCHEDULE_KEYS}")
    module = module.eval()
    x = torch.as_tensor(x, dtype=torch.float32)
    t = torch.as_tensor(t, dtype=torch.float32).reshape(-1)
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but t has {t.shape[0]}")
    major = int(torch.__version__.split(".")[0])
    with torch.no_grad():
        if major >= 2:
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(module, (x, t), dynamo=True, opset_version=opset or 21, external_data=False,
                                        dynamic_shapes=({0: batch}, {0: batch}))
            program.save(path, external_data=False)
        else:
            from torch.onnx import _constants

            torch.onnx.export(module, (x, t), path, opset_version=opset or _constants.ONNX_MAX_OPSET,
                              input_names=["x", "t"], output_names=["out"],
                              dynamic_axes={"x": {0: "batch"}, "t": {0: "batch"}, "out": {0: "batch"}})
    metadata = {"parameterization": parameterization, "time_input": time_input, "schedule": schedule}
    metadata.update({k: v for k, v in schedule_params.items() if v is not None})
    _add_metadata(path, metadata)
    if check:
        rng = np.random.default_rng(0)
        xs = rng.standard_normal((3,) + tuple(x.shape[1:])).astype(np.float32)
        ts = rng.uniform(0.1, 1.0, 3).astype(np.float32)
        with torch.no_grad():
            want = module(torch.from_numpy(xs), torch.from_numpy(ts)).double().numpy().reshape(xs.shape)
        got = _run_file(path, xs, ts).astype(np.float64).reshape(xs.shape)
        err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
        if not err <= tolerance:
            raise RuntimeError(f"{path}: the exported file differs from the module (relative error {err:.2e})")
    return path


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
