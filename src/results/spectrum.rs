//! `spectrum`: singular values (and vectors) of the score Jacobian J = ∂s/∂x at every point, the local dimension
//! (threshold rule 1/sᵢ > c·std(t)², and the largest gap), the alignment uᵢ·vᵢ, the overlap of the singular and
//! symmetric-part eigenvectors, and the non-conservativeness ‖J − Jᵀ‖_F / ‖J‖_F. Writes singular_values.npy,
//! residuals.npy, alignment.npy, overlap.npy [B, K] (f64), local_dimension_threshold.npy and
//! local_dimension_gap.npy [B] (i64), nonconservativeness.npy [B] (f64), with vectors left_vectors.npy and
//! right_vectors.npy [B, K, D] (f32); rows.jsonl, summary.json, and shard.json for a shard. Spectra of a
//! sampler's recorded iterates ([`spectra_from_samples`]) write one such folder per recorded σ.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::ArrayD;

use super::{array, create_dir, write_arrays, write_json, ArrayRef, Layout, NamedArrays, RunInfo};
use crate::analysis::route::{self, SpectrumRoute};
use crate::analysis::{self, lowrank::LowRankSettings, MatrixFreeSolver, PointSpectrum, SpectrumSettings};
use crate::batch::{split_points, Points, Shard};
use crate::error::{Error, Result};
use crate::field::ScoreField;
use crate::io::write_atomically;
use crate::scheduler::JobOptions;

/// Every array joins along its rows (rows.jsonl: its lines in order).
pub const LAYOUT: Layout = Layout { axis: &[], same: &[] };

/// How the singular triplets are found: a route, or `Auto` (the cheapest route by the cost model of
/// [`analysis::route`], chosen for the whole input so every shard takes the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpectrumMethod {
    Auto,
    /// The SVD of the exact Jacobian in f64.
    Dense,
    /// Block subspace iteration on J·V and Jᵀ·U products.
    Subspace,
    /// Randomized SVD (oversampled).
    Rsvd,
    /// Block Golub–Kahan–Lanczos (and block Lanczos for the symmetric part) with restarts.
    Krylov,
}

impl SpectrumMethod {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(SpectrumMethod::Auto),
            "dense" => Ok(SpectrumMethod::Dense),
            "subspace" => Ok(SpectrumMethod::Subspace),
            "rsvd" => Ok(SpectrumMethod::Rsvd),
            "krylov" => Ok(SpectrumMethod::Krylov),
            other => {
                Err(Error::InvalidArgument(format!("method {other:?}: expected auto, dense, krylov, subspace or rsvd")))
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SpectrumMethod::Auto => "auto",
            SpectrumMethod::Dense => "dense",
            SpectrumMethod::Subspace => "subspace",
            SpectrumMethod::Rsvd => "rsvd",
            SpectrumMethod::Krylov => "krylov",
        }
    }

    /// The route this method forces (None for `Auto`).
    pub fn route(&self) -> Option<SpectrumRoute> {
        match self {
            SpectrumMethod::Auto => None,
            SpectrumMethod::Dense => Some(SpectrumRoute::Dense),
            SpectrumMethod::Subspace => Some(SpectrumRoute::Subspace),
            SpectrumMethod::Rsvd => Some(SpectrumRoute::Rsvd),
            SpectrumMethod::Krylov => Some(SpectrumRoute::Krylov),
        }
    }
}

/// What a spectrum run computes.
#[derive(Debug, Clone, Copy)]
pub struct SpectrumRequest {
    /// Singular triplets kept per point (1 ≤ k ≤ D).
    pub k: usize,
    pub method: SpectrumMethod,
    /// Keep the singular vectors.
    pub vectors: bool,
    /// The threshold rule's c.
    pub threshold_c: f64,
    /// The matrix-free methods: residual tolerance, iteration cap, extra directions (rsvd), Rademacher probes of
    /// the non-conservativeness, and the seed of the starting blocks and probes.
    pub tol: f64,
    pub max_iter: usize,
    pub oversampling: usize,
    pub probes: usize,
    pub seed: u64,
}

