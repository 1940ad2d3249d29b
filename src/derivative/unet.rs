//! Exact forward-mode derivatives of the Song U-Net: J·V on the GPU.
//!
//! Each block's tangent is the convolution of its input tangents (shaders/conv2d_tangent.wgsl). Where the input
//! passed through GroupNorm + SiLU, its tangent is loaded as
//!   ḣ = silu'(y) · γ·rstd · (ż − mean(ż) − x̂ · mean(ż ⊙ x̂)),  y = γ x̂ + β,  x̂ = (z − μ)·rstd,
//! with the group means of each tangent row from shaders/groupnorm_tangent_stats.wgsl and z, μ, rstd from the
//! primal pass, which runs once per batch of points and stays on the GPU.
//!
//! Reverse mode walks the blocks backwards. A block's adjoint is the transposed convolution of its convolution (and
//! the other way round) applied to z̄, the gradient of its pre-norm output, which is formed as it loads from h̄, the
//! gradient of its output:  ȳ = h̄ ⊙ silu'(y),  z̄ = γ·rstd·ȳ − rstd·(mean(γȳ) + x̂·mean(γȳ ⊙ x̂)).
//! An adjoint writes the gradient of the block's whole (concatenated) input; an encoder activation that also feeds
//! a decoder block as a skip sums its two gradients as the next adjoint loads them.

use crate::error::{Error, Result};
use crate::field::unet::UnetSlot;
use crate::field::UnetField;
use crate::gpu::{BufferRole, Recorder, ScratchPool};
use crate::model::unet::SKIP_OF;
use crate::ops::conv::{
    record_conv2d_adjoint, record_conv2d_tangent, AdjointNorm, ConvShape, GradientSource, TangentNorm, TangentSource,
};
use crate::ops::groupnorm::{record_groupnorm_adjoint_stats, record_groupnorm_tangent_stats};

use super::TangentLayout;

/// The U-Net linearised at a batch of points: its primal activations and GroupNorm statistics on the GPU, with room
/// for the statistics of up to `max_tangent_rows` tangent rows.
pub struct UnetLinearization<'f> {
    field: &'f UnetField,
    points: usize,
    max_tangent_rows: usize,
    slot: UnetSlot,
    /// The tangents' block activations, kept between calls (each conv writes every element of its output).
    scratch: ScratchPool,
}

impl<'f> UnetLinearization<'f> {
    pub fn new(field: &'f UnetField, x: &[f32], t: &[f32], max_tangent_rows: usize) -> Result<Self> {
        let points = x.len() / field.model().dim();
        let slot = field.allocate(points, max_tangent_rows, "unet/linearize");
        let mut rec = Recorder::new(field.ctx(), "unet/linearize");
        field.record_chunk(&slot, x, t, 0..points, max_tangent_rows, &mut rec)?;
        rec.submit();
        Ok(UnetLinearization { field, points, max_tangent_rows, slot, scratch: ScratchPool::default() })
    }

    /// Room for the primal pass of `points` points and the statistics of `max_tangent_rows` tangent rows;
    /// [`Self::record_primal`] fills it.
    pub(crate) fn allocate(field: &'f UnetField, points: usize, max_tangent_rows: usize) -> Self {
        let slot = field.allocate(points, max_tangent_rows, "unet/linearize");
        UnetLinearization { field, points, max_tangent_rows, slot, scratch: ScratchPool::default() }
    }

    /// Records the primal pass at device-resident points `x` ([points, D]) at time `t`.
    pub(crate) fn record_primal(&self, rec: &mut Recorder, x: &wgpu::Buffer, t: f32) -> Result<()> {
        self.field.record_at(&self.slot, x, t, self.points, self.max_tangent_rows, rec)
    }

    /// Records a copy of the linearised points' score ([points, D]) into `out`.
    pub(crate) fn record_score(&self, rec: &mut Recorder, out: &wgpu::Buffer) {
        let last = self.slot.z.len() - 1;
        rec.copy(&self.slot.z[last], out, (self.points * self.field.model().dim() * 4) as u64);
    }

    pub fn points(&self) -> usize {
        self.points
    }

