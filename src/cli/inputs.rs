//! Reading the inputs every computing command shares: the field (MODEL or --field F.wgsl --dim D), --x, --t.

use std::path::{Path, PathBuf};

use clap::Args;
use scorelens::field::{SmoothedData, UserField};
use scorelens::graph::MetadataOverrides;
use scorelens::io::npy;
use scorelens::results::derivatives::Directions;
use scorelens::scheduler::{JobOptions, Progress};
use scorelens::settings::{self, ScheduleParameters};
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
        let numbers = ScheduleParameters {
            sigma: self.sigma,
            sigma_min: self.sigma_min,
            sigma_max: self.sigma_max,
            beta_min: self.beta_min,
            beta_max: self.beta_max,
        };
        settings::schedule(self.schedule.as_deref(), numbers)
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
            let (_, dim) = settings::check_data(&data.shape, &what)?;
            let smoothing = settings::smoothing(self.bandwidth)?;
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
        scorelens::batch::Shard::parse(spec, total).map(Shard)
    }
}

/// The library's parameters that are flags of the same name here (`k` → `--k`, `qr_every` → `--qr-every`).
const PARAMETER_FLAGS: [&str; 27] = [
    "shard",
    "sampler",
    "steps",
    "eps",
    "record_sigmas",
    "devices",
    "n_directions",
    "dt",
    "snr",
    "n",
    "k",
    "tangents",
    "qr_every",
    "threshold_c",
    "radius",
    "dim",
    "tol",
    "beta",
    "probes",
    "method",
    "schedule",
    "sigma",
    "sigma_min",
    "sigma_max",
    "beta_min",
    "beta_max",
    "bandwidth",
];

/// Advice inside library messages that names a parameter; the command line names its flag instead.
const PARAMETER_ADVICE: [(&str, &str); 2] =
    [("raise max_memory", "raise --max-memory"), ("try qr_every", "try --qr-every")];

/// A library error with its parameter named as the command line's flag: "shard \"9/4\": …" → "--shard \"9/4\": …",
/// and "(raise max_memory)" → "(raise --max-memory)". Idempotent: a message already in flags is left alone.
pub fn flags(error: Error) -> Error {
    let advise = |mut message: String| {
        for (parameter, flag) in PARAMETER_ADVICE {
            message = message.replace(parameter, flag);
        }
        message
    };
    match error {
        Error::InvalidArgument(message) => {
            let word = message.split(' ').next().unwrap_or("");
            if PARAMETER_FLAGS.contains(&word) {
                Error::InvalidArgument(advise(format!("--{}{}", word.replace('_', "-"), &message[word.len()..])))
            } else {
                Error::InvalidArgument(advise(message))
            }
        }
        Error::DoesNotFit(message) => Error::DoesNotFit(advise(message)),
        Error::NotFinite { what, row, value } => Error::NotFinite { what: advise(what), row, value },
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

/// A model on the GPU with its validated inputs: argument plumbing for the library's calls.
pub struct Job {
    pub field: ScoreField,
    /// With `--devices`: the field on every device named, rows split between them.
    pub devices: Vec<ScoreField>,
    /// The model file or WGSL file the field came from.
    pub source: String,
    /// The shard's rows of X with their times.
    pub points: scorelens::batch::Points,
    /// X's shape, all rows (before `--shard`): what directions (V, U) are checked against.
    pub whole_shape: Vec<usize>,
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
        let shard = Shard::of(shard, x.rows)?;
        let whole_shape = x.shape.clone();
        let points = scorelens::batch::Points { shape: x.shape, x: x.data, t }.take(&shard);
        let devices = match &compute.devices {
            Some(spec) => scorelens::gpu::contexts_for(spec)?
                .into_iter()
                .map(|ctx| source.load_on(ctx).map(|l| l.field))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        Ok(Job { field: loaded.field, devices, source: loaded.source, points, whole_shape, memory_budget, shard })
    }

    /// The fields the rows are spread over: one per `--devices` device, or the one field.
    pub fn fields(&self) -> Vec<&ScoreField> {
        if self.devices.is_empty() {
            vec![&self.field]
        } else {
            self.devices.iter().collect()
        }
    }

    pub fn options<'a>(&self, progress: &'a dyn Progress) -> JobOptions<'a> {
        JobOptions { memory_budget: self.memory_budget, progress }
    }

    /// Directions (V or U) from a .npy: the whole input's X shape, or [B, P, ...row] for P per point, finite;
    /// the shard's rows of them.
    pub fn read_directions(&self, path: &Path, name: &str) -> Result<Directions> {
        let a = npy::read_f32(path)?;
        let what = format!("{} ({name})", path.display());
        Ok(Directions::checked(a.shape, a.data, &self.whole_shape, &self.field, &what)?.take(&self.shard))
    }
}

/// X as rows of the model's input: shape [B, ...row_shape] or [B, D] (flattened rows).
pub struct Points {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub rows: usize,
}

/// X from a .npy, checked against the field: [B, ...row_shape] or [B, D], finite.
pub fn read_points(path: &Path, field: &ScoreField) -> Result<Points> {
    let x = npy::read_f32(path)?;
    let rows = scorelens::batch::check_points(&x.shape, &x.data, field, &format!("{} (X)", path.display()))?;
    Ok(Points { rows, shape: x.shape, data: x.data })
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