impl SpectrumRequest {
    /// The command line's defaults for k triplets.
    pub fn new(k: usize) -> Self {
        SpectrumRequest {
            k,
            method: SpectrumMethod::Auto,
            vectors: false,
            threshold_c: 2.0,
            tol: 1e-5,
            max_iter: 100,
            oversampling: 8,
            probes: 64,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SpectrumResult {
    /// [B, K]: s₁ ≥ … ≥ s_K.
    pub singular_values: ArrayD<f64>,
    /// [B, K]: ‖J vᵢ − sᵢ uᵢ‖ / s₁.
    pub residuals: ArrayD<f64>,
    /// [B, K]: uᵢ·vᵢ.
    pub alignment: ArrayD<f64>,
    /// [B, K]: the overlap of the top-i singular and symmetric-part eigenvector subspaces.
    pub overlap: ArrayD<f64>,
    /// [B]: #{i : 1/sᵢ > c·std(t)²}.
    pub local_dimension_threshold: ArrayD<i64>,
    /// [B]: the rank before the largest gap of log sᵢ.
    pub local_dimension_gap: ArrayD<i64>,
    /// [B]: ‖J − Jᵀ‖_F / ‖J‖_F.
    pub nonconservativeness: ArrayD<f64>,
    /// [B, K, D]: uᵢ and vᵢ (with `vectors`).
    pub left_vectors: Option<ArrayD<f32>>,
    pub right_vectors: Option<ArrayD<f32>>,
    /// std(t) of each row.
    pub std: Vec<f64>,
    /// Per row: every kept triplet reached the tolerance (always true for dense), the J·V / Jᵀ·U products spent,
    /// and the largest ‖Jᵀ uᵢ − sᵢ vᵢ‖ / s₁ where the route measures it (dense, krylov).
    pub converged: Vec<bool>,
    pub products: Vec<usize>,
    pub max_transpose_residual: Vec<Option<f64>>,
    /// The route taken, and why (the cost model's estimates for `Auto`).
    pub route: SpectrumRoute,
    pub route_reason: String,
    pub request: SpectrumRequest,
    pub dim: usize,
    pub info: RunInfo,
}

/// The spectra of every point of `points` (the rows of `shard`, already taken), spread over `fields` (one per
/// device); `on_row(row, spectrum)` sees each finished row (its index in the whole input) as it comes.
#[allow(clippy::too_many_arguments)]
pub fn spectrum(
    fields: &[&ScoreField],
    points: &Points,
    shard: &Shard,
    request: &SpectrumRequest,
    options: JobOptions,
    source: &str,
    run: &str,
    mut on_row: impl FnMut(usize, &PointSpectrum) -> Result<()>,
) -> Result<SpectrumResult> {
    let field = *fields.first().ok_or_else(|| Error::Device("no device to run on".into()))?;
    let d = field.dim();
    let k = request.k;
    if k == 0 || k > d {
        return Err(Error::InvalidArgument(format!("k {k} must be between 1 and D = {d}")));
    }
    if !(request.threshold_c > 0.0 && request.threshold_c.is_finite()) {
        return Err(Error::InvalidArgument(format!("threshold_c {} must be a positive number", request.threshold_c)));
    }
    let settings = SpectrumSettings { k, threshold_c: request.threshold_c, vectors: request.vectors };
    // The route is chosen for the whole input (not this shard's rows), so every shard takes the same one.
    let (route, route_reason) = match request.method.route() {
        Some(route) => (route, "given by method".to_string()),
        None => {
            let choice = route::choose_route_for(
                field,
                shard.total,
                k,
                request.tol,
                request.probes,
                request.oversampling,
                options,
            );
            (choice.route, choice.reason)
        }
    };
    let first_row = shard.rows.start;
    let mut spectra: Vec<PointSpectrum> = Vec::with_capacity(points.rows());
    let started = Instant::now();
    let mut record = |row: usize, s: PointSpectrum| -> Result<()> {
        on_row(first_row + row, &s)?;
        spectra.push(s);
        Ok(())
    };
    if route == SpectrumRoute::Dense && fields.len() > 1 {
        let blocks = split_points(fields, points, |field, _, x, t| {
            let mut block = Vec::new();
            analysis::spectra(field, x, t, settings, options, |_, s| {
                block.push(s);
                Ok(())
            })?;
            Ok(block)
        })?;
        for (row, s) in blocks.into_iter().flatten().enumerate() {
            record(row, s)?;
        }
    } else if route == SpectrumRoute::Dense {
        analysis::spectra(field, &points.x, &points.t, settings, options, &mut record)?;
    } else {
        // Starting blocks and probes are drawn per row and each row stops at its own convergence, so device
        // blocks and shards give the whole run's rows.
        let blocks = split_points(fields, points, |field, rows, x, t| {
            let lowrank = LowRankSettings {
                k,
                oversampling: if route == SpectrumRoute::Rsvd { request.oversampling } else { 0 },
                tolerance: request.tol,
                max_iterations: request.max_iter,
                seed: request.seed,
            };
            let solver =
                if route == SpectrumRoute::Krylov { MatrixFreeSolver::Krylov } else { MatrixFreeSolver::Power };
            let first_row = first_row + rows.start;
            analysis::matrix_free_spectra(
                field,
                x,
                t,
                first_row,
                solver,
                lowrank,
                request.threshold_c,
                request.probes,
                options,
            )
        })?;
        for (row, s) in blocks.into_iter().flatten().enumerate() {
            record(row, s)?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let rows = spectra.len();
    let per_row = |f: &dyn Fn(&PointSpectrum) -> &Vec<f64>| -> Vec<f64> {
        spectra.iter().flat_map(|s| f(s).iter().copied()).collect()
    };
    let vectors = |pick: usize| -> Result<ArrayD<f32>> {
        let values: Vec<f32> = spectra
            .iter()
            .flat_map(|s| {
                if pick == 0 { s.left.as_deref() } else { s.right.as_deref() }.unwrap_or(&[]).iter().map(|&v| v as f32)
            })
            .collect();
        array(&[rows, k, d], values)
    };
    let schedule = field.schedule();
    Ok(SpectrumResult {
        singular_values: array(&[rows, k], per_row(&|s| &s.singular_values))?,
        residuals: array(&[rows, k], per_row(&|s| &s.residuals))?,
        alignment: array(&[rows, k], per_row(&|s| &s.alignment))?,
        overlap: array(&[rows, k], per_row(&|s| &s.overlap))?,
        local_dimension_threshold: array(
            &[rows],
            spectra.iter().map(|s| s.local_dimension_threshold as i64).collect(),
        )?,
        local_dimension_gap: array(&[rows], spectra.iter().map(|s| s.local_dimension_gap as i64).collect())?,
        nonconservativeness: array(&[rows], spectra.iter().map(|s| s.nonconservativeness).collect())?,
        left_vectors: if request.vectors { Some(vectors(0)?) } else { None },
        right_vectors: if request.vectors { Some(vectors(1)?) } else { None },
        std: (0..rows).map(|r| schedule.std(points.t_of(r) as f64)).collect(),
        converged: spectra.iter().map(|s| s.converged).collect(),
        products: spectra.iter().map(|s| s.products).collect(),
        max_transpose_residual: spectra
            .iter()
            .map(|s| {
                (!s.transpose_residuals.is_empty()).then(|| s.transpose_residuals.iter().cloned().fold(0.0, f64::max))
            })
            .collect(),
        route,
        route_reason,
        request: *request,
        dim: d,
        info: RunInfo {
            source: source.to_string(),
            adapter: field.ctx().adapter_description(),
            devices: fields.len(),
            shard: shard.clone(),
            seconds,
            run: run.to_string(),
        },
    })
}

/// Appends finished rows to `dir`/rows.jsonl as they come ([`row_line`]), so an interrupted run keeps them; the
/// result's `save` rewrites the file whole when the run ends.
pub struct RowLog {
    path: PathBuf,
    file: std::fs::File,
}

impl RowLog {
    /// Creates `dir` (if missing) and an empty rows.jsonl in it.
    pub fn create(dir: &Path) -> Result<RowLog> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("rows.jsonl");
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(RowLog { path, file })
    }

    /// Appends the line of row `row` (its index in the whole input) and flushes it.
    pub fn write(&mut self, row: usize, s: &PointSpectrum) -> Result<()> {
        writeln!(self.file, "{}", row_line(row, s))
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// The line rows.jsonl holds for row `row` (its index in the whole input).
pub fn row_line(row: usize, s: &PointSpectrum) -> serde_json::Value {
    serde_json::json!({
        "row": row,
        "converged": s.converged,
        "singular_values": s.singular_values,
        "local_dimension_threshold": s.local_dimension_threshold,
        "local_dimension_gap": s.local_dimension_gap,
        "nonconservativeness": s.nonconservativeness,
    })
}

impl SpectrumResult {
    pub fn rows(&self) -> usize {
        self.singular_values.shape()[0]
    }

    fn row_values(a: &ArrayD<f64>, r: usize) -> Vec<f64> {
        a.index_axis(ndarray::Axis(0), r).iter().copied().collect()
    }

    /// The warning naming the rows that stopped at the iteration cap short of the tolerance, if any.
    pub fn unconverged_warning(&self) -> Option<String> {
        analysis::spectrum::unconverged_warning(&self.converged, self.info.shard.rows.start, self.route.name())
    }

    /// rows.jsonl: one line a row.
    pub fn rows_jsonl(&self) -> String {
        let first_row = self.info.shard.rows.start;
        let mut text = String::new();
        for r in 0..self.rows() {
            let line = serde_json::json!({
                "row": first_row + r,
                "converged": self.converged[r],
                "singular_values": Self::row_values(&self.singular_values, r),
                "local_dimension_threshold": self.local_dimension_threshold[r],
                "local_dimension_gap": self.local_dimension_gap[r],
                "nonconservativeness": self.nonconservativeness[r],
            });
            text.push_str(&format!("{line}\n"));
        }
        text
    }

    pub fn summary(&self) -> serde_json::Value {
        let (first_row, k) = (self.info.shard.rows.start, self.request.k);
        serde_json::json!({
            "command": "spectrum",
            "model": self.info.source,
            "method": self.route.name(),
            "method_requested": self.request.method.name(),
            "method_reason": self.route_reason,
            "products": self.products.iter().sum::<usize>(),
            "converged": self.converged.iter().all(|&c| c),
            "tol": self.request.tol,
            "k": k,
            "dim": self.dim,
            "threshold_c": self.request.threshold_c,
            "adapter": self.info.adapter,
            "seconds": self.info.seconds,
            "devices": self.info.devices,
            "shard": self.info.shard.summary(),
            "rows": (0..self.rows()).map(|r| serde_json::json!({
                "row": first_row + r,
                "std": self.std[r],
                "s1": self.singular_values[[r, 0]],
                "s_k": self.singular_values[[r, k - 1]],
                "converged": self.converged[r],
                "products": self.products[r],
                "max_residual": Self::row_values(&self.residuals, r).into_iter().fold(0.0, f64::max),
                "max_transpose_residual": self.max_transpose_residual[r],
                "local_dimension_threshold": self.local_dimension_threshold[r],
                "local_dimension_gap": self.local_dimension_gap[r],
                "nonconservativeness": self.nonconservativeness[r],
                "mean_alignment": Self::row_values(&self.alignment, r).iter().sum::<f64>() / k as f64,
            })).collect::<Vec<_>>(),
        })
    }

    /// The arrays, named as their files and in the order the command line writes them.
    pub fn arrays(&self) -> NamedArrays<'_> {
        let mut arrays: NamedArrays = vec![
            ("singular_values", ArrayRef::F64(&self.singular_values)),
            ("residuals", ArrayRef::F64(&self.residuals)),
            ("alignment", ArrayRef::F64(&self.alignment)),
            ("overlap", ArrayRef::F64(&self.overlap)),
            ("local_dimension_threshold", ArrayRef::I64(&self.local_dimension_threshold)),
            ("local_dimension_gap", ArrayRef::I64(&self.local_dimension_gap)),
            ("nonconservativeness", ArrayRef::F64(&self.nonconservativeness)),
        ];
        if let (Some(left), Some(right)) = (&self.left_vectors, &self.right_vectors) {
            arrays.extend([("left_vectors", ArrayRef::F32(left)), ("right_vectors", ArrayRef::F32(right))]);
        }
        arrays
    }

    /// Writes the command line's files into `dir` (created if missing), rows.jsonl included; no manifest (a
    /// spectrum folder may be one level of a from-samples run: [`SpectrumResult::save`] adds it).
    pub fn write_files(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_atomically(&dir.join("rows.jsonl"), self.rows_jsonl().as_bytes())?;
        write_arrays(dir, &self.arrays())?;
        write_json(&dir.join("summary.json"), &self.summary())
    }

    /// Writes the command line's files into `dir`, and shard.json for a shard.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.write_files(dir)?;
        LAYOUT.write_manifest(dir, &self.info)
    }

    /// spectrum.png (1/sᵢ against rank, log axis, with each row's std(t)² dashed) and alignment.png (uᵢ·vᵢ).
    #[cfg(feature = "cli")]
    pub fn plot(&self, dir: &Path) -> Result<()> {
        use crate::report::{self, Series};
        const MOST_CURVES: usize = 12;
        let label = |r: usize| format!("row {r}: std(t)² = {:.3}", self.std[r].powi(2));
        let inverse: Vec<Series> = (0..self.rows().min(MOST_CURVES))
            .map(|r| Series {
                label: label(r),
                points: Self::row_values(&self.singular_values, r)
                    .iter()
                    .enumerate()
                    .map(|(i, v)| ((i + 1) as f64, 1.0 / v))
                    .collect(),
                reference: Some(self.std[r].powi(2)),
            })
            .collect();
        report::line_chart(
            &dir.join("spectrum.png"),
            "Inverse singular values of the score Jacobian (dashed: std(t)²)",
            "rank i",
            "1 / s_i",
            &inverse,
            true,
        )?;
        let alignment: Vec<Series> = (0..self.rows().min(MOST_CURVES))
            .map(|r| Series {
                label: label(r),
                points: Self::row_values(&self.alignment, r)
                    .iter()
                    .enumerate()
                    .map(|(i, a)| ((i + 1) as f64, *a))
                    .collect(),
                reference: None,
            })
            .collect();
        report::line_chart(
            &dir.join("alignment.png"),
            "Alignment of singular vectors u_i · v_i",
            "rank i",
            "u_i · v_i",
            &alignment,
            false,
        )
    }
}

/// A sampler's recorded iterates, as `sample --record-sigmas` writes them.
#[derive(Debug, Clone)]
pub struct RecordedLevels {
    /// [R, N, ...row]
    pub recorded: ArrayD<f32>,
    /// [R]: each level's grid time.
    pub times: Vec<f64>,
    /// The σ asked for at each level (may be shorter: the level's std(t) stands in).
    pub sigmas: Vec<f64>,
}

impl RecordedLevels {
    /// Reads recorded.npy, recorded_t.npy and the σ of summary.json from a `sample --record-sigmas` folder.
    pub fn read(dir: &Path) -> Result<RecordedLevels> {
        let recorded = crate::io::npy::read_f32(&dir.join("recorded.npy"))?;
        let times = crate::io::npy::read_f64(&dir.join("recorded_t.npy"))?;
        let sigmas: Vec<f64> = std::fs::read_to_string(dir.join("summary.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| serde_json::from_value(v["record_sigmas"].clone()).ok())
            .unwrap_or_default();
        Ok(RecordedLevels { recorded: array(&recorded.shape, recorded.data)?, times: times.data, sigmas })
    }
}

/// One level of [`SampledSpectra`].
#[derive(Debug, Clone)]
pub struct LevelSpectrum {
    pub sigma: f64,
    pub t: f64,
    pub std: f64,
    pub spectrum: SpectrumResult,
}

/// The spectra of a sampler's iterates at every recorded level, each at its own grid time.
#[derive(Debug, Clone)]
pub struct SampledSpectra {
    pub levels: Vec<LevelSpectrum>,
    /// Where the iterates came from, for the summary.
    pub samples: String,
}

/// The spectrum of shard `shard` of the recorded iterates at every level (at that level's grid time); `what`
/// names the recorded array in errors. `on_row(level, row, spectrum)` sees each finished row.
#[allow(clippy::too_many_arguments)]
pub fn spectra_from_samples(
    fields: &[&ScoreField],
    levels: &RecordedLevels,
    shard: Option<&str>,
    request: &SpectrumRequest,
    options: JobOptions,
    source: &str,
    run: &str,
    what: &str,
    mut on_row: impl FnMut(usize, usize, &PointSpectrum) -> Result<()>,
) -> Result<SampledSpectra> {
    let field = *fields.first().ok_or_else(|| Error::Device("no device to run on".into()))?;
    let shape = levels.recorded.shape();
    if shape.len() < 3 || levels.times.len() != shape[0] {
        return Err(Error::bad_input(
            what,
            format!(
                "shape {:?} with {} times in recorded_t.npy; expected [R, N, ...] and R times (scorelens sample --record-sigmas)",
                shape,
                levels.times.len()
            ),
        ));
    }
    let count = shape[0];
    let mut out = Vec::with_capacity(count);
    for level in 0..count {
        let t = levels.times[level];
        let std = field.schedule().std(t);
        let sigma = levels.sigmas.get(level).copied().unwrap_or(std);
        let values: Vec<f32> = levels.recorded.index_axis(ndarray::Axis(0), level).iter().copied().collect();
        let rows = shape[1];
        let points = Points::checked(shape[1..].to_vec(), values, vec![t as f32], &[1], field, what, what)?;
        let shard = Shard::parse(shard, rows)?;
        let points = points.take(&shard);
        let spectrum =
            spectrum(fields, &points, &shard, request, options, source, run, |row, s| on_row(level, row, s))?;
        out.push(LevelSpectrum { sigma, t, std, spectrum });
    }
    if out.is_empty() {
        return Err(Error::bad_input(what, "no recorded levels"));
    }
    Ok(SampledSpectra { levels: out, samples: String::new() })
}

impl SampledSpectra {
    /// The subfolder of a level: sigma_<σ>.
    pub fn folder(level: &LevelSpectrum) -> String {
        format!("sigma_{}", level.sigma)
    }

    pub fn summary(&self) -> serde_json::Value {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let rows: Vec<serde_json::Value> = self
            .levels
            .iter()
            .map(|l| {
                let s = &l.spectrum;
                let as_f64 = |a: &ArrayD<i64>| a.iter().map(|&v| v as f64).collect::<Vec<_>>();
                let alignment: Vec<f64> =
                    (0..s.rows()).map(|r| mean(&SpectrumResult::row_values(&s.alignment, r))).collect();
                serde_json::json!({
                    "sigma": l.sigma,
                    "t": l.t,
                    "std": l.std,
                    "folder": Self::folder(l),
                    "points": s.rows(),
                    "mean_local_dimension_threshold": mean(&as_f64(&s.local_dimension_threshold)),
                    "mean_local_dimension_gap": mean(&as_f64(&s.local_dimension_gap)),
                    "mean_nonconservativeness": mean(&s.nonconservativeness.iter().copied().collect::<Vec<_>>()),
                    "mean_alignment": mean(&alignment),
                })
            })
            .collect();
        serde_json::json!({
            "command": "spectrum --from-samples",
            "samples": self.samples,
            "levels": rows,
            "shard": self.levels[0].spectrum.info.shard.summary(),
        })
    }

    /// Writes one folder per level (sigma_<σ>/) and the summary across levels into `dir`, and shard.json for a
    /// shard.
    pub fn save(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        for level in &self.levels {
            level.spectrum.write_files(&dir.join(Self::folder(level)))?;
        }
        write_json(&dir.join("summary.json"), &self.summary())?;
        LAYOUT.write_manifest(dir, &self.levels[0].spectrum.info)
    }
}
