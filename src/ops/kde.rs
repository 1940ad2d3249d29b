//! The kernels of the smoothed empirical density (shaders/kde_*.wgsl): each records one dispatch over one data
//! tile for a chunk of query points. See shaders/shared/kde_params.wgsl for the shared state layout.

use crate::error::Result;
use crate::gpu::Recorder;

/// The per-dispatch parameters of every kde kernel (shaders/shared/kde_params.wgsl).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct KdeParams {
    pub rows: u32,
    pub dim: u32,
    pub tile_rows: u32,
    pub ld: u32,
    pub per_point: u32,
    pub first: u32,
    pub alpha: f32,
    pub inv_two_var: f32,
}

/// Dimensions up to this use the fused one-thread-per-point kernels (kde_small_*.wgsl).
pub const SMALL_DIM: usize = 8;
/// Output block edge of the tiled kernels.
const BLOCK: u32 = 64;
/// Query points per workgroup of the small-dimension kernels.
const SMALL_THREADS: u32 = 256;

fn record(
    rec: &mut Recorder,
    name: &'static str,
    params: &KdeParams,
    buffers: &[&wgpu::Buffer],
    groups: [u32; 3],
) -> Result<()> {
    let ctx = rec.ctx();
    let kernel = ctx.kernel(name, &[])?;
    let uniform = ctx.uniform(&format!("{name}/params"), params);
    let mut all: Vec<&wgpu::Buffer> = buffers.to_vec();
    all.push(&uniform);
    rec.dispatch(&kernel, &all, groups)
}

/// logits[b, i] = −‖x_b − α·dataᵢ‖² / (2σ²) for the tile.
pub fn record_distances(
    rec: &mut Recorder,
    p: &KdeParams,
    data: &wgpu::Buffer,
    x: &wgpu::Buffer,
    logits: &wgpu::Buffer,
) -> Result<()> {
    record(rec, "kde_distances", p, &[data, x, logits], [p.tile_rows.div_ceil(BLOCK), p.rows.div_ceil(BLOCK), 1])
}

/// Folds the tile's logits into the running (max, sum) state.
pub fn record_softmax_update(
    rec: &mut Recorder,
    p: &KdeParams,
    logits: &wgpu::Buffer,
    state: &wgpu::Buffer,
) -> Result<()> {
    record(rec, "kde_softmax_update", p, &[logits, state], [p.rows, 1, 1])
}

/// Folds the tile into the running weighted displacement acc (after the softmax update).
pub fn record_mean_update(
    rec: &mut Recorder,
    p: &KdeParams,
    data: &wgpu::Buffer,
    x: &wgpu::Buffer,
    logits: &wgpu::Buffer,
    state: &wgpu::Buffer,
    acc: &wgpu::Buffer,
) -> Result<()> {
    record(
        rec,
        "kde_mean_update",
        p,
        &[data, x, logits, state, acc],
        [p.dim.div_ceil(BLOCK), p.rows.div_ceil(BLOCK), 1],
    )
}

/// Folds the tile into the centred weighted covariance (final state and acc).
#[allow(clippy::too_many_arguments)]
pub fn record_covariance(
    rec: &mut Recorder,
    p: &KdeParams,
    data: &wgpu::Buffer,
    x: &wgpu::Buffer,
    logits: &wgpu::Buffer,
    state: &wgpu::Buffer,
    acc: &wgpu::Buffer,
    cov: &wgpu::Buffer,
) -> Result<()> {
    let blocks = p.dim.div_ceil(BLOCK);
    record(rec, "kde_covariance", p, &[data, x, logits, state, acc, cov], [blocks, blocks, p.rows])
}

/// proj[b, p, i] = v_bp · (α·dataᵢ − m_b) for the tile.
#[allow(clippy::too_many_arguments)]
pub fn record_hvp_project(
    rec: &mut Recorder,
    p: &KdeParams,
    data: &wgpu::Buffer,
    x: &wgpu::Buffer,
    state: &wgpu::Buffer,
    acc: &wgpu::Buffer,
    v: &wgpu::Buffer,
    proj: &wgpu::Buffer,
) -> Result<()> {
    record(
        rec,
        "kde_hvp_project",
        p,
        &[data, x, state, acc, v, proj],
        [p.tile_rows.div_ceil(BLOCK), p.per_point.div_ceil(BLOCK), p.rows],
    )
}

/// u[b, p] (+)= Σᵢ wᵢ proj[b, p, i] (α·dataᵢ − m_b) for the tile.
#[allow(clippy::too_many_arguments)]
pub fn record_hvp_accumulate(
    rec: &mut Recorder,
    p: &KdeParams,
    data: &wgpu::Buffer,
    x: &wgpu::Buffer,
    logits: &wgpu::Buffer,
    state: &wgpu::Buffer,
    acc: &wgpu::Buffer,
    proj: &wgpu::Buffer,
    u: &wgpu::Buffer,
) -> Result<()> {
    record(
        rec,
        "kde_hvp_accumulate",
        p,
        &[data, x, logits, state, acc, proj, u],
        [p.dim.div_ceil(BLOCK), p.per_point.div_ceil(BLOCK), p.rows],
    )
}

/// dim ≤ 8: distances, online log-sum-exp and displacement of the tile in one pass.
pub fn record_small_moments(
    rec: &mut Recorder,
    p: &KdeParams,
    data: &wgpu::Buffer,
    x: &wgpu::Buffer,
    state: &wgpu::Buffer,
    acc: &wgpu::Buffer,
) -> Result<()> {
    record(rec, "kde_small_moments", p, &[data, x, state, acc], [p.rows.div_ceil(SMALL_THREADS), 1, 1])
}

/// dim ≤ 8: the tile's centred weighted covariance.
#[allow(clippy::too_many_arguments)]
pub fn record_small_covariance(
    rec: &mut Recorder,
    p: &KdeParams,
    data: &wgpu::Buffer,
    x: &wgpu::Buffer,
    state: &wgpu::Buffer,
    acc: &wgpu::Buffer,
    cov: &wgpu::Buffer,
) -> Result<()> {
    record(rec, "kde_small_covariance", p, &[data, x, state, acc, cov], [p.rows.div_ceil(SMALL_THREADS), 1, 1])
}
