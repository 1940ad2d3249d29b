//! `arch = song-unet` as a graph (model-format.md): e = silu(embed.1(e(t))); encoder blocks
//! silu(GN(conv(h) + dense(e))); decoder blocks on [h, skip] channel concatenations; the last transposed
//! convolution with its bias and no norm. Activations are NCHW rows, the weights in PyTorch's own layouts.

use std::sync::Arc;

use crate::error::Result;
use crate::graph::builtin::{output_sign, Builder};
use crate::graph::ir::{Op, ValueId};
use crate::graph::ScoreNetwork;
use crate::model::unet::{UnetModel, GN_EPS, KERNEL, SKIP_OF};
use crate::ops::graph::Conv2d;
use crate::reference::graph_ops::SparseMap;
use crate::Activation;

pub fn network(model: &UnetModel) -> Result<ScoreNetwork> {
    let mut b = Builder::new(vec![1, model.height, model.width], model.embed_dim());
    let dense = &model.embed_dense;
    let embedding = b.linear("embed.1", b.features, &dense.weight, &dense.bias, 1.0);
    let embedding = b.activation("embed.act", embedding, Activation::Silu);
    let sizes = model.block_sizes();
    let last = model.blocks.len() - 1;
    let mut outputs: Vec<ValueId> = Vec::new();
    let mut h = b.x;
    for (i, block) in model.blocks.iter().enumerate() {
        let name = block.name;
        let input = match SKIP_OF[i] {
            Some(s) => concat_channels(&mut b, name, h, outputs[s]),
            None => h,
        };
        let c = &block.conv;
        let ((h_in, w_in), (h_out, w_out)) = sizes[i];
        let spec = Conv2d {
            rows: 0,
            c_in: c.inputs,
            h_in,
            w_in,
            c_out: c.outputs,
            h_out,
            w_out,
            kernel: [KERNEL, KERNEL],
            stride: [c.stride, c.stride],
            pad: [0, 0],
            dilation: [1, 1],
            groups: 1,
            transposed: c.transposed,
        };
        let sign = if i == last { output_sign(model.output_scale) } else { 1.0 };
        let weight_shape = if c.transposed {
            vec![c.inputs, c.outputs, KERNEL, KERNEL]
        } else {
            vec![c.outputs, c.inputs, KERNEL, KERNEL]
        };
        let weight =
            b.graph.add_const(format!("{name}.weight"), weight_shape, c.weight.iter().map(|&w| sign * w).collect());
        let mut z = b.graph.add_node(name, Op::Conv(spec), vec![input, weight], vec![c.outputs, h_out, w_out]);
        if let Some(bias) = &c.bias {
            z = b.add_const(name, z, bias, sign);
        }
        if let Some(d) = &block.dense {
            let dense_name = format!("{name}.dense");
            let per_channel = b.linear(&dense_name, embedding, &d.weight, &d.bias, 1.0);
            let per_channel = b.reshape(&dense_name, per_channel, vec![c.outputs, 1, 1]);
            z = b.add(&dense_name, z, per_channel);
        }
        if let Some(norm) = &block.norm {
            let norm_name = format!("{name}.norm");
            let size = c.outputs / norm.groups * h_out * w_out;
            let shape = vec![c.outputs, h_out, w_out];
            z = b.graph.add_node(&norm_name, Op::Norm { size, eps: GN_EPS as f32 }, vec![z], shape);
            z = b.mul_const(&norm_name, z, &norm.weight);
            z = b.add_const(&norm_name, z, &norm.bias, 1.0);
            z = b.activation(&format!("{name}.act"), z, Activation::Silu);
        }
        outputs.push(z);
        h = z;
    }
    b.finish("song-unet", h, &model.embed_w, model.schedule, model.output_scale, model.parameter_count())
}

/// [a, b] along the channel axis of NCHW rows: each part's elements at its offset.
fn concat_channels(b: &mut Builder, name: &str, first: ValueId, second: ValueId) -> ValueId {
    let (sa, sb) = (b.graph.values[first].shape.clone(), b.graph.values[second].shape.clone());
    let (na, nb) = (b.graph.values[first].numel(), b.graph.values[second].numel());
    let place = |offset: usize, n: usize| {
        Arc::new(SparseMap::from_triples(na + nb, n, (0..n).map(|i| (offset + i, i, 1.0)).collect()))
    };
    let shape = vec![sa[0] + sb[0], sa[1], sa[2]];
    b.graph.add_node(
        &format!("{name}.concat"),
        Op::Linear(vec![place(0, na), place(na, nb)]),
        vec![first, second],
        shape,
    )
}
