//! `scorelens lyapunov MODEL --x-init X.npy --steps S --sampler ... -o DIR` and
//! `scorelens lyapunov --field F.wgsl --dim D --flow --x0 X0.npy --dt DT --steps S -o DIR`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use scorelens::analysis::lyapunov::{lyapunov, Dynamics, InitialTangents, LyapunovRun, LyapunovSettings};
use scorelens::io::npy;
use scorelens::report::{self, Series};
use scorelens::sampler::SamplerKind;
use scorelens::scheduler::JobOptions;
use scorelens::{Error, Result, ScoreField};

use super::inputs::{read_points, split_rows, FieldArgs, LoadedField, Shard};
use super::progress::Bar;
use super::sample::write_summary;
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
    let shard = Shard::of(args.shard.as_deref(), points.rows)?;
    let x0 = shard.slice(&points.data, d);
    let k = args.k.unwrap_or(d.min(32));
    let tangents = match args.tangents.as_str() {
        "random" => InitialTangents::Random { seed: args.seed },
        "axes" => InitialTangents::Axes,
        other => return Err(Error::InvalidArgument(format!("--tangents {other:?}: expected random or axes"))),
    };
    // Trajectory r of the whole run draws its tangents and EM's noise from (seed, r): the same in any shard.
    let settings = LyapunovSettings {
        k,
        qr_every: args.qr_every,
        clv: args.clv,
        tangents,
        history_points: 1000,
        first_row: shard.rows.start,
    };
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let bar = Bar::new();
    let options = JobOptions { memory_budget, progress: &bar };
    let started = Instant::now();
    let parts = split_rows(&fields, shard.len(), |field, rows| {
        let block = LyapunovSettings { first_row: settings.first_row + rows.start, ..settings };
        lyapunov(field, &x0[rows.start * d..rows.end * d], dynamics, block, options)
    })?;
    let result = LyapunovRun::join(parts)?;
    let seconds = started.elapsed().as_secs_f64();
    write_outputs(&args.output, &result)?;
    shard.write_manifest(&args.output, &[("history.npy", 1)], &["history_time.npy"])?;
    let mean_of = |values: &[f64]| -> Vec<f64> {
        (0..k).map(|j| values.iter().skip(j).step_by(k).sum::<f64>() / result.trajectories as f64).collect()
    };
    let steps_total = args.steps + if args.flow { args.transient } else { 0 };
    let summary = serde_json::json!({
        "command": "lyapunov",
        "model": loaded[0].source,
        "mode": if args.flow { "flow".to_string() } else { args.sampler.clone() },
        "trajectories": result.trajectories,
        "dim": d,
        "k": k,
        "steps": args.steps,
        "transient": if args.flow { args.transient } else { 0 },
        "dt": if args.flow { args.dt } else { (1.0 - args.eps) / (args.steps.max(2) - 1) as f64 },
        "qr_every": args.qr_every,
        "propagator": result.propagator.name(),
        "products_per_step": result.products_per_step,
        "products": result.products_per_step * result.trajectories * steps_total,
        "time_span": result.time_span,
        "mean_exponents": mean_of(&result.exponents),
        "sum_of_mean_exponents": mean_of(&result.exponents).iter().sum::<f64>(),
        "mean_alignment": mean_of(&result.alignment),
        "mean_clv_alignment": result.clv.as_ref().map(|c| mean_of(&c.alignment)),
        "clv_time": result.clv.as_ref().map(|c| c.time),
        "adapter": field.ctx().adapter_description(),
        "devices": fields.len(),
        "shard": shard.summary(),
        "seconds": seconds,
        "seconds_per_step": seconds / steps_total.max(1) as f64,
    });
    write_summary(&args.output, &summary)?;
    if args.plot {
        plot(&args.output, &result)?;
    }
    Ok(())
}

fn write_outputs(dir: &Path, r: &LyapunovRun) -> Result<()> {
    let (b, k, d) = (r.trajectories, r.k, r.dim);
    npy::write_f64(&dir.join("log_growth.npy"), &[b, k], &r.log_growth)?;
    npy::write_f64(&dir.join("exponents.npy"), &[b, k], &r.exponents)?;
    npy::write_f32(&dir.join("vectors.npy"), &[b, k, d], &r.vectors)?;
    npy::write_f32(&dir.join("final_x.npy"), &[b, d], &r.final_x)?;
    npy::write_f64(&dir.join("alignment.npy"), &[b, k], &r.alignment)?;
    npy::write_f64(&dir.join("history.npy"), &[r.history_time.len(), b, k], &r.history)?;
    npy::write_f64(&dir.join("history_time.npy"), &[r.history_time.len()], &r.history_time)?;
    if let Some(c) = &r.clv {
        npy::write_f32(&dir.join("clv.npy"), &[b, k, d], &c.vectors)?;
        npy::write_f32(&dir.join("clv_x.npy"), &[b, d], &c.x)?;
        npy::write_f64(&dir.join("clv_alignment.npy"), &[b, k], &c.alignment)?;
    }
    Ok(())
}

/// Exponent convergence (mean over trajectories, first few exponents) and the alignment histogram.
fn plot(dir: &Path, r: &LyapunovRun) -> Result<()> {
    const MOST_CURVES: usize = 8;
    let (b, k) = (r.trajectories, r.k);
    let curves: Vec<Series> = (0..k.min(MOST_CURVES))
        .map(|j| Series {
            label: format!("λ{}", j + 1),
            points: r
                .history_time
                .iter()
                .enumerate()
                .map(|(h, &time)| (time, (0..b).map(|i| r.history[(h * b + i) * k + j]).sum::<f64>() / b as f64))
                .collect(),
            reference: None,
        })
        .collect();
    report::line_chart(
        &dir.join("exponents.png"),
        "Finite-time Lyapunov exponents (mean over trajectories)",
        "time spanned",
        "exponent",
        &curves,
        false,
    )?;
    let histograms: Vec<Series> = (0..k.min(4))
        .map(|j| Series {
            label: format!("vector {}: |v·s|/‖s‖", j + 1),
            points: report::histogram_points(
                &r.alignment.iter().skip(j).step_by(k).copied().collect::<Vec<_>>(),
                20,
                0.0,
                1.0,
            ),
            reference: None,
        })
        .collect();
    report::line_chart(
        &dir.join("alignment.png"),
        "Alignment of the final Lyapunov vectors with the score (flow: the field)",
        "|cos(v_i, s)|",
        "trajectories",
        &histograms,
        false,
    )
}
