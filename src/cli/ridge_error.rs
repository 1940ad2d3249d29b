//! `scorelens ridge-error MODEL --data DATA.npy --x X.npy --t T --dim d -o DIR`: the model's score error against
//! the smoothed data, e = s_θ − ∇log p_t, split into its parts normal and tangent to the d-dimensional ridges of
//! p_t; with `--trajectory DIR` (a `scorelens sample --record-sigmas` folder) instead of --x/--t, the per-level
//! phase table of the recorded trajectory: distance to the ridge (by SCMS) and the two error norms.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use scorelens::analysis::ridge::{error_split, ridge_phase, route, row_norms, Eigensolver, ScmsSettings};
use scorelens::field::{KdeField, KdeScale};
use scorelens::io::npy;
use scorelens::report::{line_chart, Series};
use scorelens::scheduler::JobOptions;
use scorelens::{Error, GpuContext, Result, ScoreField};

use super::inputs::{check_points, read_points, read_times, split_rows, Points, Shard};
use super::progress::Bar;
use super::sample::write_summary;
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

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The smoothed data at time t under the model's schedule (α(t), std(t)), on the device `ctx`.
fn kde_at(ctx: &Arc<GpuContext>, field: &ScoreField, data: &[f32], d: usize, t: f64) -> Result<KdeField> {
    KdeField::new(ctx.clone(), data.to_vec(), d, KdeScale::at_time(&field.schedule(), t))
}

/// The model on one device, with that device.
type Device = (Arc<GpuContext>, ScoreField);

pub fn run(args: &RidgeErrorArgs) -> Result<()> {
    let started = Instant::now();
    let model = args.settings.load_model(&args.model)?;
    let devices: Vec<Device> = args
        .compute
        .contexts()?
        .into_iter()
        .map(|ctx| ScoreField::new(ctx.clone(), &model).map(|field| (ctx, field)))
        .collect::<Result<_>>()?;
    let field = &devices[0].1;
    let source = args.model.display().to_string();
    let d = field.dim();
    let data = npy::read_f32(&args.data)?;
    if data.shape.len() != 2 || data.shape[1] != d || data.shape[0] == 0 {
        return Err(Error::bad_input(
            args.data.display().to_string(),
            format!("shape {:?}; expected [N, {d}] (D = {d} from {source})", data.shape),
        ));
    }
    if args.ridge_dim == 0 || args.ridge_dim >= d {
        return Err(Error::InvalidArgument(format!("--dim {}: expected 1 ≤ d < D = {d}", args.ridge_dim)));
    }
    let eigensolver = Eigensolver::parse(&args.eigensolver)?;
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let bar = Bar::new();
    let options = JobOptions { memory_budget: args.compute.memory_budget()?, progress: &bar };
    let dir = &args.output;
    match (&args.trajectory, &args.x, &args.t) {
        (Some(trajectory), _, _) => phases(args, &devices, &data.data, trajectory, options)?,
        (None, Some(x), Some(t)) => {
            let points = read_points(x, field)?;
            let times = read_times(t, points.rows)?;
            let shard = Shard::of(args.shard.as_deref(), points.rows)?;
            let xs = shard.slice(&points.data, d);
            let times = if times.len() == 1 { times } else { shard.slice(&times, 1).to_vec() };
            let rows = shard.len();
            let blocks = split_rows(&devices, rows, |(ctx, field), block| {
                let t = if times.len() == 1 { &times[..] } else { &times[block.clone()] };
                let x = &xs[block.start * d..block.end * d];
                error_at(ctx, field, &data.data, x, t, args.ridge_dim, eigensolver, options)
            })?;
            let (normal, tangent): (Vec<Vec<f64>>, Vec<Vec<f64>>) = blocks.into_iter().unzip();
            let (normal, tangent) = (normal.concat(), tangent.concat());
            let (nn, tn) = (row_norms(&normal, d), row_norms(&tangent, d));
            npy::write_f64(&dir.join("error_normal.npy"), &[rows, d], &normal)?;
            npy::write_f64(&dir.join("error_tangent.npy"), &[rows, d], &tangent)?;
            npy::write_f64(&dir.join("error_normal_norm.npy"), &[rows], &nn)?;
            npy::write_f64(&dir.join("error_tangent_norm.npy"), &[rows], &tn)?;
            shard.write_manifest(dir, &[], &[])?;
            write_summary(
                dir,
                &serde_json::json!({
                    "command": "ridge-error", "model": source, "data": args.data.display().to_string(),
                    "ridge_dim": args.ridge_dim, "points": rows, "mean_normal_norm": mean(&nn),
                    "mean_tangent_norm": mean(&tn), "adapter": field.ctx().adapter_description(),
                    "eigensolver": route_summary(&devices[0], &data.data, args.ridge_dim, eigensolver, options)?,
                    "devices": devices.len(), "shard": shard.summary(),
                    "seconds": started.elapsed().as_secs_f64(),
                }),
            )?;
        }
        _ => return Err(Error::InvalidArgument("give --x X.npy --t T, or --trajectory DIR".into())),
    }
    Ok(())
}

