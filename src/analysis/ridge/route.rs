//! Which eigensolver SCMS uses: the dense Hessian and a full host eigen-decomposition, or block Lanczos on
//! Hessian-vector products, chosen by a cost and memory model that depends on D, N, d and the memory budget only
//! (never on the number of starting points, so shards and devices take the same route).

use serde_json::json;

use crate::error::{Error, Result};
use crate::field::KdeField;
use crate::ops::kde::{NARROW_DIRECTIONS, NARROW_MAX_DIRECTIONS};

/// How SCMS finds the ridge's normal space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eigensolver {
    /// Form ∇²log p (D×D) on the GPU and eigen-decompose it in f64 on the host: O(N·D²) per point.
    Dense,
    /// Block Lanczos on H·V for the d + 1 leading eigenpairs, H never formed: O(N·D·d) per point.
    Krylov,
    /// Dense for small D, Krylov when it is cheaper or the dense Hessians do not fit the memory budget.
    Auto,
}

impl Eigensolver {
    pub fn name(self) -> &'static str {
        match self {
            Eigensolver::Dense => "dense",
            Eigensolver::Krylov => "krylov",
            Eigensolver::Auto => "auto",
        }
    }

    /// `dense`, `krylov` or `auto`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "dense" => Ok(Eigensolver::Dense),
            "krylov" => Ok(Eigensolver::Krylov),
            "auto" => Ok(Eigensolver::Auto),
            other => Err(Error::InvalidArgument(format!("eigensolver {other:?}: expected dense, krylov or auto"))),
        }
    }
}

/// Block products per point and SCMS step the cost model expects, measured (docs/BENCHMARKS.md, "Ridge route
/// crossover"): 2.3–2.4 per Lanczos solve warm-started from the previous step's vectors, and with each point's
/// final solve for λ_{d+1} 3.0–3.1 block products per dense-route evaluation over runs of 2.5–3 steps.
pub const EXPECTED_BLOCK_PRODUCTS: f64 = 3.0;

/// Throughput of the kde kernels, flop/s, measured on lavapipe (2 cores, loaded; docs/BENCHMARKS.md, "Ridge route
/// crossover", N = 10,000, D = 64–384): the first pass and the covariance on 64×64 register tiles reach about
/// twice the rate of the H·V pair at 16 directions per workgroup (2·N·D̄² flops per Hessian in 0.50–9.3 s against
/// 72·N·D per block product in 0.72–2.8 s). Only their ratio and the host's rate decide the route.
const DENSE_KERNEL_FLOP_RATE: f64 = 1.45e8;
const HVP_KERNEL_FLOP_RATE: f64 = 6.7e7;
/// f64 eigensolver and reorthogonalisation on the host (faer, 2 cores), flop/s.
const HOST_FLOP_RATE: f64 = 5e9;

/// The output block edge of the tiled kde kernels: a covariance block narrower than this costs as much as this.
const KERNEL_BLOCK: usize = 64;

/// The Lanczos block and basis for a d-dimensional ridge (d + 1 pairs wanted). The block is at least 8: the
/// narrow H·V kernels compute 16 directions per workgroup whatever the block, so up to 16 cost the GPU the same
/// and a wider block saves products.
pub fn lanczos_shape(ridge_dim: usize, dim: usize) -> (usize, usize) {
    let wanted = ridge_dim + 1;
    let block = (2 * wanted).max(8).min(dim);
    (block, (wanted + 4 * block).min(dim))
}

/// The route taken, and the model's figures behind it (per starting point and SCMS step).
#[derive(Debug, Clone, PartialEq)]
pub struct EigenRoute {
    pub requested: Eigensolver,
    pub chosen: Eigensolver,
    pub reason: String,
    /// Device plus host bytes one point needs in flight on each route.
    pub dense_bytes_per_point: u64,
    pub krylov_bytes_per_point: u64,
    /// Floating-point operations of one step of one point on each route (the GPU passes with the kernels' 64-wide
    /// padding, plus the host's eigensolver work), and the seconds the model expects them to take.
    pub dense_flops_per_step: f64,
    pub krylov_flops_per_step: f64,
    pub dense_seconds_per_step: f64,
    pub krylov_seconds_per_step: f64,
}

