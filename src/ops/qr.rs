//! Batched thin QR of row blocks on the GPU (shaders/qr_rows.wgsl): MGS², in place, R and log R_jj kept.

use crate::error::{Error, Result};
use crate::gpu::{grid_2d, Recorder};

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    blocks: u32,
    k: u32,
    d: u32,
    slot: u32,
    keep_r: u32,
    grid_width: u32,
    pad: [u32; 2],
}

/// Where a re-orthonormalisation's factors go: slot `slot` of `r` ([slots, blocks, K, K], when kept) and of
/// `log_diag` ([slots, blocks, K]).
pub struct QrFactors<'a> {
    pub r: Option<&'a wgpu::Buffer>,
    pub log_diag: &'a wgpu::Buffer,
    pub slot: usize,
}

/// Orthonormalises the K rows of each of `blocks` blocks of `q` ([blocks, K, D], in place): block = Rᵀ Q with
/// R upper triangular, R_jj ≥ 0.
pub fn record_qr_rows(
    rec: &mut Recorder,
    q: &wgpu::Buffer,
    blocks: usize,
    k: usize,
    d: usize,
    factors: QrFactors,
) -> Result<()> {
    let need = |words: usize| (words * 4) as u64;
    let slots = factors.slot + 1;
    let mut checks = vec![("q", q, need(blocks * k * d)), ("log_diag", factors.log_diag, need(slots * blocks * k))];
    if let Some(r) = factors.r {
        checks.push(("r", r, need(slots * blocks * k * k)));
    }
    for (name, buffer, bytes) in checks {
        if buffer.size() < bytes {
            return Err(Error::Kernel {
                kernel: "qr_rows".into(),
                message: format!("{name} needs {bytes} B but its buffer holds {}", buffer.size()),
            });
        }
    }
    let ctx = rec.ctx();
    let kernel = ctx.kernel(ctx.reduction_kernel("qr_rows", "qr_rows_subgroup"), &[])?;
    let (gx, gy) = grid_2d(blocks as u32, ctx.caps.max_workgroups_per_dimension());
    let params = Params {
        blocks: blocks as u32,
        k: k as u32,
        d: d as u32,
        slot: factors.slot as u32,
        keep_r: factors.r.is_some() as u32,
        grid_width: gx,
        pad: [0; 2],
    };
    let uniform = ctx.uniform("qr_rows/params", &params);
    let r = factors.r.unwrap_or(ctx.dummy());
    rec.dispatch(&kernel, &[q, r, factors.log_diag, &uniform], [gx, gy, 1])
}
