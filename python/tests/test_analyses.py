"""The analyses from Python against the command line: for the same inputs every array equals the CLI's file bit
for bit, `save(directory)` writes the CLI's files, shards joined by `sl.merge` equal the whole run, and bad inputs
raise with the CLI's words. Small sizes (the fixture MLP, D = 16, 8 rows) keep the CI run short.
"""

import ast
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

import scorelens as sl

from test_api import CLI, FIXTURES, MLP, cli  # noqa: F401 (cli is a fixture)

X = np.load(FIXTURES / "mlp_silu" / "x.npy")
T = np.load(FIXTURES / "mlp_silu" / "t.npy")

# Per-run values: the wall time, and the run's signature in shard.json (the CLI's command line, Python's call).
VARYING = {"seconds", "seconds_per_step"}

needs_cli = pytest.mark.skipif(CLI is None, reason="no CLI binary: cargo build --profile ci, or set SCORELENS_BIN")


@pytest.fixture(scope="module")
def mlp():
    return sl.load(str(MLP))


def run_cli(cli, *args, name="cli_out"):  # noqa: F811
    out = cli.folder / name
    done = cli.run(*args, "-o", out)
    assert done.returncode == 0, done.stderr
    return out


def same_as_cli(result, out: Path, tmp_path: Path):
    """Every array equals the CLI's file (values, dtype, shape), and save() writes the CLI's files byte for byte."""
    written = sorted(p.name for p in out.iterdir() if p.suffix == ".npy")
    assert sorted(f"{n}.npy" for n in result.names) == written
    for name in result.names:
        want = np.load(out / f"{name}.npy")
        got = getattr(result, name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got, want), f"{name}: max difference {np.max(np.abs(got - want))}"
    saved = tmp_path / "saved"
    result.save(saved)
    for path in out.iterdir():
        if path.suffix in (".npy", ".jsonl"):
            assert (saved / path.name).read_bytes() == path.read_bytes(), path.name
    want = json.loads((out / "summary.json").read_text())
    got = json.loads((saved / "summary.json").read_text())
    assert got == result.summary
    assert {k: v for k, v in got.items() if k not in VARYING} == {k: v for k, v in want.items() if k not in VARYING}
    assert (saved / "shard.json").exists() == (out / "shard.json").exists()


def inputs(cli):  # noqa: F811
    return cli.save("x.npy", X), cli.save("t.npy", T)


@needs_cli
@pytest.mark.parametrize("method", ["dense", "rsvd", "krylov", "auto"])
def test_spectrum_equals_the_cli(cli, mlp, tmp_path, method):  # noqa: F811
    x, t = inputs(cli)
    out = run_cli(cli, "spectrum", MLP, "--x", x, "--t", t, "--k", 5, "--method", method, "--vectors")
    result = sl.spectrum(mlp, X, T, k=5, method=method, vectors=True)
    assert result.analysis == "spectrum" and result.singular_values.shape == (8, 5)
    same_as_cli(result, out, tmp_path)


@needs_cli
@pytest.mark.parametrize("directions", ["axes", "random"])
def test_descriptors_equal_the_cli(cli, mlp, tmp_path, directions):  # noqa: F811
    x, t = inputs(cli)
    out = run_cli(cli, "descriptors", MLP, "--x", x, "--t", t, "--map", "score", "--k", 6, "--directions", directions,
                  "--n-directions", 5, "--seed", 3)
    result = sl.descriptors(mlp, X, T, map="score", k=6, directions=directions, n_directions=5, seed=3)
    same_as_cli(result, out, tmp_path)


@needs_cli
def test_descriptors_by_krylov_equal_the_cli_and_say_so(cli, mlp, tmp_path):  # noqa: F811
    x, t = inputs(cli)
    out = run_cli(cli, "descriptors", MLP, "--x", x, "--t", t, "--k", 4, "--method", "krylov")
    result = sl.descriptors(mlp, X, T, k=4, method="krylov")
    assert result.summary["method"] == "krylov" and result.summary["method_requested"] == "krylov"
    assert all(row["converged"] for row in result.summary["rows"])
    same_as_cli(result, out, tmp_path)


