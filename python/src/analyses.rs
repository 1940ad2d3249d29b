//! The analyses from Python: `sl.spectrum`, `sl.descriptors`, `sl.sample`, `sl.lyapunov`. Each is one call into
//! the library's `results` module (the same functions the command line calls), returning a [`AnalysisResult`]
//! whose attributes are NumPy arrays named as the command line's output files, and whose `save(directory)` writes
//! exactly the command line's files. Keyword names mirror the command line's flags without their dashes.

use std::sync::{Arc, Mutex};

use numpy::ndarray::ArrayD;
use numpy::{Element, ToPyArray};
use pyo3::exceptions::{PyAttributeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyString};

use scorelens::analysis::lyapunov::{Dynamics, InitialTangents, LyapunovSettings};
use scorelens::analysis::ridge::{Eigensolver, ScmsSettings};
use scorelens::analysis::{DescribedMap, DescriptorMethod, DescriptorSettings, Directions, SingularValueSolver};
use scorelens::batch::{check_points, Points, Shard};
use scorelens::field::{KdeField, KdeScale};
use scorelens::results::descriptors::descriptors;
use scorelens::results::lyapunov::lyapunov;
use scorelens::results::ridge::ridge;
use scorelens::results::ridge_error::{check_data, ridge_error, ridge_phases, PhaseTable, RidgeErrorResult};
use scorelens::results::sample::{sample, Start};
use scorelens::results::spectrum::RecordedLevels;
use scorelens::results::spectrum::{spectrum, SpectrumMethod, SpectrumRequest};
use scorelens::results::{
    ArrayRef, DescriptorsResult, LyapunovResult, NamedArrays, RidgeResult, SampleResult, SpectrumResult,
};
use scorelens::sampler::{SamplerConfig, SamplerKind};
use scorelens::scheduler::{JobOptions, Progress};
use scorelens::{Error, GpuContext, ScoreField, ScoreModel};

use super::{memory_budget, read_array, read_times, to_py_err, Model, OrPyErr};

/// The library's result behind a Python result, for `save`.
enum Saved {
    Spectrum(SpectrumResult),
    Descriptors(DescriptorsResult),
    Sample(SampleResult),
    Lyapunov(LyapunovResult),
    Ridge(RidgeResult),
    RidgeError(RidgeErrorResult),
    Phases(PhaseTable),
}

impl Saved {
    /// The analysis's name, as `Result.analysis`.
    fn analysis(&self) -> &'static str {
        match self {
            Saved::Spectrum(_) => "spectrum",
            Saved::Descriptors(_) => "descriptors",
            Saved::Sample(_) => "sample",
            Saved::Lyapunov(_) => "lyapunov",
            Saved::Ridge(_) => "ridge",
            Saved::RidgeError(_) | Saved::Phases(_) => "ridge_error",
        }
    }

    /// The arrays, named as the command line's files.
    fn arrays(&self) -> NamedArrays<'_> {
        match self {
            Saved::Spectrum(r) => r.arrays(),
            Saved::Descriptors(r) => r.arrays(),
            Saved::Sample(r) => r.arrays(),
            Saved::Lyapunov(r) => r.arrays(),
            Saved::Ridge(r) => r.arrays(),
            Saved::RidgeError(r) => r.arrays(),
            Saved::Phases(r) => r.arrays(),
        }
    }

    fn save(&self, dir: &std::path::Path) -> scorelens::Result<()> {
        match self {
            Saved::Spectrum(r) => r.save(dir),
            Saved::Descriptors(r) => r.save(dir),
            Saved::Sample(r) => r.save(dir),
            Saved::Lyapunov(r) => r.save(dir),
            Saved::Ridge(r) => r.save(dir),
            Saved::RidgeError(r) => r.save(dir),
            Saved::Phases(r) => r.save(dir),
        }
    }

    fn summary(&self) -> serde_json::Value {
        match self {
            Saved::Spectrum(r) => r.summary(),
            Saved::Descriptors(r) => r.summary(),
            Saved::Sample(r) => r.summary(),
            Saved::Lyapunov(r) => r.summary(),
            Saved::Ridge(r) => r.summary(),
            Saved::RidgeError(r) => r.summary(),
            Saved::Phases(r) => r.summary(),
        }
    }
}

/// The result of an analysis: its arrays as attributes named as the command line's output files (e.g.
/// `result.singular_values` for singular_values.npy), `summary` (summary.json as a dict) and `save(directory)`
/// (the command line's files, exactly).
#[pyclass(module = "scorelens", frozen, name = "Result")]
pub struct AnalysisResult {
    analysis: &'static str,
    arrays: Vec<(String, Py<PyAny>)>,
    saved: Saved,
}

fn numpy_of<A: Element>(py: Python<'_>, a: &ArrayD<A>) -> Py<PyAny> {
    a.to_pyarray(py).into_any().unbind()
}

