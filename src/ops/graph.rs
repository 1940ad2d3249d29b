//! The graph engine's primitive kernels (crate::graph): one dispatch per primitive op, over rows of per-row
//! tensors stored batch-major ([rows, per-row elements], row-major within a row).
//!
//! A value of the graph lives in one of three row streams: constants (one copy shared by every row), primal
//! values (one row per point) and tangent / cotangent values (`rep` rows per point, point-major: row r belongs to
//! point r / rep). Kernels that combine streams take a [`RowMap`] per operand saying which operand row feeds output
//! row r: `(r / rep) · stride` elements into the operand's buffer.
//!
//! Each `record_*` function has its f64 twin of the same name in `crate::reference::graph_ops`.

use crate::error::{Error, Result};
use crate::gpu::{grid_2d, GpuContext, Recorder};
use crate::reference::graph_ops::SparseMap;

/// Threads of the flat (one thread per element) kernels and of the reduction workgroups.
const WORKGROUP: u32 = 256;

fn fail<T>(kernel: &str, message: String) -> Result<T> {
    Err(Error::Kernel { kernel: kernel.into(), message })
}

/// A size the kernels index with u32.
fn size_u32(kernel: &str, what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).or_else(|_| fail(kernel, format!("{what} = {n} exceeds the 32-bit indexing of the kernel")))
}

/// `buffer` holds at least `elements` f32 (or u32) values.
fn check_len(kernel: &str, what: &str, buffer: &wgpu::Buffer, elements: usize) -> Result<()> {
    let bytes = elements as u64 * 4;
    if buffer.size() < bytes {
        return fail(kernel, format!("{what} holds {} B of the {bytes} B needed", buffer.size()));
    }
    Ok(())
}

/// The output is none of the inputs (wgpu cannot bind one buffer as both).
fn check_distinct(kernel: &str, out: &wgpu::Buffer, inputs: &[&wgpu::Buffer]) -> Result<()> {
    if inputs.contains(&out) {
        return fail(kernel, "the output is also an input".into());
    }
    Ok(())
}

fn check_rows(kernel: &str, what: &str, map: RowMap) -> Result<()> {
    if map.rep == 0 {
        return fail(kernel, format!("{what}: a row map with rep 0"));
    }
    Ok(())
}

/// Elements an operand must hold for `rows` output rows of `per_row` elements each under `map`.
fn mapped_len(rows: usize, map: RowMap, per_row: usize) -> usize {
    if rows == 0 {
        return 0;
    }
    ((rows - 1) / map.rep as usize) * map.stride as usize + per_row
}

/// The 2-D grid of 256-thread workgroups covering `threads` threads; returns ([x, y], grid width in threads).
fn flat_grid(ctx: &GpuContext, threads: u32) -> ([u32; 3], u32) {
    let (gx, gy) = grid_2d(threads.div_ceil(WORKGROUP), ctx.caps.max_workgroups_per_dimension());
    ([gx, gy, 1], gx * WORKGROUP)
}

/// Threads per line of the segmented reductions: a power of two from 1 to 256, about one per 8 elements.
fn lanes_for(len: usize) -> u32 {
    (len.div_ceil(8).next_power_of_two() as u32).clamp(1, WORKGROUP)
}

/// The 2-D grid of workgroups holding `lines` lines of `lanes` threads each; returns (grid, width in workgroups).
fn line_grid(ctx: &GpuContext, lines: u32, lanes: u32) -> ([u32; 3], u32) {
    let (gx, gy) = grid_2d(lines.div_ceil(WORKGROUP / lanes), ctx.caps.max_workgroups_per_dimension());
    ([gx, gy, 1], gx)
}

/// Where output row r of a kernel finds its operand: at element `(r / rep) · stride` of the operand's buffer.
/// A constant has stride 0; a primal operand of a tangent-stream op has rep = tangents per point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowMap {
    /// Elements between consecutive operand rows (0: one copy for every row).
    pub stride: u32,
    /// Output rows per operand row (≥ 1).
    pub rep: u32,
}

