//! The normal space of a d-dimensional ridge at a batch of points, by either route: the dense Hessian with a full
//! f64 eigen-decomposition, or block Lanczos on Hessian-vector products for the d + 1 leading eigenpairs only
//! (E Eᵀ g = g − V_d V_dᵀ g, so the D − d normal directions are never needed). Points are cut into chunks so that
//! the device buffers and the host's per-point working set stay within the memory budget.

use crate::error::{Error, Result};
use crate::field::KdeField;
use crate::scheduler::{plan_chunks, JobOptions, RowCost};
use crate::solver::lanczos::{block_lanczos, LanczosSettings};

use super::route::{dense_host_bytes, krylov_host_bytes, lanczos_shape, Eigensolver};
use super::{norm, parallel_map, symmetric_eigen};

/// Relative residual the Lanczos solves reach (‖H v − λ v‖ ≤ this · max|λ|); float32 products floor near 1e-7.
pub const LANCZOS_TOLERANCE: f64 = 1e-6;
/// Block products one Lanczos solve may take in an SCMS step.
pub const LANCZOS_MAX_PRODUCTS: usize = 40;

/// One point's ridge test.
pub(super) struct NormalSpace {
    /// ∇log p at the point.
    pub score: Vec<f64>,
    /// E Eᵀ ∇log p.
    pub normal: Vec<f64>,
    /// E Eᵀ of the caller's other vector (empty when none was given).
    pub other_normal: Vec<f64>,
    /// Eigenvalues, descending: all D (dense) or the d + 1 leading (Krylov).
    pub values: Vec<f64>,
    /// Krylov: the leading Ritz vectors, the next solve's warm start.
    pub warm: Vec<Vec<f64>>,
}

/// What the eigensolvers did over a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EigenStats {
    /// Lanczos solves (one per point per step) and those that stopped at the product cap short of the tolerance.
    pub solves: usize,
    pub unconverged_solves: usize,
    /// Hessian-vector products: single vectors, and block products (GPU passes a point took part in).
    pub vector_products: usize,
    pub block_products: usize,
    /// The largest relative residual ‖H v − λ v‖ / max|λ| among the tested pairs of the final solves.
    pub worst_relative_residual: f64,
    /// The bytes (device buffers and host working set) of the largest chunk of points planned, and per point.
    pub peak_planned_bytes: u64,
    pub bytes_per_point: u64,
}

impl EigenStats {
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "lanczos_solves": self.solves,
            "lanczos_unconverged": self.unconverged_solves,
            "hessian_vector_products": self.vector_products,
            "block_products": self.block_products,
            "worst_relative_residual": self.worst_relative_residual,
            "peak_planned_bytes": self.peak_planned_bytes,
            "bytes_per_point": self.bytes_per_point,
        })
    }

    pub fn absorb(&mut self, other: &EigenStats) {
        self.solves += other.solves;
        self.unconverged_solves += other.unconverged_solves;
        self.vector_products += other.vector_products;
        self.block_products += other.block_products;
        self.worst_relative_residual = self.worst_relative_residual.max(other.worst_relative_residual);
        self.peak_planned_bytes = self.peak_planned_bytes.max(other.peak_planned_bytes);
        self.bytes_per_point = self.bytes_per_point.max(other.bytes_per_point);
    }
}

/// g − Σᵢ vᵢ (vᵢ·g) over the first `count` vectors of `vectors` ([k, D]).
fn remove_leading(g: &[f64], vectors: &[f64], count: usize) -> Vec<f64> {
    let dim = g.len();
    let mut out = g.to_vec();
    for v in vectors.chunks(dim).take(count) {
        let c: f64 = v.iter().zip(g).map(|(a, b)| a * b).sum();
        out.iter_mut().zip(v).for_each(|(o, a)| *o -= c * a);
    }
    out
}

/// The ridge test at every row of `x` by `route` (Dense or Krylov). `other` ([B, D], optional) is projected too;
/// `warm` holds each row's start vectors (Krylov; empty: none). `tested` leading pairs must pass the Lanczos
/// residual test (d for the projection; d + 1 when λ_{d+1} must be exact too).
#[allow(clippy::too_many_arguments)]
pub(super) fn normal_spaces(
    kde: &KdeField,
    x: &[f32],
    other: Option<&[f32]>,
    warm: &[Vec<Vec<f64>>],
    ridge_dim: usize,
    route: Eigensolver,
    tested: usize,
    options: JobOptions,
    stats: &mut EigenStats,
) -> Result<Vec<NormalSpace>> {
    let dim = kde.dim();
    let rows = x.len() / dim;
    let budget = options.memory_budget;
    let (device, host) = match route {
        Eigensolver::Dense => (kde.hessian_cost(budget), dense_host_bytes(dim)),
        _ => (kde.hessian_vector_cost(lanczos_shape(ridge_dim, dim).0, budget), krylov_host_bytes(dim, ridge_dim)),
    };
    let cost = RowCost { bytes_per_row: device.bytes_per_row + host, ..device };
    let chunks = plan_chunks(rows, cost, kde.device_bounds(budget))?;
    stats.bytes_per_point = stats.bytes_per_point.max(cost.bytes_per_row);
    let mut out = Vec::with_capacity(rows);
    for chunk in chunks {
        stats.peak_planned_bytes =
            stats.peak_planned_bytes.max(chunk.len() as u64 * cost.bytes_per_row + cost.fixed_bytes);
        let xs = &x[chunk.start * dim..chunk.end * dim];
        let others = other.map(|o| &o[chunk.start * dim..chunk.end * dim]);
        let part = match route {
            Eigensolver::Dense => dense(kde, xs, others, ridge_dim, options)?,
            _ => {
                let warm = if warm.is_empty() { &[][..] } else { &warm[chunk.clone()] };
                krylov(kde, xs, others, warm, ridge_dim, tested, options, stats)?
            }
        };
        out.extend(part);
    }
    Ok(out)
}

