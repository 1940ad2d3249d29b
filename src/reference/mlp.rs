//! f64 reference of the MLP score forward (model-format.md, arch = mlp), from the f32 weights and inputs.

use crate::model::MlpModel;

/// s(x, t) for every row of x ([rows, D]); `t` has one entry per row or one for all rows.
pub fn mlp_score(model: &MlpModel, x: &[f32], t: &[f32]) -> Vec<f64> {
    let d = model.dim;
    let rows = x.len() / d;
    let mut out = Vec::with_capacity(rows * d);
    for r in 0..rows {
        let tr = if t.len() == 1 { t[0] } else { t[r] };
        let mut h: Vec<f64> = x[r * d..(r + 1) * d].iter().map(|&v| v as f64).collect();
        h.extend(model.fourier_features(tr));
        let last = model.layers.len() - 1;
        for (l, layer) in model.layers.iter().enumerate() {
            let mut next = vec![0.0f64; layer.outputs];
            for o in 0..layer.outputs {
                let w = &layer.weight[o * layer.inputs..(o + 1) * layer.inputs];
                let mut acc = layer.bias[o] as f64;
                for i in 0..layer.inputs {
                    acc += w[i] as f64 * h[i];
                }
                next[o] = if l == last { acc } else { model.act.apply_f64(acc) };
            }
            h = next;
        }
        let factor = model.output_factor(tr);
        out.extend(h.iter().map(|v| v * factor));
    }
    out
}

/// The Jacobian ∂s/∂x of every row in f64, [rows, D, D] with row i = ∂s_i/∂x: c(t) W_L D_{L−1} W_{L−1} … D_0 W_0[:, :D]
/// with D_l = diag(act'(a_l)), propagated column block by column block.
pub fn mlp_jacobian(model: &MlpModel, x: &[f32], t: &[f32]) -> Vec<f64> {
    let d = model.dim;
    let rows = x.len() / d;
    let mut out = Vec::with_capacity(rows * d * d);
    for r in 0..rows {
        let tr = if t.len() == 1 { t[0] } else { t[r] };
        let mut h: Vec<f64> = x[r * d..(r + 1) * d].iter().map(|&v| v as f64).collect();
        h.extend(model.fourier_features(tr));
        // tangent[i][j] = ∂h_i/∂x_j
        let mut tangent: Vec<Vec<f64>> =
            (0..h.len()).map(|i| (0..d).map(|j| if i == j { 1.0 } else { 0.0 }).collect()).collect();
        let last = model.layers.len() - 1;
        for (l, layer) in model.layers.iter().enumerate() {
            let mut next_h = vec![0.0; layer.outputs];
            let mut next_t = vec![vec![0.0; d]; layer.outputs];
            for o in 0..layer.outputs {
                let w = &layer.weight[o * layer.inputs..(o + 1) * layer.inputs];
                let mut a = layer.bias[o] as f64;
                let mut da = vec![0.0; d];
                for i in 0..layer.inputs {
                    a += w[i] as f64 * h[i];
                    for j in 0..d {
                        da[j] += w[i] as f64 * tangent[i][j];
                    }
                }
                let (value, slope) =
                    if l == last { (a, 1.0) } else { (model.act.apply_f64(a), model.act.derivative_f64(a)) };
                next_h[o] = value;
                next_t[o] = da.iter().map(|v| v * slope).collect();
            }
            h = next_h;
            tangent = next_t;
        }
        let factor = model.output_factor(tr);
        for row in tangent {
            out.extend(row.iter().map(|v| v * factor));
        }
    }
    out
}
