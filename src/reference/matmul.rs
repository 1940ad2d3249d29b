//! f64 twin of the matmul kernels (shaders/matmul_tiled.wgsl, matmul_tiled_128.wgsl, matmul_small.wgsl).

use crate::activation::Activation;
use crate::ops::MatmulShape;

/// The fused prologue and epilogue as host slices (see `ops::matmul::Epilogue`).
#[derive(Clone, Copy)]
pub struct EpilogueRef<'a> {
    pub act_a: Activation,
    pub bias: Option<&'a [f32]>,
    pub act: Activation,
    pub deriv: Option<(Activation, &'a [f32])>,
    /// Laid out as the factor's pre-activations, added before the activation (see ops::matmul::Epilogue).
    pub addend: Option<&'a [f32]>,
    pub row_scale: Option<&'a [f32]>,
    pub store_group_transposed: bool,
}

impl EpilogueRef<'_> {
    pub const NONE: EpilogueRef<'static> = EpilogueRef {
        act_a: Activation::Identity,
        bias: None,
        act: Activation::Identity,
        deriv: None,
        addend: None,
        row_scale: None,
        store_group_transposed: false,
    };
}

/// C[z](m, n) = act(Σ_k act_a(A[z](m, k)) B[z](k, n) + bias[n] [+ addend[g, n]]) · act'(pre[g, n]) · row_scale[g],
/// g = m / group_rows, with the layout of `shape`. Entries of `c` that the layout does not reach are left as they are.
pub fn matmul(shape: &MatmulShape, a: &[f32], b: &[f32], e: EpilogueRef, c: &mut [f64]) {
    let s = shape;
    let g_rows = s.group_rows.max(1) as usize;
    for z in 0..s.batch as usize {
        for m in 0..s.m as usize {
            let g = m / g_rows;
            for n in 0..s.n as usize {
                let mut acc = 0.0f64;
                for k in 0..s.k as usize {
                    let ia = s.offset_a as usize
                        + z * s.stride_a as usize
                        + if s.trans_a { k * s.lda as usize + m } else { m * s.lda as usize + k };
                    let ib = s.offset_b as usize
                        + z * s.stride_b as usize
                        + if s.trans_b { n * s.ldb as usize + k } else { k * s.ldb as usize + n };
                    acc += e.act_a.apply_f64(a[ia] as f64) * b[ib] as f64;
                }
                if let Some(bias) = e.bias {
                    acc += bias[n] as f64;
                }
                if let Some(addend) = e.addend {
                    acc += addend[s.offset_pre as usize + g * s.ld_pre as usize + n] as f64;
                }
                let mut v = e.act.apply_f64(acc);
                if let Some((act, pre)) = e.deriv {
                    v *= act.derivative_f64(pre[s.offset_pre as usize + g * s.ld_pre as usize + n] as f64);
                }
                if let Some(scale) = e.row_scale {
                    v *= scale[g] as f64;
                }
                let base = s.offset_c as usize + z * s.stride_c as usize;
                let index = if e.store_group_transposed {
                    base + g * g_rows * s.ldc as usize + n * g_rows + (m - g * g_rows)
                } else {
                    base + m * s.ldc as usize + n
                };
                c[index] = v;
            }
        }
    }
}
