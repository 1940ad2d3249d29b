//! `scorelens._native`: the Python face of the scorelens library. Every method is one call into the core crate,
//! with NumPy arrays in and out; the checks and error messages are the core's, so Python and the command line
//! refuse the same inputs with the same words.

mod analyses;

use std::path::PathBuf;

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString, PyTuple};

use scorelens::batch::{check_directions, check_points, check_time_shape, check_time_values};
use scorelens::derivative::{self, has_exact_jvp, has_exact_vjp, DivergenceMethod, JacobianMethod, JvpMethod};
use scorelens::graph::MetadataOverrides;
use scorelens::scheduler::{parse_memory_size, JobOptions, DEFAULT_MEMORY_BUDGET};
use scorelens::{Error, GpuContext, ScoreField, ScoreModel};

create_exception!(
    scorelens,
    ScorelensError,
    PyRuntimeError,
    "A failure of the GPU or the environment, not of the inputs (the command line exits with status 1 on these)."
);

/// The core's error as the Python exception a caller expects, with the message the command line prints after
/// `error: `: a missing file is FileNotFoundError, the user's fault (a file, key, shape or value) ValueError, the
/// rest (device, kernel, I/O) ScorelensError.
fn to_py_err(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::FileNotFound { .. } => PyFileNotFoundError::new_err(message),
        _ if error.is_user_error() => PyValueError::new_err(message),
        _ => ScorelensError::new_err(message),
    }
}

trait OrPyErr<T> {
    fn or_py(self) -> PyResult<T>;
}

impl<T> OrPyErr<T> for scorelens::Result<T> {
    fn or_py(self) -> PyResult<T> {
        self.map_err(to_py_err)
    }
}

/// The metadata keys `load` takes, as the command line's flags of the same names.
const METADATA_KEYS: [&str; 8] =
    ["parameterization", "time_input", "schedule", "sigma", "sigma_min", "sigma_max", "beta_min", "beta_max"];

/// An array as the CLI reads a `.npy`: its shape and its values as a C-ordered float32 copy (float64 rounded to
/// nearest). Anything NumPy can take (`__array__`, CPU torch tensors, lists) goes through `numpy.asarray` first.
pub(crate) struct HostArray {
    shape: Vec<usize>,
    data: Vec<f32>,
}

fn read_array(py: Python<'_>, object: &Bound<'_, PyAny>, what: &str) -> PyResult<HostArray> {
    let numpy = py.import("numpy")?;
    let mut array = numpy.call_method1("asarray", (object,))?;
    // Byte-swapped floats (from a big-endian file) are not native f32/f64 to rust-numpy: swap them first.
    let dtype = array.getattr("dtype")?;
    if dtype.getattr("kind")?.extract::<String>()? == "f" && !dtype.getattr("isnative")?.extract::<bool>()? {
        array = array.call_method1("astype", (dtype.call_method1("newbyteorder", ("=",))?,))?;
    }
    // Iterating the view walks the logical (C) order whatever the strides, so Fortran-ordered and sliced arrays
    // read as their C-ordered copies would. The copy is also what lets the GPU work run without the GIL: another
    // thread may write to the caller's array meanwhile.
    if let Ok(a) = array.cast::<PyArrayDyn<f32>>() {
        let view = a.readonly();
        let view = view.as_array();
        return Ok(HostArray { shape: view.shape().to_vec(), data: view.iter().copied().collect() });
    }
    if let Ok(a) = array.cast::<PyArrayDyn<f64>>() {
        let view = a.readonly();
        let view = view.as_array();
        return Ok(HostArray { shape: view.shape().to_vec(), data: view.iter().map(|&v| v as f32).collect() });
    }
    let descr = array.getattr("dtype")?.getattr("str")?.extract::<String>()?;
    Err(to_py_err(Error::bad_input(what, format!("dtype {descr} is not supported (use float32 or float64)"))))
}

