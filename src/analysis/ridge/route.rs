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

/// Block products per SCMS step assumed by the cost model: warm-started from the previous step's vectors, most
/// steps need the opening block and one expansion.
pub const EXPECTED_BLOCK_PRODUCTS: f64 = 2.0;

/// Below this D `auto` takes the dense route whenever it fits: the Hessian costs no more than a few products.
pub const SMALL_DIM: usize = 64;

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
    /// padding, plus the host's eigensolver work).
    pub dense_flops_per_step: f64,
    pub krylov_flops_per_step: f64,
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

/// Chooses the route for `kde` and a d-dimensional ridge under `memory_budget`.
pub fn choose(kde: &KdeField, ridge_dim: usize, requested: Eigensolver, memory_budget: u64) -> EigenRoute {
    let (dim, n) = (kde.dim(), kde.len() as f64);
    let (block, basis) = lanczos_shape(ridge_dim, dim);
    let dense_cost = kde.hessian_cost(memory_budget);
    let krylov_cost = kde.hessian_vector_cost(block, memory_budget);
    let dense_bytes = dense_cost.bytes_per_row + dense_host_bytes(dim);
    let krylov_bytes = krylov_cost.bytes_per_row + krylov_host_bytes(dim, ridge_dim);
    let d = dim as f64;
    // First pass (distances, mean) ≈ 8·N·D; the covariance 2·N·D̄² (D̄ padded to 64); a symmetric eigen-
    // decomposition ≈ 9·D³ on the host.
    let dense_flops = n * (8.0 * d + 2.0 * padded(dim) * padded(dim)) + 9.0 * d * d * d;
    // Per block product: the first pass again and the two H·V kernels, 2·N·D̄·P̄ each (P̄: the block rounded up to
    // the kernels' 16 or 64 directions); on the host, the
    // reorthogonalisation and Rayleigh–Ritz ≈ 6·D·m² per product.
    let per_product = n * (8.0 * d + 4.0 * padded(dim) * padded_directions(block)) + 6.0 * d * (basis * basis) as f64;
    let krylov_flops = EXPECTED_BLOCK_PRODUCTS * per_product;
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
        Eigensolver::Auto if dim < SMALL_DIM => (
            Eigensolver::Dense,
            format!("D = {dim} < {SMALL_DIM}: one Hessian is small, and the dense route gives every eigenvalue"),
        ),
        Eigensolver::Auto if krylov_flops < dense_flops => (
            Eigensolver::Krylov,
            format!("fewer operations per step: {krylov_flops:.3e} (Krylov) against {dense_flops:.3e} (dense)"),
        ),
        Eigensolver::Auto => (
            Eigensolver::Dense,
            format!("fewer operations per step: {dense_flops:.3e} (dense) against {krylov_flops:.3e} (Krylov)"),
        ),
    };
    EigenRoute {
        requested,
        chosen,
        reason,
        dense_bytes_per_point: dense_bytes,
        krylov_bytes_per_point: krylov_bytes,
        dense_flops_per_step: dense_flops,
        krylov_flops_per_step: krylov_flops,
    }
}
