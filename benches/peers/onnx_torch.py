"""An ONNX graph evaluated op by op with PyTorch functions, so torch.func / functorch (vmap, jvp, jacfwd, jacrev) can
differentiate a network whose Python module is not at hand (the dynamo exports in tests/fixtures/onnx21 come without
their module definitions). It covers the ops of the fixture networks in tests/fixtures (opsets 17 and 21) and raises
NotImplementedError naming any other op, so a new network fails loudly rather than being timed wrongly.

Every ONNX op maps onto the PyTorch op a module would have called (Conv → F.conv2d, GroupNormalization →
F.group_norm, Einsum → torch.einsum, ...), so the timings are PyTorch's eager kernels plus a dict look-up per node.
Integer tensors (shapes, axes, Reshape targets, Shape → Gather → Concat arithmetic) are NumPy arrays, computed by
NumPy outside PyTorch's dispatcher: inside functorch's transforms every PyTorch op returns a wrapped tensor that
cannot be read back into Python ints. Under vmap the graph is called on one row at a time with a batch axis of 1
(see `ScoreFunction.score_one`).

Needs only torch, numpy and onnx (Debian's /usr/bin/python3 has all three).
"""
import math

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

ONNX_DTYPES = {1: torch.float32, 6: torch.int32, 7: torch.int64, 9: torch.bool, 11: torch.float64}


def _ints(value):
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _pads2d(pads):
    """ONNX pads [top, left, bottom, right] → symmetric padding for F.conv2d, or an error for asymmetric ones."""
    pads = list(pads or [0, 0, 0, 0])
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise NotImplementedError(f"asymmetric conv pads {pads}")
    return pads[:2]


def _conv(x, w, b, a):
    if w.dim() != 4:
        raise NotImplementedError("only 2-D convolutions")
    return F.conv2d(x, w, b, stride=a.get("strides", [1, 1]), padding=_pads2d(a.get("pads")),
                    dilation=a.get("dilations", [1, 1]), groups=a.get("group", 1))


def _conv_transpose(x, w, b, a):
    if "output_shape" in a:
        raise NotImplementedError("ConvTranspose with output_shape")
    return F.conv_transpose2d(x, w, b, stride=a.get("strides", [1, 1]), padding=_pads2d(a.get("pads")),
                              output_padding=a.get("output_padding", [0, 0]), groups=a.get("group", 1),
                              dilation=a.get("dilations", [1, 1]))


def _gemm(a_, b_, c, a):
    if a.get("transA", 0):
        a_ = a_.t()
    if a.get("transB", 0):
        b_ = b_.t()
    y = a.get("alpha", 1.0) * (a_ @ b_)
    return y if c is None else y + a.get("beta", 1.0) * c


def _group_norm(x, scale, bias, a):
    groups, channels = a["num_groups"], x.shape[1]
    if scale.numel() == groups and groups != channels:  # opset 18 semantics: one scale per group
        scale, bias = scale.repeat_interleave(channels // groups), bias.repeat_interleave(channels // groups)
    return F.group_norm(x, groups, scale, bias, a.get("epsilon", 1e-5))


def _instance_norm(x, scale, bias, a):
    # Written out (mean and biased variance over the spatial axes) rather than F.instance_norm, whose batching
    # rule functorch 1.13 may lack; the TorchScript exporter emits it for GroupNorm (Reshape → InstanceNorm → Reshape).
    axes = tuple(range(2, x.dim()))
    mean = x.mean(dim=axes, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=axes, keepdim=True)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean) / torch.sqrt(var + a.get("epsilon", 1e-5)) * scale.reshape(shape) + bias.reshape(shape)


def _layer_norm(x, scale, bias, a):
    axis = a.get("axis", -1) % x.dim()
    return F.layer_norm(x, x.shape[axis:], scale, bias, a.get("epsilon", 1e-5))


def _reshape(x, shape, a):
    target = _ints(shape)
    if not a.get("allowzero", 0):
        target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
    return x.reshape(target)