impl AnalysisResult {
    fn new(py: Python<'_>, saved: Saved) -> AnalysisResult {
        let arrays = saved
            .arrays()
            .into_iter()
            .map(|(name, array)| {
                let array = match array {
                    ArrayRef::F32(a) => numpy_of(py, a),
                    ArrayRef::F64(a) => numpy_of(py, a),
                    ArrayRef::I64(a) => numpy_of(py, a),
                    ArrayRef::Bool(a) => numpy_of(py, a),
                };
                (name.to_string(), array)
            })
            .collect();
        AnalysisResult { analysis: saved.analysis(), arrays, saved }
    }
}

#[pymethods]
impl AnalysisResult {
    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        match self.arrays.iter().find(|(n, _)| n == name) {
            Some((_, a)) => Ok(a.clone_ref(py)),
            None => Err(PyAttributeError::new_err(format!(
                "{} result has no array {name:?}; it has {}",
                self.analysis,
                self.names().join(", ")
            ))),
        }
    }

    fn __dir__(&self) -> Vec<String> {
        let mut names = self.names();
        names.extend(["analysis", "names", "save", "summary"].map(String::from));
        names
    }

    /// The analysis that made this result: "spectrum", "descriptors", "sample", "lyapunov", "ridge" or
    /// "ridge_error".
    #[getter]
    fn analysis(&self) -> &'static str {
        self.analysis
    }

    /// The arrays' names, in the order the command line writes them (each `name` is `name.npy` there).
    #[getter]
    fn names(&self) -> Vec<String> {
        self.arrays.iter().map(|(n, _)| n.clone()).collect()
    }

    /// summary.json as a dict.
    #[getter]
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = self.saved.summary().to_string();
        py.import("json")?.call_method1("loads", (text,))
    }

    /// Writes exactly the files the command line writes for this run into `directory` (created if missing): the
    /// .npy arrays, summary.json, and shard.json for a shard (`scorelens merge` joins such folders).
    fn save(&self, py: Python<'_>, directory: std::path::PathBuf) -> PyResult<()> {
        py.detach(|| self.saved.save(&directory)).or_py()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let shapes: Vec<String> = self
            .arrays
            .iter()
            .map(|(n, a)| {
                let shape = a.bind(py).getattr("shape").map(|s| s.to_string()).unwrap_or_default();
                format!("{n}{shape}")
            })
            .collect();
        format!("scorelens.Result({}: {})", self.analysis, shapes.join(", "))
    }
}

/// Progress through tqdm when it is installed (a bar per stage, gone when done), silent otherwise.
struct Tqdm {
    class: Option<Py<PyAny>>,
    bar: Mutex<Option<Py<PyAny>>>,
}

impl Tqdm {
    fn new(py: Python<'_>, enabled: bool) -> Tqdm {
        let class = if enabled {
            py.import("tqdm.auto").and_then(|m| m.getattr("tqdm")).ok().map(|c| c.unbind())
        } else {
            None
        };
        Tqdm { class, bar: Mutex::new(None) }
    }

    fn close(&self, py: Python<'_>) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = bar.call_method0(py, "close");
        }
    }
}

impl Progress for Tqdm {
    fn start(&self, what: &str, total_rows: usize) {
        let Some(class) = &self.class else { return };
        Python::attach(|py| {
            self.close(py);
            let kwargs = PyDict::new(py);
            let made = kwargs
                .set_item("total", total_rows)
                .and_then(|_| kwargs.set_item("desc", what))
                .and_then(|_| kwargs.set_item("leave", false))
                .and_then(|_| class.call(py, (), Some(&kwargs)));
            if let Ok(bar) = made {
                *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
            }
        });
    }

    fn advance(&self, rows: usize) {
        if self.class.is_none() {
            return;
        }
        Python::attach(|py| {
            if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                let _ = bar.call_method1(py, "update", (rows,));
            }
        });
    }

    fn finish(&self) {
        if self.class.is_some() {
            Python::attach(|py| self.close(py));
        }
    }
}

/// `shard=(i, n)` as the library's `I/N`.
pub(crate) fn shard_spec(shard: Option<(usize, usize)>) -> Option<String> {
    shard.map(|(i, n)| format!("{i}/{n}"))
}