/// t: a Python number for all rows (as `--t T`), or an array of one t per row or a single value (as `--t T.npy`).
fn read_times(py: Python<'_>, object: &Bound<'_, PyAny>, rows: usize) -> PyResult<Vec<f32>> {
    let what = "t";
    let values = if object.is_instance_of::<PyFloat>() || object.is_instance_of::<PyInt>() {
        // The CLI parses the number as f64 and rounds it to f32.
        vec![object.extract::<f64>()? as f32]
    } else {
        let t = read_array(py, object, what)?;
        check_time_shape(&t.shape, rows, what).or_py()?;
        t.data
    };
    check_time_values(&values, what).or_py()?;
    Ok(values)
}

fn memory_budget(max_memory: Option<&str>) -> PyResult<u64> {
    max_memory.map_or(Ok(DEFAULT_MEMORY_BUDGET), parse_memory_size).or_py()
}

fn to_numpy<'py>(py: Python<'py>, shape: &[usize], data: Vec<f32>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let array = ArrayD::from_shape_vec(IxDyn(shape), data)
        .map_err(|e| ScorelensError::new_err(format!("result of the wrong length for shape {shape:?}: {e}")))?;
    Ok(array.into_pyarray(py))
}

/// Refuses an exact method the field lacks, in the command line's words.
fn require(available: bool, what: &str) -> PyResult<()> {
    if available {
        Ok(())
    } else {
        Err(to_py_err(Error::InvalidArgument(format!(
            "{what}: this model has no such exact derivative in this build yet; use a finite-difference method"
        ))))
    }
}

/// A score model on the GPU: s(x, t) = ∇ₓ log p_t(x) and its derivatives, for batches of points.
///
/// Made by `scorelens.load`. Arrays go in as NumPy float32 or float64 (any memory order; anything with
/// `__array__`), x of shape [B, *row_shape] or [B, D]; results come out as float32 arrays with the command
/// line's shapes. `t` is one number for all rows or an array of B values, each in (0, 1].
#[pyclass(module = "scorelens", frozen)]
struct Model {
    field: ScoreField,
    path: String,
    description: Vec<(String, String)>,
    /// The metadata given to `load`, to load the model again on other devices (`devices=`); None for the fields
    /// built in memory (`kde`, `field`), which run on the one device.
    overrides: Option<MetadataOverrides>,
}

/// A batch's inputs, read and checked as the command line checks them.
struct Batch {
    shape: Vec<usize>,
    x: Vec<f32>,
    t: Vec<f32>,
    memory_budget: u64,
}

impl Model {
    fn batch(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        t: &Bound<'_, PyAny>,
        max_memory: Option<&str>,
    ) -> PyResult<Batch> {
        let memory_budget = memory_budget(max_memory)?;
        let points = read_array(py, x, "x")?;
        let rows = check_points(&points.shape, &points.data, &self.field, "x").or_py()?;
        let t = read_times(py, t, rows)?;
        Ok(Batch { shape: points.shape, x: points.data, t, memory_budget })
    }

    fn directions(&self, py: Python<'_>, object: &Bound<'_, PyAny>, what: &str, batch: &Batch) -> PyResult<HostArray> {
        let a = read_array(py, object, what)?;
        check_directions(&a.shape, &a.data, &batch.shape, &self.field, what).or_py()?;
        Ok(a)
    }
}

fn options(memory_budget: u64) -> JobOptions<'static> {
    JobOptions { memory_budget, ..JobOptions::default() }
}

