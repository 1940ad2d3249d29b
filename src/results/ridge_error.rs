//! `ridge-error`: a model's score error against the smoothed data, e = s_θ − ∇log p_t (p_t the data diffused by
//! the model's schedule, α(t) and std(t)), split into its parts normal (E Eᵀ e) and tangent ((I − E Eᵀ) e) to the
//! d-dimensional density ridges of p_t, E the eigenvectors of ∇²log p_t past the d-th. At points X: writes
//! error_normal.npy, error_tangent.npy [B, D] and their row norms error_normal_norm.npy, error_tangent_norm.npy
//! [B] (f64). Along a recorded trajectory ([`ridge_phases`]): distance_to_ridge.npy, error_normal_norm.npy,
//! error_tangent_norm.npy [R, N] and t.npy [R], with the per-level phase table in summary.json.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ndarray::ArrayD;

use super::spectrum::RecordedLevels;
use super::{array, concatenate, create_dir, write_arrays, write_json, ArrayRef, Layout, NamedArrays, RunInfo};
use crate::analysis::ridge::{
    error_split_with_route, ridge_phase, route, row_norms, EigenRoute, Eigensolver, ScmsSettings,
};
use crate::batch::{check_points, split_rows, Points, Shard};
use crate::error::{Error, Result};
use crate::field::{KdeField, KdeScale, ScoreField};
use crate::gpu::GpuContext;
use crate::scheduler::JobOptions;

/// At points: every array joins along its rows.
pub const LAYOUT: Layout = Layout { axis: &[], same: &[] };

/// Along a trajectory: the [R, N] arrays join along N; the level times are the run's.
pub const PHASE_LAYOUT: Layout = Layout {
    axis: &[("distance_to_ridge.npy", 1), ("error_normal_norm.npy", 1), ("error_tangent_norm.npy", 1)],
    same: &["t.npy"],
};

/// The model on one device, with that device (the smoothed data is made there too).
pub type Device<'a> = (Arc<GpuContext>, &'a ScoreField);

/// The smoothed data at time t under the model's schedule (α(t), std(t)), on the device `ctx`.
fn kde_at(ctx: &Arc<GpuContext>, field: &ScoreField, data: &[f32], t: f64) -> Result<KdeField> {
    KdeField::new(ctx.clone(), data.to_vec(), field.dim(), KdeScale::at_time(&field.schedule(), t))
}

/// The route the eigensolver takes for this data on this device: it depends on D, N, d and the budget, not on t
/// or the rows, so one choice describes the whole run. The runs take it from their first split (which chose it
/// anyway); this is only for a run without rows, which made no split.
fn eigen_route(
    device: &Device,
    data: &[f32],
    ridge_dim: usize,
    eigensolver: Eigensolver,
    budget: u64,
) -> Result<EigenRoute> {
    let (ctx, field) = device;
    Ok(route::choose(&kde_at(ctx, field, data, 1.0)?, ridge_dim, eigensolver, budget))
}

/// Checks the data a model's error is measured against: [N, D] with N ≥ 1 and the model's D; `what` names the
/// array, `source` the model.
pub fn check_data(shape: &[usize], field: &ScoreField, what: &str, source: &str) -> Result<()> {
    let d = field.dim();
    if shape.len() != 2 || shape[1] != d || shape[0] == 0 {
        return Err(Error::bad_input(what, format!("shape {shape:?}; expected [N, {d}] (D = {d} from {source})")));
    }
    Ok(())
}

fn check_ridge_dim(ridge_dim: usize, d: usize) -> Result<()> {
    if ridge_dim == 0 || ridge_dim >= d {
        return Err(Error::InvalidArgument(format!("dim {ridge_dim}: expected 1 ≤ d < D = {d}")));
    }
    Ok(())
}

