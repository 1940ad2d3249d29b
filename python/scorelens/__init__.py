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

Analyses return a Result whose attributes are NumPy arrays named as the command line's output files, and whose
``save(directory)`` writes exactly the files the command line writes::

    spec = sl.spectrum(model, x, 0.5, k=8)            # spec.singular_values [B, 8], spec.alignment, ...
    desc = sl.descriptors(model, x, 0.5)               # desc.local_scaling, desc.local_rank, desc.local_complexity
    run = sl.sample(model, 64, 500, sampler="ode-heun", record_sigmas=[1.0, 0.1])   # run.samples, run.recorded
    lyap = sl.lyapunov(model, x_init, 200, k=4)        # lyap.exponents [B, 4], lyap.vectors [B, 4, D]
    ridges = sl.ridge(data, x0, dim=1, bandwidth=0.3)  # ridges.points, ridges.converged, ridges.eigengap
    split = sl.ridge_error(model, data, x, 0.5, dim=1) # split.error_normal, split.error_tangent
    spec.save("out/")                                  # what `scorelens spectrum ... -o out/` writes

The same methods on the smoothed data (``sl.kde(data)``), a WGSL field (``sl.field(source, dim)``) and a PyTorch
module (``sl.from_torch(net, x, t, parameterization=..., schedule=...)``); ``sl.cluster`` spreads a job over the
tasks of a Slurm job array (submitit) and joins the parts.

Arrays go in as float32 or float64 in any memory order (or anything ``numpy.asarray`` takes, such as CPU torch
tensors) and come out as float32, bit for bit what the command line writes for the same inputs. Errors carry the
command line's messages: a missing file raises FileNotFoundError, a bad file, key, shape or value ValueError,
and a failure of the GPU or the environment ScorelensError.
"""

from ._native import Model, Result, ScorelensError, __version__, adapter, load
from ._native import descriptors, lyapunov, merge, ridge, ridge_error, sample, spectrum

__all__ = [
    "Model",
    "Result",
    "ScorelensError",
    "__version__",
    "adapter",
    "descriptors",
    "load",
    "lyapunov",
    "merge",
    "ridge",
    "ridge_error",
    "sample",
    "spectrum",
]

# The other fields and PyTorch modules as Models, and cluster runs (sl.cluster: submitit, scorelens merge).
from . import cluster  # noqa: E402
from ._native import field, kde  # noqa: E402
from .torch_export import from_torch  # noqa: E402

__all__ += ["cluster", "field", "from_torch", "kde"]
