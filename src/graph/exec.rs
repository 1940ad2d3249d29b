//! The graph executor on the GPU: weights and sparse maps resident, a pass (score, J·V or Jᵀ·U) recorded node
//! by node over chunks of points planned by the scheduler, one submit per chunk. Its f64 twin is
//! crate::reference::graph::HostRun, which runs the same node lists.
//!
//! The executor runs the fused programs of crate::graph::fuse (products with their bias, activation or derivative
//! factor in one dispatch), and plans the buffers of every recorded node list ([`BufferPlan`]): a value's buffer
//! goes back to a pool after its last read and serves later values, so a pass holds only the values live at once,
//! and the scheduler's per-point memory estimate is that plan's total.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{BufferRole, GpuContext, Recorder};
use crate::graph::fuse::{self, FusedProgram};
use crate::graph::ir::{Graph, NodeId, Op, StoreEpilogue, Stream, ValueId};
use crate::graph::ScoreNetwork;
use crate::ops::graph::{self as kernels, Operand, RowMap, SparseMapBuffers};
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

/// Environment variable that turns buffer reuse off (`0`, `off`, `false`): every value keeps its own buffer.
pub const MEMORY_PLAN_ENV: &str = "SCORELENS_GRAPH_MEMORY_PLAN";

/// How the executor runs a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphOptions {
    /// Fuse bias adds, activations and derivative factors into products (crate::graph::fuse).
    pub fusion: bool,
    /// Reuse the buffers of values whose last read has passed.
    pub memory_plan: bool,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions { fusion: true, memory_plan: true }
    }
}

impl GraphOptions {
    /// The defaults, with `SCORELENS_GRAPH_FUSION=0` or `SCORELENS_GRAPH_MEMORY_PLAN=0` turning a part off.
    pub fn from_env() -> Self {
        GraphOptions { fusion: fuse::enabled_from_env(), memory_plan: !fuse::switched_off(MEMORY_PLAN_ENV) }
    }
}

/// A score network resident on one GPU.
pub struct GraphExecutor {
    ctx: Arc<GpuContext>,
    net: Arc<ScoreNetwork>,
    options: GraphOptions,
    /// The node lists it runs, over the network's graph extended with fused nodes.
    fused: FusedProgram,
    /// The inputs of the network's hidden units (see [`GraphLinearization::pre_activations`]).
    units: Vec<ValueId>,
    /// Uploaded constants (weights, folded tables), by value.
    consts: HashMap<ValueId, wgpu::Buffer>,
    /// Uploaded sparse maps, by (node, input).
    maps: HashMap<(NodeId, usize), SparseMapBuffers>,
    /// Convolutions with one group, run as sparse maps around a product on the tuned matmul kernels.
    conv_plans: HashMap<NodeId, ConvPlan>,
}

/// A convolution (groups = 1) as gather → product with the weight → scatter, per point row:
/// Conv: patches [Ho·Wo, C·k] (im2col) · Wᵀ → [Ho·Wo, C_out] → transposed to [C_out, Ho·Wo];
/// ConvTranspose: xᵀ [Hi·Wi, C_in] · W → [Hi·Wi, C_out·k] → col2im to [C_out, Ho, Wo].
/// The product is one large matmul over all rows of a chunk (M = rows · pixels), where the tuned kernels run
/// several times faster than a direct convolution.
struct ConvPlan {
    gather: SparseMapBuffers,
    scatter: SparseMapBuffers,
    /// Product rows per point row, inner size, columns; whether the weight is read transposed.
    pixels: usize,
    inner: usize,
    width: usize,
    trans_b: bool,
}

impl ConvPlan {
    fn new(ctx: &GpuContext, label: &str, spec: &kernels::Conv2d) -> Option<ConvPlan> {
        if spec.groups != 1 {
            return None;
        }
        let taps = spec.kernel[0] * spec.kernel[1];
        let (gather, scatter, pixels, inner, width, trans_b) = if spec.transposed {
            let pixels = spec.h_in * spec.w_in;
            let (_, gather) = crate::graph::layout::transpose(&[spec.c_in, pixels], &[1, 0]);
            (gather, crate::graph::layout::col2im(spec), pixels, spec.c_in, spec.c_out * taps, false)
        } else {
            let pixels = spec.h_out * spec.w_out;
            let (_, scatter) = crate::graph::layout::transpose(&[pixels, spec.c_out], &[1, 0]);
            (crate::graph::layout::im2col(spec), scatter, pixels, spec.c_in * taps, spec.c_out, true)
        };
        Some(ConvPlan {
            gather: kernels::upload_sparse_map(ctx, &format!("{label}/gather"), &gather),
            scatter: kernels::upload_sparse_map(ctx, &format!("{label}/scatter"), &scatter),
            pixels,
            inner,
            width,
            trans_b,
        })
    }
}

