//! `lyapunov`: finite-time Lyapunov exponents and vectors of a sampler or a flow, with optional covariant
//! vectors. Writes log_growth.npy, exponents.npy, alignment.npy [B, K] (f64), vectors.npy [B, K, D] and
//! final_x.npy [B, D] (f32), history.npy [H, B, K] and history_time.npy [H] (f64), with --clv clv.npy [B, K, D],
//! clv_x.npy [B, D] (f32) and clv_alignment.npy [B, K] (f64); summary.json, and shard.json for a shard.

use std::path::Path;
use std::time::Instant;

use ndarray::ArrayD;

use super::{array, concatenate, create_dir, write_arrays, write_json, ArrayRef, Layout, NamedArrays, RunInfo};
use crate::analysis::lyapunov::{
    lyapunov_rows as run_lyapunov, Dynamics, LyapunovRun, LyapunovSettings, PropagatorKind,
};
use crate::batch::{split_rows, Shard};
use crate::error::{Error, Result};
use crate::field::ScoreField;
use crate::scheduler::JobOptions;

/// Every per-trajectory array joins along its rows; the history [H, B, K] along B; its times are the run's.
pub const LAYOUT: Layout = Layout { axis: &[("history.npy", 1)], same: &["history_time.npy"] };

/// Covariant Lyapunov vectors at the run's midpoint.
#[derive(Debug, Clone)]
pub struct CovariantResult {
    /// [B, K, D]
    pub clv: ArrayD<f32>,
    /// [B, D]: the points where they were taken.
    pub clv_x: ArrayD<f32>,
    /// [B, K]: |cos| of each vector with the score (flow: the field).
    pub clv_alignment: ArrayD<f64>,
    /// The time of the midpoint.
    pub time: f64,
}

/// A Lyapunov run over a shard of trajectories, in the library's types.
#[derive(Debug, Clone)]
pub struct LyapunovResult {
    /// [B, K]: log of each tangent's growth over the counted steps.
    pub log_growth: ArrayD<f64>,
    /// [B, K]: λᵢ = log_growth / time_span.
    pub exponents: ArrayD<f64>,
    /// [B, K, D]: the final orthonormal tangents (backward Lyapunov vectors).
    pub vectors: ArrayD<f32>,
    /// [B, D]
    pub final_x: ArrayD<f32>,
    /// [B, K]: |vᵢ·s|/‖s‖ at the end (flow: the field).
    pub alignment: ArrayD<f64>,
    /// [H, B, K]: the running exponents at `history_time`.
    pub history: ArrayD<f64>,
    /// [H]
    pub history_time: ArrayD<f64>,
    pub covariant: Option<CovariantResult>,
    pub time_span: f64,
    /// The propagator that carried the run, and its J·v products per trajectory and step (stages × K).
    pub propagator: PropagatorKind,
    pub products_per_step: usize,
    pub dynamics: Dynamics,
    pub settings: LyapunovSettings,
    pub dim: usize,
    pub info: RunInfo,
}

/// The arrays of one block of trajectories.
fn arrays(r: LyapunovRun) -> Result<LyapunovResultArrays> {
    let (b, k, d) = (r.trajectories, r.k, r.dim);
    Ok(LyapunovResultArrays {
        log_growth: array(&[b, k], r.log_growth)?,
        exponents: array(&[b, k], r.exponents)?,
        vectors: array(&[b, k, d], r.vectors)?,
        final_x: array(&[b, d], r.final_x)?,
        alignment: array(&[b, k], r.alignment)?,
        history: array(&[r.history_time.len(), b, k], r.history)?,
        history_time: array(&[r.history_time.len()], r.history_time)?,
        covariant: match r.clv {
            Some(c) => Some(CovariantResult {
                clv: array(&[b, k, d], c.vectors)?,
                clv_x: array(&[b, d], c.x)?,
                clv_alignment: array(&[b, k], c.alignment)?,
                time: c.time,
            }),
            None => None,
        },
        time_span: r.time_span,
        propagator: r.propagator,
        products_per_step: r.products_per_step,
    })
}

struct LyapunovResultArrays {
    log_growth: ArrayD<f64>,
    exponents: ArrayD<f64>,
    vectors: ArrayD<f32>,
    final_x: ArrayD<f32>,
    alignment: ArrayD<f64>,
    history: ArrayD<f64>,
    history_time: ArrayD<f64>,
    covariant: Option<CovariantResult>,
    time_span: f64,
    propagator: PropagatorKind,
    products_per_step: usize,
}