/// The route the eigensolver takes (it depends on D, N, d and the budget, not on t or the rows).
fn route_summary(
    (ctx, field): &Device,
    data: &[f32],
    ridge_dim: usize,
    eigensolver: Eigensolver,
    options: JobOptions,
) -> Result<serde_json::Value> {
    let kde = kde_at(ctx, field, data, field.dim(), 1.0)?;
    Ok(route::choose(&kde, ridge_dim, eigensolver, options.memory_budget).summary())
}

/// The error split at the rows `x` with times `times` (one, or one per row), on one device: one KDE per
/// distinct t.
fn error_at(
    ctx: &Arc<GpuContext>,
    field: &ScoreField,
    data: &[f32],
    x: &[f32],
    times: &[f32],
    ridge_dim: usize,
    eigensolver: Eigensolver,
    options: JobOptions,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let d = field.dim();
    let rows = x.len() / d;
    let (mut normal, mut tangent) = (vec![0.0; rows * d], vec![0.0; rows * d]);
    let mut distinct: Vec<f32> = times.to_vec();
    distinct.sort_by(|a, b| a.total_cmp(b));
    distinct.dedup();
    for &tv in &distinct {
        let members: Vec<usize> = (0..rows).filter(|&r| times.len() == 1 || times[r] == tv).collect();
        let xs: Vec<f32> = members.iter().flat_map(|&r| x[r * d..(r + 1) * d].to_vec()).collect();
        let kde = kde_at(ctx, field, data, d, tv as f64)?;
        let scores = field.score(&xs, &[tv], options)?;
        let (n, tg) = error_split(&kde, &xs, &scores, ridge_dim, eigensolver, options)?;
        for (i, &r) in members.iter().enumerate() {
            normal[r * d..(r + 1) * d].copy_from_slice(&n[i * d..(i + 1) * d]);
            tangent[r * d..(r + 1) * d].copy_from_slice(&tg[i * d..(i + 1) * d]);
        }
    }
    Ok((normal, tangent))
}

/// One level of a trajectory's phase table for a block of samples.
struct LevelPhase {
    distance: Vec<f64>,
    normal_norm: Vec<f64>,
    tangent_norm: Vec<f64>,
    converged: usize,
}

