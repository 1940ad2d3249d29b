//! `scorelens jvp | vjp | jacobian | divergence MODEL --x X.npy --t T ...`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use scorelens::derivative::{DivergenceMethod, JacobianMethod, JvpMethod};
use scorelens::results::derivatives;
use scorelens::Result;

use super::inputs::ModelInputs;
use super::progress::Bar;

#[derive(Clone, Copy, ValueEnum)]
pub enum JvpChoice {
    Exact,
    Fd,
    Fd4,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum JacobianChoice {
    Forward,
    Reverse,
    Fd,
}

#[derive(Args)]
pub struct JvpArgs {
    #[command(flatten)]
    pub inputs: ModelInputs,
    /// Directions V, X's shape ([B, ...]), or [B, P, ...] for P directions per point.
    #[arg(long = "v", value_name = "V.npy")]
    pub v: PathBuf,
    /// exact (forward mode; the default where the model has it), fd (central differences) or fd4 (fourth order).
    #[arg(long, value_enum)]
    pub method: Option<JvpChoice>,
    /// Combine two finite-difference steps to cancel the leading error term (smooth fields).
    #[arg(long)]
    pub richardson: bool,
    /// Output .npy (float32, V's shape).
    #[arg(short = 'o', long = "output", value_name = "OUT.npy")]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct VjpArgs {
    #[command(flatten)]
    pub inputs: ModelInputs,
    /// Cotangents U, X's shape ([B, ...]), or [B, Q, ...] for Q cotangents per point.
    #[arg(long = "u", value_name = "U.npy")]
    pub u: PathBuf,
    /// Output .npy (float32, U's shape).
    #[arg(short = 'o', long = "output", value_name = "OUT.npy")]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct JacobianArgs {
    #[command(flatten)]
    pub inputs: ModelInputs,
    /// forward (D JVPs per point), reverse (D VJPs per point) or fd; default forward where exact products exist.
    #[arg(long, value_enum)]
    pub method: Option<JacobianChoice>,
    /// Output .npy: float32 [B, D, D], row i holding ∂s_i/∂x (torch.func.jacrev's layout, flattened).
    #[arg(short = 'o', long = "output", value_name = "J.npy")]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct DivergenceArgs {
    #[command(flatten)]
    pub inputs: ModelInputs,
    /// Hutchinson's estimator with this many Rademacher probes per point (default: the exact trace).
    #[arg(long)]
    pub probes: Option<usize>,
    /// Seed of the probes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output .npy: float32 [B].
    #[arg(short = 'o', long = "output", value_name = "OUT.npy")]
    pub output: PathBuf,
}

pub fn run_jvp(args: &JvpArgs) -> Result<()> {
    let job = args.inputs.load()?;
    let v = job.read_directions(&args.v, "V")?;
    let method = args.method.map(|m| match m {
        JvpChoice::Exact => JvpMethod::Exact,
        JvpChoice::Fd => JvpMethod::Fd,
        JvpChoice::Fd4 => JvpMethod::Fd4,
    });
    let bar = Bar::new();
    let result = derivatives::jvp(&job.fields(), &job.points, &v, method, args.richardson, job.options(&bar))?;
    result.save(&args.output)
}

pub fn run_vjp(args: &VjpArgs) -> Result<()> {
    let job = args.inputs.load()?;
    let u = job.read_directions(&args.u, "U")?;
    let bar = Bar::new();
    derivatives::vjp(&job.fields(), &job.points, &u, job.options(&bar))?.save(&args.output)
}

pub fn run_jacobian(args: &JacobianArgs) -> Result<()> {
    let job = args.inputs.load()?;
    let method = args.method.map(|m| match m {
        JacobianChoice::Forward => JacobianMethod::Forward,
        JacobianChoice::Reverse => JacobianMethod::Reverse,
        JacobianChoice::Fd => JacobianMethod::Fd,
    });
    let bar = Bar::new();
    derivatives::save_jacobian(&args.output, &job.fields(), &job.points, method, job.options(&bar))
}

pub fn run_divergence(args: &DivergenceArgs) -> Result<()> {
    let job = args.inputs.load()?;
    let method = match args.probes {
        Some(probes) => DivergenceMethod::Hutchinson { probes, seed: args.seed },
        None => DivergenceMethod::Exact,
    };
    let bar = Bar::new();
    // Probes are drawn per row, keyed by the row's index in the whole input (the shard's first row onwards).
    let first_row = job.shard.rows.start;
    let result = derivatives::divergence(&job.fields(), &job.points, first_row, method, job.options(&bar))?;
    result.save(&args.output)
}