/// Blocks of consecutive trajectories as one, each array along its batch axis ([`LAYOUT`]).
fn join(blocks: Vec<LyapunovResultArrays>) -> Result<LyapunovResultArrays> {
    if blocks.len() == 1 {
        return Ok(blocks.into_iter().next().expect("one block"));
    }
    let first = &blocks[0];
    if blocks.iter().any(|b| b.history_time != first.history_time || b.covariant.is_some() != first.covariant.is_some())
    {
        return Err(Error::Device("Lyapunov runs of different settings cannot be joined".into()));
    }
    let join_f64 = |name: &str, pick: &dyn Fn(&LyapunovResultArrays) -> ArrayD<f64>| {
        concatenate(&blocks.iter().map(pick).collect::<Vec<_>>(), LAYOUT.axis_of(name))
    };
    let join_f32 = |name: &str, pick: &dyn Fn(&LyapunovResultArrays) -> ArrayD<f32>| {
        concatenate(&blocks.iter().map(pick).collect::<Vec<_>>(), LAYOUT.axis_of(name))
    };
    let covariant = match &first.covariant {
        Some(c) => Some(CovariantResult {
            clv: join_f32("clv.npy", &|b| b.covariant.as_ref().expect("checked").clv.clone())?,
            clv_x: join_f32("clv_x.npy", &|b| b.covariant.as_ref().expect("checked").clv_x.clone())?,
            clv_alignment: join_f64("clv_alignment.npy", &|b| {
                b.covariant.as_ref().expect("checked").clv_alignment.clone()
            })?,
            time: c.time,
        }),
        None => None,
    };
    Ok(LyapunovResultArrays {
        log_growth: join_f64("log_growth.npy", &|b| b.log_growth.clone())?,
        exponents: join_f64("exponents.npy", &|b| b.exponents.clone())?,
        vectors: join_f32("vectors.npy", &|b| b.vectors.clone())?,
        final_x: join_f32("final_x.npy", &|b| b.final_x.clone())?,
        alignment: join_f64("alignment.npy", &|b| b.alignment.clone())?,
        history: join_f64("history.npy", &|b| b.history.clone())?,
        history_time: first.history_time.clone(),
        covariant,
        time_span: first.time_span,
        propagator: first.propagator,
        products_per_step: first.products_per_step,
    })
}

