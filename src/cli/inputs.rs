//! Reading the inputs every computing command shares: the field (MODEL or --field F.wgsl --dim D), --x, --t.

use std::path::{Path, PathBuf};

use clap::Args;
use scorelens::field::{SmoothedData, Smoothing, UserField};
use scorelens::graph::MetadataOverrides;
use scorelens::io::npy;
use scorelens::scheduler::{JobOptions, Progress};
use scorelens::{Error, GpuContext, NoiseSchedule, Result, ScoreField, ScoreModel};

use super::ComputeArgs;

/// The score field a command works on: a model file, or a user's WGSL field with its dimension and schedule.
#[derive(Args, Clone)]
pub struct FieldArgs {
    /// The model file (.onnx or .safetensors, model-format.md); or give --field or --kde.
    #[arg(required_unless_present_any = ["field", "kde"])]
    pub model: Option<PathBuf>,
    /// A user field instead of a model: a WGSL file with `fn field(x: State, t: f32) -> State` (and optionally
    /// `fn field_jvp(x: State, v: State, t: f32) -> State`); see docs/fields.md.
    #[arg(long, value_name = "F.wgsl", conflicts_with_all = ["model", "kde"], requires = "dim")]
    pub field: Option<PathBuf>,
    /// The exact score of training data DATA.npy ([N, D]) smoothed by the schedule at each t (α(t), std(t)), or
    /// by a fixed --bandwidth: the data's own diffused distribution, analysed like a network (docs/ridges.md).
    #[arg(long, value_name = "DATA.npy", conflicts_with = "model")]
    pub kde: Option<PathBuf>,
    /// With --kde: smooth with α = 1, σ = S at every t instead of the schedule's.
    #[arg(long, value_name = "S", requires = "kde")]
    pub bandwidth: Option<f64>,
    /// The dimension D of a user field's state.
    #[arg(long, value_name = "D")]
    pub dim: Option<usize>,
    #[command(flatten)]
    pub settings: ModelSettings,
}

/// What a model file's metadata says, given on the command line: for an ONNX network these override the file's
/// `scorelens.*` keys; for a user field (--field) or the smoothed data (--kde) the schedule flags set its noise
/// process (default ve-song with sigma 25).
#[derive(Args, Clone, Default)]
pub struct ModelSettings {
    /// What an ONNX network outputs: score, epsilon, denoiser or v (overrides scorelens.parameterization).
    #[arg(long, value_name = "KIND")]
    pub parameterization: Option<String>,
    /// What an ONNX network's second input receives: t, sigma, c_noise or log_sigma (overrides scorelens.time_input).
    #[arg(long, value_name = "KIND")]
    pub time_input: Option<String>,
    /// The noise schedule: ve-song, ve or vp (overrides the model file's).
    #[arg(long, value_name = "NAME")]
    pub schedule: Option<String>,
    /// ve-song: the sigma of Song's tutorial (default 25 for user fields).
    #[arg(long, value_name = "S")]
    pub sigma: Option<f64>,
    /// ve: smallest and largest std (defaults 0.01 and 50 for user fields).
    #[arg(long, value_name = "S")]
    pub sigma_min: Option<f64>,
    #[arg(long, value_name = "S")]
    pub sigma_max: Option<f64>,
    /// vp: β(t) = β_min + t (β_max − β_min) (defaults 0.1 and 20 for user fields).
    #[arg(long, value_name = "B")]
    pub beta_min: Option<f64>,
    #[arg(long, value_name = "B")]
    pub beta_max: Option<f64>,
}