/// The devices `devices` names ("all", "0,1", an index or a list of adapter indices, as `--devices`); None for
/// none given.
fn device_spec(devices: Option<&Bound<'_, PyAny>>) -> PyResult<Option<String>> {
    let Some(devices) = devices.filter(|d| !d.is_none()) else { return Ok(None) };
    if devices.is_instance_of::<PyString>() {
        return Ok(Some(devices.extract::<String>()?));
    }
    if devices.is_instance_of::<PyInt>() {
        return Ok(Some(devices.extract::<usize>()?.to_string()));
    }
    let indices: Vec<usize> = devices.extract().map_err(|_| {
        to_py_err(Error::InvalidArgument(format!(
            "devices {}: expected \"all\", \"0,1\" or a list of adapter indices",
            devices.repr().map(|r| r.to_string()).unwrap_or_default()
        )))
    })?;
    Ok(Some(indices.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")))
}

/// The contexts of the devices named, or the shared one.
fn contexts(spec: Option<&str>) -> scorelens::Result<Vec<Arc<GpuContext>>> {
    match spec {
        Some(spec) => scorelens::gpu::contexts_for(spec),
        None => Ok(vec![GpuContext::shared()?]),
    }
}

/// The model loaded on each device `devices` names, with its device; empty without devices (the model's own
/// field serves).
fn devices_on(
    py: Python<'_>,
    model: &Model,
    devices: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<(Arc<GpuContext>, ScoreField)>> {
    let Some(spec) = device_spec(devices)? else { return Ok(Vec::new()) };
    let Some(overrides) = model.overrides.clone() else {
        return Err(PyValueError::new_err(format!(
            "devices={spec:?}: only a model loaded from a file (sl.load, sl.from_torch) is loaded again on other \
             devices; {} runs on one",
            model.path
        )));
    };
    let path = model.path.clone();
    py.detach(move || -> scorelens::Result<Vec<(Arc<GpuContext>, ScoreField)>> {
        let loaded = ScoreModel::load_with(std::path::Path::new(&path), &overrides)?;
        contexts(Some(&spec))?.into_iter().map(|ctx| Ok((ctx.clone(), ScoreField::new(ctx, &loaded)?))).collect()
    })
    .or_py()
}

/// The model on each device `devices` names (empty without devices).
fn fields_on(py: Python<'_>, model: &Model, devices: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<ScoreField>> {
    Ok(devices_on(py, model, devices)?.into_iter().map(|(_, field)| field).collect())
}

/// What every analysis takes besides its own settings (the keywords `devices`, `max_memory` and `progress`): the
/// model on each device named, the memory budget and the progress bar.
pub(crate) struct Run {
    /// The model loaded again on each device `devices` names; empty without (the model's own field serves).
    others: Vec<ScoreField>,
    budget: u64,
    bar: Tqdm,
}

impl Run {
    pub(crate) fn new(
        py: Python<'_>,
        model: &Model,
        devices: Option<&Bound<'_, PyAny>>,
        max_memory: Option<&str>,
        progress: bool,
    ) -> PyResult<Run> {
        let budget = memory_budget(max_memory)?;
        Ok(Run { others: fields_on(py, model, devices)?, budget, bar: Tqdm::new(py, progress) })
    }

    /// A run whose fields the caller makes (the smoothed data, a model per device with its context).
    fn without_fields(py: Python<'_>, max_memory: Option<&str>, progress: bool) -> PyResult<Run> {
        Ok(Run { others: Vec::new(), budget: memory_budget(max_memory)?, bar: Tqdm::new(py, progress) })
    }

    /// The fields the rows are spread over: one per device, or the model's own.
    pub(crate) fn fields<'a>(&'a self, model: &'a Model) -> Vec<&'a ScoreField> {
        if self.others.is_empty() {
            vec![&model.field]
        } else {
            self.others.iter().collect()
        }
    }

    pub(crate) fn options(&self) -> JobOptions<'_> {
        JobOptions { memory_budget: self.budget, progress: &self.bar }
    }
}

/// The run's signature in a shard's manifest: the analysis and its settings, without what may differ between the
/// shards of one run (shard, devices, max_memory), so `merge` joins the shards of one call only.
fn signature(analysis: &str, model: &Model, settings: String) -> String {
    format!("python {analysis} {} {settings}", model.path)
}

/// x and t read and checked as the command line reads --x and --t.
fn points(py: Python<'_>, field: &ScoreField, x: &Bound<'_, PyAny>, t: &Bound<'_, PyAny>) -> PyResult<Points> {
    let x = read_array(py, x, "x")?;
    let rows = check_points(&x.shape, &x.data, field, "x").or_py()?;
    let t = read_times(py, t, rows)?;
    Ok(Points { shape: x.shape, x: x.data, t })
}

/// The spectrum of the score Jacobian J = ∂s/∂x at every row of x (`scorelens spectrum`).
///
/// J = U S Vᵀ, kept to the top k triplets (all D by default). Arrays (as the CLI's files): singular_values
/// [B, k] (s₁ ≥ … ≥ s_k), residuals [B, k] (‖J vᵢ − sᵢ uᵢ‖ / s₁), alignment [B, k] (uᵢ·vᵢ; −1 where the field is
/// locally conservative), overlap [B, k] (of the top-i singular and symmetric-part eigenvector
/// subspaces), local_dimension_threshold [B] (#{i : 1/sᵢ > threshold_c · std(t)²}), local_dimension_gap [B] (the
/// rank before the largest gap of log sᵢ), nonconservativeness [B] (‖J − Jᵀ‖_F / ‖J‖_F), and with vectors=True
/// left_vectors and right_vectors [B, k, D] (float32).
///
/// method: "dense" (the SVD of the exact Jacobian in float64), "krylov" (block Golub–Kahan–Lanczos with
/// restarts: both residuals ‖J vᵢ − sᵢ uᵢ‖ and ‖Jᵀ uᵢ − sᵢ vᵢ‖ below tol·s₁), "subspace" (block subspace
/// iteration), "rsvd" (randomized SVD with `oversampling` extra directions) or "auto" (the cheapest route by a
/// cost model; summary["method"] and summary["method_reason"] say which and why). The matrix-free ones stop when
/// every kept triplet's residual is below tol (at most max_iter iterations; a row stopped short has
/// summary["rows"][i]["converged"] False and raises a RuntimeWarning naming it) and estimate the
/// non-conservativeness with `probes` Rademacher probes drawn from seed and the row's index. shard=(i, n) takes the i-th of n contiguous blocks of
/// rows (its rows keep their index in the whole input); devices="all" or "0,1" spreads the rows over GPUs.
#[pyfunction]
#[pyo3(name = "spectrum")]
#[pyo3(signature = (model, x, t, k = None, method = "dense", *, vectors = false, tol = 1e-5, max_iter = 100,
    oversampling = 8, probes = 64, seed = 0, threshold_c = 2.0, shard = None, devices = None, max_memory = None,
    progress = true))]
