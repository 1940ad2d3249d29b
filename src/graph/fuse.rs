//! Fusion passes over the graph, so that generality costs little speed:
//!
//! - [`recognise_activations`] (before the derivative programs are built): SiLU written as x·Sigmoid(x) and
//!   GELU written out in its erf form (x·(1 + erf(x/√2))·0.5, any association) become one unary function each,
//!   whose derivative factor is then one exact function instead of a chain of tangent ops.
//! - [`fuse_program`] (in the executor): a rows-times-weight product or a one-group convolution absorbs the
//!   constant bias add and the activation (Relu, SiLU, GELU, Tanh) that follow it into its store, a product also
//!   the Add of another value of its shape computed before it (a second product, a residual), and in the
//!   tangent and adjoint programs a product absorbs the derivative factor f′(pre) that multiplies its result
//!   (the tuned matmul kernels' epilogue). A value is fused away only when its one use is the absorbing node and
//!   no later program reads it, so the linearisation keeps every pre-activation the products need, and derivative
//!   factors that every product absorbs are no longer computed at all. Last, a product absorbs a Mul by a primal
//!   value of one element per row (the output factor c(t) of an ε-parameterised network) into its row scale.
//!
//!   Then an activation whose input stays stored (the linearisation's pre-activations, a residual's source) and
//!   whose output only a product reads moves into that product's loads of A (the kernels' `ACT_A`): its pass and
//!   buffer go.
//!
//! Fusion is on by default; `SCORELENS_GRAPH_FUSION=0` turns both passes off, `SCORELENS_GRAPH_ROW_SCALE=0` the
//! row scale alone, `SCORELENS_GRAPH_ACT_LOAD=0` the activation on load alone (for before/after measurements).

use std::collections::{HashMap, HashSet};

use crate::graph::attention;
use crate::graph::ir::{Graph, MatMul, Node, NodeId, NormAffine, Op, StoreEpilogue, Stream, ValueId};
use crate::graph::linearize::Linearized;
use crate::graph::uses::Uses;
use crate::ops::graph::{BinaryOp, UnaryFn};

/// Environment variable that turns fusion off (`0`, `off`, `false`); anything else, or unset, leaves it on.
pub const FUSION_ENV: &str = "SCORELENS_GRAPH_FUSION";

/// Environment variable that turns off only the row-scale fusion (`0`, `off`, `false`), for before/after
/// measurements of it.
pub const ROW_SCALE_ENV: &str = "SCORELENS_GRAPH_ROW_SCALE";

/// Environment variable that turns off only the activation → product fusion (activation on A's loads).
pub const ACT_LOAD_ENV: &str = "SCORELENS_GRAPH_ACT_LOAD";

/// Whether products absorb the activation of their A operand (see [`ACT_LOAD_ENV`]).
pub fn act_load_enabled_from_env() -> bool {
    !switched_off(ACT_LOAD_ENV)
}

/// Whether fusion is on (see [`FUSION_ENV`]).
pub fn enabled_from_env() -> bool {
    !switched_off(FUSION_ENV)
}

/// Whether products absorb the per-row scale that follows them (see [`ROW_SCALE_ENV`]).
pub fn row_scale_enabled_from_env() -> bool {
    !switched_off(ROW_SCALE_ENV)
}

/// Whether the environment variable `variable` turns a part of the graph engine off (`0`, `off`, `false`, `no`);
/// anything else, or unset, leaves it on.
pub(crate) fn switched_off(variable: &str) -> bool {
    matches!(std::env::var(variable).as_deref().map(str::trim), Ok("0" | "off" | "false" | "no"))
}