impl GraphExecutor {
    pub fn new(ctx: Arc<GpuContext>, net: Arc<ScoreNetwork>) -> Result<Self> {
        Self::with_options(ctx, net, GraphOptions::from_env())
    }

    pub fn with_options(ctx: Arc<GpuContext>, net: Arc<ScoreNetwork>, options: GraphOptions) -> Result<Self> {
        let units = activation_units(&net);
        let fused = fuse::fuse_program(&net.program, &units, options.fusion);
        let g = &fused.graph;
        let used: HashSet<NodeId> =
            fused.score.iter().chain(&fused.linearisation).chain(&fused.jvp).chain(&fused.vjp).copied().collect();
        let mut consts = HashMap::new();
        for (id, v) in g.values.iter().enumerate() {
            if let Some(data) = &v.data {
                consts.insert(id, ctx.upload(&format!("graph/{}", v.name), data.as_slice()));
            }
        }
        let mut maps = HashMap::new();
        let mut conv_plans = HashMap::new();
        for &n in &used {
            let node = &g.nodes[n];
            match &node.op {
                Op::Linear(ms) => {
                    for (j, m) in ms.iter().enumerate() {
                        let label = format!("graph/{}/map{j}", node.name);
                        maps.insert((n, j), kernels::upload_sparse_map(&ctx, &label, m));
                    }
                }
                Op::Conv(spec) | Op::FusedConv(spec, _) => {
                    if let Some(plan) = ConvPlan::new(&ctx, &format!("graph/{}/conv", node.name), spec) {
                        conv_plans.insert(n, plan);
                    }
                }
                _ => {}
            }
        }
        Ok(GraphExecutor { ctx, net, options, fused, units, consts, maps, conv_plans })
    }

    pub fn options(&self) -> GraphOptions {
        self.options
    }

    /// The node lists the executor runs (fused or not, as its options say).
    pub fn program(&self) -> &FusedProgram {
        &self.fused
    }

    pub fn network(&self) -> &ScoreNetwork {
        &self.net
    }

    pub fn ctx(&self) -> &GpuContext {
        &self.ctx
    }

    /// Device bytes one point needs in `pass` with `rep` tangent rows: the buffer plan of the score, or the
    /// larger of the linearisation's plan and the values it keeps plus the products' plan.
    pub fn bytes_per_point(&self, pass: Pass, rep: usize) -> u64 {
        let f = &self.fused;
        let floats = match pass {
            Pass::Score => self.plan(&f.score, &HashSet::from([f.graph.output]), 1).total(),
            Pass::Jvp | Pass::Vjp => {
                let lin = self.plan(&f.linearisation, &f.kept, 1);
                let (nodes, out) =
                    if pass == Pass::Jvp { (&f.jvp, self.net.program.dy) } else { (&f.vjp, self.net.program.x_bar) };
                let products = self.plan(nodes, &HashSet::from([out]), rep).total();
                lin.total().max(lin.kept_total() + products)
            }
        };
        let io = (2 + 2 * rep) * self.net.dim() + 4;
        4 * (floats + io) as u64
    }