impl EigenRoute {
    pub fn summary(&self) -> serde_json::Value {
        json!({
            "requested": self.requested.name(),
            "chosen": self.chosen.name(),
            "reason": self.reason,
            "dense_bytes_per_point": self.dense_bytes_per_point,
            "krylov_bytes_per_point": self.krylov_bytes_per_point,
            "dense_flops_per_step": self.dense_flops_per_step,
            "krylov_flops_per_step": self.krylov_flops_per_step,
            "dense_seconds_per_step": self.dense_seconds_per_step,
            "krylov_seconds_per_step": self.krylov_seconds_per_step,
            "expected_block_products_per_step": EXPECTED_BLOCK_PRODUCTS,
        })
    }
}

fn padded(n: usize) -> f64 {
    (n.div_ceil(KERNEL_BLOCK) * KERNEL_BLOCK) as f64
}

/// The directions the H·V kernels compute for a block of `p` (16 per workgroup up to 32, else 64).
fn padded_directions(p: usize) -> f64 {
    let edge = if p <= NARROW_MAX_DIRECTIONS { NARROW_DIRECTIONS } else { KERNEL_BLOCK };
    (p.div_ceil(edge) * edge) as f64
}

/// Host bytes of one point on the dense route: its f32 Hessian and the f64 copy and eigenvectors.
pub fn dense_host_bytes(dim: usize) -> u64 {
    let d2 = (dim * dim) as u64;
    4 * d2 + 3 * 8 * d2
}

/// Host bytes of one point on the Krylov route: the basis and its products (f64), and the staged blocks.
pub fn krylov_host_bytes(dim: usize, ridge_dim: usize) -> u64 {
    let (block, basis) = lanczos_shape(ridge_dim, dim);
    (8 * dim * (2 * (basis + block) + 2 * block) + 4 * 2 * dim * block) as u64
}

/// One SCMS step of one point on each route, by the model: flops and seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCost {
    pub dense_flops: f64,
    pub krylov_flops: f64,
    pub dense_seconds: f64,
    pub krylov_seconds: f64,
}

/// The model's cost of one step of one point with N data points in R^D and a d-dimensional ridge.
pub fn step_cost(n: usize, dim: usize, ridge_dim: usize) -> StepCost {
    let (n, d) = (n as f64, dim as f64);
    let (block, basis) = lanczos_shape(ridge_dim, dim);
    // Dense: the first pass (distances, mean) ≈ 8·N·D and the covariance 2·N·D̄² (D̄ padded to 64) on the GPU; a
    // symmetric eigendecomposition ≈ 9·D³ on the host.
    let dense_gpu = n * (8.0 * d + 2.0 * padded(dim) * padded(dim));
    let dense_host = 9.0 * d * d * d;
    // Krylov, per block product: the first pass again and the two H·V kernels, 2·N·D̄·P̄ each (P̄: the block rounded
    // up to the kernels' 16 or 64 directions); on the host the reorthogonalisation and Rayleigh–Ritz ≈ 6·D·m².
    let krylov_gpu = n * (8.0 * d + 4.0 * padded(dim) * padded_directions(block));
    let krylov_host = 6.0 * d * (basis * basis) as f64;
    StepCost {
        dense_flops: dense_gpu + dense_host,
        krylov_flops: EXPECTED_BLOCK_PRODUCTS * (krylov_gpu + krylov_host),
        dense_seconds: dense_gpu / DENSE_KERNEL_FLOP_RATE + dense_host / HOST_FLOP_RATE,
        krylov_seconds: EXPECTED_BLOCK_PRODUCTS * (krylov_gpu / HVP_KERNEL_FLOP_RATE + krylov_host / HOST_FLOP_RATE),
    }
}

