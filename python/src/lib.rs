//! `scorelens._native`: the Python face of the scorelens library. Every method is one call into the core crate,
//! with NumPy arrays in and out; the checks and error messages are the core's, so Python and the command line
//! refuse the same inputs with the same words.

mod analyses;

use analyses::Run;

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString, PyTuple};

use scorelens::batch::{check_points, check_time_shape, check_time_values, Points, Shard};
use scorelens::derivative::{has_exact_vjp, DivergenceMethod, JacobianMethod, JvpMethod};
use scorelens::graph::MetadataOverrides;
use scorelens::results::derivatives::{self as results, Directions};
use scorelens::scheduler::{parse_memory_size, DEFAULT_MEMORY_BUDGET};
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

/// A batch's inputs, read and checked as the command line checks them: the shard's rows of x with their times.
struct Batch {
    points: Points,
    /// The rows taken (`shard=(i, n)`), of all of x's.
    shard: Shard,
    /// x's shape, all rows: what directions are checked against.
    whole_shape: Vec<usize>,
}

impl Model {
    fn batch(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        t: &Bound<'_, PyAny>,
        shard: Option<(usize, usize)>,
    ) -> PyResult<Batch> {
        let points = read_array(py, x, "x")?;
        let rows = check_points(&points.shape, &points.data, &self.field, "x").or_py()?;
        let t = read_times(py, t, rows)?;
        let shard = Shard::parse(analyses::shard_spec(shard).as_deref(), rows).or_py()?;
        let whole_shape = points.shape.clone();
        let points = Points { shape: points.shape, x: points.data, t }.take(&shard);
        Ok(Batch { points, shard, whole_shape })
    }

    /// Directions for the batch: x's shape (all rows), or [B, P, *row_shape]; the shard's rows of them.
    fn directions(&self, py: Python<'_>, object: &Bound<'_, PyAny>, what: &str, batch: &Batch) -> PyResult<Directions> {
        let a = read_array(py, object, what)?;
        Ok(Directions::checked(a.shape, a.data, &batch.whole_shape, &self.field, what).or_py()?.take(&batch.shard))
    }

    /// The devices, budget and (silent) progress of a call.
    fn run_on(&self, py: Python<'_>, devices: Option<&Bound<'_, PyAny>>, max_memory: Option<&str>) -> PyResult<Run> {
        Run::new(py, self, devices, max_memory, false)
    }
}

