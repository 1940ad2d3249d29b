//! The Song U-Net score field on the GPU.
//!
//! Activations are NHWC. Each block's convolution stores z = conv + dense(e) (the pre-norm value); a GroupNorm
//! statistics kernel folds its mean, variance and affine parameters into one scale and shift per (image, channel);
//! the next convolution applies that scale, shift and SiLU as it loads z, and reads the decoder's skip
//! concatenations straight from the two tensors. The time path (Fourier features on the host in f64 per distinct
//! t, then embed.1 and all seven dense layers as two matmuls) runs once per distinct t, not per image.

use std::ops::Range;
use std::sync::Arc;

use crate::activation::Activation;
use crate::error::Result;
use crate::field::chunked::{run_chunked, ChunkedJob, TimeTable};
use crate::field::validate_batch;
use crate::gpu::{BufferRole, GpuContext, Recorder};
use crate::model::unet::{UnetModel, GN_EPS, SKIP_OF};
use crate::ops::conv::{adjoint_weight, record_conv2d, reorder_weight, ConvBias, ConvInputs, PendingNorm};
use crate::ops::groupnorm::record_groupnorm_stats;
use crate::ops::matmul::{record_matmul, Epilogue, MatmulShape};
use crate::scheduler::{JobOptions, RowCost};

struct BlockBuffers {
    weight: wgpu::Buffer,
    /// The weight of the block's adjoint (see ops::conv::adjoint_weight).
    adjoint_weight: wgpu::Buffer,
    bias: Option<wgpu::Buffer>,
    norm: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// Column of this block's dense(e) term in the stacked time-bias table.
    dense_offset: Option<usize>,
}

pub struct UnetField {
    ctx: Arc<GpuContext>,
    model: UnetModel,
    embed_weight: wgpu::Buffer,
    embed_bias: wgpu::Buffer,
    /// All dense layers stacked: [ΣC, E] and [ΣC], so one matmul gives every block's time bias.
    dense_weight: wgpu::Buffer,
    dense_bias: wgpu::Buffer,
    dense_width: usize,
    blocks: Vec<BlockBuffers>,
}

/// Where one normalised block's GroupNorm data sit in the coef buffer (element offsets).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NormLayout {
    pub norm: usize,
    pub stats: usize,
    pub tangent_stats: usize,
    pub groups: usize,
}

pub(crate) struct UnetSlot {
    pub x: wgpu::Buffer,
    features: wgpu::Buffer,
    time_index: wgpu::Buffer,
    pub sample_scale: wgpu::Buffer,
    embedding: wgpu::Buffer,
    time_bias: wgpu::Buffer,
    /// Pre-norm outputs of blocks 0..7; block 7 writes the score.
    pub z: Vec<wgpu::Buffer>,
    pub coef: wgpu::Buffer,
    readback: wgpu::Buffer,
}

struct ScoreJob<'a> {
    field: &'a UnetField,
    x: &'a [f32],
    t: &'a [f32],
}

impl UnetField {
    pub fn new(ctx: Arc<GpuContext>, model: UnetModel) -> Result<Self> {
        let mut dense_weight = Vec::new();
        let mut dense_bias = Vec::new();
        let mut blocks = Vec::new();
        for b in &model.blocks {
            let dense_offset = b.dense.as_ref().map(|d| {
                let offset = dense_bias.len();
                dense_weight.extend_from_slice(&d.weight);
                dense_bias.extend_from_slice(&d.bias);
                offset
            });
            let c = &b.conv;
            blocks.push(BlockBuffers {
                weight: ctx.upload(
                    &format!("unet/{}.weight", b.name),
                    &reorder_weight(&c.weight, c.inputs, c.outputs, c.transposed),
                ),
                adjoint_weight: ctx.upload(
                    &format!("unet/{}.adjoint_weight", b.name),
                    &adjoint_weight(&c.weight, c.inputs, c.outputs, c.transposed),
                ),
                bias: c.bias.as_ref().map(|v| ctx.upload(&format!("unet/{}.bias", b.name), v)),
                norm: b
                    .norm
                    .as_ref()
                    .map(|n| (ctx.upload("unet/norm.weight", &n.weight), ctx.upload("unet/norm.bias", &n.bias))),
                dense_offset,
            });
        }
        Ok(UnetField {
            embed_weight: ctx.upload("unet/embed.1.weight", &model.embed_dense.weight),
            embed_bias: ctx.upload("unet/embed.1.bias", &model.embed_dense.bias),
            dense_width: dense_bias.len(),
            dense_weight: ctx.upload("unet/dense.weight", &dense_weight),
            dense_bias: ctx.upload("unet/dense.bias", &dense_bias),
            blocks,
            model,
            ctx,
        })
    }

    pub fn model(&self) -> &UnetModel {
        &self.model
    }

    pub fn ctx(&self) -> &GpuContext {
        &self.ctx
    }

