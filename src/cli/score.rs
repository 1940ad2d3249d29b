//! `scorelens score MODEL --x X.npy --t T -o OUT.npy`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use scorelens::io::npy;
use scorelens::scheduler::JobOptions;
use scorelens::{GpuContext, Result, ScoreField, ScoreModel};

use super::inputs::{read_points, read_times};
use super::progress::Bar;
use super::ComputeArgs;

#[derive(Args)]
pub struct ScoreArgs {
    /// The model file (.safetensors, model-format.md).
    pub model: PathBuf,
    /// Points X, a .npy of shape [B, ...] (one row per point, as the model expects).
    #[arg(long = "x", value_name = "X.npy")]
    pub x: PathBuf,
    /// Diffusion time in (0, 1]: one number for all rows, or a .npy of shape [B].
    #[arg(long = "t", value_name = "T", allow_negative_numbers = true)]
    pub t: String,
    /// Output .npy (float32, X's shape).
    #[arg(short = 'o', long = "output", value_name = "OUT.npy")]
    pub output: PathBuf,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

pub fn run(args: &ScoreArgs) -> Result<()> {
    let budget = args.compute.memory_budget()?;
    let model = ScoreModel::load(&args.model)?;
    let x = read_points(&args.x, &model)?;
    let t = read_times(&args.t, x.rows)?;
    let ctx = GpuContext::shared()?;
    let field = ScoreField::new(ctx.clone(), &model)?;
    let bar = Bar::new();
    let started = Instant::now();
    let score = field.score(&x.data, &t, JobOptions { memory_budget: budget, progress: &bar })?;
    let seconds = started.elapsed().as_secs_f64();
    npy::write_f32(&args.output, &x.shape, &score)?;
    log::info!(
        "scored {} rows in {seconds:.3} s ({:.2} GFLOP/s) on {}",
        x.rows,
        field.flops_per_row() * x.rows as f64 / seconds / 1e9,
        ctx.adapter_description()
    );
    Ok(())
}
