//! f64 twin of shaders/matmul_tiled.wgsl and shaders/matmul_small.wgsl.

use crate::activation::Activation;
use crate::ops::MatmulShape;

/// C[z](m, n) = act(Σ_k A[z](m, k) B[z](k, n) + bias[n]) · row_scale[m], with the layout of `shape`.
/// Entries of `c` that the layout does not reach are left as they are.
pub fn matmul(
    shape: &MatmulShape,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    row_scale: Option<&[f32]>,
    c: &mut [f64],
) {
    let s = shape;
    for z in 0..s.batch as usize {
        for m in 0..s.m as usize {
            for n in 0..s.n as usize {
                let mut acc = 0.0f64;
                for k in 0..s.k as usize {
                    let ia = s.offset_a as usize + z * s.stride_a as usize
                        + if s.trans_a { k * s.lda as usize + m } else { m * s.lda as usize + k };
                    let ib = s.offset_b as usize + z * s.stride_b as usize
                        + if s.trans_b { n * s.ldb as usize + k } else { k * s.ldb as usize + n };
                    acc += a[ia] as f64 * b[ib] as f64;
                }
                if let Some(bias) = bias {
                    acc += bias[n] as f64;
                }
                let scale = row_scale.map_or(1.0, |r| r[m] as f64);
                c[s.offset_c as usize + z * s.stride_c as usize + m * s.ldc as usize + n] = act.apply_f64(acc) * scale;
            }
        }
    }
}
