"""`sl.kde` and `sl.field` against the command line's `--kde DATA.npy` and `--field F.wgsl --dim D`: the same arrays
bit for bit for the same inputs, and bad inputs refused with the CLI's words."""

from pathlib import Path

import numpy as np
import pytest

import scorelens as sl
from test_api import Cli, cli  # noqa: F401  (the fixture)

REPO = Path(__file__).resolve().parents[2]
LORENZ = REPO / "examples" / "fields" / "lorenz63.wgsl"

# A field without field_jvp (finite differences only): a rotation plus a pull to the origin, scaled by t.
SPIRAL = """
fn field(x: State, t: f32) -> State {
    var s: State;
    for (var i = 0u; i < DIM; i++) {
        let j = (i + 1u) % DIM;
        s[i] = -x[i] * (1.0 + t) + 0.5 * x[j] * x[j];
    }
    return s;
}
"""


@pytest.fixture(scope="module")
def data():
    # 37 points in R^5 (not a multiple of any workgroup size).
    return np.random.default_rng(11).standard_normal((37, 5))


def points(rows, dim, seed):
    return np.random.default_rng(seed).standard_normal((rows, dim))


KDE_SETTINGS = [
    ([], {}),
    (["--bandwidth", "0.7"], {"bandwidth": 0.7}),
    (["--schedule", "vp", "--beta-min", "0.2", "--beta-max", "15"],
     {"schedule": "vp", "beta_min": 0.2, "beta_max": 15}),
]


@pytest.mark.parametrize("flags,keywords", KDE_SETTINGS)
def test_kde_equals_the_cli_bit_for_bit(cli, data, flags, keywords):
    model = sl.kde(data, **keywords)
    field = ["--kde", cli.save("data.npy", data), *flags]
    x = points(9, 5, 1)
    t = np.linspace(0.05, 0.9, 9)
    v = points(9, 5, 2)
    xs, ts, vs = cli.save("x.npy", x), cli.save("t.npy", t), cli.save("v.npy", v)
    assert model.dim == 5
    np.testing.assert_array_equal(model.score(x, t), cli.output("score", *field, "--x", xs, "--t", ts))
    # float64 Fortran order and float32 C order read alike.
    np.testing.assert_array_equal(model.score(np.asfortranarray(x), t), model.score(x.astype(np.float32), t))
    np.testing.assert_array_equal(model.jvp(x, t, v), cli.output("jvp", *field, "--x", xs, "--t", ts, "--v", vs))
    np.testing.assert_array_equal(model.vjp(x, t, v), cli.output("vjp", *field, "--x", xs, "--t", ts, "--u", vs))
    np.testing.assert_array_equal(model.jacobian(x, t), cli.output("jacobian", *field, "--x", xs, "--t", ts))
    np.testing.assert_array_equal(model.divergence(x, t), cli.output("divergence", *field, "--x", xs, "--t", ts))
    np.testing.assert_array_equal(
        model.divergence(x, t, probes=3, seed=4),
        cli.output("divergence", *field, "--x", xs, "--t", ts, "--probes", 3, "--seed", 4),
    )


def test_kde_score_is_the_smoothed_datas_score(data):
    # The float64 formula at a fixed bandwidth: s(x) = Σ w_i (x_i − x) / σ², w the softmax of −‖x − x_i‖²/(2σ²).
    sigma = 0.9
    x = points(4, 5, 3)
    d32 = data.astype(np.float32).astype(np.float64)
    diff = d32[None, :, :] - x.astype(np.float32).astype(np.float64)[:, None, :]
    logw = -0.5 * (diff**2).sum(-1) / sigma**2
    w = np.exp(logw - logw.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    want = (w[:, :, None] * diff).sum(1) / sigma**2
    got = sl.kde(data, bandwidth=sigma).score(x, 0.5).astype(np.float64)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5


def test_kde_refuses_bad_data_and_settings(cli, data):
    with pytest.raises(ValueError, match=r"data: shape \[37\]; expected \[N, D\]"):
        sl.kde(data[:, 0])
    bad = data.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="data") as e:
        sl.kde(bad)
    assert "row 3" in str(e.value)
    # The CLI refuses the same file, naming it where Python names the argument.
    message = cli.error("score", "--kde", cli.save("bad.npy", bad), "--x", cli.save("x.npy", points(2, 5, 0)),
                        "--t", "0.5")
    assert message.replace(str(cli.folder / "bad.npy"), "data") == str(e.value)
    with pytest.raises(ValueError, match="bandwidth -1: expected a positive number"):
        sl.kde(data, bandwidth=-1.0)
    with pytest.raises(ValueError, match="schedule \"edm\""):
        sl.kde(data, schedule="edm")
    with pytest.raises(ValueError, match="does not match"):
        sl.kde(data).score(points(2, 4, 0), 0.5)


