//! Local geometry descriptors of a network's input→output map (Humayun et al., arXiv 2408.08307):
//! local scaling ψ = Σᵢ log σᵢ, local rank ν = exp(−Σᵢ pᵢ log pᵢ) with pᵢ = σᵢ / Σⱼ σⱼ (σ the singular values of
//! the map's Jacobian), and local complexity δ: how many hidden units change the sign of their pre-activation
//! between the point and some vertex x ± r·bⱼ of a cross-polytope around it.
//!
//! For a piecewise-linear (ReLU) network δ is the paper's measure: a unit whose pre-activation changes sign is a
//! linear-region boundary crossing the neighbourhood, and the count estimates the linear regions there. With the D
//! coordinate axes the vertices span the whole ℓ1 ball of radius r, and for a first-layer unit the test is exact (its
//! hyperplane w·x + b = 0 meets the ball iff |w·x + b| ≤ r‖w‖_∞, iff two vertices lie on opposite sides); a deeper
//! unit's boundary is bent and can cross between vertices, which the vertex test — the paper's approximation too —
//! misses. For smooth activations (SiLU) it counts sign changes of their inputs, not region boundaries.
//!
//! The singular values come by one of two routes ([`DescriptorMethod`]): the dense one forms the exact Jacobian
//! (D products per point) and takes every singular value in f64; the Krylov one finds the top k by block
//! Golub–Kahan–Lanczos ([`crate::solver::block_krylov`]) on the map's products a·v + b·J v and a·u + b·Jᵀ u, never
//! forming J, which is cheaper when k ≪ D. `Auto` takes the cheaper by the cost model of
//! [`super::route::choose_values_route`].

use faer::Mat;

use super::lowrank::{krylov_chunks, point_range, JacobianBatch};
use super::route::{choose_values_route_for, RouteChoice, SpectrumRoute};
use crate::derivative::{self, linearize, JacobianMethod};
use crate::error::{Error, Result};
use crate::field::{validate_batch, ScoreField};
use crate::scheduler::JobOptions;
use crate::solver::block_krylov::{block_krylov_svd, KrylovSettings};
use crate::solver::operator::BatchOperator;

/// Which map is described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescribedMap {
    /// s(x, t).
    Score,
    /// The posterior mean: x + std(t)² s(x, t) for VE schedules, (x + std(t)² s) / α(t) for VP.
    Denoiser,
}