impl RowMap {
    /// One operand row per output row, `len` elements each.
    pub fn rows(len: usize) -> Self {
        RowMap { stride: len as u32, rep: 1 }
    }

    /// One copy for all rows.
    pub fn shared() -> Self {
        RowMap { stride: 0, rep: 1 }
    }

    /// One operand row of `len` elements for every `rep` output rows.
    pub fn repeated(len: usize, rep: usize) -> Self {
        RowMap { stride: len as u32, rep: rep as u32 }
    }
}

/// Elementwise functions (value, or derivative with respect to the input).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryFn {
    Identity,
    Relu,
    /// max(x, 0) + α·min(x, 0).
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
    Erf,
    Exp,
    Log,
    Sin,
    Cos,
    Sqrt,
    Reciprocal,
    Neg,
    Abs,
    /// ln(1 + eˣ).
    Softplus,
    /// x·Φ(x), exact (erf).
    Gelu,
    /// The tanh approximation 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))).
    GeluTanh,
    /// x·σ(x) (SiLU, swish), recognised from Sigmoid·Mul by crate::graph::fuse.
    Silu,
    /// xᵖ for a constant p.
    PowConst(f32),
    /// cˣ for a constant base c > 0, given as ln c.
    ExpBase(f32),
    /// c · x for a constant c.
    Scale(f32),
}

/// Broadcasting binary operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// aᵇ.
    Pow,
}

/// One operand of a broadcasting kernel: its buffer, its per-row shape (right-aligned against the output's, numpy
/// rules: each dimension equal to the output's or 1) and where its rows are.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub shape: &'a [usize],
    pub rows: RowMap,
}

/// Most dimensions a per-row shape may have in a broadcasting kernel.
pub const MAX_RANK: usize = 6;