@needs_cli
def test_sample_equals_the_cli(cli, mlp, tmp_path):  # noqa: F811
    out = run_cli(cli, "sample", MLP, "--n", 5, "--steps", 20, "--sampler", "em", "--seed", 4,
                  "--record-sigmas", "10,1")
    result = sl.sample(mlp, 5, 20, sampler="em", seed=4, record_sigmas=[10, 1])
    assert result.recorded.shape == (2, 5, 16) and result.recorded_t.shape == (2,)
    same_as_cli(result, out, tmp_path)


@needs_cli
def test_sample_from_given_points_equals_the_cli(cli, mlp, tmp_path):  # noqa: F811
    out = run_cli(cli, "sample", MLP, "--x-init", cli.save("x.npy", X), "--steps", 12, "--sampler", "ode-heun")
    result = sl.sample(mlp, steps=12, sampler="ode-heun", x_init=X)
    assert result.names == ["samples"]
    same_as_cli(result, out, tmp_path)


@needs_cli
def test_lyapunov_equals_the_cli(cli, mlp, tmp_path):  # noqa: F811
    x = cli.save("x.npy", X)
    out = run_cli(cli, "lyapunov", MLP, "--x-init", x, "--steps", 10, "--sampler", "em", "--k", 3, "--clv",
                  "--qr-every", 2, "--seed", 2)
    result = sl.lyapunov(mlp, X, 10, sampler="em", k=3, clv=True, qr_every=2, seed=2)
    assert result.exponents.shape == (8, 3) and result.clv.shape == (8, 3, 16)
    same_as_cli(result, out, tmp_path / "sampler")
    flow = run_cli(cli, "lyapunov", MLP, "--flow", "--x0", x, "--steps", 8, "--dt", 0.02, "--t", 0.5,
                   "--tangents", "axes", "--k", 2, name="flow_out")
    result = sl.lyapunov(mlp, flow=True, x0=X, steps=8, dt=0.02, t=0.5, tangents="axes", k=2)
    same_as_cli(result, flow, tmp_path / "flow")


@needs_cli
def test_shards_saved_from_python_merge_into_the_whole_run(cli, mlp, tmp_path):  # noqa: F811
    whole = sl.spectrum(mlp, X, T, k=4, method="rsvd")
    parts = []
    for i in range(3):
        part = sl.spectrum(mlp, X, T, k=4, method="rsvd", shard=(i, 3))
        assert part.singular_values.shape[0] == [2, 3, 3][i]
        parts.append(tmp_path / f"part{i}")
        part.save(parts[-1])
    sl.merge(tmp_path / "merged", parts)
    whole.save(tmp_path / "whole")
    for name in whole.names:
        merged = np.load(tmp_path / "merged" / f"{name}.npy")
        assert np.array_equal(merged, getattr(whole, name)), name
    # A shard equals the CLI's shard, manifest rows included.
    out = run_cli(cli, "spectrum", MLP, "--x", cli.save("x.npy", X), "--t", cli.save("t.npy", T), "--k", 4,
                  "--method", "rsvd", "--shard", "1/3")
    shard = sl.spectrum(mlp, X, T, k=4, method="rsvd", shard=(1, 3))
    for name in shard.names:
        assert np.array_equal(getattr(shard, name), np.load(out / f"{name}.npy")), name
    manifest = json.loads((tmp_path / "part1" / "shard.json").read_text())
    want = json.loads((out / "shard.json").read_text())
    assert {k: manifest[k] for k in ("shard", "index", "count", "rows", "total_rows", "axis", "same")} == {
        k: want[k] for k in ("shard", "index", "count", "rows", "total_rows", "axis", "same")
    }