impl ModelSettings {
    /// The flags that were given, as metadata keys (without the `scorelens.` prefix).
    pub fn overrides(&self) -> MetadataOverrides {
        let mut m = MetadataOverrides::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                m.insert(key.to_string(), v);
            }
        };
        put("parameterization", self.parameterization.clone());
        put("time_input", self.time_input.clone());
        put("schedule", self.schedule.clone());
        put("sigma", self.sigma.map(|v| v.to_string()));
        put("sigma_min", self.sigma_min.map(|v| v.to_string()));
        put("sigma_max", self.sigma_max.map(|v| v.to_string()));
        put("beta_min", self.beta_min.map(|v| v.to_string()));
        put("beta_max", self.beta_max.map(|v| v.to_string()));
        m
    }

    /// Loads MODEL with these settings over its metadata.
    pub fn load_model(&self, path: &Path) -> Result<ScoreModel> {
        ScoreModel::load_with(path, &self.overrides())
    }

    /// The schedule of a user field or the smoothed data: the flags, with ve-song σ = 25 by default.
    pub fn schedule(&self) -> Result<NoiseSchedule> {
        if self.parameterization.is_some() || self.time_input.is_some() {
            return Err(Error::InvalidArgument(
                "--parameterization and --time-input apply to ONNX models, not to --field or --kde".into(),
            ));
        }
        let positive = |flag: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(Error::InvalidArgument(format!("--{flag} {v}: expected a positive number")))
            }
        };
        match self.schedule.as_deref().unwrap_or("ve-song") {
            "ve-song" => {
                let sigma = positive("sigma", self.sigma.unwrap_or(25.0))?;
                if sigma == 1.0 {
                    return Err(Error::InvalidArgument("--sigma 1: ve-song needs sigma ≠ 1".into()));
                }
                Ok(NoiseSchedule::VeSong { sigma })
            }
            "ve" => Ok(NoiseSchedule::Ve {
                sigma_min: positive("sigma-min", self.sigma_min.unwrap_or(0.01))?,
                sigma_max: positive("sigma-max", self.sigma_max.unwrap_or(50.0))?,
            }),
            "vp" => Ok(NoiseSchedule::Vp {
                beta_min: positive("beta-min", self.beta_min.unwrap_or(0.1))?,
                beta_max: positive("beta-max", self.beta_max.unwrap_or(20.0))?,
            }),
            other => Err(Error::InvalidArgument(format!("--schedule {other:?}: expected ve-song, ve or vp"))),
        }
    }
}

/// A field on the GPU.
pub struct LoadedField {
    pub field: ScoreField,
    /// The file it came from, for summaries.
    pub source: String,
}

impl FieldArgs {
    pub fn schedule(&self) -> Result<NoiseSchedule> {
        self.settings.schedule()
    }

    pub fn load(&self) -> Result<LoadedField> {
        self.load_on(GpuContext::shared()?)
    }

    /// The field on a given device.
    pub fn load_on(&self, ctx: std::sync::Arc<GpuContext>) -> Result<LoadedField> {
        if let Some(path) = &self.kde {
            let data = npy::read_f32(path)?;
            let what = path.display().to_string();
            if data.shape.len() != 2 || data.shape[0] == 0 || data.shape[1] == 0 {
                return Err(Error::bad_input(what, format!("shape {:?}; expected [N, D] data points", data.shape)));
            }
            let smoothing = match self.bandwidth {
                Some(s) if s.is_finite() && s > 0.0 => Smoothing::Bandwidth(s),
                Some(s) => return Err(Error::InvalidArgument(format!("--bandwidth {s}: expected a positive number"))),
                None => Smoothing::Schedule,
            };
            let dim = data.shape[1];
            let field = SmoothedData::new(ctx, data.data, dim, self.schedule()?, smoothing).map_err(|e| match e {
                Error::NotFinite { row, value, .. } => Error::NotFinite { what: what.clone(), row, value },
                other => other,
            })?;
            return Ok(LoadedField { field: ScoreField::Smoothed(field), source: what });
        }
        match (&self.model, &self.field) {
            (_, Some(path)) => {
                let dim = self.dim.ok_or_else(|| Error::InvalidArgument("--field needs --dim D".into()))?;
                let field = ScoreField::User(UserField::from_file(ctx, path, dim, self.schedule()?)?);
                Ok(LoadedField { field, source: path.display().to_string() })
            }
            (Some(path), None) => {
                let model = self.settings.load_model(path)?;
                let field = ScoreField::new(ctx, &model)?;
                Ok(LoadedField { field, source: path.display().to_string() })
            }
            (None, None) => Err(Error::InvalidArgument("give a MODEL file or --field F.wgsl --dim D".into())),
        }
    }
}

