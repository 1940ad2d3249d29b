//! The graph engine's primitive kernels (crate::graph): one dispatch per primitive op, over rows of per-row
//! tensors stored batch-major ([rows, per-row elements], row-major within a row).
//!
//! A value of the graph lives in one of three row streams: constants (one copy shared by every row), primal
//! values (one row per point) and tangent / cotangent values (`rep` rows per point, point-major: row r belongs to
//! point r / rep). Kernels that combine streams take a [`RowMap`] per operand saying which operand row feeds output
//! row r: `(r / rep) · stride` elements into the operand's buffer.
//!
//! Each `record_*` function has its f64 twin of the same name in `crate::reference::graph_ops`.

use crate::error::Result;
use crate::gpu::Recorder;

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
    let _ = (rec, f, derivative, len, x, out);
    todo!("graph_unary.wgsl")
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
    let _ = (rec, op, rows, out_shape, a, b, out);
    todo!("graph_binary.wgsl")
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
    let _ = (rec, rows, map, x, out, accumulate);
    todo!("graph_sparse_map.wgsl")
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
    let _ = (rec, spec, a, b, out);
    todo!("graph_matmul.wgsl")
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
    let _ = (rec, spec, x, w, out);
    todo!("graph_conv2d.wgsl")
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
    let _ = (rec, groups, size, eps, x, out);
    todo!("graph_norm.wgsl")
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
    let _ = (rec, rows, rep, groups_per_row, size, eps, x, d, out);
    todo!("graph_norm_tangent.wgsl")
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
    let _ = (rec, rows, outer, n, inner, x, out);
    todo!("graph_softmax.wgsl")
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
    let _ = (rec, rows, rep, outer, n, inner, y, d, out);
    todo!("graph_softmax_tangent.wgsl")
}

/// Uploads a host sparse map (weights as f32).
pub fn upload_sparse_map(
    ctx: &crate::gpu::GpuContext,
    label: &str,
    map: &crate::reference::graph_ops::SparseMap,
) -> SparseMapBuffers {
    let weight: Vec<f32> = map.weight.iter().map(|&w| w as f32).collect();
    SparseMapBuffers {
        outputs: map.outputs,
        inputs: map.inputs,
        row_start: ctx.upload(&format!("{label}/row_start"), &map.row_start),
        column: ctx.upload(&format!("{label}/column"), &map.column),
        weight: ctx.upload(&format!("{label}/weight"), &weight),
    }
}
