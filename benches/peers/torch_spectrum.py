#!/usr/bin/python3
"""PyTorch side of the spectrum comparison in benches/peers/run_all.py (issue 17): the top K singular triplets of the
score Jacobian at one point by PyTorch's best routes, and the accuracy of every route (PyTorch's and the scorelens
runs given) against the float64 SVD of the float64 Jacobian. One JSON document on stdout.

    /usr/bin/python3 benches/peers/torch_spectrum.py song-unet [--scorelens-run NAME=DIR ...] [--quick]
    /usr/bin/python3 benches/peers/torch_spectrum.py wide-mlp --export DIR [--dim D --width W]  # DIR/model.onnx, x.npy
    /usr/bin/python3 benches/peers/torch_spectrum.py wide-mlp --model DIR/model.onnx [--scorelens-run NAME=DIR ...]

Workloads:
- song-unet: the fixture tests/fixtures/song_unet (Song's tutorial ScoreNet, random weights), its first point
  (x.npy[0], t.npy[0]), D = 784; the module is torch_peer.py's ScoreNet with the fixture's weights.
- wide-mlp: a D = 2048 MLP score network defined here (Fourier time features, two SiLU layers of width 1024,
  ε-parameterised, vp schedule; --dim and --width change the size for smoke runs), weights from a fixed seed,
  exported to ONNX by tools/export_onnx.py's exporter (which checks the file against the module) so scorelens reads
  the same network; the point x ~ N(0, 1) (seed 1), t = 0.5.

PyTorch routes, float32, `--threads` threads, median of repeats after a warm-up:
- the Jacobian materialised by vmap(jacfwd) and by vmap(jacrev) (the faster is "PyTorch's best"), then
  torch.linalg.svd (all D triplets; the top K kept);
- the same Jacobian, then torch.svd_lowrank(J, q = K + 8, niter) for niter 4 and 16 (randomized; the Jacobian's
  time is included, since svd_lowrank needs the matrix).
Accuracy of each route (scorelens runs: their singular_values.npy, left_vectors.npy, right_vectors.npy):
max_i |sᵢ − sᵢ(ref)|/s₁, and the residuals max_i ‖J vᵢ − sᵢ uᵢ‖/s₁ and ‖Jᵀ uᵢ − sᵢ vᵢ‖/s₁ with the float64 J.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

try:
    from torch.func import jacfwd, jacrev, vmap
except ImportError:  # PyTorch 1.13
    from functorch import jacfwd, jacrev, vmap

from onnx_torch import OnnxGraph, ScoreFunction  # noqa: E402

SONG_UNET = os.path.join(ROOT, "tests", "fixtures", "song_unet")
WIDE_D, WIDE_WIDTH = 2048, 1024
VP = dict(schedule="vp", beta_min=0.1, beta_max=20.0)


class WideMlp(nn.Module):
    """ε(x, t) for D = 2048: Fourier features of t, then Linear–SiLU–Linear–SiLU–Linear."""

    def __init__(self, d=WIDE_D, width=WIDE_WIDTH):
        super().__init__()
        self.freq = nn.Parameter(torch.randn(8) * 4.0)
        self.inp = nn.Linear(d + 16, width)
        self.mid = nn.Linear(width, width)
        self.out = nn.Linear(width, d)

    def forward(self, x, t):
        f = t[:, None] * self.freq[None]
        h = nn.functional.silu(self.inp(torch.cat([x, f.sin(), f.cos()], dim=1)))
        h = nn.functional.silu(self.mid(h))
        return self.out(h)


def wide_mlp(d=WIDE_D, width=WIDE_WIDTH):
    torch.manual_seed(2048)
    net = WideMlp(d, width).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def export_wide_mlp(folder, d, width):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from export_onnx import export

    os.makedirs(folder, exist_ok=True)
    net = wide_mlp(d, width)
    x = torch.randn(1, d, generator=torch.Generator().manual_seed(1))
    np.save(os.path.join(folder, "x.npy"), x.numpy())
    with open(os.path.join(folder, "shape.json"), "w") as f:
        json.dump({"dim": d, "width": width}, f)
    # The check runs the file on random inputs with a scorelens binary (or onnxruntime) against the module.
    export(net, x, torch.full((1,), 0.5), os.path.join(folder, "model.onnx"), parameterization="epsilon",
           check=True, **VP)
    return {"model": os.path.join(folder, "model.onnx"), "x": os.path.join(folder, "x.npy"), "t": 0.5, "dim": d}


def vp_std(t):
    integral = VP["beta_min"] * t + 0.5 * t * t * (VP["beta_max"] - VP["beta_min"])
    return math.sqrt(-math.expm1(-integral))


def workload(name, model):
    """(score function of one row [D] → [D] in float32, the same in float64, the row x [D] float32, info)."""
    if name == "song-unet":
        from torch_peer import ScoreNet, read_safetensors

        weights = read_safetensors(os.path.join(SONG_UNET, "model.safetensors"))
        x = torch.from_numpy(np.load(os.path.join(SONG_UNET, "x.npy"))[0]).reshape(-1)
        t = float(np.load(os.path.join(SONG_UNET, "t.npy"))[0])
        nets = []
        for dtype in (torch.float32, torch.float64):
            net = ScoreNet()
            net.load_state_dict(weights)
            nets.append(net.to(dtype).eval().requires_grad_(False))

        def score(net, dtype):
            tt = torch.full((1,), t, dtype=dtype)
            return lambda row: net(row.reshape(1, 1, 28, 28), tt).reshape(-1)

        info = {"model": os.path.relpath(os.path.join(SONG_UNET, "model.safetensors"), ROOT), "t": t, "dim": 784,
                "network": "Song's tutorial ScoreNet (fixture weights), point 0 of tests/fixtures/song_unet"}
        return score(nets[0], torch.float32), score(nets[1], torch.float64), x, info
    if name == "wide-mlp":
        folder = os.path.dirname(os.path.abspath(model))
        x = torch.from_numpy(np.load(os.path.join(folder, "x.npy"))[0])
        with open(os.path.join(folder, "shape.json")) as f:
            shape = json.load(f)
        metadata = OnnxGraph(model).metadata
        fns = []
        for dtype in (torch.float32, torch.float64):
            net = wide_mlp(shape["dim"], shape["width"]).to(dtype)
            fn = ScoreFunction(net, metadata)
            tt = torch.full((1,), 0.5, dtype=dtype)
            fns.append(lambda row, fn=fn, tt=tt: fn.score_one(row, tt))
        info = {"model": model, "t": 0.5, "dim": shape["dim"],
                "network": f"MLP D = {shape['dim']}, two SiLU layers of width {shape['width']}, ε-parameterised, vp"}
        return fns[0], fns[1], x, info
    raise SystemExit(f"unknown workload {name}")


def median_seconds(run, budget):
    out = run()
    times, started = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - started < budget and len(times) < 100):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], out


def accuracy(s, u, v, jac, s_ref, k):
    """max |sᵢ − sᵢ(ref)|/s₁ and both residuals over the top k, with the float64 Jacobian `jac` (u, v: [k, D])."""
    s, u, v = np.asarray(s, np.float64)[:k], np.asarray(u, np.float64)[:k], np.asarray(v, np.float64)[:k]
    s1 = s_ref[0]
    jv = v @ jac.T  # row i: J vᵢ
    jtu = u @ jac  # row i: Jᵀ uᵢ
    return {
        "max_value_error": float(np.max(np.abs(s - s_ref[:k])) / s1),
        "max_residual": float(np.max(np.linalg.norm(jv - s[:, None] * u, axis=1)) / s1),
        "max_transpose_residual": float(np.max(np.linalg.norm(jtu - s[:, None] * v, axis=1)) / s1),
    }


def evaluate_scorelens_runs(specs, result, jac64, s_ref, k):
    """Adds each scorelens spectrum output folder (NAME=DIR) as a route: its seconds, products and accuracy."""
    for spec in specs:
        name, folder = spec.split("=", 1)
        try:
            with open(os.path.join(folder, "summary.json")) as f:
                summary = json.load(f)
            s = np.load(os.path.join(folder, "singular_values.npy"))[0]
            u = np.load(os.path.join(folder, "left_vectors.npy"))[0]
            v = np.load(os.path.join(folder, "right_vectors.npy"))[0]
            result["routes"][name] = {
                "seconds": summary.get("seconds"), "products": summary.get("products"),
                "method": summary.get("method"), "method_reason": summary.get("method_reason"),
                "converged": summary.get("converged"), **accuracy(s, u, v, jac64, s_ref, k)}
        except Exception as e:  # noqa: BLE001 - a failed run is a row with its error
            result["errors"][name] = f"{type(e).__name__}: {e}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=["song-unet", "wide-mlp"])
    parser.add_argument("--export", metavar="DIR", help="wide-mlp: write DIR/model.onnx and DIR/x.npy and stop")
    parser.add_argument("--model", help="wide-mlp: the exported model.onnx")
    parser.add_argument("--dim", type=int, default=WIDE_D, help="wide-mlp --export: D")
    parser.add_argument("--width", type=int, default=WIDE_WIDTH, help="wide-mlp --export: the hidden width")
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--scorelens-run", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reference", metavar="J64.npy", help="the float64 Jacobian: loaded if the file exists, "
                        "else computed and saved there")
    parser.add_argument("--only-scorelens", action="store_true", help="time no PyTorch route: only the accuracy "
                        "of the --scorelens-run folders")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.export:
        print(json.dumps(export_wide_mlp(args.export, args.dim, args.width)))
        return
    budget = 0.3 if args.quick else 2.0
    score32, score64, x, info = workload(args.workload, args.model)
    k, d = args.k, x.numel()

    if args.reference and os.path.exists(args.reference):
        jac64 = np.load(args.reference)
    else:
        jac64 = jacrev(score64)(x.double()).numpy()
        if args.reference:
            np.save(args.reference, jac64)
    u_ref, s_ref, vt_ref = np.linalg.svd(jac64)
    result = {"workload": args.workload, **info, "k": k, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "reference": "float64 Jacobian (jacrev) and numpy's float64 SVD",
              "gap_ratio": float(s_ref[k] / s_ref[k - 1]), "routes": {}, "errors": {}}

    jac_seconds = {}
    for label, transform in (("jacfwd", jacfwd), ("jacrev", jacrev)):
        try:
            seconds, jac = median_seconds(lambda: vmap(transform(score32))(x[None])[0], budget)
            jac_seconds[label] = seconds
        except Exception as e:  # noqa: BLE001 - reported, not timed
            result["errors"][label] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if args.workload == "song-unet":  # the f64 reference against the fixture's own (PyTorch, float64)
        fixture_s = np.load(os.path.join(SONG_UNET, "singular_values.npy")).reshape(-1)[:k]
        result["reference_vs_fixture_singular_values"] = float(np.max(np.abs(s_ref[:k] - fixture_s)) / s_ref[0])
    if args.only_scorelens:
        jac_seconds = {}
    if not jac_seconds:
        evaluate_scorelens_runs(args.scorelens_run, result, jac64, s_ref, k)
        print(json.dumps(result, indent=1))
        return
    best = min(jac_seconds, key=jac_seconds.get)
    jac = vmap((jacfwd if best == "jacfwd" else jacrev)(score32))(x[None])[0]
    result["jacobian"] = {"seconds": jac_seconds, "best": best,
                          "relative_error_vs_f64": float(np.linalg.norm(jac.numpy() - jac64) / np.linalg.norm(jac64))}

    seconds, (u, s, vt) = median_seconds(lambda: torch.linalg.svd(jac), budget)
    result["routes"][f"torch {best} + linalg.svd"] = {
        "seconds": jac_seconds[best] + seconds, "svd_seconds": seconds, "products": d,
        **accuracy(s.numpy(), u.T.numpy(), vt.numpy(), jac64, s_ref, k)}
    for niter in (4, 16):
        torch.manual_seed(0)
        seconds, (u, s, v) = median_seconds(lambda: torch.svd_lowrank(jac, q=k + 8, niter=niter), budget)
        result["routes"][f"torch {best} + svd_lowrank(q={k + 8}, niter={niter})"] = {
            "seconds": jac_seconds[best] + seconds, "svd_seconds": seconds, "products": d,
            **accuracy(s.numpy(), u.T.numpy(), v.T.numpy(), jac64, s_ref, k)}

    evaluate_scorelens_runs(args.scorelens_run, result, jac64, s_ref, k)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