/// MODEL --x X.npy --t T [--max-memory SIZE]: what every command that evaluates a model takes.
#[derive(Args)]
pub struct ModelInputs {
    #[command(flatten)]
    pub source: FieldArgs,
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

/// The rows a run takes (`--shard I/N`), the library's [`scorelens::batch::Shard`] with the command line's flag in
/// its errors and the command line in its manifest.
#[derive(Debug, Clone)]
pub struct Shard(pub scorelens::batch::Shard);

impl std::ops::Deref for Shard {
    type Target = scorelens::batch::Shard;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Shard {
    /// Shard I/N of `total` rows, or all rows without a spec.
    pub fn of(spec: Option<&str>, total: usize) -> Result<Shard> {
        scorelens::batch::Shard::parse(spec, total).map(Shard).map_err(flags)
    }

    /// Writes shard.json into a sharded run's output folder (see [`scorelens::results::write_manifest`]).
    pub fn write_manifest(&self, dir: &Path, axis: &[(&str, usize)], same: &[&str]) -> Result<()> {
        scorelens::results::write_manifest(dir, &self.0, &run_signature(), axis, same)
    }
}

/// The library's parameters that are flags of the same name here (`k` → `--k`, `qr_every` → `--qr-every`).
const PARAMETER_FLAGS: [&str; 11] =
    ["shard", "snr", "n", "k", "tangents", "qr_every", "threshold_c", "radius", "dim", "tol", "beta"];

/// A library error with its parameter named as the command line's flag: "shard \"9/4\": …" → "--shard \"9/4\": …".
pub fn flags(error: Error) -> Error {
    match error {
        Error::InvalidArgument(message) => {
            let word = message.split(' ').next().unwrap_or("");
            if PARAMETER_FLAGS.contains(&word) {
                Error::InvalidArgument(format!("--{}{}", word.replace('_', "-"), &message[word.len()..]))
            } else {
                Error::InvalidArgument(message)
            }
        }
        other => other,
    }
}

/// The command line without what may differ between the shards of one run (--shard, -o, --devices,
/// --max-memory): `scorelens merge` checks that its parts agree on it.
pub fn run_signature() -> String {
    const PER_SHARD: [&str; 5] = ["--shard", "-o", "--output", "--devices", "--max-memory"];
    let mut kept = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if PER_SHARD.contains(&arg.as_str()) {
            args.next();
        } else if !PER_SHARD.iter().any(|flag| arg.starts_with(&format!("{flag}="))) {
            kept.push(arg);
        }
    }
    kept.join(" ")
}

pub use scorelens::batch::split_rows;

/// A model on the GPU with its validated inputs.
pub struct Job {
    pub field: ScoreField,
    /// With `--devices`: the field on every device named, rows split between them.
    pub devices: Vec<ScoreField>,
    /// The model file or WGSL file the field came from.
    pub source: String,
    pub x: Points,
    pub t: Vec<f32>,
    pub memory_budget: u64,
    /// The rows taken (`--shard`), of all the input's.
    pub shard: Shard,
}

impl ModelInputs {
    pub fn load(&self) -> Result<Job> {
        Job::load(&self.source, &self.x, &self.t, self.shard.as_deref(), &self.compute)
    }
}

impl Job {
    /// The field, its points X (a .npy) and times T (a number or a .npy), and the shard of rows to keep.
    pub fn load(source: &FieldArgs, x: &Path, t: &str, shard: Option<&str>, compute: &ComputeArgs) -> Result<Job> {
        let memory_budget = compute.memory_budget()?;
        let loaded = source.load()?;
        let x = read_points(x, &loaded.field)?;
        let t = read_times(t, x.rows)?;
        let mut job = Job::from_parts(loaded, x, t, shard, memory_budget)?;
        if let Some(spec) = &compute.devices {
            job.devices = scorelens::gpu::contexts_for(spec)?
                .into_iter()
                .map(|ctx| source.load_on(ctx).map(|l| l.field))
                .collect::<Result<_>>()?;
        }
        Ok(job)
    }

