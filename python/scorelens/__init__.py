"""scorelens: the geometry a score-based generative model has learned, computed on any GPU.

A thin face over the scorelens Rust library (the engine behind the ``scorelens`` command line). Load a model,
then ask for its score and derivatives on NumPy batches::

    import scorelens as sl
    model = sl.load("net.onnx", parameterization="epsilon", schedule="vp", beta_min=0.1, beta_max=20)
    s = model.score(x, 0.5)          # s(x, t) = ∇ₓ log p_t(x)
    Jv = model.jvp(x, 0.5, v)        # J·v, J = ∂s/∂x
    uJ = model.vjp(x, 0.5, u)        # Jᵀ·u
    J = model.jacobian(x, 0.5)       # [B, D, D]
    div = model.divergence(x, 0.5)   # tr J (or Hutchinson's E[zᵀJz] with probes=N)

The same methods on the smoothed data (``sl.kde(data)``), a WGSL field (``sl.field(source, dim)``) and a PyTorch
module (``sl.from_torch(net, x, t, parameterization=..., schedule=...)``); ``sl.cluster`` spreads a job over the
tasks of a Slurm job array (submitit) and joins the parts.

Arrays go in as float32 or float64 in any memory order (or anything ``numpy.asarray`` takes, such as CPU torch
tensors) and come out as float32, bit for bit what the command line writes for the same inputs. Errors carry the
command line's messages: a missing file raises FileNotFoundError, a bad file, key, shape or value ValueError,
and a failure of the GPU or the environment ScorelensError.
"""

from ._native import Model, ScorelensError, __version__, adapter, load

__all__ = ["Model", "ScorelensError", "__version__", "adapter", "load"]

# The other fields and PyTorch modules as Models, and cluster runs (sl.cluster: submitit, scorelens merge).
from . import cluster  # noqa: E402
from ._native import field, kde  # noqa: E402
from .torch_export import from_torch  # noqa: E402

__all__ += ["cluster", "field", "from_torch", "kde"]