fn dense(
    kde: &KdeField,
    x: &[f32],
    other: Option<&[f32]>,
    ridge_dim: usize,
    options: JobOptions,
) -> Result<Vec<NormalSpace>> {
    let dim = kde.dim();
    let out = kde.evaluate(x, true, options)?;
    let hessian = out.hessian.as_ref().ok_or_else(|| Error::Device("no Hessian returned".into()))?;
    parallel_map(x.len() / dim, |b| {
        let h: Vec<f64> = hessian[b * dim * dim..(b + 1) * dim * dim].iter().map(|&v| v as f64).collect();
        let eigen = symmetric_eigen(&h, dim)?;
        let score: Vec<f64> = out.score[b * dim..(b + 1) * dim].iter().map(|&v| v as f64).collect();
        let normal = eigen.project_normal(&score, ridge_dim);
        let other_normal = match other {
            Some(o) => {
                let v: Vec<f64> = o[b * dim..(b + 1) * dim].iter().map(|&v| v as f64).collect();
                eigen.project_normal(&v, ridge_dim)
            }
            None => Vec::new(),
        };
        Ok(NormalSpace { score, normal, other_normal, values: eigen.values, warm: Vec::new() })
    })
}

#[allow(clippy::too_many_arguments)]
fn krylov(
    kde: &KdeField,
    x: &[f32],
    other: Option<&[f32]>,
    warm: &[Vec<Vec<f64>>],
    ridge_dim: usize,
    tested: usize,
    options: JobOptions,
    stats: &mut EigenStats,
) -> Result<Vec<NormalSpace>> {
    let dim = kde.dim();
    let rows = x.len() / dim;
    let (block, max_basis) = lanczos_shape(ridge_dim, dim);
    let settings = LanczosSettings {
        wanted: ridge_dim + 1,
        tested,
        block,
        max_basis,
        tolerance: LANCZOS_TOLERANCE,
        max_products: LANCZOS_MAX_PRODUCTS,
        seed: 0x5c35,
    };
    let starts: Vec<Vec<Vec<f64>>> = if warm.is_empty() { vec![Vec::new(); rows] } else { warm.to_vec() };
    let mut scores: Vec<f32> = Vec::new();
    let pairs = block_lanczos(dim, &starts, settings, |active, v, block| {
        let xs: Vec<f32> = active.iter().flat_map(|&j| x[j * dim..(j + 1) * dim].iter().copied()).collect();
        let vs: Vec<f32> = v.iter().map(|&a| a as f32).collect();
        // Every point takes part in the first product: its passes over the data give the score as well.
        let hv = if scores.is_empty() {
            let (s, hv) = kde.score_and_hessian_vector(&xs, &vs, block, options)?;
            scores = s;
            hv
        } else {
            kde.hessian_vector(&xs, &vs, block, options)?
        };
        Ok(hv.into_iter().map(f64::from).collect())
    })?;
    let mut out = Vec::with_capacity(rows);
    for (b, p) in pairs.into_iter().enumerate() {
        stats.solves += 1;
        stats.unconverged_solves += (!p.converged) as usize;
        stats.vector_products += p.vector_products;
        stats.block_products += p.block_products;
        if p.scale > 0.0 {
            let worst = p.residuals.iter().take(tested).fold(0.0f64, |a, r| a.max(r / p.scale));
            stats.worst_relative_residual = stats.worst_relative_residual.max(worst);
        }
        let score: Vec<f64> = scores[b * dim..(b + 1) * dim].iter().map(|&v| v as f64).collect();
        let normal = remove_leading(&score, &p.vectors, ridge_dim);
        let other_normal = match other {
            Some(o) => {
                let v: Vec<f64> = o[b * dim..(b + 1) * dim].iter().map(|&v| v as f64).collect();
                remove_leading(&v, &p.vectors, ridge_dim)
            }
            None => Vec::new(),
        };
        let warm = p.warm.chunks(dim).map(|c| c.to_vec()).collect();
        if norm(&normal).is_nan() {
            return Err(Error::Device(format!("point {b}: the normal projection is not finite")));
        }
        out.push(NormalSpace { score, normal, other_normal, values: p.values, warm });
    }
    Ok(out)
}
