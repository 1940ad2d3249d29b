//! Batched thin QR of row blocks in f64 (faer's Householder QR), with R's diagonal made positive.

use faer::Mat;

/// For each of `points` blocks of `p` rows of length `d` (row-major [points, p, d]), the orthonormal rows Q
/// ([points, p, d]) and the upper-triangular R ([points, p, p], row-major) with blockᵀ = Qᵀ R and R_ii ≥ 0.
pub fn qr_rows(blocks: &[f64], points: usize, p: usize, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut q_out = Vec::with_capacity(points * p * d);
    let mut r_out = vec![0.0; points * p * p];
    for b in 0..points {
        let m = Mat::<f64>::from_fn(d, p, |row, col| blocks[(b * p + col) * d + row]);
        let qr = m.qr();
        let (q, r) = (qr.compute_thin_Q(), qr.thin_R());
        for col in 0..p {
            let sign = if r[(col, col)] < 0.0 { -1.0 } else { 1.0 };
            q_out.extend((0..d).map(|row| sign * q[(row, col)]));
            for j in col..p {
                r_out[b * p * p + col * p + j] = sign * r[(col, j)];
            }
        }
    }
    (q_out, r_out)
}
