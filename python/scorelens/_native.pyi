"""Type stubs of the compiled module `scorelens._native` (re-exported by `scorelens`)."""

import os
from typing import List, Literal, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

# Anything numpy.asarray takes that holds float32 or float64 values: NumPy arrays in any memory order, objects
# with __array__ (CPU torch tensors), nested lists.
ArrayLike = npt.ArrayLike
Times = Union[float, ArrayLike]
Float32Array = npt.NDArray[np.float32]

class ScorelensError(RuntimeError):
    """A failure of the GPU or the environment, not of the inputs."""

class Model:
    """A score model on the GPU: s(x, t) = ∇ₓ log p_t(x) and its derivatives, for batches of points.

    x has shape [B, *row_shape] or [B, D]; t is one number for all rows or B values, each in (0, 1].
    Results are float32 with the command line's shapes. max_memory caps the job's device memory
    ("512MiB", "4GiB"; default 1 GiB).
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
    def score(self, x: ArrayLike, t: Times, *, max_memory: Optional[str] = None) -> Float32Array:
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
    ) -> Float32Array:
        """J·v with J = ∂s/∂x; v has x's shape or [B, P, *row_shape]; v's shape."""
    def vjp(self, x: ArrayLike, t: Times, u: ArrayLike, *, max_memory: Optional[str] = None) -> Float32Array:
        """Jᵀ·u with J = ∂s/∂x; u has x's shape or [B, Q, *row_shape]; u's shape."""
    def jacobian(
        self,
        x: ArrayLike,
        t: Times,
        method: Literal["forward", "reverse", "fd"] = "forward",
        *,
        max_memory: Optional[str] = None,
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