/// The cross-polytope's directions.
#[derive(Debug, Clone, PartialEq)]
pub enum Directions {
    /// ±r along every coordinate axis (2D vertices).
    Axes,
    /// ±r along `count` random orthonormal directions drawn from `seed` (2·count vertices).
    Random { count: usize, seed: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescriptorSettings {
    pub map: DescribedMap,
    /// Singular values used for ψ and ν (the top k; all D by default).
    pub k: usize,
    pub radius: f64,
    pub directions: Directions,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointDescriptors {
    pub local_scaling: f64,
    pub local_rank: f64,
    pub local_complexity: usize,
    /// Whether the singular values reached the tolerance (always true on the dense route; false where the
    /// Krylov route stopped at its iteration cap short of it).
    pub converged: bool,
    /// Rows multiplied by J or Jᵀ for the singular values (dense: the D forward-mode products of the Jacobian).
    pub products: usize,
}

/// How the singular values of the described map are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorMethod {
    /// The cheaper of the two routes by the cost model ([`super::route::choose_values_route`]).
    Auto,
    /// The exact Jacobian (forward mode), every singular value in f64.
    Dense,
    /// The top k by block Golub–Kahan–Lanczos on the map's products (both residuals over s₁ below the tolerance).
    Krylov,
}

impl DescriptorMethod {
    /// `auto`, `dense` or `krylov`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(DescriptorMethod::Auto),
            "dense" => Ok(DescriptorMethod::Dense),
            "krylov" => Ok(DescriptorMethod::Krylov),
            other => Err(Error::InvalidArgument(format!("method {other:?}: expected auto, dense or krylov"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DescriptorMethod::Auto => "auto",
            DescriptorMethod::Dense => "dense",
            DescriptorMethod::Krylov => "krylov",
        }
    }
}

/// The route of the singular values and the Krylov route's stopping rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SingularValueSolver {
    pub method: DescriptorMethod,
    /// Krylov: stop a point when every kept triplet's residuals ‖M vᵢ − sᵢ uᵢ‖, ‖Mᵀ uᵢ − sᵢ vᵢ‖ over s₁ are at
    /// most this (M the described map's Jacobian).
    pub tolerance: f64,
    /// Krylov: block steps at most.
    pub max_iterations: usize,
    /// Krylov: the seed of each point's starting block (drawn from (seed, the point's global row)).
    pub seed: u64,
}

impl Default for SingularValueSolver {
    fn default() -> Self {
        SingularValueSolver { method: DescriptorMethod::Auto, tolerance: 1e-5, max_iterations: 100, seed: 0 }
    }
}

impl SingularValueSolver {
    fn check(&self) -> Result<()> {
        if !(self.tolerance > 0.0 && self.tolerance.is_finite()) {
            return Err(Error::InvalidArgument(format!("tol {} must be a positive number", self.tolerance)));
        }
        if self.max_iterations == 0 {
            return Err(Error::InvalidArgument("max_iter 0: the Krylov route needs at least one step".into()));
        }
        Ok(())
    }

    /// The route for `points` points of `field` with k values: the forced one, or the cost model's choice.
    pub fn route(&self, field: &ScoreField, points: usize, k: usize, options: JobOptions) -> RouteChoice {
        match self.method {
            DescriptorMethod::Dense | DescriptorMethod::Krylov => {
                let route =
                    if self.method == DescriptorMethod::Dense { SpectrumRoute::Dense } else { SpectrumRoute::Krylov };
                RouteChoice { route, reason: "given by method".into(), estimates: Vec::new() }
            }
            DescriptorMethod::Auto => choose_values_route_for(field, points, k, self.tolerance, options),
        }
    }
}

/// ψ and ν from singular values (zeros are left out of ψ, which would be −∞, and contribute nothing to ν).
pub fn scaling_and_rank(singular_values: &[f64]) -> (f64, f64) {
    let positive: Vec<f64> = singular_values.iter().copied().filter(|&s| s > 0.0).collect();
    let psi = positive.iter().map(|s| s.ln()).sum();
    let total: f64 = positive.iter().sum();
    let entropy: f64 = positive.iter().map(|s| s / total).map(|p| -p * p.ln()).sum();
    (psi, entropy.exp())
}

/// The singular values of the described map's Jacobian a·I + b·J (row-major D×D J), descending.
pub fn map_singular_values(jacobian: &[f32], d: usize, a: f64, b: f64) -> Result<Vec<f64>> {
    let m = Mat::<f64>::from_fn(d, d, |r, c| b * jacobian[r * d + c] as f64 + if r == c { a } else { 0.0 });
    m.singular_values().map_err(|e| Error::Device(format!("SVD did not converge: {e:?}")))
}

/// Orthonormal directions [count, D]: the axes, or Gram–Schmidt on seeded Gaussian vectors.
pub fn polytope_directions(d: usize, directions: &Directions) -> Result<Vec<f64>> {
    match *directions {
        Directions::Axes => Ok((0..d * d).map(|k| if k / d == k % d { 1.0 } else { 0.0 }).collect()),
        Directions::Random { count, seed } => {
            if count == 0 || count > d {
                return Err(Error::InvalidArgument(format!("n_directions {count} must be between 1 and D = {d}")));
            }
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let g: Vec<f64> =
                crate::model::normal_values(&mut rng, d * count, 1.0, 0.0).iter().map(|&v| v as f64).collect();
            let m = Mat::<f64>::from_fn(d, count, |r, c| g[c * d + r]);
            let q = m.qr().compute_thin_Q();
            Ok((0..count).flat_map(|c| (0..d).map(move |r| (c, r))).map(|(c, r)| q[(r, c)]).collect())
        }
    }
}

/// Vertices evaluated per batch when counting sign changes (bounds host memory for wide networks).
const VERTICES_PER_BATCH: usize = 64;

/// δ for one point: units whose pre-activation sign at any vertex x ± r·bⱼ differs from x's.
fn local_complexity(field: &ScoreField, x: &[f32], t: f32, radius: f64, directions: &[f64]) -> Result<usize> {
    let d = x.len();
    let center = linearize(field, x, &[t], 0)?.pre_activations()?;
    let mut changed = vec![false; center.len()];
    let count = directions.len() / d;
    let vertices: Vec<(usize, f64)> = (0..count).flat_map(|j| [(j, radius), (j, -radius)]).collect();
    for batch in vertices.chunks(VERTICES_PER_BATCH) {
        let points: Vec<f32> = batch
            .iter()
            .flat_map(|&(j, r)| (0..d).map(move |i| (x[i] as f64 + r * directions[j * d + i]) as f32))
            .collect();
        let values = linearize(field, &points, &[t], 0)?.pre_activations()?;
        for vertex in values.chunks(center.len()) {
            for ((flag, &c), &v) in changed.iter_mut().zip(&center).zip(vertex) {
                *flag |= (c > 0.0) != (v > 0.0);
            }
        }
    }
    Ok(changed.iter().filter(|&&c| c).count())
}

/// ψ, ν and δ at every point, handed to `sink` in point order, the singular values by the route the cost model
/// picks for this batch ([`descriptors_with`] with the default [`SingularValueSolver`]).
pub fn descriptors(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    settings: &DescriptorSettings,
    options: JobOptions,
    sink: impl FnMut(usize, PointDescriptors) -> Result<()>,
) -> Result<()> {
    descriptors_with(field, x, t, 0, settings, &SingularValueSolver::default(), options, sink)
}

/// ψ, ν and δ at every point, handed to `sink` in point order, the singular values by `solver` (`Auto`: the
/// cost model's route for this batch). `first_row` is the index of x's first point in the whole run (the Krylov
/// route draws each point's starting block from (seed, its global row), so a point's values do not depend on
/// its batch, shard or device).
#[allow(clippy::too_many_arguments)]
pub fn descriptors_with(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: &DescriptorSettings,
    solver: &SingularValueSolver,
    options: JobOptions,
    mut sink: impl FnMut(usize, PointDescriptors) -> Result<()>,
) -> Result<()> {
    let d = field.dim();
    let points = validate_batch(x, d, t, "X", "T")?;
    if !(settings.radius > 0.0 && settings.radius.is_finite()) {
        return Err(Error::InvalidArgument(format!("radius {} must be a positive number", settings.radius)));
    }
    solver.check()?;
    let k = settings.k.clamp(1, d);
    let directions = polytope_directions(d, &settings.directions)?;
    let time = |p: usize| if t.len() == 1 { t[0] } else { t[p] };
    let values = match solver.route(field, points, k, options).route {
        SpectrumRoute::Krylov => krylov_values(field, x, t, first_row, settings.map, k, solver, options)?,
        _ => dense_values(field, x, t, settings.map, k, options)?,
    };
    for (p, values) in values.into_iter().enumerate() {
        let (local_scaling, local_rank) = scaling_and_rank(&values.singular_values);
        let local_complexity = local_complexity(field, &x[p * d..(p + 1) * d], time(p), settings.radius, &directions)?;
        let (converged, products) = (values.converged, values.products);
        sink(p, PointDescriptors { local_scaling, local_rank, local_complexity, converged, products })?;
    }
    Ok(())
}

/// One point's top k singular values of the described map, and what finding them took.
struct MapValues {
    singular_values: Vec<f64>,
    converged: bool,
    products: usize,
}

/// The coefficients (a, b) of the described map's Jacobian a·I + b·J at time t.
fn map_coefficients(field: &ScoreField, map: DescribedMap, t: f32) -> (f64, f64) {
    let schedule = field.schedule();
    let tp = t as f64;
    let alpha = schedule.alpha(tp);
    match map {
        DescribedMap::Score => (0.0, 1.0),
        DescribedMap::Denoiser => (1.0 / alpha, schedule.std(tp).powi(2) / alpha),
    }
}

/// Dense route: the exact Jacobians as chunks arrive, all D singular values of each in f64, the top k kept (only
/// k numbers per point are kept, never the Jacobians).
fn dense_values(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    map: DescribedMap,
    k: usize,
    options: JobOptions,
) -> Result<Vec<MapValues>> {
    let d = field.dim();
    let mut out = Vec::with_capacity(x.len() / d);
    let method = if derivative::has_exact_jvp(field) { JacobianMethod::Forward } else { JacobianMethod::Fd };
    derivative::jacobian(field, x, t, method, options, |range, values| {
        for (local, p) in range.enumerate() {
            let (a, b) = map_coefficients(field, map, if t.len() == 1 { t[0] } else { t[p] });
            let mut singular = map_singular_values(&values[local * d * d..(local + 1) * d * d], d, a, b)?;
            singular.truncate(k);
            out.push(MapValues { singular_values: singular, converged: true, products: d });
        }
        Ok(())
    })?;
    Ok(out)
}

/// Krylov route: the top k singular triplets of a·I + b·J at every point by block Golub–Kahan–Lanczos, in chunks
/// of points whose blocks fit the memory budget together.
#[allow(clippy::too_many_arguments)]
fn krylov_values(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    map: DescribedMap,
    k: usize,
    solver: &SingularValueSolver,
    options: JobOptions,
) -> Result<Vec<MapValues>> {
    let d = field.dim();
    let points = x.len() / d;
    let settings = KrylovSettings::new(k, solver.tolerance, solver.max_iterations, solver.seed);
    let rows = settings.block.min(d);
    let mut out = Vec::with_capacity(points);
    for chunk in krylov_chunks(field, points, rows, options)? {
        let (xc, tc) = point_range(x, t, d, &chunk);
        let coefficients = chunk.clone().map(|p| map_coefficients(field, map, if t.len() == 1 { t[0] } else { t[p] }));
        let mut op = MapOperator {
            jacobian: JacobianBatch::new(field, xc, tc, rows, options)?,
            coefficients: coefficients.collect(),
        };
        for triplets in block_krylov_svd(&mut op, settings, first_row + chunk.start)? {
            out.push(MapValues {
                singular_values: triplets.singular_values,
                converged: triplets.converged,
                products: triplets.products,
            });
        }
    }
    Ok(out)
}

/// The described map's Jacobians a_b·I + b_b·J_b over a batch of score Jacobians: (a·I + b·J) v = a·v + b·J v,
/// and its transpose a·u + b·Jᵀ u.
struct MapOperator<'f> {
    jacobian: JacobianBatch<'f>,
    /// (a, b) per point of the batch.
    coefficients: Vec<(f64, f64)>,
}

impl MapOperator<'_> {
    fn combine(&self, active: &[usize], block: &[f64], rows: usize, products: Vec<f64>) -> Vec<f64> {
        let d = self.jacobian.dim();
        let mut out = products;
        for (slot, &p) in active.iter().enumerate() {
            let (a, b) = self.coefficients[p];
            let range = slot * rows * d..(slot + 1) * rows * d;
            for (o, &v) in out[range.clone()].iter_mut().zip(&block[range]) {
                *o = a * v + b * *o;
            }
        }
        out
    }
}

impl BatchOperator for MapOperator<'_> {
    fn dim(&self) -> usize {
        self.jacobian.dim()
    }
    fn points(&self) -> usize {
        self.jacobian.points()
    }
    fn apply(&mut self, active: &[usize], block: &[f64], rows: usize) -> Result<Vec<f64>> {
        let products = self.jacobian.apply(active, block, rows)?;
        Ok(self.combine(active, block, rows, products))
    }
    fn apply_transpose(&mut self, active: &[usize], block: &[f64], rows: usize) -> Result<Vec<f64>> {
        let products = self.jacobian.apply_transpose(active, block, rows)?;
        Ok(self.combine(active, block, rows, products))
    }
}
