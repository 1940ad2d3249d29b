//! `ridge`: d-dimensional density ridges of the smoothed data distribution p(x) = (1/N) Σ N(x; xᵢ, σ² I) by
//! subspace-constrained mean shift from every starting point. Writes points.npy [B, D] (f32), converged.npy [B]
//! (bool), iterations.npy [B] (i64), eigenvalues.npy [B, D], eigengap.npy [B], normal_ratio.npy [B] (f64),
//! summary.json, and shard.json for a shard; with a figure, ridge.png (D = 2).

use std::path::Path;
use std::time::Instant;

use ndarray::ArrayD;

use super::{array, concatenate, create_dir, write_arrays, write_json, ArrayRef, Layout, NamedArrays, RunInfo};
use crate::analysis::ridge::{scms, EigenRoute, EigenStats, ScmsResult, ScmsSettings};
use crate::batch::{split_rows, Shard};
use crate::error::{Error, Result};
use crate::field::KdeField;
use crate::scheduler::JobOptions;

/// Every array joins along its rows.
pub const LAYOUT: Layout = Layout { axis: &[], same: &[] };

#[derive(Debug, Clone)]
pub struct RidgeResult {
    /// [B, D]: where SCMS took each starting point.
    pub points: ArrayD<f32>,
    /// [B]: whether ‖E Eᵀ ∇log p‖ / ‖∇log p‖ fell below the tolerance.
    pub converged: ArrayD<bool>,
    /// [B]: steps taken.
    pub iterations: ArrayD<i64>,
    /// [B, D] on the dense route, [B, d + 1] on the Krylov route (the leading ones only): eigenvalues of
    /// ∇²log p at the final points, descending.
    pub eigenvalues: ArrayD<f64>,
    /// [B]: λ_d − λ_{d+1}.
    pub eigengap: ArrayD<f64>,
    /// [B]: ‖E Eᵀ ∇log p‖ / ‖∇log p‖ at the final points.
    pub normal_ratio: ArrayD<f64>,
    /// [B]: λ_{d+1} ≤ −β.
    pub below_beta: Vec<bool>,
    /// The eigensolver's route and its counts (Lanczos solves, products, planned bytes) summed over the blocks.
    pub route: EigenRoute,
    pub eigen: EigenStats,
    /// Point evaluations summed over the blocks; sweeps the most any block took.
    pub evaluations: usize,
    pub sweeps: usize,
    pub settings: ScmsSettings,
    /// The smoothing bandwidth σ.
    pub bandwidth: f64,
    /// The data's [N, D].
    pub data_shape: Vec<usize>,
    /// The data and the starting points as the caller names them (file paths on the command line).
    pub data: String,
    pub x: String,
    /// Seconds spent before the search (reading, uploading), set by the caller; and in the search.
    pub load_seconds: f64,
    pub scms_seconds: f64,
    pub info: RunInfo,
}

/// SCMS from shard `shard` (`I/N`, None for all) of the starting points `x0` ([B, D], checked), spread over the
/// fields (the same data on each device). Every point stops on its own test, so a block's points end where they
/// would in the whole batch.
#[allow(clippy::too_many_arguments)]
pub fn ridge(
    fields: &[&KdeField],
    x0: &[f32],
    settings: ScmsSettings,
    shard: Option<&str>,
    options: JobOptions,
    data: &str,
    x: &str,
    run: &str,
) -> Result<RidgeResult> {
    let field = *fields.first().ok_or_else(|| Error::Device("no device to run on".into()))?;
    let d = field.dim();
    if !(settings.tolerance > 0.0 && settings.tolerance.is_finite()) {
        return Err(Error::InvalidArgument(format!("tol {} must be a positive number", settings.tolerance)));
    }
    if !settings.beta.is_finite() {
        return Err(Error::InvalidArgument(format!("beta {} must be finite", settings.beta)));
    }
    if settings.ridge_dim == 0 || settings.ridge_dim >= d {
        return Err(Error::InvalidArgument(format!(
            "dim {} must be between 1 and D − 1 = {} (D = {d} from {data})",
            settings.ridge_dim,
            d.saturating_sub(1)
        )));
    }
    let shard = Shard::parse(shard, x0.len() / d)?;
    let x0 = shard.slice(x0, d);
    let started = Instant::now();
    let blocks = split_rows(fields, shard.len(), |field, block| {
        let r = scms(field, &x0[block.start * d..block.end * d], settings, options)?;
        let b = block.len();
        Ok((
            array(&[b, d], r.points.clone())?,
            array(&[b], r.converged.clone())?,
            array(&[b], r.iterations.iter().map(|&i| i as i64).collect())?,
            array(&[b, r.eigenvalue_count], r.eigenvalues.clone())?,
            array(&[b], r.eigengap.clone())?,
            array(&[b], r.normal_ratio.clone())?,
            r,
        ))
    })?;
    let scms_seconds = started.elapsed().as_secs_f64();
    let results: Vec<&ScmsResult> = blocks.iter().map(|b| &b.6).collect();
    macro_rules! join {
        ($i:tt, $name:expr) => {
            concatenate(&blocks.iter().map(|b| b.$i.clone()).collect::<Vec<_>>(), LAYOUT.axis_of($name))?
        };
    }
    Ok(RidgeResult {
        points: join!(0, "points.npy"),
        converged: join!(1, "converged.npy"),
        iterations: join!(2, "iterations.npy"),
        eigenvalues: join!(3, "eigenvalues.npy"),
        eigengap: join!(4, "eigengap.npy"),
        normal_ratio: join!(5, "normal_ratio.npy"),
        below_beta: results.iter().flat_map(|r| r.below_beta.iter().copied()).collect(),
        route: results.first().map_or_else(
            || {
                crate::analysis::ridge::route::choose(
                    field,
                    settings.ridge_dim,
                    settings.eigensolver,
                    options.memory_budget,
                )
            },
            |r| r.route.clone(),
        ),
        eigen: results.iter().fold(EigenStats::default(), |mut total, r| {
            total.absorb(&r.eigen);
            total
        }),
        evaluations: results.iter().map(|r| r.evaluations).sum(),
        sweeps: results.iter().map(|r| r.sweeps).max().unwrap_or(0),
        settings,
        bandwidth: field.scale().sigma,
        data_shape: vec![field.len(), d],
        data: data.to_string(),
        x: x.to_string(),
        load_seconds: 0.0,
        scms_seconds,
        info: RunInfo {
            source: data.to_string(),
            adapter: field.ctx().adapter_description(),
            devices: fields.len(),
            shard,
            seconds: scms_seconds,
            run: run.to_string(),
        },
    })
}

