//! out = Σ_j c_j · in_j over up to six equally long device arrays (shaders/lincomb.wgsl).

use crate::error::{Error, Result};
use crate::gpu::{grid_2d, Recorder};

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    grid_width: u32,
    pad: [u32; 2],
    coef: [f32; 8],
}

/// Most terms one dispatch combines.
pub const MAX_TERMS: usize = 6;
const WORKGROUP: u32 = 256;

/// Records out[i] = Σ_j terms[j].0 · terms[j].1[i] for i < len. `out` must not be one of the inputs.
pub fn record_lincomb(
    rec: &mut Recorder,
    len: usize,
    terms: &[(f64, &wgpu::Buffer)],
    out: &wgpu::Buffer,
) -> Result<()> {
    let fail = |message: String| Err(Error::Kernel { kernel: "lincomb".into(), message });
    if terms.is_empty() || terms.len() > MAX_TERMS {
        return fail(format!("{} terms (1 to {MAX_TERMS} allowed)", terms.len()));
    }
    let bytes = (len * 4) as u64;
    if let Some((_, b)) = terms.iter().find(|(_, b)| b.size() < bytes) {
        return fail(format!("an input holds {} B of the {bytes} B needed", b.size()));
    }
    if out.size() < bytes {
        return fail(format!("the output holds {} B of the {bytes} B needed", out.size()));
    }
    if terms.iter().any(|(_, b)| *b == out) {
        return fail("the output is also an input".into());
    }
    let ctx = rec.ctx();
    let kernel = ctx.kernel("lincomb", &[("TERMS", terms.len() as f64)])?;
    let (gx, gy) = grid_2d((len as u32).div_ceil(WORKGROUP), ctx.caps.max_workgroups_per_dimension());
    let mut coef = [0f32; 8];
    for (slot, (c, _)) in coef.iter_mut().zip(terms) {
        *slot = *c as f32;
    }
    let params = Params { len: len as u32, grid_width: gx * WORKGROUP, pad: [0; 2], coef };
    let uniform = ctx.uniform("lincomb/params", &params);
    let dummy = ctx.dummy();
    let mut buffers: Vec<&wgpu::Buffer> = terms.iter().map(|(_, b)| *b).collect();
    buffers.resize(MAX_TERMS, dummy);
    buffers.push(out);
    buffers.push(&uniform);
    rec.dispatch(&kernel, &buffers, [gx, gy, 1])
}
