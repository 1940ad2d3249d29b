"""The Python package against the command line: for the same inputs every function returns the CLI's output
arrays bit for bit, and bad inputs raise with the CLI's message.

The CLI is `target/ci/scorelens` (built by `cargo build --profile ci`, as scripts/test.sh does), or the binary
named by SCORELENS_BIN. Without either, the comparisons with the CLI are skipped; the float64 fixtures and the
error classes are still checked.
"""

import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import scorelens as sl

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
MLP = FIXTURES / "mlp_silu" / "model.safetensors"
DIT = FIXTURES / "onnx21" / "dit_v" / "model.onnx"
BAD_ONNX = FIXTURES / "onnx_bad"


def find_cli():
    given = os.environ.get("SCORELENS_BIN")
    if given:
        # Asked for explicitly (scripts/test.sh): a missing binary is a failure, not a skip.
        assert Path(given).is_file(), f"SCORELENS_BIN={given} does not exist"
        return Path(given)
    built = REPO / "target" / "ci" / "scorelens"
    return built if built.is_file() else None


CLI = find_cli()
needs_cli = pytest.mark.skipif(CLI is None, reason="no CLI binary: cargo build --profile ci, or set SCORELENS_BIN")


class Cli:
    """Runs the scorelens binary on .npy files in a temporary folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    def save(self, name: str, array) -> str:
        path = self.folder / name
        np.save(path, array)
        return str(path)

    def run(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, cwd=self.folder)

    def output(self, *args) -> np.ndarray:
        """Runs a command with `-o OUT.npy` appended and returns what it wrote."""
        out = self.folder / "out.npy"
        done = self.run(*args, "-o", out)
        assert done.returncode == 0, done.stderr
        return np.load(out)

    def error(self, *args) -> str:
        """Runs a command that must fail on the user's input: its one message, without `error: `."""
        done = self.run(*args, "-o", self.folder / "never.npy")
        assert done.returncode == 2, (done.returncode, done.stderr)
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith("error: "), done.stderr
        return line[len("error: ") :]


@pytest.fixture
def cli(tmp_path):
    if CLI is None:
        pytest.skip("no CLI binary: cargo build --profile ci, or set SCORELENS_BIN")
    return Cli(tmp_path)


@pytest.fixture(scope="module")
def mlp():
    return sl.load(MLP)


@pytest.fixture(scope="module")
def dit():
    return sl.load(DIT)


def mlp_inputs():
    x = np.load(FIXTURES / "mlp_silu" / "x.npy")
    t = np.load(FIXTURES / "mlp_silu" / "t.npy")
    rng = np.random.default_rng(7)
    v = rng.standard_normal(x.shape, dtype=np.float32)
    return x, t, v


def dit_inputs():
    folder = FIXTURES / "onnx21" / "dit_v"
    return np.load(folder / "x.npy"), np.load(folder / "t.npy"), np.load(folder / "v.npy")


CASES = {"mlp_silu": (MLP, mlp_inputs), "dit_v": (DIT, dit_inputs)}


def identical(got: np.ndarray, want: np.ndarray):
    assert got.dtype == np.float32 and want.dtype == np.float32
    assert got.shape == want.shape
    assert np.array_equal(got, want), f"max difference {np.max(np.abs(got - want))}"


# ---- the same arrays as the CLI, bit for bit ----


@needs_cli
@pytest.mark.parametrize("case", CASES)
def test_score_equals_the_cli(cli, case):
    path, inputs = CASES[case]
    x, t, _ = inputs()
    model = sl.load(path)
    want = cli.output("score", path, "--x", cli.save("x.npy", x), "--t", cli.save("t.npy", t))
    identical(model.score(x, t), want)
    # One t for all rows, as a Python number and as `--t 0.5`.
    want = cli.output("score", path, "--x", cli.save("x.npy", x), "--t", "0.5")
    identical(model.score(x, 0.5), want)


@needs_cli
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["exact", "fd", "fd4"])
def test_jvp_equals_the_cli(cli, case, method):
    path, inputs = CASES[case]
    x, t, v = inputs()
    model = sl.load(path)
    args = ["jvp", path, "--x", cli.save("x.npy", x), "--t", cli.save("t.npy", t), "--v", cli.save("v.npy", v)]
    identical(model.jvp(x, t, v, method=method), cli.output(*args, "--method", method))


@needs_cli
@pytest.mark.parametrize("case", CASES)
def test_vjp_equals_the_cli(cli, case):
    path, inputs = CASES[case]
    x, t, u = inputs()
    model = sl.load(path)
    args = ["vjp", path, "--x", cli.save("x.npy", x), "--t", cli.save("t.npy", t), "--u", cli.save("u.npy", u)]
    identical(model.vjp(x, t, u), cli.output(*args))