#[pymethods]
impl Model {
    /// The score s(x, t) = ∇ₓ log p_t(x) at every row of x; float32, x's shape.
    ///
    /// max_memory caps the device memory of the job ("512MiB", "4GiB"; default 1 GiB): larger batches run in
    /// chunks.
    #[pyo3(signature = (x, t, *, max_memory = None))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        max_memory: Option<&str>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let batch = self.batch(py, x, t, max_memory)?;
        // The GIL is released while the GPU works (pyo3's `detach`, formerly `allow_threads`).
        let out = py.detach(|| self.field.score(&batch.x, &batch.t, options(batch.memory_budget))).or_py()?;
        to_numpy(py, &batch.shape, out)
    }

    /// The Jacobian-vector product J·v, J = ∂s/∂x (torch.func.jvp of the score); float32, v's shape.
    ///
    /// v has x's shape (one direction per point) or [B, P, *row_shape] (P directions per point).
    /// method: "exact" (forward mode through the network), "fd" (central differences) or "fd4" (the
    /// fourth-order stencil); richardson combines two finite-difference steps.
    #[pyo3(signature = (x, t, v, method = "exact", *, richardson = false, max_memory = None))]
    #[allow(clippy::too_many_arguments)]
    fn jvp<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        v: &Bound<'py, PyAny>,
        method: &str,
        richardson: bool,
        max_memory: Option<&str>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let batch = self.batch(py, x, t, max_memory)?;
        let v = self.directions(py, v, "v", &batch)?;
        let method = match method {
            "exact" => {
                require(has_exact_jvp(&self.field), "method \"exact\"")?;
                JvpMethod::Exact
            }
            "fd" => JvpMethod::Fd,
            "fd4" => JvpMethod::Fd4,
            other => return Err(invalid_method(other, "exact, fd or fd4")),
        };
        let out = py
            .detach(|| {
                derivative::jvp(
                    &self.field,
                    &batch.x,
                    &batch.t,
                    &v.data,
                    method,
                    richardson,
                    options(batch.memory_budget),
                )
            })
            .or_py()?;
        to_numpy(py, &v.shape, out)
    }

    /// The vector-Jacobian product Jᵀ·u, J = ∂s/∂x (torch.func.vjp of the score); float32, u's shape.
    ///
    /// u has x's shape (one cotangent per point) or [B, Q, *row_shape] (Q cotangents per point).
    #[pyo3(signature = (x, t, u, *, max_memory = None))]
    fn vjp<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        u: &Bound<'py, PyAny>,
        max_memory: Option<&str>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let batch = self.batch(py, x, t, max_memory)?;
        let u = self.directions(py, u, "u", &batch)?;
        require(has_exact_vjp(&self.field), "vjp")?;
        let out = py
            .detach(|| derivative::vjp(&self.field, &batch.x, &batch.t, &u.data, options(batch.memory_budget)))
            .or_py()?;
        to_numpy(py, &u.shape, out)
    }

    /// The Jacobian J = ∂s/∂x at every point; float32 [B, D, D], row i holding ∂s_i/∂x (torch.func.jacrev's
    /// layout with the row flattened).
    ///
    /// method: "forward" (D forward-mode products a point), "reverse" (D reverse-mode products) or "fd" (central
    /// differences).
    #[pyo3(signature = (x, t, method = "forward", *, max_memory = None))]
    fn jacobian<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        method: &str,
        max_memory: Option<&str>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let batch = self.batch(py, x, t, max_memory)?;
        let method = match method {
            "forward" => {
                require(has_exact_jvp(&self.field), "method \"forward\"")?;
                JacobianMethod::Forward
            }
            "reverse" => {
                require(has_exact_vjp(&self.field), "method \"reverse\"")?;
                JacobianMethod::Reverse
            }
            "fd" => JacobianMethod::Fd,
            other => return Err(invalid_method(other, "forward, reverse or fd")),
        };
        let d = self.field.dim();
        let rows = batch.shape[0];
        let out = py
            .detach(|| {
                let mut values = Vec::with_capacity(rows * d * d);
                derivative::jacobian(
                    &self.field,
                    &batch.x,
                    &batch.t,
                    method,
                    options(batch.memory_budget),
                    |_, block| {
                        values.extend_from_slice(block);
                        Ok(())
                    },
                )
                .map(|()| values)
            })
            .or_py()?;
        to_numpy(py, &[rows, d, d], out)
    }

    /// The divergence ∇ₓ·s = tr J at every point; float32 [B].
    ///
    /// probes=None takes the exact trace; probes=N estimates it with Hutchinson's E[zᵀJz] over N Rademacher
    /// vectors z a point, drawn from seed and the point's row index (the command line's `--probes N --seed S`).
    #[pyo3(signature = (x, t, probes = None, seed = 0, *, max_memory = None))]
    fn divergence<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        probes: Option<usize>,
        seed: u64,
        max_memory: Option<&str>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let batch = self.batch(py, x, t, max_memory)?;
        let method = match probes {
            Some(probes) => DivergenceMethod::Hutchinson { probes, seed, first_row: 0 },
            None => DivergenceMethod::Exact,
        };
        let out = py
            .detach(|| derivative::divergence(&self.field, &batch.x, &batch.t, method, options(batch.memory_budget)))
            .or_py()?;
        // Computed in f64, written as float32 like the command line's OUT.npy.
        to_numpy(py, &[batch.shape[0]], out.into_iter().map(|v| v as f32).collect())
    }

    /// D: the number of values in one input row.
    #[getter]
    fn dim(&self) -> usize {
        self.field.dim()
    }

    /// The shape of one input row: (D,) or (C, H, W).
    #[getter]
    fn row_shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.field.row_shape())
    }

    /// The noise schedule as `scorelens info` prints it, e.g. "vp (beta_min 0.1, beta_max 20)".
    #[getter]
    fn schedule(&self) -> String {
        self.field.schedule().to_string()
    }

    /// The model file this was loaded from.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// The model's properties as `scorelens info MODEL` lists them: (key, value) pairs.
    fn describe(&self) -> Vec<(String, String)> {
        self.description.clone()
    }

    fn __repr__(&self) -> String {
        let shape: Vec<String> = self.field.row_shape().iter().map(|s| s.to_string()).collect();
        let shape = if shape.len() == 1 { format!("({},)", shape[0]) } else { format!("({})", shape.join(", ")) };
        format!("scorelens.Model({:?}, row_shape={shape}, schedule={:?})", self.path, self.schedule())
    }
}

