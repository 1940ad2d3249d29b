//! Gram matrices between two blocks of rows of every point (shaders/block_gram.wgsl): the small projected
//! matrices of the resident block Krylov solvers, read on the host in f64.

use crate::error::{Error, Result};
use crate::gpu::Recorder;

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    points: u32,
    rows_a: u32,
    rows_c: u32,
    d: u32,
    a_stride: u32,
    a_offset: u32,
    c_stride: u32,
    c_offset: u32,
    diagonal: u32,
    pad: [u32; 3],
}

/// `rows` rows of length `d` per point inside a buffer: point p's rows start at `offset + p · stride` (elements).
#[derive(Debug, Clone, Copy)]
pub struct RowBlock<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub rows: usize,
    pub stride: usize,
    pub offset: usize,
}

impl RowBlock<'_> {
    /// Elements the layout reaches for `points` points of rows of length `d`.
    fn extent(&self, points: usize, d: usize) -> usize {
        if points == 0 || self.rows == 0 {
            return 0;
        }
        self.offset + (points - 1) * self.stride + self.rows * d
    }
}

/// How many f32 values [`record_block_gram`] writes: [points, rows_a, cols].
pub fn gram_len(points: usize, rows_a: usize, rows_c: usize, diagonal: bool) -> usize {
    points * rows_a * if diagonal { 1 } else { rows_c }
}

/// Records G[p, i, j] = a_i · c_j for every point (only j = i when `diagonal`, which needs rows_a = rows_c) into
/// `out` as [points, rows_a, cols] f32.
pub fn record_block_gram(
    rec: &mut Recorder,
    points: usize,
    d: usize,
    a: RowBlock,
    c: RowBlock,
    diagonal: bool,
    out: &wgpu::Buffer,
) -> Result<()> {
    let fail = |message: String| Err(Error::Kernel { kernel: "block_gram".into(), message });
    if diagonal && a.rows != c.rows {
        return fail(format!("a diagonal Gram of {} against {} rows", a.rows, c.rows));
    }
    for (name, block) in [("a", &a), ("c", &c)] {
        let need = (block.extent(points, d) * 4) as u64;
        if block.buffer.size() < need {
            return fail(format!("{name} needs {need} B but its buffer holds {}", block.buffer.size()));
        }
    }
    let need = (gram_len(points, a.rows, c.rows, diagonal) * 4) as u64;
    if out.size() < need {
        return fail(format!("out needs {need} B but its buffer holds {}", out.size()));
    }
    let pairs = a.rows * if diagonal { 1 } else { c.rows };
    if pairs == 0 || points == 0 || d == 0 {
        return Ok(());
    }
    let ctx = rec.ctx();
    let max = ctx.caps.max_workgroups_per_dimension() as usize;
    if pairs > max || points > max {
        return fail(format!("{pairs} row pairs × {points} points exceed {max} workgroups per dimension"));
    }
    let kernel = ctx.kernel("block_gram", &[])?;
    let params = Params {
        points: points as u32,
        rows_a: a.rows as u32,
        rows_c: c.rows as u32,
        d: d as u32,
        a_stride: a.stride as u32,
        a_offset: a.offset as u32,
        c_stride: c.stride as u32,
        c_offset: c.offset as u32,
        diagonal: diagonal as u32,
        pad: [0; 3],
    };
    let uniform = ctx.uniform("block_gram/params", &params);
    rec.dispatch(&kernel, &[a.buffer, c.buffer, out, &uniform], [pairs as u32, points as u32, 1])
}