/// Whether a product runs as one rows-times-weight product on the tuned matmul kernels: A one contiguous block of
/// `lead` matrices per row, in the output's stream, not transposed; B a constant shared by every row.
pub fn is_rows_times_weight(g: &Graph, mm: &MatMul, a: ValueId, b: ValueId, out: ValueId) -> bool {
    let (va, vb) = (&g.values[a], &g.values[b]);
    va.stream == g.values[out].stream
        && va.stream != Stream::Const
        && va.numel() == mm.lead * mm.m * mm.k
        && (mm.lead == 1 || mm.a.lead_stride == mm.m * mm.k)
        && !mm.a.transposed
        && vb.stream == Stream::Const
        && mm.b.lead_stride == 0
}

/// Whether a convolution runs as patches times weight (one group, not transposed): the product's columns are the
/// output channels, so a per-channel bias and a pointwise activation fit its store.
pub fn is_patch_product(spec: &crate::ops::graph::Conv2d) -> bool {
    spec.groups == 1 && !spec.transposed
}

/// The constant scalar a value holds, if it is one.
pub(crate) fn scalar(g: &Graph, v: ValueId) -> Option<f64> {
    let value = &g.values[v];
    match (&value.data, value.stream) {
        (Some(data), Stream::Const) if data.len() == 1 => Some(data[0] as f64),
        _ => None,
    }
}

fn near(value: Option<f64>, want: f64) -> bool {
    value.is_some_and(|v| (v - want).abs() <= 1e-6 * want.abs())
}

/// Rewrites SiLU (Mul of x and Sigmoid(x)) and the erf form of GELU into single unary nodes (the last node of
/// each pattern takes the new op, so its output keeps its id) and drops the nodes left without a use. Returns
/// how many activations were recognised.
pub fn recognise_activations(g: &mut Graph) -> usize {
    let all: Vec<NodeId> = (0..g.nodes.len()).collect();
    let none_kept = HashSet::new();
    let uses = Uses::of(g, &all, &none_kept);
    let mut producer: HashMap<ValueId, NodeId> = HashMap::new();
    for (n, node) in g.nodes.iter().enumerate() {
        producer.insert(node.output, n);
    }
    let op_of = |g: &Graph, v: ValueId| -> Option<(NodeId, Op, Vec<ValueId>)> {
        producer.get(&v).map(|&n| (n, g.nodes[n].op.clone(), g.nodes[n].inputs.clone()))
    };
    let same_shape = |g: &Graph, a: ValueId, b: ValueId| g.values[a].shape == g.values[b].shape;
    let mut dead: HashSet<NodeId> = HashSet::new();
    let mut found = 0;
    for n in 0..g.nodes.len() {
        if dead.contains(&n) {
            continue;
        }
        let node = g.nodes[n].clone();
        let Op::Binary(BinaryOp::Mul) = node.op else { continue };
        let (p, q) = (node.inputs[0], node.inputs[1]);
        // SiLU: x · σ(x), either order.
        let silu = [(p, q), (q, p)].into_iter().find_map(|(x, s)| match op_of(g, s) {
            Some((m, Op::Unary { f: UnaryFn::Sigmoid, derivative: false }, ins))
                if ins[0] == x && same_shape(g, x, s) && same_shape(g, x, node.output) =>
            {
                Some((x, m))
            }
            _ => None,
        });
        if let Some((x, sigmoid)) = silu {
            g.nodes[n].op = Op::Unary { f: UnaryFn::Silu, derivative: false };
            g.nodes[n].inputs = vec![x];
            if uses.only(g.nodes[sigmoid].output) == Some(n) {
                dead.insert(sigmoid);
            }
            found += 1;
            continue;
        }
        if let Some((x, f, chain)) = gelu_pattern(g, &uses, &producer, n) {
            if same_shape(g, x, node.output) {
                g.nodes[n].op = Op::Unary { f, derivative: false };
                g.nodes[n].inputs = vec![x];
                dead.extend(chain);
                found += 1;
            }
        }
    }
    if !dead.is_empty() {
        let nodes = std::mem::take(&mut g.nodes);
        g.nodes = nodes.into_iter().enumerate().filter(|(n, _)| !dead.contains(n)).map(|(_, node)| node).collect();
    }
    found
}

