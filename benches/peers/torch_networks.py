#!/usr/bin/python3
"""PyTorch (torch.func / functorch) side of benches/peers/run_all.py for the ONNX fixture networks: forward, J·V and
the whole Jacobian of each network on the same workloads as `scorelens bench --onnx FILE` (src/cli/bench.rs), one
JSON document on stdout.

    /usr/bin/python3 benches/peers/torch_networks.py FILE.onnx ... [--quick] [--threads N]

The network: its Python module where the fixture scripts define it (Song's tutorial ScoreNet in torch_peer.py, the
EDM denoiser and the residual MLP in tools/fixtures/make_torch_onnx_fixtures.py) with the ONNX file's weights; for
the dynamo exports whose modules are not in this repository (DDPM U-Net with attention, DiT), the ONNX graph
evaluated op by op in PyTorch (onnx_torch.py). Each route is checked against the fixture's float64 references
(score and J·v) before it is timed; a route that fails the check or a transform that fails is reported as such, with
the error, never timed.

Workloads (as scorelens bench): x = ((i mod 255)/127 − 1) row-major, t = 0.5 for every row; forward at b1 and b64
(--quick: b16); J·V: 8 tangents at each of 4 points, vmap over the tangents of jvp (one batched forward-mode pass);
the whole Jacobian of one point by vmap(jacfwd) and vmap(jacrev), each timed (--quick skips D > 256, as
scorelens does). Times: median of repeats filling 2 s (--quick: 0.3 s), at least 3, after a warm-up call.
"""
import argparse
import json
import math
import os
import sys
import traceback

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from onnx_torch import OnnxGraph, ScoreFunction, relative_error  # noqa: E402

try:
    from torch.func import jacfwd, jacrev, jvp, vmap
except ImportError:  # PyTorch 1.13: the same API in functorch
    from functorch import jacfwd, jacrev, jvp, vmap

from timing import median_seconds, stem


def _scorenet():
    from torch_peer import ScoreNet

    return ScoreNet()


def _fixture_module(name):
    sys.path.insert(0, os.path.join(ROOT, "tools", "fixtures"))
    import make_torch_onnx_fixtures as fixtures

    return getattr(fixtures, name)()


# Networks whose module definitions exist here: the module, and the parameters the exporter stored under other names
# (folded into a Mul/Add constant) as (parameter, initializer, reshape).
MODULES = {
    # The dynamo exporter stored equal initializers once: the decoder's GroupNorm affines (still (1, 0) in this
    # fixture) are the encoder's of the same width.
    "scorenet_tutorial": (_scorenet, {
        "embed.0.W": ("unsqueeze_1", (-1,)),
        "tgnorm4.weight": ("gnorm3.weight", (-1,)), "tgnorm4.bias": ("gnorm3.bias", (-1,)),
        "tgnorm3.weight": ("gnorm2.weight", (-1,)), "tgnorm3.bias": ("gnorm2.bias", (-1,)),
        "tgnorm2.weight": ("gnorm1.weight", (-1,)), "tgnorm2.bias": ("gnorm1.bias", (-1,)),
    }),
    "edm_denoiser": (lambda: _fixture_module("EdmDenoiser"), {
        "freq": ("onnx::Mul_152", (-1,)),
        "norm.weight": ("onnx::Mul_153", (-1,)), "norm.bias": ("onnx::Add_154", (-1,)),
        "attn.norm.weight": ("onnx::Mul_155", (-1,)), "attn.norm.bias": ("onnx::Add_156", (-1,)),
    }),
    "residual_mlp": (lambda: _fixture_module("ResidualMlp"), {"freq": ("onnx::Mul_53", (-1,))}),
}


