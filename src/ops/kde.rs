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
/// Dimensions up to this can use the per-point kernels over data slices (kde_point_*.wgsl).
pub const POINT_MAX_DIM: usize = 64;
/// Data points per workgroup of kde_point_moments.wgsl (its and kde_point_combine.wgsl's `SLICE`).
pub const POINT_SLICE: usize = 512;
/// Query points per workgroup of kde_point_moments, kde_point_weights and kde_point_covariance_rows.
const POINT_ROWS_PER_GROUP: u32 = 8;
/// Output block edge of the tiled kernels.
const BLOCK: u32 = 64;
/// Directions per workgroup of the H·V kernels for narrow blocks (their `BLOCK_ROWS` override; 64 otherwise).
pub const NARROW_DIRECTIONS: usize = 16;
/// Blocks of at most this many directions take the narrow workgroups.
pub const NARROW_MAX_DIRECTIONS: usize = 32;
/// Query points per workgroup of the small-dimension kernels (shared/kde_small.wgsl).
const SMALL_THREADS: u32 = 32;

/// The device buffers of one data tile and one chunk of query points. Each kernel binds the ones its WGSL
/// declares, in binding order (`KdeKernel::bindings`); `second` is the second pass's output (cov or u).
pub struct KdeBuffers<'a> {
    pub data: &'a wgpu::Buffer,
    pub x: &'a wgpu::Buffer,
    pub logits: &'a wgpu::Buffer,
    pub state: &'a wgpu::Buffer,
    pub acc: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    pub proj: &'a wgpu::Buffer,
    pub second: &'a wgpu::Buffer,
    /// Per-slice (max, sum) and displacement of the per-point path ([slices, rows] and [slices, rows, dim]).
    pub partial_state: &'a wgpu::Buffer,
    pub partial_acc: &'a wgpu::Buffer,
    /// Per-slice covariances of the per-point path ([slices, rows, dim, dim]).
    pub partial_cov: &'a wgpu::Buffer,
}

/// The kde kernels; each records one dispatch over one data tile for a chunk of query points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdeKernel {
    /// logits[b, i] = −‖x_b − α·dataᵢ‖² / (2σ²) for the tile.
    Distances,
    /// Folds the tile's logits into the running (max, sum) state.
    SoftmaxUpdate,
    /// Folds the tile into the running weighted displacement acc (after the softmax update).
    MeanUpdate,
    /// Folds the tile into the centred weighted covariance (final state and acc).
    Covariance,
    /// proj[b, p, i] = v_bp · (α·dataᵢ − m_b) for the tile (16 or 64 directions per workgroup: [`directions_per_group`]).
    HvpProject,
    /// u[b, p] (+)= Σᵢ wᵢ proj[b, p, i] (α·dataᵢ − m_b) for the tile (as HvpProject).
    HvpAccumulate,
    /// dim ≤ 8: distances, online log-sum-exp and displacement of the tile in one pass.
    SmallMoments,
    /// dim ≤ 8: the tile's centred weighted covariance.
    SmallCovariance,
    /// dim ≤ 64: log-sum-exp and displacement of each 512-point slice of the tile, one thread per query point.
    PointMoments,
    /// Merges PointMoments' slices into the running state and acc.
    PointCombine,
    /// dim ≤ 64: the final weights of the tile's points, into `logits`.
    PointWeights,
    /// dim ≤ 64: each 512-point slice's centred weighted covariance, one thread per query point (after
    /// PointWeights).
    PointCovarianceRows,
    /// Sums PointCovarianceRows' slices into the covariance.
    PointCovarianceCombine,
}

