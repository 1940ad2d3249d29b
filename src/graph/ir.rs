//! The network graph: typed values with static per-row shapes, and primitive ops in topological order.
//!
//! Every value lives in one row stream ([`Stream`]): constants (weights; one copy for all rows, whole shape),
//! primal values (one row per point, per-row shape: the batch axis is not part of it) and tangent values (K rows
//! per point: forward-mode tangents, or reverse-mode cotangents). A node's output stream is the "largest" of its
//! inputs' (tangent > primal > constant), and kernels broadcast a primal operand over a point's tangent rows.
//! The primitives are few on purpose: every ONNX op lowers to them, and each has a tangent rule and, when linear
//! in its tangent operand, a transpose rule (crate::graph::linearize).

use std::sync::Arc;

use crate::ops::graph::{BatchedMatmul, BinaryOp, Conv2d, MatrixMap, RowMap, UnaryFn};
use crate::reference::graph_ops::SparseMap;

pub type ValueId = usize;
pub type NodeId = usize;

/// Which rows a value has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    /// One copy shared by every row (weights, folded constants).
    Const,
    /// One row per point.
    Primal,
    /// K rows per point (tangents or cotangents), point-major.
    Tangent,
}

#[derive(Debug, Clone)]
pub struct Value {
    /// The ONNX tensor (or derived) name, for messages and labels.
    pub name: String,
    /// Per-row shape (primal and tangent values), or the whole shape (constants).
    pub shape: Vec<usize>,
    pub stream: Stream,
    /// The data of a constant.
    pub data: Option<Arc<Vec<f32>>>,
}

impl Value {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Where one operand of a [`MatMul`] keeps its matrices within a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixLayout {
    /// Elements between consecutive leading matrices within a row (0: one matrix for every leading index).
    pub lead_stride: usize,
    /// Stored transposed (A as [K, M], B as [N, K]); only constants are stored transposed.
    pub transposed: bool,
}

/// Batched products C[l] = A[l] · B[l] for every leading index l < lead of a row: A [M, K], B [K, N], C [lead, M, N].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatMul {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lead: usize,
    pub a: MatrixLayout,
    pub b: MatrixLayout,
}

impl MatMul {
    /// The kernel's description for `rows` output rows, the operands' rows found by `a_rows` and `b_rows`.
    pub fn batched(&self, rows: usize, a_rows: RowMap, b_rows: RowMap) -> BatchedMatmul {
        let map = |rows: RowMap, l: MatrixLayout| MatrixMap {
            rows,
            lead_stride: l.lead_stride as u32,
            transposed: l.transposed,
        };
        BatchedMatmul {
            m: self.m,
            n: self.n,
            k: self.k,
            rows,
            lead: self.lead,
            a: map(a_rows, self.a),
            b: map(b_rows, self.b),
        }
    }
}

/// What a fused product stores (crate::graph::fuse): act(A·B + bias + addend) · f′(pre) · scale, elementwise over the
/// output (scale one factor per row). Inputs of the fused node: a, b, then the bias, the addend or pre, and the scale,
/// those present, in that order.
/// The functions are those the tuned matmul kernels fuse (Relu, Silu, Gelu, Tanh; see [`StoreEpilogue::fusable`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreEpilogue {
    /// A constant bias per output column (per output channel of a convolution): the input after the weight.
    pub bias: bool,
    /// A value of the product's shape and stream (the last input) added after the bias, before the activation: the
    /// other summand of an Add, e.g. a second product (the built-in MLP's time features) or a residual. Never with
    /// `deriv` (they share the kernels' binding). Products only, not convolutions.
    pub addend: bool,
    /// The activation applied after the bias (and addend).
    pub act: Option<UnaryFn>,
    /// A derivative factor f′(pre) multiplied in at the store: `pre` (the last input) is a primal value with one
    /// element per output column of the product row's point (the tangent rule of an activation, fused).
    pub deriv: Option<UnaryFn>,
    /// A factor per row multiplied in last: a primal value of one element per row (e.g. the output factor c(t) of
    /// an ε-parameterisation), one factor for the product rows of a point (and of its tangent rows).
    pub scale: bool,
    /// An activation applied to A as the kernels load it (the product reads pre and multiplies f(pre), which is
    /// never stored): the activation → product fusion of a pre-activation that something else also reads.
    pub act_a: Option<UnaryFn>,
}