/// out[r, i] = f(x[r, i]) (or f′(x[r, i]) when `derivative`), for `len` = rows · per-row elements, flat.
pub fn record_unary(
    rec: &mut Recorder,
    f: UnaryFn,
    derivative: bool,
    len: usize,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    const KERNEL: &str = "graph_unary";
    let n = size_u32(KERNEL, "len", len)?;
    check_len(KERNEL, "x", x, len)?;
    check_len(KERNEL, "out", out, len)?;
    check_distinct(KERNEL, out, &[x])?;
    let (op, p) = match f {
        UnaryFn::Identity => (0, 0.0),
        UnaryFn::Relu => (1, 0.0),
        UnaryFn::LeakyRelu(alpha) => (2, alpha),
        UnaryFn::Sigmoid => (3, 0.0),
        UnaryFn::Tanh => (4, 0.0),
        UnaryFn::Erf => (5, 0.0),
        UnaryFn::Exp => (6, 0.0),
        UnaryFn::Log => (7, 0.0),
        UnaryFn::Sin => (8, 0.0),
        UnaryFn::Cos => (9, 0.0),
        UnaryFn::Sqrt => (10, 0.0),
        UnaryFn::Reciprocal => (11, 0.0),
        UnaryFn::Neg => (12, 0.0),
        UnaryFn::Abs => (13, 0.0),
        UnaryFn::Softplus => (14, 0.0),
        UnaryFn::Gelu => (15, 0.0),
        UnaryFn::GeluTanh => (16, 0.0),
        UnaryFn::PowConst(p) => (17, p),
        UnaryFn::ExpBase(ln_c) => (18, ln_c),
        UnaryFn::Scale(c) => (19, c),
        UnaryFn::Silu => (20, 0.0),
    };
    let ctx = rec.ctx();
    let kernel = ctx.kernel(KERNEL, &[])?;
    let (grid, grid_width) = flat_grid(ctx, n);
    let params = UnaryParams { len: n, grid_width, op, derivative: derivative as u32, p, pad: [0; 3] };
    let uniform = ctx.uniform("graph_unary/params", &params);
    rec.dispatch(&kernel, &[x, out, &uniform], grid)
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct UnaryParams {
    len: u32,
    grid_width: u32,
    op: u32,
    derivative: u32,
    p: f32,
    pad: [u32; 3],
}

/// out[r, i] = a[r, i] ∘ b[r, i] over `rows` output rows of per-row shape `out_shape`, with numpy broadcasting of
/// each operand's per-row shape and its [`RowMap`]. `out` has `rows · Π out_shape` elements, batch-major.
pub fn record_binary(
    rec: &mut Recorder,
    op: BinaryOp,
    rows: usize,
    out_shape: &[usize],
    a: Operand,
    b: Operand,
    out: &wgpu::Buffer,
) -> Result<()> {
    const KERNEL: &str = "graph_binary";
    let rank = out_shape.len();
    if rank > MAX_RANK {
        return fail(KERNEL, format!("output shape {out_shape:?} has more than {MAX_RANK} dimensions"));
    }
    let len: usize = out_shape.iter().product();
    let total = size_u32(KERNEL, "rows · elements", rows * len)?;
    let mut shape = [1u32; 8];
    for (slot, &dim) in shape.iter_mut().zip(out_shape) {
        *slot = size_u32(KERNEL, "a dimension", dim)?;
    }
    // Per output axis, the operand's element stride (0 where it broadcasts).
    let strides = |what: &str, operand: &Operand| -> Result<[u32; 8]> {
        check_rows(KERNEL, what, operand.rows)?;
        if operand.shape.len() > rank {
            return fail(KERNEL, format!("{what}: shape {:?} has more dimensions than {out_shape:?}", operand.shape));
        }
        let lead = rank - operand.shape.len();
        let mut strides = [0u32; 8];
        let mut stride = 1usize;
        for axis in (lead..rank).rev() {
            let dim = operand.shape[axis - lead];
            if dim != out_shape[axis] && dim != 1 {
                return fail(KERNEL, format!("{what}: shape {:?} does not broadcast to {out_shape:?}", operand.shape));
            }
            if dim != 1 {
                strides[axis] = size_u32(KERNEL, "a stride", stride)?;
            }
            stride *= dim;
        }
        check_len(KERNEL, what, operand.buffer, mapped_len(rows, operand.rows, stride))?;
        Ok(strides)
    };
    let (a_strides, b_strides) = (strides("a", &a)?, strides("b", &b)?);
    check_len(KERNEL, "out", out, rows * len)?;
    check_distinct(KERNEL, out, &[a.buffer, b.buffer])?;
    if total == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let kernel = ctx.kernel(KERNEL, &[])?;
    let (grid, grid_width) = flat_grid(ctx, total);
    let op = match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Pow => 4,
    };
    let params = BinaryParams {
        total,
        len: len as u32,
        grid_width,
        op,
        rank: rank as u32,
        a_rep: a.rows.rep,
        a_row_stride: a.rows.stride,
        b_rep: b.rows.rep,
        b_row_stride: b.rows.stride,
        pad: [0; 3],
        shape,
        a_strides,
        b_strides,
    };
    let uniform = ctx.uniform("graph_binary/params", &params);
    rec.dispatch(&kernel, &[a.buffer, b.buffer, out, &uniform], grid)
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BinaryParams {
    total: u32,
    len: u32,
    grid_width: u32,
    op: u32,
    rank: u32,
    a_rep: u32,
    a_row_stride: u32,
    b_rep: u32,
    b_row_stride: u32,
    pad: [u32; 3],
    shape: [u32; 8],
    a_strides: [u32; 8],
    b_strides: [u32; 8],
}

/// A per-row sparse linear map y = M·x (M: `outputs` × `inputs`, compressed rows), uploaded once: transposes,
/// slices, concatenations, padding, resizing, pooling and reductions within a row are all such maps.
pub struct SparseMapBuffers {
    pub outputs: usize,
    pub inputs: usize,
    /// [outputs + 1] u32: the entries of output i are row_start[i] .. row_start[i + 1].
    pub row_start: wgpu::Buffer,
    /// [nnz] u32: input element of each entry.
    pub column: wgpu::Buffer,
    /// [nnz] f32: weight of each entry.
    pub weight: wgpu::Buffer,
}

/// out[r, i] (+)= Σ_{k ∈ row i} weight[k] · x[r, column[k]] for `rows` rows (x rows `map.inputs` apart, out rows
/// `map.outputs` apart). With `accumulate`, adds to what `out` holds (concatenation writes one input at a time).
pub fn record_sparse_map(
    rec: &mut Recorder,
    rows: usize,
    map: &SparseMapBuffers,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    accumulate: bool,
) -> Result<()> {
    const KERNEL: &str = "graph_sparse_map";
    let total = size_u32(KERNEL, "rows · outputs", rows * map.outputs)?;
    size_u32(KERNEL, "rows · inputs", rows * map.inputs)?;
    check_len(KERNEL, "row_start", &map.row_start, map.outputs + 1)?;
    check_len(KERNEL, "x", x, rows * map.inputs)?;
    check_len(KERNEL, "out", out, rows * map.outputs)?;
    check_distinct(KERNEL, out, &[x, &map.row_start, &map.column, &map.weight])?;
    if total == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let kernel = ctx.kernel(KERNEL, &[])?;
    let (grid, grid_width) = flat_grid(ctx, total);
    let params = SparseParams {
        total,
        outputs: map.outputs as u32,
        inputs: map.inputs as u32,
        grid_width,
        accumulate: accumulate as u32,
        pad: [0; 3],
    };
    let uniform = ctx.uniform("graph_sparse_map/params", &params);
    rec.dispatch(&kernel, &[&map.row_start, &map.column, &map.weight, x, out, &uniform], grid)
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SparseParams {
    total: u32,
    outputs: u32,
    inputs: u32,
    grid_width: u32,
    accumulate: u32,
    pad: [u32; 3],
}

/// Uploads a host sparse map (weights converted to f32).
pub fn upload_sparse_map(ctx: &GpuContext, label: &str, map: &SparseMap) -> SparseMapBuffers {
    let weight: Vec<f32> = map.weight.iter().map(|&w| w as f32).collect();
    SparseMapBuffers {
        outputs: map.outputs,
        inputs: map.inputs,
        row_start: ctx.upload(&format!("{label}/row_start"), &map.row_start),
        column: ctx.upload(&format!("{label}/column"), &map.column),
        weight: ctx.upload(&format!("{label}/weight"), &weight),
    }
}

/// Where the matrices of one operand of a batched product are. The product's matrices are numbered
/// i = r · lead + l (r the output row, l < lead the leading index within a row); this operand's matrix i starts
/// at element `(r / rows.rep) · rows.stride + l · lead_stride` (lead_stride 0 broadcasts one matrix over l).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixMap {
    pub rows: RowMap,
    pub lead_stride: u32,
    /// The matrix is stored transposed (A as [K, M], B as [N, K]), contiguous.
    pub transposed: bool,
}

/// C[i] = A[i] · B[i] for `rows · lead` products of A [M, K] by B [K, N]; C is contiguous, [rows, lead, M, N].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchedMatmul {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub rows: usize,
    pub lead: usize,
    pub a: MatrixMap,
    pub b: MatrixMap,
}