/// The error split at the rows `x` ([B, D]) with times `times` (one, or one per row), on one device: the rows
/// grouped by their t, one smoothed field and one score call per distinct t. Returns (normal, tangent), [B, D],
/// and the route the eigensolver took (None without rows).
pub fn error_split_by_t(
    device: &Device,
    data: &[f32],
    x: &[f32],
    times: &[f32],
    ridge_dim: usize,
    eigensolver: Eigensolver,
    options: JobOptions,
) -> Result<(Vec<f64>, Vec<f64>, Option<EigenRoute>)> {
    let (ctx, field) = device;
    let d = field.dim();
    let rows = x.len() / d;
    let (mut normal, mut tangent) = (vec![0.0; rows * d], vec![0.0; rows * d]);
    let mut route = None;
    let mut distinct: Vec<f32> = times.to_vec();
    distinct.sort_by(|a, b| a.total_cmp(b));
    distinct.dedup();
    for &tv in &distinct {
        let members: Vec<usize> = (0..rows).filter(|&r| times.len() == 1 || times[r] == tv).collect();
        let xs: Vec<f32> = members.iter().flat_map(|&r| x[r * d..(r + 1) * d].to_vec()).collect();
        let kde = kde_at(ctx, field, data, tv as f64)?;
        let scores = field.score(&xs, &[tv], options)?;
        let split = error_split_with_route(&kde, &xs, &scores, ridge_dim, eigensolver, options)?;
        for (i, &r) in members.iter().enumerate() {
            normal[r * d..(r + 1) * d].copy_from_slice(&split.normal[i * d..(i + 1) * d]);
            tangent[r * d..(r + 1) * d].copy_from_slice(&split.tangent[i * d..(i + 1) * d]);
        }
        route.get_or_insert(split.route);
    }
    Ok((normal, tangent, route))
}

#[derive(Debug, Clone)]
pub struct RidgeErrorResult {
    /// [B, D]: E Eᵀ e.
    pub error_normal: ArrayD<f64>,
    /// [B, D]: (I − E Eᵀ) e.
    pub error_tangent: ArrayD<f64>,
    /// [B]: their row norms.
    pub error_normal_norm: ArrayD<f64>,
    pub error_tangent_norm: ArrayD<f64>,
    pub ridge_dim: usize,
    /// How the normal spaces were found (the same route SCMS takes).
    pub route: EigenRoute,
    /// The data as the caller names it.
    pub data: String,
    pub info: RunInfo,
}

/// The error split at `points` (the rows of `shard`, already taken), spread over `devices`.
#[allow(clippy::too_many_arguments)]
pub fn ridge_error(
    devices: &[Device],
    data: &[f32],
    points: &Points,
    shard: &Shard,
    ridge_dim: usize,
    eigensolver: Eigensolver,
    options: JobOptions,
    source: &str,
    data_name: &str,
    run: &str,
) -> Result<RidgeErrorResult> {
    let field = devices.first().ok_or_else(|| Error::Device("no device to run on".into()))?.1;
    let d = field.dim();
    check_ridge_dim(ridge_dim, d)?;
    let started = Instant::now();
    let blocks = split_rows(devices, points.rows(), |device, block| {
        let (x, t) = points.block(block.clone());
        let (normal, tangent, route) = error_split_by_t(device, data, x, t, ridge_dim, eigensolver, options)?;
        let b = block.len();
        Ok((array(&[b, d], normal)?, array(&[b, d], tangent)?, route))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let route = match blocks.iter().find_map(|b| b.2.clone()) {
        Some(route) => route,
        None => eigen_route(&devices[0], data, ridge_dim, eigensolver, options.memory_budget)?,
    };
    let normal =
        concatenate(&blocks.iter().map(|b| b.0.clone()).collect::<Vec<_>>(), LAYOUT.axis_of("error_normal.npy"))?;
    let tangent =
        concatenate(&blocks.iter().map(|b| b.1.clone()).collect::<Vec<_>>(), LAYOUT.axis_of("error_tangent.npy"))?;
    let rows = normal.shape()[0];
    let norms = |a: &ArrayD<f64>| array(&[rows], row_norms(&a.iter().copied().collect::<Vec<_>>(), d));
    Ok(RidgeErrorResult {
        error_normal_norm: norms(&normal)?,
        error_tangent_norm: norms(&tangent)?,
        error_normal: normal,
        error_tangent: tangent,
        ridge_dim,
        route,
        data: data_name.to_string(),
        info: RunInfo {
            source: source.to_string(),
            adapter: field.ctx().adapter_description(),
            devices: devices.len(),
            shard: shard.clone(),
            seconds,
            run: run.to_string(),
        },
    })
}

fn mean<'a>(values: impl IntoIterator<Item = &'a f64>) -> f64 {
    let values: Vec<f64> = values.into_iter().copied().collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

impl RidgeErrorResult {
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "command": "ridge-error", "model": self.info.source, "data": self.data,
            "ridge_dim": self.ridge_dim, "points": self.error_normal.shape()[0],
            "mean_normal_norm": mean(self.error_normal_norm.iter()),
            "mean_tangent_norm": mean(self.error_tangent_norm.iter()), "adapter": self.info.adapter,
            "eigensolver": self.route.summary(),
            "devices": self.info.devices, "shard": self.info.shard.summary(),
            "seconds": self.info.seconds,
        })
    }

    /// The arrays, named as their files and in the order the command line writes them.
    pub fn arrays(&self) -> NamedArrays<'_> {
        vec![
            ("error_normal", ArrayRef::F64(&self.error_normal)),
            ("error_tangent", ArrayRef::F64(&self.error_tangent)),
            ("error_normal_norm", ArrayRef::F64(&self.error_normal_norm)),
            ("error_tangent_norm", ArrayRef::F64(&self.error_tangent_norm)),
        ]
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_arrays(dir, &self.arrays())?;
        LAYOUT.write_manifest(dir, &self.info)?;
        write_json(&dir.join("summary.json"), &self.summary())
    }
}

