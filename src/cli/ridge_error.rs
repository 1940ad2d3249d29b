//! `scorelens ridge-error MODEL --data DATA.npy --x X.npy --t T --dim d -o DIR`: the model's score error against
//! the smoothed data, e = s_θ − ∇log p_t, split into its parts normal and tangent to the d-dimensional ridges of
//! p_t; with `--trajectory DIR` (a `scorelens sample --record-sigmas` folder) instead of --x/--t, the per-level
//! phase table of the recorded trajectory: distance to the ridge (by SCMS) and the two error norms.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use scorelens::analysis::ridge::{Eigensolver, ScmsSettings};
use scorelens::batch::Points;
use scorelens::io::npy;
use scorelens::results::create_dir;
use scorelens::results::ridge_error::{check_data, ridge_error, ridge_phases, Device};
use scorelens::results::spectrum::RecordedLevels;
use scorelens::scheduler::JobOptions;
use scorelens::{Error, GpuContext, Result, ScoreField};

use super::inputs::{read_points, read_times, run_signature, Shard};
use super::progress::Bar;
use super::ComputeArgs;

#[derive(Args)]
pub struct RidgeErrorArgs {
    /// The model file (.onnx or .safetensors); its schedule gives p_t (α(t), std(t)).
    pub model: PathBuf,
    #[command(flatten)]
    pub settings: super::inputs::ModelSettings,
    /// The training data ([N, D]) whose diffused distribution p_t the model approximates.
    #[arg(long, value_name = "DATA.npy")]
    pub data: PathBuf,
    /// Points where the error is split ([B, D]).
    #[arg(long = "x", value_name = "X.npy", required_unless_present = "trajectory", conflicts_with = "trajectory")]
    pub x: Option<PathBuf>,
    /// Diffusion time in (0, 1] (one number for all rows, or a .npy [B]).
    #[arg(long = "t", value_name = "T", required_unless_present = "trajectory", allow_negative_numbers = true)]
    pub t: Option<String>,
    /// A `scorelens sample --record-sigmas` output folder: the phase table along its recorded levels.
    #[arg(long, value_name = "DIR")]
    pub trajectory: Option<PathBuf>,
    /// Ridge dimension d (0 < d < D).
    #[arg(long = "dim", value_name = "d")]
    pub ridge_dim: usize,
    /// SCMS tolerance and step cap (distance to the ridge along a trajectory).
    #[arg(long, default_value_t = 1e-4)]
    pub tol: f64,
    #[arg(long = "max-iter", default_value_t = 300)]
    pub max_iter: usize,
    /// How the ridge's normal space is found: dense (each D×D Hessian), krylov (block Lanczos on
    /// Hessian-vector products) or auto (by a cost and memory model); the split and SCMS use the same.
    #[arg(long, default_value = "auto", value_parser = ["dense", "krylov", "auto"])]
    pub eigensolver: String,
    /// With --trajectory: draw phases.png (distance to the ridge and the error norms against std(t)).
    #[arg(long)]
    pub plot: bool,
    /// Take only shard i of n of the points (X's rows, or the trajectory's samples) (0 ≤ i < n): its contiguous
    /// block; `scorelens merge` joins the folders.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Output folder (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
}

/// The model on one device, with that device.
type Loaded = (Arc<GpuContext>, ScoreField);

pub fn run(args: &RidgeErrorArgs) -> Result<()> {
    let started = Instant::now();
    let model = args.settings.load_model(&args.model)?;
    let devices: Vec<Loaded> = args
        .compute
        .contexts()?
        .into_iter()
        .map(|ctx| ScoreField::new(ctx.clone(), &model).map(|field| (ctx, field)))
        .collect::<Result<_>>()?;
    let field = &devices[0].1;
    let source = args.model.display().to_string();
    let data = npy::read_f32(&args.data)?;
    check_data(&data.shape, field, &args.data.display().to_string(), &source)?;
    let eigensolver = Eigensolver::parse(&args.eigensolver)?;
    let bar = Bar::new();
    let options = JobOptions { memory_budget: args.compute.memory_budget()?, progress: &bar };
    let dir = &args.output;
    let devices: Vec<Device> = devices.iter().map(|(ctx, field)| (ctx.clone(), field)).collect();
    let data_name = args.data.display().to_string();
    match (&args.trajectory, &args.x, &args.t) {
        (Some(trajectory), _, _) => {
            let levels = RecordedLevels::read(trajectory)?;
            let what = trajectory.join("recorded.npy").display().to_string();
            let settings = ScmsSettings {
                ridge_dim: args.ridge_dim,
                tolerance: args.tol,
                max_iterations: args.max_iter,
                beta: 0.0,
                eigensolver,
            };
            let names = (trajectory.display().to_string(), data_name);
            let table = ridge_phases(
                &devices,
                &data.data,
                &levels,
                args.shard.as_deref(),
                settings,
                options,
                &source,
                (&names.0, &names.1),
                &what,
                &run_signature(),
            )?;
            if args.plot {
                create_dir(dir)?;
                table.plot(dir)?;
            }
            table.save(dir)
        }
        (None, Some(x), Some(t)) => {
            let points = read_points(x, field)?;
            let times = read_times(t, points.rows)?;
            let shard = Shard::of(args.shard.as_deref(), points.rows)?;
            let points = Points { shape: points.shape, x: points.data, t: times }.take(&shard);
            let mut result = ridge_error(
                &devices,
                &data.data,
                &points,
                &shard,
                args.ridge_dim,
                eigensolver,
                options,
                &source,
                &data_name,
                &run_signature(),
            )?;
            result.info.seconds = started.elapsed().as_secs_f64();
            result.save(dir)
        }
        _ => Err(Error::InvalidArgument("give --x X.npy --t T, or --trajectory DIR".into())),
    }
}
