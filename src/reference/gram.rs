//! f64 twin of shaders/block_gram.wgsl: the Gram matrices between two blocks of rows of every point.

/// G[p, i, j] = Σ_r a[a_offset + p·a_stride + i·d + r] · c[c_offset + p·c_stride + j·d + r] for i < rows_a and
/// j < rows_c (only j = i when `diagonal`), as [points, rows_a, cols] row-major.
#[allow(clippy::too_many_arguments)]
pub fn block_gram(
    a: &[f32],
    (rows_a, a_stride, a_offset): (usize, usize, usize),
    c: &[f32],
    (rows_c, c_stride, c_offset): (usize, usize, usize),
    points: usize,
    d: usize,
    diagonal: bool,
) -> Vec<f64> {
    let cols = if diagonal { 1 } else { rows_c };
    let mut out = vec![0.0; points * rows_a * cols];
    for p in 0..points {
        for i in 0..rows_a {
            for col in 0..cols {
                let j = if diagonal { i } else { col };
                let row_a = a_offset + p * a_stride + i * d;
                let row_c = c_offset + p * c_stride + j * d;
                out[(p * rows_a + i) * cols + col] = (0..d).map(|r| a[row_a + r] as f64 * c[row_c + r] as f64).sum();
            }
        }
    }
    out
}