    /// The pre-activations of every SiLU unit, y = GroupNorm(z) of each normalised block, [points, Σ units], read
    /// back and formed on the host from z and the folded GroupNorm coefficients.
    pub fn pre_activations(&self) -> Result<Vec<f32>> {
        let model = self.field.model();
        let ctx = self.field.ctx();
        let (norms, total) = self.field.norm_layout(self.points, self.max_tangent_rows);
        let coef: Vec<f32> = ctx.download(&self.slot.coef, total)?;
        let sizes = model.block_sizes();
        let blocks: Vec<(usize, usize, usize)> = norms
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (i, sizes[i].1 .0 * sizes[i].1 .1, n.norm)))
            .collect();
        let per_point: usize = blocks.iter().map(|&(i, pixels, _)| pixels * model.blocks[i].conv.outputs).sum();
        let mut out = Vec::with_capacity(self.points * per_point);
        let values: Vec<Vec<f32>> = blocks
            .iter()
            .map(|&(i, pixels, _)| ctx.download(&self.slot.z[i], self.points * pixels * model.blocks[i].conv.outputs))
            .collect::<Result<_>>()?;
        for p in 0..self.points {
            for (&(i, pixels, offset), z) in blocks.iter().zip(&values) {
                let channels = model.blocks[i].conv.outputs;
                for k in 0..pixels * channels {
                    let c = k % channels;
                    let j = offset + (p * channels + c) * 2;
                    out.push(z[p * pixels * channels + k] * coef[j] + coef[j + 1]);
                }
            }
        }
        Ok(out)
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
                self.scratch.get(ctx, &format!("unet/jvp/{}", b.name), (rows * h * w * b.conv.outputs * 4) as u64)
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
            let (_, (ho, wo)) = sizes[i];
            let skip = SKIP_OF[i];
            let c = &block.conv;
            let shape = model.block_shape(i, rows);
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

impl UnetLinearization<'_> {
    /// Records Jᵀ·U for `per_point` cotangents per point: `u` [points, Q, 784] → `out` [points, Q, 784]. With U = I,
    /// `out` holds the Jacobian's rows.
    pub fn record_vjp(&self, rec: &mut Recorder, u: &wgpu::Buffer, per_point: usize, out: &wgpu::Buffer) -> Result<()> {
        let rows = self.points * per_point;
        if rows > self.max_tangent_rows {
            return Err(Error::Kernel {
                kernel: "unet/vjp".into(),
                message: format!("{rows} cotangent rows but room for {}", self.max_tangent_rows),
            });
        }
        let model = self.field.model();
        let ctx = self.field.ctx();
        let (norms, _) = self.field.norm_layout(self.points, self.max_tangent_rows);
        let sizes = model.block_sizes();
        let last = model.blocks.len() - 1;
        // a[k]: the gradient of block k's (concatenated) input, [R, H_in, W_in, C_in]; block 0's is the result.
        let adjoints: Vec<Option<wgpu::Buffer>> = model
            .blocks
            .iter()
            .zip(&sizes)
            .enumerate()
            .map(|(k, (b, ((h, w), _)))| {
                (k > 0).then(|| {
                    ctx.buffer(
                        &format!("unet/vjp/{}", b.name),
                        (rows * h * w * b.conv.inputs * 4) as u64,
                        BufferRole::Storage,
                    )
                })
            })
            .collect();
        let adjoint = |k: usize| -> &wgpu::Buffer { adjoints[k].as_ref().unwrap_or(out) };
        // The gradient sources of block k's output h_k: the next block's input gradient (first channels), and for
        // encoder outputs that are skips, the decoder block's input gradient after its own channels.
        let sources = |k: usize| -> (GradientSource, Option<GradientSource>) {
            if k == last {
                return (GradientSource { buffer: u, stride: 1, offset: 0 }, None);
            }
            let next = &model.blocks[k + 1].conv;
            let first = GradientSource { buffer: adjoint(k + 1), stride: next.inputs, offset: 0 };
            let skip = SKIP_OF.iter().position(|s| *s == Some(k)).map(|consumer| {
                let c = &model.blocks[consumer].conv;
                GradientSource {
                    buffer: adjoint(consumer),
                    stride: c.inputs,
                    offset: c.inputs - model.blocks[k].conv.outputs,
                }
            });
            (first, skip)
        };
        for k in (0..=last).rev() {
            let block = &model.blocks[k];
            let c = &block.conv;
            let ((h, w), (ho, wo)) = sizes[k];
            let (grad1, grad2) = sources(k);
            let norm = norms[k].map(|place| AdjointNorm {
                primal: &self.slot.z[k],
                groups: place.groups,
                norm_offset: place.norm,
                stats_offset: place.stats,
                astats_offset: place.tangent_stats,
            });
            if let Some(norm) = norm {
                record_groupnorm_adjoint_stats(
                    rec,
                    rows,
                    per_point,
                    ho * wo,
                    c.outputs,
                    norm,
                    grad1,
                    grad2,
                    &self.slot.coef,
                )?;
            }
            // The adjoint's geometry: from the block's output grid back to its input grid.
            let output_padding = if c.transposed { 0 } else { h - ((ho - 1) * c.stride + 3) };
            debug_assert_eq!(
                w - if c.transposed { w } else { (wo - 1) * c.stride + 3 },
                if c.transposed { 0 } else { output_padding }
            );
            let shape = ConvShape {
                batch: rows,
                height: ho,
                width: wo,
                c1: c.outputs,
                c2: 0,
                outputs: c.inputs,
                stride: c.stride,
                transposed: !c.transposed,
                output_padding,
            };
            let scale = (k == last).then_some(&self.slot.sample_scale);
            record_conv2d_adjoint(
                rec,
                &shape,
                per_point,
                grad1,
                grad2,
                norm,
                &self.slot.coef,
                self.field.adjoint_weight(k),
                scale,
                adjoint(k),
            )?;
        }
        Ok(())
    }
}