    /// Runs `work(field, rows, x, t)` on contiguous blocks of the job's rows, one per device (in parallel), or on
    /// the whole batch with one device; the blocks' results in row order. `rows` counts from the job's first row
    /// (add `shard.rows.start` for the row's index in the whole input).
    pub fn split<T: Send>(
        &self,
        work: impl Fn(&ScoreField, std::ops::Range<usize>, &[f32], &[f32]) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let d = self.field.dim();
        let fields: Vec<&ScoreField> =
            if self.devices.is_empty() { vec![&self.field] } else { self.devices.iter().collect() };
        split_rows(&fields, self.x.rows, |field, range| {
            let t = if self.t.len() == 1 { self.t.clone() } else { self.t[range.clone()].to_vec() };
            work(field, range.clone(), &self.x.data[range.start * d..range.end * d], &t)
        })
    }

    /// [`Job::split`] for flat outputs (`per_row` values a row), joined in row order.
    pub fn map_rows(
        &self,
        per_row: usize,
        work: impl Fn(&ScoreField, std::ops::Range<usize>, &[f32], &[f32]) -> Result<Vec<f32>> + Sync,
    ) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.x.rows * per_row);
        for part in self.split(work)? {
            out.extend(part);
        }
        Ok(out)
    }

    /// A job on points already read (e.g. a sampler's recorded iterates).
    pub fn from_parts(
        loaded: LoadedField,
        mut x: Points,
        mut t: Vec<f32>,
        shard: Option<&str>,
        memory_budget: u64,
    ) -> Result<Job> {
        let shard = Shard::of(shard, x.rows)?;
        if shard.spec.is_some() {
            let range = shard.rows.clone();
            let per_row = x.data.len() / x.rows.max(1);
            x.data = x.data[range.start * per_row..range.end * per_row].to_vec();
            if t.len() > 1 {
                t = t[range.clone()].to_vec();
            }
            x.rows = range.len();
            x.shape[0] = range.len();
        }
        Ok(Job { field: loaded.field, devices: Vec::new(), source: loaded.source, x, t, memory_budget, shard })
    }

    /// The fields the rows are spread over: one per `--devices` device, or the one field.
    pub fn fields(&self) -> Vec<&ScoreField> {
        if self.devices.is_empty() {
            vec![&self.field]
        } else {
            self.devices.iter().collect()
        }
    }

    /// The job's rows (the shard's) as the library takes a batch.
    pub fn points(&self) -> scorelens::batch::Points {
        scorelens::batch::Points { shape: self.x.shape.clone(), x: self.x.data.clone(), t: self.t.clone() }
    }

    #[allow(dead_code)] // kept for the commands that still write their own summaries
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
    scorelens::batch::check_directions(&a.shape, &a.data, &job.x.shape, &job.field, &what)?;
    Ok(a)
}

/// X as rows of the model's input: shape [B, ...row_shape] or [B, D] (flattened rows).
pub struct Points {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub rows: usize,
}

pub fn read_points(path: &Path, field: &ScoreField) -> Result<Points> {
    let x = npy::read_f32(path)?;
    let points = Points { rows: x.shape.first().copied().unwrap_or(0), shape: x.shape, data: x.data };
    check_points(&points, field, &format!("{} (X)", path.display()))?;
    Ok(points)
}

/// Checks that points fit the field: [B, ...row_shape] or [B, D], finite.
pub fn check_points(x: &Points, field: &ScoreField, what: &str) -> Result<()> {
    scorelens::batch::check_points(&x.shape, &x.data, field, what).map(|_| ())
}

/// T: one number for all rows, or a .npy of shape [B] (or a single value).
pub fn read_times(arg: &str, rows: usize) -> Result<Vec<f32>> {
    let (values, what): (Vec<f32>, String) = match arg.trim().parse::<f64>() {
        Ok(v) => (vec![v as f32], format!("--t {arg}")),
        Err(_) => {
            let path = Path::new(arg);
            let t = npy::read_f32(path)?;
            let what = format!("{} (T)", path.display());
            scorelens::batch::check_time_shape(&t.shape, rows, &what)?;
            (t.data, what)
        }
    };
    scorelens::batch::check_time_values(&values, &what)?;
    Ok(values)
}
