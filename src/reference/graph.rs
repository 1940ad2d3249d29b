//! The f64 twin of the graph executor: runs a node list over host buffers with the primitive twins of
//! [`super::graph_ops`]. Constants are upcast from their f32 data; primal values hold `points` rows, tangent
//! values `points · rep` rows.

use crate::graph::ir::{Graph, NodeId, Op, Stream, ValueId};
use crate::ops::graph::RowMap;
use crate::reference::graph_ops as twin;

/// Host values of a graph run: `values[id]` once computed or given.
pub struct HostRun<'g> {
    pub graph: &'g Graph,
    pub points: usize,
    pub rep: usize,
    pub values: Vec<Option<Vec<f64>>>,
}

impl<'g> HostRun<'g> {
    pub fn new(graph: &'g Graph, points: usize, rep: usize) -> Self {
        let values =
            graph.values.iter().map(|v| v.data.as_ref().map(|d| d.iter().map(|&x| x as f64).collect())).collect();
        HostRun { graph, points, rep, values }
    }

    pub fn set(&mut self, id: ValueId, data: Vec<f64>) {
        assert_eq!(data.len(), self.rows(id) * self.graph.values[id].numel(), "value `{}`", self.graph.values[id].name);
        self.values[id] = Some(data);
    }

    pub fn get(&self, id: ValueId) -> &[f64] {
        self.values[id].as_deref().unwrap_or_else(|| panic!("value `{}` not computed", self.graph.values[id].name))
    }

    /// Rows a value of this stream has in the run.
    pub fn rows(&self, id: ValueId) -> usize {
        match self.graph.values[id].stream {
            Stream::Const => 1,
            Stream::Primal => self.points,
            Stream::Tangent => self.points * self.rep,
        }
    }

    fn row_map(&self, id: ValueId, out: Stream) -> RowMap {
        self.graph.row_map(id, out, self.rep)
    }