/// Records the batched product described by `spec` (graph_matmul.wgsl; tiled, any sizes).
pub fn record_batched_matmul(
    rec: &mut Recorder,
    spec: &BatchedMatmul,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    const KERNEL: &str = "graph_matmul";
    const TILE: usize = 16;
    let s = spec;
    let batch = s.rows * s.lead;
    size_u32(KERNEL, "the output's elements", batch * s.m * s.n)?;
    for (what, map, buffer, len) in [("a", &s.a, a, s.m * s.k), ("b", &s.b, b, s.k * s.n)] {
        check_rows(KERNEL, what, map.rows)?;
        if batch > 0 {
            let last = mapped_len(s.rows, map.rows, 0) + (s.lead - 1) * map.lead_stride as usize + len;
            size_u32(KERNEL, what, last)?;
            check_len(KERNEL, what, buffer, last)?;
        }
    }
    check_len(KERNEL, "out", out, batch * s.m * s.n)?;
    check_distinct(KERNEL, out, &[a, b])?;
    if batch == 0 || s.m == 0 || s.n == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let max = ctx.caps.max_workgroups_per_dimension();
    let (tiles_m, tiles_n) = (s.m.div_ceil(TILE) as u32, s.n.div_ceil(TILE) as u32);
    let (bz, by) = grid_2d(batch as u32, max);
    let grid = [tiles_n, tiles_m * by, bz];
    if tiles_n > max || tiles_m as u64 * by as u64 > max as u64 {
        return fail(KERNEL, format!("{spec:?} needs more than {max} workgroups per dimension"));
    }
    let kernel =
        ctx.kernel(KERNEL, &[("TRANS_A", s.a.transposed as u32 as f64), ("TRANS_B", s.b.transposed as u32 as f64)])?;
    let params = MatmulParams {
        m: s.m as u32,
        n: s.n as u32,
        k: size_u32(KERNEL, "k", s.k)?,
        lead: s.lead as u32,
        batch: batch as u32,
        tiles_m,
        batch_grid: bz,
        pad0: 0,
        a_rep: s.a.rows.rep,
        a_row_stride: s.a.rows.stride,
        a_lead_stride: s.a.lead_stride,
        pad1: 0,
        b_rep: s.b.rows.rep,
        b_row_stride: s.b.rows.stride,
        b_lead_stride: s.b.lead_stride,
        pad2: 0,
    };
    let uniform = ctx.uniform("graph_matmul/params", &params);
    rec.dispatch(&kernel, &[a, b, out, &uniform], grid)
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    lead: u32,
    batch: u32,
    tiles_m: u32,
    batch_grid: u32,
    pad0: u32,
    a_rep: u32,
    a_row_stride: u32,
    a_lead_stride: u32,
    pad1: u32,
    b_rep: u32,
    b_row_stride: u32,
    b_lead_stride: u32,
    pad2: u32,
}

