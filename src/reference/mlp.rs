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
