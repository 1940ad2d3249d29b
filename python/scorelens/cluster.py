"""Cluster runs: a job split into shards, one per task of a Slurm job array, joined into the single run's arrays.

The engine is submitit (https://github.com/facebookincubator/submitit): `submitit.AutoExecutor` submits to Slurm
where Slurm is installed and runs local processes elsewhere, so the same notebook code runs on a laptop and on a
cluster::

    import scorelens as sl
    from scorelens import cluster

    # One shard of a command-line run per array task; the parts joined by `scorelens merge`.
    job = cluster.CliShard(["spectrum", "net.onnx", "--x", "x.npy", "--t", "0.5", "--k", "8"], "runs/spectrum")
    out = cluster.run_sharded(job, 16, "runs/spectrum/merged", folder="runs/submitit",
                              slurm_partition="gpu", gpus_per_node=1, timeout_min=60)

    # Or any function of (i, n) that writes shard i of n into a folder and returns the folder.
    def my_shard(i, n):
        rows = cluster.shard_rows(len(x), i, n)
        ...

A shard is a contiguous block of rows, shard i of n holding rows [i·B/n, (i+1)·B/n) (integer division), as the
command line's `--shard I/N` takes them, so parts from either join into the same arrays. Joining is the command
line's `scorelens merge` (found as SCORELENS_BIN, a build in this clone, or on PATH): `.npy` arrays along the batch
axis (or the axis a part's shard.json names), `.jsonl` lines in order, summaries kept per shard.

Nothing here imports submitit until it is needed; `pip install submitit` to use the executors.
"""

import os
import subprocess
import time
from pathlib import Path

import numpy as np

# The binary lookup lives in torch_export (it must stay a standalone file for tools/export_onnx.py).
from .torch_export import scorelens_binary

__all__ = ["CliShard", "ModelShard", "make_executor", "map", "merge", "run_sharded", "shard_rows"]


def shard_rows(rows, i, n):
    """The rows of shard i of n over `rows` rows: range(i·rows // n, (i+1)·rows // n), as `--shard i/n` takes them.

    Raises ValueError for i outside [0, n) or a shard without rows (more shards than rows), as the command line
    refuses them.
    """
    rows, i, n = int(rows), int(i), int(n)
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard ({i}, {n}): expected 0 ≤ i < n")
    block = range(i * rows // n, (i + 1) * rows // n)
    if len(block) == 0:
        raise ValueError(f"shard ({i}, {n}): takes none of the {rows} rows; use at most {rows} shards")
    return block


def make_executor(folder, cluster=None, **parameters):
    """A submitit executor: Slurm where `sbatch` is found (cluster=None) or asked for (cluster="slurm"), local
    processes with cluster="local", the calling process itself with cluster="debug".

    folder holds submitit's pickles and the tasks' logs (on a cluster: a filesystem every node sees). parameters
    go to `update_parameters`: submitit's names (timeout_min, gpus_per_node, cpus_per_task, mem_gb,
    slurm_array_parallelism, ...) and Slurm's with a `slurm_` prefix (slurm_partition, slurm_account, ...).
    """
    try:
        import submitit
    except ImportError as e:
        raise ImportError(f"scorelens.cluster needs submitit ({e}); pip install submitit") from e
    chosen = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    if parameters:
        chosen.update_parameters(**parameters)
    return chosen


def _wait(jobs, timeout_s, poll_s=0.5):
    """Waits for every job to finish; past timeout_s, cancels the unfinished ones and raises TimeoutError."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not all(job.done() for job in jobs):
        if deadline is not None and time.monotonic() > deadline:
            late = [job.job_id for job in jobs if not job.done()]
            for job in jobs:
                if not job.done():
                    job.cancel(check=False)
            raise TimeoutError(f"cluster jobs {late} unfinished after {timeout_s} s (cancelled)")
        time.sleep(poll_s)


def map(fn, *iterables, executor=None, folder=None, cluster=None, timeout_s=None, **parameters):
    """[fn(*args) for args in zip(*iterables)], each call one task of one job array; results in order.

    fn and its arguments travel pickled (cloudpickle) to the tasks; results come back the same way, so keep them
    small (a path to what a task wrote, not the arrays themselves). Without an executor, one is made from folder
    (default ./scorelens-jobs), cluster and parameters (see `make_executor`). A task that raises re-raises here
    (submitit's FailedJobError, with the task's traceback); timeout_s bounds the wait.
    """
    if executor is None:
        executor = make_executor(folder or "scorelens-jobs", cluster=cluster, **parameters)
    elif cluster is not None or parameters:
        raise ValueError("give either an executor or cluster=/parameters to make one, not both")
    columns = [list(c) for c in iterables]
    if len({len(c) for c in columns}) > 1:
        raise ValueError(f"iterables of different lengths {[len(c) for c in columns]}")
    if not columns or not columns[0]:
        return []
    jobs = executor.map_array(fn, *columns)
    _wait(jobs, timeout_s)
    return [job.result() for job in jobs]


def merge(parts, out):
    """Joins shard outputs (folders or .npy files, in shard order) into `out` with `scorelens merge`; returns
    out as a Path. The command line's error (its message) is raised as ValueError."""
    binary = scorelens_binary()
    if binary is None:
        raise FileNotFoundError(
            "scorelens merge: no scorelens binary (set SCORELENS_BIN, build target/ci or put it on PATH)")
    done = subprocess.run([binary, "merge", "-o", str(out), *[str(p) for p in parts]], capture_output=True,
                          text=True)
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        raise ValueError(f"scorelens merge: {message.removeprefix('error: ')}")
    return Path(out)


def run_sharded(fn, n_shards, out, *, executor=None, folder=None, cluster=None, timeout_s=None, **parameters):
    """Runs fn(i, n_shards) for every shard i as one job array (one task a shard), then joins the folders or
    files the calls return, in shard order, into `out` (`merge`). Returns out as a Path.

    fn is any picklable callable of (i, n) that writes shard i's outputs and returns where: a `CliShard`, a
    `ModelShard`, or your own function (module-level, so that the tasks can import it). executor, folder,
    cluster, timeout_s and parameters as in `map`.
    """
    n_shards = int(n_shards)
    if n_shards < 1:
        raise ValueError(f"n_shards={n_shards}: expected at least 1")
    parts = map(fn, range(n_shards), [n_shards] * n_shards, executor=executor, folder=folder, cluster=cluster,
                timeout_s=timeout_s, **parameters)
    return merge(parts, out)


class CliShard:
    """One shard of a command-line run: called as (i, n), runs `scorelens ARGS --shard i/n -o DIR/part-i` and
    returns that folder (or `part-i.npy` with suffix=".npy", for the commands that write one file).

    args: the command and its arguments as for the command line (paths absolute, or relative to where the tasks
    run), without --shard and -o. binary: the scorelens binary for the tasks (default: SCORELENS_BIN, a build in
    this clone, or `scorelens` on the tasks' PATH).
    """

    def __init__(self, args, out_dir, suffix="", binary=None):
        self.args = [str(a) for a in args]
        self.out_dir = str(out_dir)
        self.suffix = suffix
        self.binary = binary or scorelens_binary() or "scorelens"

    def __call__(self, i, n):
        os.makedirs(self.out_dir, exist_ok=True)
        part = os.path.join(self.out_dir, f"part-{i}{self.suffix}")
        command = [self.binary, *self.args, "--shard", f"{i}/{n}", "-o", part]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"shard {i}/{n}: {' '.join(command)} failed ({done.returncode}): "
                               f"{done.stderr.strip()}")
        return part

    def __repr__(self):
        return f"CliShard({self.args!r}, {self.out_dir!r})"