/// Chooses the route for `kde` and a d-dimensional ridge under `memory_budget`: Krylov when one point's dense
/// Hessian does not fit, else the one of least expected time ([`step_cost`]).
pub fn choose(kde: &KdeField, ridge_dim: usize, requested: Eigensolver, memory_budget: u64) -> EigenRoute {
    let dim = kde.dim();
    let (block, _) = lanczos_shape(ridge_dim, dim);
    let dense_cost = kde.hessian_cost(memory_budget);
    let krylov_cost = kde.hessian_vector_cost(block, memory_budget);
    let dense_bytes = dense_cost.bytes_per_row + dense_host_bytes(dim);
    let krylov_bytes = krylov_cost.bytes_per_row + krylov_host_bytes(dim, ridge_dim);
    let step = step_cost(kde.len(), dim, ridge_dim);
    let fits = dense_bytes + dense_cost.fixed_bytes <= memory_budget;
    let (chosen, reason) = match requested {
        Eigensolver::Dense => (Eigensolver::Dense, "requested".to_string()),
        Eigensolver::Krylov => (Eigensolver::Krylov, "requested".to_string()),
        Eigensolver::Auto if !fits => (
            Eigensolver::Krylov,
            format!(
                "one point's D×D Hessian needs {dense_bytes} bytes, more than the memory budget of {memory_budget} \
                 after the data"
            ),
        ),
        Eigensolver::Auto => {
            let (chosen, faster, slower) = if step.krylov_seconds < step.dense_seconds {
                (Eigensolver::Krylov, step.krylov_seconds, step.dense_seconds)
            } else {
                (Eigensolver::Dense, step.dense_seconds, step.krylov_seconds)
            };
            let other = if chosen == Eigensolver::Dense { "krylov" } else { "dense" };
            (
                chosen,
                format!(
                    "less expected time per point and step: {faster:.3e} s ({}) against {slower:.3e} s ({other}) \
                     (D = {dim}, N = {}, d = {ridge_dim}; kernel rates measured on lavapipe)",
                    chosen.name(),
                    kde.len()
                ),
            )
        }
    };
    EigenRoute {
        requested,
        chosen,
        reason,
        dense_bytes_per_point: dense_bytes,
        krylov_bytes_per_point: krylov_bytes,
        dense_flops_per_step: step.dense_flops,
        krylov_flops_per_step: step.krylov_flops,
        dense_seconds_per_step: step.dense_seconds,
        krylov_seconds_per_step: step.krylov_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The measured SCMS runs (docs/BENCHMARKS.md, "Ridge route crossover", N = 10,000, d = 1): dense faster at
    /// D = 64, 128 and 192, Krylov at 256 and 384. The model must put its crossover between 192 and 256, at any N
    /// large enough that the GPU passes dominate.
    #[test]
    fn the_crossover_lies_where_it_was_measured() {
        for n in [10_000, 100_000, 1_000_000] {
            for (dim, krylov_faster) in [(64, false), (128, false), (192, false), (256, true), (384, true), (784, true)]
            {
                let step = step_cost(n, dim, 1);
                assert_eq!(step.krylov_seconds < step.dense_seconds, krylov_faster, "N {n} D {dim}: {step:?}");
            }
        }
    }

    /// Measured at D = 64 (0.50 s per dense evaluation, 0.72 s per block product, N = 10,000) and D = 256 (9.3 s,
    /// 2.8 s): the model's seconds within a factor 1.5 of them.
    #[test]
    fn step_seconds_follow_the_measurements() {
        for (dim, dense, product) in [(64, 0.50, 0.72), (256, 9.27, 2.78)] {
            let step = step_cost(10_000, dim, 1);
            let per_product = step.krylov_seconds / EXPECTED_BLOCK_PRODUCTS;
            for (what, model, measured) in [("dense", step.dense_seconds, dense), ("product", per_product, product)] {
                assert!((model / measured).max(measured / model) < 1.5, "D {dim} {what}: model {model} vs {measured}");
            }
        }
    }
}
