//! f64 twin of shaders/user_flow.wgsl: RK4 steps of dx/dt = f(x) and of its variational equation dQ/dt = J(x) Q
//! for K tangent rows per trajectory, re-orthonormalised every `qr_every` steps by a thin QR (faer's Householder,
//! through [`crate::analysis::qr::qr_rows`]; the kernel uses Gram–Schmidt twice, so this is an independent check).

use crate::analysis::qr::qr_rows;

/// The result of [`flow_lyapunov`].
#[derive(Debug, Clone)]
pub struct FlowRun {
    /// [B, D].
    pub x: Vec<f64>,
    /// [B, K, D], orthonormal rows.
    pub q: Vec<f64>,
    /// Σ log R_jj over the QRs, [B, K].
    pub log_growth: Vec<f64>,
}

/// Runs `steps` RK4 steps of size `dt` from `x0` ([B, D]) and orthonormal `q0` ([B, K, D]), with a QR after
/// every `qr_every` steps (and after the last); `field(x)` and `jvp(x, v)` are the field and its J·v.
#[allow(clippy::too_many_arguments)]
pub fn flow_lyapunov(
    field: &dyn Fn(&[f64]) -> Vec<f64>,
    jvp: &dyn Fn(&[f64], &[f64]) -> Vec<f64>,
    x0: &[f64],
    q0: &[f64],
    d: usize,
    k: usize,
    dt: f64,
    steps: usize,
    qr_every: usize,
) -> FlowRun {
    let trajectories = x0.len() / d;
    let mut x = x0.to_vec();
    let mut q = q0.to_vec();
    let mut log_growth = vec![0.0; trajectories * k];
    let weights = [1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0];
    let offsets = [0.5, 0.5, 1.0];
    for step in 0..steps {
        for b in 0..trajectories {
            let xb = x[b * d..(b + 1) * d].to_vec();
            let qb = q[b * k * d..(b + 1) * k * d].to_vec();
            let (mut xs, mut qs) = (xb.clone(), qb.clone());
            let (mut x_acc, mut q_acc) = (xb.clone(), qb.clone());
            for stage in 0..4 {
                let kx = field(&xs);
                let kq: Vec<Vec<f64>> = (0..k).map(|j| jvp(&xs, &qs[j * d..(j + 1) * d])).collect();
                let w = dt * weights[stage];
                for i in 0..d {
                    x_acc[i] += w * kx[i];
                }
                for j in 0..k {
                    for i in 0..d {
                        q_acc[j * d + i] += w * kq[j][i];
                    }
                }
                if stage < 3 {
                    let c = dt * offsets[stage];
                    for i in 0..d {
                        xs[i] = xb[i] + c * kx[i];
                    }
                    for j in 0..k {
                        for i in 0..d {
                            qs[j * d + i] = qb[j * d + i] + c * kq[j][i];
                        }
                    }
                }
            }
            x[b * d..(b + 1) * d].copy_from_slice(&x_acc);
            q[b * k * d..(b + 1) * k * d].copy_from_slice(&q_acc);
        }
        if (step + 1) % qr_every == 0 || step + 1 == steps {
            let (next, r) = qr_rows(&q, trajectories, k, d);
            q = next;
            for b in 0..trajectories {
                for j in 0..k {
                    log_growth[b * k + j] += r[(b * k + j) * k + j].ln();
                }
            }
        }
    }
    FlowRun { x, q, log_growth }
}
