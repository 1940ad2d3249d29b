//! `scorelens sample MODEL --n N --steps S --sampler em|pc|ode-euler|ode-heun|ode-rk4 [--record-sigmas ...] -o DIR`.

use std::path::{Path, PathBuf};

use clap::Args;
use scorelens::results::sample::{sample, Start};
use scorelens::sampler::{SamplerConfig, SamplerKind};
use scorelens::scheduler::JobOptions;
use scorelens::{Error, Result, ScoreField};

use super::inputs::{read_points, run_signature, FieldArgs, LoadedField};
use super::progress::Bar;
use super::ComputeArgs;

#[derive(Args)]
pub struct SampleArgs {
    #[command(flatten)]
    pub source: FieldArgs,
    /// Number of samples (ignored with --x-init, which gives them).
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// Grid points t_k = linspace(1, eps, steps).
    #[arg(long, default_value_t = 500)]
    pub steps: usize,
    /// em, pc, ode-euler, ode-heun or ode-rk4.
    #[arg(long, default_value = "em")]
    pub sampler: String,
    /// The last grid time.
    #[arg(long, default_value_t = 1e-3)]
    pub eps: f64,
    /// Seed of x_T and of the noise draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Start from these points ([N, ...]) instead of x_T drawn from the prior.
    #[arg(long = "x-init", value_name = "X.npy")]
    pub x_init: Option<PathBuf>,
    /// Record the iterate at the first grid time where std(t) ≤ each σ (comma-separated) into recorded.npy.
    #[arg(long = "record-sigmas", value_name = "S1,S2,...", value_delimiter = ',')]
    pub record_sigmas: Vec<f64>,
    /// Signal-to-noise ratio of the Langevin corrector (pc).
    #[arg(long, default_value_t = 0.16)]
    pub snr: f64,
    /// Take only shard i of n of the samples (0 ≤ i < n): its contiguous block of rows, with the draws those rows
    /// have in the whole run; `scorelens merge` joins the folders.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Output folder (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
}

pub fn run(args: &SampleArgs) -> Result<()> {
    let kind = SamplerKind::parse(&args.sampler)?;
    if !(args.snr > 0.0 && args.snr.is_finite()) {
        return Err(Error::InvalidArgument(format!("--snr {}: expected a positive number", args.snr)));
    }
    let memory_budget = args.compute.memory_budget()?;
    let loaded: Vec<LoadedField> =
        args.compute.contexts()?.into_iter().map(|ctx| args.source.load_on(ctx)).collect::<Result<_>>()?;
    let fields: Vec<&ScoreField> = loaded.iter().map(|l| &l.field).collect();
    let start = match &args.x_init {
        Some(path) => {
            let points = read_points(path, fields[0])?;
            Start::Points { shape: points.shape, values: points.data }
        }
        None if args.n == 0 => return Err(Error::InvalidArgument("--n 0: need at least one sample".into())),
        None => Start::Prior { n: args.n },
    };
    let config = SamplerConfig {
        kind,
        steps: args.steps,
        eps: args.eps,
        snr: args.snr,
        record_sigmas: args.record_sigmas.clone(),
    };
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let bar = Bar::new();
    let options = JobOptions { memory_budget, progress: &bar };
    let shard = args.shard.as_deref();
    let result = sample(&fields, start, &config, args.seed, shard, options, &loaded[0].source, &run_signature())?;
    result.save(&args.output)
}

#[allow(dead_code)] // the commands not yet on scorelens::results (and branches merged later) write through it
pub fn write_summary(dir: &Path, summary: &serde_json::Value) -> Result<()> {
    scorelens::results::write_json(&dir.join("summary.json"), summary)
}
