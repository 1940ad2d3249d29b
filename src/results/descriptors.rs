//! `descriptors`: local scaling ψ = Σᵢ log σᵢ, local rank ν = exp(−Σᵢ pᵢ log pᵢ) (pᵢ = σᵢ / Σⱼ σⱼ) and local
//! complexity δ of the score or denoiser map at every point. Writes local_scaling.npy and local_rank.npy [B]
//! (f64), local_complexity.npy [B] (i64), summary.json (with every row, the route of the singular values and
//! why, the products and per-row convergence), and shard.json for a shard.

use std::path::Path;
use std::time::Instant;

use ndarray::ArrayD;

use super::{array, concatenate, create_dir, write_arrays, write_json, ArrayRef, Layout, NamedArrays, RunInfo};
use crate::analysis::descriptors::{descriptors_with, DescriptorMethod, SingularValueSolver};
use crate::analysis::{DescribedMap, DescriptorSettings, Directions, PointDescriptors, SpectrumRoute};
use crate::batch::{split_points, Points, Shard};
use crate::error::{Error, Result};
use crate::field::ScoreField;
use crate::scheduler::JobOptions;

/// Every array joins along its rows.
pub const LAYOUT: Layout = Layout { axis: &[], same: &[] };

#[derive(Debug, Clone)]
pub struct DescriptorsResult {
    /// [B]: ψ.
    pub local_scaling: ArrayD<f64>,
    /// [B]: ν.
    pub local_rank: ArrayD<f64>,
    /// [B]: δ, hidden units whose pre-activation changes sign between x and a vertex x ± r·bⱼ.
    pub local_complexity: ArrayD<i64>,
    /// Per row: the singular values reached the tolerance (always on the dense route), and the products spent.
    pub converged: Vec<bool>,
    pub products: Vec<usize>,
    /// The route of the singular values, and why (the cost model's estimates for `Auto`).
    pub route: SpectrumRoute,
    pub route_reason: String,
    pub solver: SingularValueSolver,
    pub settings: DescriptorSettings,
    /// The seed given (random directions draw from it; recorded with axes too, as given).
    pub seed: u64,
    pub dim: usize,
    /// Whether the network is piecewise linear (ReLU): δ then counts its linear regions' boundaries.
    pub piecewise_linear: bool,
    pub info: RunInfo,
}