/// A 2-D convolution (or transposed convolution) of NCHW rows with a constant weight, no bias.
///
/// Convolution: out[o, y, x] = Σ_{c ∈ group(o), i, j} w[o, c − c₀(o), i, j] · in[c, y·sy − py + i·dy, x·sx − px + j·dx]
/// with w [c_out, c_in / groups, kh, kw]. Transposed: out[o, y, x] = Σ_{c ∈ group(o), i, j} w[c, o − o₀(o), i, j]
/// · in[c, (y + py − i·dy) / sy, (x + px − j·dx) / sx] over the taps where the divisions are exact and in range,
/// with w [c_in, c_out / groups, kh, kw] (ONNX's ConvTranspose layout, which is also the layout of a convolution's
/// adjoint: the adjoint of a convolution is the transposed convolution with the same weight, and back).
/// Taps outside the input read zero (padding). Output sizes are given, not derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    pub rows: usize,
    pub c_in: usize,
    pub h_in: usize,
    pub w_in: usize,
    pub c_out: usize,
    pub h_out: usize,
    pub w_out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Top and left padding.
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub transposed: bool,
}

/// Records `spec` (graph_conv2d.wgsl): `x` [rows, c_in, h_in, w_in], `w` as above, `out` [rows, c_out, h_out, w_out].
pub fn record_conv2d(
    rec: &mut Recorder,
    spec: &Conv2d,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    const KERNEL: &str = "graph_conv2d";
    let s = spec;
    let positive = [s.groups, s.stride[0], s.stride[1], s.dilation[0], s.dilation[1]];
    if positive.contains(&0) || !s.c_in.is_multiple_of(s.groups) || !s.c_out.is_multiple_of(s.groups) {
        return fail(KERNEL, format!("{spec:?}: groups, strides and dilations ≥ 1, groups dividing c_in and c_out"));
    }
    let in_len = s.rows * s.c_in * s.h_in * s.w_in;
    let out_len = s.rows * s.c_out * s.h_out * s.w_out;
    let w_len = s.c_in * (s.c_out / s.groups) * s.kernel[0] * s.kernel[1];
    let total = size_u32(KERNEL, "the output's elements", out_len)?;
    size_u32(KERNEL, "the input's elements", in_len)?;
    check_len(KERNEL, "x", x, in_len)?;
    check_len(KERNEL, "w", w, w_len)?;
    check_len(KERNEL, "out", out, out_len)?;
    check_distinct(KERNEL, out, &[x, w])?;
    if total == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let kernel = ctx.kernel(KERNEL, &[])?;
    let (grid, grid_width) = flat_grid(ctx, total);
    let u = |v: usize| v as u32;
    let params = ConvParams {
        rows: u(s.rows),
        c_in: u(s.c_in),
        h_in: u(s.h_in),
        w_in: u(s.w_in),
        c_out: u(s.c_out),
        h_out: u(s.h_out),
        w_out: u(s.w_out),
        groups: u(s.groups),
        kh: u(s.kernel[0]),
        kw: u(s.kernel[1]),
        sy: u(s.stride[0]),
        sx: u(s.stride[1]),
        py: u(s.pad[0]),
        px: u(s.pad[1]),
        dy: u(s.dilation[0]),
        dx: u(s.dilation[1]),
        transposed: s.transposed as u32,
        total,
        grid_width,
        pad: 0,
    };
    let uniform = ctx.uniform("graph_conv2d/params", &params);
    rec.dispatch(&kernel, &[x, w, out, &uniform], grid)
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvParams {
    rows: u32,
    c_in: u32,
    h_in: u32,
    w_in: u32,
    c_out: u32,
    h_out: u32,
    w_out: u32,
    groups: u32,
    kh: u32,
    kw: u32,
    sy: u32,
    sx: u32,
    py: u32,
    px: u32,
    dy: u32,
    dx: u32,
    transposed: u32,
    total: u32,
    grid_width: u32,
    pad: u32,
}

/// Normalisation over contiguous groups: the buffer holds `groups` groups of `size` elements (every row's groups
/// one after another); out = (x − mean) / √(var + eps) per group, var the biased variance.
pub fn record_norm(
    rec: &mut Recorder,
    groups: usize,
    size: usize,
    eps: f32,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    record_norm_affine(rec, groups, size, eps, x, None, out)
}

/// The per-channel affine map and activation a normalisation applies as it stores (crate::graph::fuse): element i
/// of a row of `row_len` elements is in channel (i / inner) % channels; out = act(x̂ · scale[c] + shift[c]).
#[derive(Clone, Copy)]
pub struct NormStore<'a> {
    pub row_len: usize,
    pub channels: usize,
    pub inner: usize,
    /// [channels] each, when present.
    pub scale: Option<&'a wgpu::Buffer>,
    pub shift: Option<&'a wgpu::Buffer>,
    /// Relu or Silu.
    pub act: Option<UnaryFn>,
}