    /// Values per image of each block's output.
    fn block_output_sizes(&self) -> Vec<usize> {
        self.model.blocks.iter().zip(self.model.block_sizes()).map(|(b, (_, (h, w)))| h * w * b.conv.outputs).collect()
    }

    /// Where each normalised block's GroupNorm data sit in the coef buffer, for `images` images and `tangent_rows`
    /// tangent rows: [B, C, 2] scale/shift, [B, G, 2] mean/rstd, [R, G, 2] tangent means; and the total.
    pub(crate) fn norm_layout(&self, images: usize, tangent_rows: usize) -> (Vec<Option<NormLayout>>, usize) {
        let mut total = 0;
        let mut take = |words: usize| {
            let offset = total;
            total += words;
            offset
        };
        let layout = self
            .model
            .blocks
            .iter()
            .map(|b| {
                b.norm.as_ref().map(|n| NormLayout {
                    norm: take(images * b.conv.outputs * 2),
                    stats: take(images * n.groups * 2),
                    tangent_stats: take(tangent_rows * n.groups * 2),
                    groups: n.groups,
                })
            })
            .collect();
        (layout, total)
    }

    pub(crate) fn block_buffers(&self, i: usize) -> &wgpu::Buffer {
        &self.blocks[i].weight
    }

    pub(crate) fn adjoint_weight(&self, i: usize) -> &wgpu::Buffer {
        &self.blocks[i].adjoint_weight
    }

    /// Buffers for `images` images whose coef buffer also has room for `tangent_rows` tangent rows' statistics.
    pub(crate) fn allocate(&self, images: usize, tangent_rows: usize, label: &str) -> UnetSlot {
        let ctx = &self.ctx;
        let e = self.model.embed_dim();
        let buffer =
            |name: &str, words: usize| ctx.buffer(&format!("{label}/{name}"), (words * 4) as u64, BufferRole::Storage);
        let (_, coef_words) = self.norm_layout(images, tangent_rows);
        UnetSlot {
            x: buffer("x", images * self.model.dim()),
            features: buffer("features", images * e),
            time_index: buffer("time_index", images),
            sample_scale: buffer("sample_scale", images),
            embedding: buffer("embedding", images * e),
            time_bias: buffer("time_bias", images * self.dense_width),
            z: self
                .block_output_sizes()
                .iter()
                .zip(&self.model.blocks)
                .map(|(s, b)| buffer(b.name, images * s))
                .collect(),
            coef: buffer("groupnorm", coef_words),
            readback: ctx.buffer(
                &format!("{label}/readback"),
                (images * self.model.dim() * 4) as u64,
                BufferRole::Readback,
            ),
        }
    }

    /// Uploads a chunk's points and time conditioning into `slot` and records the forward pass.
    pub(crate) fn record_chunk(
        &self,
        slot: &UnetSlot,
        x: &[f32],
        t: &[f32],
        rows: Range<usize>,
        tangent_rows: usize,
        rec: &mut Recorder,
    ) -> Result<()> {
        let model = &self.model;
        let d = model.dim();
        let times = TimeTable::build(t, rows.clone(), |t| model.fourier_features(t), |t| model.output_factor(t));
        self.ctx.write(&slot.x, &x[rows.start * d..rows.end * d]);
        self.ctx.write(&slot.features, &times.features);
        self.ctx.write(&slot.time_index, &times.index);
        self.ctx.write(&slot.sample_scale, &times.row_scale);
        self.record_forward(rec, slot, rows.len(), times.distinct(), tangent_rows)
    }

    /// Records the forward pass of `images` device-resident points `x` ([images, D]) at one time `t` into `slot`
    /// (the time conditioning is a queued write: it lands before the recording's submit).
    pub(crate) fn record_at(
        &self,
        slot: &UnetSlot,
        x: &wgpu::Buffer,
        t: f32,
        images: usize,
        tangent_rows: usize,
        rec: &mut Recorder,
    ) -> Result<()> {
        let model = &self.model;
        let times = TimeTable::build(&[t], 0..images, |t| model.fourier_features(t), |t| model.output_factor(t));
        self.ctx.write(&slot.features, &times.features);
        self.ctx.write(&slot.time_index, &times.index);
        self.ctx.write(&slot.sample_scale, &times.row_scale);
        rec.copy(x, &slot.x, (images * model.dim() * 4) as u64);
        self.record_forward(rec, slot, images, 1, tangent_rows)
    }