@needs_cli
def test_several_directions_per_point_equal_the_cli(cli, mlp):
    x, t, _ = mlp_inputs()
    v = np.random.default_rng(3).standard_normal((x.shape[0], 3, mlp.dim)).astype(np.float32)
    args = ["--x", cli.save("x.npy", x), "--t", cli.save("t.npy", t)]
    got = mlp.jvp(x, t, v)
    assert got.shape == v.shape
    identical(got, cli.output("jvp", MLP, *args, "--v", cli.save("v.npy", v)))
    identical(mlp.vjp(x, t, v), cli.output("vjp", MLP, *args, "--u", cli.save("u.npy", v)))


@needs_cli
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["forward", "reverse", "fd"])
def test_jacobian_equals_the_cli(cli, case, method):
    path, inputs = CASES[case]
    x, t, _ = inputs()
    model = sl.load(path)
    got = model.jacobian(x, t, method=method)
    assert got.shape == (x.shape[0], model.dim, model.dim)
    want = cli.output("jacobian", path, "--x", cli.save("x.npy", x), "--t", cli.save("t.npy", t), "--method", method)
    identical(got, want)


@needs_cli
@pytest.mark.parametrize("case", CASES)
def test_divergence_equals_the_cli(cli, case):
    path, inputs = CASES[case]
    x, t, _ = inputs()
    model = sl.load(path)
    args = ["divergence", path, "--x", cli.save("x.npy", x), "--t", cli.save("t.npy", t)]
    exact = model.divergence(x, t)
    assert exact.shape == (x.shape[0],)
    identical(exact, cli.output(*args))
    identical(model.divergence(x, t, probes=5, seed=3), cli.output(*args, "--probes", 5, "--seed", 3))


@needs_cli
def test_shards_and_devices_equal_the_cli(cli, mlp):
    x, t, v = mlp_inputs()
    xs, ts, vs = cli.save("x.npy", x), cli.save("t.npy", t), cli.save("v.npy", v)
    calls = {
        "score": (lambda **k: mlp.score(x, t, **k), []),
        "jvp": (lambda **k: mlp.jvp(x, t, v, **k), ["--v", vs]),
        "vjp": (lambda **k: mlp.vjp(x, t, v, **k), ["--u", vs]),
        "jacobian": (lambda **k: mlp.jacobian(x, t, **k), []),
        "divergence": (lambda **k: mlp.divergence(x, t, probes=4, seed=2, **k), ["--probes", 4, "--seed", 2]),
    }
    for command, (call, extra) in calls.items():
        whole = call()
        # Each shard (its rows keeping their index in x, so Hutchinson's probes draw as in the whole run) is the
        # CLI's shard, and the shards joined are the whole run.
        parts = []
        for i in range(3):
            part = call(shard=(i, 3))
            identical(part, cli.output(command, MLP, "--x", xs, "--t", ts, *extra, "--shard", f"{i}/3"))
            parts.append(part)
        identical(np.concatenate(parts), whole)
        # Two devices (the same adapter twice) split the rows and give the one device's arrays.
        identical(call(devices=[0, 0]), whole)
        identical(call(devices="0,0"), cli.output(command, MLP, "--x", xs, "--t", ts, *extra, "--devices", "0,0"))
    with pytest.raises(ValueError, match="none of the 8 rows"):
        mlp.score(x, t, shard=(0, 9))
    with pytest.raises(ValueError, match="devices=.*runs on one"):
        sl.kde(x).score(x, t, devices="0,0")


@needs_cli
def test_metadata_keywords_equal_the_cli_flags(cli):
    path = BAD_ONNX / "ok.onnx"
    x = np.random.default_rng(1).standard_normal((3, *sl.load(path).row_shape)).astype(np.float32)
    model = sl.load(path, schedule="ve", sigma_min=0.01, sigma_max=50)
    assert model.schedule == "ve (sigma_min 0.01, sigma_max 50)"
    want = cli.output(
        "score", path, "--x", cli.save("x.npy", x), "--t", 0.3, "--schedule", "ve", "--sigma-min", 0.01, "--sigma-max", 50
    )
    identical(model.score(x, 0.3), want)