def _slice(x, starts, ends, axes=None, steps=None):
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) if axes is not None else list(range(len(starts)))
    steps = _ints(steps) if steps is not None else [1] * len(starts)
    index = [slice(None)] * x.dim()
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st <= 0:
            raise NotImplementedError("Slice with a non-positive step")
        n = x.shape[ax]
        s, e = max(0, s + n if s < 0 else min(s, n)), max(0, e + n if e < 0 else min(e, n))
        index[ax] = slice(s, e, st)
    return x[tuple(index)]


def _split(x, split, a, outputs):
    axis = a.get("axis", 0)
    if split is not None:
        return list(torch.split(x, _ints(split), dim=axis))
    return list(torch.chunk(x, a.get("num_outputs", outputs), dim=axis))


def _squeeze(x, axes=None):
    if axes is None:
        return x.squeeze()
    for ax in sorted((a % x.dim() for a in _ints(axes)), reverse=True):
        x = x.squeeze(ax)
    return x


def _unsqueeze(x, axes):
    rank = x.dim() + len(_ints(axes))
    for ax in sorted(a % rank for a in _ints(axes)):
        x = x.unsqueeze(ax)
    return x


def _gather(x, indices, a):
    axis = a.get("axis", 0) % x.dim()
    idx = torch.where(indices < 0, indices + x.shape[axis], indices)
    out = torch.index_select(x, axis, idx.reshape(-1))
    return out.reshape(x.shape[:axis] + idx.shape + x.shape[axis + 1:])


def _resize(x, roi, scales, sizes, a):
    mode = _text(a.get("mode", "nearest"))
    if mode != "nearest" or _text(a.get("coordinate_transformation_mode", "half_pixel")) != "asymmetric":
        raise NotImplementedError(f"Resize mode {mode} with {a.get('coordinate_transformation_mode')}")
    if sizes is not None and np.asarray(sizes).size:
        return F.interpolate(x, size=_ints(sizes)[2:], mode="nearest")
    factors = [float(s) for s in np.asarray(scales).reshape(-1)]
    return F.interpolate(x, scale_factor=factors[2:], mode="nearest")


def _div(a_, b_):
    if not a_.is_floating_point() and not b_.is_floating_point():
        return torch.div(a_, b_, rounding_mode="trunc")
    return a_ / b_


def _constant(a):
    if "value" in a:
        return _array(numpy_helper.to_array(a["value"]), torch.float32)
    for key in ("value_float", "value_floats"):
        if key in a:
            return torch.tensor(a[key], dtype=torch.float32)
    for key in ("value_int", "value_ints"):
        if key in a:
            return np.array(a[key], dtype=np.int64)
    raise NotImplementedError(f"Constant with {list(a)}")


NUMPY_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}


def _np_div(a_, b_):
    quotient = np.true_divide(a_, b_)
    return quotient.astype(np.result_type(a_, b_)) if np.issubdtype(np.result_type(a_, b_), np.integer) else quotient


# Shape arithmetic on NumPy integer arrays: used when every input of one of these ops is a NumPy array (Shape always).
NUMPY_OPS = {
    "Shape": lambda i, a, n: np.array(list(i[0].shape), dtype=np.int64),
    "Add": lambda i, a, n: i[0] + i[1],
    "Sub": lambda i, a, n: i[0] - i[1],
    "Mul": lambda i, a, n: i[0] * i[1],
    "Div": lambda i, a, n: _np_div(i[0], i[1]),
    "Concat": lambda i, a, n: np.concatenate([np.atleast_1d(v) for v in i], axis=a["axis"]),
    "Gather": lambda i, a, n: np.take(i[0], np.asarray(i[1]), axis=a.get("axis", 0)),
    "Unsqueeze": lambda i, a, n: np.expand_dims(i[0], tuple(sorted(x % (i[0].ndim + len(_ints(i[1]))) for x in _ints(i[1])))),
    "Squeeze": lambda i, a, n: np.squeeze(i[0]) if len(i) < 2 or i[1] is None else np.squeeze(i[0], tuple(_ints(i[1]))),
    "Cast": lambda i, a, n: i[0].astype(NUMPY_DTYPES[a["to"]]),
    "Reshape": lambda i, a, n: np.reshape(i[0], _ints(i[1])),
    "Slice": lambda i, a, n: _slice(*i),
    "Identity": lambda i, a, n: i[0],
}