#[allow(clippy::too_many_arguments)]
pub fn spectrum_of(
    py: Python<'_>,
    model: &Bound<'_, Model>,
    x: &Bound<'_, PyAny>,
    t: &Bound<'_, PyAny>,
    k: Option<usize>,
    method: &str,
    vectors: bool,
    tol: f64,
    max_iter: usize,
    oversampling: usize,
    probes: usize,
    seed: u64,
    threshold_c: f64,
    shard: Option<(usize, usize)>,
    devices: Option<&Bound<'_, PyAny>>,
    max_memory: Option<&str>,
    progress: bool,
) -> PyResult<AnalysisResult> {
    let model = model.get();
    let method = SpectrumMethod::parse(method).or_py()?;
    let points = points(py, &model.field, x, t)?;
    let shard = Shard::parse(shard_spec(shard).as_deref(), points.rows()).or_py()?;
    let points = points.take(&shard);
    let request = SpectrumRequest {
        k: k.unwrap_or(model.field.dim()),
        method,
        vectors,
        threshold_c,
        tol,
        max_iter,
        oversampling,
        probes,
        seed,
    };
    let run = signature("spectrum", model, format!("{request:?}"));
    let run_on = Run::new(py, model, devices, max_memory, progress)?;
    let (fields, options) = (run_on.fields(model), run_on.options());
    let result = py
        .detach(|| spectrum(&fields, &points, &shard, &request, options, &model.path, &run, |_, _| Ok(())))
        .or_py()?;
    if let Some(warning) = result.unconverged_warning() {
        let category = py.get_type::<pyo3::exceptions::PyRuntimeWarning>();
        PyErr::warn(py, &category, &std::ffi::CString::new(warning).unwrap_or_default(), 1)?;
    }
    Ok(AnalysisResult::new(py, Saved::Spectrum(result)))
}

/// Local descriptors of the score or denoiser map f at every row of x (`scorelens descriptors`).
///
/// With σ₁ ≥ … ≥ σ_k the top k singular values of ∂f/∂x: local_scaling [B] ψ = Σᵢ log σᵢ, local_rank [B]
/// ν = exp(−Σᵢ pᵢ log pᵢ) with pᵢ = σᵢ / Σⱼ σⱼ, and local_complexity [B] δ (int64): the hidden units whose
/// pre-activation changes sign between x and some vertex x ± radius·bⱼ of a cross-polytope (directions "axes":
/// the D coordinate axes; "random": n_directions orthonormal directions drawn from seed). map: "denoiser" (the
/// posterior mean x + std(t)² s for VE, (x + std(t)² s) / α(t) for VP) or "score".
#[pyfunction]
#[pyo3(name = "descriptors")]
#[pyo3(signature = (model, x, t, *, map = "denoiser", k = None, radius = 0.1, directions = "axes",
    n_directions = 16, seed = 0, method = "auto", tol = 1e-5, max_iter = 100, shard = None, devices = None,
    max_memory = None, progress = true))]
