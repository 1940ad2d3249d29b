//! Which route computes a batch's spectra cheapest: the dense Jacobian (D products per point, then an f64 SVD
//! on the host), block Krylov ([`crate::solver::block_krylov`]) or randomized SVD, from a cost model of the
//! field: products per point by each route, the seconds a product and the host's linear algebra take, and the
//! memory each needs against the budget.
//!
//! The expected products of the iterative routes are estimates, not bounds: block Krylov's from the number of
//! steps it took on the song-unet Jacobian (top 32 of D = 784 at 1e-5: 27 steps of b = 8 for the triplets, 47 for
//! the symmetric part; docs/BENCHMARKS.md), scaled by log10(1/tol) and capped at spanning all of R^D; randomized
//! SVD's from the 40 iterations that still stalled above 1e-5 on that point (issue 17), likewise scaled. The rates
//! that turn products and host flops into seconds were measured on lavapipe (2 cores); only their ratio matters
//! when products dominate, as they do for every network here.

use crate::derivative::has_exact_vjp;
use crate::field::ScoreField;
use crate::scheduler::JobOptions;
use crate::solver::block_krylov::KrylovSettings;

/// How a spectrum is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpectrumRoute {
    /// The exact Jacobian (forward mode), SVD and eigendecomposition in f64.
    Dense,
    /// Block subspace iteration on J·V and Jᵀ·U.
    Subspace,
    /// Randomized SVD (oversampled subspace iteration).
    Rsvd,
    /// Block Golub–Kahan–Lanczos and block Lanczos with restarts.
    Krylov,
}

impl SpectrumRoute {
    pub fn name(self) -> &'static str {
        match self {
            SpectrumRoute::Dense => "dense",
            SpectrumRoute::Subspace => "subspace",
            SpectrumRoute::Rsvd => "rsvd",
            SpectrumRoute::Krylov => "krylov",
        }
    }
}

/// What the cost model needs to know of a run.
#[derive(Debug, Clone, Copy)]
pub struct RouteInputs {
    /// D.
    pub dim: usize,
    /// Triplets wanted per point.
    pub k: usize,
    /// Points in the batch.
    pub points: usize,
    /// Residual tolerance of the iterative routes.
    pub tolerance: f64,
    /// Rademacher probes of the iterative routes' non-conservativeness estimate.
    pub probes: usize,
    /// Extra directions of randomized SVD.
    pub oversampling: usize,
    /// Floating-point operations of one forward evaluation of the field at one point.
    pub flops_per_row: f64,
    /// Whether the field has exact J·v and Jᵀ·u (the iterative routes need both).
    pub exact_products: bool,
    /// The device memory budget of the job, bytes.
    pub memory_budget: u64,
}

/// One route's estimated cost for the whole batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteCost {
    pub route: SpectrumRoute,
    /// Rows multiplied by J or Jᵀ per point (expected).
    pub products_per_point: f64,
    /// Estimated seconds for the batch.
    pub seconds: f64,
    /// Memory one point needs (device and host together), bytes.
    pub bytes_per_point: u64,
    /// Whether the route can run at all (exact products, memory).
    pub feasible: bool,
}

/// The route taken, why, and every route's estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteChoice {
    pub route: SpectrumRoute,
    pub reason: String,
    pub estimates: Vec<RouteCost>,
}

/// Effective rate of the products, flop/s of forward-evaluation work (a product costs about 3 forward passes):
/// the song-unet point's 784 forward-mode products took ≈ 35 s on lavapipe (0.033 GFLOP per forward pass).
const PRODUCT_FLOP_RATE: f64 = 2.2e9;
/// f64 dense linear algebra on the host (faer, 2 cores), flop/s.
const HOST_FLOP_RATE: f64 = 5e9;
/// One GPU round trip of an iterative step (dispatches, a small download), seconds.
const STEP_SECONDS: f64 = 0.02;

/// The route with the least estimated time among the feasible ones, and why.
pub fn choose_route(inputs: RouteInputs) -> RouteChoice {
    least_time(&inputs, vec![dense_cost(&inputs), krylov_cost(&inputs), rsvd_cost(&inputs)])
}

/// The route for the top k singular values alone, without vectors, the symmetric part or probes (the local
/// descriptors): the dense Jacobian and its singular values (D products; ≈ 4 D³ host flops for the
/// bidiagonalisation and the QR sweeps, no vectors), or block Golub–Kahan–Lanczos for the triplets only.
/// Randomized SVD is not a candidate: it stalls above 1e-5 where Krylov converges (issue 17).
pub fn choose_values_route(inputs: RouteInputs) -> RouteChoice {
    let d = inputs.dim as f64;
    let dense = RouteCost {
        seconds: product_seconds(&inputs, d) + 4.0 * d.powi(3) * inputs.points as f64 / HOST_FLOP_RATE + STEP_SECONDS,
        ..dense_cost(&inputs)
    };
    least_time(&inputs, vec![dense, krylov_triplets_cost(&inputs)])
}