def module_route(name, graph):
    """The fixture's module with the ONNX file's weights, or None when no definition exists here."""
    if name not in MODULES:
        return None
    build, renamed = MODULES[name]
    net = build().float().eval()
    state = {}
    for key, param in net.state_dict().items():
        source, shape = renamed.get(key, (key, param.shape))
        if source not in graph.constants:
            raise KeyError(f"no initializer for parameter {key} (looked for {source})")
        state[key] = graph.constants[source].reshape(shape).to(torch.float32)
    net.load_state_dict(state)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def check(score, folder):
    """Relative errors of the score and of J·v against the fixture's float64 references (float32 here)."""
    x = torch.from_numpy(np.load(os.path.join(folder, "x.npy")))
    t = torch.from_numpy(np.load(os.path.join(folder, "t.npy")))
    v = torch.from_numpy(np.load(os.path.join(folder, "v.npy")))
    with torch.no_grad():
        s = score(x, t)
    _, jv = jvp(lambda y: score(y, t), (x,), (v,))
    return {"score": relative_error(s.numpy(), np.load(os.path.join(folder, "score.npy"))),
            "jvp": relative_error(jv.detach().numpy(), np.load(os.path.join(folder, "jvp.npy")))}


def measure(path, quick, budget):
    name, folder = stem(path), os.path.dirname(os.path.abspath(path))
    graph = OnnxGraph(path)
    result = {"network": name, "file": os.path.relpath(path, ROOT), "items": {}, "errors": {}}
    score, route = ScoreFunction(graph, graph.metadata), "onnx graph evaluated in PyTorch ops (onnx_torch.py)"
    try:
        net = module_route(name, graph)
        if net is not None:
            candidate = ScoreFunction(net, graph.metadata)
            accuracy = check(candidate, folder)
            if accuracy["score"] <= 1e-4:
                score, route = candidate, "module from its definition, the file's weights"
                result["check"] = accuracy
            else:
                result["errors"]["module"] = f"module route rejected: score off by {accuracy['score']:.2e}"
    except Exception as e:  # noqa: BLE001 - report, then fall back to the graph route
        result["errors"]["module"] = f"module route unavailable: {type(e).__name__}: {e}"
    result["route"] = route
    if "check" not in result and os.path.exists(os.path.join(folder, "score.npy")):
        result["check"] = check(score, folder)

    row = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim[1:]]
    d = int(np.prod(row))
    result["dim"] = d
    inputs = lambda rows: (torch.arange(rows * d) % 255 / 127.0 - 1.0).to(torch.float32).reshape([rows] + row)

    def item(key, work):
        try:
            seconds, repeats = median_seconds(work, budget)
            result["items"][key] = {"seconds": seconds, "repeats": repeats}
        except Exception as e:  # noqa: BLE001 - a transform PyTorch cannot do is a result, reported as such
            result["errors"][key] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            traceback.print_exc(file=sys.stderr)

    for rows in ([1, 16] if quick else [1, 64]):
        x, t = inputs(rows), torch.full((rows,), 0.5)
        with torch.no_grad():
            item(f"forward b{rows}", lambda: score(x, t))
    x, t = inputs(4), torch.full((4,), 0.5)
    v = ((torch.arange(8 * 4 * d) % 7).to(torch.float32) - 3.0) / 3.0
    v = v.reshape([8, 4] + row)
    item("jvp k8 b4", lambda: vmap(lambda w: jvp(lambda y: score(y, t), (x,), (w,))[1])(v))
    if not (quick and d > 256):
        x1, t1 = inputs(1), torch.full((1,), 0.5)
        for label, transform in (("jacfwd", jacfwd), ("jacrev", jacrev)):
            item(f"jacobian {label} b1", lambda: vmap(transform(lambda r: score.score_one(r, t1)))(x1))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budget = 0.3 if args.quick else 2.0
    networks = []
    for path in args.models:
        try:
            networks.append(measure(path, args.quick, budget))
        except Exception as e:  # noqa: BLE001 - the network cannot be rebuilt in this PyTorch: say so
            networks.append({"network": stem(path), "file": path, "items": {}, "route": None,
                             "errors": {"network": f"{type(e).__name__}: {e}"}})
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "networks": networks}, indent=1))


if __name__ == "__main__":
    main()