    fn record_forward(
        &self,
        rec: &mut Recorder,
        slot: &UnetSlot,
        images: usize,
        distinct_times: usize,
        tangent_rows: usize,
    ) -> Result<()> {
        let e = self.model.embed_dim();
        // Time path, once per distinct t: emb = silu(embed.1(features)); time_bias = [dense_k(emb)]_k.
        let shape = MatmulShape::new(distinct_times, e, e).with_trans_b();
        let epilogue = Epilogue::act(Activation::Silu).with_bias(&self.embed_bias);
        record_matmul(rec, &shape, &slot.features, &self.embed_weight, epilogue, &slot.embedding)?;
        let shape = MatmulShape::new(distinct_times, self.dense_width, e).with_trans_b();
        let epilogue = Epilogue::act(Activation::Identity).with_bias(&self.dense_bias);
        record_matmul(rec, &shape, &slot.embedding, &self.dense_weight, epilogue, &slot.time_bias)?;

        let (layout, _) = self.norm_layout(images, tangent_rows);
        let norm_offsets: Vec<Option<usize>> = layout.iter().map(|l| l.as_ref().map(|l| l.norm)).collect();
        let sizes = self.model.block_sizes();
        let last = self.model.blocks.len() - 1;
        for (i, (block, buffers)) in self.model.blocks.iter().zip(&self.blocks).enumerate() {
            let (_, (ho, wo)) = sizes[i];
            let (src1, norm1) = if i == 0 {
                (&slot.x, None)
            } else {
                (&slot.z[i - 1], norm_offsets[i - 1].map(|offset| PendingNorm { offset }))
            };
            let skip = SKIP_OF[i];
            let c = &block.conv;
            let shape = self.model.block_shape(i, images);
            let inputs = ConvInputs {
                src1,
                norm1,
                src2: skip.map(|s| &slot.z[s]),
                norm2: skip.and_then(|s| norm_offsets[s]).map(|offset| PendingNorm { offset }),
                norm: Some(&slot.coef),
            };
            let bias = match (buffers.dense_offset, &buffers.bias) {
                (Some(offset), _) => ConvBias::PerTime {
                    table: &slot.time_bias,
                    offset,
                    stride: self.dense_width,
                    time_index: &slot.time_index,
                },
                (None, Some(b)) => ConvBias::PerChannel(b),
                (None, None) => ConvBias::None,
            };
            let scale = (i == last).then_some(&slot.sample_scale);
            record_conv2d(rec, &shape, &inputs, &buffers.weight, bias, Activation::Identity, scale, &slot.z[i])?;
            if let (Some(norm), Some((gamma, beta)), Some(place)) = (&block.norm, &buffers.norm, &layout[i]) {
                record_groupnorm_stats(
                    rec,
                    images,
                    ho * wo,
                    c.outputs,
                    norm.groups,
                    GN_EPS,
                    &slot.z[i],
                    gamma,
                    beta,
                    &slot.coef,
                    place.norm,
                    place.stats,
                )?;
            }
        }
        rec.copy(&slot.z[last], &slot.readback, (images * self.model.dim() * 4) as u64);
        Ok(())
    }

    /// s(x, t) for every image of `x` ([images, 28·28] row-major); `t` has one entry per image or one for all.
    pub fn score(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        let images = validate_batch(x, self.model.dim(), t, "X", "T")?;
        run_chunked(&self.ctx, &ScoreJob { field: self, x, t }, images, "unet/score", options)
    }
}

impl ChunkedJob for ScoreJob<'_> {
    type Slot = UnetSlot;

    fn outputs_per_row(&self) -> usize {
        self.field.model.dim()
    }

    fn row_cost(&self) -> RowCost {
        let f = self.field;
        let d = f.model.dim() as u64;
        let e = f.model.embed_dim() as u64;
        let activations: u64 = f.block_output_sizes().iter().map(|&s| s as u64).sum();
        let (_, coef) = f.norm_layout(1, 0);
        // x, features, embedding, time bias (worst case: every image its own t), index, scale, z's, coef, readback.
        let words = d + 2 * e + f.dense_width as u64 + 2 + activations + coef as u64 + d;
        let widest = *f.block_output_sizes().iter().max().unwrap_or(&1) as u64;
        RowCost {
            bytes_per_row: 4 * words,
            widest_row_bytes: 4 * widest.max(f.dense_width as u64).max(e),
            fixed_bytes: 4 * f.model.parameter_count() as u64 + 4 * f.dense_width as u64 * e,
        }
    }

    fn max_rows_per_dispatch(&self, ctx: &GpuContext) -> u64 {
        let max_groups = ctx.caps.max_workgroups_per_dimension() as u64;
        let widest_pixels = self.field.model.block_sizes().iter().map(|(_, (h, w))| (h * w) as u64).max().unwrap_or(1);
        // Convolutions tile B·H·W pixels by 64; GroupNorm takes one workgroup row per image.
        (max_groups * 64 / widest_pixels).min(max_groups)
    }

    fn allocate(&self, _ctx: &GpuContext, images: usize, label: &str) -> UnetSlot {
        self.field.allocate(images, 0, label)
    }

    fn record(&self, _ctx: &GpuContext, slot: &UnetSlot, rows: Range<usize>, rec: &mut Recorder) -> Result<()> {
        self.field.record_chunk(slot, self.x, self.t, rows, 0, rec)
    }

    fn readback<'s>(&self, slot: &'s UnetSlot) -> &'s wgpu::Buffer {
        &slot.readback
    }
}