    /// Runs `pass` over points with rows `x` [points, D] and times `t` (one per point, or one for all);
    /// `tangents` [points, rep, D] for J·V and Jᵀ·U. Returns the score [points, D] or the products [points, rep, D].
    /// Points run in chunks that fit `options`' memory budget.
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
            max_rows_per_dispatch: (self.ctx.caps.max_workgroups_per_dimension() as u64 * 64) / (rep as u64).max(1),
        };
        let chunks = plan_chunks(points, cost, bounds)?;
        let out_per_point = if pass == Pass::Score { d } else { rep * d };
        let mut out = vec![0f32; points * out_per_point];
        options.progress.start("graph", points);
        for (i, chunk) in chunks.iter().enumerate() {
            let label = format!("graph/{pass:?}/chunk{i}");
            let xs = &x[chunk.start * d..chunk.end * d];
            let ts: Vec<f32> = if t.len() == 1 { t.to_vec() } else { t[chunk.clone()].to_vec() };
            let values = match pass {
                Pass::Score => {
                    let mut rec = Recorder::new(&self.ctx, &label);
                    let buffers = self.record_primal(&mut rec, &label, xs, &ts, false)?;
                    self.finish(rec, &label, &buffers[&self.fused.graph.output], chunk.len() * d)?
                }
                Pass::Jvp | Pass::Vjp => {
                    let lin = self.linearize(xs, &ts)?;
                    let v = tangents.unwrap().0;
                    let input =
                        self.ctx.upload(&format!("{label}/tangents"), &v[chunk.start * rep * d..chunk.end * rep * d]);
                    let len = chunk.len() * rep * d;
                    let result = self.ctx.buffer(&format!("{label}/result"), (len * 4) as u64, BufferRole::Storage);
                    let mut rec = Recorder::new(&self.ctx, &label);
                    if pass == Pass::Jvp {
                        lin.record_jvp(&mut rec, &input, rep, &result, false)?;
                    } else {
                        lin.record_vjp(&mut rec, &input, rep, &result)?;
                    }
                    self.finish(rec, &label, &result, len)?
                }
            };
            out[chunk.start * out_per_point..chunk.end * out_per_point].copy_from_slice(&values);
            options.progress.advance(chunk.len());
        }
        options.progress.finish();
        Ok(out)
    }

    /// Runs the network and its derivative factors at `x` (one submit) and keeps them on the device for J·V and
    /// Jᵀ·U products.
    pub fn linearize(&self, x: &[f32], t: &[f32]) -> Result<GraphLinearization<'_>> {
        let label = "graph/linearize";
        let mut rec = Recorder::new(&self.ctx, label);
        let values = self.record_primal(&mut rec, label, x, t, true)?;
        rec.submit();
        Ok(GraphLinearization { exec: self, points: x.len() / self.net.dim(), values })
    }

    /// Records the network and its derivative factors at device-resident points `x` ([points, D]), all at time `t`,
    /// without submitting: resident propagation re-runs it at every stage of every step.
    pub fn record_linearization(
        &self,
        rec: &mut Recorder,
        x: &wgpu::Buffer,
        t: f32,
        points: usize,
    ) -> Result<GraphLinearization<'_>> {
        let label = "graph/resident";
        let f = &self.fused;
        let mut values: HashMap<ValueId, wgpu::Buffer> = HashMap::from([(f.graph.inputs[0], x.clone())]);
        for (k, row) in self.net.row_inputs(&vec![t as f64; points]).iter().enumerate() {
            let data: Vec<f32> = row.iter().map(|&v| v as f32).collect();
            values.insert(f.graph.inputs[k + 1], self.ctx.upload(&format!("{label}/input{}", k + 1), &data));
        }
        self.record_nodes(rec, label, &f.linearisation, &f.kept, points, 1, &mut values)?;
        Ok(GraphLinearization { exec: self, points, values })
    }

    fn finish(&self, rec: Recorder, label: &str, result: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let mut rec = rec;
        let readback = self.ctx.buffer(&format!("{label}/readback"), (len * 4) as u64, BufferRole::Readback);
        rec.copy(result, &readback, (len * 4) as u64);
        let index = rec.submit();
        self.ctx.read_mapped(&readback, len, Some(index))
    }

    /// Device bytes of exact products: per point (the linearisation's buffer plan), per (point, tangent) pair (the
    /// larger products' plan, with the tangents, results and read-back), and the widest per-tangent buffer.
    pub fn product_costs(&self) -> (u64, u64, u64) {
        let f = &self.fused;
        let p = &self.net.program;
        let lin = self.plan(&f.linearisation, &f.kept, 1).total() as u64;
        let per_point = 4 * (lin + 4 + self.net.dim() as u64);
        let jvp = self.plan(&f.jvp, &HashSet::from([p.dy]), 1).total();
        let vjp = self.plan(&f.vjp, &HashSet::from([p.x_bar]), 1).total();
        let per_tangent = 4 * (jvp.max(vjp) as u64 + 3 * self.net.dim() as u64);
        (per_point, per_tangent, 4 * self.widest_value() as u64)
    }

    /// The buffer plan of `nodes` run with `rep` tangent rows per point, `kept` read after them.
    fn plan(&self, nodes: &[NodeId], kept: &HashSet<ValueId>, rep: usize) -> BufferPlan {
        BufferPlan::new(&self.fused.graph, nodes, kept, rep, self.options.memory_plan, &|n| {
            self.conv_plans.get(&n).map(|p| (p.pixels * p.inner, p.pixels * p.width))
        })
    }

    /// The widest per-row buffer: a primal or tangent value, or a convolution's gathered rows or product. Constants
    /// are bound whole, one copy for every row, so they do not bound the rows of a chunk (counted here, a 512×512
    /// weight cut the built-in MLP's J·V into chunks of 16 points, each linearised on its own).
    fn widest_value(&self) -> usize {
        let g = &self.fused.graph;
        let values = g.values.iter().filter(|v| v.stream != Stream::Const).map(|v| v.numel()).max().unwrap_or(1);
        let scratch = self.conv_plans.values().map(|p| p.pixels * p.inner.max(p.width)).max().unwrap_or(0);
        values.max(scratch)
    }

    /// Bytes of the weights and maps kept on the device.
    pub fn resident_bytes(&self) -> u64 {
        let consts: u64 = self.consts.values().map(|b| b.size()).sum();
        let maps: u64 = self.maps.values().map(|m| m.row_start.size() + m.column.size() + m.weight.size()).sum();
        consts + maps
    }

    /// Uploads x and the per-row inputs and records the network (and, with `residuals`, its derivative factors).
    fn record_primal(
        &self,
        rec: &mut Recorder,
        label: &str,
        x: &[f32],
        t: &[f32],
        residuals: bool,
    ) -> Result<HashMap<ValueId, wgpu::Buffer>> {
        let ctx = &*self.ctx;
        let f = &self.fused;
        let g = &f.graph;
        let points = x.len() / self.net.dim();
        let times: Vec<f64> = (0..points).map(|i| t[if t.len() == 1 { 0 } else { i }] as f64).collect();
        let mut buffers: HashMap<ValueId, wgpu::Buffer> = HashMap::new();
        buffers.insert(g.inputs[0], ctx.upload(&format!("{label}/x"), x));
        for (k, values) in self.net.row_inputs(&times).iter().enumerate() {
            let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            buffers.insert(g.inputs[k + 1], ctx.upload(&format!("{label}/input{}", k + 1), &data));
        }
        if residuals {
            self.record_nodes(rec, label, &f.linearisation, &f.kept, points, 1, &mut buffers)?;
        } else {
            self.record_nodes(rec, label, &f.score, &HashSet::from([g.output]), points, 1, &mut buffers)?;
        }
        Ok(buffers)
    }

    /// Records `nodes` in order, each output in the buffer its plan gives it (reshapes alias their input); values
    /// whose buffers go back to the pool leave `buffers`, so that it ends with the inputs, `kept` and what the
    /// list did not compute.
    #[allow(clippy::too_many_arguments)]
    fn record_nodes(
        &self,
        rec: &mut Recorder,
        label: &str,
        nodes: &[NodeId],
        kept: &HashSet<ValueId>,
        points: usize,
        rep: usize,
        buffers: &mut HashMap<ValueId, wgpu::Buffer>,
    ) -> Result<()> {
        let g = &self.fused.graph;
        let plan = self.plan(nodes, kept, rep);
        let slots: Vec<wgpu::Buffer> = plan
            .floats
            .iter()
            .enumerate()
            .map(|(i, &floats)| {
                let bytes = (points * floats * 4).max(4) as u64;
                self.ctx.buffer(&format!("{label}/slot{i}"), bytes, BufferRole::Storage)
            })
            .collect();
        for (pos, &n) in nodes.iter().enumerate() {
            let node = &g.nodes[n];
            let out_v = &g.values[node.output];
            if let Op::Reshape = node.op {
                let input = self.buffer(buffers, node.inputs[0])?.clone();
                buffers.insert(node.output, input);
            } else {
                let rows = match out_v.stream {
                    Stream::Const => 1,
                    Stream::Primal => points,
                    Stream::Tangent => points * rep,
                };
                let out = slots[plan.slot[&node.output]].clone();
                let scratch = plan.scratch.get(&n).map(|&(a, b)| (&slots[a], &slots[b]));
                self.record_node(rec, g, n, rows, rep, buffers, scratch, &out)?;
                buffers.insert(node.output, out);
            }
            for v in &plan.released[pos] {
                buffers.remove(v);
            }
        }
        Ok(())
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
        scratch: Option<(&wgpu::Buffer, &wgpu::Buffer)>,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        let node = &g.nodes[n];
        let out_v = &g.values[node.output];
        let input = |i: usize| self.buffer(buffers, node.inputs[i]);
        let row_map = |i: usize| -> RowMap { g.row_map(node.inputs[i], out_v.stream, rep) };
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
                let spec = mm.batched(rows, ma, mb);
                kernels::record_batched_matmul(rec, &spec, input(0)?, input(1)?, out)
            }
            Op::FusedMatMul(mm, e) => {
                let mut shape = MatmulShape::new(rows * mm.lead * mm.m, mm.n, mm.k);
                if mm.b.transposed {
                    shape = shape.with_trans_b();
                }
                let bias = if e.bias { Some(input(2)?) } else { None };
                let pre = match e.deriv {
                    Some(f) => {
                        let pre = node.inputs[e.pre_input()];
                        // One product row per tangent row (lead · m = 1): the row's point is its group.
                        shape = shape.with_group_rows(g.row_map(pre, out_v.stream, rep).rep as usize);
                        Some((StoreEpilogue::activation(Some(f)), self.buffer(buffers, pre)?))
                    }
                    None => None,
                };
                // An addend has the output's layout: one group per product row, N apart.
                let addend = if e.addend { Some(input(e.pre_input())?) } else { None };
                // One scale per value row (per point for tangent rows): lead · m product rows per value row. With a
                // derivative factor (lead · m = 1) that is its group too; with an addend, fuse saw to it being 1.
                let row_scale = if e.scale {
                    let scale = node.inputs[e.scale_input()];
                    let value_rows = g.row_map(scale, out_v.stream, rep).rep as usize;
                    shape = shape.with_group_rows(mm.lead * mm.m * value_rows);
                    Some(self.buffer(buffers, scale)?)
                } else {
                    None
                };
                let epilogue = Epilogue {
                    bias,
                    deriv: pre,
                    addend,
                    row_scale,
                    act_a: StoreEpilogue::activation(e.act_a),
                    ..Epilogue::act(StoreEpilogue::activation(e.act))
                };
                record_matmul(rec, &shape, input(0)?, input(1)?, epilogue, out)
            }
            Op::Conv(_) | Op::FusedConv(..) => {
                let (spec, e) = match &node.op {
                    Op::FusedConv(spec, e) => (spec, Some(*e)),
                    Op::Conv(spec) => (spec, None),
                    _ => unreachable!(),
                };
                match (self.conv_plans.get(&n), scratch) {
                    (Some(plan), Some((gathered, product))) => {
                        kernels::record_sparse_map(rec, rows, &plan.gather, input(0)?, gathered, false)?;
                        let mut shape = MatmulShape::new(rows * plan.pixels, plan.width, plan.inner);
                        if plan.trans_b {
                            shape = shape.with_trans_b();
                        }
                        let mut epilogue = Epilogue::act(StoreEpilogue::activation(e.and_then(|e| e.act)));
                        if e.is_some_and(|e| e.bias) {
                            epilogue = epilogue.with_bias(input(2)?);
                        }
                        record_matmul(rec, &shape, gathered, input(1)?, epilogue, product)?;
                        kernels::record_sparse_map(rec, rows, &plan.scatter, product, out, false)
                    }
                    _ if e.is_none() => {
                        let spec = kernels::Conv2d { rows, ..*spec };
                        kernels::record_conv2d(rec, &spec, input(0)?, input(1)?, out)
                    }
                    _ => Err(Error::Kernel {
                        kernel: "graph".into(),
                        message: format!("fused convolution `{}` without its patch product", node.name),
                    }),
                }
            }
            Op::Norm { size, eps } => {
                kernels::record_norm(rec, rows * out_v.numel() / size, *size, *eps, input(0)?, out)
            }
            Op::FusedNorm { size, eps, store } => {
                let mut next = 1..;
                let scale = if store.scale { Some(input(next.next().unwrap())?) } else { None };
                let shift = if store.shift { Some(input(next.next().unwrap())?) } else { None };
                let store = kernels::NormStore {
                    row_len: out_v.numel(),
                    channels: store.channels,
                    inner: store.inner,
                    scale,
                    shift,
                    act: store.act,
                };
                kernels::record_norm_affine(rec, rows * out_v.numel() / size, *size, *eps, input(0)?, Some(store), out)
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
            Op::Attention(a) => {
                use crate::ops::attention::{record_attention, AttentionOperand};
                let operand = |i: usize, layout| -> Result<AttentionOperand> {
                    Ok(AttentionOperand {
                        buffer: input(i)?,
                        map: crate::graph::ir::Attention::map(layout, row_map(i)),
                    })
                };
                record_attention(rec, &a.shape(rows), operand(0, a.q)?, operand(1, a.k)?, operand(2, a.v)?, out)
            }
            Op::AttentionTangent(a, t) => {
                use crate::ops::attention::{record_attention_tangent, AttentionOperand};
                let operand = |i: usize, layout| -> Result<AttentionOperand> {
                    Ok(AttentionOperand {
                        buffer: input(i)?,
                        map: crate::graph::ir::Attention::map(layout, row_map(i)),
                    })
                };
                let mut next = 4..;
                let mut tangent = |layout: Option<_>| layout.map(|l| operand(next.next().unwrap(), l)).transpose();
                let tangents = [tangent(t.dq)?, tangent(t.dk)?, tangent(t.dv)?];
                let (q, k, v) = (operand(0, a.q)?, operand(1, a.k)?, operand(2, a.v)?);
                record_attention_tangent(rec, &a.shape(rows), q, k, v, (input(3)?, row_map(3)), tangents, out)
            }
            Op::AttentionScoreAdjoint(a) => {
                use crate::ops::attention::{record_attention_score_adjoint, AttentionOperand};
                let v = AttentionOperand { buffer: input(0)?, map: crate::graph::ir::Attention::map(a.v, row_map(0)) };
                record_attention_score_adjoint(rec, &a.shape(rows), v, (input(1)?, row_map(1)), input(2)?, out)
            }
        }
    }
}

