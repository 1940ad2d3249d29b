//! The built-in architectures of safetensors model files (`mlp`, `song-unet`; model-format.md) as graph
//! builders: the host model's weights become constants of a [`Graph`] of the same primitives ONNX imports lower
//! to, so they run on the one executor with its forward, tangent and adjoint programs.
//!
//! Their time path starts from the Gaussian Fourier features e(t) = [sin(2π W t), cos(2π W t)], which the host
//! computes in f64 per row ([`ScoreNetwork::time_features`]); `output_scale = inv_std` (s = out / std(t)) is the
//! ε-parameterisation of the negated output layer (s = −ε / std with ε = −out), negation being exact in f32.

pub mod mlp;
pub mod unet;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::activation::Activation;
use crate::error::Result;
use crate::graph::ir::{Graph, MatMul, MatrixLayout, Op, Stream, ValueId};
use crate::graph::{Parameterization, ScoreNetwork, TimeInput};
use crate::model::{NoiseSchedule, OutputScale, ScoreModel};
use crate::ops::graph::{BinaryOp, UnaryFn};

/// The graph of a model file: built for the built-in architectures, as loaded for ONNX networks.
pub fn network(model: &ScoreModel) -> Result<std::sync::Arc<ScoreNetwork>> {
    match model {
        ScoreModel::Mlp(m) => Ok(std::sync::Arc::new(mlp::network(m)?)),
        ScoreModel::Unet(m) => Ok(std::sync::Arc::new(unet::network(m)?)),
        ScoreModel::Graph(n) => Ok(n.clone()),
    }
}

/// A graph under construction: x and the Fourier features as inputs.
pub(crate) struct Builder {
    pub graph: Graph,
    pub x: ValueId,
    pub features: ValueId,
}

impl Builder {
    pub fn new(row_shape: Vec<usize>, embed_dim: usize) -> Self {
        let mut graph = Graph::default();
        let x = graph.add_value("x", row_shape, Stream::Primal);
        // Without frequencies the time input is t itself, unused.
        let time_shape = if embed_dim == 0 { vec![] } else { vec![embed_dim] };
        let features = graph.add_value("e(t)", time_shape, Stream::Primal);
        graph.inputs = vec![x, features];
        Builder { graph, x, features }
    }

    fn shape(&self, id: ValueId) -> Vec<usize> {
        self.graph.values[id].shape.clone()
    }

    /// W · v for a vector row v [inputs] and W [outputs, inputs] row-major (`nn.Linear`'s layout), times `sign`.
    pub fn product(&mut self, name: &str, v: ValueId, weight: &[f32], outputs: usize, sign: f32) -> ValueId {
        let inputs = self.graph.values[v].numel();
        debug_assert_eq!(weight.len(), outputs * inputs);
        let w = self.graph.add_const(format!("{name}.weight"), vec![outputs, inputs], signed(weight, sign));
        let spec = MatMul {
            m: 1,
            n: outputs,
            k: inputs,
            lead: 1,
            a: MatrixLayout { lead_stride: 0, transposed: false },
            b: MatrixLayout { lead_stride: 0, transposed: true },
        };
        self.graph.add_node(name, Op::MatMul(spec), vec![v, w], vec![outputs])
    }

    /// v + c for a constant c broadcast along v's trailing axes (a per-channel bias of shape [C, 1, 1]).
    pub fn add_const(&mut self, name: &str, v: ValueId, c: &[f32], sign: f32) -> ValueId {
        let shape = self.shape(v);
        let c_shape: Vec<usize> = std::iter::once(c.len()).chain(std::iter::repeat_n(1, shape.len() - 1)).collect();
        let c = self.graph.add_const(format!("{name}.bias"), c_shape, signed(c, sign));
        self.graph.add_node(name, Op::Binary(BinaryOp::Add), vec![v, c], shape)
    }

    /// v ∘ c for a per-channel constant c (shape [C, 1, 1] against v [C, H, W]).
    pub fn mul_const(&mut self, name: &str, v: ValueId, c: &[f32]) -> ValueId {
        let shape = self.shape(v);
        let c_shape: Vec<usize> = std::iter::once(c.len()).chain(std::iter::repeat_n(1, shape.len() - 1)).collect();
        let c = self.graph.add_const(format!("{name}.weight"), c_shape, c.to_vec());
        self.graph.add_node(name, Op::Binary(BinaryOp::Mul), vec![v, c], shape)
    }

    /// a + b, b broadcast (of a's rank).
    pub fn add(&mut self, name: &str, a: ValueId, b: ValueId) -> ValueId {
        let shape = self.shape(a);
        self.graph.add_node(name, Op::Binary(BinaryOp::Add), vec![a, b], shape)
    }

    pub fn reshape(&mut self, name: &str, v: ValueId, shape: Vec<usize>) -> ValueId {
        self.graph.add_node(name, Op::Reshape, vec![v], shape)
    }

    /// `nn.Linear`: W v + b.
    pub fn linear(&mut self, name: &str, v: ValueId, weight: &[f32], bias: &[f32], sign: f32) -> ValueId {
        let p = self.product(name, v, weight, bias.len(), sign);
        self.add_const(name, p, bias, sign)
    }

    /// act(v); SiLU as v · sigmoid(v), as exporters write it (its units are the sigmoid's inputs).
    pub fn activation(&mut self, name: &str, v: ValueId, act: Activation) -> ValueId {
        let shape = self.shape(v);
        let f = match act {
            Activation::Identity => return v,
            Activation::Relu => UnaryFn::Relu,
            Activation::Gelu => UnaryFn::Gelu,
            Activation::Tanh => UnaryFn::Tanh,
            Activation::Silu => {
                let s = self.graph.add_node(
                    name,
                    Op::Unary { f: UnaryFn::Sigmoid, derivative: false },
                    vec![v],
                    shape.clone(),
                );
                return self.graph.add_node(name, Op::Binary(BinaryOp::Mul), vec![v, s], shape);
            }
        };
        self.graph.add_node(name, Op::Unary { f, derivative: false }, vec![v], shape)
    }

    /// The score network of the finished graph (output `out`), with the file's schedule and output scale.
    pub fn finish(
        mut self,
        source: &'static str,
        out: ValueId,
        frequencies: &[f32],
        schedule: NoiseSchedule,
        output_scale: OutputScale,
        parameters: usize,
    ) -> Result<ScoreNetwork> {
        self.graph.output = out;
        let parameterization = match output_scale {
            OutputScale::InvStd => Parameterization::Epsilon,
            OutputScale::None => Parameterization::Score,
        };
        let mut net = ScoreNetwork::from_graph(
            PathBuf::from(source),
            source,
            self.graph,
            schedule,
            parameterization,
            TimeInput::T,
            HashMap::new(),
        )?;
        net.time_features = (!frequencies.is_empty()).then(|| frequencies.to_vec());
        // The frequencies W live on the host: count them as the file does.
        net.parameters = parameters;
        Ok(net)
    }
}

/// The sign of the output layer: −1 where `inv_std` is read as ε = −out (see the module comment).
pub(crate) fn output_sign(scale: OutputScale) -> f32 {
    match scale {
        OutputScale::InvStd => -1.0,
        OutputScale::None => 1.0,
    }
}

fn signed(values: &[f32], sign: f32) -> Vec<f32> {
    if sign == 1.0 {
        values.to_vec()
    } else {
        values.iter().map(|&v| sign * v).collect()
    }
}
