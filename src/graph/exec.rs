//! The graph executor on the GPU: weights and sparse maps resident, a pass (score, J·V or Jᵀ·U) recorded node
//! by node over chunks of points planned by the scheduler, one submit per chunk. Its f64 twin is
//! crate::reference::graph::HostRun, which runs the same node lists.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{BufferRole, GpuContext, Recorder};
use crate::graph::ir::{Graph, NodeId, Op, Stream, ValueId};
use crate::graph::ScoreNetwork;
use crate::ops::graph::{self as kernels, BatchedMatmul, MatrixMap, Operand, RowMap, SparseMapBuffers};
use crate::ops::matmul::{record_matmul, Epilogue, MatmulShape};
use crate::scheduler::{plan_chunks, DeviceBounds, JobOptions, RowCost};

/// Which program a run executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// s(x, t).
    Score,
    /// J·V for `rep` tangents per point.
    Jvp,
    /// Jᵀ·U for `rep` cotangents per point.
    Vjp,
}

/// A score network resident on one GPU.
pub struct GraphExecutor {
    ctx: Arc<GpuContext>,
    net: Arc<ScoreNetwork>,
    /// Uploaded constants (weights, folded tables), by value.
    consts: HashMap<ValueId, wgpu::Buffer>,
    /// Uploaded sparse maps, by (node, input).
    maps: HashMap<(NodeId, usize), SparseMapBuffers>,
}

impl GraphExecutor {
    pub fn new(ctx: Arc<GpuContext>, net: Arc<ScoreNetwork>) -> Result<Self> {
        let g = net.graph();
        let mut consts = HashMap::new();
        for (id, v) in g.values.iter().enumerate() {
            if let Some(data) = &v.data {
                consts.insert(id, ctx.upload(&format!("graph/{}", v.name), data.as_slice()));
            }
        }
        let mut maps = HashMap::new();
        for (n, node) in g.nodes.iter().enumerate() {
            if let Op::Linear(ms) = &node.op {
                for (j, m) in ms.iter().enumerate() {
                    maps.insert((n, j), kernels::upload_sparse_map(&ctx, &format!("graph/{}/map{j}", node.name), m));
                }
            }
        }
        Ok(GraphExecutor { ctx, net, consts, maps })
    }

    pub fn network(&self) -> &ScoreNetwork {
        &self.net
    }

    pub fn ctx(&self) -> &GpuContext {
        &self.ctx
    }

    fn nodes(&self, pass: Pass) -> Vec<NodeId> {
        let p = &self.net.program;
        match pass {
            Pass::Score => p.primal.clone(),
            Pass::Jvp => p.primal.iter().chain(&p.residuals).chain(&p.jvp).copied().collect(),
            Pass::Vjp => p.primal.iter().chain(&p.residuals).chain(&p.vjp).copied().collect(),
        }
    }

    /// Device bytes one point needs in `pass` with `rep` tangent rows.
    pub fn bytes_per_point(&self, pass: Pass, rep: usize) -> u64 {
        let g = self.net.graph();
        let floats: usize = self
            .nodes(pass)
            .iter()
            .map(|&n| {
                let v = &g.values[g.nodes[n].output];
                match v.stream {
                    Stream::Tangent => rep * v.numel(),
                    Stream::Primal => v.numel(),
                    Stream::Const => 0,
                }
            })
            .sum();
        let io = (2 + 2 * rep) * self.net.dim() + 4;
        4 * (floats + io) as u64
    }

