//! GroupNorm statistics folded into per-(sample, channel) scale and shift (shaders/groupnorm_stats.wgsl).

use crate::error::Result;
use crate::gpu::Recorder;
use crate::ops::conv::{AdjointNorm, GradientSource};

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    pixels: u32,
    channels: u32,
    groups: u32,
    offset: u32,
    eps: f32,
    stats_offset: u32,
    pad0: u32,
}

/// Writes coef[offset + (b·C + c)·2 + {0, 1}] = (gamma·rstd, beta − mean·gamma·rstd) for z [B, pixels, C], and
/// coef[stats_offset + (b·G + g)·2 + {0, 1}] = (mean, rstd).
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
    stats_offset: usize,
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
        stats_offset: stats_offset as u32,
        pad0: 0,
    };
    let uniform = ctx.uniform("groupnorm_stats/params", &params);
    rec.dispatch(&kernel, &[z, gamma, beta, coef, &uniform], [groups as u32, batch as u32, 1])
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TangentParams {
    rows: u32,
    pixels: u32,
    channels: u32,
    groups: u32,
    group_rows: u32,
    stats_offset: u32,
    tstats_offset: u32,
    pad0: u32,
}

/// Writes coef[tstats_offset + (r·G + g)·2 + {0, 1}] = (mean ż, mean ż·x̂) for tangents ż [R, pixels, C] of points
/// z [B, pixels, C] (R = B·per_point), whose (mean, rstd) sit at stats_offset.
#[allow(clippy::too_many_arguments)]
pub fn record_groupnorm_tangent_stats(
    rec: &mut Recorder,
    rows: usize,
    per_point: usize,
    pixels: usize,
    channels: usize,
    groups: usize,
    tangent: &wgpu::Buffer,
    primal: &wgpu::Buffer,
    coef: &wgpu::Buffer,
    stats_offset: usize,
    tstats_offset: usize,
) -> Result<()> {
    let ctx = rec.ctx();
    let name = ctx.reduction_kernel("groupnorm_tangent_stats", "groupnorm_tangent_stats_subgroup");
    let kernel = ctx.kernel(name, &[])?;
    let params = TangentParams {
        rows: rows as u32,
        pixels: pixels as u32,
        channels: channels as u32,
        groups: groups as u32,
        group_rows: per_point as u32,
        stats_offset: stats_offset as u32,
        tstats_offset: tstats_offset as u32,
        pad0: 0,
    };
    let uniform = ctx.uniform("groupnorm_tangent_stats/params", &params);
    rec.dispatch(&kernel, &[tangent, primal, coef, &uniform], [groups as u32, rows as u32, 1])
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AdjointParams {
    rows: u32,
    pixels: u32,
    channels: u32,
    groups: u32,
    group_rows: u32,
    norm_offset: u32,
    stats_offset: u32,
    astats_offset: u32,
    grad_stride1: u32,
    grad_offset1: u32,
    grad_stride2: u32,
    grad_offset2: u32,
}

/// Writes coef[astats_offset + (r·G + g)·2 + {0, 1}] = (mean γȳ, mean γȳx̂) for the gradient h̄ (one or two sources)
/// of h = silu(GroupNorm(z)) (see shaders/groupnorm_adjoint_stats.wgsl).
#[allow(clippy::too_many_arguments)]
pub fn record_groupnorm_adjoint_stats(
    rec: &mut Recorder,
    rows: usize,
    per_point: usize,
    pixels: usize,
    channels: usize,
    norm: AdjointNorm,
    grad1: GradientSource,
    grad2: Option<GradientSource>,
    coef: &wgpu::Buffer,
) -> Result<()> {
    let ctx = rec.ctx();
    let name = ctx.reduction_kernel("groupnorm_adjoint_stats", "groupnorm_adjoint_stats_subgroup");
    let kernel = ctx.kernel(name, &[("TWO_SOURCES", grad2.is_some() as u32 as f64)])?;
    let params = AdjointParams {
        rows: rows as u32,
        pixels: pixels as u32,
        channels: channels as u32,
        groups: norm.groups as u32,
        group_rows: per_point as u32,
        norm_offset: norm.norm_offset as u32,
        stats_offset: norm.stats_offset as u32,
        astats_offset: norm.astats_offset as u32,
        grad_stride1: grad1.stride as u32,
        grad_offset1: grad1.offset as u32,
        grad_stride2: grad2.map_or(0, |g| g.stride as u32),
        grad_offset2: grad2.map_or(0, |g| g.offset as u32),
    };
    let uniform = ctx.uniform("groupnorm_adjoint_stats/params", &params);
    let dummy = ctx.dummy();
    rec.dispatch(
        &kernel,
        &[grad1.buffer, grad2.map_or(dummy, |g| g.buffer), norm.primal, coef, &uniform],
        [norm.groups as u32, rows as u32, 1],
    )
}
