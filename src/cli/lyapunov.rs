//! `scorelens lyapunov MODEL --x-init X.npy --steps S --sampler ... -o DIR` and
//! `scorelens lyapunov --field F.wgsl --dim D --flow --x0 X0.npy --dt DT --steps S -o DIR`.

use std::path::PathBuf;

use clap::Args;
use scorelens::analysis::lyapunov::{Dynamics, InitialTangents, LyapunovSettings};
use scorelens::results::lyapunov::lyapunov;
use scorelens::sampler::SamplerKind;
use scorelens::scheduler::JobOptions;
use scorelens::{Error, Result, ScoreField};

use super::inputs::{read_points, run_signature, FieldArgs, LoadedField};
use super::progress::Bar;
use super::ComputeArgs;

#[derive(Args)]
pub struct LyapunovArgs {
    #[command(flatten)]
    pub source: FieldArgs,
    /// Starting points of the sampler's trajectories ([B, ...]), e.g. x_T draws.
    #[arg(long = "x-init", value_name = "X.npy", conflicts_with = "x0")]
    pub x_init: Option<PathBuf>,
    /// Flow mode: the starting points ([B, D]).
    #[arg(long = "x0", value_name = "X0.npy")]
    pub x0: Option<PathBuf>,
    /// Sampler mode: grid points (t_k = linspace(1, eps, steps)); flow mode: RK4 steps counted.
    #[arg(long, default_value_t = 500)]
    pub steps: usize,
    /// em, ode-euler, ode-heun or ode-rk4 (sampler mode).
    #[arg(long, default_value = "ode-euler")]
    pub sampler: String,
    #[arg(long, default_value_t = 1e-3)]
    pub eps: f64,
    /// Tangent vectors per trajectory (default: min(D, 32)).
    #[arg(long)]
    pub k: Option<usize>,
    /// Also compute covariant Lyapunov vectors (Ginelli) at the run's midpoint.
    #[arg(long)]
    pub clv: bool,
    /// Seed of EM's noise draws and of the random starting tangents.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Re-orthonormalise every m steps.
    #[arg(long = "qr-every", value_name = "M", default_value_t = 1)]
    pub qr_every: usize,
    /// Starting tangents: random (orthonormal, seeded) or axes (the first K coordinate axes).
    #[arg(long, default_value = "random")]
    pub tangents: String,
    /// Flow mode: integrate dx/dt = field(x, t) forward by RK4.
    #[arg(long)]
    pub flow: bool,
    /// Flow mode: the RK4 step.
    #[arg(long, default_value_t = 0.01)]
    pub dt: f64,
    /// Flow mode: steps run first and not counted.
    #[arg(long, default_value_t = 0)]
    pub transient: usize,
    /// Flow mode: the (fixed) t passed to the field.
    #[arg(long = "t", default_value_t = 1.0)]
    pub t: f64,
    /// Also draw exponents.png (convergence of the exponents) and alignment.png (histogram of the alignment).
    #[arg(long)]
    pub plot: bool,
    /// Take only shard i of n of the trajectories (0 ≤ i < n): its contiguous block of rows, with the draws those
    /// rows have in the whole run; `scorelens merge` joins the folders.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Output folder (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
}

pub fn run(args: &LyapunovArgs) -> Result<()> {
    let memory_budget = args.compute.memory_budget()?;
    let loaded: Vec<LoadedField> =
        args.compute.contexts()?.into_iter().map(|ctx| args.source.load_on(ctx)).collect::<Result<_>>()?;
    let fields: Vec<&ScoreField> = loaded.iter().map(|l| &l.field).collect();
    let field = fields[0];
    let d = field.dim();
    let dynamics = if args.flow {
        Dynamics::Flow { dt: args.dt, steps: args.steps, transient: args.transient, t: args.t }
    } else {
        let kind = SamplerKind::parse(&args.sampler)?;
        if kind == SamplerKind::Pc {
            return Err(Error::InvalidArgument(
                "--sampler pc: the Langevin corrector's step depends on ‖s‖; Lyapunov analysis takes em, ode-euler, ode-heun or ode-rk4".into(),
            ));
        }
        Dynamics::Sampler { kind, steps: args.steps, eps: args.eps, seed: args.seed }
    };
    let start_path = match (args.flow, &args.x0, &args.x_init) {
        (true, Some(p), _) | (false, None, Some(p)) => p,
        (true, None, _) => return Err(Error::InvalidArgument("--flow needs --x0 X0.npy (the starting points)".into())),
        (false, Some(_), _) => {
            return Err(Error::InvalidArgument("--x0 is for --flow; a sampler takes --x-init".into()))
        }
        (false, None, None) => {
            return Err(Error::InvalidArgument("give --x-init X.npy (sampler mode) or --flow --x0 X0.npy".into()))
        }
    };
    let points = read_points(start_path, field)?;
    let k = args.k.unwrap_or(d.min(32));
    let tangents = match args.tangents.as_str() {
        "random" => InitialTangents::Random { seed: args.seed },
        "axes" => InitialTangents::Axes,
        other => return Err(Error::InvalidArgument(format!("--tangents {other:?}: expected random or axes"))),
    };
    // Trajectory r of the whole run draws its tangents and EM's noise from (seed, r): the same in any shard.
    let settings = LyapunovSettings { k, qr_every: args.qr_every, clv: args.clv, tangents, history_points: 1000 };
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let bar = Bar::new();
    let options = JobOptions { memory_budget, progress: &bar };
    let shard = args.shard.as_deref();
    let result =
        lyapunov(&fields, &points.data, dynamics, settings, shard, options, &loaded[0].source, &run_signature())?;
    result.save(&args.output)?;
    if args.plot {
        result.plot(&args.output)?;
    }
    Ok(())
}
