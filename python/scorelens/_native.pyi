"""Type stubs of the compiled module `scorelens._native` (re-exported by `scorelens`)."""

import os
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

# Anything numpy.asarray takes that holds float32 or float64 values: NumPy arrays in any memory order, objects
# with __array__ (CPU torch tensors), nested lists.
ArrayLike = npt.ArrayLike
Times = Union[float, ArrayLike]
Float32Array = npt.NDArray[np.float32]
# shard=(i, n): the i-th of n contiguous blocks of rows (the CLI's --shard i/n); devices: "all", "0,1", an adapter
# index or a list of them (the CLI's --devices).
Shard = Tuple[int, int]
Devices = Union[str, int, Sequence[int]]

class ScorelensError(RuntimeError):
    """A failure of the GPU or the environment, not of the inputs."""

class Model:
    """A score model on the GPU: s(x, t) = ∇ₓ log p_t(x) and its derivatives, for batches of points.

    x has shape [B, *row_shape] or [B, D]; t is one number for all rows or B values, each in (0, 1].
    Results are float32 with the command line's shapes. max_memory caps the job's device memory
    ("512MiB", "4GiB"; default 1 GiB); shard=(i, n) takes the i-th of n contiguous blocks of rows and devices
    spreads the rows over GPUs (a model loaded from a file), as the CLI's --shard and --devices.
    """

    @property
    def dim(self) -> int:
        """D: the number of values in one input row."""
    @property
    def row_shape(self) -> Tuple[int, ...]:
        """The shape of one input row: (D,) or (C, H, W)."""
    @property
    def schedule(self) -> str:
        """The noise schedule as `scorelens info` prints it, e.g. "vp (beta_min 0.1, beta_max 20)"."""
    @property
    def path(self) -> str:
        """The model file this was loaded from."""
    def describe(self) -> List[Tuple[str, str]]:
        """The model's properties as `scorelens info MODEL` lists them."""
    def score(
        self,
        x: ArrayLike,
        t: Times,
        *,
        max_memory: Optional[str] = None,
        shard: Optional[Shard] = None,
        devices: Optional[Devices] = None,
    ) -> Float32Array:
        """The score s(x, t) = ∇ₓ log p_t(x); x's shape."""
    def jvp(
        self,
        x: ArrayLike,
        t: Times,
        v: ArrayLike,
        method: Literal["exact", "fd", "fd4"] = "exact",
        *,
        richardson: bool = False,
        max_memory: Optional[str] = None,
        shard: Optional[Shard] = None,
        devices: Optional[Devices] = None,
    ) -> Float32Array:
        """J·v with J = ∂s/∂x; v has x's shape or [B, P, *row_shape]; v's shape."""
    def vjp(
        self,
        x: ArrayLike,
        t: Times,
        u: ArrayLike,
        *,
        max_memory: Optional[str] = None,
        shard: Optional[Shard] = None,
        devices: Optional[Devices] = None,
    ) -> Float32Array:
        """Jᵀ·u with J = ∂s/∂x; u has x's shape or [B, Q, *row_shape]; u's shape."""
    def jacobian(
        self,
        x: ArrayLike,
        t: Times,
        method: Literal["forward", "reverse", "fd"] = "forward",
        *,
        max_memory: Optional[str] = None,
        shard: Optional[Shard] = None,
        devices: Optional[Devices] = None,
    ) -> Float32Array:
        """J = ∂s/∂x at every point: [B, D, D], row i holding ∂s_i/∂x."""
    def divergence(
        self,
        x: ArrayLike,
        t: Times,
        probes: Optional[int] = None,
        seed: int = 0,
        *,
        max_memory: Optional[str] = None,
        shard: Optional[Shard] = None,
        devices: Optional[Devices] = None,
    ) -> Float32Array:
        """∇ₓ·s = tr J at every point, [B]; with probes=N, Hutchinson's E[zᵀJz] over N Rademacher z."""

def load(
    path: Union[str, "os.PathLike[str]"],
    *,
    parameterization: Optional[Literal["score", "epsilon", "denoiser", "v"]] = None,
    time_input: Optional[Literal["t", "sigma", "c_noise", "log_sigma"]] = None,
    schedule: Optional[Literal["ve-song", "ve", "vp"]] = None,
    sigma: Optional[float] = None,
    sigma_min: Optional[float] = None,
    sigma_max: Optional[float] = None,
    beta_min: Optional[float] = None,
    beta_max: Optional[float] = None,
) -> Model:
    """Loads a score model (.onnx or .safetensors) onto the GPU; keywords override the file's metadata."""

def adapter() -> str:
    """The adapter scorelens computes on."""

# The other fields (sl.kde, sl.field): Models with the methods above.
Schedule = Optional[Literal["ve-song", "ve", "vp"]]

