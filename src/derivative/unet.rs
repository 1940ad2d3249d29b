//! Exact forward-mode derivatives of the Song U-Net: J·V on the GPU.
//!
//! Each block's tangent is the convolution of its input tangents (shaders/conv2d_tangent.wgsl). Where the input
//! passed through GroupNorm + SiLU, its tangent is loaded as
//!   ḣ = silu'(y) · γ·rstd · (ż − mean(ż) − x̂ · mean(ż ⊙ x̂)),  y = γ x̂ + β,  x̂ = (z − μ)·rstd,
//! with the group means of each tangent row from shaders/groupnorm_tangent_stats.wgsl and z, μ, rstd from the
//! primal pass, which runs once per batch of points and stays on the GPU.

use crate::error::{Error, Result};
use crate::field::unet::UnetSlot;
use crate::field::UnetField;
use crate::gpu::{BufferRole, Recorder};
use crate::ops::conv::{record_conv2d_tangent, ConvShape, TangentNorm, TangentSource};
use crate::ops::groupnorm::record_groupnorm_tangent_stats;

use super::TangentLayout;

/// Which encoder output each decoder block concatenates after its own input (blocks in execution order).
const SKIP_OF: [Option<usize>; 8] = [None, None, None, None, None, Some(2), Some(1), Some(0)];

/// The U-Net linearised at a batch of points: its primal activations and GroupNorm statistics on the GPU, with room
/// for the statistics of up to `max_tangent_rows` tangent rows.
pub struct UnetLinearization<'f> {
    field: &'f UnetField,
    points: usize,
    max_tangent_rows: usize,
    slot: UnetSlot,
}

impl<'f> UnetLinearization<'f> {
    pub fn new(field: &'f UnetField, x: &[f32], t: &[f32], max_tangent_rows: usize) -> Result<Self> {
        let points = x.len() / field.model().dim();
        let slot = field.allocate(points, max_tangent_rows, "unet/linearize");
        let mut rec = Recorder::new(field.ctx(), "unet/linearize");
        field.record_chunk(&slot, x, t, 0..points, max_tangent_rows, &mut rec)?;
        rec.submit();
        Ok(UnetLinearization { field, points, max_tangent_rows, slot })
    }

    pub fn points(&self) -> usize {
        self.points
    }

    /// Records J·V for `per_point` tangents per point: `v` [points, P, 784] → `out` (see [`TangentLayout`]).
    pub fn record_jvp(
        &self,
        rec: &mut Recorder,
        v: &wgpu::Buffer,
        per_point: usize,
        out: &wgpu::Buffer,
        layout: TangentLayout,
    ) -> Result<()> {
        let rows = self.points * per_point;
        if rows > self.max_tangent_rows {
            return Err(Error::Kernel {
                kernel: "unet/jvp".into(),
                message: format!("{rows} tangent rows but room for {}", self.max_tangent_rows),
            });
        }
        let model = self.field.model();
        let ctx = self.field.ctx();
        let (norms, _) = self.field.norm_layout(self.points, self.max_tangent_rows);
        let sizes = model.block_sizes();
        let last = model.blocks.len() - 1;
        let tangents: Vec<wgpu::Buffer> = model.blocks[..last]
            .iter()
            .zip(&sizes)
            .map(|(b, (_, (h, w)))| {
                ctx.buffer(
                    &format!("unet/jvp/{}", b.name),
                    (rows * h * w * b.conv.outputs * 4) as u64,
                    BufferRole::Storage,
                )
            })
            .collect();
        let source = |block: usize| -> TangentSource {
            let norm = norms[block].map(|place| TangentNorm {
                primal: &self.slot.z[block],
                groups: place.groups,
                norm_offset: place.norm,
                stats_offset: place.stats,
                tstats_offset: place.tangent_stats,
            });
            TangentSource { tangent: &tangents[block], norm }
        };
        for (i, block) in model.blocks.iter().enumerate() {
            let ((h, w), (ho, wo)) = sizes[i];
            let skip = SKIP_OF[i];
            let c2 = skip.map_or(0, |s| model.blocks[s].conv.outputs);
            let c = &block.conv;
            let shape = ConvShape {
                batch: rows,
                height: h,
                width: w,
                c1: c.inputs - c2,
                c2,
                outputs: c.outputs,
                stride: c.stride,
                transposed: c.transposed,
                output_padding: c.output_padding,
            };
            let src1 = if i == 0 { TangentSource { tangent: v, norm: None } } else { source(i - 1) };
            let src2 = skip.map(source);
            let (target, scale) = if i == last { (out, Some(&self.slot.sample_scale)) } else { (&tangents[i], None) };
            let transposed = i == last && layout == TangentLayout::Transposed;
            record_conv2d_tangent(
                rec,
                &shape,
                per_point,
                &src1,
                src2.as_ref(),
                &self.slot.coef,
                self.field.block_buffers(i),
                scale,
                transposed,
                target,
            )?;
            if let (Some(place), true) = (norms[i], i != last) {
                record_groupnorm_tangent_stats(
                    rec,
                    rows,
                    per_point,
                    ho * wo,
                    c.outputs,
                    place.groups,
                    &tangents[i],
                    &self.slot.z[i],
                    &self.slot.coef,
                    place.stats,
                    place.tangent_stats,
                )?;
            }
        }
        Ok(())
    }
}