/// One level of the phase table: means over the level's samples.
#[derive(Debug, Clone)]
pub struct PhaseRow {
    pub t: f64,
    pub std: f64,
    pub mean_distance_to_ridge: f64,
    pub converged: usize,
    pub mean_normal_error: f64,
    pub mean_tangent_error: f64,
}

#[derive(Debug, Clone)]
pub struct PhaseTable {
    /// [R, N]: ‖x − its ridge point (SCMS)‖.
    pub distance_to_ridge: ArrayD<f64>,
    /// [R, N]: ‖E Eᵀ e‖ and ‖(I − E Eᵀ) e‖.
    pub error_normal_norm: ArrayD<f64>,
    pub error_tangent_norm: ArrayD<f64>,
    /// [R]: each level's grid time.
    pub t: ArrayD<f64>,
    pub levels: Vec<PhaseRow>,
    pub ridge_dim: usize,
    /// How the normal spaces were found (SCMS and the split alike).
    pub route: EigenRoute,
    /// The trajectory and the data as the caller names them.
    pub trajectory: String,
    pub data: String,
    pub info: RunInfo,
}

/// The phase table along a sampler's recorded iterates: at every level (its own t), SCMS from each sample of
/// shard `shard` (`I/N`, None for all) to the ridge of p_t, the distance to it and the error split there. `what`
/// names the recorded array in errors.
#[allow(clippy::too_many_arguments)]
pub fn ridge_phases(
    devices: &[Device],
    data: &[f32],
    levels: &RecordedLevels,
    shard: Option<&str>,
    settings: ScmsSettings,
    options: JobOptions,
    source: &str,
    names: (&str, &str),
    what: &str,
    run: &str,
) -> Result<PhaseTable> {
    let field = devices.first().ok_or_else(|| Error::Device("no device to run on".into()))?.1;
    check_ridge_dim(settings.ridge_dim, field.dim())?;
    let shape = levels.recorded.shape().to_vec();
    if shape.len() < 3 || levels.times.len() != shape[0] {
        return Err(Error::bad_input(
            what,
            format!(
                "shape {:?} with {} recorded times; expected [R, N, ...] (scorelens sample --record-sigmas)",
                shape,
                levels.times.len()
            ),
        ));
    }
    let (count, all) = (shape[0], shape[1]);
    let recorded: Vec<f32> = levels.recorded.iter().copied().collect();
    let per_level = recorded.len() / count;
    let per_row = per_level / all.max(1);
    let shard = Shard::parse(shard, all)?;
    let started = Instant::now();
    // Every sample's SCMS stops on its own test: a block's rows end where they would in the whole batch.
    let blocks = split_rows(devices, shard.len(), |(ctx, field), block| {
        let rows = shard.rows.start + block.start..shard.rows.start + block.end;
        (0..count)
            .map(|level| {
                let mut level_shape = shape[1..].to_vec();
                level_shape[0] = rows.len();
                let start = level * per_level;
                let x = &recorded[start + rows.start * per_row..start + rows.end * per_row];
                check_points(&level_shape, x, field, what)?;
                let t = levels.times[level];
                let kde = kde_at(ctx, field, data, t)?;
                let scores = field.score(x, &[t as f32], options)?;
                let phase = ridge_phase(&kde, x, &scores, settings, options)?;
                let b = rows.len();
                Ok((
                    array(&[1, b], phase.distance)?,
                    array(&[1, b], phase.normal_norm)?,
                    array(&[1, b], phase.tangent_norm)?,
                    phase.ridge.converged.iter().filter(|&&c| c).count(),
                    phase.route,
                ))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let route = match blocks.iter().flatten().next() {
        Some(level) => level.4.clone(),
        None => eigen_route(&devices[0], data, settings.ridge_dim, settings.eigensolver, options.memory_budget)?,
    };
    let axis = |name: &str| PHASE_LAYOUT.axis_of(name);
    let level_arrays = |pick: &dyn Fn(&(ArrayD<f64>, ArrayD<f64>, ArrayD<f64>, usize, EigenRoute)) -> ArrayD<f64>,
                        name: &str| {
        // Each level's blocks joined along the samples, then the levels stacked.
        let per_level: Vec<ArrayD<f64>> = (0..count)
            .map(|level| concatenate(&blocks.iter().map(|b| pick(&b[level])).collect::<Vec<_>>(), axis(name)))
            .collect::<Result<_>>()?;
        concatenate(&per_level, 0)
    };
    let distance = level_arrays(&|l| l.0.clone(), "distance_to_ridge.npy")?;
    let normal = level_arrays(&|l| l.1.clone(), "error_normal_norm.npy")?;
    let tangent = level_arrays(&|l| l.2.clone(), "error_tangent_norm.npy")?;
    let rows: Vec<PhaseRow> = (0..count)
        .map(|level| {
            let t = levels.times[level];
            let row = |a: &ArrayD<f64>| a.index_axis(ndarray::Axis(0), level).iter().copied().collect::<Vec<_>>();
            PhaseRow {
                t,
                std: field.schedule().std(t),
                mean_distance_to_ridge: mean(&row(&distance)),
                converged: blocks.iter().map(|b| b[level].3).sum(),
                mean_normal_error: mean(&row(&normal)),
                mean_tangent_error: mean(&row(&tangent)),
            }
        })
        .collect();
    Ok(PhaseTable {
        distance_to_ridge: distance,
        error_normal_norm: normal,
        error_tangent_norm: tangent,
        t: array(&[count], levels.times.clone())?,
        levels: rows,
        ridge_dim: settings.ridge_dim,
        route,
        trajectory: names.0.to_string(),
        data: names.1.to_string(),
        info: RunInfo {
            source: source.to_string(),
            adapter: field.ctx().adapter_description(),
            devices: devices.len(),
            shard,
            seconds,
            run: run.to_string(),
        },
    })
}

impl PhaseTable {
    pub fn summary(&self) -> serde_json::Value {
        let table: Vec<serde_json::Value> = self
            .levels
            .iter()
            .map(|l| {
                serde_json::json!({
                    "t": l.t, "std": l.std, "mean_distance_to_ridge": l.mean_distance_to_ridge,
                    "converged": l.converged,
                    "mean_normal_error": l.mean_normal_error, "mean_tangent_error": l.mean_tangent_error,
                })
            })
            .collect();
        serde_json::json!({
            "command": "ridge-error --trajectory", "trajectory": self.trajectory,
            "data": self.data, "ridge_dim": self.ridge_dim, "levels": table,
            "eigensolver": self.route.summary(),
            "devices": self.info.devices, "shard": self.info.shard.summary(),
        })
    }

    /// The arrays, named as their files and in the order the command line writes them.
    pub fn arrays(&self) -> NamedArrays<'_> {
        vec![
            ("distance_to_ridge", ArrayRef::F64(&self.distance_to_ridge)),
            ("error_normal_norm", ArrayRef::F64(&self.error_normal_norm)),
            ("error_tangent_norm", ArrayRef::F64(&self.error_tangent_norm)),
            ("t", ArrayRef::F64(&self.t)),
        ]
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_arrays(dir, &self.arrays())?;
        PHASE_LAYOUT.write_manifest(dir, &self.info)?;
        write_json(&dir.join("summary.json"), &self.summary())
    }

    /// phases.png: the distance to the ridge and the error norms (means over samples) against log10 std(t).
    #[cfg(feature = "cli")]
    pub fn plot(&self, dir: &Path) -> Result<()> {
        use crate::report::{line_chart, Series};
        let curve = |f: &dyn Fn(&PhaseRow) -> f64| -> Vec<(f64, f64)> {
            self.levels.iter().map(|l| (l.std.log10(), f(l))).collect()
        };
        line_chart(
            &dir.join("phases.png"),
            "Along the trajectory: distance to the ridge and the error split",
            "log10 std(t)",
            "mean over samples",
            &[
                Series {
                    label: "distance to the ridge".into(),
                    points: curve(&|l| l.mean_distance_to_ridge),
                    reference: None,
                },
                Series {
                    label: "‖e⊥‖ (normal)".into(), points: curve(&|l| l.mean_normal_error), reference: None
                },
                Series {
                    label: "‖e∥‖ (tangent)".into(), points: curve(&|l| l.mean_tangent_error), reference: None
                },
            ],
            true,
        )
    }
}