/// As [`record_norm`], with `store`'s affine map and activation fused into the store (graph_norm.wgsl).
pub fn record_norm_affine(
    rec: &mut Recorder,
    groups: usize,
    size: usize,
    eps: f32,
    x: &wgpu::Buffer,
    store: Option<NormStore>,
    out: &wgpu::Buffer,
) -> Result<()> {
    const KERNEL: &str = "graph_norm";
    let lines = size_u32(KERNEL, "groups", groups)?;
    size_u32(KERNEL, "the elements", groups * size)?;
    check_len(KERNEL, "x", x, groups * size)?;
    check_len(KERNEL, "out", out, groups * size)?;
    check_distinct(KERNEL, out, &[x])?;
    let (mut row_len, mut channels, mut inner, mut flags, mut act) = (1u32, 1u32, 1u32, 0u32, 0u32);
    if let Some(s) = &store {
        if s.row_len == 0 || s.channels == 0 || s.inner == 0 {
            return fail(KERNEL, "row_len, channels and inner must be positive".into());
        }
        for (what, buffer, bit) in [("scale", s.scale, 1), ("shift", s.shift, 2)] {
            if let Some(b) = buffer {
                check_len(KERNEL, what, b, s.channels)?;
                check_distinct(KERNEL, out, &[b])?;
                flags |= bit;
            }
        }
        act = match s.act {
            None => 0,
            Some(UnaryFn::Relu) => 1,
            Some(UnaryFn::Silu) => 2,
            Some(f) => return fail(KERNEL, format!("{f:?} is not fused into a normalisation (relu, silu)")),
        };
        row_len = size_u32(KERNEL, "row_len", s.row_len)?;
        channels = size_u32(KERNEL, "channels", s.channels)?;
        inner = size_u32(KERNEL, "inner", s.inner)?;
    }
    if groups == 0 || size == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let lanes = lanes_for(size);
    let kernel = ctx.kernel(KERNEL, &[("LANES", lanes as f64)])?;
    let (grid, grid_width) = line_grid(ctx, lines, lanes);
    let params = NormParams {
        groups: lines,
        size: size as u32,
        eps,
        grid_width,
        row_len,
        channels,
        inner,
        flags,
        act,
        pad: [0; 3],
    };
    let uniform = ctx.uniform("graph_norm/params", &params);
    let dummy = ctx.dummy();
    let scale = store.and_then(|s| s.scale).unwrap_or(dummy);
    let shift = store.and_then(|s| s.shift).unwrap_or(dummy);
    rec.dispatch(&kernel, &[x, scale, shift, out, &uniform], grid)
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    groups: u32,
    size: u32,
    eps: f32,
    grid_width: u32,
    row_len: u32,
    channels: u32,
    inner: u32,
    flags: u32,
    act: u32,
    pad: [u32; 3],
}

