//! Attention fusion (crate::graph::fuse runs it on each program before the epilogue fusion):
//!
//! - in a forward program (the score), MatMul → (Mul or Div by a constant scalar) → Softmax over the last axis →
//!   MatMul of the probabilities becomes one [`Op::Attention`] node, which never stores the scores;
//! - in the tangent program (J·V), the tangent of such an attention, dQ·K + Q·dK → scale → softmax tangent →
//!   dP·V + P·dV (six to eight nodes over K tangent rows, each storing a [lead, lq, lk] matrix per tangent),
//!   becomes one [`Op::AttentionTangent`] node that reads the primal probabilities P of the linearisation.
//!
//! - in the adjoint program (Jᵀ·U), the scores' cotangent Ō·Vᵀ → softmax linearisation → scale becomes one
//!   [`Op::AttentionScoreAdjoint`] node; the three products that remain (Pᵀ·Ō for V̄, S̄·K and Q·S̄ for Q̄ and K̄)
//!   run on the batched matmul as before.
//!
//! The linearisation keeps the unfused forward nodes: its P is what the products read.
//! A node chain is fused only when each intermediate value has its one use inside the chain and is not read after
//! the list. `SCORELENS_GRAPH_ATTENTION=0` turns attention fusion alone off (for before/after measurements).

use std::collections::{HashMap, HashSet};

use crate::graph::fuse::scalar;
use crate::graph::ir::{Attention, AttentionTangents, Graph, MatMul, Node, NodeId, Op, Stream, ValueId};
use crate::graph::uses::Uses;
use crate::ops::graph::BinaryOp;

/// Environment variable that turns attention fusion off (`0`, `off`, `false`) while the other fusions stay on.
pub const ATTENTION_ENV: &str = "SCORELENS_GRAPH_ATTENTION";

/// Whether attention fusion is on (see [`ATTENTION_ENV`]).
pub fn enabled_from_env() -> bool {
    !super::fuse::switched_off(ATTENTION_ENV)
}

/// An attention of the primal program: the values it reads and the nodes that compute it.
#[derive(Debug, Clone)]
pub struct AttentionPattern {
    pub spec: Attention,
    pub q: ValueId,
    pub k: ValueId,
    pub v: ValueId,
    /// The scale's constant operand and the op applying it (None: unscaled).
    pub scale: Option<(ValueId, BinaryOp)>,
    /// The softmax's output.
    pub probs: ValueId,
    /// The first product, the scale (if any), the softmax, the second product.
    pub nodes: Vec<NodeId>,
}

/// A product's A operand read as one contiguous block of `lead` [m, k] matrices, not transposed (the probabilities
/// as the second product reads them).
fn contiguous_a(mm: &MatMul) -> bool {
    !mm.a.transposed && (mm.lead == 1 || mm.a.lead_stride == mm.m * mm.k)
}

