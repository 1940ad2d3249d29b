"""Export a PyTorch score network to ONNX with scorelens's metadata, and check the file against the module.

    from scorelens.torch_export import export
    export(net, x_example, t_example, "net.onnx", parameterization="epsilon", schedule="vp",
           beta_min=0.1, beta_max=20)

`scorelens.from_torch` exports this way to a temporary file and loads it; `tools/export_onnx.py` is the same
function from the shell. This module imports neither PyTorch nor the compiled extension at import time, so the tool
runs where only one of them is installed.

The module is called as net(x, t) with x [B, ...] float32 and t [B] float32 (t, or σ(t) with time_input="sigma").
PyTorch ≥ 2 uses the dynamo exporter (opset 21); older PyTorch the TorchScript exporter (its newest opset, ≥ 13).
Both with a dynamic batch axis and no external data. The file's metadata_props get scorelens.parameterization,
scorelens.time_input, scorelens.schedule and the schedule's parameters (docs/networks.md). Before returning, the
file is run on random inputs (by the scorelens package, else a scorelens binary, else onnxruntime) with
parameterization "score", i.e. the raw network output, and compared with the module: a relative error above
`tolerance` raises.
"""

import os
import shutil
import subprocess
import tempfile

import numpy as np

SCHEDULE_KEYS = ("sigma", "sigma_min", "sigma_max", "beta_min", "beta_max")


def import_torch(caller):
    """PyTorch, or an ImportError that says who needs it and how to get it."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"{caller} needs PyTorch, which is not installed in this Python ({e}); install it "
            "(pip install torch, or Debian's python3-torch) or export the module to ONNX elsewhere and use "
            "scorelens.load"
        ) from e
    return torch


def scorelens_binary():
    """A scorelens command-line binary: SCORELENS_BIN, a build in this clone, or one on PATH; None without."""
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.join(here, "..", "..")
    for candidate in (
        os.environ.get("SCORELENS_BIN"),
        os.path.join(repo, "target", "ci", "scorelens"),
        os.path.join(repo, "target", "release", "scorelens"),
        shutil.which("scorelens"),
    ):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def add_metadata(path, metadata):
    """Writes `scorelens.KEY = value` into the ONNX file's metadata_props, replacing earlier scorelens keys."""
    import onnx

    model = onnx.load(path)
    keep = [p for p in model.metadata_props if not p.key.startswith("scorelens.")]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = "scorelens." + key, str(value)
    onnx.save(model, path)


def run_file(path, x, t):
    """The raw network output of the ONNX file at (x, t): float32, computed by scorelens where it can be."""
    try:
        from . import _native
    except ImportError:
        _native = None
    if _native is not None:
        return _native.load(path, parameterization="score", time_input="t").score(x, t)
    binary = scorelens_binary()
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
    torch = import_torch("export")

    unknown = set(schedule_params) - set(SCHEDULE_KEYS)
    if unknown:
        raise ValueError(f"unknown schedule parameters {sorted(unknown)}; expected some of {SCHEDULE_KEYS}")
    was_training = module.training
    module = module.eval()
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32)
    t = torch.as_tensor(np.asarray(t) if not torch.is_tensor(t) else t, dtype=torch.float32).reshape(-1)
    if x.ndim < 2:
        raise ValueError(f"example_x: shape {list(x.shape)}; expected [B, ...] with a batch axis")
    if t.shape[0] == 1 and x.shape[0] > 1:
        t = t.expand(x.shape[0]).contiguous()
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"example_x has {x.shape[0]} rows but example_t has {t.shape[0]}")
    major = int(torch.__version__.split(".")[0])
    try:
        with torch.no_grad():
            if major >= 2:
                batch = torch.export.Dim("batch")
                program = torch.onnx.export(module, (x, t), dynamo=True, opset_version=opset or 21,
                                            external_data=False, dynamic_shapes=({0: batch}, {0: batch}))
                program.save(path, external_data=False)
            else:
                from torch.onnx import _constants

                torch.onnx.export(module, (x, t), path, opset_version=opset or _constants.ONNX_MAX_OPSET,
                                  input_names=["x", "t"], output_names=["out"],
                                  dynamic_axes={"x": {0: "batch"}, "t": {0: "batch"}, "out": {0: "batch"}})
        metadata = {"parameterization": parameterization, "time_input": time_input, "schedule": schedule}
        metadata.update({k: v for k, v in schedule_params.items() if v is not None})
        add_metadata(path, metadata)
        if check:
            rng = np.random.default_rng(0)
            xs = rng.standard_normal((3,) + tuple(x.shape[1:])).astype(np.float32)
            ts = rng.uniform(0.1, 1.0, 3).astype(np.float32)
            with torch.no_grad():
                want = module(torch.from_numpy(xs), torch.from_numpy(ts)).double().numpy().reshape(xs.shape)
            got = np.asarray(run_file(path, xs, ts)).astype(np.float64).reshape(xs.shape)
            err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
            if not err <= tolerance:
                raise RuntimeError(f"{path}: the exported file differs from the module (relative error {err:.2e})")
    finally:
        module.train(was_training)
    return path


def from_torch(module, example_x, example_t, parameterization, schedule, time_input="t", check=True,
               **schedule_params):
    """A PyTorch module as a scorelens Model: exported through torch.onnx to a temporary file, checked against the
    module (see `export`), and loaded with the metadata; the file is removed once loaded."""
    import_torch("scorelens.from_torch")
    from . import _native

    with tempfile.TemporaryDirectory(prefix="scorelens-torch-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        export(module, example_x, example_t, path, parameterization, schedule, time_input=time_input, check=check,
               **schedule_params)
        return _native.load(path)
