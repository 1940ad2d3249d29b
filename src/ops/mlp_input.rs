//! Assembles MLP input rows [x, e(t)] on the GPU (shaders/mlp_input.wgsl).

use crate::error::Result;
use crate::gpu::{grid_2d, Recorder};

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    embed: u32,
    grid_width: u32,
}

const WORKGROUP: u32 = 256;

/// h0[r] = [x[r], features[time_index[r]]] for `rows` rows.
pub fn record_mlp_input(
    rec: &mut Recorder,
    rows: usize,
    dim: usize,
    embed: usize,
    x: &wgpu::Buffer,
    features: &wgpu::Buffer,
    time_index: &wgpu::Buffer,
    h0: &wgpu::Buffer,
) -> Result<()> {
    let ctx = rec.ctx();
    let kernel = ctx.kernel("mlp_input", &[])?;
    let elements = (rows * (dim + embed)) as u32;
    let (gx, gy) = grid_2d(elements.div_ceil(WORKGROUP), ctx.caps.max_workgroups_per_dimension());
    let params = Params { rows: rows as u32, dim: dim as u32, embed: embed as u32, grid_width: gx * WORKGROUP };
    let uniform = ctx.uniform("mlp_input/params", &params);
    rec.dispatch(&kernel, &[x, features, time_index, h0, &uniform], [gx, gy, 1])
}