fn invalid_method(given: &str, expected: &str) -> PyErr {
    to_py_err(Error::InvalidArgument(format!("method {given:?}: expected {expected}")))
}

/// A metadata value as the command line would pass it: numbers through f64 (as the flags parse them), text as is.
fn metadata_value(key: &str, value: &Bound<'_, PyAny>) -> PyResult<String> {
    if value.is_instance_of::<PyString>() {
        return value.extract();
    }
    if (value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>()) && !value.is_instance_of::<PyBool>() {
        return Ok(value.extract::<f64>()?.to_string());
    }
    Err(to_py_err(Error::InvalidArgument(format!(
        "{key}={}: expected a string or a number",
        value.repr().map(|r| r.to_string()).unwrap_or_default()
    ))))
}

/// Loads a score model (.onnx or .safetensors) onto the GPU.
///
/// Keyword arguments override the file's metadata, as the command line's flags do: parameterization
/// ("score", "epsilon", "denoiser", "v"), time_input ("t", "sigma", "c_noise", "log_sigma"), schedule ("ve-song",
/// "ve", "vp") and its numbers sigma, sigma_min, sigma_max, beta_min, beta_max.
#[pyfunction]
#[pyo3(signature = (path, **metadata))]
fn load(py: Python<'_>, path: PathBuf, metadata: Option<&Bound<'_, PyDict>>) -> PyResult<Model> {
    let mut overrides = MetadataOverrides::new();
    for (key, value) in metadata.into_iter().flatten() {
        let key: String = key.extract()?;
        // None leaves the file's value, as an absent flag does.
        if value.is_none() {
            continue;
        }
        if !METADATA_KEYS.contains(&key.as_str()) {
            return Err(to_py_err(Error::InvalidArgument(format!(
                "unknown metadata key {key:?}; expected one of {}",
                METADATA_KEYS.join(", ")
            ))));
        }
        let value = metadata_value(&key, &value)?;
        overrides.insert(key, value);
    }
    let (field, description) = py
        .detach(|| -> scorelens::Result<_> {
            let model = ScoreModel::load_with(&path, &overrides)?;
            let field = ScoreField::new(GpuContext::shared()?, &model)?;
            Ok((field, model.describe()))
        })
        .or_py()?;
    Ok(Model { field, path: path.display().to_string(), description, overrides: Some(overrides) })
}