/// A product of factors read through private intermediates: the constant scalars multiplied together, the other
/// factors, and the nodes passed through.
struct Factors {
    constant: f64,
    leaves: Vec<ValueId>,
    nodes: Vec<NodeId>,
}

/// `v` (read by `reader`) as a product: through Mul nodes, constant scales and divisions by constants whose output
/// only the product reads.
fn factors(g: &Graph, uses: &Uses, producer: &HashMap<ValueId, NodeId>, v: ValueId, reader: NodeId) -> Factors {
    let mut out = Factors { constant: 1.0, leaves: Vec::new(), nodes: Vec::new() };
    let mut stack = vec![(v, reader)];
    while let Some((v, reader)) = stack.pop() {
        if let Some(c) = scalar(g, v) {
            out.constant *= c;
            continue;
        }
        let private = producer.get(&v).copied().filter(|_| uses.only(v) == Some(reader));
        let Some(m) = private else {
            out.leaves.push(v);
            continue;
        };
        let node = &g.nodes[m];
        match &node.op {
            Op::Binary(BinaryOp::Mul)
                if g.values[node.inputs[0]].shape == g.values[v].shape
                    || g.values[node.inputs[1]].shape == g.values[v].shape =>
            {
                stack.extend([(node.inputs[0], m), (node.inputs[1], m)]);
            }
            Op::Binary(BinaryOp::Div) if scalar(g, node.inputs[1]).is_some_and(|c| c != 0.0) => {
                out.constant /= scalar(g, node.inputs[1]).unwrap();
                stack.push((node.inputs[0], m));
            }
            Op::Unary { f: UnaryFn::Scale(c), derivative: false } => {
                out.constant *= *c as f64;
                stack.push((node.inputs[0], m));
            }
            Op::Unary { f: UnaryFn::PowConst(p), derivative: false } if *p == 2.0 || *p == 3.0 => {
                for _ in 0..*p as usize {
                    stack.push((node.inputs[0], m));
                }
            }
            _ => {
                out.leaves.push(v);
                continue;
            }
        }
        out.nodes.push(m);
    }
    out
}