/// A network linearised at a batch of points: its primal values and derivative factors on the device.
pub struct GraphLinearization<'e> {
    exec: &'e GraphExecutor,
    points: usize,
    values: HashMap<ValueId, wgpu::Buffer>,
}

impl GraphLinearization<'_> {
    pub fn points(&self) -> usize {
        self.points
    }

    /// The score s(x, t) at the points, [points, D], on the device.
    pub fn score(&self) -> Result<&wgpu::Buffer> {
        self.exec.buffer(&self.values, self.exec.net.graph().output)
    }

    /// J·V for `per_point` tangents per point: `v` [points, P, D] → `out` [points, P, D], or each point's block
    /// transposed ([points, D, P]) with `transposed`.
    pub fn record_jvp(
        &self,
        rec: &mut Recorder,
        v: &wgpu::Buffer,
        per_point: usize,
        out: &wgpu::Buffer,
        transposed: bool,
    ) -> Result<()> {
        let p = &self.exec.net.program;
        self.record_products(rec, "graph/jvp", &self.exec.fused.jvp, p.dx, p.dy, v, per_point, out, transposed)
    }

    /// Jᵀ·U for `per_point` cotangents per point: `u` [points, Q, D] → `out` [points, Q, D].
    pub fn record_vjp(&self, rec: &mut Recorder, u: &wgpu::Buffer, per_point: usize, out: &wgpu::Buffer) -> Result<()> {
        let p = &self.exec.net.program;
        self.record_products(rec, "graph/vjp", &self.exec.fused.vjp, p.y_bar, p.x_bar, u, per_point, out, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn record_products(
        &self,
        rec: &mut Recorder,
        label: &str,
        nodes: &[NodeId],
        input: ValueId,
        output: ValueId,
        tangents: &wgpu::Buffer,
        per_point: usize,
        out: &wgpu::Buffer,
        transposed: bool,
    ) -> Result<()> {
        let d = self.exec.net.dim();
        let mut buffers = self.values.clone();
        buffers.insert(input, tangents.clone());
        let kept = HashSet::from([output]);
        self.exec.record_nodes(rec, label, nodes, &kept, self.points, per_point, &mut buffers)?;
        let result = self.exec.buffer(&buffers, output)?;
        if transposed {
            let (_, map) = crate::graph::layout::transpose(&[per_point, d], &[1, 0]);
            let map = kernels::upload_sparse_map(&self.exec.ctx, &format!("{label}/transpose"), &map);
            kernels::record_sparse_map(rec, self.points, &map, result, out, false)
        } else {
            rec.copy(result, out, (self.points * per_point * d * 4) as u64);
            Ok(())
        }
    }

    /// The inputs of the network's hidden units at every point, [points, units]: every ReLU-family unit (Relu,
    /// LeakyRelu) that depends on x, whose pre-activation changing sign crosses a linear-region boundary; for a
    /// network without them, the inputs of its smooth activations (Sigmoid — hence SiLU —, Tanh, GELU, Softplus,
    /// Erf), as the built-in MLP reports its SiLU units.
    pub fn pre_activations(&self) -> Result<Vec<f32>> {
        let g = self.exec.net.graph();
        let units = &self.exec.units;
        if units.is_empty() {
            return Err(Error::InvalidArgument(
                "the network has no activation units that depend on x (local complexity counts hidden units)".into(),
            ));
        }
        let total: usize = units.iter().map(|&u| g.values[u].numel()).sum();
        let mut out = vec![0f32; self.points * total];
        let mut offset = 0;
        for &u in units {
            let n = g.values[u].numel();
            let values: Vec<f32> = self.exec.ctx.download(self.exec.buffer(&self.values, u)?, self.points * n)?;
            for p in 0..self.points {
                out[p * total + offset..p * total + offset + n].copy_from_slice(&values[p * n..(p + 1) * n]);
            }
            offset += n;
        }
        Ok(out)
    }
}

/// The inputs of the network's hidden units: every ReLU-family unit (Relu, LeakyRelu) that depends on x; for a
/// network without them, the inputs of its smooth activations (SiLU, Sigmoid, Tanh, GELU, Softplus, Erf).
fn activation_units(net: &ScoreNetwork) -> Vec<ValueId> {
    use crate::ops::graph::UnaryFn;
    let g = net.graph();
    let active = net.active_values();
    let units_where = |pick: &dyn Fn(&UnaryFn) -> bool| -> Vec<ValueId> {
        net.program
            .primal
            .iter()
            .map(|&n| &g.nodes[n])
            .filter(|node| matches!(&node.op, Op::Unary { f, derivative: false } if pick(f)) && active[node.inputs[0]])
            .map(|node| node.inputs[0])
            .collect()
    };
    let units = units_where(&|f| matches!(f, UnaryFn::Relu | UnaryFn::LeakyRelu(_)));
    if !units.is_empty() {
        return units;
    }
    units_where(&|f| {
        matches!(
            f,
            UnaryFn::Silu
                | UnaryFn::Sigmoid
                | UnaryFn::Tanh
                | UnaryFn::Gelu
                | UnaryFn::GeluTanh
                | UnaryFn::Softplus
                | UnaryFn::Erf
        )
    })
}

/// Where the values of one recorded node list live: slots (buffers of `floats` per point each) handed out in
/// order, a slot going back to the pool once every value in it has been read for the last time (values that the
/// list's caller reads afterwards, `kept`, never go back). A new value takes the smallest free slot that holds it,
/// else the largest free slot, grown; else a new slot. All sizes are per point, so the plan holds for any number
/// of points, and its total is the per-point memory of the list.
pub struct BufferPlan {
    /// The slot of each value the list computes (a reshape shares its input's).
    pub slot: HashMap<ValueId, usize>,
    /// Floats per point of each slot.
    pub floats: Vec<usize>,
    /// The scratch slots (gathered rows, product) of each convolution run as a patch product.
    pub scratch: HashMap<NodeId, (usize, usize)>,
    /// The values that leave after each node (their slot went back to the pool).
    pub released: Vec<Vec<ValueId>>,
    /// The slots that hold kept values.
    kept_slots: HashSet<usize>,
}

impl BufferPlan {
    /// The plan of `nodes` with `rep` tangent rows per point; `scratch(n)` gives the per-row scratch floats of a
    /// node; without `reuse`, every value and scratch buffer gets its own slot.
    pub fn new(
        g: &Graph,
        nodes: &[NodeId],
        kept: &HashSet<ValueId>,
        rep: usize,
        reuse: bool,
        scratch: &dyn Fn(NodeId) -> Option<(usize, usize)>,
    ) -> BufferPlan {
        let floats_of = |v: ValueId| -> usize {
            let value = &g.values[v];
            match value.stream {
                Stream::Tangent => rep * value.numel(),
                _ => value.numel(),
            }
        };
        let mut last_read: HashMap<ValueId, usize> = HashMap::new();
        for (pos, &n) in nodes.iter().enumerate() {
            for &i in &g.nodes[n].inputs {
                last_read.insert(i, pos);
            }
        }
        let mut plan = BufferPlan {
            slot: HashMap::new(),
            floats: Vec::new(),
            scratch: HashMap::new(),
            released: vec![Vec::new(); nodes.len()],
            kept_slots: HashSet::new(),
        };
        // Per slot: the values in it and the position of their last read (usize::MAX: never goes back).
        let mut members: Vec<Vec<ValueId>> = Vec::new();
        let mut until: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        // The slot of each value whose slot has not gone back yet.
        let mut live: HashMap<ValueId, usize> = HashMap::new();
        let take = |plan: &mut BufferPlan, free: &mut Vec<usize>, need: usize| -> usize {
            let fits =
                free.iter().enumerate().filter(|&(_, &s)| plan.floats[s] >= need).min_by_key(|&(_, &s)| plan.floats[s]);
            let pick = fits.or_else(|| free.iter().enumerate().max_by_key(|&(_, &s)| plan.floats[s])).map(|(i, _)| i);
            match pick {
                Some(i) if reuse => {
                    let s = free.swap_remove(i);
                    plan.floats[s] = plan.floats[s].max(need);
                    s
                }
                _ => {
                    plan.floats.push(need);
                    plan.floats.len() - 1
                }
            }
        };
        for (pos, &n) in nodes.iter().enumerate() {
            let node = &g.nodes[n];
            let out = node.output;
            let ends = if kept.contains(&out) { usize::MAX } else { last_read.get(&out).copied().unwrap_or(pos) };
            let s = match (&node.op, live.get(&node.inputs[0]).copied()) {
                (Op::Reshape, Some(s)) => s,
                (Op::Reshape, None) => {
                    // An alias of a value the list did not compute: nothing to plan.
                    continue;
                }
                _ => {
                    let s = take(&mut plan, &mut free, floats_of(out));
                    if s == members.len() {
                        members.push(Vec::new());
                        until.push(0);
                    } else {
                        until[s] = 0;
                    }
                    s
                }
            };
            plan.slot.insert(out, s);
            live.insert(out, s);
            members[s].push(out);
            until[s] = until[s].max(ends);
            if ends == usize::MAX {
                plan.kept_slots.insert(s);
            }
            if let Some((gathered, product)) = scratch(n) {
                let rows = if g.values[out].stream == Stream::Tangent { rep } else { 1 };
                let a = take(&mut plan, &mut free, rows * gathered);
                let b = take(&mut plan, &mut free, rows * product);
                plan.scratch.insert(n, (a, b));
                for t in [a, b] {
                    if t >= members.len() {
                        members.resize(t + 1, Vec::new());
                        until.resize(t + 1, 0);
                    }
                }
                free.extend([a, b]);
            }
            // Slots whose last read was this node go back to the pool.
            let mut touched: Vec<usize> = node.inputs.iter().filter_map(|i| live.get(i).copied()).collect();
            touched.push(s);
            touched.sort_unstable();
            touched.dedup();
            for t in touched {
                if until[t] <= pos && !free.contains(&t) && !members[t].is_empty() {
                    let gone = std::mem::take(&mut members[t]);
                    for v in &gone {
                        live.remove(v);
                    }
                    plan.released[pos].extend(gone);
                    free.push(t);
                }
            }
        }
        plan
    }

    /// Floats per point of all slots.
    pub fn total(&self) -> usize {
        self.floats.iter().sum()
    }

    /// Floats per point of the slots that outlive the list.
    pub fn kept_total(&self) -> usize {
        self.kept_slots.iter().map(|&s| self.floats[s]).sum()
    }
}