class ModelShard:
    """One shard of a Model method: called as (i, n), loads the model in the task, evaluates
    `model.METHOD(x[rows], t[rows], *args, **kwargs)` on shard i's rows and writes it as DIR/part-i/METHOD.npy;
    joined, the parts give the array of one call on all rows (bit for bit: every method works row by row, and
    divergence's probes are the one exception, drawn from the row's index in the call, so give it probes=None).

    load: a model path, or a picklable callable returning a Model (e.g. functools.partial(sl.kde, data)).
    metadata: keywords for `scorelens.load`. x: an array or the path of a .npy (memory-mapped in the task, so
    only the shard's rows are read). t: a number or an array of one t per row (sliced like x).
    """

    def __init__(self, load, method, x, t, out_dir, *args, metadata=None, **kwargs):
        self.load = load
        self.metadata = dict(metadata or {})
        self.method = method
        self.x = str(x) if isinstance(x, (str, os.PathLike)) else np.asarray(x)
        self.t = t
        self.out_dir = str(out_dir)
        self.args = args
        self.kwargs = kwargs

    def model(self):
        if callable(self.load):
            return self.load()
        from . import load

        return load(self.load, **self.metadata)

    def __call__(self, i, n):
        x = np.load(self.x, mmap_mode="r") if isinstance(self.x, str) else self.x
        rows = shard_rows(len(x), i, n)
        block = slice(rows.start, rows.stop)
        t = self.t
        if not np.isscalar(t) and np.ndim(t) > 0 and np.shape(t)[0] == len(x) and len(x) > 1:
            t = np.asarray(t)[block]
        result = getattr(self.model(), self.method)(np.ascontiguousarray(x[block]), t, *self.args, **self.kwargs)
        part = Path(self.out_dir) / f"part-{i}"
        part.mkdir(parents=True, exist_ok=True)
        np.save(part / f"{self.method}.npy", result)
        return str(part)

    def __repr__(self):
        return f"ModelShard({self.load!r}, {self.method!r}, out_dir={self.out_dir!r})"