/// Lyapunov analysis of `dynamics` from shard `shard` (`I/N`, None for all) of the starting points `x0` ([B, D]
/// or [B, ...row_shape], checked against the field), spread over `fields` (one per device). Trajectory r of the
/// whole run draws its tangents and EM's noise from (seed, r), so shards and devices give the whole run's rows.
#[allow(clippy::too_many_arguments)]
pub fn lyapunov(
    fields: &[&ScoreField],
    x0: &[f32],
    dynamics: Dynamics,
    settings: LyapunovSettings,
    shard: Option<&str>,
    options: JobOptions,
    source: &str,
    run: &str,
) -> Result<LyapunovResult> {
    let field = *fields.first().ok_or_else(|| Error::Device("no device to run on".into()))?;
    let d = field.dim();
    let shard = Shard::parse(shard, x0.len() / d.max(1))?;
    let x0 = shard.slice(x0, d);
    let first_row = shard.rows.start;
    let started = Instant::now();
    let blocks = split_rows(fields, shard.len(), |field, rows| {
        let x = &x0[rows.start * d..rows.end * d];
        arrays(run_lyapunov(field, x, first_row + rows.start, dynamics, settings, options)?)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let a = join(blocks)?;
    Ok(LyapunovResult {
        log_growth: a.log_growth,
        exponents: a.exponents,
        vectors: a.vectors,
        final_x: a.final_x,
        alignment: a.alignment,
        history: a.history,
        history_time: a.history_time,
        covariant: a.covariant,
        time_span: a.time_span,
        propagator: a.propagator,
        products_per_step: a.products_per_step,
        dynamics,
        settings,
        dim: d,
        info: RunInfo {
            source: source.to_string(),
            adapter: field.ctx().adapter_description(),
            devices: fields.len(),
            shard,
            seconds,
            run: run.to_string(),
        },
    })
}

impl LyapunovResult {
    pub fn trajectories(&self) -> usize {
        self.exponents.shape()[0]
    }

    /// The mean over trajectories of each of the K columns of a [B, K] array.
    fn mean_columns(values: &ArrayD<f64>) -> Vec<f64> {
        let (b, k) = (values.shape()[0], values.shape()[1]);
        (0..k).map(|j| (0..b).map(|i| values[[i, j]]).sum::<f64>() / b as f64).collect()
    }

    pub fn summary(&self) -> serde_json::Value {
        let (mode, steps, transient, dt) = match self.dynamics {
            Dynamics::Flow { dt, steps, transient, .. } => ("flow".to_string(), steps, transient, dt),
            Dynamics::Sampler { kind, steps, eps, .. } => {
                (kind.name().to_string(), steps, 0, (1.0 - eps) / (steps.max(2) - 1) as f64)
            }
        };
        let mean_exponents = Self::mean_columns(&self.exponents);
        serde_json::json!({
            "command": "lyapunov",
            "model": self.info.source,
            "mode": mode,
            "trajectories": self.trajectories(),
            "dim": self.dim,
            "k": self.settings.k,
            "steps": steps,
            "transient": transient,
            "dt": dt,
            "qr_every": self.settings.qr_every,
            "propagator": self.propagator.name(),
            "products_per_step": self.products_per_step,
            "products": self.products_per_step * self.trajectories() * (steps + transient),
            "time_span": self.time_span,
            "mean_exponents": mean_exponents,
            "sum_of_mean_exponents": mean_exponents.iter().sum::<f64>(),
            "mean_alignment": Self::mean_columns(&self.alignment),
            "mean_clv_alignment": self.covariant.as_ref().map(|c| Self::mean_columns(&c.clv_alignment)),
            "clv_time": self.covariant.as_ref().map(|c| c.time),
            "adapter": self.info.adapter,
            "devices": self.info.devices,
            "shard": self.info.shard.summary(),
            "seconds": self.info.seconds,
            "seconds_per_step": self.info.seconds / (steps + transient).max(1) as f64,
        })
    }

    /// The arrays, named as their files and in the order the command line writes them.
    pub fn arrays(&self) -> NamedArrays<'_> {
        let mut arrays: NamedArrays = vec![
            ("log_growth", ArrayRef::F64(&self.log_growth)),
            ("exponents", ArrayRef::F64(&self.exponents)),
            ("vectors", ArrayRef::F32(&self.vectors)),
            ("final_x", ArrayRef::F32(&self.final_x)),
            ("alignment", ArrayRef::F64(&self.alignment)),
            ("history", ArrayRef::F64(&self.history)),
            ("history_time", ArrayRef::F64(&self.history_time)),
        ];
        if let Some(c) = &self.covariant {
            arrays.extend([
                ("clv", ArrayRef::F32(&c.clv)),
                ("clv_x", ArrayRef::F32(&c.clv_x)),
                ("clv_alignment", ArrayRef::F64(&c.clv_alignment)),
            ]);
        }
        arrays
    }

    /// Writes the command line's files into `dir` (created if missing); figures are [`LyapunovResult::plot`]'s.
    pub fn save(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_arrays(dir, &self.arrays())?;
        LAYOUT.write_manifest(dir, &self.info)?;
        write_json(&dir.join("summary.json"), &self.summary())
    }

    /// exponents.png (convergence of the exponents, mean over trajectories) and alignment.png (histogram of the
    /// alignment).
    #[cfg(feature = "cli")]
    pub fn plot(&self, dir: &Path) -> Result<()> {
        use crate::report::{self, Series};
        const MOST_CURVES: usize = 8;
        let (b, k) = (self.trajectories(), self.settings.k);
        let curves: Vec<Series> = (0..k.min(MOST_CURVES))
            .map(|j| Series {
                label: format!("λ{}", j + 1),
                points: self
                    .history_time
                    .iter()
                    .enumerate()
                    .map(|(h, &time)| (time, (0..b).map(|i| self.history[[h, i, j]]).sum::<f64>() / b as f64))
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
                    &(0..b).map(|i| self.alignment[[i, j]]).collect::<Vec<_>>(),
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
}