#[pymethods]
impl Model {
    /// The score s(x, t) = ∇ₓ log p_t(x) at every row of x; float32, x's shape.
    ///
    /// max_memory caps the device memory of the job ("512MiB", "4GiB"; default 1 GiB): larger batches run in
    /// chunks. shard=(i, n) takes the i-th of n contiguous blocks of rows; devices="all" or "0,1" spreads the rows
    /// over GPUs (a model loaded from a file), as the command line's `--shard` and `--devices`.
    #[pyo3(signature = (x, t, *, max_memory = None, shard = None, devices = None))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        max_memory: Option<&str>,
        shard: Option<(usize, usize)>,
        devices: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let batch = self.batch(py, x, t, shard)?;
        let run = self.run_on(py, devices, max_memory)?;
        let out = py.detach(|| results::score(&run.fields(self), &batch.points, run.options())).or_py()?;
        Ok(out.score.into_pyarray(py))
    }

    /// The Jacobian-vector product J·v, J = ∂s/∂x (torch.func.jvp of the score); float32, v's shape.
    ///
    /// v has x's shape (one direction per point) or [B, P, *row_shape] (P directions per point).
    /// method: "exact" (forward mode through the network), "fd" (central differences) or "fd4" (the
    /// fourth-order stencil); richardson combines two finite-difference steps. max_memory, shard and devices as
    /// for `score`.
    #[pyo3(signature = (x, t, v, method = "exact", *, richardson = false, max_memory = None, shard = None,
                        devices = None))]
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
        shard: Option<(usize, usize)>,
        devices: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let batch = self.batch(py, x, t, shard)?;
        let v = self.directions(py, v, "v", &batch)?;
        let method = match method {
            "exact" => JvpMethod::Exact,
            "fd" => JvpMethod::Fd,
            "fd4" => JvpMethod::Fd4,
            other => return Err(invalid_method(other, "exact, fd or fd4")),
        };
        let run = self.run_on(py, devices, max_memory)?;
        let out = py
            .detach(|| results::jvp(&run.fields(self), &batch.points, &v, Some(method), richardson, run.options()))
            .or_py()?;
        Ok(out.jvp.into_pyarray(py))
    }

    /// The vector-Jacobian product Jᵀ·u, J = ∂s/∂x (torch.func.vjp of the score); float32, u's shape.
    ///
    /// u has x's shape (one cotangent per point) or [B, Q, *row_shape] (Q cotangents per point). max_memory,
    /// shard and devices as for `score`.
    #[pyo3(signature = (x, t, u, *, max_memory = None, shard = None, devices = None))]
    #[allow(clippy::too_many_arguments)]
    fn vjp<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        u: &Bound<'py, PyAny>,
        max_memory: Option<&str>,
        shard: Option<(usize, usize)>,
        devices: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let batch = self.batch(py, x, t, shard)?;
        let u = self.directions(py, u, "u", &batch)?;
        // Where the field has no reverse mode the command line falls back to a finite-difference Jacobian (slow);
        // here the caller is told instead, and can take `jacobian(x, t, method="fd")` knowingly.
        require(has_exact_vjp(&self.field), "vjp")?;
        let run = self.run_on(py, devices, max_memory)?;
        let out = py.detach(|| results::vjp(&run.fields(self), &batch.points, &u, run.options())).or_py()?;
        Ok(out.vjp.into_pyarray(py))
    }

    /// The Jacobian J = ∂s/∂x at every point; float32 [B, D, D], row i holding ∂s_i/∂x (torch.func.jacrev's
    /// layout with the row flattened).
    ///
    /// method: "forward" (D forward-mode products a point), "reverse" (D reverse-mode products) or "fd" (central
    /// differences). max_memory, shard and devices as for `score`.
    #[pyo3(signature = (x, t, method = "forward", *, max_memory = None, shard = None, devices = None))]
    #[allow(clippy::too_many_arguments)]
    fn jacobian<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        method: &str,
        max_memory: Option<&str>,
        shard: Option<(usize, usize)>,
        devices: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let batch = self.batch(py, x, t, shard)?;
        let method = match method {
            "forward" => JacobianMethod::Forward,
            "reverse" => JacobianMethod::Reverse,
            "fd" => JacobianMethod::Fd,
            other => return Err(invalid_method(other, "forward, reverse or fd")),
        };
        let run = self.run_on(py, devices, max_memory)?;
        let out =
            py.detach(|| results::jacobian(&run.fields(self), &batch.points, Some(method), run.options())).or_py()?;
        Ok(out.jacobian.into_pyarray(py))
    }

    /// The divergence ∇ₓ·s = tr J at every point; float32 [B].
    ///
    /// probes=None takes the exact trace; probes=N estimates it with Hutchinson's E[zᵀJz] over N Rademacher
    /// vectors z a point, drawn from seed and the point's row index in the whole x (the command line's
    /// `--probes N --seed S`), so shards draw as the whole run does. max_memory, shard and devices as for `score`.
    #[pyo3(signature = (x, t, probes = None, seed = 0, *, max_memory = None, shard = None, devices = None))]
    #[allow(clippy::too_many_arguments)]
    fn divergence<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        probes: Option<usize>,
        seed: u64,
        max_memory: Option<&str>,
        shard: Option<(usize, usize)>,
        devices: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let batch = self.batch(py, x, t, shard)?;
        let method = match probes {
            Some(probes) => DivergenceMethod::Hutchinson { probes, seed },
            None => DivergenceMethod::Exact,
        };
        let run = self.run_on(py, devices, max_memory)?;
        let first_row = batch.shard.rows.start;
        // Computed in f64, kept as float32 like the command line's OUT.npy.
        let out = py
            .detach(|| results::divergence(&run.fields(self), &batch.points, first_row, method, run.options()))
            .or_py()?;
        Ok(out.divergence.into_pyarray(py))
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
    use scorelens::settings::{self, ScheduleParameters};
    use scorelens::{Error, GpuContext, NoiseSchedule, ScoreField};

    use super::{read_array, Model, OrPyErr};

    /// The noise process of a field that has no file to read it from: the library's (the command line's defaults
    /// and checks), in the keywords' names.
    fn schedule(
        name: Option<&str>,
        sigma: Option<f64>,
        sigma_min: Option<f64>,
        sigma_max: Option<f64>,
        beta_min: Option<f64>,
        beta_max: Option<f64>,
    ) -> scorelens::Result<NoiseSchedule> {
        settings::schedule(name, ScheduleParameters { sigma, sigma_min, sigma_max, beta_min, beta_max })
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
        let (n, dim) = settings::check_data(&points.shape, what).or_py()?;
        let smoothing = settings::smoothing(bandwidth).or_py()?;
        let schedule = self::schedule(schedule, sigma, sigma_min, sigma_max, beta_min, beta_max).or_py()?;
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
