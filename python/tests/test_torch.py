"""`sl.from_torch` on a module defined here (never saved by the user): its score, JVPs, VJPs, Jacobians and
divergences against torch.func's (functorch's on PyTorch 1.13) in float64, with CPU torch tensors as inputs.

PyTorch is optional: where it is missing these tests skip, unless SCORELENS_REQUIRE_TORCH=1 (scripts/test.sh runs
this file with Debian's python3 and python3-torch), and `from_torch` must say that it needs PyTorch.
"""

import copy
import math
import os
from pathlib import Path

import numpy as np
import pytest

import scorelens as sl

try:
    import torch
except ImportError:
    torch = None
    if os.environ.get("SCORELENS_REQUIRE_TORCH") == "1":
        raise

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

BETA_MIN, BETA_MAX = 0.1, 20.0
D = 5


def vp_std(t):
    # The VP schedule's std(t) in float64: sqrt(1 − exp(−∫β)), ∫β = β_min t + ½ t² (β_max − β_min).
    integral = BETA_MIN * t + 0.5 * t * t * (BETA_MAX - BETA_MIN)
    return torch.sqrt(-torch.expm1(-integral))


def func_transforms():
    try:
        from torch.func import jacrev, jvp, vjp, vmap
    except ImportError:
        from functorch import jacrev, jvp, vjp, vmap
    return jacrev, jvp, vjp, vmap


if torch is not None:

    class EpsilonNet(torch.nn.Module):
        """ε(x, t): an MLP on x and Fourier features of t, with two smooth activations."""

        def __init__(self, dim=D, hidden=24):
            super().__init__()
            self.inp = torch.nn.Linear(dim + 4, hidden)
            self.mid = torch.nn.Linear(hidden, hidden)
            self.out = torch.nn.Linear(hidden, dim)
            self.register_buffer("frequencies", torch.tensor([1.0, 3.0]) * math.pi)

        def forward(self, x, t):
            angles = t[:, None] * self.frequencies
            h = torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=1)
            h = torch.nn.functional.silu(self.inp(h))
            h = torch.tanh(self.mid(h))
            return self.out(h)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(3)
    net = EpsilonNet()
    return net, copy.deepcopy(net).double()


@pytest.fixture(scope="module")
def model(nets):
    example_x, example_t = torch.randn(4, D), torch.rand(4) * 0.9 + 0.1
    return sl.from_torch(nets[0], example_x, example_t, parameterization="epsilon", schedule="vp",
                         beta_min=BETA_MIN, beta_max=BETA_MAX)


def reference_score(net64):
    """s(x, t) = −ε(x, t) / std(t) for one row (x [D], t a scalar), float64."""

    def score(x, t):
        return -net64(x[None], t[None])[0] / vp_std(t)

    return score


def inputs(rows=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, D, generator=g, dtype=torch.float64) * 1.5
    t = torch.rand(rows, generator=g, dtype=torch.float64) * 0.85 + 0.1
    # The float32 values scorelens reads, as float64, so both sides see the same points.
    return x.float().double(), t.float().double()


def rel(got, want):
    got = torch.as_tensor(np.asarray(got, dtype=np.float64))
    return float(torch.linalg.norm(got - want) / torch.linalg.norm(want))


@needs_torch
def test_from_torch_loads_the_module_without_a_file_left(model, nets):
    assert model.dim == D and model.row_shape == (D,)
    assert model.schedule == "vp (beta_min 0.1, beta_max 20)"
    # The export went to a temporary file, removed once loaded.
    assert not Path(model.path).exists()
    described = dict(model.describe())
    assert (described["parameterization"], described["time input"]) == ("epsilon", "t")


@needs_torch
def test_scores_jvps_and_vjps_match_torch_func_in_float64(model, nets):
    jacrev, jvp, vjp, vmap = func_transforms()
    score = reference_score(nets[1])
    x, t = inputs()
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).float().double()
    u = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64).float().double()
    want_s = vmap(score)(x, t)
    want_jv = vmap(lambda xi, ti, vi: jvp(lambda y: score(y, ti), (xi,), (vi,))[1])(x, t, v)
    want_uj = vmap(lambda xi, ti, ui: vjp(lambda y: score(y, ti), xi)[1](ui)[0])(x, t, u)
    # CPU torch tensors go in through __array__ (float64 here, float32 below).
    assert rel(model.score(x, t), want_s) < 1e-5
    assert rel(model.jvp(x, t, v), want_jv) < 1e-4
    assert rel(model.vjp(x, t, u), want_uj) < 1e-4
    np.testing.assert_array_equal(model.score(x.float(), t.float()), model.score(x.numpy(), t.numpy()))
    np.testing.assert_array_equal(model.jvp(x.float(), t, v.float()), model.jvp(x.numpy(), t.numpy(), v.numpy()))


@needs_torch
@pytest.mark.parametrize("method", ["forward", "reverse"])
def test_jacobians_and_divergence_match_torch_func_to_1e_4(model, nets, method):
    jacrev, _, _, vmap = func_transforms()
    score = reference_score(nets[1])
    x, t = inputs(rows=9, seed=4)
    want = vmap(jacrev(score))(x, t)  # [B, D, D], row i = ∂s_i/∂x
    got = model.jacobian(x, t, method=method)
    assert got.shape == (9, D, D)
    for b in range(9):
        assert rel(got[b], want[b]) < 1e-4, f"point {b}"
    trace = torch.diagonal(want, dim1=1, dim2=2).sum(1)
    assert rel(model.divergence(x, t), trace) < 1e-4


@needs_torch
def test_from_torch_refuses_bad_examples(nets):
    with pytest.raises(ValueError, match="example_x has 4 rows but example_t has 3"):
        sl.from_torch(nets[0], torch.randn(4, D), torch.rand(3), parameterization="epsilon", schedule="vp")
    with pytest.raises(ValueError, match="unknown schedule parameters"):
        sl.from_torch(nets[0], torch.randn(2, D), torch.rand(2), parameterization="epsilon", schedule="vp",
                      beta=3)
    # A parameterization scorelens does not know: the loader's message.
    with pytest.raises(ValueError, match="parameterization"):
        sl.from_torch(nets[0], torch.randn(2, D), torch.rand(2), parameterization="flow", schedule="vp",
                      beta_min=BETA_MIN, beta_max=BETA_MAX)


@pytest.mark.skipif(torch is not None, reason="PyTorch is installed")
def test_from_torch_without_torch_says_what_it_needs():
    with pytest.raises(ImportError, match="scorelens.from_torch needs PyTorch"):
        sl.from_torch(object(), np.zeros((1, 2)), np.ones(1), parameterization="score", schedule="vp")