def kde(
    data: ArrayLike,
    bandwidth: Optional[float] = None,
    schedule: Schedule = None,
    *,
    sigma: Optional[float] = None,
    sigma_min: Optional[float] = None,
    sigma_max: Optional[float] = None,
    beta_min: Optional[float] = None,
    beta_max: Optional[float] = None,
) -> Model:
    """The score of data [N, D] smoothed by the schedule (α(t), std(t)) or by a fixed bandwidth: the CLI's --kde."""

def field(
    wgsl_source: str,
    dim: int,
    schedule: Schedule = None,
    *,
    name: str = "<wgsl>",
    sigma: Optional[float] = None,
    sigma_min: Optional[float] = None,
    sigma_max: Optional[float] = None,
    beta_min: Optional[float] = None,
    beta_max: Optional[float] = None,
) -> Model:
    """A user WGSL field `fn field(x: State, t: f32) -> State` (and optionally `field_jvp`): the CLI's --field."""

# ---- analyses: each returns a Result whose arrays are named as the command line's output files ----

class Result:
    """The result of an analysis: its arrays as attributes named as the command line's files (`result.exponents`
    for exponents.npy), `summary` (summary.json as a dict) and `save(directory)` (the command line's files)."""

    @property
    def analysis(self) -> str:
        """"spectrum", "descriptors", "sample", "lyapunov", "ridge" or "ridge_error"."""
    @property
    def names(self) -> List[str]:
        """The arrays' names, in the order the command line writes them."""
    @property
    def summary(self) -> Dict[str, Any]:
        """summary.json as a dict."""
    def save(self, directory: Union[str, "os.PathLike[str]"]) -> None:
        """Writes exactly the command line's files (and shard.json for a shard) into directory."""
    def __getattr__(self, name: str) -> np.ndarray: ...

class SpectrumResult(Result):
    """sl.spectrum's arrays (the runtime type is Result)."""

    singular_values: npt.NDArray[np.float64]  # [B, k]
    residuals: npt.NDArray[np.float64]  # [B, k]
    alignment: npt.NDArray[np.float64]  # [B, k]
    overlap: npt.NDArray[np.float64]  # [B, k]
    local_dimension_threshold: npt.NDArray[np.int64]  # [B]
    local_dimension_gap: npt.NDArray[np.int64]  # [B]
    nonconservativeness: npt.NDArray[np.float64]  # [B]
    left_vectors: Float32Array  # [B, k, D], with vectors=True
    right_vectors: Float32Array  # [B, k, D], with vectors=True

class DescriptorsResult(Result):
    """sl.descriptors's arrays (the runtime type is Result)."""

    local_scaling: npt.NDArray[np.float64]  # [B]
    local_rank: npt.NDArray[np.float64]  # [B]
    local_complexity: npt.NDArray[np.int64]  # [B]

class SampleResult(Result):
    """sl.sample's arrays (the runtime type is Result)."""

    samples: Float32Array  # [n, *row_shape]
    recorded: Float32Array  # [R, n, *row_shape], with record_sigmas
    recorded_t: npt.NDArray[np.float64]  # [R], with record_sigmas

class LyapunovResult(Result):
    """sl.lyapunov's arrays (the runtime type is Result)."""

    log_growth: npt.NDArray[np.float64]  # [B, k]
    exponents: npt.NDArray[np.float64]  # [B, k]
    vectors: Float32Array  # [B, k, D]
    final_x: Float32Array  # [B, D]
    alignment: npt.NDArray[np.float64]  # [B, k]
    history: npt.NDArray[np.float64]  # [H, B, k]
    history_time: npt.NDArray[np.float64]  # [H]
    clv: Float32Array  # [B, k, D], with clv=True
    clv_x: Float32Array  # [B, D], with clv=True
    clv_alignment: npt.NDArray[np.float64]  # [B, k], with clv=True

def spectrum(
    model: Model,
    x: ArrayLike,
    t: Times,
    k: Optional[int] = None,
    method: Literal["dense", "auto", "krylov", "subspace", "rsvd"] = "dense",
    *,
    vectors: bool = False,
    tol: float = 1e-5,
    max_iter: int = 100,
    oversampling: int = 8,
    probes: int = 64,
    seed: int = 0,
    threshold_c: float = 2.0,
    shard: Optional[Shard] = None,
    devices: Optional[Devices] = None,
    max_memory: Optional[str] = None,
    progress: bool = True,
) -> SpectrumResult:
    """The spectrum of J = ∂s/∂x at every row of x, as `scorelens spectrum`."""

