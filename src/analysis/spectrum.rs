//! Jacobian spectra (Wenliang & Moran, arXiv 2311.09952): the SVD J = U S Vᵀ of the score Jacobian at a point,
//! the local dimension it implies, the alignment of left and right singular vectors, the non-conservativeness of the
//! field and the overlap of the singular subspaces with the eigen-subspaces of the symmetric part.
//!
//! This is the dense path: the exact Jacobian comes from the GPU and is decomposed in f64 on the host with faer.

use faer::{Mat, Side};

use crate::error::{Error, Result};

/// Settings of one spectrum.
#[derive(Debug, Clone, Copy)]
pub struct SpectrumSettings {
    /// Singular triplets kept (K ≤ D).
    pub k: usize,
    /// The threshold rule counts 1/sᵢ > c · std(t)².
    pub threshold_c: f64,
    /// Keep the singular vectors.
    pub vectors: bool,
}

/// The spectrum of one point's Jacobian.
#[derive(Debug, Clone)]
pub struct PointSpectrum {
    /// s₁ ≥ … ≥ s_K.
    pub singular_values: Vec<f64>,
    /// ‖J vᵢ − sᵢ uᵢ‖ / s₁.
    pub residuals: Vec<f64>,
    /// ‖Jᵀ uᵢ − sᵢ vᵢ‖ / s₁ (empty where the method does not compute it: subspace, rsvd).
    pub transpose_residuals: Vec<f64>,
    /// Whether the method reached its tolerance at this point (the dense SVD always does; an iterative method
    /// that stopped at its iteration cap short of it says false).
    pub converged: bool,
    /// Rows multiplied by J or Jᵀ for this point (dense: the D forward-mode products of the Jacobian).
    pub products: usize,
    /// uᵢ · vᵢ (−1 for a conservative field with negative definite Jacobian).
    pub alignment: Vec<f64>,
    /// ρ(k) = ‖A_kᵀ B_k‖²_F / k for k = 1..K: A_k the top-k right singular vectors, B_k the top-k eigenvectors of
    /// (J + Jᵀ)/2 ordered by |eigenvalue|.
    pub overlap: Vec<f64>,
    /// #{i : 1/sᵢ > c · std(t)²} over all D singular values.
    pub local_dimension_threshold: usize,
    /// D − (i* + 1), i* the position of the largest gap log sᵢ − log sᵢ₊₁ among the K kept values.
    pub local_dimension_gap: usize,
    /// ‖J − Jᵀ‖_F / ‖J + Jᵀ‖_F.
    pub nonconservativeness: f64,
    /// Eigenvalues of (J + Jᵀ)/2, ordered by |eigenvalue| descending, K of them.
    pub symmetric_eigenvalues: Vec<f64>,
    /// [K, D] left and right singular vectors, with `vectors`.
    pub left: Option<Vec<f64>>,
    pub right: Option<Vec<f64>>,
}

