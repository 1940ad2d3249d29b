"""Cluster runs against a real Slurm: a one-node cluster from Debian's slurm-wlm (scripts/slurm_local.sh, started
here when it is not running), jobs split over 3 array tasks and joined by `scorelens merge`, equal to one run bit
for bit: through `sbatch --array --wait` with the command line, and through submitit's Slurm executor with
`scorelens.cluster` (and its local executor, the laptop's path).

Slurm must start where it is installed or where SCORELENS_SLURM=required (scripts/test.sh): the tests then fail,
never skip. Without slurm-wlm installed and not required, the Slurm tests are skipped and the rest run.
"""

import filecmp
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import scorelens as sl
from scorelens import cluster
from test_api import CLI, FIXTURES, MLP, REPO

SLURM_LOCAL = REPO / "scripts" / "slurm_local.sh"
X = FIXTURES / "mlp_silu" / "x.npy"  # 8 rows: shards of 2, 3, 3
T = FIXTURES / "mlp_silu" / "t.npy"
# Every task and wait bounded: a cluster that hangs fails the test instead of the suite.
WAIT_S = 240

pytestmark = pytest.mark.skipif(CLI is None, reason="no CLI binary: cargo build --profile ci, or set SCORELENS_BIN")


def spectrum_args():
    return ["spectrum", str(MLP), "--x", str(X), "--t", str(T), "--k", "4", "--vectors"]


def lyapunov_args(x_init):
    return ["lyapunov", str(MLP), "--x-init", str(x_init), "--steps", "10", "--sampler", "em", "--k", "3", "--clv",
            "--seed", "5"]


def run_cli(*args):
    done = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, f"{args}: {done.stderr}"


def assert_same_folders(whole: Path, merged: Path):
    """Every .npy and .jsonl of the single run is in the merged folder, byte for byte."""
    names = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.suffix in (".npy", ".jsonl"))
    assert names, f"{whole} holds no arrays"
    for name in names:
        assert (merged / name).is_file(), f"{name} missing from the merged run"
        assert filecmp.cmp(whole / name, merged / name, shallow=False), f"{name} differs from the single run"


@pytest.fixture(scope="module")
def x_init(tmp_path_factory):
    # 7 starting points for the sampler's Lyapunov run (3 shards: 2, 2, 3 rows).
    path = tmp_path_factory.mktemp("x_init") / "x_init.npy"
    np.save(path, np.random.default_rng(2).standard_normal((7, sl.load(MLP).dim)).astype(np.float32) * 3)
    return path


@pytest.fixture(scope="module")
def single_runs(tmp_path_factory, x_init):
    folder = tmp_path_factory.mktemp("single")
    run_cli(*spectrum_args(), "-o", folder / "spectrum")
    run_cli(*lyapunov_args(x_init), "-o", folder / "lyapunov")
    return folder


@pytest.fixture(scope="module")
def slurm():
    """SLURM_CONF of the running one-node cluster; started (and stopped at the end) here when it is not up."""
    required = os.environ.get("SCORELENS_SLURM") == "required"
    if shutil.which("sbatch") is None and not required:
        pytest.skip("Slurm is not installed (apt-get install slurmctld slurmd slurm-client; scripts/setup.sh)")
    was_running = subprocess.run([str(SLURM_LOCAL), "status"], capture_output=True).returncode == 0
    started = subprocess.run([str(SLURM_LOCAL), "start"], capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        pytest.fail(f"the local Slurm cluster did not start:\n{started.stderr}")
    conf = started.stdout.strip().rsplit("=", 1)[-1]
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
    if not was_running:
        subprocess.run([str(SLURM_LOCAL), "stop"], capture_output=True, timeout=60)


def test_shard_rows_are_the_clis():
    # The command line's rule: shard i of n holds rows [i·B/n, (i+1)·B/n).
    assert [list(cluster.shard_rows(8, i, 3)) for i in range(3)] == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert [len(cluster.shard_rows(10, i, 4)) for i in range(4)] == [2, 3, 2, 3]
    with pytest.raises(ValueError, match="none of the 2 rows"):
        cluster.shard_rows(2, 0, 3)
    with pytest.raises(ValueError, match="0 ≤ i < n"):
        cluster.shard_rows(8, 3, 3)


def test_sbatch_array_with_the_cli_equals_one_run(slurm, tmp_path, single_runs, x_init):
    # What a user without Python writes: one batch script, one shard a task, then `scorelens merge`.
    script = tmp_path / "job.sh"
    spectrum = " ".join(spectrum_args())
    lyapunov = " ".join(lyapunov_args(x_init))
    script.write_text(f"""#!/bin/bash
#SBATCH --array=0-2
#SBATCH --output={tmp_path}/task-%a.log
set -e
i=$SLURM_ARRAY_TASK_ID
{CLI} {spectrum} --shard $i/3 -o {tmp_path}/spectrum-$i
{CLI} {lyapunov} --shard $i/3 -o {tmp_path}/lyapunov-$i
""")
    done = subprocess.run(["sbatch", "--wait", str(script)], capture_output=True, text=True, timeout=WAIT_S)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("task-*.log")))
    assert done.returncode == 0, f"sbatch: {done.stdout}{done.stderr}\n{logs}"
    for name in ("spectrum", "lyapunov"):
        parts = [tmp_path / f"{name}-{i}" for i in range(3)]
        for i, part in enumerate(parts):
            # Each part is shard i/3 of the run, as the task's manifest says.
            assert f'"{i}/3"' in (part / "shard.json").read_text()
        run_cli("merge", "-o", tmp_path / name, *parts)
        assert_same_folders(single_runs / name, tmp_path / name)


