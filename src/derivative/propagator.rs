//! Tangent propagation: carrying points and orthonormal tangent vectors through a dynamics, a block of steps at a
//! time, with a QR re-orthonormalisation after each block (the operator the Lyapunov analysis drives).

use crate::error::Result;

/// One re-orthonormalisation's result per trajectory: log R_jj ([B, K]), and R itself ([B, K, K] row-major) when
/// it was asked for (covariant vectors need it; exponents only the diagonal).
#[derive(Debug, Clone)]
pub struct Factors {
    pub log_diag: Vec<f64>,
    pub r: Option<Vec<f64>>,
}

impl Factors {
    /// From whole R factors ([B, K, K]), keeping them when `keep_r`.
    pub fn from_r(r: Vec<f64>, k: usize, keep_r: bool) -> Self {
        let log_diag = r.chunks(k * k).flat_map(|block| (0..k).map(move |j| block[j * k + j].abs().ln())).collect();
        Factors { log_diag, r: keep_r.then_some(r) }
    }
}

/// Carries points and tangents through the dynamics, a block of steps at a time.
pub trait Propagator {
    /// Runs `blocks` blocks of `steps` steps from step index `first`, re-orthonormalising after each; returns the
    /// factors of every block (with R when `keep_r`).
    fn advance(&mut self, first: usize, steps: usize, blocks: usize, keep_r: bool) -> Result<Vec<Factors>>;
    /// (x [B, D], Q [B, K, D]).
    fn state(&mut self) -> Result<(Vec<f32>, Vec<f64>)>;
}

/// A stage of an explicit Runge–Kutta step: the velocity there is v = score · field(x, time) + x_coef · x.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub time: f64,
    pub score: f64,
    pub x_coef: f64,
}

/// One step x ← x + dt Σ_i b_i v_i (+ noise), with stage points x + dt Σ_{j<i} a_ij v_j; tangents follow the
/// same tableau with the velocities' derivatives score · J·Q + x_coef · Q (the noise is additive and drops out).
#[derive(Debug, Clone)]
pub struct StepSpec {
    pub dt: f64,
    pub stages: Vec<Stage>,
    pub a: &'static [&'static [f64]],
    pub b: &'static [f64],
    /// (scale, z): scale · z is added to x, z [B, D].
    pub noise: Option<(f64, Vec<f64>)>,
}

/// Makes the step with a given index (drawing its noise in order).
pub type StepPlanner<'f> = Box<dyn FnMut(usize) -> Result<StepSpec> + 'f>;