#[allow(clippy::too_many_arguments)]
pub fn descriptors_of(
    py: Python<'_>,
    model: &Bound<'_, Model>,
    x: &Bound<'_, PyAny>,
    t: &Bound<'_, PyAny>,
    map: &str,
    k: Option<usize>,
    radius: f64,
    directions: &str,
    n_directions: usize,
    seed: u64,
    method: &str,
    tol: f64,
    max_iter: usize,
    shard: Option<(usize, usize)>,
    devices: Option<&Bound<'_, PyAny>>,
    max_memory: Option<&str>,
    progress: bool,
) -> PyResult<AnalysisResult> {
    let model = model.get();
    let solver = SingularValueSolver {
        method: DescriptorMethod::parse(method).or_py()?,
        tolerance: tol,
        max_iterations: max_iter,
        seed,
    };
    let map = match map {
        "score" => DescribedMap::Score,
        "denoiser" => DescribedMap::Denoiser,
        other => return Err(invalid(format!("map {other:?}: expected score or denoiser"))),
    };
    let directions = match directions {
        "axes" => Directions::Axes,
        "random" => Directions::Random { count: n_directions, seed },
        other => return Err(invalid(format!("directions {other:?}: expected axes or random"))),
    };
    let points = points(py, &model.field, x, t)?;
    let shard = Shard::parse(shard_spec(shard).as_deref(), points.rows()).or_py()?;
    let points = points.take(&shard);
    let settings = DescriptorSettings { map, k: k.unwrap_or(model.field.dim()), radius, directions };
    let run = signature("descriptors", model, format!("{settings:?} {solver:?} seed {seed}"));
    let run_on = Run::new(py, model, devices, max_memory, progress)?;
    let (fields, options) = (run_on.fields(model), run_on.options());
    let result = py
        .detach(|| descriptors(&fields, &points, &shard, &settings, &solver, seed, options, &model.path, &run))
        .or_py()?;
    Ok(AnalysisResult::new(py, Saved::Descriptors(result)))
}

fn invalid(message: String) -> PyErr {
    to_py_err(Error::InvalidArgument(message))
}

/// Samples from the model (`scorelens sample`).
///
/// The reverse SDE dx = [f(x, t) − g(t)² s(x, t)] dt + g(t) dw̄ (sampler "em"; "pc" adds a Langevin corrector
/// with signal-to-noise ratio snr) or the probability-flow ODE dx/dt = f − ½ g² s ("ode-euler", "ode-heun",
/// "ode-rk4"), on the grid t_k = linspace(1, eps, steps), from x_T drawn from the prior (n rows) or from x_init.
/// Row r draws its x_T and noise from (seed, r), so shards and devices give the whole run's rows. Arrays:
/// samples [n, *row_shape] (float32); with record_sigmas, recorded [R, n, *row_shape] (the iterate at the first
/// grid time where std(t) ≤ each σ) and recorded_t [R] (those times, float64).
#[pyfunction]
#[pyo3(name = "sample")]
#[pyo3(signature = (model, n = 64, steps = 500, *, sampler = "em", eps = 1e-3, seed = 0, x_init = None,
    record_sigmas = Vec::new(), snr = 0.16, shard = None, devices = None, max_memory = None, progress = true))]
#[allow(clippy::too_many_arguments)]
pub fn sample_of(
    py: Python<'_>,
    model: &Bound<'_, Model>,
    n: usize,
    steps: usize,
    sampler: &str,
    eps: f64,
    seed: u64,
    x_init: Option<&Bound<'_, PyAny>>,
    record_sigmas: Vec<f64>,
    snr: f64,
    shard: Option<(usize, usize)>,
    devices: Option<&Bound<'_, PyAny>>,
    max_memory: Option<&str>,
    progress: bool,
) -> PyResult<AnalysisResult> {
    let model = model.get();
    let kind = SamplerKind::parse(sampler)
        .map_err(|_| invalid(format!("sampler {sampler:?}: expected em, pc, ode-euler, ode-heun or ode-rk4")))?;
    let start = match x_init.filter(|x| !x.is_none()) {
        Some(x) => {
            let x = read_array(py, x, "x_init")?;
            check_points(&x.shape, &x.data, &model.field, "x_init").or_py()?;
            Start::Points { shape: x.shape, values: x.data }
        }
        None => Start::Prior { n },
    };
    let config = SamplerConfig { kind, steps, eps, snr, record_sigmas };
    let run = signature("sample", model, format!("{config:?} seed {seed} n {n}"));
    let run_on = Run::new(py, model, devices, max_memory, progress)?;
    let (fields, options) = (run_on.fields(model), run_on.options());
    let shard = shard_spec(shard);
    let result =
        py.detach(|| sample(&fields, start, &config, seed, shard.as_deref(), options, &model.path, &run)).or_py()?;
    Ok(AnalysisResult::new(py, Saved::Sample(result)))
}

