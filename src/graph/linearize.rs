//! Forward and reverse mode by graph transformation (the way JAX does it): the tangent program is built from
//! one rule per primitive, in the same primitives, and the adjoint program by transposing the tangent program,
//! which is linear in its tangent values. Only the linear primitives need transpose rules (multiplication by a
//! primal factor, sums, sparse maps ↔ their transposes, MatMul ↔ MatMul with the other operand transposed,
//! Conv ↔ ConvTranspose with the same weight); the normalisation's and the softmax's linearisations are
//! self-adjoint. Derivative factors (f′(a), 1/b, …) are primal values computed with the forward pass.
//!
//! Conventions that keep the transpose rules simple: a tangent operand of a binary op always has the op's output
//! shape (broadcasts of tangents are made explicit as sparse maps, whose transposes sum), and tangent operands of
//! a product are never stored transposed.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::ir::{Graph, MatMul, MatrixLayout, NodeId, Op, Stream, ValueId};
use crate::ops::graph::{BinaryOp, UnaryFn};
use crate::reference::graph_ops::SparseMap;

/// A graph with its forward, tangent and adjoint programs.
#[derive(Debug, Clone)]
pub struct Linearized {
    pub graph: Graph,
    /// The network's own nodes (the score alone).
    pub primal: Vec<NodeId>,
    /// The derivative factors, run after `primal` when products follow.
    pub residuals: Vec<NodeId>,
    /// dy = J · dx (tangent stream).
    pub jvp: Vec<NodeId>,
    /// x̄ = Jᵀ · ȳ (tangent stream).
    pub vjp: Vec<NodeId>,
    pub dx: ValueId,
    pub dy: ValueId,
    pub y_bar: ValueId,
    pub x_bar: ValueId,
}

/// Builds the tangent and adjoint programs of `graph` with respect to its first input.
pub fn linearize(mut graph: Graph) -> Result<Linearized> {
    // SiLU and GELU written out as several ops become one unary function each, so that their tangents are one
    // exact derivative factor (crate::graph::fuse).
    if crate::graph::fuse::enabled_from_env() {
        crate::graph::fuse::recognise_activations(&mut graph);
    }
    let primal: Vec<NodeId> = (0..graph.nodes.len()).collect();
    let x = graph.inputs[0];
    let x_shape = graph.values[x].shape.clone();
    let dx = graph.add_value("dx", x_shape.clone(), Stream::Tangent);

    // Forward mode: tangent of every value that depends on x.
    let mut tangent: HashMap<ValueId, ValueId> = HashMap::from([(x, dx)]);
    let mut residuals = Vec::new();
    let mut jvp = Vec::new();
    for n in primal.clone() {
        let node = graph.nodes[n].clone();
        if !node.inputs.iter().any(|i| tangent.contains_key(i)) {
            continue;
        }
        let mut b = Builder { graph: &mut graph, name: node.name.clone(), residuals: &mut residuals, jvp: &mut jvp };
        let d = b.tangent_rule(&node.op, &node.inputs, node.output, &tangent)?;
        tangent.insert(node.output, d);
    }
    let output = graph.output;
    let Some(&dy) = tangent.get(&output) else {
        return Err(Error::InvalidArgument("the network's output does not depend on its input x".into()));
    };

    // Reverse mode: transpose the tangent program.
    let y_bar = graph.add_value("y_bar", graph.values[dy].shape.clone(), Stream::Tangent);
    let mut cotangent: HashMap<ValueId, ValueId> = HashMap::from([(dy, y_bar)]);
    let mut vjp = Vec::new();
    for &n in jvp.iter().rev() {
        let node = graph.nodes[n].clone();
        let Some(&ct) = cotangent.get(&node.output) else { continue };
        let mut t = Transposer { graph: &mut graph, name: node.name.clone(), vjp: &mut vjp, cotangent: &mut cotangent };
        t.transpose_rule(&node.op, &node.inputs, ct)?;
    }
    let Some(&x_bar) = cotangent.get(&dx) else {
        return Err(Error::InvalidArgument("the network's output does not depend on its input x".into()));
    };
    Ok(Linearized { graph, primal, residuals, jvp, vjp, dx, dy, y_bar, x_bar })
}