def test_sampler_shards_and_two_devices_give_the_whole_runs_rows(mlp):
    whole = sl.sample(mlp, 7, 10, sampler="em", seed=1, record_sigmas=[5.0])
    rows = [sl.sample(mlp, 7, 10, sampler="em", seed=1, record_sigmas=[5.0], shard=(i, 2)) for i in range(2)]
    assert np.array_equal(np.concatenate([r.samples for r in rows]), whole.samples)
    assert np.array_equal(np.concatenate([r.recorded for r in rows], axis=1), whole.recorded)
    two = sl.sample(mlp, 7, 10, sampler="em", seed=1, record_sigmas=[5.0], devices=[0, 0])
    assert np.array_equal(two.samples, whole.samples)
    assert two.summary["devices"] == 2


def test_memory_order_and_precision_do_not_change_the_analyses(mlp):
    fortran64 = np.asfortranarray(X.astype(np.float64))
    assert not fortran64.flags.c_contiguous
    for run in (
        lambda x, t: sl.spectrum(mlp, x, t, k=4),
        lambda x, t: sl.descriptors(mlp, x, t),
        lambda x, t: sl.lyapunov(mlp, x, 5, k=2),
    ):
        a, b = run(np.ascontiguousarray(X, np.float32), T.astype(np.float32)), run(fortran64, T.astype(np.float64))
        for name in a.names:
            assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_objects_with_array_are_accepted(mlp):
    class Tensor:  # what a CPU torch tensor offers numpy
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a if dtype is None else self.a.astype(dtype)

    a = sl.descriptors(mlp, Tensor(X), Tensor(T))
    assert np.array_equal(a.local_rank, sl.descriptors(mlp, X, T).local_rank)


def test_results_name_their_arrays(mlp):
    result = sl.descriptors(mlp, X[:2], 0.5)
    assert result.names == ["local_scaling", "local_rank", "local_complexity"]
    assert result.local_complexity.dtype == np.int64
    assert "local_rank" in dir(result) and "local_rank(2,)" in repr(result)
    with pytest.raises(AttributeError, match='descriptors result has no array "nothing"; it has local_scaling'):
        result.nothing


@needs_cli
def test_bad_inputs_raise_with_the_cli_words(cli, mlp):  # noqa: F811
    x, t = inputs(cli)
    cases = [
        (("spectrum", MLP, "--x", x, "--t", t, "--k", 17), lambda: sl.spectrum(mlp, X, T, k=17), "--k", "k"),
        (("spectrum", MLP, "--x", x, "--t", t, "--shard", "3/3"), lambda: sl.spectrum(mlp, X, T, shard=(3, 3)),
         "--shard", "shard"),
        (("descriptors", MLP, "--x", x, "--t", t, "--k", 0), lambda: sl.descriptors(mlp, X, T, k=0), "--k", "k"),
        (("descriptors", MLP, "--x", x, "--t", t, "--method", "qr"), lambda: sl.descriptors(mlp, X, T, method="qr"),
         "--method", "method"),
        (("sample", MLP, "--n", 3, "--snr", 0, "--sampler", "pc"), lambda: sl.sample(mlp, 3, snr=0, sampler="pc"),
         "--snr", "snr"),
        (("lyapunov", MLP, "--x-init", x, "--tangents", "up"), lambda: sl.lyapunov(mlp, X, tangents="up"),
         "--tangents", "tangents"),
    ]
    for args, call, flag, keyword in cases:
        message = cli.error(*args)
        with pytest.raises(ValueError) as raised:
            call()
        assert str(raised.value) == message.replace(flag, keyword, 1), (args, str(raised.value))
    # Arrays are named as the keywords.
    with pytest.raises(ValueError, match=r"^x: shape \[8, 5\] does not match the model"):
        sl.spectrum(mlp, X[:, :5], T)
    with pytest.raises(ValueError, match=r"^t: t = 2 at row 0 is outside \(0, 1\]"):
        sl.descriptors(mlp, X, 2.0)
    with pytest.raises(ValueError, match="method \"qr\": expected auto, dense, krylov, subspace or rsvd"):
        sl.spectrum(mlp, X, T, method="qr")
    with pytest.raises(ValueError, match="give x_init"):
        sl.lyapunov(mlp)