/// Lyapunov exponents and vectors of a sampler, or of a flow (`scorelens lyapunov`).
///
/// Sampler mode: the steps x_{k+1} = Φ_k(x_k) of `sampler` ("em", "ode-euler", "ode-heun", "ode-rk4") from
/// x_init; flow mode (flow=True): dx/dt = s(x, t) at the fixed t by RK4 with step dt from x0, after `transient`
/// uncounted steps. k tangents Q (random orthonormal from seed, or the first k axes) follow Q ← (∂Φ/∂x) Q,
/// re-orthonormalised (QR) every qr_every steps; λᵢ = (1/T) Σ log |R_ii|. Arrays: log_growth, exponents,
/// alignment [B, k] (|vᵢ·s|/‖s‖ at the end), vectors [B, k, D], final_x [B, D], history [H, B, k] (the running
/// exponents) and history_time [H]; with clv=True the covariant (Ginelli) vectors at the run's midpoint: clv
/// [B, k, D], clv_x [B, D], clv_alignment [B, k].
#[pyfunction]
#[pyo3(name = "lyapunov")]
#[pyo3(signature = (model, x_init = None, steps = 500, *, sampler = "ode-euler", eps = 1e-3, k = None,
    clv = false, seed = 0, qr_every = 1, tangents = "random", flow = false, x0 = None, dt = 0.01, transient = 0,
    t = 1.0, shard = None, devices = None, max_memory = None, progress = true))]
#[allow(clippy::too_many_arguments)]
pub fn lyapunov_of(
    py: Python<'_>,
    model: &Bound<'_, Model>,
    x_init: Option<&Bound<'_, PyAny>>,
    steps: usize,
    sampler: &str,
    eps: f64,
    k: Option<usize>,
    clv: bool,
    seed: u64,
    qr_every: usize,
    tangents: &str,
    flow: bool,
    x0: Option<&Bound<'_, PyAny>>,
    dt: f64,
    transient: usize,
    t: f64,
    shard: Option<(usize, usize)>,
    devices: Option<&Bound<'_, PyAny>>,
    max_memory: Option<&str>,
    progress: bool,
) -> PyResult<AnalysisResult> {
    let model = model.get();
    let dynamics = if flow {
        Dynamics::Flow { dt, steps, transient, t }
    } else {
        let kind = SamplerKind::parse(sampler)
            .map_err(|_| invalid(format!("sampler {sampler:?}: expected em, ode-euler, ode-heun or ode-rk4")))?;
        if kind == SamplerKind::Pc {
            return Err(invalid(
                "sampler \"pc\": the Langevin corrector's step depends on ‖s‖; Lyapunov analysis takes em, ode-euler, ode-heun or ode-rk4".into(),
            ));
        }
        Dynamics::Sampler { kind, steps, eps, seed }
    };
    let (x0, what) = match (flow, x0.filter(|x| !x.is_none()), x_init.filter(|x| !x.is_none())) {
        (true, Some(p), _) => (p, "x0"),
        (false, None, Some(p)) => (p, "x_init"),
        (true, None, _) => return Err(invalid("flow=True needs x0 (the starting points)".into())),
        (false, Some(_), _) => return Err(invalid("x0 is for flow=True; a sampler takes x_init".into())),
        (false, None, None) => return Err(invalid("give x_init (sampler mode) or flow=True with x0".into())),
    };
    let x0 = read_array(py, x0, what)?;
    check_points(&x0.shape, &x0.data, &model.field, what).or_py()?;
    let tangents = match tangents {
        "random" => InitialTangents::Random { seed },
        "axes" => InitialTangents::Axes,
        other => return Err(invalid(format!("tangents {other:?}: expected random or axes"))),
    };
    let k = k.unwrap_or(model.field.dim().min(32));
    let settings = LyapunovSettings { k, qr_every, clv, tangents, history_points: 1000 };
    let run = signature("lyapunov", model, format!("{dynamics:?} {settings:?}"));
    let run_on = Run::new(py, model, devices, max_memory, progress)?;
    let (fields, options) = (run_on.fields(model), run_on.options());
    let shard = shard_spec(shard);
    let result = py
        .detach(|| lyapunov(&fields, &x0.data, dynamics, settings, shard.as_deref(), options, &model.path, &run))
        .or_py()?;
    Ok(AnalysisResult::new(py, Saved::Lyapunov(result)))
}

/// Rows [B, D] of finite values whose D is `dim` (when given, the data's); `what` names the argument.
fn read_rows(py: Python<'_>, object: &Bound<'_, PyAny>, what: &str, dim: Option<usize>) -> PyResult<super::HostArray> {
    let a = read_array(py, object, what)?;
    scorelens::batch::check_rows(&a.shape, &a.data, what, dim.map(|d| (d, "data"))).or_py()?;
    Ok(a)
}