/// The normalisation's linearisation, self-adjoint: for each of `rows · groups_per_row` tangent groups,
/// out = rstd · (d − mean(d) − x̂ · mean(x̂ ⊙ d)) with x̂ = (x − mean x) · rstd, rstd = 1/√(var x + eps) from the
/// primal group of x at row r / rep. `x` is primal ([rows / rep, groups_per_row, size]), `d` and `out` tangent.
#[allow(clippy::too_many_arguments)]
pub fn record_norm_tangent(
    rec: &mut Recorder,
    rows: usize,
    rep: usize,
    groups_per_row: usize,
    size: usize,
    eps: f32,
    x: &wgpu::Buffer,
    d: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    const KERNEL: &str = "graph_norm_tangent";
    if rep == 0 {
        return fail(KERNEL, "rep 0".into());
    }
    let len = rows * groups_per_row * size;
    let lines = size_u32(KERNEL, "groups", rows * groups_per_row)?;
    size_u32(KERNEL, "the elements", len)?;
    check_len(KERNEL, "x", x, rows.div_ceil(rep) * groups_per_row * size)?;
    check_len(KERNEL, "d", d, len)?;
    check_len(KERNEL, "out", out, len)?;
    check_distinct(KERNEL, out, &[x, d])?;
    if len == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let lanes = lanes_for(size);
    let kernel = ctx.kernel(KERNEL, &[("LANES", lanes as f64)])?;
    let (grid, grid_width) = line_grid(ctx, lines, lanes);
    let params = NormTangentParams {
        groups: lines,
        size: size as u32,
        eps,
        grid_width,
        rep: rep as u32,
        groups_per_row: groups_per_row as u32,
        pad: [0; 2],
    };
    let uniform = ctx.uniform("graph_norm_tangent/params", &params);
    rec.dispatch(&kernel, &[x, d, out, &uniform], grid)
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormTangentParams {
    groups: u32,
    size: u32,
    eps: f32,
    grid_width: u32,
    rep: u32,
    groups_per_row: u32,
    pad: [u32; 2],
}

/// Softmax along the middle axis of each row viewed as [outer, n, inner]: out = exp(x − max) / Σ exp(x − max).
pub fn record_softmax(
    rec: &mut Recorder,
    rows: usize,
    outer: usize,
    n: usize,
    inner: usize,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    const KERNEL: &str = "graph_softmax";
    let len = rows * outer * n * inner;
    let lines = size_u32(KERNEL, "lines", rows * outer * inner)?;
    size_u32(KERNEL, "the elements", len)?;
    check_len(KERNEL, "x", x, len)?;
    check_len(KERNEL, "out", out, len)?;
    check_distinct(KERNEL, out, &[x])?;
    if len == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let lanes = lanes_for(n);
    let kernel = ctx.kernel(KERNEL, &[("LANES", lanes as f64)])?;
    let (grid, grid_width) = line_grid(ctx, lines, lanes);
    let params = SoftmaxParams { lines, n: n as u32, inner: inner as u32, grid_width };
    let uniform = ctx.uniform("graph_softmax/params", &params);
    rec.dispatch(&kernel, &[x, out, &uniform], grid)
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftmaxParams {
    lines: u32,
    n: u32,
    inner: u32,
    grid_width: u32,
}

/// The softmax's linearisation, self-adjoint: out = y ⊙ (d − Σₙ y ⊙ d) along the middle axis of [outer, n, inner],
/// y primal (row r / rep), d and out tangent (`rows` rows).
#[allow(clippy::too_many_arguments)]
pub fn record_softmax_tangent(
    rec: &mut Recorder,
    rows: usize,
    rep: usize,
    outer: usize,
    n: usize,
    inner: usize,
    y: &wgpu::Buffer,
    d: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    const KERNEL: &str = "graph_softmax_tangent";
    if rep == 0 {
        return fail(KERNEL, "rep 0".into());
    }
    let len = rows * outer * n * inner;
    let lines = size_u32(KERNEL, "lines", rows * outer * inner)?;
    size_u32(KERNEL, "the elements", len)?;
    check_len(KERNEL, "y", y, rows.div_ceil(rep) * outer * n * inner)?;
    check_len(KERNEL, "d", d, len)?;
    check_len(KERNEL, "out", out, len)?;
    check_distinct(KERNEL, out, &[y, d])?;
    if len == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let lanes = lanes_for(n);
    let kernel = ctx.kernel(KERNEL, &[("LANES", lanes as f64)])?;
    let (grid, grid_width) = line_grid(ctx, lines, lanes);
    let params = SoftmaxTangentParams {
        lines,
        n: n as u32,
        inner: inner as u32,
        grid_width,
        outer: outer as u32,
        rep: rep as u32,
        pad: [0; 2],
    };
    let uniform = ctx.uniform("graph_softmax_tangent/params", &params);
    rec.dispatch(&kernel, &[y, d, out, &uniform], grid)
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftmaxTangentParams {
    lines: u32,
    n: u32,
    inner: u32,
    grid_width: u32,
    outer: u32,
    rep: u32,
    pad: [u32; 2],
}