def test_the_stubs_name_the_analyses_parameters():
    stubs = ast.parse((Path(sl.__file__).parent / "_native.pyi").read_text())
    functions = {n.name: n for n in stubs.body if isinstance(n, ast.FunctionDef)}
    for name in ("spectrum", "descriptors", "sample", "lyapunov", "ridge", "ridge_error", "merge"):
        a = functions[name].args
        stub = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
        runtime = inspect.signature(getattr(sl, name)).parameters
        assert stub == list(runtime), name
        kinds = [p.kind for p in runtime.values()]
        assert kinds.count(inspect.Parameter.KEYWORD_ONLY) == len(a.kwonlyargs), name


# ---- ridges ----

KDE_DATA = np.load(FIXTURES / "kde" / "data.npy")  # [200, 5]
KDE_X = np.load(FIXTURES / "kde" / "x.npy")  # [16, 5]
# Training data and points for the fixture MLP (D = 16), as tests/cli_kde.rs makes them.
TRAIN = np.array([((i * 37 % 101) / 50.0) - 1.0 for i in range(40 * 16)], np.float32).reshape(40, 16)
POINTS = np.array([((i * 13 % 29) / 14.0) - 1.0 for i in range(5 * 16)], np.float32).reshape(5, 16)
TIMES = np.array([0.3, 0.5, 0.3, 0.5, 0.5], np.float32)

# The summaries name the inputs: files on the command line, arrays from Python.
NAMES = {"data", "x", "trajectory"}


def same_arrays_and_files(result, out: Path, tmp_path: Path, skip=frozenset()):
    for name in result.names:
        want = np.load(out / f"{name}.npy")
        got = getattr(result, name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got, want), name
    saved = tmp_path / "saved"
    result.save(saved)
    assert sorted(p.name for p in saved.iterdir()) == sorted(p.name for p in out.iterdir() if p.suffix != ".png")
    for path in out.glob("*.npy"):
        assert (saved / path.name).read_bytes() == path.read_bytes(), path.name
    want = json.loads((out / "summary.json").read_text())
    got = json.loads((saved / "summary.json").read_text())
    assert set(got) == set(want)
    ignore = VARYING | NAMES | skip
    assert {k: v for k, v in got.items() if k not in ignore} == {k: v for k, v in want.items() if k not in ignore}


@needs_cli
@pytest.mark.parametrize("eigensolver", ["dense", "krylov"])
def test_ridge_equals_the_cli(cli, tmp_path, eigensolver):  # noqa: F811
    out = run_cli(cli, "ridge", "--data", cli.save("data.npy", KDE_DATA), "--bandwidth", 0.4, "--x",
                  cli.save("x.npy", KDE_X), "--dim", 1, "--max-iter", 40, "--eigensolver", eigensolver)
    result = sl.ridge(KDE_DATA, KDE_X, 1, 0.4, max_iter=40, eigensolver=eigensolver)
    assert result.converged.dtype == np.bool_ and result.points.shape == (16, 5)
    assert result.summary["eigensolver"]["chosen"] == eigensolver, result.summary["eigensolver"]
    same_arrays_and_files(result, out, tmp_path)