def test_submitit_slurm_run_sharded_equals_one_run(slurm, tmp_path, single_runs, x_init):
    executor = cluster.make_executor(tmp_path / "jobs", cluster="slurm", timeout_min=5)
    assert type(executor._executor).__name__ == "SlurmExecutor"
    job = cluster.CliShard(lyapunov_args(x_init), tmp_path / "parts", binary=str(CLI))
    out = cluster.run_sharded(job, 3, tmp_path / "lyapunov", executor=executor, timeout_s=WAIT_S)
    assert out == tmp_path / "lyapunov"
    assert_same_folders(single_runs / "lyapunov", out)
    # The tasks are Slurm array tasks: each sees its own index (cluster.map, one task a call).
    indices = cluster.map(os.getenv, ["SLURM_ARRAY_TASK_ID"] * 3, executor=executor, timeout_s=WAIT_S)
    assert indices == ["0", "1", "2"]


def test_submitit_slurm_model_shards_join_to_one_call(slurm, tmp_path):
    # A Model method, loaded in every task, on its rows; joined by merge.
    x = np.load(X)
    t = np.load(T)
    job = cluster.ModelShard(str(MLP), "jacobian", str(X), t, tmp_path / "parts")
    out = cluster.run_sharded(job, 3, tmp_path / "jacobian", folder=tmp_path / "jobs", cluster="slurm",
                              timeout_min=5, timeout_s=WAIT_S)
    np.testing.assert_array_equal(np.load(out / "jacobian.npy"), sl.load(MLP).jacobian(x, t))


def test_submitit_local_executor_runs_the_same_code(tmp_path, single_runs):
    # The laptop's path: the same call with cluster="local" (processes on this machine, no Slurm).
    job = cluster.CliShard(spectrum_args(), tmp_path / "parts", binary=str(CLI))
    out = cluster.run_sharded(job, 3, tmp_path / "spectrum", folder=tmp_path / "jobs", cluster="local",
                              timeout_s=WAIT_S)
    assert_same_folders(single_runs / "spectrum", out)


def test_a_failing_shard_raises_with_its_error(tmp_path):
    job = cluster.CliShard(["score", str(MLP), "--x", str(X), "--t", "2"], tmp_path / "parts", suffix=".npy",
                           binary=str(CLI))
    # submitit re-raises the task's exception (FailedJobError) with its message and traceback.
    with pytest.raises(Exception, match=r"t = 2 at row 0 is outside \(0, 1\]"):
        cluster.run_sharded(job, 2, tmp_path / "never.npy", folder=tmp_path / "jobs", cluster="local",
                            timeout_s=WAIT_S)
    assert not (tmp_path / "never.npy").exists()
    with pytest.raises(ValueError, match="n_shards=0"):
        cluster.run_sharded(job, 0, tmp_path / "never.npy", cluster="local")