/// The spectrum of a D×D Jacobian (row-major, row i = ∂s_i/∂x) at noise level `std` (= std(t)).
pub fn dense_spectrum(jacobian: &[f32], d: usize, std: f64, settings: SpectrumSettings) -> Result<PointSpectrum> {
    let k = settings.k.min(d).max(1);
    let j = Mat::<f64>::from_fn(d, d, |r, c| jacobian[r * d + c] as f64);
    let svd = j.svd().map_err(|e| Error::Device(format!("SVD did not converge: {e:?}")))?;
    let (u, v, s) = (svd.U(), svd.V(), svd.S().column_vector());
    let all: Vec<f64> = (0..d).map(|i| s[i]).collect();
    let s1 = all[0].max(f64::MIN_POSITIVE);

    let residuals = (0..k)
        .map(|i| {
            let norm2: f64 = (0..d)
                .map(|r| {
                    let jv: f64 = (0..d).map(|c| j[(r, c)] * v[(c, i)]).sum();
                    (jv - all[i] * u[(r, i)]).powi(2)
                })
                .sum();
            norm2.sqrt() / s1
        })
        .collect();
    let transpose_residuals = (0..k)
        .map(|i| {
            let norm2: f64 = (0..d)
                .map(|r| {
                    let jtu: f64 = (0..d).map(|c| j[(c, r)] * u[(c, i)]).sum();
                    (jtu - all[i] * v[(r, i)]).powi(2)
                })
                .sum();
            norm2.sqrt() / s1
        })
        .collect();
    let alignment = (0..k).map(|i| (0..d).map(|r| u[(r, i)] * v[(r, i)]).sum()).collect();

    let variance = std * std;
    let local_dimension_threshold =
        all.iter().filter(|&&si| si > 0.0 && 1.0 / si > settings.threshold_c * variance).count()
            + all.iter().filter(|&&si| si == 0.0).count();
    let local_dimension_gap = gap_rule(&all[..k], d);

    let (mut antisymmetric, mut symmetric) = (0.0, 0.0);
    for r in 0..d {
        for c in 0..d {
            antisymmetric += (j[(r, c)] - j[(c, r)]).powi(2);
            symmetric += (j[(r, c)] + j[(c, r)]).powi(2);
        }
    }
    let nonconservativeness = if symmetric > 0.0 { (antisymmetric / symmetric).sqrt() } else { 0.0 };

    let sym = Mat::<f64>::from_fn(d, d, |r, c| 0.5 * (j[(r, c)] + j[(c, r)]));
    let eigen = sym.self_adjoint_eigen(Side::Lower).map_err(|e| Error::Device(format!("eigensolver: {e:?}")))?;
    let (e_vectors, e_values) = (eigen.U(), eigen.S().column_vector());
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| e_values[b].abs().total_cmp(&e_values[a].abs()));
    let overlap = overlap_curve(k, |a, b| (0..d).map(|r| v[(r, a)] * e_vectors[(r, order[b])]).sum());
    let vectors =
        |mat: faer::MatRef<'_, f64>| -> Vec<f64> { (0..k).flat_map(|i| (0..d).map(move |r| mat[(r, i)])).collect() };
    Ok(PointSpectrum {
        singular_values: all[..k].to_vec(),
        residuals,
        transpose_residuals,
        converged: true,
        products: d,
        alignment,
        overlap,
        local_dimension_threshold,
        local_dimension_gap,
        nonconservativeness,
        symmetric_eigenvalues: order[..k].iter().map(|&i| e_values[i]).collect(),
        left: settings.vectors.then(|| vectors(u)),
        right: settings.vectors.then(|| vectors(v)),
    })
}

/// The global rows (first_row + index) of the spectra that stopped short of their tolerance, and a warning that
/// names them (None when every row converged).
pub fn unconverged_warning(converged: &[bool], first_row: usize, method: &str) -> Option<String> {
    let rows: Vec<String> =
        converged.iter().enumerate().filter(|(_, &c)| !c).map(|(r, _)| (first_row + r).to_string()).collect();
    (!rows.is_empty()).then(|| {
        format!(
            "warning: {method}: {} row(s) stopped at the iteration cap short of the tolerance (converged: false): \
             rows {}; raise max_iter or loosen tol",
            rows.len(),
            rows.join(", ")
        )
    })
}

/// The gap rule: D − (i* + 1), i* the position of the largest gap log sᵢ − log sᵢ₊₁ among `kept` (descending).
pub fn gap_rule(kept: &[f64], d: usize) -> usize {
    let gap = (0..kept.len().saturating_sub(1))
        .map(|i| (i, kept[i].max(f64::MIN_POSITIVE).ln() - kept[i + 1].max(f64::MIN_POSITIVE).ln()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(i, _)| i + 1);
    d - gap.min(d)
}

/// ρ(k) = ‖A_kᵀ B_k‖²_F / k for k = 1..K, from M = AᵀB given entrywise by `m(i, j)` (A the right singular vectors,
/// B the symmetric part's eigenvectors by |eigenvalue|): the leading k×k block of M, accumulated.
pub fn overlap_curve(k: usize, m: impl Fn(usize, usize) -> f64) -> Vec<f64> {
    let m = Mat::<f64>::from_fn(k, k, m);
    let mut running = 0.0;
    (1..=k)
        .map(|size| {
            let last = size - 1;
            running += (0..size).map(|i| m[(i, last)].powi(2)).sum::<f64>()
                + (0..last).map(|j| m[(last, j)].powi(2)).sum::<f64>();
            running / size as f64
        })
        .collect()
}