impl KdeKernel {
    /// The kernel's name in `gpu::kernels::KERNELS` (its file shaders/<name>.wgsl).
    pub fn name(self) -> &'static str {
        match self {
            KdeKernel::Distances => "kde_distances",
            KdeKernel::SoftmaxUpdate => "kde_softmax_update",
            KdeKernel::MeanUpdate => "kde_mean_update",
            KdeKernel::Covariance => "kde_covariance",
            KdeKernel::HvpProject => "kde_hvp_project",
            KdeKernel::HvpAccumulate => "kde_hvp_accumulate",
            KdeKernel::SmallMoments => "kde_small_moments",
            KdeKernel::SmallCovariance => "kde_small_covariance",
            KdeKernel::PointMoments => "kde_point_moments",
            KdeKernel::PointCombine => "kde_point_combine",
            KdeKernel::PointWeights => "kde_point_weights",
            KdeKernel::PointCovarianceRows => "kde_point_covariance_rows",
            KdeKernel::PointCovarianceCombine => "kde_point_covariance_combine",
        }
    }

    /// The storage buffers in the kernel's binding order (the params uniform follows them).
    fn bindings<'a>(self, b: &KdeBuffers<'a>) -> Vec<&'a wgpu::Buffer> {
        match self {
            KdeKernel::Distances => vec![b.data, b.x, b.logits],
            KdeKernel::SoftmaxUpdate => vec![b.logits, b.state],
            KdeKernel::MeanUpdate => vec![b.data, b.x, b.logits, b.state, b.acc],
            KdeKernel::Covariance => vec![b.data, b.x, b.logits, b.state, b.acc, b.second],
            KdeKernel::HvpProject => vec![b.data, b.x, b.state, b.acc, b.v, b.proj],
            KdeKernel::HvpAccumulate => vec![b.data, b.x, b.logits, b.state, b.acc, b.proj, b.second],
            KdeKernel::SmallMoments => vec![b.data, b.x, b.state, b.acc],
            KdeKernel::SmallCovariance => vec![b.data, b.x, b.state, b.acc, b.second],
            KdeKernel::PointMoments => vec![b.data, b.x, b.partial_state, b.partial_acc],
            KdeKernel::PointCombine => vec![b.partial_state, b.partial_acc, b.state, b.acc],
            KdeKernel::PointWeights => vec![b.data, b.x, b.state, b.logits],
            KdeKernel::PointCovarianceRows => vec![b.data, b.x, b.logits, b.state, b.acc, b.partial_cov],
            KdeKernel::PointCovarianceCombine => vec![b.partial_cov, b.second],
        }
    }

    /// The workgroup grid (the `Dispatch` line of the kernel's header).
    fn groups(self, p: &KdeParams) -> [u32; 3] {
        let blocks = |n: u32| n.div_ceil(BLOCK);
        match self {
            KdeKernel::Distances => [blocks(p.tile_rows), blocks(p.rows), 1],
            KdeKernel::SoftmaxUpdate => [p.rows, 1, 1],
            KdeKernel::MeanUpdate => [blocks(p.dim), blocks(p.rows), 1],
            KdeKernel::Covariance => [blocks(p.dim), blocks(p.dim), p.rows],
            KdeKernel::HvpProject => [blocks(p.tile_rows), p.per_point.div_ceil(directions_per_group(p)), p.rows],
            KdeKernel::HvpAccumulate => [blocks(p.dim), p.per_point.div_ceil(directions_per_group(p)), p.rows],
            KdeKernel::SmallMoments | KdeKernel::SmallCovariance => [p.rows.div_ceil(SMALL_THREADS), 1, 1],
            KdeKernel::PointMoments | KdeKernel::PointWeights => {
                [p.tile_rows.div_ceil(POINT_SLICE as u32), p.rows.div_ceil(POINT_ROWS_PER_GROUP), 1]
            }
            KdeKernel::PointCombine => [p.rows, 1, 1],
            KdeKernel::PointCovarianceRows => {
                [p.tile_rows.div_ceil(POINT_SLICE as u32), p.rows.div_ceil(POINT_ROWS_PER_GROUP), p.dim.div_ceil(4)]
            }
            KdeKernel::PointCovarianceCombine => [(p.dim * p.dim).div_ceil(64), p.rows, 1],
        }
    }

    /// The kernel's `override` constants: the H·V kernels' directions per workgroup (shared/kde_block.wgsl), the
    /// per-point kernels' ⌈dim / 4⌉.
    fn constants(self, p: &KdeParams) -> Vec<(&'static str, f64)> {
        match self {
            KdeKernel::HvpProject | KdeKernel::HvpAccumulate => vec![("BLOCK_ROWS", directions_per_group(p) as f64)],
            // Coordinate loops of constant length (unrolled, private arrays in registers).
            KdeKernel::PointMoments | KdeKernel::PointWeights | KdeKernel::PointCovarianceRows => {
                vec![("QUADS", p.dim.div_ceil(4) as f64)]
            }
            _ => Vec::new(),
        }
    }
}

/// Directions per workgroup of the H·V kernels: 16 for blocks of at most [`NARROW_MAX_DIRECTIONS`] (a Lanczos block
/// of 8–16 vectors then pays for 16, not 64), else 64.
pub fn directions_per_group(p: &KdeParams) -> u32 {
    if p.per_point as usize <= NARROW_MAX_DIRECTIONS {
        NARROW_DIRECTIONS as u32
    } else {
        BLOCK
    }
}

/// Records `kernels` in order, each one dispatch over the tile with `params` as its uniform.
pub fn record(rec: &mut Recorder, kernels: &[KdeKernel], params: &KdeParams, buffers: &KdeBuffers) -> Result<()> {
    for &kernel in kernels {
        let name = kernel.name();
        let ctx = rec.ctx();
        let pipeline = ctx.kernel(name, &kernel.constants(params))?;
        let uniform = ctx.uniform(&format!("{name}/params"), params);
        let mut all = kernel.bindings(buffers);
        all.push(&uniform);
        rec.dispatch(&pipeline, &all, kernel.groups(params))?;
    }
    Ok(())
}
