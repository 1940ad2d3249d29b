//! Density ridges of the smoothed data distribution by subspace-constrained mean shift (SCMS; Ozertem &
//! Erdogmus, JMLR 2011), and the split of a model's score error into the parts normal and tangent to them.
//!
//! With H = ∇²log p(x) = V diag(λ₁ ≥ … ≥ λ_D) Vᵀ and E = [v_{d+1} … v_D] (the D − d smallest eigenvalues, the
//! directions across a d-dimensional ridge), one SCMS step is x ← x + E Eᵀ (m(x) − x), m the softmax-weighted
//! mean of the data (m − x = σ² ∇log p). A point is on the ridge when ‖E Eᵀ ∇log p‖ / ‖∇log p‖ is small; a true
//! ridge also has λ_{d+1} < 0 (here: ≤ −β). Two routes give E ([`Eigensolver`], chosen by [`route::choose`]):
//! the dense one forms H on the GPU ([`KdeField`]) and eigen-decomposes it in f64 on the host (O(N·D²) per point
//! and D² memory); the Krylov one finds only the d + 1 leading eigenpairs by block Lanczos on the GPU's H·V
//! products (E Eᵀ g = g − V_d V_dᵀ g; O(N·D·d) per product and no D² memory), warm-started at every step from the
//! previous step's vectors.

use faer::{Mat, Side};

use crate::error::{Error, Result};
use crate::field::KdeField;
use crate::scheduler::JobOptions;

mod normal;
pub mod projected;
pub mod route;

use normal::normal_spaces;
pub use normal::{EigenStats, LANCZOS_MAX_PRODUCTS, LANCZOS_TOLERANCE};
pub use route::{EigenRoute, Eigensolver};

/// Settings of a ridge search.
#[derive(Debug, Clone, Copy)]
pub struct ScmsSettings {
    /// d, the ridge dimension (0 < d < D; d = 0 would be mode finding).
    pub ridge_dim: usize,
    /// Stop a point when ‖E Eᵀ ∇log p‖ / ‖∇log p‖ falls below this.
    pub tolerance: f64,
    pub max_iterations: usize,
    /// A converged point counts as a ridge point when λ_{d+1} ≤ −β.
    pub beta: f64,
    /// How the normal space is found (dense Hessians, Lanczos on H·v, or chosen by the cost model).
    pub eigensolver: Eigensolver,
}

impl Default for ScmsSettings {
    fn default() -> Self {
        ScmsSettings { ridge_dim: 1, tolerance: 1e-4, max_iterations: 500, beta: 0.0, eigensolver: Eigensolver::Auto }
    }
}

/// Where every starting point ended.
#[derive(Debug, Clone)]
pub struct ScmsResult {
    /// [B, D] final points.
    pub points: Vec<f32>,
    pub converged: Vec<bool>,
    /// Steps taken per point.
    pub iterations: Vec<usize>,
    /// [B, eigenvalue_count] eigenvalues of ∇²log p at the final points, descending: all D on the dense route,
    /// the d + 1 leading on the Krylov route.
    pub eigenvalues: Vec<f64>,
    pub eigenvalue_count: usize,
    /// λ_d − λ_{d+1} per point.
    pub eigengap: Vec<f64>,
    /// λ_{d+1} ≤ −β per point.
    pub below_beta: Vec<bool>,
    /// ‖E Eᵀ ∇log p‖ / ‖∇log p‖ at the final points.
    pub normal_ratio: Vec<f64>,
    /// Point evaluations on the GPU summed over iterations (converged points are not re-evaluated).
    pub evaluations: usize,
    /// Sweeps over the still-moving points.
    pub sweeps: usize,
    /// The eigensolver taken and why.
    pub route: EigenRoute,
    /// The Lanczos solves, products and planned memory (products are zero on the dense route).
    pub eigen: EigenStats,
}

/// The eigen-decomposition of one symmetric D×D matrix: eigenvalues descending, eigenvectors as columns.
pub struct SymmetricEigen {
    pub values: Vec<f64>,
    pub vectors: Mat<f64>,
}

