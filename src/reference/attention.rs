//! f64 twins of the fused attention kernels (crate::ops::attention), written the unfused way: the scores S, the
//! probabilities P (max-subtracted softmax) and, for the tangent, dS and dP as whole matrices per head.

use crate::ops::attention::AttentionShape;
use crate::ops::graph::{MatrixMap, RowMap};

/// Element (a, b) of the [rows_a, cols_b] matrix of output row r and head l of an operand.
fn at(
    x: &[f64],
    m: MatrixMap,
    (r, l): (usize, usize),
    (a, b): (usize, usize),
    (rows_a, cols_b): (usize, usize),
) -> f64 {
    let base = (r / m.rows.rep as usize) * m.rows.stride as usize + l * m.lead_stride as usize;
    x[base + if m.transposed { b * rows_a + a } else { a * cols_b + b }]
}

/// S = scale · Q · K of row r, head l, [lq, lk].
fn scores(s: &AttentionShape, q: (&[f64], MatrixMap), k: (&[f64], MatrixMap), r: usize, l: usize) -> Vec<f64> {
    let mut out = vec![0.0; s.lq * s.lk];
    for i in 0..s.lq {
        for j in 0..s.lk {
            let dot: f64 = (0..s.dk)
                .map(|c| at(q.0, q.1, (r, l), (i, c), (s.lq, s.dk)) * at(k.0, k.1, (r, l), (c, j), (s.dk, s.lk)))
                .sum();
            out[i * s.lk + j] = s.scale * dot;
        }
    }
    out
}

/// out = softmax(scale · Q·K) · V per row and head, [rows, lead, lq, dv].
pub fn record_attention(
    s: &AttentionShape,
    q: (&[f64], MatrixMap),
    k: (&[f64], MatrixMap),
    v: (&[f64], MatrixMap),
    out: &mut [f64],
) {
    for r in 0..s.rows {
        for l in 0..s.lead {
            let mut p = scores(s, q, k, r, l);
            for row in p.chunks_mut(s.lk.max(1)) {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                row.iter_mut().for_each(|x| *x = (*x - max).exp());
                let sum: f64 = row.iter().sum();
                row.iter_mut().for_each(|x| *x /= sum);
            }
            let base = (r * s.lead + l) * s.lq * s.dv;
            for i in 0..s.lq {
                for c in 0..s.dv {
                    out[base + i * s.dv + c] =
                        (0..s.lk).map(|j| p[i * s.lk + j] * at(v.0, v.1, (r, l), (j, c), (s.lk, s.dv))).sum();
                }
            }
        }
    }
}

/// The tangent of an attention at probabilities `p` ([lead, lq, lk] per point row): out = dP · V + P · dV with
/// dP = P ⊙ (dS − rowsum(P ⊙ dS)), dS = scale · (dQ · K + Q · dK); `tangents` are dq, dk, dv (absent: zero).
#[allow(clippy::too_many_arguments)]
pub fn record_attention_tangent(
    s: &AttentionShape,
    q: (&[f64], MatrixMap),
    k: (&[f64], MatrixMap),
    v: (&[f64], MatrixMap),
    p: (&[f64], RowMap),
    tangents: [Option<(&[f64], MatrixMap)>; 3],
    out: &mut [f64],
) {
    let [dq, dk, dv] = tangents;
    for r in 0..s.rows {
        for l in 0..s.lead {
            let mut ds = vec![0.0; s.lq * s.lk];
            if let Some(dq) = dq {
                for (a, b) in ds.iter_mut().zip(scores(s, dq, k, r, l)) {
                    *a += b;
                }
            }
            if let Some(dk) = dk {
                for (a, b) in ds.iter_mut().zip(scores(s, q, dk, r, l)) {
                    *a += b;
                }
            }
            let pb = (r / p.1.rep as usize) * p.1.stride as usize + l * s.lq * s.lk;
            let prob = &p.0[pb..pb + s.lq * s.lk];
            let mut dp = vec![0.0; s.lq * s.lk];
            for i in 0..s.lq {
                let row = i * s.lk..(i + 1) * s.lk;
                let dot: f64 = prob[row.clone()].iter().zip(&ds[row.clone()]).map(|(a, b)| a * b).sum();
                for j in row {
                    dp[j] = prob[j] * (ds[j] - dot);
                }
            }
            let base = (r * s.lead + l) * s.lq * s.dv;
            for i in 0..s.lq {
                for c in 0..s.dv {
                    let mut sum = 0.0;
                    for j in 0..s.lk {
                        sum += dp[i * s.lk + j] * at(v.0, v.1, (r, l), (j, c), (s.lk, s.dv));
                        if let Some(dv) = dv {
                            sum += prob[i * s.lk + j] * at(dv.0, dv.1, (r, l), (j, c), (s.lk, s.dv));
                        }
                    }
                    out[base + i * s.dv + c] = sum;
                }
            }
        }
    }
}

/// The cotangent of an attention's scores from the cotangent `ct` of its output ([rows, lead, lq, dv]
/// contiguous), [rows, lead, lq, lk]: written as the adjoint program computes it unfused, dP̄ = Ō · Vᵀ, then the
/// softmax's (self-adjoint) linearisation P ⊙ (dP̄ − rowsum(P ⊙ dP̄)), then the scale.
pub fn record_attention_score_adjoint(
    s: &AttentionShape,
    v: (&[f64], MatrixMap),
    p: (&[f64], RowMap),
    ct: &[f64],
    out: &mut [f64],
) {
    for r in 0..s.rows {
        for l in 0..s.lead {
            let pb = (r / p.1.rep as usize) * p.1.stride as usize + l * s.lq * s.lk;
            let cb = (r * s.lead + l) * s.lq * s.dv;
            let ob = (r * s.lead + l) * s.lq * s.lk;
            for i in 0..s.lq {
                let dp: Vec<f64> = (0..s.lk)
                    .map(|j| {
                        (0..s.dv).map(|c| ct[cb + i * s.dv + c] * at(v.0, v.1, (r, l), (j, c), (s.lk, s.dv))).sum()
                    })
                    .collect();
                let prob = &p.0[pb + i * s.lk..pb + (i + 1) * s.lk];
                let dot: f64 = prob.iter().zip(&dp).map(|(a, b)| a * b).sum();
                for j in 0..s.lk {
                    out[ob + i * s.lk + j] = s.scale * prob[j] * (dp[j] - dot);
                }
            }
        }
    }
}