@needs_cli
def test_describe_lists_what_info_prints(cli, dit):
    done = cli.run("info", DIT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for key, value in dit.describe():
        assert f"  {key:<20} {value}" in lines


# ---- inputs in any form ----


def test_memory_order_and_precision_do_not_change_the_result(mlp):
    x, t, v = mlp_inputs()
    want = mlp.score(x, t)
    # float64 holding the same float32 values, Fortran-ordered; a strided view; a list; an __array__ object.
    fortran64 = np.asfortranarray(x.astype(np.float64))
    assert not fortran64.flags.c_contiguous
    identical(mlp.score(fortran64, t), want)
    strided = np.repeat(x, 2, axis=0)[::2]
    assert not strided.flags.c_contiguous
    identical(mlp.score(strided, t.astype(np.float64)), want)
    identical(mlp.score(x.tolist(), list(map(float, t))), want)

    class TensorLike:
        def __array__(self, dtype=None, copy=None):
            return x if dtype is None else x.astype(dtype)

    identical(mlp.score(TensorLike(), t), want)
    v64 = np.asfortranarray(v.astype(np.float64))
    identical(mlp.jvp(fortran64, t, v64), mlp.jvp(x, t, v))
    identical(mlp.vjp(fortran64, t.astype(np.float64), v64), mlp.vjp(x, t, v))
    identical(mlp.jacobian(fortran64, t), mlp.jacobian(x, t))
    identical(mlp.divergence(fortran64, t, probes=3, seed=1), mlp.divergence(x, t, probes=3, seed=1))
    # [B, D] rows for a model whose rows are [1, 8, 8].
    x8, t8, _ = dit_inputs()
    dit = sl.load(DIT)
    identical(dit.score(x8.reshape(len(x8), -1), t8), dit.score(x8, t8).reshape(len(x8), -1))


def test_float64_fixtures_within_2e_5():
    for name in ["dit_v", "unet_attention_epsilon", "scorenet_tutorial"]:
        folder = FIXTURES / "onnx21" / name
        model = sl.load(folder / "model.onnx")
        x, t = np.load(folder / "x.npy"), np.load(folder / "t.npy")
        for got, file in [
            (model.score(x, t), "score.npy"),
            (model.jvp(x, t, np.load(folder / "v.npy")), "jvp.npy"),
            (model.vjp(x, t, np.load(folder / "u.npy")), "vjp.npy"),
        ]:
            want = np.load(folder / file)
            error = np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want)
            assert error < 2e-5, f"{name} {file}: relative error {error:.2e}"


def test_properties(dit, mlp):
    assert dit.row_shape == (1, 8, 8) and dit.dim == 64
    assert mlp.row_shape == (16,) and mlp.dim == 16
    assert dit.schedule == "vp (beta_min 0.1, beta_max 20)"
    assert dict(dit.describe())["parameterization"] == "v"
    assert "scorelens.Model(" in repr(dit)


def test_the_gil_is_released_and_threads_agree(mlp):
    x, t, _ = mlp_inputs()
    want = mlp.jacobian(x, t)
    results = [None] * 4

    def work(i):
        results[i] = mlp.jacobian(x, t)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got in results:
        identical(got, want)


# ---- bad inputs: the CLI's words ----


def test_error_classes():
    assert issubclass(sl.ScorelensError, RuntimeError)
    assert sl.ScorelensError.__module__ == "scorelens"


@needs_cli
def test_a_missing_file_is_file_not_found_with_the_cli_message(cli):
    missing = cli.folder / "missing.onnx"
    with pytest.raises(FileNotFoundError) as raised:
        sl.load(missing)
    x = cli.save("x.npy", np.zeros((1, 4), np.float32))
    assert str(raised.value) == cli.error("score", missing, "--x", x, "--t", 0.5)


@needs_cli
def test_x_of_the_wrong_shape_is_a_value_error_with_the_cli_message(cli, mlp):
    x = np.ones((3, 5), np.float32)
    path = cli.save("x.npy", x)
    with pytest.raises(ValueError) as raised:
        mlp.score(x, 0.5)
    # The CLI names the file, Python the argument: `X.npy (X): shape [3, 5] ...` reads `x: shape [3, 5] ...`.
    assert str(raised.value) == cli.error("score", MLP, "--x", path, "--t", 0.5).replace(f"{path} (X)", "x")
    assert str(raised.value).startswith("x: shape [3, 5] does not match the model")


