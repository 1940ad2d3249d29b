//! `arch = mlp` as a graph: h0 = [x, e(t)], h(l+1) = act(W_l h(l) + b_l), out = W_L h(L) + b_L.
//!
//! The first layer is split by columns, W_0 h0 = W_0[:, :D] x + W_0[:, D:] e(t), so no concatenation is run and
//! the tangent and adjoint programs multiply by the D columns that x reaches only.

use crate::error::Result;
use crate::graph::builtin::{output_sign, Builder};
use crate::graph::ScoreNetwork;
use crate::model::MlpModel;

pub fn network(model: &MlpModel) -> Result<ScoreNetwork> {
    let (d, e) = (model.dim, model.embed_dim());
    let mut b = Builder::new(vec![d], e);
    let last = model.layers.len() - 1;
    let mut h = b.x;
    for (l, layer) in model.layers.iter().enumerate() {
        let name = format!("layers.{l}");
        let sign = if l == last { output_sign(model.output_scale) } else { 1.0 };
        let z = if l == 0 {
            let (x_columns, e_columns) = split_columns(&layer.weight, layer.inputs, d);
            let from_x = b.product(&format!("{name}.x"), b.x, &x_columns, layer.outputs, sign);
            if e == 0 {
                b.add_const(&name, from_x, &layer.bias, sign)
            } else {
                let from_e = b.product(&format!("{name}.e"), b.features, &e_columns, layer.outputs, sign);
                let time_term = b.add_const(&format!("{name}.e"), from_e, &layer.bias, sign);
                b.add(&name, from_x, time_term)
            }
        } else {
            b.linear(&name, h, &layer.weight, &layer.bias, sign)
        };
        h = if l == last { z } else { b.activation(&format!("{name}.act"), z, model.act) };
    }
    b.finish("mlp", h, &model.embed_w, model.schedule, model.output_scale, model.parameter_count())
}

/// The first `d` columns of a row-major [rows, columns] matrix, and the rest.
fn split_columns(weight: &[f32], columns: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut left, mut right) = (Vec::new(), Vec::new());
    for row in weight.chunks(columns) {
        left.extend_from_slice(&row[..d]);
        right.extend_from_slice(&row[d..]);
    }
    (left, right)
}