/// The attentions computed by `nodes` (primal or constant streams).
pub fn find_attentions(g: &Graph, nodes: &[NodeId]) -> Vec<AttentionPattern> {
    let none_kept = HashSet::new();
    let uses = Uses::of(g, nodes, &none_kept);
    let mut found = Vec::new();
    for &s in nodes {
        let Op::Softmax { outer, n, inner: 1 } = g.nodes[s].op else { continue };
        let probs = g.nodes[s].output;
        if g.values[probs].stream != Stream::Primal {
            continue;
        }
        let mut chain = Vec::new();
        let mut logits = g.nodes[s].inputs[0];
        let mut scale = None;
        let mut factor = 1.0;
        if let Some(sc) = uses.producer(logits) {
            if let Op::Binary(op @ (BinaryOp::Mul | BinaryOp::Div)) = g.nodes[sc].op {
                let ins = &g.nodes[sc].inputs;
                let pick = match op {
                    BinaryOp::Mul if scalar(g, ins[1]).is_some() => Some((ins[0], ins[1])),
                    BinaryOp::Mul if scalar(g, ins[0]).is_some() => Some((ins[1], ins[0])),
                    BinaryOp::Div if scalar(g, ins[1]).is_some() => Some((ins[0], ins[1])),
                    _ => None,
                };
                if let Some((x, c)) = pick.filter(|&(x, _)| g.values[x].shape == g.values[logits].shape) {
                    let value = scalar(g, c).unwrap();
                    factor = if op == BinaryOp::Div { 1.0 / value } else { value };
                    if factor.is_finite() {
                        scale = Some((c, op));
                        chain.push(sc);
                        logits = x;
                    }
                }
            }
        }
        let Some(m1) = uses.producer(logits) else { continue };
        let Op::MatMul(mm1) = g.nodes[m1].op else { continue };
        if mm1.lead * mm1.m != outer || mm1.n != n || g.values[logits].numel() != mm1.lead * mm1.m * mm1.n {
            continue;
        }
        let second = uses.readers(probs).iter().copied().find(|&c| {
            let node = &g.nodes[c];
            matches!(node.op, Op::MatMul(mm2)
                if node.inputs[0] == probs && node.inputs[1] != probs && mm2.lead == mm1.lead && mm2.m == mm1.m
                    && mm2.k == mm1.n && contiguous_a(&mm2))
        });
        let Some(m2) = second else { continue };
        let Op::MatMul(mm2) = g.nodes[m2].op else { unreachable!() };
        let spec = Attention {
            lead: mm1.lead,
            lq: mm1.m,
            lk: mm1.n,
            dk: mm1.k,
            dv: mm2.n,
            q: mm1.a,
            k: mm1.b,
            v: mm2.b,
            scale: factor,
        };
        let mut nodes = vec![m1];
        nodes.extend(chain);
        nodes.extend([s, m2]);
        let (q, k, v) = (g.nodes[m1].inputs[0], g.nodes[m1].inputs[1], g.nodes[m2].inputs[1]);
        found.push(AttentionPattern { spec, q, k, v, scale, probs, nodes });
    }
    found
}

/// Replaces, in `nodes`, each chain by its fused node (appended to the graph) at the position of the chain's last
/// node, and drops the chain's other nodes.
fn splice(g: &mut Graph, nodes: &[NodeId], fused: Vec<(Vec<NodeId>, Node)>) -> Vec<NodeId> {
    let position: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut replace: HashMap<usize, NodeId> = HashMap::new();
    let mut drop: HashSet<usize> = HashSet::new();
    for (chain, node) in fused {
        let last = chain.iter().map(|n| position[n]).max().unwrap();
        drop.extend(chain.iter().map(|n| position[n]));
        g.nodes.push(node);
        replace.insert(last, g.nodes.len() - 1);
    }
    (0..nodes.len())
        .filter_map(|i| match replace.get(&i) {
            Some(&n) => Some(n),
            None if drop.contains(&i) => None,
            None => Some(nodes[i]),
        })
        .collect()
}

/// Fuses the attentions of `patterns` that `nodes` compute whole into [`Op::Attention`] nodes; `kept` are values
/// read after the list.
pub fn fuse_forward(
    g: &mut Graph,
    nodes: &[NodeId],
    kept: &HashSet<ValueId>,
    patterns: &[AttentionPattern],
) -> Vec<NodeId> {
    let uses = Uses::of(g, nodes, kept);
    let listed: HashSet<NodeId> = nodes.iter().copied().collect();
    let mut fused = Vec::new();
    for p in patterns {
        if !p.nodes.iter().all(|n| listed.contains(n)) {
            continue;
        }
        // Every value but the last is read once, by the next node of the chain, and not after the list.
        let private = p.nodes.windows(2).all(|w| uses.only(g.nodes[w[0]].output) == Some(w[1]));
        if !private {
            continue;
        }
        let last = *p.nodes.last().unwrap();
        let node = Node {
            name: g.nodes[last].name.clone(),
            op: Op::Attention(p.spec),
            inputs: vec![p.q, p.k, p.v],
            output: g.nodes[last].output,
        };
        fused.push((p.nodes.clone(), node));
    }
    splice(g, nodes, fused)
}