/// Whether node `n` (a Mul) ends GELU written out: ½·x·(1 + erf(x/√2)) (erf form) or
/// ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (tanh form), in any association of the products; returns x, the
/// function and the nodes of the pattern that only it reads (dropped once `n` computes GELU itself).
fn gelu_pattern(
    g: &Graph,
    uses: &Uses,
    producer: &HashMap<ValueId, NodeId>,
    n: NodeId,
) -> Option<(ValueId, UnaryFn, Vec<NodeId>)> {
    use std::f64::consts::{FRAC_1_SQRT_2, PI};
    let node = &g.nodes[n];
    let Op::Binary(BinaryOp::Mul) = node.op else { return None };
    let private = |v: ValueId, reader: NodeId| producer.get(&v).copied().filter(|_| uses.only(v) == Some(reader));
    // The node of `nodes` (else `default`) that reads v.
    let reader = |v: ValueId, nodes: &[NodeId], default: NodeId| {
        nodes.iter().copied().find(|&m| g.nodes[m].inputs.contains(&v)).unwrap_or(default)
    };
    let mut top = factors(g, uses, producer, node.inputs[0], n);
    let right = factors(g, uses, producer, node.inputs[1], n);
    top.constant *= right.constant;
    top.leaves.extend(right.leaves);
    top.nodes.extend(right.nodes);
    if top.leaves.len() != 2 || !near(Some(top.constant), 0.5) {
        return None;
    }
    for (x, p) in [(top.leaves[0], top.leaves[1]), (top.leaves[1], top.leaves[0])] {
        // 1 + f(inner)
        let Some(add) = private(p, reader(p, &top.nodes, n)) else { continue };
        let Op::Binary(BinaryOp::Add) = g.nodes[add].op else { continue };
        let (a, b) = (g.nodes[add].inputs[0], g.nodes[add].inputs[1]);
        let t = if near(scalar(g, b), 1.0) {
            a
        } else if near(scalar(g, a), 1.0) {
            b
        } else {
            continue;
        };
        let Some(f_node) = private(t, add) else { continue };
        let (f, inner) = match g.nodes[f_node].op {
            Op::Unary { f: f @ (UnaryFn::Erf | UnaryFn::Tanh), derivative: false } => (f, g.nodes[f_node].inputs[0]),
            _ => continue,
        };
        let scaled = factors(g, uses, producer, inner, f_node);
        let mut chain = top.nodes.clone();
        chain.extend([add, f_node]);
        chain.extend(&scaled.nodes);
        if f == UnaryFn::Erf {
            if scaled.leaves == [x] && near(Some(scaled.constant), FRAC_1_SQRT_2) {
                return Some((x, UnaryFn::Gelu, chain));
            }
            continue;
        }
        // tanh form: √(2/π) · (x + 0.044715 · x³)
        if scaled.leaves.len() != 1 || !near(Some(scaled.constant), (2.0 / PI).sqrt()) {
            continue;
        }
        let Some(sum) = private(scaled.leaves[0], reader(scaled.leaves[0], &scaled.nodes, f_node)) else { continue };
        let Op::Binary(BinaryOp::Add) = g.nodes[sum].op else { continue };
        let (a, b) = (g.nodes[sum].inputs[0], g.nodes[sum].inputs[1]);
        let cubic = if a == x {
            b
        } else if b == x {
            a
        } else {
            continue;
        };
        let cube = factors(g, uses, producer, cubic, sum);
        if cube.leaves.iter().all(|&l| l == x) && cube.leaves.len() == 3 && near(Some(cube.constant), 0.044715) {
            chain.push(sum);
            chain.extend(&cube.nodes);
            return Some((x, UnaryFn::GeluTanh, chain));
        }
    }
    None
}

/// The node lists the executor runs, over a copy of the graph extended with fused nodes.
#[derive(Debug, Clone)]
pub struct FusedProgram {
    pub graph: Graph,
    /// s(x, t) alone.
    pub score: Vec<NodeId>,
    /// The network with the derivative factors the products read.
    pub linearisation: Vec<NodeId>,
    pub jvp: Vec<NodeId>,
    pub vjp: Vec<NodeId>,
    /// Values the linearisation keeps for the products (and for `pre_activations`).
    pub kept: HashSet<ValueId>,
}

/// Fuses the programs of `p` (or, with `enabled` false, keeps them as they are). `keep` are values the
/// linearisation must hold besides what the products read (e.g. the activation inputs that descriptors report).
pub fn fuse_program(p: &Linearized, keep: &[ValueId], enabled: bool) -> FusedProgram {
    let mut graph = p.graph.clone();
    let linearisation: Vec<NodeId> = p.primal.iter().chain(&p.residuals).copied().collect();
    if !enabled {
        let mut kept = read_outside(&graph, &[&p.jvp, &p.vjp]);
        kept.extend(keep.iter().copied().chain([graph.output]));
        return FusedProgram {
            graph,
            score: p.primal.clone(),
            linearisation,
            jvp: p.jvp.clone(),
            vjp: p.vjp.clone(),
            kept,
        };
    }
    let only = |v: ValueId| HashSet::from([v]);
    // Attention first (crate::graph::attention): its chains hold no bias or activation for the epilogues.
    let attentions = if attention::enabled_from_env() { attention::find_attentions(&graph, &p.primal) } else { vec![] };
    let jvp = attention::fuse_tangents(&mut graph, &p.jvp, &only(p.dy), &attentions);
    let jvp = fuse_list(&mut graph, &jvp, &only(p.dy));
    let vjp = attention::fuse_adjoints(&mut graph, &p.vjp, &only(p.x_bar), &attentions);
    let vjp = fuse_list(&mut graph, &vjp, &only(p.x_bar));
    let mut kept = read_outside(&graph, &[&jvp, &vjp]);
    kept.extend(keep.iter().copied().chain([graph.output]));
    // Derivative factors that every product absorbed are no longer needed.
    let residuals = live_suffix(&graph, &p.residuals, &kept);
    let linearisation: Vec<NodeId> = p.primal.iter().chain(&residuals).copied().collect();
    let linearisation = attention::fuse_forward(&mut graph, &linearisation, &kept, &attentions);
    let linearisation = fuse_list(&mut graph, &linearisation, &kept);
    let output = graph.output;
    let score = attention::fuse_forward(&mut graph, &p.primal, &only(output), &attentions);
    let score = fuse_list(&mut graph, &score, &only(output));
    FusedProgram { graph, score, linearisation, jvp, vjp, kept }
}

