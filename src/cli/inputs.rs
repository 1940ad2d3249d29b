//! Reading the inputs every computing command shares: MODEL, --x, --t.

use std::path::{Path, PathBuf};

use clap::Args;
use scorelens::io::npy;
use scorelens::scheduler::{JobOptions, Progress};
use scorelens::{Error, GpuContext, Result, ScoreField, ScoreModel};

use super::ComputeArgs;

/// MODEL --x X.npy --t T [--max-memory SIZE]: what every command that evaluates a model takes.
#[derive(Args)]
pub struct ModelInputs {
    /// The model file (.safetensors, model-format.md).
    pub model: PathBuf,
    /// Points X, a .npy of shape [B, ...] (one row per point, as the model expects).
    #[arg(long = "x", value_name = "X.npy")]
    pub x: PathBuf,
    /// Diffusion time in (0, 1]: one number for all rows, or a .npy of shape [B].
    #[arg(long = "t", value_name = "T", allow_negative_numbers = true)]
    pub t: String,
    /// Take only shard i of n (0 ≤ i < n): its contiguous block of rows; `scorelens merge` joins the outputs.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// The rows [start, end) of shard `i` of `n` over `rows` rows: contiguous blocks, sizes differing by at most one.
pub fn shard_rows(spec: &str, rows: usize) -> Result<std::ops::Range<usize>> {
    let bad = || Error::InvalidArgument(format!("--shard {spec:?}: expected I/N with 0 ≤ I < N, e.g. 0/4"));
    let (i, n) = spec.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok(i * rows / n..(i + 1) * rows / n)
}

/// A model on the GPU with its validated inputs.
pub struct Job {
    pub model: ScoreModel,
    pub field: ScoreField,
    pub x: Points,
    pub t: Vec<f32>,
    pub memory_budget: u64,
}

impl ModelInputs {
    pub fn load(&self) -> Result<Job> {
        let memory_budget = self.compute.memory_budget()?;
        let model = ScoreModel::load(&self.model)?;
        let mut x = read_points(&self.x, &model)?;
        let mut t = read_times(&self.t, x.rows)?;
        if let Some(spec) = &self.shard {
            let range = shard_rows(spec, x.rows)?;
            let per_row = x.data.len() / x.rows.max(1);
            x.data = x.data[range.start * per_row..range.end * per_row].to_vec();
            if t.len() > 1 {
                t = t[range.clone()].to_vec();
            }
            x.rows = range.len();
            x.shape[0] = range.len();
        }
        let field = ScoreField::new(GpuContext::shared()?, &model)?;
        Ok(Job { model, field, x, t, memory_budget })
    }
}

impl Job {
    pub fn field_adapter(&self) -> String {
        GpuContext::shared().map(|c| c.adapter_description()).unwrap_or_default()
    }

    pub fn options<'a>(&self, progress: &'a dyn Progress) -> JobOptions<'a> {
        JobOptions { memory_budget: self.memory_budget, progress }
    }
}

/// Directions (V or U) for a batch: X's shape, or [B, P, ...row] for P per point; finite.
pub fn read_directions(path: &Path, name: &str, job: &Job) -> Result<npy::Array> {
    let a = npy::read_f32(path)?;
    let what = format!("{} ({name})", path.display());
    let row_shape = job.model.row_shape();
    let dim = job.model.dim();
    let rows = job.x.rows;
    let per_point_ok = a.shape.first() == Some(&rows) && a.shape.len() >= 2 && {
        let tail = &a.shape[1..];
        tail == &job.x.shape[1..] || (tail.len() >= 2 && (tail[1..] == row_shape[..] || tail[1..] == [dim]))
    };
    if !per_point_ok {
        return Err(Error::bad_input(
            what,
            format!(
                "shape {:?}; expected X's shape {:?} or [{rows}, P, {}] (P directions per point)",
                a.shape, job.x.shape, dim
            ),
        ));
    }
    if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what, row: i / (a.data.len() / rows), value: a.data[i] as f64 });
    }
    Ok(a)
}

/// X as rows of the model's input: shape [B, ...row_shape] or [B, D] (flattened rows).
pub struct Points {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub rows: usize,
}

pub fn read_points(path: &Path, model: &ScoreModel) -> Result<Points> {
    let x = npy::read_f32(path)?;
    let row_shape = model.row_shape();
    let dim = model.dim();
    let what = format!("{} (X)", path.display());
    if x.shape.len() < 2 {
        return Err(Error::bad_input(
            what,
            format!("shape {:?}; expected [B, {}] (a batch of rows)", x.shape, shape_text(&row_shape)),
        ));
    }
    let per_row: usize = x.shape[1..].iter().product();
    if x.shape[1..] != row_shape[..] && !(x.shape.len() == 2 && per_row == dim) {
        return Err(Error::bad_input(
            what,
            format!(
                "shape {:?} does not match the model: one row must be [{}] ({dim} values), got {:?}",
                x.shape,
                shape_text(&row_shape),
                &x.shape[1..]
            ),
        ));
    }
    let rows = x.shape[0];
    if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite {
            what: format!("{} (X)", path.display()),
            row: i / dim,
            value: x.data[i] as f64,
        });
    }
    Ok(Points { shape: x.shape, data: x.data, rows })
}

fn shape_text(shape: &[usize]) -> String {
    shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}

/// T: one number for all rows, or a .npy of shape [B] (or a single value).
pub fn read_times(arg: &str, rows: usize) -> Result<Vec<f32>> {
    let (values, what): (Vec<f32>, String) = match arg.trim().parse::<f64>() {
        Ok(v) => (vec![v as f32], format!("--t {arg}")),
        Err(_) => {
            let path = Path::new(arg);
            let t = npy::read_f32(path)?;
            let what = format!("{} (T)", path.display());
            let len = t.data.len();
            let ok_shape = (t.shape.len() == 1 && (len == rows || len == 1)) || (t.shape.is_empty() && len == 1);
            if !ok_shape {
                return Err(Error::bad_input(
                    what,
                    format!("shape {:?}; expected [{rows}] (one t per row of X) or a single value", t.shape),
                ));
            }
            (t.data, what)
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what, row: i, value: values[i] as f64 });
    }
    if let Some(i) = values.iter().position(|&v| !(v > 0.0 && v <= 1.0)) {
        return Err(Error::bad_input(what, format!("t = {} at row {i} is outside (0, 1]", values[i])));
    }
    Ok(values)
}