/// The phase table along a recorded trajectory.
fn phases(
    args: &RidgeErrorArgs,
    devices: &[Device],
    data: &[f32],
    trajectory: &Path,
    options: JobOptions,
) -> Result<()> {
    let d = devices[0].1.dim();
    let recorded = npy::read_f32(&trajectory.join("recorded.npy"))?;
    let times = npy::read_f64(&trajectory.join("recorded_t.npy"))?;
    let what = trajectory.join("recorded.npy").display().to_string();
    if recorded.shape.len() < 3 || times.data.len() != recorded.shape[0] {
        return Err(Error::bad_input(
            what,
            format!(
                "shape {:?} with {} recorded times; expected [R, N, ...] (scorelens sample --record-sigmas)",
                recorded.shape,
                times.data.len()
            ),
        ));
    }
    let (levels, all) = (recorded.shape[0], recorded.shape[1]);
    let per_level = recorded.data.len() / levels;
    let per_row = per_level / all.max(1);
    let shard = Shard::of(args.shard.as_deref(), all)?;
    let n = shard.len();
    let settings = ScmsSettings {
        ridge_dim: args.ridge_dim,
        tolerance: args.tol,
        max_iterations: args.max_iter,
        beta: 0.0,
        eigensolver: Eigensolver::parse(&args.eigensolver)?,
    };
    // Every sample's SCMS stops on its own test: a block's rows end where they would in the whole batch.
    let blocks = split_rows(devices, n, |(ctx, field), block| {
        let rows = shard.rows.start + block.start..shard.rows.start + block.end;
        (0..levels)
            .map(|level| {
                let mut shape = recorded.shape[1..].to_vec();
                shape[0] = rows.len();
                let start = level * per_level;
                let points = Points {
                    shape,
                    data: recorded.data[start + rows.start * per_row..start + rows.end * per_row].to_vec(),
                    rows: rows.len(),
                };
                check_points(&points, field, &what)?;
                let t = times.data[level];
                let kde = kde_at(ctx, field, data, d, t)?;
                let scores = field.score(&points.data, &[t as f32], options)?;
                let phase = ridge_phase(&kde, &points.data, &scores, settings, options)?;
                Ok(LevelPhase {
                    converged: phase.ridge.converged.iter().filter(|&&c| c).count(),
                    distance: phase.distance,
                    normal_norm: phase.normal_norm,
                    tangent_norm: phase.tangent_norm,
                })
            })
            .collect::<Result<Vec<LevelPhase>>>()
    })?;
    let (mut distance, mut normal_norm, mut tangent_norm) = (Vec::new(), Vec::new(), Vec::new());
    let mut table = Vec::new();
    for level in 0..levels {
        let at = |f: &dyn Fn(&LevelPhase) -> &Vec<f64>| -> Vec<f64> {
            blocks.iter().flat_map(|b| f(&b[level]).iter().copied()).collect()
        };
        let (dist, normal, tangent) = (at(&|p| &p.distance), at(&|p| &p.normal_norm), at(&|p| &p.tangent_norm));
        let t = times.data[level];
        let std = devices[0].1.schedule().std(t);
        table.push(serde_json::json!({
            "t": t, "std": std, "mean_distance_to_ridge": mean(&dist),
            "converged": blocks.iter().map(|b| b[level].converged).sum::<usize>(),
            "mean_normal_error": mean(&normal), "mean_tangent_error": mean(&tangent),
        }));
        distance.extend(dist);
        normal_norm.extend(normal);
        tangent_norm.extend(tangent);
    }
    let dir = &args.output;
    npy::write_f64(&dir.join("distance_to_ridge.npy"), &[levels, n], &distance)?;
    npy::write_f64(&dir.join("error_normal_norm.npy"), &[levels, n], &normal_norm)?;
    npy::write_f64(&dir.join("error_tangent_norm.npy"), &[levels, n], &tangent_norm)?;
    npy::write_f64(&dir.join("t.npy"), &[levels], &times.data)?;
    let joined = [("distance_to_ridge.npy", 1), ("error_normal_norm.npy", 1), ("error_tangent_norm.npy", 1)];
    shard.write_manifest(dir, &joined, &["t.npy"])?;
    if args.plot {
        let curve = |key: &str| -> Vec<(f64, f64)> {
            table
                .iter()
                .map(|row| (row["std"].as_f64().unwrap_or(f64::NAN).log10(), row[key].as_f64().unwrap_or(f64::NAN)))
                .collect()
        };
        line_chart(
            &dir.join("phases.png"),
            "Along the trajectory: distance to the ridge and the error split",
            "log10 std(t)",
            "mean over samples",
            &[
                Series {
                    label: "distance to the ridge".into(),
                    points: curve("mean_distance_to_ridge"),
                    reference: None,
                },
                Series { label: "‖e⊥‖ (normal)".into(), points: curve("mean_normal_error"), reference: None },
                Series { label: "‖e∥‖ (tangent)".into(), points: curve("mean_tangent_error"), reference: None },
            ],
            true,
        )?;
    }
    write_summary(
        dir,
        &serde_json::json!({
            "command": "ridge-error --trajectory", "trajectory": trajectory.display().to_string(),
            "data": args.data.display().to_string(), "ridge_dim": args.ridge_dim, "levels": table,
            "eigensolver": route_summary(&devices[0], data, args.ridge_dim, settings.eigensolver, options)?,
            "devices": devices.len(), "shard": shard.summary(),
        }),
    )
}