/// Fuses the tangents of the attentions of `patterns` in the tangent program `nodes` into [`Op::AttentionTangent`]
/// nodes; `kept` are values read after the list.
pub fn fuse_tangents(
    g: &mut Graph,
    nodes: &[NodeId],
    kept: &HashSet<ValueId>,
    patterns: &[AttentionPattern],
) -> Vec<NodeId> {
    let uses = Uses::of(g, nodes, kept);
    let tangent = |v: ValueId| g.values[v].stream == Stream::Tangent;
    let mut fused = Vec::new();
    for p in patterns {
        let Op::MatMul(mm1) = g.nodes[p.nodes[0]].op else { continue };
        let Op::MatMul(mm2) = g.nodes[*p.nodes.last().unwrap()].op else { continue };
        let same_sizes = |a: &MatMul, b: &MatMul| (a.m, a.n, a.k, a.lead) == (b.m, b.n, b.k, b.lead);
        let Some(st) = uses
            .readers(p.probs)
            .iter()
            .copied()
            .find(|&n| matches!(g.nodes[n].op, Op::SoftmaxTangent { .. }) && g.nodes[n].inputs[0] == p.probs)
        else {
            continue;
        };
        let mut chain = vec![st];
        let ds = g.nodes[st].inputs[1];
        // The scale: the same op with the same constant as the primal's.
        let ds0 = match p.scale {
            Some((c, op)) => {
                let Some(sc) = uses.producer(ds) else { continue };
                let node = &g.nodes[sc];
                if !matches!(node.op, Op::Binary(b) if b == op)
                    || node.inputs[1] != c
                    || uses.only(node.inputs[0]) != Some(sc)
                {
                    continue;
                }
                if uses.only(ds) != Some(st) {
                    continue;
                }
                chain.push(sc);
                node.inputs[0]
            }
            None if uses.only(ds) == Some(st) => ds,
            None => continue,
        };
        // dS₀ = dQ·K + Q·dK (either term alone when one operand is constant in x).
        let Some(d0) = uses.producer(ds0) else { continue };
        let terms: Vec<NodeId> = match g.nodes[d0].op {
            Op::Binary(BinaryOp::Add) => {
                let ins = g.nodes[d0].inputs.clone();
                if ins[0] == ins[1] || ins.iter().any(|&t| uses.only(t) != Some(d0)) {
                    continue;
                }
                chain.push(d0);
                match (uses.producer(ins[0]), uses.producer(ins[1])) {
                    (Some(a), Some(b)) => vec![a, b],
                    _ => continue,
                }
            }
            Op::MatMul(_) => vec![d0],
            _ => continue,
        };
        let mut tangents = AttentionTangents { dq: None, dk: None, dv: None };
        let mut operands: [Option<ValueId>; 3] = [None; 3];
        let mut ok = true;
        for &t in &terms {
            let node = &g.nodes[t];
            let Op::MatMul(mm) = node.op else {
                ok = false;
                break;
            };
            let (a, b) = (node.inputs[0], node.inputs[1]);
            if !same_sizes(&mm, &mm1) {
                ok = false;
            } else if tangent(a) && b == p.k && mm.b == mm1.b && tangents.dq.is_none() {
                tangents.dq = Some(mm.a);
                operands[0] = Some(a);
            } else if tangent(b) && a == p.q && mm.a == mm1.a && tangents.dk.is_none() {
                tangents.dk = Some(mm.b);
                operands[1] = Some(b);
            } else {
                ok = false;
            }
            chain.push(t);
        }
        if !ok {
            continue;
        }
        // dO = dP·V (+ P·dV).
        let dp = g.nodes[st].output;
        let Some(u1) = uses.only(dp) else { continue };
        let first_ok = matches!(g.nodes[u1].op, Op::MatMul(mm)
            if same_sizes(&mm, &mm2) && mm.b == mm2.b && contiguous_a(&mm))
            && g.nodes[u1].inputs == [dp, p.v];
        if !first_ok {
            continue;
        }
        chain.push(u1);
        let u1_out = g.nodes[u1].output;
        let add = uses.only(u1_out).filter(|&a| {
            let node = &g.nodes[a];
            matches!(node.op, Op::Binary(BinaryOp::Add)) && node.inputs[0] == u1_out && node.inputs[1] != u1_out
        });
        let mut last = u1_out;
        if let Some(a) = add {
            let other = g.nodes[a].inputs[1];
            let Some(u2) = uses.producer(other) else { continue };
            let node = &g.nodes[u2];
            let second_ok = matches!(node.op, Op::MatMul(mm)
                if same_sizes(&mm, &mm2) && mm.a == mm2.a)
                && node.inputs[0] == p.probs
                && tangent(node.inputs[1])
                && uses.only(other) == Some(a);
            if second_ok {
                if let Op::MatMul(mm) = node.op {
                    tangents.dv = Some(mm.b);
                }
                operands[2] = Some(node.inputs[1]);
                chain.extend([u2, a]);
                last = g.nodes[a].output;
            }
        }
        let mut inputs = vec![p.q, p.k, p.v, p.probs];
        inputs.extend(operands.iter().flatten());
        let node =
            Node { name: g.nodes[st].name.clone(), op: Op::AttentionTangent(p.spec, tangents), inputs, output: last };
        fused.push((chain, node));
    }
    splice(g, nodes, fused)
}