    /// Runs `pass` over points with rows `x` [points, D] and times `t` (one per point); `tangents`
    /// [points, rep, D] for J·V and Jᵀ·U. Returns the score [points, D] or the products [points, rep, D].
    pub fn run(
        &self,
        pass: Pass,
        x: &[f32],
        t: &[f32],
        tangents: Option<(&[f32], usize)>,
        options: JobOptions,
    ) -> Result<Vec<f32>> {
        let d = self.net.dim();
        let points = x.len() / d;
        let rep = tangents.map_or(1, |(_, r)| r);
        if pass != Pass::Score && tangents.is_none_or(|(v, r)| v.len() != points * r * d) {
            return Err(Error::InvalidArgument(format!("{pass:?} needs [points, rep, {d}] tangents")));
        }
        let cost = RowCost {
            bytes_per_row: self.bytes_per_point(pass, rep),
            widest_row_bytes: 4 * rep as u64 * self.widest_value() as u64,
            fixed_bytes: self.resident_bytes(),
        };
        let bounds = DeviceBounds {
            memory_budget: options.memory_budget,
            max_binding_bytes: self.ctx.caps.max_binding_bytes(),
            max_rows_per_dispatch: (self.ctx.caps.max_workgroups_per_dimension() as u64).pow(2) / (rep as u64).max(1),
        };
        let chunks = plan_chunks(points, cost, bounds)?;
        let out_per_point = if pass == Pass::Score { d } else { rep * d };
        let mut out = vec![0f32; points * out_per_point];
        let nodes = self.nodes(pass);
        options.progress.start("graph", points);
        for (i, chunk) in chunks.iter().enumerate() {
            let label = format!("graph/{pass:?}/chunk{i}");
            let n = chunk.len();
            let t64: Vec<f64> = chunk.clone().map(|r| t[if t.len() == 1 { 0 } else { r }] as f64).collect();
            let values = self.record_chunk(
                &label,
                &nodes,
                pass,
                n,
                rep,
                &x[chunk.start * d..chunk.end * d],
                &t64,
                tangents.map(|(v, r)| &v[chunk.start * r * d..chunk.end * r * d]),
            )?;
            out[chunk.start * out_per_point..chunk.end * out_per_point].copy_from_slice(&values);
            options.progress.advance(n);
        }
        options.progress.finish();
        Ok(out)
    }

    fn widest_value(&self) -> usize {
        self.net.graph().values.iter().map(|v| v.numel()).max().unwrap_or(1)
    }

    fn resident_bytes(&self) -> u64 {
        let consts: u64 = self.consts.values().map(|b| b.size()).sum();
        let maps: u64 = self.maps.values().map(|m| m.row_start.size() + m.column.size() + m.weight.size()).sum();
        consts + maps
    }

    #[allow(clippy::too_many_arguments)]
    fn record_chunk(
        &self,
        label: &str,
        nodes: &[NodeId],
        pass: Pass,
        points: usize,
        rep: usize,
        x: &[f32],
        t: &[f64],
        tangents: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let ctx = &*self.ctx;
        let p = &self.net.program;
        let g = &p.graph;
        let rows_of = |id: ValueId| match g.values[id].stream {
            Stream::Const => 1,
            Stream::Primal => points,
            Stream::Tangent => points * rep,
        };
        let mut buffers: HashMap<ValueId, wgpu::Buffer> = HashMap::new();
        // Inputs: x, then the per-row time input and score-conversion scalars.
        let inputs = self.net.row_inputs(t);
        buffers.insert(g.inputs[0], ctx.upload(&format!("{label}/x"), x));
        for (k, values) in inputs.iter().enumerate() {
            let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            buffers.insert(g.inputs[k + 1], ctx.upload(&format!("{label}/input{}", k + 1), &data));
        }
        let result = match pass {
            Pass::Score => g.output,
            Pass::Jvp => {
                buffers.insert(p.dx, ctx.upload(&format!("{label}/dx"), tangents.unwrap()));
                p.dy
            }
            Pass::Vjp => {
                buffers.insert(p.y_bar, ctx.upload(&format!("{label}/y_bar"), tangents.unwrap()));
                p.x_bar
            }
        };
        let mut rec = Recorder::new(ctx, label);
        for &n in nodes {
            let node = &g.nodes[n];
            let out_v = &g.values[node.output];
            if let Op::Reshape = node.op {
                let input = self.buffer(&buffers, node.inputs[0])?.clone();
                buffers.insert(node.output, input);
                continue;
            }
            let rows = rows_of(node.output);
            let out =
                ctx.buffer(&format!("{label}/{}", out_v.name), (rows * out_v.numel() * 4) as u64, BufferRole::Storage);
            self.record_node(&mut rec, g, n, rows, rep, &buffers, &out)?;
            buffers.insert(node.output, out);
        }
        let len = rows_of(result) * g.values[result].numel();
        let readback = ctx.buffer(&format!("{label}/readback"), (len * 4) as u64, BufferRole::Readback);
        rec.copy(self.buffer(&buffers, result)?, &readback, (len * 4) as u64);
        let index = rec.submit();
        ctx.read_mapped(&readback, len, Some(index))
    }

