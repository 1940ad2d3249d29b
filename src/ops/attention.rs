//! Fused attention kernels of the graph engine (crate::graph::attention): softmax(scale · Q·K)·V per head and its
//! tangent, one dispatch each, without storing the scores. Operands are described as the batched product's
//! ([`MatrixMap`]: row map, lead stride, transposed). Each `record_*` function has its f64 twin of the same name in
//! `crate::reference::attention`.

use crate::error::{Error, Result};
use crate::gpu::{grid_2d, Recorder};
use crate::ops::graph::{MatrixMap, RowMap};

/// Output columns one thread accumulates (CHUNK in shaders/shared/attention_common.wgsl).
const CHUNK: usize = 16;
/// Threads per workgroup of the attention kernels.
const WORKGROUP: usize = 64;

/// The sizes of an attention over `rows` rows: per row and head l < lead, Q [lq, dk], K [dk, lk], V [lk, dv],
/// out [lq, dv] (contiguous [rows, lead, lq, dv]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionShape {
    pub rows: usize,
    pub lead: usize,
    pub lq: usize,
    pub lk: usize,
    pub dk: usize,
    pub dv: usize,
    pub scale: f64,
}

/// One operand: its buffer and where its matrices are.
#[derive(Clone, Copy)]
pub struct AttentionOperand<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub map: MatrixMap,
}

fn fail<T>(kernel: &str, message: String) -> Result<T> {
    Err(Error::Kernel { kernel: kernel.into(), message })
}

fn u32_of(kernel: &str, what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).or_else(|_| fail(kernel, format!("{what} = {n} exceeds the 32-bit indexing of the kernel")))
}

/// Checks that `operand` holds the matrices of `rows` rows and `lead` heads of `size` elements and returns its
/// parameters (rep, stride, lead stride, transposed).
fn operand_params(kernel: &str, what: &str, o: &AttentionOperand, s: &AttentionShape, size: usize) -> Result<[u32; 4]> {
    let m = o.map;
    if m.rows.rep == 0 {
        return fail(kernel, format!("{what}: a row map with rep 0"));
    }
    if s.rows > 0 && s.lead > 0 {
        let last = ((s.rows - 1) / m.rows.rep as usize) * m.rows.stride as usize
            + (s.lead - 1) * m.lead_stride as usize
            + size;
        u32_of(kernel, what, last)?;
        if o.buffer.size() < 4 * last as u64 {
            return fail(kernel, format!("{what} holds {} B of the {} B needed", o.buffer.size(), 4 * last));
        }
    }
    Ok([m.rows.rep, m.rows.stride, m.lead_stride, m.transposed as u32])
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    threads: u32,
    grid_width: u32,
    lead: u32,
    lq: u32,
    lk: u32,
    dk: u32,
    dv: u32,
    chunks: u32,
    scale: f32,
    present: u32,
    pad: [u32; 2],
    operands: [[u32; 4]; 7],
}

/// The parameters and grid shared by the kernels for `threads` threads of `chunks` column chunks each, writing
/// `out_len` elements of `out` (operands filled in by the caller).
fn launch(
    kernel: &str,
    rec: &Recorder,
    s: &AttentionShape,
    (threads, chunks): (usize, usize),
    out_len: usize,
    out: &wgpu::Buffer,
) -> Result<(Params, [u32; 3])> {
    if !s.scale.is_finite() {
        return fail(kernel, format!("scale {} is not finite", s.scale));
    }
    let threads = u32_of(kernel, "threads", threads)?;
    u32_of(kernel, "the output's elements", out_len)?;
    if out.size() < 4 * out_len as u64 {
        return fail(kernel, format!("out holds {} B of the {} B needed", out.size(), 4 * out_len));
    }
    let (gx, gy) = grid_2d(threads.div_ceil(WORKGROUP as u32), rec.ctx().caps.max_workgroups_per_dimension());
    let params = Params {
        threads,
        grid_width: gx,
        lead: s.lead as u32,
        lq: s.lq as u32,
        lk: u32_of(kernel, "lk", s.lk)?,
        dk: u32_of(kernel, "dk", s.dk)?,
        dv: u32_of(kernel, "dv", s.dv)?,
        chunks: chunks as u32,
        scale: s.scale as f32,
        present: 0,
        pad: [0; 2],
        operands: [[1, 0, 0, 0]; 7],
    };
    Ok((params, [gx, gy, 1]))
}

/// Threads and column chunks of the output-producing kernels: one thread per (row, head, query, CHUNK columns).
fn output_threads(s: &AttentionShape) -> (usize, usize) {
    let chunks = s.dv.div_ceil(CHUNK).max(1);
    (s.rows * s.lead * s.lq * chunks, chunks)
}

/// out = softmax(scale · Q·K) · V per row and head (graph_attention.wgsl).
pub fn record_attention(
    rec: &mut Recorder,
    s: &AttentionShape,
    q: AttentionOperand,
    k: AttentionOperand,
    v: AttentionOperand,
    out: &wgpu::Buffer,
) -> Result<()> {
    const KERNEL: &str = "graph_attention";
    if s.lk == 0 && s.rows * s.lead * s.lq * s.dv > 0 {
        return fail(KERNEL, "an attention over no keys".into());
    }
    let (mut params, grid) = launch(KERNEL, rec, s, output_threads(s), s.rows * s.lead * s.lq * s.dv, out)?;
    params.operands[0] = operand_params(KERNEL, "q", &q, s, s.lq * s.dk)?;
    params.operands[1] = operand_params(KERNEL, "k", &k, s, s.dk * s.lk)?;
    params.operands[2] = operand_params(KERNEL, "v", &v, s, s.lk * s.dv)?;
    if [q.buffer, k.buffer, v.buffer].contains(&out) {
        return fail(KERNEL, "the output is also an input".into());
    }
    if params.threads == 0 || s.dv == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let kernel = ctx.kernel(KERNEL, &[])?;
    let uniform = ctx.uniform("graph_attention/params", &params);
    rec.dispatch(&kernel, &[q.buffer, k.buffer, v.buffer, out, &uniform], grid)
}