/// Density ridges of the smoothed data by subspace-constrained mean shift (`scorelens ridge`).
///
/// p(x) = (1/N) Σᵢ N(x; dataᵢ, bandwidth² I). From every row of x, SCMS steps x ← x + E Eᵀ (m(x) − x), m the
/// mean shift and E the eigenvectors of ∇²log p past the d-th (d = dim), until ‖E Eᵀ ∇log p‖ / ‖∇log p‖ < tol
/// (at most max_iter steps). Arrays: points [B, D] (float32), converged [B] (bool), iterations [B] (int64),
/// eigenvalues [B, D] (of ∇²log p, descending; [B, d + 1], the leading ones, on the Krylov route), eigengap [B]
/// (λ_d − λ_{d+1}), normal_ratio [B]; a converged point counts as a ridge point in the summary when
/// λ_{d+1} ≤ −beta. eigensolver: "dense" (each D×D Hessian), "krylov" (block Lanczos on Hessian-vector
/// products, the d + 1 leading eigenpairs only) or "auto" (by a cost and memory model; summary["eigensolver"]).
#[pyfunction]
#[pyo3(name = "ridge")]
#[pyo3(signature = (data, x, dim, bandwidth, *, beta = 0.0, tol = 1e-4, max_iter = 500, eigensolver = "auto",
    shard = None, devices = None, max_memory = None, progress = true))]
#[allow(clippy::too_many_arguments)]
pub fn ridge_of(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    x: &Bound<'_, PyAny>,
    dim: usize,
    bandwidth: f64,
    beta: f64,
    tol: f64,
    max_iter: usize,
    eigensolver: &str,
    shard: Option<(usize, usize)>,
    devices: Option<&Bound<'_, PyAny>>,
    max_memory: Option<&str>,
    progress: bool,
) -> PyResult<AnalysisResult> {
    if !(bandwidth > 0.0 && bandwidth.is_finite()) {
        return Err(invalid(format!("bandwidth {bandwidth} must be a positive number")));
    }
    let data = read_rows(py, data, "data", None)?;
    if data.shape[0] == 0 {
        return Err(to_py_err(Error::bad_input("data", "holds no data points")));
    }
    let d = data.shape[1];
    let x = read_rows(py, x, "x", Some(d))?;
    let spec = device_spec(devices)?;
    let eigensolver = Eigensolver::parse(eigensolver).or_py()?;
    let settings = ScmsSettings { ridge_dim: dim, tolerance: tol, max_iterations: max_iter, beta, eigensolver };
    let fields: Vec<KdeField> = py
        .detach(|| -> scorelens::Result<Vec<KdeField>> {
            contexts(spec.as_deref())?
                .into_iter()
                .map(|ctx| KdeField::new(ctx, data.data.clone(), d, KdeScale::bandwidth(bandwidth)))
                .collect()
        })
        .or_py()?;
    let fields: Vec<&KdeField> = fields.iter().collect();
    let data_name = format!("data [{}, {d}]", data.shape[0]);
    let x_name = format!("x [{}, {d}]", x.shape[0]);
    let run = format!("python ridge {data_name} {settings:?} bandwidth {bandwidth}");
    let run_on = Run::without_fields(py, max_memory, progress)?;
    let options = run_on.options();
    let shard = shard_spec(shard);
    let result = py
        .detach(|| ridge(&fields, &x.data, settings, shard.as_deref(), options, &data_name, &x_name, &run))
        .or_py()?;
    Ok(AnalysisResult::new(py, Saved::Ridge(result)))
}

/// A sampler's recorded levels: a `scorelens sample --record-sigmas` folder, or sl.sample's result.
fn recorded_levels(trajectory: &Bound<'_, PyAny>) -> PyResult<(RecordedLevels, String)> {
    if let Ok(result) = trajectory.cast::<AnalysisResult>() {
        return match &result.get().saved {
            Saved::Sample(r) => match (&r.recorded, &r.recorded_t) {
                (Some(recorded), Some(t)) => Ok((
                    RecordedLevels {
                        recorded: recorded.clone(),
                        times: t.iter().copied().collect(),
                        sigmas: r.config.record_sigmas.clone(),
                    },
                    "trajectory".to_string(),
                )),
                _ => Err(invalid("trajectory: a sample result without recorded levels (give record_sigmas)".into())),
            },
            _ => Err(invalid(format!("trajectory: a {} result, not a sample's", result.get().analysis))),
        };
    }
    let dir: std::path::PathBuf = trajectory.extract()?;
    let levels = RecordedLevels::read(&dir).or_py()?;
    Ok((levels, dir.display().to_string()))
}