    fn buffer<'b>(&'b self, buffers: &'b HashMap<ValueId, wgpu::Buffer>, id: ValueId) -> Result<&'b wgpu::Buffer> {
        buffers.get(&id).or_else(|| self.consts.get(&id)).ok_or_else(|| Error::Kernel {
            kernel: "graph".into(),
            message: format!("value `{}` used before it is computed", self.net.graph().values[id].name),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn record_node(
        &self,
        rec: &mut Recorder,
        g: &Graph,
        n: NodeId,
        rows: usize,
        rep: usize,
        buffers: &HashMap<ValueId, wgpu::Buffer>,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        let node = &g.nodes[n];
        let out_v = &g.values[node.output];
        let input = |i: usize| self.buffer(buffers, node.inputs[i]);
        let row_map = |i: usize| -> RowMap {
            let v = &g.values[node.inputs[i]];
            match (v.stream, out_v.stream) {
                (Stream::Const, _) => RowMap::shared(),
                (Stream::Primal, Stream::Tangent) => RowMap::repeated(v.numel(), rep),
                _ => RowMap::rows(v.numel()),
            }
        };
        match &node.op {
            Op::Unary { f, derivative } => {
                kernels::record_unary(rec, *f, *derivative, rows * out_v.numel(), input(0)?, out)
            }
            Op::Binary(op) => {
                let operand = |i: usize| -> Result<Operand> {
                    Ok(Operand { buffer: input(i)?, shape: &g.values[node.inputs[i]].shape, rows: row_map(i) })
                };
                kernels::record_binary(rec, *op, rows, &out_v.shape, operand(0)?, operand(1)?, out)
            }
            Op::Reshape => unreachable!("reshapes alias their input"),
            Op::Linear(maps) => {
                for j in 0..maps.len() {
                    kernels::record_sparse_map(rec, rows, &self.maps[&(n, j)], input(j)?, out, j > 0)?;
                }
                Ok(())
            }
            Op::MatMul(mm) => {
                let (ma, mb) = (row_map(0), row_map(1));
                // Rows times weights: one large product on the tuned kernels.
                let a_contiguous =
                    ma == RowMap::rows(mm.lead * mm.m * mm.k) && (mm.lead == 1 || mm.a.lead_stride == mm.m * mm.k);
                if a_contiguous && !mm.a.transposed && mb == RowMap::shared() && mm.b.lead_stride == 0 {
                    let mut shape = MatmulShape::new(rows * mm.lead * mm.m, mm.n, mm.k);
                    if mm.b.transposed {
                        shape = shape.with_trans_b();
                    }
                    return record_matmul(
                        rec,
                        &shape,
                        input(0)?,
                        input(1)?,
                        Epilogue::act(crate::Activation::Identity),
                        out,
                    );
                }
                let spec = BatchedMatmul {
                    m: mm.m,
                    n: mm.n,
                    k: mm.k,
                    rows,
                    lead: mm.lead,
                    a: MatrixMap { rows: ma, lead_stride: mm.a.lead_stride as u32, transposed: mm.a.transposed },
                    b: MatrixMap { rows: mb, lead_stride: mm.b.lead_stride as u32, transposed: mm.b.transposed },
                };
                kernels::record_batched_matmul(rec, &spec, input(0)?, input(1)?, out)
            }
            Op::Conv(spec) => {
                let spec = kernels::Conv2d { rows, ..*spec };
                kernels::record_conv2d(rec, &spec, input(0)?, input(1)?, out)
            }
            Op::Norm { size, eps } => {
                kernels::record_norm(rec, rows * out_v.numel() / size, *size, *eps, input(0)?, out)
            }
            Op::NormTangent { size, eps } => {
                let rep = row_map(0).rep as usize;
                kernels::record_norm_tangent(
                    rec,
                    rows,
                    rep,
                    out_v.numel() / size,
                    *size,
                    *eps,
                    input(0)?,
                    input(1)?,
                    out,
                )
            }
            Op::Softmax { outer, n, inner } => kernels::record_softmax(rec, rows, *outer, *n, *inner, input(0)?, out),
            Op::SoftmaxTangent { outer, n, inner } => {
                let rep = row_map(0).rep as usize;
                kernels::record_softmax_tangent(rec, rows, rep, *outer, *n, *inner, input(0)?, input(1)?, out)
            }
        }
    }
}
