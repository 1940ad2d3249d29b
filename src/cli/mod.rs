//! The `scorelens` command line.

mod bench;
mod demo;
mod derivatives;
mod descriptors;
mod info;
mod inputs;
mod kde;
mod lyapunov;
mod merge;
mod progress;
mod ridge;
mod ridge_error;
mod sample;
mod score;
mod spectrum;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use scorelens::scheduler::{parse_memory_size, DEFAULT_MEMORY_BUDGET};
use scorelens::{GpuContext, Result};

#[derive(Parser)]
#[command(name = "scorelens", version, about = "GPU geometry of score-based generative models", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// List GPU adapters with their limits and features (the chosen one marked); with MODEL, describe it.
    Info {
        /// A model file (.onnx or .safetensors) to describe.
        model: Option<PathBuf>,
        #[command(flatten)]
        settings: inputs::ModelSettings,
    },
    /// The score s(x, t) of a model for every row of X.
    Score(score::ScoreArgs),
    /// Jacobian-vector products J·v of the score.
    Jvp(derivatives::JvpArgs),
    /// Vector-Jacobian products Jᵀ·u of the score.
    Vjp(derivatives::VjpArgs),
    /// Full Jacobians ∂s/∂x, [B, D, D].
    Jacobian(derivatives::JacobianArgs),
    /// Divergence (trace of the Jacobian), exact or by Hutchinson's estimator.
    Divergence(derivatives::DivergenceArgs),
    /// Jacobian spectra: singular values and vectors, local dimension, alignment, non-conservativeness, overlap.
    Spectrum(spectrum::SpectrumArgs),
    /// Local scaling, rank and complexity of the score or denoiser map.
    Descriptors(descriptors::DescriptorArgs),
    /// Draw samples with a reverse-SDE or probability-flow ODE sampler, optionally recording noise levels.
    Sample(sample::SampleArgs),
    /// Lyapunov exponents, vectors and covariant vectors of a sampler or of a flow, with their alignment.
    Lyapunov(lyapunov::LyapunovArgs),
    /// log p, score (and Hessian) of the Gaussian-smoothed data distribution at every row of X.
    Kde(kde::KdeArgs),
    /// Density ridges of the smoothed data distribution by subspace-constrained mean shift from every row of X0.
    Ridge(ridge::RidgeArgs),
    /// A model's score error against the smoothed data, split normal / tangent to the density ridges; with
    /// --trajectory, the per-level phase table of a recorded sampler run.
    RidgeError(ridge_error::RidgeErrorArgs),
    /// Join shard outputs (--shard i/n runs) in shard order: .npy files along their first axis, or folders of them.
    Merge(merge::MergeArgs),
    /// Time a fixed suite (matmul, MLP and U-Net forward) on the chosen adapter.
    Bench(bench::BenchArgs),
    /// The built-in main job: score a built-in model on built-in inputs, check it, and print a summary.
    Demo(demo::DemoArgs),
}

/// Options every command that computes takes.
#[derive(Args, Clone)]
pub struct ComputeArgs {
    /// Device memory budget for the job, e.g. 512MiB or 4GiB; jobs larger than it are split into chunks.
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Spread the rows over several GPUs: `all`, or adapter indices from `scorelens info` (`0,1`); each device
    /// takes a contiguous block of rows and the outputs are joined in order (the same arrays as one device).
    #[arg(long, value_name = "all|0,1,...")]
    pub devices: Option<String>,
}

impl ComputeArgs {
    pub fn memory_budget(&self) -> Result<u64> {
        self.max_memory.as_deref().map_or(Ok(DEFAULT_MEMORY_BUDGET), parse_memory_size)
    }

    /// Refuses `--devices` for a command that runs on one adapter, naming how to pick it instead.
    pub fn single_adapter(&self, command: &str) -> Result<()> {
        match &self.devices {
            Some(spec) => Err(scorelens::Error::InvalidArgument(format!(
                "--devices {spec}: {command} runs on one adapter; choose it with {}=INDEX (see `scorelens info`)",
                scorelens::gpu::ADAPTER_ENV
            ))),
            None => Ok(()),
        }
    }

    /// The devices `--devices` names (each its own device, in order), or the one chosen adapter's.
    pub fn contexts(&self) -> Result<Vec<Arc<GpuContext>>> {
        match &self.devices {
            Some(spec) => scorelens::gpu::contexts_for(spec),
            None => Ok(vec![GpuContext::shared()?]),
        }
    }
}

/// Runs a command; library errors that name a parameter are reported with the command line's flag.
pub fn run(cli: Cli) -> Result<()> {
    run_command(cli).map_err(inputs::flags)
}

fn run_command(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { model, settings } => info::run(model.as_deref(), &settings),
        Command::Score(args) => score::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Jvp(args) => derivatives::run_jvp(&args),
        Command::Spectrum(args) => spectrum::run(&args),
        Command::Descriptors(args) => descriptors::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Sample(args) => sample::run(&args),
        Command::Lyapunov(args) => lyapunov::run(&args),
        Command::Vjp(args) => derivatives::run_vjp(&args),
        Command::Jacobian(args) => derivatives::run_jacobian(&args),
        Command::Divergence(args) => derivatives::run_divergence(&args),
        Command::Kde(args) => kde::run(&args),
        Command::Ridge(args) => ridge::run(&args),
        Command::RidgeError(args) => ridge_error::run(&args),
    }
}