impl RidgeResult {
    pub fn rows(&self) -> usize {
        self.points.shape()[0]
    }

    pub fn summary(&self) -> serde_json::Value {
        let rows = self.rows();
        let converged: Vec<usize> = (0..rows).filter(|&b| self.converged[b]).collect();
        let mut iterations: Vec<i64> = self.iterations.iter().copied().collect();
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
            "data": self.data,
            "x": self.x,
            "data_points": self.data_shape[0],
            "dim": self.data_shape[1],
            "ridge_dim": self.settings.ridge_dim,
            "bandwidth": self.bandwidth,
            "beta": self.settings.beta,
            "tol": self.settings.tolerance,
            "max_iter": self.settings.max_iterations,
            "points": rows,
            "converged": converged.len(),
            "median_iterations": median,
            "mean_eigengap": mean_over(&|b| self.eigengap[b]),
            "fraction_below_beta": mean_over(&|b| self.below_beta[b] as u8 as f64),
            "fraction_below_beta_over": "converged points",
            "sweeps": self.sweeps,
            "point_evaluations": self.evaluations,
            "eigensolver": self.route.summary(),
            "eigen": self.eigen.summary(),
            "eigenvalues_per_point": self.eigenvalues.shape()[1],
            "seconds": {
                "load": self.load_seconds,
                "scms": self.scms_seconds,
                "per_sweep": if self.sweeps > 0 { self.scms_seconds / self.sweeps as f64 } else { 0.0 },
                "total": self.load_seconds + self.scms_seconds,
            },
            "adapter": self.info.adapter,
            "devices": self.info.devices,
            "shard": self.info.shard.summary(),
        })
    }

    /// The arrays, named as their files and in the order the command line writes them.
    pub fn arrays(&self) -> NamedArrays<'_> {
        vec![
            ("points", ArrayRef::F32(&self.points)),
            ("converged", ArrayRef::Bool(&self.converged)),
            ("iterations", ArrayRef::I64(&self.iterations)),
            ("eigenvalues", ArrayRef::F64(&self.eigenvalues)),
            ("eigengap", ArrayRef::F64(&self.eigengap)),
            ("normal_ratio", ArrayRef::F64(&self.normal_ratio)),
        ]
    }

    /// Writes the command line's files into `dir` (created if missing); the figure is [`RidgeResult::plot`]'s.
    pub fn save(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_arrays(dir, &self.arrays())?;
        LAYOUT.write_manifest(dir, &self.info)?;
        write_json(&dir.join("summary.json"), &self.summary())
    }

    /// ridge.png (D = 2 only): the data (grey), the starting points `starts` (the shard's, blue) and where SCMS
    /// took them (red; hollow where not converged).
    #[cfg(feature = "cli")]
    pub fn plot(&self, path: &Path, data: &[f32], starts: &[f32]) -> Result<()> {
        use plotters::prelude::*;
        crate::report::register_font();
        let points: Vec<f32> = self.points.iter().copied().collect();
        let converged: Vec<bool> = self.converged.iter().copied().collect();
        let all = data.chunks(2).chain(starts.chunks(2)).chain(points.chunks(2));
        let (mut x0, mut x1, mut y0, mut y1) = (f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY, f32::NEG_INFINITY);
        for p in all {
            x0 = x0.min(p[0]);
            x1 = x1.max(p[0]);
            y0 = y0.min(p[1]);
            y1 = y1.max(p[1]);
        }
        let pad = 0.05 * (x1 - x0).max(y1 - y0).max(1e-6);
        let tmp = crate::io::temporary_path(path)?.with_extension("png");
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
                .draw_series(points.chunks(2).zip(&converged).map(|(p, &c)| {
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
            return Err(Error::bad_input(path.display().to_string(), format!("drawing the figure: {e}")));
        }
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
}
