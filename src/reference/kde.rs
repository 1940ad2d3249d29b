//! f64 twin of the smoothed empirical density (src/field/kde.rs, shaders/kde_*.wgsl): the same formulas, one
//! query point at a time, with a plain two-pass log-sum-exp.

/// log p, ∇log p, ∇²log p at one point.
#[derive(Debug, Clone)]
pub struct KdePoint {
    pub log_density: f64,
    pub score: Vec<f64>,
    /// [D, D]
    pub hessian: Vec<f64>,
    /// The softmax-weighted mean m of α xᵢ.
    pub mean: Vec<f64>,
}

/// p(x) = (1/N) Σᵢ N(x; α xᵢ, σ² I) at `x`, for `data` [N, D].
pub fn kde_point(data: &[f32], dim: usize, alpha: f64, sigma: f64, x: &[f64]) -> KdePoint {
    let n = data.len() / dim;
    let var = sigma * sigma;
    let y = |i: usize, k: usize| alpha * data[i * dim + k] as f64;
    let logits: Vec<f64> =
        (0..n).map(|i| -(0..dim).map(|k| (x[k] - y(i, k)).powi(2)).sum::<f64>() / (2.0 * var)).collect();
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
    let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp() / sum).collect();
    let log_density = max + sum.ln() - (n as f64).ln() - 0.5 * dim as f64 * (2.0 * std::f64::consts::PI * var).ln();
    let mut mean = vec![0.0; dim];
    for i in 0..n {
        for k in 0..dim {
            mean[k] += weights[i] * y(i, k);
        }
    }
    let score = (0..dim).map(|k| (mean[k] - x[k]) / var).collect();
    let mut hessian = vec![0.0; dim * dim];
    for i in 0..n {
        for k in 0..dim {
            let zk = y(i, k) - mean[k];
            for l in 0..dim {
                hessian[k * dim + l] += weights[i] * zk * (y(i, l) - mean[l]);
            }
        }
    }
    for k in 0..dim {
        for l in 0..dim {
            hessian[k * dim + l] /= var * var;
        }
        hessian[k * dim + k] -= 1.0 / var;
    }
    KdePoint { log_density, score, hessian, mean }
}

/// [`kde_point`] at every row of `x` [B, D].
pub fn kde_points(data: &[f32], dim: usize, alpha: f64, sigma: f64, x: &[f32]) -> Vec<KdePoint> {
    x.chunks(dim)
        .map(|row| kde_point(data, dim, alpha, sigma, &row.iter().map(|&v| v as f64).collect::<Vec<_>>()))
        .collect()
}

/// H·v for `per_point` directions per point (`v` [B, P, D]), from the dense reference Hessians.
pub fn kde_hessian_vector(points: &[KdePoint], v: &[f32], per_point: usize, dim: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(v.len());
    for (b, point) in points.iter().enumerate() {
        for p in 0..per_point {
            let vp = &v[(b * per_point + p) * dim..(b * per_point + p + 1) * dim];
            for k in 0..dim {
                out.push((0..dim).map(|l| point.hessian[k * dim + l] * vp[l] as f64).sum());
            }
        }
    }
    out
}

/// SCMS in f64 from one starting point (the loop of `analysis::ridge::scms`, one point, reference Hessians):
/// returns the final point, whether ‖E Eᵀ ∇log p‖ / ‖∇log p‖ fell below `tolerance`, and the steps taken.
pub fn scms_point(
    data: &[f32],
    dim: usize,
    alpha: f64,
    sigma: f64,
    x0: &[f64],
    ridge_dim: usize,
    tolerance: f64,
    max_iterations: usize,
) -> (Vec<f64>, bool, usize) {
    let mut x = x0.to_vec();
    for step in 0..=max_iterations {
        let p = kde_point(data, dim, alpha, sigma, &x);
        let Ok(eigen) = crate::analysis::ridge::symmetric_eigen(&p.hessian, dim) else {
            return (x, false, step);
        };
        let normal = eigen.project_normal(&p.score, ridge_dim);
        let g = p.score.iter().map(|a| a * a).sum::<f64>().sqrt();
        let n = normal.iter().map(|a| a * a).sum::<f64>().sqrt();
        if g == 0.0 || n / g < tolerance {
            return (x, true, step);
        }
        if step == max_iterations {
            break;
        }
        for k in 0..dim {
            x[k] += sigma * sigma * normal[k];
        }
    }
    (x, false, max_iterations)
}