/// The descriptors of every point of `points` (the rows of `shard`, already taken), spread over `fields` (one
/// per device), the singular values by `solver` (`Auto`: the cost model's route, chosen for the whole input so
/// every shard takes the same one). Rows are independent (random directions come from the seed alone, Krylov
/// starting blocks from the solver's seed and the row's index in the whole input).
#[allow(clippy::too_many_arguments)]
pub fn descriptors(
    fields: &[&ScoreField],
    points: &Points,
    shard: &Shard,
    settings: &DescriptorSettings,
    solver: &SingularValueSolver,
    seed: u64,
    options: JobOptions,
    source: &str,
    run: &str,
) -> Result<DescriptorsResult> {
    let field = *fields.first().ok_or_else(|| Error::Device("no device to run on".into()))?;
    let d = field.dim();
    if settings.k == 0 || settings.k > d {
        return Err(Error::InvalidArgument(format!("k {} must be between 1 and D = {d}", settings.k)));
    }
    let choice = solver.route(field, shard.total, settings.k, options);
    let forced = SingularValueSolver {
        method: if choice.route == SpectrumRoute::Krylov { DescriptorMethod::Krylov } else { DescriptorMethod::Dense },
        ..*solver
    };
    let started = Instant::now();
    let blocks = split_points(fields, points, |field, range, x, t| {
        let mut rows: Vec<PointDescriptors> = Vec::new();
        descriptors_with(field, x, t, shard.rows.start + range.start, settings, &forced, options, |_, r| {
            rows.push(r);
            Ok(())
        })?;
        let n = rows.len();
        Ok((
            array(&[n], rows.iter().map(|r| r.local_scaling).collect())?,
            array(&[n], rows.iter().map(|r| r.local_rank).collect())?,
            array(&[n], rows.iter().map(|r| r.local_complexity as i64).collect())?,
            rows.iter().map(|r| (r.converged, r.products)).collect::<Vec<_>>(),
        ))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let axis = |name: &str| LAYOUT.axis_of(name);
    Ok(DescriptorsResult {
        local_scaling: concatenate(&blocks.iter().map(|b| b.0.clone()).collect::<Vec<_>>(), axis("local_scaling.npy"))?,
        local_rank: concatenate(&blocks.iter().map(|b| b.1.clone()).collect::<Vec<_>>(), axis("local_rank.npy"))?,
        local_complexity: concatenate(
            &blocks.iter().map(|b| b.2.clone()).collect::<Vec<_>>(),
            axis("local_complexity.npy"),
        )?,
        converged: blocks.iter().flat_map(|b| b.3.iter().map(|r| r.0)).collect(),
        products: blocks.iter().flat_map(|b| b.3.iter().map(|r| r.1)).collect(),
        route: choice.route,
        route_reason: choice.reason,
        solver: *solver,
        settings: settings.clone(),
        seed,
        dim: d,
        piecewise_linear: field.is_piecewise_linear(),
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

impl DescriptorsResult {
    /// The warning naming the rows whose singular values stopped at the iteration cap short of the tolerance.
    pub fn unconverged_warning(&self) -> Option<String> {
        crate::analysis::spectrum::unconverged_warning(&self.converged, self.info.shard.rows.start, self.route.name())
    }

    pub fn summary(&self) -> serde_json::Value {
        let first_row = self.info.shard.rows.start;
        serde_json::json!({
            "command": "descriptors",
            "model": self.info.source,
            "method": self.route.name(),
            "method_requested": self.solver.method.name(),
            "method_reason": self.route_reason,
            "products": self.products.iter().sum::<usize>(),
            "converged": self.converged.iter().all(|&c| c),
            "tol": self.solver.tolerance,
            "max_iter": self.solver.max_iterations,
            "map": match self.settings.map { DescribedMap::Score => "score", DescribedMap::Denoiser => "denoiser" },
            "k": self.settings.k,
            "radius": self.settings.radius,
            "directions": match self.settings.directions { Directions::Axes => "axes", Directions::Random { .. } => "random" },
            "n_directions": match self.settings.directions { Directions::Axes => self.dim, Directions::Random { count, .. } => count },
            "seed": self.seed,
            "adapter": self.info.adapter,
            "devices": self.info.devices,
            "shard": self.info.shard.summary(),
            "local_complexity_note": if self.piecewise_linear {
                "ReLU network: sign changes are the boundaries of its linear regions"
            } else {
                "smooth activations: the count is of sign changes of the activations' inputs, as for ReLU (not linear regions)"
            },
            "rows": (0..self.local_scaling.len()).map(|i| serde_json::json!({
                "row": first_row + i,
                "local_scaling": self.local_scaling[i],
                "local_rank": self.local_rank[i],
                "local_complexity": self.local_complexity[i],
                "converged": self.converged[i],
                "products": self.products[i],
            })).collect::<Vec<_>>(),
        })
    }

    /// The arrays, named as their files and in the order the command line writes them.
    pub fn arrays(&self) -> NamedArrays<'_> {
        vec![
            ("local_scaling", ArrayRef::F64(&self.local_scaling)),
            ("local_rank", ArrayRef::F64(&self.local_rank)),
            ("local_complexity", ArrayRef::I64(&self.local_complexity)),
        ]
    }

    /// Writes the command line's files into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_arrays(dir, &self.arrays())?;
        write_json(&dir.join("summary.json"), &self.summary())?;
        LAYOUT.write_manifest(dir, &self.info)
    }
}