/// Values the `lists` read that none of them computes.
fn read_outside(g: &Graph, lists: &[&[NodeId]]) -> HashSet<ValueId> {
    let computed: HashSet<ValueId> = lists.iter().flat_map(|l| l.iter().map(|&n| g.nodes[n].output)).collect();
    lists
        .iter()
        .flat_map(|l| l.iter().flat_map(|&n| g.nodes[n].inputs.iter().copied()))
        .filter(|v| !computed.contains(v))
        .collect()
}

/// The nodes of `nodes` whose outputs `needed` reads, directly or through later nodes of the list.
fn live_suffix(g: &Graph, nodes: &[NodeId], needed: &HashSet<ValueId>) -> Vec<NodeId> {
    let mut needed = needed.clone();
    let mut live = Vec::new();
    for &n in nodes.iter().rev() {
        if needed.contains(&g.nodes[n].output) {
            needed.extend(g.nodes[n].inputs.iter().copied());
            live.push(n);
        }
    }
    live.reverse();
    live
}

/// Whether a constant's shape is one bias value per output column of a product (per channel of a convolution).
type BiasShapeTest = Box<dyn Fn(&[usize]) -> bool>;

/// Fuses the bias adds, activations, derivative factors and row scales that follow products in `nodes` into new
/// fused nodes (appended to the graph); `kept` are values read after the list, which are never fused away.
fn fuse_list(g: &mut Graph, nodes: &[NodeId], kept: &HashSet<ValueId>) -> Vec<NodeId> {
    let (row_scales, act_loads) = (row_scale_enabled_from_env(), act_load_enabled_from_env());
    let uses = Uses::of(g, nodes, kept);
    let position: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    // Where the list computes each value (absent: an input, a constant or a value of an earlier list).
    let made_at: HashMap<ValueId, usize> = nodes.iter().enumerate().map(|(i, &n)| (g.nodes[n].output, i)).collect();
    let mut absorbed = vec![false; nodes.len()];
    let mut out = Vec::with_capacity(nodes.len());
    for (i, &n) in nodes.iter().enumerate() {
        if absorbed[i] {
            continue;
        }
        let node = g.nodes[n].clone();
        let consumer = |v: ValueId| -> Option<(usize, NodeId)> {
            let c = uses.only(v)?;
            let &pos = position.get(&c)?;
            (pos > i).then_some((pos, c))
        };
        if let Op::Norm { size, eps } = node.op {
            match fuse_norm(g, &node, size, eps, &consumer) {
                Some((fused, taken)) => {
                    for pos in taken {
                        absorbed[pos] = true;
                    }
                    g.nodes.push(fused);
                    out.push(g.nodes.len() - 1);
                }
                None => out.push(n),
            }
            continue;
        }
        let (mut epilogue, columns, bias_shape_ok): (StoreEpilogue, usize, BiasShapeTest) = match &node.op {
            Op::MatMul(mm) if is_rows_times_weight(g, mm, node.inputs[0], node.inputs[1], node.output) => {
                let n_cols = mm.n;
                (
                    StoreEpilogue::NONE,
                    n_cols,
                    Box::new(move |s: &[usize]| s.last() == Some(&n_cols) && s[..s.len() - 1].iter().all(|&d| d == 1)),
                )
            }
            Op::Conv(spec) if is_patch_product(spec) && g.values[node.output].stream != Stream::Const => {
                let c = spec.c_out;
                (
                    StoreEpilogue::NONE,
                    c,
                    Box::new(move |s: &[usize]| {
                        let trimmed: Vec<usize> = s.iter().copied().skip_while(|&d| d == 1).collect();
                        trimmed == [c, 1, 1] || (c == 1 && trimmed.is_empty())
                    }),
                )
            }
            _ => {
                out.push(n);
                continue;
            }
        };
        let is_conv = matches!(node.op, Op::Conv(_));
        let mut inputs = node.inputs.clone();
        let mut last = node.output;
        let out_shape = g.values[last].shape.clone();
        let mut taken = Vec::new();
        // The bias: a constant with one value per column, added without broadcasting the result.
        if let Some((pos, c)) = consumer(last) {
            let cn = &g.nodes[c];
            if let Op::Binary(BinaryOp::Add) = cn.op {
                let other = if cn.inputs[0] == last { cn.inputs[1] } else { cn.inputs[0] };
                let ov = &g.values[other];
                if cn.inputs[0] != cn.inputs[1]
                    && ov.stream == Stream::Const
                    && ov.numel() == columns
                    && bias_shape_ok(&ov.shape)
                    && g.values[cn.output].shape == out_shape
                {
                    epilogue.bias = true;
                    inputs.push(other);
                    taken.push(pos);
                    last = cn.output;
                }
            }
        }
        // An addend: the other summand of an Add, a non-constant value of the product's shape and stream that exists
        // before the product runs (so that the fused node can stay at the product's place in the list).
        if let (Op::MatMul(_), Some((pos, c))) = (&node.op, consumer(last)) {
            let cn = &g.nodes[c];
            if let Op::Binary(BinaryOp::Add) = cn.op {
                let other = if cn.inputs[0] == last { cn.inputs[1] } else { cn.inputs[0] };
                let (ov, lv) = (&g.values[other], &g.values[last]);
                if cn.inputs[0] != cn.inputs[1]
                    && ov.stream == lv.stream
                    && ov.shape == out_shape
                    && g.values[cn.output].shape == out_shape
                    && made_at.get(&other).is_none_or(|&p| p < i)
                {
                    epilogue.addend = true;
                    inputs.push(other);
                    taken.push(pos);
                    last = cn.output;
                }
            }
        }
        // The activation.
        if let Some((pos, c)) = consumer(last) {
            if let Op::Unary { f, derivative: false } = g.nodes[c].op {
                if StoreEpilogue::fusable(f) {
                    epilogue.act = Some(f);
                    taken.push(pos);
                    last = g.nodes[c].output;
                }
            }
        }
        // The derivative factor of a tangent product with one matrix row per tangent row: Mul(t, f′(pre)).
        if let (Op::MatMul(mm), false, false, None) = (&node.op, epilogue.bias, epilogue.addend, epilogue.act) {
            let tangent_rows = g.values[last].stream == Stream::Tangent && mm.lead * mm.m == 1;
            if let Some((pos, c)) = consumer(last).filter(|_| tangent_rows) {
                let cn = g.nodes[c].clone();
                if let Op::Binary(BinaryOp::Mul) = cn.op {
                    let factor = if cn.inputs[0] == last { cn.inputs[1] } else { cn.inputs[0] };
                    let producer = g.nodes.iter().rposition(|nd| nd.output == factor);
                    if let Some(pn) = producer.map(|p| g.nodes[p].clone()) {
                        if let Op::Unary { f, derivative: true } = pn.op {
                            let pre = pn.inputs[0];
                            let ok = StoreEpilogue::fusable(f)
                                && cn.inputs[0] != cn.inputs[1]
                                && g.values[pre].stream == Stream::Primal
                                && g.values[pre].numel() == columns
                                && g.values[cn.output].shape == out_shape
                                && g.values[factor].shape == out_shape;
                            if ok {
                                epilogue.deriv = Some(f);
                                inputs.push(pre);
                                taken.push(pos);
                                last = cn.output;
                            }
                        }
                    }
                }
            }
        }
        // The row scale: a Mul by a primal value of one element per row (the output factor c(t) of an ε model),
        // computed before the product, applied last. With an addend (read per product row) only where a product
        // row is a value row, so that both index the kernels' row groups alike.
        if let (Op::MatMul(mm), true, Some((pos, c))) = (&node.op, row_scales, consumer(last)) {
            let cn = &g.nodes[c];
            if let Op::Binary(BinaryOp::Mul) = cn.op {
                let other = if cn.inputs[0] == last { cn.inputs[1] } else { cn.inputs[0] };
                let ov = &g.values[other];
                let row_per_value_row = mm.lead * mm.m == 1 && g.values[last].stream == Stream::Primal;
                if cn.inputs[0] != cn.inputs[1]
                    && ov.stream == Stream::Primal
                    && ov.numel() == 1
                    && g.values[cn.output].shape == out_shape
                    && made_at.get(&other).is_none_or(|&p| p < i)
                    && (!epilogue.addend || row_per_value_row)
                {
                    epilogue.scale = true;
                    inputs.push(other);
                    taken.push(pos);
                    last = cn.output;
                }
            }
        }
        if taken.is_empty() {
            out.push(n);
            continue;
        }
        for &pos in &taken {
            absorbed[pos] = true;
        }
        let op = match &node.op {
            Op::MatMul(mm) => Op::FusedMatMul(*mm, epilogue),
            Op::Conv(spec) => Op::FusedConv(*spec, epilogue),
            _ => unreachable!(),
        };
        debug_assert!(!is_conv || epilogue.deriv.is_none());
        g.nodes.push(Node { name: node.name.clone(), op, inputs, output: last });
        out.push(g.nodes.len() - 1);
    }
    if act_loads {
        out = fuse_activation_loads(g, out, kept);
    }
    out
}