impl StoreEpilogue {
    /// Nothing fused (yet).
    pub const NONE: StoreEpilogue =
        StoreEpilogue { bias: false, addend: false, act: None, deriv: None, scale: false, act_a: None };

    /// The fused node's input holding the addend or the derivative factor's pre-activations.
    pub fn pre_input(&self) -> usize {
        2 + self.bias as usize
    }

    /// The fused node's input holding the row scale.
    pub fn scale_input(&self) -> usize {
        self.pre_input() + (self.addend || self.deriv.is_some()) as usize
    }

    /// Whether the tuned matmul kernels' store can apply `f` (or its derivative).
    pub fn fusable(f: UnaryFn) -> bool {
        matches!(f, UnaryFn::Relu | UnaryFn::Silu | UnaryFn::Gelu | UnaryFn::Tanh)
    }

    /// The kernels' activation for `f` (Identity for None).
    pub fn activation(f: Option<UnaryFn>) -> crate::Activation {
        match f {
            Some(UnaryFn::Relu) => crate::Activation::Relu,
            Some(UnaryFn::Silu) => crate::Activation::Silu,
            Some(UnaryFn::Gelu) => crate::Activation::Gelu,
            Some(UnaryFn::Tanh) => crate::Activation::Tanh,
            _ => crate::Activation::Identity,
        }
    }
}

/// The primitive ops.
#[derive(Debug, Clone)]
pub enum Op {
    /// f(a), or f′(a) with `derivative` (the derivative factors of the linearisation).
    Unary { f: UnaryFn, derivative: bool },
    /// a ∘ b with numpy broadcasting of the per-row shapes.
    Binary(BinaryOp),
    /// The same elements under another per-row shape (Reshape, Flatten, Squeeze, Unsqueeze, Identity).
    Reshape,
    /// Σⱼ Mⱼ · inputⱼ within each row: layout ops (transpose, slice, concat, pad, gather, expand, tile, resize,
    /// pooling, reductions) as per-row sparse linear maps, one per input.
    Linear(Vec<Arc<SparseMap>>),
    /// Batched matrix products over the leading axes of a row.
    MatMul(MatMul),
    /// A 2-D (transposed) convolution of the input (NCHW rows) with a constant weight (the second input); the
    /// spec's `rows` is filled in at execution.
    Conv(Conv2d),
    /// (x − mean) / √(var + eps) over contiguous groups of `size` elements.
    Norm { size: usize, eps: f32 },
    /// The normalisation's linearisation at x (first input) applied to a tangent (second input); self-adjoint.
    NormTangent { size: usize, eps: f32 },
    /// Softmax along the middle axis of the row viewed as [outer, n, inner].
    Softmax { outer: usize, n: usize, inner: usize },
    /// The softmax's linearisation at its output y (first input) applied to a tangent (second); self-adjoint.
    SoftmaxTangent { outer: usize, n: usize, inner: usize },
    /// A rows-times-weight [`MatMul`] (A one matrix per row, B constant) with its store epilogue, made by
    /// crate::graph::fuse from a product and the bias add, activation, derivative factor or row scale that follow
    /// it. Inputs: a, b, the bias, the addend or pre, the scale (those present; see [`StoreEpilogue`]).
    FusedMatMul(MatMul, StoreEpilogue),
    /// A convolution (one group, not transposed) with a per-channel bias and activation fused into its product's
    /// store. Inputs: x, w, the bias (if any; c_out values).
    FusedConv(Conv2d, StoreEpilogue),
    /// A [`Op::Norm`] with the constant per-channel scale and shift and the activation that follow it fused into
    /// its store. Inputs: x, the scale (if any), the shift (if any).
    FusedNorm { size: usize, eps: f32, store: NormAffine },
    /// MatMul → scale → Softmax → MatMul as one kernel (crate::graph::attention). Inputs: q, k, v.
    Attention(Attention),
    /// The tangent of an attention, dO = dP · V + P · dV with dP = P ⊙ (dS − Σ P ⊙ dS) and
    /// dS = scale · (dQ · K + Q · dK), as one kernel that stores neither dS nor dP. Inputs: q, k, v, the
    /// probabilities P (primal, [lead, lq, lk]), then dq, dk, dv for those present.
    AttentionTangent(Attention, AttentionTangents),
    /// In the adjoint of an attention, the scores' cotangent from the output's cotangent Ō (tangent, [lead, lq, dv]
    /// contiguous): S̄ = scale · P ⊙ (Ō·Vᵀ − rowsum(P ⊙ Ō·Vᵀ)), one kernel instead of a product, the softmax
    /// linearisation and the scale. Inputs: v, the probabilities P, Ō.
    AttentionScoreAdjoint(Attention),
}

