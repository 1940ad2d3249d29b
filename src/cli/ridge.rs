//! `scorelens ridge --data DATA.npy --bandwidth S --x X0.npy --dim d [--beta b] [--tol T] [--max-iter N] [--plot]
//! -o DIR`: d-dimensional density ridges of the smoothed data distribution by SCMS from every row of X0.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use scorelens::analysis::ridge::{Eigensolver, ScmsSettings};
use scorelens::results::ridge::ridge;
use scorelens::{Error, Result};

use super::inputs::run_signature;
use super::kde::KdeInputs;
use super::progress::Bar;

#[derive(Args)]
pub struct RidgeArgs {
    #[command(flatten)]
    pub inputs: KdeInputs,
    /// Starting points X0, a .npy of shape [B, D].
    #[arg(long = "x", value_name = "X0.npy")]
    pub x: PathBuf,
    /// Ridge dimension d, 0 < d < D (1: density filaments).
    #[arg(long = "dim", value_name = "d")]
    pub ridge_dim: usize,
    /// A converged point counts as a ridge point when λ_{d+1} ≤ −β.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub beta: f64,
    /// Stop a point when ‖E Eᵀ ∇log p‖ / ‖∇log p‖ < T.
    #[arg(long, default_value_t = 1e-4)]
    pub tol: f64,
    /// Most SCMS steps per point.
    #[arg(long = "max-iter", default_value_t = 500)]
    pub max_iter: usize,
    /// How the ridge's normal space is found: dense (form each D×D Hessian), krylov (block Lanczos on
    /// Hessian-vector products, the d + 1 leading eigenpairs only) or auto (by a cost and memory model).
    #[arg(long, default_value = "auto", value_parser = ["dense", "krylov", "auto"])]
    pub eigensolver: String,
    /// Draw ridge.png (D = 2 only): data, starting points and ridge points.
    #[arg(long)]
    pub plot: bool,
    /// Take only shard i of n of X0's rows (0 ≤ i < n): its contiguous block; `scorelens merge` joins the folders.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Output folder (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
}

pub fn run(args: &RidgeArgs) -> Result<()> {
    let started = Instant::now();
    if !(args.tol > 0.0 && args.tol.is_finite()) {
        return Err(Error::InvalidArgument(format!("--tol {} must be a positive number", args.tol)));
    }
    if !args.beta.is_finite() {
        return Err(Error::InvalidArgument(format!("--beta {} must be finite", args.beta)));
    }
    let job = args.inputs.load()?;
    let d = job.field().dim();
    if args.ridge_dim == 0 || args.ridge_dim >= d {
        return Err(Error::InvalidArgument(format!(
            "--dim {} must be between 1 and D − 1 = {} (D = {d} from {})",
            args.ridge_dim,
            d.saturating_sub(1),
            args.inputs.data.display()
        )));
    }
    if args.plot && d != 2 {
        return Err(Error::InvalidArgument(format!(
            "--plot draws D = 2 only; {} has D = {d}",
            args.inputs.data.display()
        )));
    }
    let x0 = args.inputs.read_points(&args.x, d)?;
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let loaded = started.elapsed().as_secs_f64();

    let settings = ScmsSettings {
        ridge_dim: args.ridge_dim,
        tolerance: args.tol,
        max_iterations: args.max_iter,
        beta: args.beta,
        eigensolver: Eigensolver::parse(&args.eigensolver)?,
    };
    let bar = Bar::new();
    let fields: Vec<&scorelens::field::KdeField> = job.fields.iter().collect();
    let (data, x) = (args.inputs.data.display().to_string(), args.x.display().to_string());
    let shard = args.shard.as_deref();
    let mut result = ridge(&fields, &x0.data, settings, shard, job.options(&bar), &data, &x, &run_signature())?;
    result.load_seconds = loaded;
    if args.plot {
        let starts = result.info.shard.slice(&x0.data, d);
        result.plot(&args.output.join("ridge.png"), job.field().data(), starts)?;
    }
    result.save(&args.output)
}
