//! Matrices with prescribed singular values, and the check of a solver's singular triplets against the f64 SVD:
//! shared by the host and resident Krylov tests and the spectrum tests.

use faer::Mat;
use scorelens::solver::block_krylov::Triplets;

use super::{normal_vec, rng};

/// A random D×D orthogonal matrix (Q of a Gaussian matrix).
pub fn orthogonal(d: usize, seed: u64) -> Mat<f64> {
    let g = normal_vec(&mut rng(seed), d * d, 1.0);
    Mat::<f64>::from_fn(d, d, |r, c| g[r * d + c] as f64).qr().compute_Q()
}

/// Row-major A = Q₁ diag(s) Q₂ᵀ.
pub fn with_singular_values(s: &[f64], seed: u64) -> Vec<f64> {
    let d = s.len();
    let (q1, q2) = (orthogonal(d, seed), orthogonal(d, seed + 1000));
    let a = &q1 * Mat::<f64>::from_fn(d, d, |r, c| if r == c { s[r] } else { 0.0 }) * q2.transpose();
    (0..d * d).map(|e| a[(e / d, e % d)]).collect()
}

/// The largest principal angle between the row spaces of two [k, D] blocks with orthonormal rows.
pub fn largest_principal_angle(a: &[f64], b: &[f64], k: usize, d: usize) -> f64 {
    let m = Mat::<f64>::from_fn(k, k, |i, j| (0..d).map(|r| a[i * d + r] * b[j * d + r]).sum());
    m.singular_values().unwrap().iter().cloned().fold(1.0, f64::min).clamp(-1.0, 1.0).acos()
}

/// The f64 SVD of a row-major D×D matrix: all singular values and the top-k left and right vectors as [k, D] rows.
pub struct ReferenceSvd {
    pub values: Vec<f64>,
    pub left: Vec<f64>,
    pub right: Vec<f64>,
}

pub fn reference_svd(a: &[f64], d: usize, k: usize) -> ReferenceSvd {
    let m = Mat::<f64>::from_fn(d, d, |r, c| a[r * d + c]);
    let svd = m.svd().unwrap();
    let rows = |q: faer::MatRef<'_, f64>| (0..k).flat_map(|i| (0..d).map(move |r| q[(r, i)])).collect();
    ReferenceSvd {
        values: (0..d).map(|i| svd.S().column_vector()[i]).collect(),
        left: rows(svd.U()),
        right: rows(svd.V()),
    }
}

/// The solver tests' prescribed spectra of dimension D, each with its k: decaying, clustered, a tiny gap after s_k,
/// repeated values inside the top k, and rank-deficient.
pub fn prescribed_spectra(d: usize) -> Vec<(&'static str, Vec<f64>, usize)> {
    let decaying = |i: usize| 10.0 * 0.93f64.powi(i as i32);
    vec![
        ("decaying", (0..d).map(decaying).collect(), 10),
        // Clustered: twelve values within 1e-3 of each other, then a drop.
        ("clustered", (0..d).map(|i| if i < 12 { 5.0 - 1e-4 * i as f64 } else { decaying(i) * 0.3 }).collect(), 9),
        // A tiny gap after s_k: s_k / s_{k+1} = 1 + 1e-4 (the subspace check is then skipped; values still match).
        (
            "tiny gap",
            (0..d).map(|i| if i < 7 { 3.0 - 0.1 * i as f64 } else { 2.4 - 2.4e-4 - 0.02 * (i - 7) as f64 }).collect(),
            7,
        ),
        // Repeated: 4.0 three times, 2.0 twice, inside the top k.
        (
            "repeated",
            (0..d)
                .map(|i| match i {
                    0..=2 => 4.0,
                    3..=4 => 2.0,
                    _ => 1.5 * 0.9f64.powi(i as i32),
                })
                .collect(),
            6,
        ),
        // Rank-deficient: rank 5 < k = 8; s₆..s₈ = 0 (the products' new directions vanish).
        ("rank-deficient", (0..d).map(|i| if i < 5 { 3.0 - 0.5 * i as f64 } else { 0.0 }).collect(), 8),
    ]
}

/// What [`check_triplets`] allows.
pub struct Tolerances {
    /// The solver's tolerance: its own residuals must be within it.
    pub solver: f64,
    /// Bound on both residuals recomputed here from A in f64, relative to s₁ (the solver's come from its possibly
    /// f32 products, so the true ones may differ by that noise).
    pub residual: f64,
    /// Bound on |s_i − s_i(ref)| / s₁.
    pub value: f64,
    /// Bound on the principal angles of both k-subspaces, checked where s_k / s_{k+1} > 1.01.
    pub angle: f64,
}

/// Whether the gap s_k / s_{k+1} of a reference spectrum lets the top-k subspaces be compared.
pub fn subspace_gap(values: &[f64], k: usize) -> bool {
    values[k - 1] > 1.01 * values[k] && values[k - 1] > 1e-8 * values[0]
}

/// Checks the top-k triplets `found` of the row-major D×D matrix `a` against its f64 SVD, which it returns:
/// convergence, values, both residuals (recomputed from A, not taken from the solver) and principal angles.
#[allow(clippy::needless_range_loop)] // i indexes the values and the [k, D] vector rows alike.
pub fn check_triplets(name: &str, a: &[f64], d: usize, k: usize, found: &Triplets, tol: &Tolerances) -> ReferenceSvd {
    assert!(found.converged, "{name}: not converged after {} steps", found.iterations);
    let reference = reference_svd(a, d, k);
    let want = &reference.values;
    let s1 = want[0];
    for i in 0..k {
        let (u, v) = (&found.left[i * d..(i + 1) * d], &found.right[i * d..(i + 1) * d]);
        let err = (found.singular_values[i] - want[i]).abs() / s1;
        assert!(err <= tol.value, "{name}: s{i} {} vs {} (error {err:e} s₁)", found.singular_values[i], want[i]);
        let s = found.singular_values[i];
        let av: Vec<f64> = (0..d).map(|r| (0..d).map(|c| a[r * d + c] * v[c]).sum()).collect();
        let atu: Vec<f64> = (0..d).map(|r| (0..d).map(|c| a[c * d + r] * u[c]).sum()).collect();
        let r1 = av.iter().zip(u).map(|(x, y)| (x - s * y).powi(2)).sum::<f64>().sqrt() / s1;
        let r2 = atu.iter().zip(v).map(|(x, y)| (x - s * y).powi(2)).sum::<f64>().sqrt() / s1;
        assert!(r1 <= tol.residual && r2 <= tol.residual, "{name}: triplet {i} residuals {r1:e}, {r2:e}");
        assert!(found.residuals[i] <= tol.solver && found.transpose_residuals[i] <= tol.solver);
    }
    if subspace_gap(want, k) {
        let l = largest_principal_angle(&found.left, &reference.left, k, d);
        let r = largest_principal_angle(&found.right, &reference.right, k, d);
        assert!(l <= tol.angle && r <= tol.angle, "{name}: principal angles {l:e} (left), {r:e} (right)");
    }
    reference
}