/// Eigenvalues (descending) and eigenvectors of the symmetric matrix `h` ([D, D] row-major), symmetrised first.
pub fn symmetric_eigen(h: &[f64], dim: usize) -> Result<SymmetricEigen> {
    let m = Mat::<f64>::from_fn(dim, dim, |r, c| 0.5 * (h[r * dim + c] + h[c * dim + r]));
    let eigen = m.self_adjoint_eigen(Side::Lower).map_err(|e| Error::Device(format!("eigensolver: {e:?}")))?;
    let (u, s) = (eigen.U(), eigen.S().column_vector());
    let mut order: Vec<usize> = (0..dim).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    Ok(SymmetricEigen {
        values: order.iter().map(|&i| s[i]).collect(),
        vectors: Mat::from_fn(dim, dim, |r, c| u[(r, order[c])]),
    })
}

impl SymmetricEigen {
    /// E Eᵀ g with E the eigenvectors of the D − d smallest eigenvalues (the ridge's normal space).
    pub fn project_normal(&self, g: &[f64], ridge_dim: usize) -> Vec<f64> {
        let dim = g.len();
        let mut out = vec![0.0; dim];
        for c in ridge_dim..dim {
            let coef: f64 = (0..dim).map(|r| self.vectors[(r, c)] * g[r]).sum();
            for (r, o) in out.iter_mut().enumerate() {
                *o += coef * self.vectors[(r, c)];
            }
        }
        out
    }
}

pub(crate) fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// Runs `f` on every index in 0..count across the machine's threads, results in index order.
pub(crate) fn parallel_map<T: Send>(count: usize, f: impl Fn(usize) -> Result<T> + Sync) -> Result<Vec<T>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(count.max(1));
    if threads <= 1 {
        return (0..count).map(&f).collect();
    }
    let per = count.div_ceil(threads);
    let parts: Vec<Result<Vec<T>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                scope.spawn(move || (t * per..((t + 1) * per).min(count)).map(f).collect::<Result<Vec<T>>>())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Device("a worker panicked".into()))))
            .collect()
    });
    let mut out = Vec::with_capacity(count);
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

fn check_ridge_dim(ridge_dim: usize, dim: usize) -> Result<()> {
    if ridge_dim == 0 || ridge_dim >= dim {
        return Err(Error::InvalidArgument(format!("ridge dimension d = {ridge_dim} must satisfy 0 < d < D = {dim}")));
    }
    Ok(())
}

/// SCMS from every row of `x0` ([B, D]) at once; converged points stop and are not evaluated again.
pub fn scms(kde: &KdeField, x0: &[f32], settings: ScmsSettings, options: JobOptions) -> Result<ScmsResult> {
    Ok(scms_splitting(kde, x0, None, settings, options)?.0)
}

/// E Eᵀ e and (I − E Eᵀ) e of a score error e, [B, D] each.
type SplitError = (Vec<f64>, Vec<f64>);

