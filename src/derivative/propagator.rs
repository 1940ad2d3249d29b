//! Tangent propagation: carrying points and orthonormal tangent vectors through a dynamics, a block of steps at a
//! time, with a QR re-orthonormalisation after each block (the operator the Lyapunov analysis drives).

use crate::error::Result;

/// One re-orthonormalisation's result: R per trajectory, [B, K, K] row-major.
pub type Factors = Vec<f64>;

/// Carries points and tangents through the dynamics, a block of steps at a time.
pub trait Propagator {
    /// Runs `blocks` blocks of `steps` steps from step index `first`, re-orthonormalising after each; returns the
    /// R factors of every block.
    fn advance(&mut self, first: usize, steps: usize, blocks: usize) -> Result<Vec<Factors>>;
    /// (x [B, D], Q [B, K, D]).
    fn state(&mut self) -> Result<(Vec<f32>, Vec<f64>)>;
}
