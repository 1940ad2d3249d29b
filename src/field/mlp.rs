//! The MLP score field on the GPU: a chain of fused matmuls over chunks of rows.
//!
//! The time path is split off: e(t) depends on t alone, so it is computed once per distinct t on the host in
//! f64 and rows carry an index into that table (exact Fourier features whatever the driver's `sin`).

use std::ops::Range;
use std::sync::Arc;

use crate::activation::Activation;
use crate::error::Result;
use crate::field::chunked::{run_chunked, ChunkedJob, TimeTable};
use crate::field::validate_batch;
use crate::gpu::{BufferRole, GpuContext, Recorder};
use crate::model::MlpModel;
use crate::ops::matmul::{record_matmul, Epilogue, MatmulShape};
use crate::ops::mlp_input::record_mlp_input;
use crate::scheduler::{JobOptions, RowCost};

pub struct MlpField {
    ctx: Arc<GpuContext>,
    model: MlpModel,
    /// (weight [out, in], bias [out]) per layer.
    layers: Vec<(wgpu::Buffer, wgpu::Buffer)>,
}

/// The per-chunk buffers.
pub(crate) struct MlpSlot {
    x: wgpu::Buffer,
    features: wgpu::Buffer,
    time_index: wgpu::Buffer,
    row_scale: wgpu::Buffer,
    h0: wgpu::Buffer,
    ping: wgpu::Buffer,
    pong: wgpu::Buffer,
    out: wgpu::Buffer,
    readback: wgpu::Buffer,
}

/// One score evaluation over a batch.
struct ScoreJob<'a> {
    field: &'a MlpField,
    x: &'a [f32],
    t: &'a [f32],
}

impl MlpField {
    pub fn new(ctx: Arc<GpuContext>, model: MlpModel) -> Result<Self> {
        let layers = model
            .layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                (
                    ctx.upload(&format!("mlp/layers.{l}.weight"), &layer.weight),
                    ctx.upload(&format!("mlp/layers.{l}.bias"), &layer.bias),
                )
            })
            .collect();
        Ok(MlpField { ctx, model, layers })
    }

    pub fn model(&self) -> &MlpModel {
        &self.model
    }

    pub fn ctx(&self) -> &GpuContext {
        &self.ctx
    }

    /// (weight [out, in], bias [out]) of layer `l` on the device.
    pub(crate) fn layer_buffers(&self, l: usize) -> (&wgpu::Buffer, &wgpu::Buffer) {
        (&self.layers[l].0, &self.layers[l].1)
    }

    fn widest_hidden(&self) -> usize {
        self.model.hidden().into_iter().max().unwrap_or(1).max(1)
    }

    fn record_forward(&self, rec: &mut Recorder, slot: &MlpSlot, rows: usize) -> Result<()> {
        let (d, e) = (self.model.dim, self.model.embed_dim());
        record_mlp_input(rec, rows, d, e, &slot.x, &slot.features, &slot.time_index, &slot.h0)?;
        let last = self.model.layers.len() - 1;
        for (l, (layer, (weight, bias))) in self.model.layers.iter().zip(&self.layers).enumerate() {
            let input = match l {
                0 => &slot.h0,
                l if l % 2 == 1 => &slot.ping,
                _ => &slot.pong,
            };
            let output = if l == last {
                &slot.out
            } else if l % 2 == 0 {
                &slot.ping
            } else {
                &slot.pong
            };
            let shape = MatmulShape::new(rows, layer.outputs, layer.inputs).with_trans_b();
            let epilogue = if l == last {
                Epilogue::act(Activation::Identity).with_bias(bias).with_row_scale(&slot.row_scale)
            } else {
                Epilogue::act(self.model.act).with_bias(bias)
            };
            record_matmul(rec, &shape, input, weight, epilogue, output)?;
        }
        rec.copy(&slot.out, &slot.readback, (rows * d * 4) as u64);
        Ok(())
    }

    /// s(x, t) for every row of `x` ([rows, D] row-major); `t` has one entry per row or one for all rows.
    pub fn score(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        let rows = validate_batch(x, self.model.dim, t, "X", "T")?;
        run_chunked(&self.ctx, &ScoreJob { field: self, x, t }, rows, "mlp/score", options)
    }
}

impl ChunkedJob for ScoreJob<'_> {
    type Slot = MlpSlot;

    fn outputs_per_row(&self) -> usize {
        self.field.model.dim
    }

    fn row_cost(&self) -> RowCost {
        let f = self.field;
        let d = f.model.dim as u64;
        let e = f.model.embed_dim() as u64;
        let h = f.widest_hidden() as u64;
        // x, features (worst case: every row its own t), index, scale, h0, ping, pong, out, readback.
        let words_per_row = d + e + 1 + 1 + (d + e) + 2 * h + d + d;
        RowCost {
            bytes_per_row: 4 * words_per_row,
            widest_row_bytes: 4 * (d + e).max(h),
            fixed_bytes: 4 * f.model.parameter_count() as u64,
        }
    }

    fn max_rows_per_dispatch(&self, ctx: &GpuContext) -> u64 {
        ctx.caps.max_workgroups_per_dimension() as u64 * 64
    }

    fn allocate(&self, ctx: &GpuContext, rows: usize, label: &str) -> MlpSlot {
        let f = self.field;
        let (d, e, h) = (f.model.dim, f.model.embed_dim(), f.widest_hidden());
        let buffer =
            |name: &str, words: usize| ctx.buffer(&format!("{label}/{name}"), (words * 4) as u64, BufferRole::Storage);
        MlpSlot {
            x: buffer("x", rows * d),
            features: buffer("features", rows * e),
            time_index: buffer("time_index", rows),
            row_scale: buffer("row_scale", rows),
            h0: buffer("h0", rows * (d + e)),
            ping: buffer("ping", rows * h),
            pong: buffer("pong", rows * h),
            out: buffer("out", rows * d),
            readback: ctx.buffer(&format!("{label}/readback"), (rows * d * 4) as u64, BufferRole::Readback),
        }
    }

    fn record(&self, ctx: &GpuContext, slot: &MlpSlot, rows: Range<usize>, rec: &mut Recorder) -> Result<()> {
        let model = &self.field.model;
        let d = model.dim;
        let times = TimeTable::build(self.t, rows.clone(), |t| model.fourier_features(t), |t| model.output_factor(t));
        ctx.write(&slot.x, &self.x[rows.start * d..rows.end * d]);
        ctx.write(&slot.features, &times.features);
        ctx.write(&slot.time_index, &times.index);
        ctx.write(&slot.row_scale, &times.row_scale);
        self.field.record_forward(rec, slot, rows.len())
    }

    fn readback<'s>(&self, slot: &'s MlpSlot) -> &'s wgpu::Buffer {
        &slot.readback
    }
}