/// Fuses, in the adjoint program `nodes`, the product Ō·Vᵀ, the softmax linearisation and the scale of each
/// attention of `patterns` into an [`Op::AttentionScoreAdjoint`] node; `kept` are values read after the list.
pub fn fuse_adjoints(
    g: &mut Graph,
    nodes: &[NodeId],
    kept: &HashSet<ValueId>,
    patterns: &[AttentionPattern],
) -> Vec<NodeId> {
    let uses = Uses::of(g, nodes, kept);
    let mut fused = Vec::new();
    for p in patterns {
        let a = p.spec;
        for &st in uses.readers(p.probs) {
            if !matches!(g.nodes[st].op, Op::SoftmaxTangent { .. }) || g.nodes[st].inputs[0] != p.probs {
                continue;
            }
            let dp = g.nodes[st].inputs[1];
            let Some(m) = uses.producer(dp) else { continue };
            // dP̄ = Ō · Vᵀ: Ō contiguous per tangent row, V as the primal read it, transposed.
            let ct = g.nodes[m].inputs[0];
            let product_ok = matches!(g.nodes[m].op, Op::MatMul(mm)
                if (mm.m, mm.n, mm.k, mm.lead) == (a.lq, a.lk, a.dv, a.lead)
                    && !mm.a.transposed
                    && (a.lead == 1 || mm.a.lead_stride == a.lq * a.dv)
                    && mm.b == crate::graph::ir::MatrixLayout { transposed: !a.v.transposed, ..a.v })
                && g.nodes[m].inputs[1] == p.v
                && g.values[ct].stream == Stream::Tangent
                && g.values[ct].numel() == a.lead * a.lq * a.dv
                && uses.only(dp) == Some(st);
            if !product_ok {
                continue;
            }
            let mut chain = vec![m, st];
            let mut last = g.nodes[st].output;
            if let Some((c, op)) = p.scale {
                let Some(sc) = uses.only(last) else { continue };
                let node = &g.nodes[sc];
                if !matches!(node.op, Op::Binary(b) if b == op) || node.inputs != [last, c] {
                    continue;
                }
                chain.push(sc);
                last = node.output;
            }
            let node = Node {
                name: g.nodes[st].name.clone(),
                op: Op::AttentionScoreAdjoint(a),
                inputs: vec![p.v, p.probs, ct],
                output: last,
            };
            fused.push((chain, node));
        }
    }
    splice(g, nodes, fused)
}