/// The adapter scorelens computes on, as `scorelens info` names it.
#[pyfunction]
fn adapter(py: Python<'_>) -> PyResult<String> {
    py.detach(|| GpuContext::shared().map(|c| c.adapter_description())).or_py()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(adapter, m)?)?;
    m.add_class::<Model>()?;
    other_fields::register(m)?;
    m.add("ScorelensError", m.py().get_type::<ScorelensError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    analyses::register(m)?;
    Ok(())
}

/// The fields that are not model files: the smoothed data (`sl.kde`, the CLI's `--kde DATA.npy`) and a user's WGSL
/// field (`sl.field`, the CLI's `--field F.wgsl --dim D`), as `Model`s with the same methods.
mod other_fields {
    use pyo3::prelude::*;

    use scorelens::field::{SmoothedData, Smoothing, UserField};
    use scorelens::{Error, GpuContext, NoiseSchedule, ScoreField};

    use super::{read_array, Model, OrPyErr};

    /// The noise process of a field that has no file to read it from, with the command line's defaults (ve-song
    /// with sigma 25; ve 0.01 to 50; vp 0.1 to 20) and its checks, in the parameters' names.
    #[allow(clippy::too_many_arguments)]
    fn schedule(
        name: Option<&str>,
        sigma: Option<f64>,
        sigma_min: Option<f64>,
        sigma_max: Option<f64>,
        beta_min: Option<f64>,
        beta_max: Option<f64>,
    ) -> scorelens::Result<NoiseSchedule> {
        let positive = |parameter: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(Error::InvalidArgument(format!("{parameter}={v}: expected a positive number")))
            }
        };
        match name.unwrap_or("ve-song") {
            "ve-song" => {
                let sigma = positive("sigma", sigma.unwrap_or(25.0))?;
                if sigma == 1.0 {
                    return Err(Error::InvalidArgument("sigma=1: ve-song needs sigma ≠ 1".into()));
                }
                Ok(NoiseSchedule::VeSong { sigma })
            }
            "ve" => Ok(NoiseSchedule::Ve {
                sigma_min: positive("sigma_min", sigma_min.unwrap_or(0.01))?,
                sigma_max: positive("sigma_max", sigma_max.unwrap_or(50.0))?,
            }),
            "vp" => Ok(NoiseSchedule::Vp {
                beta_min: positive("beta_min", beta_min.unwrap_or(0.1))?,
                beta_max: positive("beta_max", beta_max.unwrap_or(20.0))?,
            }),
            other => Err(Error::InvalidArgument(format!("schedule {other:?}: expected ve-song, ve or vp"))),
        }
    }

    /// The score of the data smoothed by the noise process: p_t = (1/N) Σᵢ N(x; α(t) xᵢ, std(t)² I), so
    /// s(x, t) = Σᵢ wᵢ (α xᵢ − x) / std², wᵢ the softmax of −‖x − α xᵢ‖² / (2 std²); with a bandwidth S, α = 1 and
    /// std = S at every t. Its Jacobian is the Hessian of log p_t (symmetric).
    ///
    /// data: [N, D] float32 or float64 (rounded to float32, as the command line reads DATA.npy). The schedule and
    /// its numbers as `load`'s keywords (default ve-song with sigma 25). The same field as the command line's
    /// `--kde DATA.npy [--bandwidth S]`.
    #[pyfunction]
    #[pyo3(signature = (data, bandwidth = None, schedule = None, *, sigma = None, sigma_min = None,
                        sigma_max = None, beta_min = None, beta_max = None))]
    #[allow(clippy::too_many_arguments)]
    pub fn kde(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        bandwidth: Option<f64>,
        schedule: Option<&str>,
        sigma: Option<f64>,
        sigma_min: Option<f64>,
        sigma_max: Option<f64>,
        beta_min: Option<f64>,
        beta_max: Option<f64>,
    ) -> PyResult<Model> {
        let what = "data";
        let points = read_array(py, data, what)?;
        if points.shape.len() != 2 || points.shape[0] == 0 || points.shape[1] == 0 {
            return Err(Error::bad_input(what, format!("shape {:?}; expected [N, D] data points", points.shape)))
                .or_py();
        }
        let smoothing = match bandwidth {
            Some(s) if s.is_finite() && s > 0.0 => Smoothing::Bandwidth(s),
            Some(s) => {
                return Err(Error::InvalidArgument(format!("bandwidth={s}: expected a positive number"))).or_py()
            }
            None => Smoothing::Schedule,
        };
        let schedule = self::schedule(schedule, sigma, sigma_min, sigma_max, beta_min, beta_max).or_py()?;
        let (n, dim) = (points.shape[0], points.shape[1]);
        let field = py
            .detach(|| SmoothedData::new(GpuContext::shared()?, points.data, dim, schedule, smoothing))
            .map_err(|e| match e {
                Error::NotFinite { row, value, .. } => Error::NotFinite { what: what.into(), row, value },
                other => other,
            })
            .or_py()?;
        let smoothing = match smoothing {
            Smoothing::Bandwidth(s) => format!("bandwidth {s} (alpha 1 at every t)"),
            Smoothing::Schedule => "the schedule's alpha(t), std(t)".into(),
        };
        let description = vec![
            ("field".into(), "kde (the smoothed data)".into()),
            ("data".into(), format!("{n} points in R^{dim}")),
            ("smoothing".into(), smoothing),
            ("schedule".into(), schedule.to_string()),
        ];
        Ok(Model { field: ScoreField::Smoothed(field), path: "<kde>".into(), description, overrides: None })
    }

    /// A user's score field in WGSL: `fn field(x: State, t: f32) -> State` (and optionally
    /// `fn field_jvp(x: State, v: State, t: f32) -> State` for exact forward-mode products), State an array of
    /// `dim` f32 (docs/fields.md). Without `field_jvp`, jvp and jacobian take method "fd" and vjp is refused.
    ///
    /// name stands for the file in error messages (the command line names the .wgsl file there). The schedule
    /// (samplers' noise process) as `kde`'s. The same field as the command line's `--field F.wgsl --dim D`.
    #[pyfunction]
    #[pyo3(signature = (wgsl_source, dim, schedule = None, *, name = "<wgsl>", sigma = None, sigma_min = None,
                        sigma_max = None, beta_min = None, beta_max = None))]
    #[allow(clippy::too_many_arguments)]
    pub fn field(
        py: Python<'_>,
        wgsl_source: &str,
        dim: usize,
        schedule: Option<&str>,
        name: &str,
        sigma: Option<f64>,
        sigma_min: Option<f64>,
        sigma_max: Option<f64>,
        beta_min: Option<f64>,
        beta_max: Option<f64>,
    ) -> PyResult<Model> {
        let schedule = self::schedule(schedule, sigma, sigma_min, sigma_max, beta_min, beta_max).or_py()?;
        let field =
            py.detach(|| UserField::from_source(GpuContext::shared()?, name, wgsl_source, dim, schedule)).or_py()?;
        let description = vec![
            ("field".into(), format!("user WGSL ({name})")),
            ("dim".into(), dim.to_string()),
            ("exact jvp".into(), if field.has_jvp() { "field_jvp" } else { "none (finite differences)" }.into()),
            ("schedule".into(), schedule.to_string()),
        ];
        Ok(Model { field: ScoreField::User(field), path: name.into(), description, overrides: None })
    }

    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(kde, m)?)?;
        m.add_function(wrap_pyfunction!(field, m)?)?;
        Ok(())
    }
}