@needs_cli
def test_ridge_error_equals_the_cli(cli, mlp, tmp_path):  # noqa: F811
    train = cli.save("train.npy", TRAIN)
    out = run_cli(cli, "ridge-error", MLP, "--data", train, "--x", cli.save("points.npy", POINTS), "--t",
                  cli.save("times.npy", TIMES), "--dim", 1)
    result = sl.ridge_error(mlp, TRAIN, POINTS, TIMES, dim=1)
    assert result.error_normal.shape == (5, 16)
    same_arrays_and_files(result, out, tmp_path / "py_points")
    # Along a recorded trajectory: from the CLI's sample folder, and from sl.sample's result.
    samples = run_cli(cli, "sample", MLP, "--n", 5, "--steps", 12, "--record-sigmas", "1,0.3", name="samples")
    phases = run_cli(cli, "ridge-error", MLP, "--data", train, "--trajectory", samples, "--dim", 1, "--max-iter", 30,
                     name="phases")
    from_folder = sl.ridge_error(mlp, TRAIN, dim=1, trajectory=samples, max_iter=30)
    assert from_folder.names == ["distance_to_ridge", "error_normal_norm", "error_tangent_norm", "t"]
    same_arrays_and_files(from_folder, phases, tmp_path / "py_phases")
    run = sl.sample(mlp, 5, 12, record_sigmas=[1, 0.3])
    from_result = sl.ridge_error(mlp, TRAIN, dim=1, trajectory=run, max_iter=30)
    for name in from_folder.names:
        assert np.array_equal(getattr(from_result, name), getattr(from_folder, name)), name


def test_ridge_shards_join_to_the_whole_run(tmp_path):
    whole = sl.ridge(KDE_DATA, KDE_X, 1, 0.4, max_iter=40)
    parts = [tmp_path / f"p{i}" for i in range(3)]
    for i, part in enumerate(parts):
        sl.ridge(KDE_DATA, KDE_X, 1, 0.4, max_iter=40, shard=(i, 3)).save(part)
    sl.merge(tmp_path / "merged", parts)
    for name in whole.names:
        assert np.array_equal(np.load(tmp_path / "merged" / f"{name}.npy"), getattr(whole, name)), name


@needs_cli
def test_bad_ridge_inputs_raise_with_the_cli_words(cli, mlp):  # noqa: F811
    data, x = cli.save("data.npy", KDE_DATA), cli.save("x.npy", KDE_X)
    message = cli.error("ridge", "--data", data, "--bandwidth", 0.4, "--x", x, "--dim", 5)
    with pytest.raises(ValueError) as raised:
        sl.ridge(KDE_DATA, KDE_X, 5, 0.4)
    assert str(raised.value) == message.replace("--dim", "dim", 1).replace(data, "data [200, 5]")
    message = cli.error("ridge-error", MLP, "--data", cli.save("train.npy", TRAIN), "--x", cli.save("p.npy", POINTS),
                        "--t", 0.3, "--dim", 16)
    with pytest.raises(ValueError) as raised:
        sl.ridge_error(mlp, TRAIN, POINTS, 0.3, dim=16)
    assert str(raised.value) == message.replace("--dim", "dim", 1)
    with pytest.raises(ValueError, match=r"^x: shape \[16, 4\] has D = 4 but data has D = 5"):
        sl.ridge(KDE_DATA, KDE_X[:, :4], 1, 0.4)
    with pytest.raises(ValueError, match="give x and t, or trajectory"):
        sl.ridge_error(mlp, TRAIN, dim=1)


def test_progress_goes_through_tqdm_when_installed_and_is_silent_otherwise(mlp, monkeypatch):
    import sys
    import types

    calls = []

    class Bar:  # tqdm.auto.tqdm's face: total, desc, update(n), close()
        def __init__(self, total=None, desc=None, leave=True):
            calls.append(("start", desc, total, leave))

        def update(self, n):
            calls.append(("update", n))

        def close(self):
            calls.append(("close",))

    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = Bar
    package = types.ModuleType("tqdm")
    package.auto = auto
    monkeypatch.setitem(sys.modules, "tqdm", package)
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    sl.spectrum(mlp, X, T, k=3)
    assert calls[0][0] == "start" and calls[0][2] == 8 and calls[0][3] is False
    assert sum(c[1] for c in calls if c[0] == "update") == 8 and calls[-1] == ("close",)
    calls.clear()
    sl.spectrum(mlp, X, T, k=3, progress=False)
    assert calls == []
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # not installed: silent, and the same arrays
    quiet = sl.spectrum(mlp, X, T, k=3, progress=False)
    assert np.array_equal(sl.spectrum(mlp, X, T, k=3).singular_values, quiet.singular_values)