struct Builder<'a> {
    graph: &'a mut Graph,
    name: String,
    residuals: &'a mut Vec<NodeId>,
    jvp: &'a mut Vec<NodeId>,
}

impl Builder<'_> {
    fn shape(&self, v: ValueId) -> Vec<usize> {
        self.graph.values[v].shape.clone()
    }

    /// A primal derivative factor.
    fn residual(&mut self, op: Op, inputs: Vec<ValueId>, shape: Vec<usize>) -> ValueId {
        let v = self.graph.add_node(&self.name, op, inputs, shape);
        self.residuals.push(self.graph.nodes.len() - 1);
        v
    }

    /// A node of the tangent program.
    fn tangent(&mut self, op: Op, inputs: Vec<ValueId>, shape: Vec<usize>) -> ValueId {
        let v = self.graph.add_node(&self.name, op, inputs, shape);
        self.jvp.push(self.graph.nodes.len() - 1);
        v
    }

    fn constant(&mut self, label: &str, values: Vec<f32>, shape: Vec<usize>) -> ValueId {
        self.graph.add_const(format!("{}/{label}", self.name), shape, values)
    }

    /// The tangent `d` broadcast to `shape` (a sparse map when the shapes differ).
    fn expand(&mut self, d: ValueId, shape: &[usize]) -> ValueId {
        let from = self.shape(d);
        if from == shape {
            return d;
        }
        let map = broadcast_map(&from, shape);
        self.tangent(Op::Linear(vec![Arc::new(map)]), vec![d], shape.to_vec())
    }

    fn scale(&mut self, d: ValueId, factor: ValueId, out_shape: &[usize]) -> ValueId {
        let d = self.expand(d, out_shape);
        self.tangent(Op::Binary(BinaryOp::Mul), vec![d, factor], out_shape.to_vec())
    }

    fn tangent_rule(
        &mut self,
        op: &Op,
        inputs: &[ValueId],
        output: ValueId,
        tangent: &HashMap<ValueId, ValueId>,
    ) -> Result<ValueId> {
        let out_shape = self.shape(output);
        let d = |i: usize| tangent.get(&inputs[i]).copied();
        Ok(match op {
            Op::Unary { f, derivative: false } => {
                let da = d(0).expect("active input");
                match f {
                    UnaryFn::Identity => da,
                    UnaryFn::Neg | UnaryFn::Scale(_) => {
                        self.tangent(Op::Unary { f: *f, derivative: false }, vec![da], out_shape)
                    }
                    _ => {
                        let factor =
                            self.residual(Op::Unary { f: *f, derivative: true }, vec![inputs[0]], out_shape.clone());
                        self.scale(da, factor, &out_shape)
                    }
                }
            }
            Op::Unary { derivative: true, .. } => {
                return Err(self.unsupported("a derivative factor that depends on x (second derivatives)"));
            }
            Op::Binary(bop) => {
                let (a, b) = (inputs[0], inputs[1]);
                let (da, db) = (d(0), d(1));
                match bop {
                    BinaryOp::Add | BinaryOp::Sub => {
                        let ta = da.map(|t| self.expand(t, &out_shape));
                        let tb = db.map(|t| self.expand(t, &out_shape));
                        match (ta, tb) {
                            (Some(ta), Some(tb)) => self.tangent(Op::Binary(*bop), vec![ta, tb], out_shape),
                            (Some(ta), None) => ta,
                            (None, Some(tb)) if *bop == BinaryOp::Add => tb,
                            (None, Some(tb)) => self.tangent(neg(), vec![tb], out_shape),
                            (None, None) => unreachable!(),
                        }
                    }
                    BinaryOp::Mul => {
                        let ta = da.map(|t| self.scale(t, b, &out_shape));
                        let tb = db.map(|t| self.scale(t, a, &out_shape));
                        self.sum(ta, tb, &out_shape)
                    }
                    BinaryOp::Div => {
                        // d(a/b) = da / b − db · (a/b) / b.
                        let ta = da.map(|t| {
                            let t = self.expand(t, &out_shape);
                            self.tangent(Op::Binary(BinaryOp::Div), vec![t, b], out_shape.clone())
                        });
                        let tb = db.map(|t| {
                            let q = self.residual(Op::Binary(BinaryOp::Div), vec![output, b], out_shape.clone());
                            let q = self.residual(neg(), vec![q], out_shape.clone());
                            self.scale(t, q, &out_shape)
                        });
                        self.sum(ta, tb, &out_shape)
                    }
                    BinaryOp::Pow => match (da, db) {
                        (Some(t), None) => {
                            // b · a^(b − 1)
                            let one = self.constant("one", vec![1.0], vec![]);
                            let bm1 = self.residual(Op::Binary(BinaryOp::Sub), vec![b, one], self.shape(b));
                            let p = self.residual(Op::Binary(BinaryOp::Pow), vec![a, bm1], out_shape.clone());
                            let factor = self.residual(Op::Binary(BinaryOp::Mul), vec![p, b], out_shape.clone());
                            self.scale(t, factor, &out_shape)
                        }
                        (None, Some(t)) => {
                            // aᵇ · ln a
                            let ln_a =
                                self.residual(Op::Unary { f: UnaryFn::Log, derivative: false }, vec![a], self.shape(a));
                            let factor =
                                self.residual(Op::Binary(BinaryOp::Mul), vec![output, ln_a], out_shape.clone());
                            self.scale(t, factor, &out_shape)
                        }
                        _ => return Err(self.unsupported("Pow whose base and exponent both depend on x")),
                    },
                }
            }
            Op::Reshape => self.tangent(Op::Reshape, vec![d(0).unwrap()], out_shape),
            Op::Linear(maps) => {
                let mut terms = Vec::new();
                let mut args = Vec::new();
                for (i, map) in maps.iter().enumerate() {
                    if let Some(t) = d(i) {
                        terms.push(map.clone());
                        args.push(t);
                    }
                }
                self.tangent(Op::Linear(terms), args, out_shape)
            }
            Op::MatMul(mm) => {
                let ta = d(0).map(|t| {
                    let (t, layout) = self.full_lead(t, mm.a, mm.lead, mm.m * mm.k);
                    let spec = MatMul { a: layout, ..*mm };
                    self.tangent(Op::MatMul(spec), vec![t, inputs[1]], out_shape.clone())
                });
                let tb = d(1).map(|t| {
                    let (t, layout) = self.full_lead(t, mm.b, mm.lead, mm.k * mm.n);
                    let spec = MatMul { b: layout, ..*mm };
                    self.tangent(Op::MatMul(spec), vec![inputs[0], t], out_shape.clone())
                });
                self.sum(ta, tb, &out_shape)
            }
            Op::Conv(spec) => {
                if d(1).is_some() {
                    return Err(self.unsupported("a convolution weight that depends on x"));
                }
                self.tangent(Op::Conv(*spec), vec![d(0).unwrap(), inputs[1]], out_shape)
            }
            Op::Norm { size, eps } => {
                self.tangent(Op::NormTangent { size: *size, eps: *eps }, vec![inputs[0], d(0).unwrap()], out_shape)
            }
            Op::Softmax { outer, n, inner } => self.tangent(
                Op::SoftmaxTangent { outer: *outer, n: *n, inner: *inner },
                vec![output, d(0).unwrap()],
                out_shape,
            ),
            Op::NormTangent { .. } | Op::SoftmaxTangent { .. } => {
                return Err(self.unsupported("a linearisation inside the network"));
            }
            Op::FusedMatMul(..)
            | Op::FusedConv(..)
            | Op::FusedNorm { .. }
            | Op::Attention(_)
            | Op::AttentionTangent(..)
            | Op::AttentionScoreAdjoint(_) => {
                return Err(self.unsupported("a fused node (fusion runs after the derivative programs are built)"));
            }
        })
    }

    /// A tangent operand of a product with one matrix per leading index (expanded when the primal operand
    /// broadcast one matrix over them).
    fn full_lead(&mut self, t: ValueId, layout: MatrixLayout, lead: usize, size: usize) -> (ValueId, MatrixLayout) {
        debug_assert!(!layout.transposed, "tangent operands are never stored transposed");
        if layout.lead_stride == 0 && lead > 1 {
            let mut shape = vec![lead];
            shape.extend(self.shape(t));
            let full = self.expand(t, &shape);
            (full, MatrixLayout { lead_stride: size, transposed: false })
        } else {
            (t, layout)
        }
    }

    fn sum(&mut self, a: Option<ValueId>, b: Option<ValueId>, shape: &[usize]) -> ValueId {
        match (a, b) {
            (Some(a), Some(b)) => self.tangent(Op::Binary(BinaryOp::Add), vec![a, b], shape.to_vec()),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => unreachable!("a tangent rule with no active input"),
        }
    }

    fn unsupported(&self, what: &str) -> Error {
        Error::InvalidArgument(format!("node `{}`: {what} is not supported by the derivative engine", self.name))
    }
}

