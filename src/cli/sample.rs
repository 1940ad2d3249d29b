//! `scorelens sample MODEL --n N --steps S --sampler em|pc|ode-euler|ode-heun|ode-rk4 [--record-sigmas ...] -o DIR`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use scorelens::io::{npy, write_atomically};
use scorelens::sampler::{self, SampleRun, SamplerConfig, SamplerKind, SeededNoise};
use scorelens::scheduler::JobOptions;
use scorelens::{Error, Result, ScoreField};

use super::inputs::{read_points, split_rows, FieldArgs, LoadedField, Shard};
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
    let field = fields[0];
    let d = field.dim();
    // Row r of the whole run draws from (seed, r, event): x_T is event 0 (when drawn), then each step's noise.
    let (x_init, shape, shard) = initial(args, field)?;
    let noise = SeededNoise::for_rows(args.seed, shard.rows.start);
    let (x_init, noise) = match x_init {
        Some(x) => (x, noise),
        None => {
            let mut noise = noise;
            (sampler::initial_points(field, shard.len(), &mut noise), noise)
        }
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
    let started = Instant::now();
    let blocks = split_rows(&fields, shard.len(), |field, rows| {
        let x = &x_init[rows.start * d..rows.end * d];
        sampler::sample(field, x, &config, &mut noise.offset_rows(rows.start), options)
    })?;
    let run = join_runs(blocks);
    let seconds = started.elapsed().as_secs_f64();

    let dir = &args.output;
    npy::write_f32(&dir.join("samples.npy"), &shape, &run.samples)?;
    if !config.record_sigmas.is_empty() {
        let mut recorded_shape = vec![run.recorded.len()];
        recorded_shape.extend_from_slice(&shape);
        npy::write_f32(&dir.join("recorded.npy"), &recorded_shape, &run.recorded.concat())?;
        npy::write_f64(&dir.join("recorded_t.npy"), &[run.recorded_t.len()], &run.recorded_t)?;
    }
    shard.write_manifest(dir, &[("recorded.npy", 1)], &["recorded_t.npy"])?;
    let schedule = field.schedule();
    let summary = serde_json::json!({
        "command": "sample",
        "model": loaded[0].source,
        "sampler": kind.name(),
        "steps": config.steps,
        "eps": config.eps,
        "snr": config.snr,
        "seed": args.seed,
        "n": shape[0],
        "dim": field.dim(),
        "schedule": schedule.to_string(),
        "record_sigmas": config.record_sigmas,
        "recorded_t": run.recorded_t,
        "recorded_std": run.recorded_t.iter().map(|&t| schedule.std(t)).collect::<Vec<_>>(),
        "adapter": field.ctx().adapter_description(),
        "devices": fields.len(),
        "shard": shard.summary(),
        "seconds": seconds,
    });
    write_summary(dir, &summary)
}

/// The runs of consecutive blocks of rows as one: samples and every recorded level joined in row order (the
/// recorded times are the grid's, the same in every block).
fn join_runs(blocks: Vec<SampleRun>) -> SampleRun {
    let mut blocks = blocks.into_iter();
    let mut run = blocks.next().expect("split_rows returns at least one block");
    for block in blocks {
        run.samples.extend(block.samples);
        for (level, values) in run.recorded.iter_mut().zip(block.recorded) {
            level.extend(values);
        }
    }
    run
}

/// The shard's x_T from --x-init (None: to be drawn from the prior), the shape the outputs take, and the shard
/// of all the run's rows (--n, or --x-init's).
fn initial(args: &SampleArgs, field: &ScoreField) -> Result<(Option<Vec<f32>>, Vec<usize>, Shard)> {
    match &args.x_init {
        Some(path) => {
            let points = read_points(path, field)?;
            let shard = Shard::of(args.shard.as_deref(), points.rows)?;
            let mut shape = points.shape;
            shape[0] = shard.len();
            Ok((Some(shard.slice(&points.data, field.dim()).to_vec()), shape, shard))
        }
        None => {
            if args.n == 0 {
                return Err(Error::InvalidArgument("--n 0: need at least one sample".into()));
            }
            let shard = Shard::of(args.shard.as_deref(), args.n)?;
            let mut shape = vec![shard.len()];
            shape.extend(field.row_shape());
            Ok((None, shape, shard))
        }
    }
}

pub fn write_summary(dir: &Path, summary: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(summary).map_err(|e| Error::bad_input("summary.json", e.to_string()))?;
    write_atomically(&dir.join("summary.json"), text.as_bytes())
}