/// Activation → product: where A of a rows-times-weight product is f(pre) for an activation the kernels apply on
/// load, and no other node (nor a later program) reads f(pre), the product reads pre and applies f to A as it loads
/// it. Runs after the store fusions, so an activation that the store of pre's product could take stays there (there
/// it is computed once per element; on load once per element and column tile).
fn fuse_activation_loads(g: &mut Graph, nodes: Vec<NodeId>, kept: &HashSet<ValueId>) -> Vec<NodeId> {
    let uses = Uses::of(g, &nodes, kept);
    let mut dropped = HashSet::new();
    let mut replaced: HashMap<NodeId, NodeId> = HashMap::new();
    for &n in &nodes {
        let node = &g.nodes[n];
        let (mm, epilogue) = match &node.op {
            Op::MatMul(mm) if is_rows_times_weight(g, mm, node.inputs[0], node.inputs[1], node.output) => {
                (*mm, StoreEpilogue::NONE)
            }
            Op::FusedMatMul(mm, e) if e.act_a.is_none() => (*mm, *e),
            _ => continue,
        };
        let a = node.inputs[0];
        // One read only: not also the product's addend or pre.
        if uses.only(a) != Some(n) {
            continue;
        }
        let Some(p) = uses.producer(a) else { continue };
        let Op::Unary { f, derivative: false } = g.nodes[p].op else { continue };
        let pre = g.nodes[p].inputs[0];
        let (va, vp) = (&g.values[a], &g.values[pre]);
        if !StoreEpilogue::fusable(f) || vp.stream != va.stream || vp.numel() != va.numel() {
            continue;
        }
        let mut inputs = node.inputs.clone();
        inputs[0] = pre;
        let op = Op::FusedMatMul(mm, StoreEpilogue { act_a: Some(f), ..epilogue });
        g.nodes.push(Node { name: node.name.clone(), op, inputs, output: node.output });
        replaced.insert(n, g.nodes.len() - 1);
        dropped.insert(p);
    }
    nodes.into_iter().filter(|n| !dropped.contains(n)).map(|n| replaced.get(&n).copied().unwrap_or(n)).collect()
}