def test_wgsl_field_with_field_jvp_equals_the_cli(cli):
    source = LORENZ.read_text()
    model = sl.field(source, 3, name=str(LORENZ))
    field = ["--field", LORENZ, "--dim", 3]
    x = points(7, 3, 5) * 5
    v = points(7, 3, 6)
    xs, vs = cli.save("x.npy", x), cli.save("v.npy", v)
    np.testing.assert_array_equal(model.score(x, 0.3), cli.output("score", *field, "--x", xs, "--t", 0.3))
    np.testing.assert_array_equal(model.jvp(x, 0.3, v), cli.output("jvp", *field, "--x", xs, "--t", 0.3, "--v", vs))
    jacobian = model.jacobian(x, 0.3)
    np.testing.assert_array_equal(jacobian, cli.output("jacobian", *field, "--x", xs, "--t", 0.3))
    np.testing.assert_array_equal(model.divergence(x, 0.3), cli.output("divergence", *field, "--x", xs, "--t", 0.3))
    # Lorenz-63's Jacobian, by hand.
    want = np.array([[[-10, 10, 0], [28 - p[2], -1, -p[0]], [p[1], p[0], -8 / 3]] for p in x.astype(np.float32)])
    assert np.abs(jacobian - want).max() < 1e-4
    assert model.describe()[2] == ("exact jvp", "field_jvp")


def test_wgsl_field_without_field_jvp_takes_finite_differences(cli):
    path = cli.folder / "spiral.wgsl"
    path.write_text(SPIRAL)
    model = sl.field(SPIRAL, 6, schedule="ve", sigma_min=0.02, sigma_max=40, name=str(path))
    field = ["--field", path, "--dim", 6, "--schedule", "ve", "--sigma-min", 0.02, "--sigma-max", 40]
    x = points(5, 6, 7)
    v = points(5, 6, 8)
    xs, vs = cli.save("x.npy", x), cli.save("v.npy", v)
    assert model.schedule == "ve (sigma_min 0.02, sigma_max 40)"
    np.testing.assert_array_equal(model.score(x, 0.6), cli.output("score", *field, "--x", xs, "--t", 0.6))
    np.testing.assert_array_equal(
        model.jvp(x, 0.6, v, method="fd"),
        cli.output("jvp", *field, "--x", xs, "--t", 0.6, "--v", vs, "--method", "fd"),
    )
    np.testing.assert_array_equal(
        model.jacobian(x, 0.6, method="fd"),
        cli.output("jacobian", *field, "--x", xs, "--t", 0.6, "--method", "fd"),
    )
    with pytest.raises(ValueError, match="no such exact derivative"):
        model.jacobian(x, 0.6)
    with pytest.raises(ValueError, match="no such exact derivative"):
        model.vjp(x, 0.6, v)


def test_wgsl_field_refuses_bad_code_with_the_clis_message(cli):
    broken = "fn field(x: State, t: f32) -> State {\n    return x * ;\n}\n"
    path = cli.folder / "broken.wgsl"
    path.write_text(broken)
    with pytest.raises(ValueError) as e:
        sl.field(broken, 2, name=str(path))
    message = cli.error("score", "--field", path, "--dim", 2, "--x", cli.save("x.npy", points(2, 2, 0)), "--t", 0.5)
    assert str(e.value) == message
    with pytest.raises(ValueError, match="dim"):
        sl.field(SPIRAL, 0)
