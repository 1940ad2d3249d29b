//! GroupNorm statistics folded into per-(sample, channel) scale and shift (shaders/groupnorm_stats.wgsl).

use crate::error::Result;
use crate::gpu::Recorder;

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    pixels: u32,
    channels: u32,
    groups: u32,
    offset: u32,
    eps: f32,
    pad0: u32,
    pad1: u32,
}

/// Writes coef[offset + (b·C + c)·2 + {0, 1}] = (gamma·rstd, beta − mean·gamma·rstd) for z [B, pixels, C].
#[allow(clippy::too_many_arguments)]
pub fn record_groupnorm_stats(
    rec: &mut Recorder,
    batch: usize,
    pixels: usize,
    channels: usize,
    groups: usize,
    eps: f64,
    z: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    coef: &wgpu::Buffer,
    offset: usize,
) -> Result<()> {
    let ctx = rec.ctx();
    let kernel = ctx.kernel("groupnorm_stats", &[])?;
    let params = Params {
        batch: batch as u32,
        pixels: pixels as u32,
        channels: channels as u32,
        groups: groups as u32,
        offset: offset as u32,
        eps: eps as f32,
        pad0: 0,
        pad1: 0,
    };
    let uniform = ctx.uniform("groupnorm_stats/params", &params);
    rec.dispatch(&kernel, &[z, gamma, beta, coef, &uniform], [groups as u32, batch as u32, 1])
}
