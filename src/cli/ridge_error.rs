//! `scorelens ridge-error MODEL --data DATA.npy --x X.npy --t T --dim d -o DIR`: the model's score error against
//! the smoothed data, e = s_θ − ∇log p_t, split into its parts normal and tangent to the d-dimensional ridges of
//! p_t; with `--trajectory DIR` (a `scorelens sample --record-sigmas` folder) instead of --x/--t, the per-level
//! phase table of the recorded trajectory: distance to the ridge (by SCMS) and the two error norms.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use scorelens::analysis::ridge::{error_split, ridge_phase, row_norms, ScmsSettings};
use scorelens::field::{KdeField, KdeScale};
use scorelens::io::npy;
use scorelens::report::{line_chart, Series};
use scorelens::scheduler::JobOptions;
use scorelens::{Error, Result, ScoreField, ScoreModel};

use super::inputs::{check_points, read_points, read_times, Points};
use super::progress::Bar;
use super::sample::write_summary;
use super::ComputeArgs;

#[derive(Args)]
pub struct RidgeErrorArgs {
    /// The model file (.safetensors); its schedule gives p_t (α(t), std(t)).
    pub model: PathBuf,
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
    /// With --trajectory: draw phases.png (distance to the ridge and the error norms against std(t)).
    #[arg(long)]
    pub plot: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Output folder (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The smoothed data at time t under the model's schedule (α(t), std(t)).
fn kde_at(field: &ScoreField, data: &[f32], d: usize, t: f64) -> Result<KdeField> {
    KdeField::new(scorelens::GpuContext::shared()?, data.to_vec(), d, KdeScale::at_time(&field.schedule(), t))
}

pub fn run(args: &RidgeErrorArgs) -> Result<()> {
    let started = Instant::now();
    let model = ScoreModel::load(&args.model)?;
    let field = &ScoreField::new(scorelens::GpuContext::shared()?, &model)?;
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
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let bar = Bar::new();
    let options = JobOptions { memory_budget: args.compute.memory_budget()?, progress: &bar };
    let dir = &args.output;
    match (&args.trajectory, &args.x, &args.t) {
        (Some(trajectory), _, _) => phases(args, field, &data.data, trajectory, options)?,
        (None, Some(x), Some(t)) => {
            let points = read_points(x, field)?;
            let times = read_times(t, points.rows)?;
            let rows = points.rows;
            let (mut normal, mut tangent) = (vec![0.0; rows * d], vec![0.0; rows * d]);
            // One KDE per distinct t.
            let mut distinct: Vec<f32> = times.clone();
            distinct.sort_by(|a, b| a.total_cmp(b));
            distinct.dedup();
            for &tv in &distinct {
                let members: Vec<usize> = (0..rows).filter(|&r| times.len() == 1 || times[r] == tv).collect();
                let xs: Vec<f32> = members.iter().flat_map(|&r| points.data[r * d..(r + 1) * d].to_vec()).collect();
                let kde = kde_at(field, &data.data, d, tv as f64)?;
                let scores = field.score(&xs, &[tv], options)?;
                let (n, tg) = error_split(&kde, &xs, &scores, args.ridge_dim, options)?;
                for (i, &r) in members.iter().enumerate() {
                    normal[r * d..(r + 1) * d].copy_from_slice(&n[i * d..(i + 1) * d]);
                    tangent[r * d..(r + 1) * d].copy_from_slice(&tg[i * d..(i + 1) * d]);
                }
            }
            let (nn, tn) = (row_norms(&normal, d), row_norms(&tangent, d));
            npy::write_f64(&dir.join("error_normal.npy"), &[rows, d], &normal)?;
            npy::write_f64(&dir.join("error_tangent.npy"), &[rows, d], &tangent)?;
            npy::write_f64(&dir.join("error_normal_norm.npy"), &[rows], &nn)?;
            npy::write_f64(&dir.join("error_tangent_norm.npy"), &[rows], &tn)?;
            write_summary(
                dir,
                &serde_json::json!({
                    "command": "ridge-error", "model": source, "data": args.data.display().to_string(),
                    "ridge_dim": args.ridge_dim, "points": rows, "mean_normal_norm": mean(&nn),
                    "mean_tangent_norm": mean(&tn), "adapter": field.ctx().adapter_description(),
                    "seconds": started.elapsed().as_secs_f64(),
                }),
            )?;
        }
        _ => return Err(Error::InvalidArgument("give --x X.npy --t T, or --trajectory DIR".into())),
    }
    Ok(())
}

/// The phase table along a recorded trajectory.
fn phases(
    args: &RidgeErrorArgs,
    field: &ScoreField,
    data: &[f32],
    trajectory: &Path,
    options: JobOptions,
) -> Result<()> {
    let d = field.dim();
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
    let (levels, n) = (recorded.shape[0], recorded.shape[1]);
    let per_level = recorded.data.len() / levels;
    let settings =
        ScmsSettings { ridge_dim: args.ridge_dim, tolerance: args.tol, max_iterations: args.max_iter, beta: 0.0 };
    let (mut distance, mut normal_norm, mut tangent_norm) = (Vec::new(), Vec::new(), Vec::new());
    let mut table = Vec::new();
    for level in 0..levels {
        let points = Points {
            shape: recorded.shape[1..].to_vec(),
            data: recorded.data[level * per_level..(level + 1) * per_level].to_vec(),
            rows: n,
        };
        check_points(&points, field, &what)?;
        let t = times.data[level];
        let kde = kde_at(field, data, d, t)?;
        let scores = field.score(&points.data, &[t as f32], options)?;
        let phase = ridge_phase(&kde, &points.data, &scores, settings, options)?;
        let std = field.schedule().std(t);
        table.push(serde_json::json!({
            "t": t, "std": std, "mean_distance_to_ridge": mean(&phase.distance),
            "converged": phase.ridge.converged.iter().filter(|&&c| c).count(),
            "mean_normal_error": mean(&phase.normal_norm), "mean_tangent_error": mean(&phase.tangent_norm),
        }));
        distance.extend(phase.distance);
        normal_norm.extend(phase.normal_norm);
        tangent_norm.extend(phase.tangent_norm);
    }
    let dir = &args.output;
    npy::write_f64(&dir.join("distance_to_ridge.npy"), &[levels, n], &distance)?;
    npy::write_f64(&dir.join("error_normal_norm.npy"), &[levels, n], &normal_norm)?;
    npy::write_f64(&dir.join("error_tangent_norm.npy"), &[levels, n], &tangent_norm)?;
    npy::write_f64(&dir.join("t.npy"), &[levels], &times.data)?;
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
        }),
    )
}
