//! `scorelens ridge --data DATA.npy --bandwidth S --x X0.npy --dim d [--beta b] [--tol T] [--max-iter N] [--plot]
//! -o DIR`: d-dimensional density ridges of the smoothed data distribution by SCMS from every row of X0.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use plotters::prelude::*;
use scorelens::analysis::ridge::{scms, Eigensolver, ScmsResult, ScmsSettings};
use scorelens::io::{npy, write_atomically};
use scorelens::{Error, GpuContext, Result};

use super::inputs::{split_rows, Shard};
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
    let shard = Shard::of(args.shard.as_deref(), x0.shape[0])?;
    let x0 = shard.slice(&x0.data, d);
    let rows = shard.len();
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
    let scms_started = Instant::now();
    // Every point stops on its own test, so a block's points end where they would in the whole batch.
    let blocks = split_rows(&job.fields, rows, |field, block| {
        scms(field, &x0[block.start * d..block.end * d], settings, job.options(&bar))
    })?;
    let result = join_results(blocks);
    let scms_seconds = scms_started.elapsed().as_secs_f64();

    let dir = &args.output;
    npy::write_f32(&dir.join("points.npy"), &[rows, d], &result.points)?;
    write_bool(&dir.join("converged.npy"), &result.converged)?;
    let iterations: Vec<i64> = result.iterations.iter().map(|&i| i as i64).collect();
    npy::write_i64(&dir.join("iterations.npy"), &[rows], &iterations)?;
    npy::write_f64(&dir.join("eigenvalues.npy"), &[rows, result.eigenvalue_count], &result.eigenvalues)?;
    npy::write_f64(&dir.join("eigengap.npy"), &[rows], &result.eigengap)?;
    npy::write_f64(&dir.join("normal_ratio.npy"), &[rows], &result.normal_ratio)?;
    if args.plot {
        plot(&dir.join("ridge.png"), job.field().data(), x0, &result)?;
    }
    shard.write_manifest(dir, &[], &[])?;
    let mut summary = summary(args, &job.data_shape, rows, &result, loaded, scms_seconds, started);
    summary["devices"] = serde_json::json!(job.fields.len());
    summary["shard"] = shard.summary();
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Error::bad_input("summary.json", e.to_string()))?;
    write_atomically(&dir.join("summary.json"), text.as_bytes())
}

/// The results of consecutive blocks of points as one: per-point arrays joined, evaluations summed, sweeps the
/// most any block took.
fn join_results(blocks: Vec<ScmsResult>) -> ScmsResult {
    let mut blocks = blocks.into_iter();
    let mut r = blocks.next().expect("split_rows returns at least one block");
    for b in blocks {
        r.points.extend(b.points);
        r.converged.extend(b.converged);
        r.iterations.extend(b.iterations);
        r.eigenvalues.extend(b.eigenvalues);
        r.eigengap.extend(b.eigengap);
        r.below_beta.extend(b.below_beta);
        r.normal_ratio.extend(b.normal_ratio);
        r.evaluations += b.evaluations;
        r.sweeps = r.sweeps.max(b.sweeps);
        r.eigen.absorb(&b.eigen);
    }
    r
}