# Inputs that are parameters of the op (shapes, axes, sizes), read as Python ints: they stay NumPy in the PyTorch path.
PARAMETER_INPUTS = {"Reshape": (1,), "Slice": (1, 2, 3, 4), "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,),
                    "Resize": (1, 2, 3)}


# Each entry: (inputs, attributes, number of outputs) → output tensor or list of them. Missing optional inputs
# (empty names) arrive as None.
OPS = {
    "Add": lambda i, a, n: i[0] + i[1],
    "Sub": lambda i, a, n: i[0] - i[1],
    "Mul": lambda i, a, n: i[0] * i[1],
    "Div": lambda i, a, n: _div(i[0], i[1]),
    "Pow": lambda i, a, n: torch.pow(i[0], i[1]),
    "Neg": lambda i, a, n: -i[0],
    "Abs": lambda i, a, n: i[0].abs(),
    "Sqrt": lambda i, a, n: torch.sqrt(i[0]),
    "Reciprocal": lambda i, a, n: torch.reciprocal(i[0]),
    "Exp": lambda i, a, n: torch.exp(i[0]),
    "Log": lambda i, a, n: torch.log(i[0]),
    "Sin": lambda i, a, n: torch.sin(i[0]),
    "Cos": lambda i, a, n: torch.cos(i[0]),
    "Erf": lambda i, a, n: torch.erf(i[0]),
    "Tanh": lambda i, a, n: torch.tanh(i[0]),
    "Sigmoid": lambda i, a, n: torch.sigmoid(i[0]),
    "Relu": lambda i, a, n: torch.relu(i[0]),
    "Softplus": lambda i, a, n: F.softplus(i[0]),
    "Gelu": lambda i, a, n: F.gelu(i[0], approximate=_text(a.get("approximate", "none"))),
    "Softmax": lambda i, a, n: torch.softmax(i[0], dim=a.get("axis", -1)),
    "MatMul": lambda i, a, n: torch.matmul(i[0], i[1]),
    "Gemm": lambda i, a, n: _gemm(i[0], i[1], i[2] if len(i) > 2 else None, a),
    "Einsum": lambda i, a, n: torch.einsum(_text(a["equation"]), *i),
    "Conv": lambda i, a, n: _conv(i[0], i[1], i[2] if len(i) > 2 else None, a),
    "ConvTranspose": lambda i, a, n: _conv_transpose(i[0], i[1], i[2] if len(i) > 2 else None, a),
    "GroupNormalization": lambda i, a, n: _group_norm(i[0], i[1], i[2], a),
    "InstanceNormalization": lambda i, a, n: _instance_norm(i[0], i[1], i[2], a),
    "LayerNormalization": lambda i, a, n: _layer_norm(i[0], i[1], i[2] if len(i) > 2 else None, a),
    "Resize": lambda i, a, n: _resize(i[0], *(list(i[1:]) + [None] * 3)[:3], a),
    "Reshape": lambda i, a, n: _reshape(i[0], i[1], a),
    "Transpose": lambda i, a, n: i[0].permute(a["perm"]) if "perm" in a else i[0].permute(*reversed(range(i[0].dim()))),
    "Concat": lambda i, a, n: torch.cat(list(i), dim=a["axis"]),
    "Split": lambda i, a, n: _split(i[0], i[1] if len(i) > 1 else None, a, n),
    "Slice": lambda i, a, n: _slice(*i),
    "Squeeze": lambda i, a, n: _squeeze(*i),
    "Unsqueeze": lambda i, a, n: _unsqueeze(*i),
    "Gather": lambda i, a, n: _gather(i[0], i[1], a),
    "Cast": lambda i, a, n: i[0].to(ONNX_DTYPES[a["to"]]),
    "Identity": lambda i, a, n: i[0],
    "Constant": lambda i, a, n: _constant(a),
}


def _array(value, dtype):
    """Floating constants as PyTorch tensors of `dtype`; integer ones stay NumPy (shape arithmetic)."""
    if np.issubdtype(value.dtype, np.floating):
        return torch.from_numpy(value.copy()).to(dtype)
    return value.copy()