/// Scaled dot-product attention as one kernel (crate::graph::attention): per leading index l (head) of a row,
/// O[l] = softmax(scale · Q[l] · K[l]) · V[l] along the key axis, with Q [lq, dk] (the first product's A),
/// K [dk, lk] (its B), V [lk, dv] (the second product's B) and O contiguous [lead, lq, dv]. The scores
/// [lq, lk] are never stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    pub lead: usize,
    pub lq: usize,
    pub lk: usize,
    pub dk: usize,
    pub dv: usize,
    pub q: MatrixLayout,
    pub k: MatrixLayout,
    pub v: MatrixLayout,
    /// The constant the scores are multiplied by (1 / c for a division by c).
    pub scale: f64,
}

impl Attention {
    /// The kernels' sizes for `rows` output rows.
    pub fn shape(&self, rows: usize) -> crate::ops::attention::AttentionShape {
        crate::ops::attention::AttentionShape {
            rows,
            lead: self.lead,
            lq: self.lq,
            lk: self.lk,
            dk: self.dk,
            dv: self.dv,
            scale: self.scale,
        }
    }

    /// Where an operand with `layout` finds its matrices in `rows`.
    pub fn map(layout: MatrixLayout, rows: RowMap) -> MatrixMap {
        MatrixMap { rows, lead_stride: layout.lead_stride as u32, transposed: layout.transposed }
    }
}

/// The tangent operands an [`Op::AttentionTangent`] reads (those of the inputs that depend on x) and where their
/// matrices are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionTangents {
    pub dq: Option<MatrixLayout>,
    pub dk: Option<MatrixLayout>,
    pub dv: Option<MatrixLayout>,
}

/// The per-channel affine map and activation of a [`Op::FusedNorm`]: element i of a row is in channel
/// (i / inner) % channels (GroupNorm's [C, 1, 1] parameters: inner = H·W; LayerNorm's [n]: inner = 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormAffine {
    pub channels: usize,
    pub inner: usize,
    pub scale: bool,
    pub shift: bool,
    /// Relu or Silu.
    pub act: Option<UnaryFn>,
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Unary { derivative: false, .. } => "unary",
            Op::Unary { derivative: true, .. } => "unary-derivative",
            Op::Binary(_) => "binary",
            Op::Reshape => "reshape",
            Op::Linear(_) => "linear-map",
            Op::MatMul(_) => "matmul",
            Op::Conv(c) if c.transposed => "conv-transpose",
            Op::Conv(_) => "conv",
            Op::Norm { .. } => "norm",
            Op::NormTangent { .. } => "norm-tangent",
            Op::Softmax { .. } => "softmax",
            Op::SoftmaxTangent { .. } => "softmax-tangent",
            Op::FusedMatMul(..) => "matmul+epilogue",
            Op::FusedConv(..) => "conv+epilogue",
            Op::FusedNorm { .. } => "norm+affine",
            Op::Attention(_) => "attention",
            Op::AttentionTangent(..) => "attention-tangent",
            Op::AttentionScoreAdjoint(_) => "attention-score-adjoint",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    /// The ONNX node it comes from (several primitives may share it).
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

/// A score network as a graph: inputs x [per-row shape] and the time input (per-row shape []), one output.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    /// The primal inputs, in order: x, then the time input.
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