fn summary(
    args: &RidgeArgs,
    data_shape: &[usize],
    rows: usize,
    r: &ScmsResult,
    load_seconds: f64,
    scms_seconds: f64,
    started: Instant,
) -> serde_json::Value {
    let converged: Vec<usize> = (0..rows).filter(|&b| r.converged[b]).collect();
    let mut iterations = r.iterations.clone();
    iterations.sort_unstable();
    let median = match rows {
        0 => 0.0,
        n if n % 2 == 1 => iterations[n / 2] as f64,
        n => 0.5 * (iterations[n / 2 - 1] + iterations[n / 2]) as f64,
    };
    let mean_over = |f: &dyn Fn(usize) -> f64| -> Option<f64> {
        (!converged.is_empty()).then(|| converged.iter().map(|&b| f(b)).sum::<f64>() / converged.len() as f64)
    };
    serde_json::json!({
        "command": "ridge",
        "data": args.inputs.data.display().to_string(),
        "x": args.x.display().to_string(),
        "data_points": data_shape[0],
        "dim": data_shape[1],
        "ridge_dim": args.ridge_dim,
        "bandwidth": args.inputs.bandwidth,
        "beta": args.beta,
        "tol": args.tol,
        "max_iter": args.max_iter,
        "points": rows,
        "converged": converged.len(),
        "median_iterations": median,
        "mean_eigengap": mean_over(&|b| r.eigengap[b]),
        "fraction_below_beta": mean_over(&|b| r.below_beta[b] as u8 as f64),
        "fraction_below_beta_over": "converged points",
        "sweeps": r.sweeps,
        "point_evaluations": r.evaluations,
        "eigensolver": r.route.summary(),
        "eigen": r.eigen.summary(),
        "eigenvalues_per_point": r.eigenvalue_count,
        "seconds": {
            "load": load_seconds,
            "scms": scms_seconds,
            "per_sweep": if r.sweeps > 0 { scms_seconds / r.sweeps as f64 } else { 0.0 },
            "total": started.elapsed().as_secs_f64(),
        },
        "adapter": GpuContext::shared().map(|c| c.adapter_description()).unwrap_or_default(),
    })
}

/// A bool array (numpy dtype `|b1`), whole or not at all.
fn write_bool(path: &Path, values: &[bool]) -> Result<()> {
    use npyz::WriterBuilder;
    let mut bytes = Vec::new();
    let mut write = || -> std::io::Result<()> {
        let mut writer =
            npyz::WriteOptions::new().default_dtype().shape(&[values.len() as u64]).writer(&mut bytes).begin_nd()?;
        writer.extend(values.iter().copied())?;
        writer.finish()
    };
    write().map_err(|e| Error::io(path, e))?;
    write_atomically(path, &bytes)
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::bad_input(path.display().to_string(), format!("drawing the figure: {e}"))
}

/// Data (grey), starting points (blue) and where SCMS took them (red; hollow where not converged), D = 2.
fn plot(path: &Path, data: &[f32], starts: &[f32], r: &ScmsResult) -> Result<()> {
    scorelens::report::register_font();
    let all = data.chunks(2).chain(starts.chunks(2)).chain(r.points.chunks(2));
    let (mut x0, mut x1, mut y0, mut y1) = (f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY, f32::NEG_INFINITY);
    for p in all {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    let pad = 0.05 * (x1 - x0).max(y1 - y0).max(1e-6);
    let tmp = scorelens::io::temporary_path(path)?.with_extension("png");
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(&tmp, (900, 900)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Density ridge (SCMS)", ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((x0 - pad)..(x1 + pad), (y0 - pad)..(y1 + pad))?;
        chart.configure_mesh().label_style(("sans-serif", 14)).draw()?;
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(data.chunks(2).map(|p| Circle::new((p[0], p[1]), 1, grey.filled())))?
            .label("data")
            .legend(move |(x, y)| Circle::new((x, y), 3, grey.filled()));
        chart
            .draw_series(starts.chunks(2).map(|p| Circle::new((p[0], p[1]), 2, BLUE.filled())))?
            .label("start")
            .legend(|(x, y)| Circle::new((x, y), 3, BLUE.filled()));
        chart
            .draw_series(r.points.chunks(2).zip(&r.converged).map(|(p, &c)| {
                let style = if c { RED.filled() } else { RED.stroke_width(1) };
                Circle::new((p[0], p[1]), 3, style)
            }))?
            .label("ridge point (hollow: not converged)")
            .legend(|(x, y)| Circle::new((x, y), 3, RED.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    if let Err(e) = draw() {
        let _ = std::fs::remove_file(&tmp);
        return Err(plot_error(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
