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

use faer::Mat;

use crate::derivative::{self, linearize, JacobianMethod};
use crate::error::{Error, Result};
use crate::field::{validate_batch, ScoreField};
use crate::scheduler::JobOptions;

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

/// ψ, ν and δ at every point, handed to `sink` in point order.
pub fn descriptors(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    settings: &DescriptorSettings,
    options: JobOptions,
    mut sink: impl FnMut(usize, PointDescriptors) -> Result<()>,
) -> Result<()> {
    let d = field.dim();
    let points = validate_batch(x, d, t, "X", "T")?;
    if !(settings.radius > 0.0 && settings.radius.is_finite()) {
        return Err(Error::InvalidArgument(format!("radius {} must be a positive number", settings.radius)));
    }
    let k = settings.k.clamp(1, d);
    let directions = polytope_directions(d, &settings.directions)?;
    let schedule = field.schedule();
    let time = |p: usize| if t.len() == 1 { t[0] } else { t[p] };
    // ψ and ν as each chunk of Jacobians arrives, so only two numbers per point are kept.
    let mut scaling_rank = Vec::with_capacity(points);
    let method = if derivative::has_exact_jvp(field) { JacobianMethod::Forward } else { JacobianMethod::Fd };
    derivative::jacobian(field, x, t, method, options, |range, values| {
        for (local, p) in range.enumerate() {
            let tp = time(p) as f64;
            let alpha = schedule.alpha(tp);
            let (a, b) = match settings.map {
                DescribedMap::Score => (0.0, 1.0),
                DescribedMap::Denoiser => (1.0 / alpha, schedule.std(tp).powi(2) / alpha),
            };
            let singular = map_singular_values(&values[local * d * d..(local + 1) * d * d], d, a, b)?;
            scaling_rank.push(scaling_and_rank(&singular[..k]));
        }
        Ok(())
    })?;
    for (p, (local_scaling, local_rank)) in scaling_rank.into_iter().enumerate() {
        let local_complexity = local_complexity(field, &x[p * d..(p + 1) * d], time(p), settings.radius, &directions)?;
        sink(p, PointDescriptors { local_scaling, local_rank, local_complexity })?;
    }
    Ok(())
}