/// [`scms`], and with `model_scores` ([B, D]) the error split at the starting points from the first step's normal
/// spaces (the step solves them at x0 anyway, so the split costs no second solve).
fn scms_splitting(
    kde: &KdeField,
    x0: &[f32],
    model_scores: Option<&[f32]>,
    settings: ScmsSettings,
    options: JobOptions,
) -> Result<(ScmsResult, Option<SplitError>)> {
    let dim = kde.dim();
    check_ridge_dim(settings.ridge_dim, dim)?;
    if !(settings.tolerance > 0.0 && settings.tolerance.is_finite()) {
        return Err(Error::InvalidArgument(format!("tolerance {} must be a positive number", settings.tolerance)));
    }
    if !settings.beta.is_finite() {
        return Err(Error::InvalidArgument(format!("β = {} must be finite", settings.beta)));
    }
    if x0.len() % dim != 0 {
        return Err(Error::bad_input("X", format!("{} values do not form rows of D = {dim}", x0.len())));
    }
    if let Some(i) = x0.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what: "X".into(), row: i / dim, value: x0[i] as f64 });
    }
    if let Some(scores) = model_scores {
        check_model_scores(x0, scores, dim)?;
    }
    let mut split = None;
    let rows = x0.len() / dim;
    let d = settings.ridge_dim;
    let variance = kde.scale().sigma.powi(2);
    let route = route::choose(kde, d, settings.eigensolver, options.memory_budget);
    let krylov = route.chosen == Eigensolver::Krylov;
    let count = if krylov { d + 1 } else { dim };
    let mut result = ScmsResult {
        points: x0.to_vec(),
        converged: vec![false; rows],
        iterations: vec![0; rows],
        eigenvalues: vec![0.0; rows * count],
        eigenvalue_count: count,
        eigengap: vec![0.0; rows],
        below_beta: vec![false; rows],
        normal_ratio: vec![0.0; rows],
        evaluations: 0,
        sweeps: 0,
        route: route.clone(),
        eigen: EigenStats::default(),
    };
    // Krylov: each point's leading Ritz vectors, the warm start of its next step.
    let mut warm: Vec<Vec<Vec<f64>>> = if krylov { vec![Vec::new(); rows] } else { Vec::new() };
    let mut finished = Vec::new();
    let mut active: Vec<usize> = (0..rows).collect();
    for sweep in 0..=settings.max_iterations {
        if active.is_empty() {
            break;
        }
        let x: Vec<f32> = active.iter().flat_map(|&b| result.points[b * dim..(b + 1) * dim].iter().copied()).collect();
        let starts: Vec<Vec<Vec<f64>>> =
            if krylov { active.iter().map(|&b| std::mem::take(&mut warm[b])).collect() } else { Vec::new() };
        // The first sweep runs at x0 with every row active, in order: the split projects the model's scores there.
        let other = if sweep == 0 { model_scores } else { None };
        let spaces = normal_spaces(kde, &x, other, &starts, d, route.chosen, d, options, &mut result.eigen)?;
        if let (0, Some(scores)) = (sweep, other) {
            split = Some(split_error(&spaces, scores, dim));
        }
        result.evaluations += active.len();
        result.sweeps += 1;
        let mut still = Vec::with_capacity(active.len());
        for (&b, space) in active.iter().zip(spaces) {
            let g_norm = norm(&space.score);
            let ratio = if g_norm > 0.0 { norm(&space.normal) / g_norm } else { 0.0 };
            let done = ratio < settings.tolerance;
            if done || sweep == settings.max_iterations {
                result.converged[b] = done;
                result.normal_ratio[b] = ratio;
                result.eigenvalues[b * count..(b + 1) * count].copy_from_slice(&space.values);
                finished.push(b);
                if krylov {
                    warm[b] = space.warm;
                }
            } else {
                // m − x = σ² ∇log p, so the step E Eᵀ (m − x) is σ² times the projected score.
                for (k, n) in space.normal.iter().enumerate() {
                    result.points[b * dim + k] = (result.points[b * dim + k] as f64 + variance * n) as f32;
                }
                result.iterations[b] += 1;
                if krylov {
                    warm[b] = space.warm;
                }
                still.push(b);
            }
        }
        active = still;
    }
    if krylov && !finished.is_empty() {
        // The steps test only the d pairs the projection uses; at the final points λ_{d+1} is solved to the
        // tolerance as well (warm-started), for the ridge test and the eigengap.
        finished.sort_unstable();
        let x: Vec<f32> =
            finished.iter().flat_map(|&b| result.points[b * dim..(b + 1) * dim].iter().copied()).collect();
        let starts: Vec<Vec<Vec<f64>>> = finished.iter().map(|&b| std::mem::take(&mut warm[b])).collect();
        let spaces = normal_spaces(kde, &x, None, &starts, d, route.chosen, d + 1, options, &mut result.eigen)?;
        for (&b, space) in finished.iter().zip(spaces) {
            result.eigenvalues[b * count..(b + 1) * count].copy_from_slice(&space.values);
        }
    }
    for b in 0..rows {
        let values = &result.eigenvalues[b * count..(b + 1) * count];
        result.eigengap[b] = values[d - 1] - values[d];
        result.below_beta[b] = values[d] <= -settings.beta;
    }
    Ok((result, split))
}

/// The model's score error e = s_θ − ∇log p at every row of `x`, split into its part normal to the d-dimensional
/// ridges of p (E Eᵀ e, E as in SCMS at x, by `eigensolver`) and the rest, tangent (I − E Eᵀ) e.
/// Returns (normal, tangent), [B, D].
pub fn error_split(
    kde: &KdeField,
    x: &[f32],
    model_scores: &[f32],
    ridge_dim: usize,
    eigensolver: Eigensolver,
    options: JobOptions,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let split = error_split_with_route(kde, x, model_scores, ridge_dim, eigensolver, options)?;
    Ok((split.normal, split.tangent))
}

/// An error split with the route its eigensolver took.
#[derive(Debug, Clone)]
pub struct ErrorSplit {
    /// E Eᵀ e and (I − E Eᵀ) e, [B, D].
    pub normal: Vec<f64>,
    pub tangent: Vec<f64>,
    pub route: EigenRoute,
    pub eigen: EigenStats,
}

