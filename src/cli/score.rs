//! `scorelens score MODEL --x X.npy --t T -o OUT.npy`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use scorelens::results::derivatives::score;
use scorelens::Result;

use super::inputs::ModelInputs;
use super::progress::Bar;

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub inputs: ModelInputs,
    /// Output .npy (float32, X's shape).
    #[arg(short = 'o', long = "output", value_name = "OUT.npy")]
    pub output: PathBuf,
}

pub fn run(args: &ScoreArgs) -> Result<()> {
    let job = args.inputs.load()?;
    let bar = Bar::new();
    let started = Instant::now();
    let result = score(&job.fields(), &job.points, job.options(&bar))?;
    let seconds = started.elapsed().as_secs_f64();
    result.save(&args.output)?;
    let rows = job.points.rows();
    log::info!(
        "scored {rows} rows in {seconds:.3} s ({:.2} GFLOP/s)",
        job.field.flops_per_row() * rows as f64 / seconds / 1e9
    );
    Ok(())
}