@needs_cli
def test_bad_values_are_value_errors_with_the_cli_message(cli, mlp):
    x, t, v = mlp_inputs()
    xp, tp = cli.save("x.npy", x), cli.save("t.npy", t)
    # t outside (0, 1]: `--t 1.5` and `t`.
    with pytest.raises(ValueError) as raised:
        mlp.score(x, 1.5)
    assert str(raised.value) == cli.error("score", MLP, "--x", xp, "--t", 1.5).replace("--t 1.5", "t")
    # T of the wrong length.
    with pytest.raises(ValueError) as raised:
        mlp.score(x, t[:2])
    short = cli.save("short.npy", t[:2])
    assert str(raised.value) == cli.error("score", MLP, "--x", xp, "--t", short).replace(f"{short} (T)", "t")
    # NaN in x.
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError) as raised:
        mlp.score(bad, t)
    nan = cli.save("nan.npy", bad)
    assert str(raised.value) == cli.error("score", MLP, "--x", nan, "--t", tp).replace(f"{nan} (X)", "x")
    # Directions of the wrong shape.
    with pytest.raises(ValueError) as raised:
        mlp.jvp(x, t, v[:, :3])
    vp = cli.save("v.npy", v[:, :3])
    assert str(raised.value) == cli.error("jvp", MLP, "--x", xp, "--t", tp, "--v", vp).replace(f"{vp} (V)", "v")
    # A memory size that does not parse, and one too small for the model.
    for size in ["lots", "1KiB"]:
        with pytest.raises(ValueError) as raised:
            mlp.score(x, t, max_memory=size)
        # The same words, the parameter named as Python's keyword where the command line names its flag.
        want = cli.error("score", MLP, "--x", xp, "--t", tp, "--max-memory", size)
        assert str(raised.value) == want.replace("raise --max-memory", "raise max_memory")


@needs_cli
def test_missing_parameterization_names_the_key_and_a_keyword_fixes_it(cli):
    path = BAD_ONNX / "no_parameterization.onnx"
    with pytest.raises(ValueError) as raised:
        sl.load(path)
    assert "scorelens.parameterization" in str(raised.value)
    x = np.zeros((2, *sl.load(path, parameterization="score").row_shape), np.float32) + 0.25
    assert str(raised.value) == cli.error("score", path, "--x", cli.save("x.npy", x), "--t", 0.5)
    model = sl.load(path, parameterization="score")
    want = cli.output("score", path, "--x", cli.save("x.npy", x), "--t", 0.5, "--parameterization", "score")
    identical(model.score(x, 0.5), want)


def test_other_bad_arguments_are_value_errors(mlp):
    x, t, v = mlp_inputs()
    with pytest.raises(ValueError, match='unknown metadata key "sigmaa"'):
        sl.load(MLP, sigmaa=3)
    with pytest.raises(ValueError, match="parameterization applies to ONNX networks"):
        sl.load(MLP, parameterization="score")
    with pytest.raises(ValueError, match='method "backward": expected forward, reverse or fd'):
        mlp.jacobian(x, t, method="backward")
    with pytest.raises(ValueError, match='method "exactly": expected exact, fd or fd4'):
        mlp.jvp(x, t, v, method="exactly")
    with pytest.raises(ValueError, match="dtype <i8 is not supported"):
        mlp.score(np.ones((2, 16), np.int64), 0.5)
    with pytest.raises(ValueError, match="not_onnx.onnx: "):
        sl.load(BAD_ONNX / "not_onnx.onnx")


# ---- the type stubs describe the module ----


def test_the_stubs_name_the_runtime_parameters():
    import ast
    import inspect

    stubs = ast.parse((Path(sl.__file__).parent / "_native.pyi").read_text())

    def stub_parameters(function: ast.FunctionDef):
        a = function.args
        return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg != "self"]

    def runtime_parameters(obj):
        return [p for p in inspect.signature(obj).parameters if p not in ("self", "metadata")]

    checked = 0
    for node in stubs.body:
        if isinstance(node, ast.FunctionDef) and node.name == "adapter":
            assert runtime_parameters(sl.adapter) == []
        if isinstance(node, ast.ClassDef) and node.name == "Model":
            for method in node.body:
                if isinstance(method, ast.FunctionDef) and not any(
                    isinstance(d, ast.Name) and d.id == "property" for d in method.decorator_list
                ):
                    assert stub_parameters(method) == runtime_parameters(getattr(sl.Model, method.name)), method.name
                    checked += 1
                elif isinstance(method, ast.FunctionDef):
                    assert hasattr(sl.Model, method.name)
    assert checked == 6
    # load's keywords are the metadata keys the binding accepts.
    load = next(n for n in stubs.body if isinstance(n, ast.FunctionDef) and n.name == "load")
    keys = [p.arg for p in load.args.kwonlyargs]
    assert keys == ["parameterization", "time_input", "schedule", "sigma", "sigma_min", "sigma_max", "beta_min", "beta_max"]
    with pytest.raises(ValueError, match="expected one of " + ", ".join(keys)):
        sl.load(MLP, nonsense=1)
    assert sl.load(MLP, sigma=None).schedule == sl.load(MLP).schedule