    pub fn run(&mut self, nodes: &[NodeId]) {
        for &n in nodes {
            let node = &self.graph.nodes[n];
            let out_value = &self.graph.values[node.output];
            let (rows, out_stream) = (self.rows(node.output), out_value.stream);
            let mut out = vec![0.0; rows * out_value.numel()];
            let input = |i: usize| self.get(node.inputs[i]);
            match &node.op {
                Op::Unary { f, derivative } => twin::record_unary(*f, *derivative, input(0), &mut out),
                Op::Binary(op) => {
                    let operand = |i: usize| {
                        let id = node.inputs[i];
                        (self.get(id), self.graph.values[id].shape.as_slice(), self.row_map(id, out_stream))
                    };
                    twin::record_binary(*op, rows, &out_value.shape, operand(0), operand(1), &mut out);
                }
                Op::Reshape => out.copy_from_slice(input(0)),
                Op::Linear(maps) => {
                    for (j, map) in maps.iter().enumerate() {
                        twin::record_sparse_map(rows, map, input(j), &mut out, j > 0);
                    }
                }
                Op::MatMul(mm) => {
                    let spec = mm.batched(
                        rows,
                        self.row_map(node.inputs[0], out_stream),
                        self.row_map(node.inputs[1], out_stream),
                    );
                    twin::record_batched_matmul(&spec, input(0), input(1), &mut out);
                }
                Op::Conv(spec) => {
                    let spec = crate::ops::graph::Conv2d { rows, ..*spec };
                    twin::record_conv2d(&spec, input(0), input(1), &mut out);
                }
                Op::FusedMatMul(mm, e) => {
                    let spec = mm.batched(
                        rows,
                        self.row_map(node.inputs[0], out_stream),
                        self.row_map(node.inputs[1], out_stream),
                    );
                    match e.act_a {
                        // The kernels apply the activation to A as they load it.
                        Some(f) => {
                            let mut a = vec![0.0; input(0).len()];
                            twin::record_unary(f, false, input(0), &mut a);
                            twin::record_batched_matmul(&spec, &a, input(1), &mut out);
                        }
                        None => twin::record_batched_matmul(&spec, input(0), input(1), &mut out),
                    }
                    let bias = e.bias.then(|| input(2));
                    let deriv = e.deriv.map(|f| {
                        let pre = node.inputs[e.pre_input()];
                        (f, self.get(pre), self.row_map(pre, out_stream))
                    });
                    let addend = e.addend.then(|| self.get(node.inputs[e.pre_input()]));
                    let n = mm.n;
                    let column = |i: usize| i % n;
                    let mut store = twin::StoreEpilogue { bias, addend, act: e.act, deriv, scale: None };
                    if e.scale {
                        let scale = node.inputs[e.scale_input()];
                        store.scale = Some((self.get(scale), self.row_map(scale, out_stream)));
                    }
                    twin::record_store_epilogue(rows, out_value.numel(), &column, &store, &mut out);
                }
                Op::FusedConv(spec, e) => {
                    let spec = crate::ops::graph::Conv2d { rows, ..*spec };
                    twin::record_conv2d(&spec, input(0), input(1), &mut out);
                    let bias = e.bias.then(|| input(2));
                    let plane = spec.h_out * spec.w_out;
                    let column = |i: usize| i / plane;
                    let store = twin::StoreEpilogue { bias, addend: None, act: e.act, deriv: None, scale: None };
                    twin::record_store_epilogue(rows, out_value.numel(), &column, &store, &mut out);
                }
                Op::Norm { size, eps } => twin::record_norm(out.len() / size, *size, *eps as f64, input(0), &mut out),
                Op::FusedNorm { size, eps, store } => {
                    let mut next = 1..;
                    let scale = store.scale.then(|| input(next.next().unwrap()));
                    let shift = store.shift.then(|| input(next.next().unwrap()));
                    let affine = (out_value.numel(), store.channels, store.inner, scale, shift, store.act);
                    twin::record_norm_affine(out.len() / size, *size, *eps as f64, input(0), affine, &mut out);
                }
                Op::NormTangent { size, eps } => {
                    let groups = out_value.numel() / size;
                    let rep = rows / self.rows(node.inputs[0]);
                    twin::record_norm_tangent(rows, rep, groups, *size, *eps as f64, input(0), input(1), &mut out);
                }
                Op::Softmax { outer, n, inner } => twin::record_softmax(rows, *outer, *n, *inner, input(0), &mut out),
                Op::Attention(a) => {
                    let operand = |i: usize, layout| {
                        let id = node.inputs[i];
                        (self.get(id), crate::graph::ir::Attention::map(layout, self.row_map(id, out_stream)))
                    };
                    let (q, k, v) = (operand(0, a.q), operand(1, a.k), operand(2, a.v));
                    crate::reference::attention::record_attention(&a.shape(rows), q, k, v, &mut out);
                }
                Op::AttentionTangent(a, t) => {
                    let operand = |i: usize, layout| {
                        let id = node.inputs[i];
                        (self.get(id), crate::graph::ir::Attention::map(layout, self.row_map(id, out_stream)))
                    };
                    let (q, k, v) = (operand(0, a.q), operand(1, a.k), operand(2, a.v));
                    let p = (self.get(node.inputs[3]), self.row_map(node.inputs[3], out_stream));
                    let mut next = 4..;
                    let mut tangent = |layout: Option<_>| layout.map(|l| operand(next.next().unwrap(), l));
                    let tangents = [tangent(t.dq), tangent(t.dk), tangent(t.dv)];
                    crate::reference::attention::record_attention_tangent(
                        &a.shape(rows),
                        q,
                        k,
                        v,
                        p,
                        tangents,
                        &mut out,
                    );
                }
                Op::AttentionScoreAdjoint(a) => {
                    let id = node.inputs[0];
                    let v = (self.get(id), crate::graph::ir::Attention::map(a.v, self.row_map(id, out_stream)));
                    let p = (self.get(node.inputs[1]), self.row_map(node.inputs[1], out_stream));
                    crate::reference::attention::record_attention_score_adjoint(
                        &a.shape(rows),
                        v,
                        p,
                        input(2),
                        &mut out,
                    );
                }
                Op::SoftmaxTangent { outer, n, inner } => {
                    let rep = rows / self.rows(node.inputs[0]);
                    twin::record_softmax_tangent(rows, rep, *outer, *n, *inner, input(0), input(1), &mut out);
                }
            }
            self.values[node.output] = Some(out);
        }
    }
}

/// A whole pass of a score network on the host in f64 (the twin of `GraphExecutor::run`): x [points, D], one t
/// per point (or one for all), tangents [points, rep, D] for J·V and Jᵀ·U.
pub fn run_network(
    net: &crate::graph::ScoreNetwork,
    pass: crate::graph::exec::Pass,
    x: &[f64],
    t: &[f64],
    tangents: Option<(&[f64], usize)>,
) -> Vec<f64> {
    use crate::graph::exec::Pass;
    let p = &net.program;
    let g = &p.graph;
    let d = net.dim();
    let points = x.len() / d;
    let rep = tangents.map_or(1, |(_, r)| r);
    let t: Vec<f64> = (0..points).map(|i| t[if t.len() == 1 { 0 } else { i }]).collect();
    let mut run = HostRun::new(g, points, rep);
    run.set(g.inputs[0], x.to_vec());
    for (k, values) in net.row_inputs(&t).into_iter().enumerate() {
        run.set(g.inputs[k + 1], values);
    }
    run.run(&p.primal);
    if pass == Pass::Score {
        return run.get(g.output).to_vec();
    }
    run.run(&p.residuals);
    let (v, _) = tangents.expect("tangents for a product");
    if pass == Pass::Jvp {
        run.set(p.dx, v.to_vec());
        run.run(&p.jvp);
        run.get(p.dy).to_vec()
    } else {
        run.set(p.y_bar, v.to_vec());
        run.run(&p.vjp);
        run.get(p.x_bar).to_vec()
    }
}