def descriptors(
    model: Model,
    x: ArrayLike,
    t: Times,
    *,
    map: Literal["score", "denoiser"] = "denoiser",
    k: Optional[int] = None,
    radius: float = 0.1,
    directions: Literal["axes", "random"] = "axes",
    n_directions: int = 16,
    seed: int = 0,
    method: Literal["auto", "dense", "krylov"] = "auto",
    tol: float = 1e-5,
    max_iter: int = 100,
    shard: Optional[Shard] = None,
    devices: Optional[Devices] = None,
    max_memory: Optional[str] = None,
    progress: bool = True,
) -> DescriptorsResult:
    """Local scaling ψ = Σ log σᵢ, rank ν = exp(−Σ pᵢ log pᵢ) and complexity δ, as `scorelens descriptors`.

    method: how the singular values are found, "auto" (the cheaper of dense and krylov by a cost model; the
    summary says which and why), "dense" or "krylov" (the top k by block Golub–Kahan–Lanczos to tol)."""

def sample(
    model: Model,
    n: int = 64,
    steps: int = 500,
    *,
    sampler: Literal["em", "pc", "ode-euler", "ode-heun", "ode-rk4"] = "em",
    eps: float = 1e-3,
    seed: int = 0,
    x_init: Optional[ArrayLike] = None,
    record_sigmas: Sequence[float] = ...,
    snr: float = 0.16,
    shard: Optional[Shard] = None,
    devices: Optional[Devices] = None,
    max_memory: Optional[str] = None,
    progress: bool = True,
) -> SampleResult:
    """Samples by a reverse-SDE or probability-flow ODE sampler, as `scorelens sample`."""

def lyapunov(
    model: Model,
    x_init: Optional[ArrayLike] = None,
    steps: int = 500,
    *,
    sampler: Literal["em", "ode-euler", "ode-heun", "ode-rk4"] = "ode-euler",
    eps: float = 1e-3,
    k: Optional[int] = None,
    clv: bool = False,
    seed: int = 0,
    qr_every: int = 1,
    tangents: Literal["random", "axes"] = "random",
    flow: bool = False,
    x0: Optional[ArrayLike] = None,
    dt: float = 0.01,
    transient: int = 0,
    t: float = 1.0,
    shard: Optional[Shard] = None,
    devices: Optional[Devices] = None,
    max_memory: Optional[str] = None,
    progress: bool = True,
) -> LyapunovResult:
    """Lyapunov exponents and vectors of a sampler or a flow, as `scorelens lyapunov`."""

class RidgeResult(Result):
    """sl.ridge's arrays (the runtime type is Result)."""

    points: Float32Array  # [B, D]
    converged: npt.NDArray[np.bool_]  # [B]
    iterations: npt.NDArray[np.int64]  # [B]
    eigenvalues: npt.NDArray[np.float64]  # [B, D]
    eigengap: npt.NDArray[np.float64]  # [B]
    normal_ratio: npt.NDArray[np.float64]  # [B]

class RidgeErrorResult(Result):
    """sl.ridge_error's arrays (the runtime type is Result): at points x (error_normal, error_tangent [B, D], their
    norms [B]) or along a trajectory (distance_to_ridge, error_normal_norm, error_tangent_norm [R, N], t [R])."""

    error_normal: npt.NDArray[np.float64]
    error_tangent: npt.NDArray[np.float64]
    error_normal_norm: npt.NDArray[np.float64]
    error_tangent_norm: npt.NDArray[np.float64]
    distance_to_ridge: npt.NDArray[np.float64]
    t: npt.NDArray[np.float64]

def ridge(
    data: ArrayLike,
    x: ArrayLike,
    dim: int,
    bandwidth: float,
    *,
    beta: float = 0.0,
    tol: float = 1e-4,
    max_iter: int = 500,
    eigensolver: Literal["auto", "dense", "krylov"] = "auto",
    shard: Optional[Shard] = None,
    devices: Optional[Devices] = None,
    max_memory: Optional[str] = None,
    progress: bool = True,
) -> RidgeResult:
    """Density ridges of p(x) = (1/N) Σ N(x; dataᵢ, bandwidth² I) by SCMS from every row of x, as `scorelens ridge`."""

def ridge_error(
    model: Model,
    data: ArrayLike,
    x: Optional[ArrayLike] = None,
    t: Optional[Times] = None,
    *,
    dim: int,
    trajectory: Optional[Union[str, "os.PathLike[str]", Result]] = None,
    tol: float = 1e-4,
    max_iter: int = 300,
    eigensolver: Literal["auto", "dense", "krylov"] = "auto",
    shard: Optional[Shard] = None,
    devices: Optional[Devices] = None,
    max_memory: Optional[str] = None,
    progress: bool = True,
) -> RidgeErrorResult:
    """e = s_θ − ∇log p_t split normal and tangent to the d-dimensional ridges of p_t, as `scorelens ridge-error`."""

def merge(output: Union[str, "os.PathLike[str]"], parts: List[Union[str, "os.PathLike[str]"]]) -> None:
    """Joins the shards' saved folders (or .npy files), in shard order, as `scorelens merge -o OUTPUT PART...`."""