impl Graph {
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id]
    }

    pub fn add_value(&mut self, name: impl Into<String>, shape: Vec<usize>, stream: Stream) -> ValueId {
        self.values.push(Value { name: name.into(), shape, stream, data: None });
        self.values.len() - 1
    }

    pub fn add_const(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> ValueId {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        self.values.push(Value { name: name.into(), shape, stream: Stream::Const, data: Some(Arc::new(data)) });
        self.values.len() - 1
    }

    /// Appends a node computing a new value of `shape`; its stream is the largest of its inputs'.
    pub fn add_node(&mut self, name: &str, op: Op, inputs: Vec<ValueId>, shape: Vec<usize>) -> ValueId {
        let stream = inputs.iter().map(|&i| self.values[i].stream).max().unwrap_or(Stream::Const);
        let label = format!("{name}/{}", op.kind());
        let output = self.add_value(label, shape, stream);
        self.nodes.push(Node { name: name.into(), op, inputs, output });
        output
    }

    /// Where the rows of a node of stream `out` find the rows of input `id` (tangent streams have `rep` rows per
    /// point): constants are shared, primal operands of tangent ops repeat over a point's tangents.
    pub fn row_map(&self, id: ValueId, out: Stream, rep: usize) -> RowMap {
        let v = &self.values[id];
        match (v.stream, out) {
            (Stream::Const, _) => RowMap::shared(),
            (Stream::Primal, Stream::Tangent) => RowMap::repeated(v.numel(), rep),
            _ => RowMap::rows(v.numel()),
        }
    }

    /// The node producing each value (None for inputs and constants).
    pub fn producers(&self) -> Vec<Option<NodeId>> {
        let mut producer = vec![None; self.values.len()];
        for (n, node) in self.nodes.iter().enumerate() {
            producer[node.output] = Some(n);
        }
        producer
    }

    /// Number of weights (constant elements).
    pub fn parameter_count(&self) -> usize {
        self.values.iter().filter(|v| v.stream == Stream::Const).map(Value::numel).sum()
    }

    /// FLOPs of one row through `nodes` (multiply-adds count 2), for the scheduler and `info`.
    pub fn flops_per_row(&self, nodes: &[NodeId]) -> f64 {
        nodes.iter().map(|&n| self.node_flops(&self.nodes[n])).sum()
    }

    pub fn node_flops(&self, node: &Node) -> f64 {
        let out = self.values[node.output].numel() as f64;
        match &node.op {
            Op::Unary { .. } | Op::Binary(_) => out,
            Op::Reshape => 0.0,
            Op::Linear(maps) => 2.0 * maps.iter().map(|m| m.nnz()).sum::<usize>() as f64,
            Op::MatMul(mm) | Op::FusedMatMul(mm, _) => 2.0 * (mm.lead * mm.m * mm.n * mm.k) as f64,
            Op::Conv(c) | Op::FusedConv(c, _) => {
                let taps = (c.kernel[0] * c.kernel[1] * c.c_in / c.groups) as f64;
                let pixels = if c.transposed { c.h_in * c.w_in * c.c_out } else { c.h_out * c.w_out * c.c_out };
                2.0 * taps * pixels as f64
            }
            Op::Norm { .. } | Op::FusedNorm { .. } | Op::Softmax { .. } => 5.0 * out,
            Op::NormTangent { .. } | Op::SoftmaxTangent { .. } => 8.0 * out,
            Op::Attention(a) => ((a.lead * a.lq * a.lk) * (2 * a.dk + 2 * a.dv + 5)) as f64,
            Op::AttentionTangent(a, _) => ((a.lead * a.lq * a.lk) * (4 * a.dk + 6 * a.dv + 4)) as f64,
            Op::AttentionScoreAdjoint(a) => ((a.lead * a.lq * a.lk) * (2 * a.dv + 5)) as f64,
        }
    }

    /// f32 elements one row of `nodes`' outputs holds (an upper bound of the working memory per row).
    pub fn floats_per_row(&self, nodes: &[NodeId]) -> usize {
        nodes.iter().map(|&n| self.values[self.nodes[n].output].numel()).sum()
    }
}