/// [`choose_values_route`] for a field: its dimension, forward cost and products, the job's memory budget.
pub fn choose_values_route_for(
    field: &ScoreField,
    points: usize,
    k: usize,
    tolerance: f64,
    options: JobOptions,
) -> RouteChoice {
    choose_values_route(field_inputs(field, points, k, tolerance, 0, 0, options))
}

/// The feasible estimate of least time (the first, dense, when none is), and the reason naming all of them.
fn least_time(inputs: &RouteInputs, estimates: Vec<RouteCost>) -> RouteChoice {
    let best = estimates
        .iter()
        .filter(|c| c.feasible)
        .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
        .copied()
        .unwrap_or(estimates[0]);
    let others: Vec<String> = estimates
        .iter()
        .filter(|c| c.route != best.route)
        .map(|c| {
            if c.feasible {
                format!("{} {:.0} products/point, ~{:.3} s", c.route.name(), c.products_per_point, c.seconds)
            } else {
                format!("{} not possible (exact J·v and Jᵀ·u or memory)", c.route.name())
            }
        })
        .collect();
    let reason = format!(
        "least estimated time for {} point(s) at D = {}, k = {}, tol = {:e}: {} {:.0} products/point, ~{:.3} s; vs {}",
        inputs.points,
        inputs.dim,
        inputs.k,
        inputs.tolerance,
        best.route.name(),
        best.products_per_point,
        best.seconds,
        others.join("; ")
    );
    RouteChoice { route: best.route, reason, estimates }
}

/// [`choose_route`] for a field: its dimension, forward cost and products, the job's memory budget.
pub fn choose_route_for(
    field: &ScoreField,
    points: usize,
    k: usize,
    tolerance: f64,
    probes: usize,
    oversampling: usize,
    options: JobOptions,
) -> RouteChoice {
    choose_route(field_inputs(field, points, k, tolerance, probes, oversampling, options))
}

/// The cost model's inputs for `points` points of `field`.
fn field_inputs(
    field: &ScoreField,
    points: usize,
    k: usize,
    tolerance: f64,
    probes: usize,
    oversampling: usize,
    options: JobOptions,
) -> RouteInputs {
    RouteInputs {
        dim: field.dim(),
        k,
        points,
        tolerance,
        probes,
        oversampling,
        // User fields do not know their cost: a small one per coordinate.
        flops_per_row: Some(field.flops_per_row())
            .filter(|f| f.is_finite() && *f > 0.0)
            .unwrap_or(100.0 * field.dim() as f64),
        exact_products: has_exact_vjp(field),
        memory_budget: options.memory_budget,
    }
}

fn product_seconds(inputs: &RouteInputs, products_per_point: f64) -> f64 {
    products_per_point * inputs.points as f64 * 3.0 * inputs.flops_per_row / PRODUCT_FLOP_RATE
}

/// D products per point (forward mode) and, per point, an SVD and a symmetric eigendecomposition with vectors
/// (≈ 30 D³ flops); the Jacobian, D² f32 on the device and D² f64 on the host.
fn dense_cost(inputs: &RouteInputs) -> RouteCost {
    let d = inputs.dim as f64;
    let products = d;
    let host = 30.0 * d.powi(3) * inputs.points as f64 / HOST_FLOP_RATE;
    let bytes = (inputs.dim * inputs.dim * 12) as u64;
    RouteCost {
        route: SpectrumRoute::Dense,
        products_per_point: products,
        seconds: product_seconds(inputs, products) + host + STEP_SECONDS,
        bytes_per_point: bytes,
        feasible: bytes <= inputs.memory_budget.max(1) * 8,
    }
}

/// The tolerance's decades, at least 1.
fn decades(tolerance: f64) -> f64 {
    (1.0 / tolerance.max(1e-300)).log10().max(1.0)
}

/// Triplets: 2 (k + b) · decades(tol) products (27 steps of 2b = 16 on the song-unet point at 1e-5, k = 32), at
/// most what spans R^D twice over; the symmetric part 1.75 times that (47 steps of 2b); 2 per probe. Host: per
/// step a Rayleigh–Ritz on a basis of m = 3k + 2b columns (≈ 6 m² D flops with the residuals and the
/// reorthogonalisation). Memory: four D × m f64 blocks per point.
fn krylov_cost(inputs: &RouteInputs) -> RouteCost {
    let triplets = krylov_triplet_products(inputs);
    let symmetric = (1.75 * triplets).min(4.0 * inputs.dim as f64);
    krylov_run_cost(inputs, triplets + symmetric, 2.0 * inputs.probes as f64)
}