class OnnxGraph:
    """The raw network of an ONNX file: `graph(x, time_feed)` → the first output, in PyTorch ops."""

    def __init__(self, path, dtype=torch.float32):
        model = onnx.load(path)
        self.graph = model.graph
        unknown = sorted({n.op_type for n in self.graph.node if n.op_type not in OPS and n.op_type not in NUMPY_OPS or n.domain not in ("", "ai.onnx")})
        if unknown:
            raise NotImplementedError(f"{path}: ops without a PyTorch mapping here: {', '.join(unknown)}")
        self.metadata = {p.key: p.value for p in model.metadata_props}
        self.constants = {init.name: _array(numpy_helper.to_array(init), dtype) for init in self.graph.initializer}
        for node in self.graph.node:  # float parameters (Resize scales) stay NumPy too: read as Python numbers
            for k in PARAMETER_INPUTS.get(node.op_type, ()):
                if k < len(node.input) and torch.is_tensor(self.constants.get(node.input[k])):
                    self.constants[node.input[k]] = self.constants[node.input[k]].numpy()
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n)) for n in self.graph.node]
        self.inputs = [i.name for i in self.graph.input if i.name not in self.constants]
        self.output = self.graph.output[0].name

    def __call__(self, x, time_feed):
        values = dict(self.constants)
        values[self.inputs[0]], values[self.inputs[1]] = x, time_feed
        for op, inputs, outputs, attrs in self.nodes:
            args = [values[name] if name else None for name in inputs]
            if op in NUMPY_OPS and (op == "Shape" or all(a is None or isinstance(a, np.ndarray) for a in args)):
                result = np.asarray(NUMPY_OPS[op](args, attrs, len(outputs)))
            else:
                keep = PARAMETER_INPUTS.get(op, ())
                args = [torch.from_numpy(a) if isinstance(a, np.ndarray) and k not in keep else a
                        for k, a in enumerate(args)]
                result = OPS[op](args, attrs, len(outputs))
            if isinstance(result, (list, tuple)):
                values.update(zip(outputs, result))
            else:
                values[outputs[0]] = result
        return values[self.output]


def schedule(metadata, t):
    """(α(t), std(t)) of the file's schedule (spec/model-format.md), as tensors like t."""
    kind = metadata["scorelens.schedule"]
    if kind == "ve-song":
        sigma = float(metadata["scorelens.sigma"])
        return torch.ones_like(t), torch.sqrt((sigma ** (2 * t) - 1) / (2 * math.log(sigma)))
    if kind == "ve":
        lo, hi = float(metadata["scorelens.sigma_min"]), float(metadata["scorelens.sigma_max"])
        return torch.ones_like(t), lo * (hi / lo) ** t
    if kind == "vp":
        b0, b1 = float(metadata["scorelens.beta_min"]), float(metadata["scorelens.beta_max"])
        integral = b0 * t + 0.5 * t * t * (b1 - b0)
        return torch.exp(-0.5 * integral), torch.sqrt(-torch.expm1(-integral))
    raise NotImplementedError(f"schedule {kind}")


class ScoreFunction:
    """s(x, t) of a network and the file's metadata: the time input fed as the metadata says, the output turned into
    the score (score; epsilon → −ε/std; denoiser → (α·D − x)/std²; v → ε = α·v + std·x, then −ε/std), as scorelens
    does (docs/networks.md)."""

    def __init__(self, network, metadata):
        self.network, self.metadata = network, metadata
        self.kind = metadata["scorelens.parameterization"]
        self.time_input = metadata.get("scorelens.time_input", "t")
        if self.time_input not in ("t", "sigma"):
            raise NotImplementedError(f"time input {self.time_input}")

    def __call__(self, x, t):
        alpha, std = schedule(self.metadata, t)
        out = self.network(x, std if self.time_input == "sigma" else t)
        shape = (-1,) + (1,) * (x.dim() - 1)
        alpha, std = alpha.reshape(shape), std.reshape(shape)
        if self.kind == "score":
            return out
        if self.kind == "epsilon":
            return -out / std
        if self.kind == "denoiser":
            return (alpha * out - x) / std ** 2
        if self.kind == "v":
            return -(alpha * out + std * x) / std
        raise NotImplementedError(f"parameterization {self.kind}")

    def score_one(self, row, t_one):
        """One row (no batch axis) → its score, for vmap(jacfwd / jacrev): the graph sees a batch of 1."""
        return self(row[None], t_one)[0]


def metadata_of(path):
    return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}


def relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