fn neg() -> Op {
    Op::Unary { f: UnaryFn::Neg, derivative: false }
}

/// The sparse map that broadcasts a per-row tensor of shape `from` to `to` (numpy rules, right-aligned).
pub fn broadcast_map(from: &[usize], to: &[usize]) -> SparseMap {
    let inputs = from.iter().product();
    let outputs: usize = to.iter().product();
    let source: Vec<Option<usize>> =
        (0..outputs).map(|i| Some(crate::reference::graph_ops::broadcast_offset(to, from, i))).collect();
    SparseMap::gather(inputs, &source)
}

struct Transposer<'a> {
    graph: &'a mut Graph,
    name: String,
    vjp: &'a mut Vec<NodeId>,
    cotangent: &'a mut HashMap<ValueId, ValueId>,
}

impl Transposer<'_> {
    fn node(&mut self, op: Op, inputs: Vec<ValueId>, shape: Vec<usize>) -> ValueId {
        let v = self.graph.add_node(&self.name, op, inputs, shape);
        self.vjp.push(self.graph.nodes.len() - 1);
        v
    }

    fn is_tangent(&self, v: ValueId) -> bool {
        self.graph.values[v].stream == Stream::Tangent
    }

    /// Adds `ct` to the cotangent of the tangent value `v`.
    fn accumulate(&mut self, v: ValueId, ct: ValueId) {
        debug_assert_eq!(self.graph.values[v].shape, self.graph.values[ct].shape);
        let total = match self.cotangent.get(&v) {
            Some(&prev) => {
                let shape = self.graph.values[v].shape.clone();
                self.node(Op::Binary(BinaryOp::Add), vec![prev, ct], shape)
            }
            None => ct,
        };
        self.cotangent.insert(v, total);
    }

    fn transpose_rule(&mut self, op: &Op, inputs: &[ValueId], ct: ValueId) -> Result<()> {
        let shape_of = |g: &Graph, v: ValueId| g.values[v].shape.clone();
        match op {
            Op::Unary { f, derivative: false } => {
                let s = shape_of(self.graph, inputs[0]);
                let c = self.node(Op::Unary { f: *f, derivative: false }, vec![ct], s);
                self.accumulate(inputs[0], c);
            }
            Op::Binary(BinaryOp::Add) => {
                self.accumulate(inputs[0], ct);
                self.accumulate(inputs[1], ct);
            }
            Op::Binary(BinaryOp::Sub) => {
                self.accumulate(inputs[0], ct);
                let s = shape_of(self.graph, inputs[1]);
                let c = self.node(neg(), vec![ct], s);
                self.accumulate(inputs[1], c);
            }
            Op::Binary(bop @ (BinaryOp::Mul | BinaryOp::Div)) => {
                let (t, factor) =
                    if self.is_tangent(inputs[0]) { (inputs[0], inputs[1]) } else { (inputs[1], inputs[0]) };
                let s = shape_of(self.graph, t);
                let c = self.node(Op::Binary(*bop), vec![ct, factor], s);
                self.accumulate(t, c);
            }
            Op::Reshape => {
                let s = shape_of(self.graph, inputs[0]);
                let c = self.node(Op::Reshape, vec![ct], s);
                self.accumulate(inputs[0], c);
            }
            Op::Linear(maps) => {
                for (map, &input) in maps.iter().zip(inputs) {
                    let s = shape_of(self.graph, input);
                    let c = self.node(Op::Linear(vec![Arc::new(map.transpose())]), vec![ct], s);
                    self.accumulate(input, c);
                }
            }
            Op::MatMul(mm) => {
                let ct_layout = MatrixLayout { lead_stride: mm.m * mm.n, transposed: false };
                if self.is_tangent(inputs[0]) {
                    // Ā = C̄ · Bᵀ
                    let spec = MatMul {
                        m: mm.m,
                        n: mm.k,
                        k: mm.n,
                        lead: mm.lead,
                        a: ct_layout,
                        b: MatrixLayout { transposed: !mm.b.transposed, ..mm.b },
                    };
                    let s = shape_of(self.graph, inputs[0]);
                    let c = self.node(Op::MatMul(spec), vec![ct, inputs[1]], s);
                    self.accumulate(inputs[0], c);
                } else {
                    // B̄ = Aᵀ · C̄
                    let spec = MatMul {
                        m: mm.k,
                        n: mm.n,
                        k: mm.m,
                        lead: mm.lead,
                        a: MatrixLayout { transposed: !mm.a.transposed, ..mm.a },
                        b: ct_layout,
                    };
                    let s = shape_of(self.graph, inputs[1]);
                    let c = self.node(Op::MatMul(spec), vec![inputs[0], ct], s);
                    self.accumulate(inputs[1], c);
                }
            }
            Op::Conv(spec) => {
                let adjoint = crate::ops::graph::Conv2d {
                    c_in: spec.c_out,
                    h_in: spec.h_out,
                    w_in: spec.w_out,
                    c_out: spec.c_in,
                    h_out: spec.h_in,
                    w_out: spec.w_in,
                    transposed: !spec.transposed,
                    ..*spec
                };
                let s = shape_of(self.graph, inputs[0]);
                let c = self.node(Op::Conv(adjoint), vec![ct, inputs[1]], s);
                self.accumulate(inputs[0], c);
            }
            Op::NormTangent { .. } | Op::SoftmaxTangent { .. } => {
                let s = shape_of(self.graph, inputs[1]);
                let c = self.node(op.clone(), vec![inputs[0], ct], s);
                self.accumulate(inputs[1], c);
            }
            Op::Unary { derivative: true, .. }
            | Op::Norm { .. }
            | Op::Softmax { .. }
            | Op::Binary(BinaryOp::Pow)
            | Op::FusedMatMul(..)
            | Op::FusedConv(..)
            | Op::FusedNorm { .. }
            | Op::Attention(_)
            | Op::AttentionTangent(..)
            | Op::AttentionScoreAdjoint(_) => {
                return Err(Error::InvalidArgument(format!(
                    "node `{}`: {} is not linear in its tangent (internal error in the tangent program)",
                    self.name,
                    op.kind()
                )));
            }
        }
        Ok(())
    }
}