/// The tangent of an attention at probabilities `p` (primal, [lead, lq, lk] contiguous per point row, read through
/// `p_rows`): out = dP · V + P · dV with dP = P ⊙ (dS − Σ P ⊙ dS), dS = scale · (dQ · K + Q · dK); absent
/// tangents contribute nothing (graph_attention_tangent.wgsl).
#[allow(clippy::too_many_arguments)]
pub fn record_attention_tangent(
    rec: &mut Recorder,
    s: &AttentionShape,
    q: AttentionOperand,
    k: AttentionOperand,
    v: AttentionOperand,
    p: (&wgpu::Buffer, RowMap),
    tangents: [Option<AttentionOperand>; 3],
    out: &wgpu::Buffer,
) -> Result<()> {
    const KERNEL: &str = "graph_attention_tangent";
    if tangents.iter().all(Option::is_none) {
        return fail(KERNEL, "an attention tangent without tangent operands".into());
    }
    let (mut params, grid) = launch(KERNEL, rec, s, output_threads(s), s.rows * s.lead * s.lq * s.dv, out)?;
    params.operands[0] = operand_params(KERNEL, "q", &q, s, s.lq * s.dk)?;
    params.operands[1] = operand_params(KERNEL, "k", &k, s, s.dk * s.lk)?;
    params.operands[2] = operand_params(KERNEL, "v", &v, s, s.lk * s.dv)?;
    let p_op = AttentionOperand {
        buffer: p.0,
        map: MatrixMap { rows: p.1, lead_stride: (s.lq * s.lk) as u32, transposed: false },
    };
    params.operands[3] = operand_params(KERNEL, "p", &p_op, s, s.lq * s.lk)?;
    let sizes = [s.lq * s.dk, s.dk * s.lk, s.lk * s.dv];
    let mut inputs = vec![q.buffer, k.buffer, v.buffer, p.0];
    for (j, (t, what)) in tangents.iter().zip(["dq", "dk", "dv"]).enumerate() {
        match t {
            Some(t) => {
                params.operands[4 + j] = operand_params(KERNEL, what, t, s, sizes[j])?;
                params.present |= 1 << j;
                inputs.push(t.buffer);
            }
            // A placeholder binding the kernel never reads.
            None => inputs.push(q.buffer),
        }
    }
    if inputs.contains(&out) {
        return fail(KERNEL, "the output is also an input".into());
    }
    if params.threads == 0 || s.dv == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let kernel = ctx.kernel(KERNEL, &[])?;
    let uniform = ctx.uniform("graph_attention_tangent/params", &params);
    inputs.push(out);
    inputs.push(&uniform);
    rec.dispatch(&kernel, &inputs, grid)
}

/// The cotangent of an attention's scores from the cotangent `ct` of its output (tangent rows, [lead, lq, dv]
/// contiguous): out = scale · P ⊙ (G − rowsum(P ⊙ G)) with G = Ō · Vᵀ, [rows, lead, lq, lk] contiguous — the
/// adjoint's product with V, softmax linearisation and scale in one dispatch (graph_attention_score_adjoint.wgsl).
pub fn record_attention_score_adjoint(
    rec: &mut Recorder,
    s: &AttentionShape,
    v: AttentionOperand,
    p: (&wgpu::Buffer, RowMap),
    ct: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    const KERNEL: &str = "graph_attention_score_adjoint";
    // One thread per query, over an output of lk columns.
    let (mut params, grid) = launch(KERNEL, rec, s, (s.rows * s.lead * s.lq, 1), s.rows * s.lead * s.lq * s.lk, out)?;
    params.operands[2] = operand_params(KERNEL, "v", &v, s, s.lk * s.dv)?;
    let p_op = AttentionOperand {
        buffer: p.0,
        map: MatrixMap { rows: p.1, lead_stride: (s.lq * s.lk) as u32, transposed: false },
    };
    params.operands[3] = operand_params(KERNEL, "p", &p_op, s, s.lq * s.lk)?;
    let ct_op = AttentionOperand {
        buffer: ct,
        map: MatrixMap {
            rows: RowMap::rows(s.lead * s.lq * s.dv),
            lead_stride: (s.lq * s.dv) as u32,
            transposed: false,
        },
    };
    params.operands[4] = operand_params(KERNEL, "ct", &ct_op, s, s.lq * s.dv)?;
    if [v.buffer, p.0, ct].contains(&out) {
        return fail(KERNEL, "the output is also an input".into());
    }
    if params.threads == 0 || s.lk == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let kernel = ctx.kernel(KERNEL, &[])?;
    let uniform = ctx.uniform("graph_attention_score_adjoint/params", &params);
    rec.dispatch(&kernel, &[v.buffer, p.0, ct, out, &uniform], grid)
}