/// [`error_split`], with the eigensolver's route and counts.
pub fn error_split_with_route(
    kde: &KdeField,
    x: &[f32],
    model_scores: &[f32],
    ridge_dim: usize,
    eigensolver: Eigensolver,
    options: JobOptions,
) -> Result<ErrorSplit> {
    let dim = kde.dim();
    check_ridge_dim(ridge_dim, dim)?;
    check_model_scores(x, model_scores, dim)?;
    let route = route::choose(kde, ridge_dim, eigensolver, options.memory_budget);
    let mut eigen = EigenStats::default();
    let spaces =
        normal_spaces(kde, x, Some(model_scores), &[], ridge_dim, route.chosen, ridge_dim, options, &mut eigen)?;
    let (normal, tangent) = split_error(&spaces, model_scores, dim);
    Ok(ErrorSplit { normal, tangent, route, eigen })
}

/// The model's scores ([B, D], finite) against the points X.
fn check_model_scores(x: &[f32], model_scores: &[f32], dim: usize) -> Result<()> {
    if model_scores.len() != x.len() {
        return Err(Error::bad_input(
            "model scores",
            format!("{} values for {} points of D = {dim} (expected X's shape)", model_scores.len(), x.len() / dim),
        ));
    }
    if let Some(i) = model_scores.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what: "model scores".into(), row: i / dim, value: model_scores[i] as f64 });
    }
    if x.len() % dim != 0 {
        return Err(Error::bad_input("X", format!("{} values do not form rows of D = {dim}", x.len())));
    }
    Ok(())
}

/// (E Eᵀ e, (I − E Eᵀ) e) for e = s_θ − ∇log p, from normal spaces that projected the model's scores too.
fn split_error(spaces: &[normal::NormalSpace], model_scores: &[f32], dim: usize) -> SplitError {
    let mut normal = Vec::with_capacity(model_scores.len());
    let mut tangent = Vec::with_capacity(model_scores.len());
    for (b, space) in spaces.iter().enumerate() {
        for k in 0..dim {
            // E Eᵀ is linear: E Eᵀ e = E Eᵀ s_θ − E Eᵀ ∇log p.
            let e = model_scores[b * dim + k] as f64 - space.score[k];
            let n = space.other_normal[k] - space.normal[k];
            normal.push(n);
            tangent.push(e - n);
        }
    }
    (normal, tangent)
}

/// Where points stand against the ridge of p: SCMS from each (its ridge point and the distance to it), and the
/// split of a model's score error there (the reach / align / slide phases along a trajectory).
#[derive(Debug, Clone)]
pub struct RidgePhase {
    pub ridge: ScmsResult,
    /// ‖x − ridge point‖ per point.
    pub distance: Vec<f64>,
    /// E Eᵀ e and (I − E Eᵀ) e, [B, D].
    pub normal: Vec<f64>,
    pub tangent: Vec<f64>,
    /// Their norms per point.
    pub normal_norm: Vec<f64>,
    pub tangent_norm: Vec<f64>,
    /// The route the split's eigensolver took (it depends on D, N, d and the budget, not on the points).
    pub route: EigenRoute,
}

/// The Euclidean norm of every row of `values` ([B, dim]).
pub fn row_norms(values: &[f64], dim: usize) -> Vec<f64> {
    values.chunks(dim).map(|r| r.iter().map(|a| a * a).sum::<f64>().sqrt()).collect()
}

/// SCMS from `x` and the error split of `model_scores` at `x`, with the distances and norms.
pub fn ridge_phase(
    kde: &KdeField,
    x: &[f32],
    model_scores: &[f32],
    settings: ScmsSettings,
    options: JobOptions,
) -> Result<RidgePhase> {
    let dim = kde.dim();
    // One solve at x serves both: SCMS's first step and the split (the same route, d tested pairs, no warm start).
    let (ridge, split) = scms_splitting(kde, x, Some(model_scores), settings, options)?;
    // None only without rows (no first step): an empty split.
    let (normal, tangent) = split.unwrap_or_default();
    let distance = x
        .chunks(dim)
        .zip(ridge.points.chunks(dim))
        .map(|(a, b)| a.iter().zip(b).map(|(p, q)| (*p as f64 - *q as f64).powi(2)).sum::<f64>().sqrt())
        .collect();
    let route = ridge.route.clone();
    let (normal_norm, tangent_norm) = (row_norms(&normal, dim), row_norms(&tangent, dim));
    Ok(RidgePhase { ridge, distance, normal, tangent, normal_norm, tangent_norm, route })
}