/// The model's score error against the smoothed data, split normal and tangent to the density ridges
/// (`scorelens ridge-error`).
///
/// e = s_θ(x, t) − ∇log p_t(x), p_t the data diffused by the model's schedule (α(t), std(t)); with E the
/// eigenvectors of ∇²log p_t past the d-th (d = dim): error_normal = E Eᵀ e and error_tangent = (I − E Eᵀ) e
/// [B, D], error_normal_norm and error_tangent_norm [B] (rows grouped by their t, one smoothed field per t).
/// With trajectory= (a `scorelens sample --record-sigmas` folder, or sl.sample's result with record_sigmas)
/// instead of x and t, the phase table along it: at every recorded level SCMS takes each sample to the ridge
/// (tol, max_iter): distance_to_ridge, error_normal_norm, error_tangent_norm [R, N] and t [R].
#[pyfunction]
#[pyo3(name = "ridge_error")]
#[pyo3(signature = (model, data, x = None, t = None, *, dim, trajectory = None, tol = 1e-4, max_iter = 300,
    eigensolver = "auto", shard = None, devices = None, max_memory = None, progress = true))]
#[allow(clippy::too_many_arguments)]
pub fn ridge_error_of(
    py: Python<'_>,
    model: &Bound<'_, Model>,
    data: &Bound<'_, PyAny>,
    x: Option<&Bound<'_, PyAny>>,
    t: Option<&Bound<'_, PyAny>>,
    dim: usize,
    trajectory: Option<&Bound<'_, PyAny>>,
    tol: f64,
    max_iter: usize,
    eigensolver: &str,
    shard: Option<(usize, usize)>,
    devices: Option<&Bound<'_, PyAny>>,
    max_memory: Option<&str>,
    progress: bool,
) -> PyResult<AnalysisResult> {
    let model = model.get();
    let eigensolver = Eigensolver::parse(eigensolver).or_py()?;
    let d = model.field.dim();
    let data = read_array(py, data, "data")?;
    check_data(&data.shape, &model.field, "data", &model.path).or_py()?;
    let loaded = devices_on(py, model, devices)?;
    let shared;
    let devices: Vec<(Arc<GpuContext>, &ScoreField)> = if loaded.is_empty() {
        shared = GpuContext::shared().or_py()?;
        vec![(shared.clone(), &model.field)]
    } else {
        loaded.iter().map(|(ctx, field)| (ctx.clone(), field)).collect()
    };
    let run_on = Run::without_fields(py, max_memory, progress)?;
    let options = run_on.options();
    let data_name = format!("data [{}, {d}]", data.shape[0]);
    let shard = shard_spec(shard);
    match (trajectory.filter(|t| !t.is_none()), x.filter(|x| !x.is_none()), t.filter(|t| !t.is_none())) {
        (Some(trajectory), _, _) => {
            let (levels, name) = recorded_levels(trajectory)?;
            let settings =
                ScmsSettings { ridge_dim: dim, tolerance: tol, max_iterations: max_iter, beta: 0.0, eigensolver };
            let run = signature("ridge_error", model, format!("{name} {data_name} {settings:?}"));
            let table = py
                .detach(|| {
                    ridge_phases(
                        &devices,
                        &data.data,
                        &levels,
                        shard.as_deref(),
                        settings,
                        options,
                        &model.path,
                        (&name, &data_name),
                        "trajectory",
                        &run,
                    )
                })
                .or_py()?;
            Ok(AnalysisResult::new(py, Saved::Phases(table)))
        }
        (None, Some(x), Some(t)) => {
            let points = points(py, &model.field, x, t)?;
            let shard = Shard::parse(shard.as_deref(), points.rows()).or_py()?;
            let points = points.take(&shard);
            let run = signature("ridge_error", model, format!("{data_name} dim {dim} {eigensolver:?}"));
            let result = py
                .detach(|| {
                    let (source, name) = (&model.path, &data_name);
                    ridge_error(&devices, &data.data, &points, &shard, dim, eigensolver, options, source, name, &run)
                })
                .or_py()?;
            Ok(AnalysisResult::new(py, Saved::RidgeError(result)))
        }
        _ => Err(invalid("give x and t, or trajectory".into())),
    }
}

/// Joins the folders (or .npy files) that the shards of one run saved, in shard order, into `output`, as
/// `scorelens merge -o OUTPUT PART...` does.
#[pyfunction]
pub fn merge(py: Python<'_>, output: std::path::PathBuf, parts: &Bound<'_, PyList>) -> PyResult<()> {
    let parts: Vec<std::path::PathBuf> = parts.extract()?;
    py.detach(|| scorelens::results::merge(&parts, &output)).or_py()
}

/// Adds the analyses to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AnalysisResult>()?;
    m.add_function(wrap_pyfunction!(spectrum_of, m)?)?;
    m.add_function(wrap_pyfunction!(descriptors_of, m)?)?;
    m.add_function(wrap_pyfunction!(sample_of, m)?)?;
    m.add_function(wrap_pyfunction!(lyapunov_of, m)?)?;
    m.add_function(wrap_pyfunction!(ridge_of, m)?)?;
    m.add_function(wrap_pyfunction!(ridge_error_of, m)?)?;
    m.add_function(wrap_pyfunction!(merge, m)?)?;
    Ok(())
}