/// The triplets alone (no symmetric part, no probes), as [`krylov_cost`] counts them.
fn krylov_triplets_cost(inputs: &RouteInputs) -> RouteCost {
    krylov_run_cost(inputs, krylov_triplet_products(inputs), 0.0)
}

/// 2 (k + b) · decades(tol) products for the triplets, at most 4 D.
fn krylov_triplet_products(inputs: &RouteInputs) -> f64 {
    let b = KrylovSettings::new(inputs.k, inputs.tolerance, 1, 0).block as f64;
    (2.0 * (inputs.k as f64 + b) * decades(inputs.tolerance)).min(4.0 * inputs.dim as f64)
}

/// A Krylov run of `solved` products in steps of 2b, plus `extra` products outside the steps.
fn krylov_run_cost(inputs: &RouteInputs, solved: f64, extra: f64) -> RouteCost {
    let settings = KrylovSettings::new(inputs.k, inputs.tolerance, 1, 0);
    let (d, b) = (inputs.dim as f64, settings.block as f64);
    let m = settings.basis.min(inputs.dim) as f64;
    let steps = solved / (2.0 * b);
    let host = steps * 6.0 * m * m * d * inputs.points as f64 / HOST_FLOP_RATE;
    RouteCost {
        route: SpectrumRoute::Krylov,
        products_per_point: solved + extra,
        seconds: product_seconds(inputs, solved + extra) + host + steps * STEP_SECONDS,
        bytes_per_point: (4.0 * m * d * 8.0) as u64,
        feasible: inputs.exact_products && inputs.k < inputs.dim,
    }
}

/// Randomized SVD: 8 · decades(tol) iterations (40 at 1e-5, where it still stalled above the tolerance on the
/// song-unet point), each 2 (k + p) + k products, and as many again for the symmetric part's power iteration.
fn rsvd_cost(inputs: &RouteInputs) -> RouteCost {
    let (d, k, p) = (inputs.dim as f64, inputs.k as f64, inputs.oversampling as f64);
    let iterations = 8.0 * decades(inputs.tolerance);
    let products = iterations * (2.0 * (k + p) + k) * 2.0 + 2.0 * inputs.probes as f64;
    let host = iterations * 10.0 * (k + p).powi(2) * d * inputs.points as f64 / HOST_FLOP_RATE;
    RouteCost {
        route: SpectrumRoute::Rsvd,
        products_per_point: products,
        seconds: product_seconds(inputs, products) + host + 2.0 * iterations * STEP_SECONDS,
        bytes_per_point: (4.0 * (k + p) * d * 8.0) as u64,
        feasible: inputs.exact_products && inputs.k < inputs.dim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(dim: usize, k: usize, points: usize, flops: f64) -> RouteInputs {
        RouteInputs {
            dim,
            k,
            points,
            tolerance: 1e-5,
            probes: 64,
            oversampling: 8,
            flops_per_row: flops,
            exact_products: true,
            memory_budget: 1 << 30,
        }
    }

    #[test]
    fn dense_for_small_d_krylov_for_large_d_and_only_dense_without_exact_products() {
        assert_eq!(choose_route(inputs(16, 8, 128, 1e4)).route, SpectrumRoute::Dense);
        assert_eq!(choose_route(inputs(784, 32, 1, 3.3e7)).route, SpectrumRoute::Dense);
        let large = choose_route(inputs(12288, 32, 1, 1e9));
        assert_eq!(large.route, SpectrumRoute::Krylov, "{}", large.reason);
        assert!(large.reason.contains("krylov") && large.reason.contains("dense"), "{}", large.reason);
        let no_vjp = RouteInputs { exact_products: false, ..inputs(12288, 32, 1, 1e9) };
        assert_eq!(choose_route(no_vjp).route, SpectrumRoute::Dense);
        // All D triplets wanted: nothing beats the dense SVD.
        assert_eq!(choose_route(inputs(500, 500, 1, 1e9)).route, SpectrumRoute::Dense);
    }

    #[test]
    fn values_alone_take_krylov_only_for_few_of_many_with_exact_products() {
        // Few values of a large expensive map: far fewer products than D.
        let large = choose_values_route(inputs(12288, 32, 1, 1e9));
        assert_eq!(large.route, SpectrumRoute::Krylov, "{}", large.reason);
        assert_eq!(large.estimates.len(), 2, "dense and krylov only: {}", large.reason);
        // All D values (the descriptors' default), or no exact products: dense.
        assert_eq!(choose_values_route(inputs(784, 784, 1, 3.3e7)).route, SpectrumRoute::Dense);
        let no_vjp = RouteInputs { exact_products: false, ..inputs(12288, 32, 1, 1e9) };
        assert_eq!(choose_values_route(no_vjp).route, SpectrumRoute::Dense);
        // A small cheap map: D products and a small SVD beat Krylov's steps.
        assert_eq!(choose_values_route(inputs(16, 4, 128, 1e4)).route, SpectrumRoute::Dense);
    }
}