/// Where a constant broadcast over a row of shape `out` varies: (channels, inner) when it is one value per channel
/// of an axis (element i in channel (i / inner) % channels), e.g. [C, 1, 1] over [C, H, W] or [n] over [.., n].
fn channel_pattern(c: &[usize], out: &[usize]) -> Option<(usize, usize)> {
    let trimmed: Vec<usize> = c.iter().copied().skip_while(|&d| d == 1).collect();
    if trimmed.is_empty() {
        return Some((1, 1));
    }
    if trimmed.len() > out.len() || trimmed[1..].iter().any(|&d| d != 1) {
        return None;
    }
    let axis = out.len() - trimmed.len();
    (out[axis] == trimmed[0]).then(|| (trimmed[0], out[axis + 1..].iter().product()))
}

/// A normalisation with the constant scale (Mul), shift (Add) and activation (Relu, SiLU) that alone read its
/// result, as one [`Op::FusedNorm`]; returns the node and the list positions it absorbs.
fn fuse_norm(
    g: &Graph,
    node: &Node,
    size: usize,
    eps: f32,
    consumer: &dyn Fn(ValueId) -> Option<(usize, NodeId)>,
) -> Option<(Node, Vec<usize>)> {
    let out_shape = g.values[node.output].shape.clone();
    let mut store = NormAffine { channels: 1, inner: 1, scale: false, shift: false, act: None };
    let mut pattern: Option<(usize, usize)> = None;
    let mut inputs = vec![node.inputs[0]];
    let mut taken = Vec::new();
    let mut last = node.output;
    // A constant operand of `c` (the other one being `last`), per channel, consistent with what came before.
    let mut per_channel = |c: &Node, last: ValueId| -> Option<ValueId> {
        let other = if c.inputs[0] == last { c.inputs[1] } else { c.inputs[0] };
        let v = &g.values[other];
        if c.inputs[0] == c.inputs[1] || v.stream != Stream::Const || g.values[c.output].shape != out_shape {
            return None;
        }
        let p = channel_pattern(&v.shape, &out_shape)?;
        if pattern.is_some_and(|q| q != p) {
            return None;
        }
        pattern = Some(p);
        Some(other)
    };
    for (step, op) in [(0, BinaryOp::Mul), (1, BinaryOp::Add)] {
        let Some((pos, c)) = consumer(last) else { break };
        let cn = &g.nodes[c];
        if !matches!(cn.op, Op::Binary(b) if b == op) {
            continue;
        }
        let Some(operand) = per_channel(cn, last) else { break };
        inputs.push(operand);
        if step == 0 {
            store.scale = true;
        } else {
            store.shift = true;
        }
        taken.push(pos);
        last = cn.output;
    }
    if let Some((pos, c)) = consumer(last) {
        if let Op::Unary { f: f @ (UnaryFn::Relu | UnaryFn::Silu), derivative: false } = g.nodes[c].op {
            store.act = Some(f);
            taken.push(pos);
            last = g.nodes[c].output;
        }
    }
    if taken.is_empty() {
        return None;
    }
    (store.channels, store.inner) = pattern.unwrap_or((1, 1));
    let op = Op::FusedNorm { size, eps, store };
    Some((Node { name: node.name.clone(), op, inputs, output: last }, taken))
}
