//! The MLP score field on the GPU: a chain of fused matmuls over chunks of rows.
//!
//! The time path is split off: e(t) depends on t alone, so it is computed once per distinct t on the host in
//! f64 and rows carry an index into that table (exact Fourier features whatever the driver's `sin`).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use crate::activation::Activation;
use crate::error::Result;
use crate::field::validate_batch;
use crate::gpu::{BufferRole, GpuContext, Recorder};
use crate::model::MlpModel;
use crate::ops::matmul::{record_matmul, Epilogue, MatmulShape};
use crate::ops::mlp_input::record_mlp_input;
use crate::scheduler::{plan_chunks, DeviceBounds, JobOptions, RowCost};

pub struct MlpField {
    ctx: Arc<GpuContext>,
    model: MlpModel,
    /// (weight [out, in], bias [out]) per layer.
    layers: Vec<(wgpu::Buffer, wgpu::Buffer)>,
}

/// The per-chunk buffers; two sets alternate so that one chunk computes while the previous one is read back.
struct ChunkBuffers {
    rows: usize,
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

/// Time features of one chunk: the table of distinct t's features, each row's index into it, each row's scale.
struct TimeTable {
    features: Vec<f32>,
    index: Vec<u32>,
    row_scale: Vec<f32>,
}

impl MlpField {
    pub fn new(ctx: Arc<GpuContext>, model: MlpModel) -> Result<Self> {
        let layers = model
            .layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                (ctx.upload(&format!("mlp/layers.{l}.weight"), &layer.weight), ctx.upload(&format!("mlp/layers.{l}.bias"), &layer.bias))
            })
            .collect();
        Ok(MlpField { ctx, model, layers })
    }

    pub fn model(&self) -> &MlpModel {
        &self.model
    }

    fn widest_hidden(&self) -> usize {
        self.model.hidden().into_iter().max().unwrap_or(1).max(1)
    }

    fn row_cost(&self) -> RowCost {
        let d = self.model.dim as u64;
        let e = self.model.embed_dim() as u64;
        let h = self.widest_hidden() as u64;
        // x, features (worst case: every row its own t), index, scale, h0, ping, pong, out, readback.
        let words_per_row = d + e + 1 + 1 + (d + e) + 2 * h + d + d;
        RowCost {
            bytes_per_row: 4 * words_per_row,
            widest_row_bytes: 4 * (d + e).max(h),
            fixed_bytes: 4 * self.model.parameter_count() as u64,
        }
    }

    fn allocate(&self, rows: usize, label: &str) -> ChunkBuffers {
        let ctx = &self.ctx;
        let (d, e, h) = (self.model.dim, self.model.embed_dim(), self.widest_hidden());
        let bytes = |words: usize| (words * 4) as u64;
        ChunkBuffers {
            rows,
            x: ctx.buffer(&format!("{label}/x"), bytes(rows * d), BufferRole::Storage),
            features: ctx.buffer(&format!("{label}/features"), bytes(rows * e), BufferRole::Storage),
            time_index: ctx.buffer(&format!("{label}/time_index"), bytes(rows), BufferRole::Storage),
            row_scale: ctx.buffer(&format!("{label}/row_scale"), bytes(rows), BufferRole::Storage),
            h0: ctx.buffer(&format!("{label}/h0"), bytes(rows * (d + e)), BufferRole::Storage),
            ping: ctx.buffer(&format!("{label}/ping"), bytes(rows * h), BufferRole::Storage),
            pong: ctx.buffer(&format!("{label}/pong"), bytes(rows * h), BufferRole::Storage),
            out: ctx.buffer(&format!("{label}/out"), bytes(rows * d), BufferRole::Storage),
            readback: ctx.buffer(&format!("{label}/readback"), bytes(rows * d), BufferRole::Readback),
        }
    }

    fn time_table(&self, t: &[f32], rows: Range<usize>) -> TimeTable {
        let mut slot_of: HashMap<u32, u32> = HashMap::new();
        let mut table = TimeTable { features: Vec::new(), index: Vec::with_capacity(rows.len()), row_scale: Vec::with_capacity(rows.len()) };
        for r in rows {
            let tr = if t.len() == 1 { t[0] } else { t[r] };
            let next = slot_of.len() as u32;
            let slot = *slot_of.entry(tr.to_bits()).or_insert_with(|| {
                table.features.extend(self.model.fourier_features(tr).iter().map(|&v| v as f32));
                next
            });
            table.index.push(slot);
            table.row_scale.push(self.model.output_factor(tr) as f32);
        }
        table
    }

    fn record_forward(&self, rec: &mut Recorder, buffers: &ChunkBuffers, rows: usize) -> Result<()> {
        let (d, e) = (self.model.dim, self.model.embed_dim());
        record_mlp_input(rec, rows, d, e, &buffers.x, &buffers.features, &buffers.time_index, &buffers.h0)?;
        let last = self.model.layers.len() - 1;
        for (l, (layer, (weight, bias))) in self.model.layers.iter().zip(&self.layers).enumerate() {
            let input = match l {
                0 => &buffers.h0,
                l if l % 2 == 1 => &buffers.ping,
                _ => &buffers.pong,
            };
            let output = if l == last {
                &buffers.out
            } else if l % 2 == 0 {
                &buffers.ping
            } else {
                &buffers.pong
            };
            let shape = MatmulShape::new(rows, layer.outputs, layer.inputs).with_trans_b();
            let epilogue = if l == last {
                Epilogue { act: Activation::Identity, bias: Some(bias), row_scale: Some(&buffers.row_scale) }
            } else {
                Epilogue { act: self.model.act, bias: Some(bias), row_scale: None }
            };
            record_matmul(rec, &shape, input, weight, epilogue, output)?;
        }
        rec.copy(&buffers.out, &buffers.readback, (rows * d * 4) as u64);
        Ok(())
    }

    /// s(x, t) for every row of `x` ([rows, D] row-major); `t` has one entry per row or one for all rows.
    pub fn score(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        let d = self.model.dim;
        let rows = validate_batch(x, d, t, "X", "T")?;
        let caps = &self.ctx.caps;
        let bounds = DeviceBounds {
            memory_budget: options.memory_budget,
            max_binding_bytes: caps.max_binding_bytes(),
            max_rows_per_dispatch: caps.max_workgroups_per_dimension() as u64 * 64,
        };
        let chunks = plan_chunks(rows, self.row_cost(), bounds)?;
        let chunk_rows = chunks.first().map_or(0, |c| c.len());
        let slots: Vec<ChunkBuffers> = (0..chunks.len().min(2)).map(|s| self.allocate(chunk_rows, &format!("mlp/chunk-slot{s}"))).collect();

        options.progress.start("score", rows);
        let mut out = vec![0f32; rows * d];
        let mut in_flight: Vec<(usize, Range<usize>, wgpu::SubmissionIndex)> = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let slot = &slots[i % slots.len()];
            if in_flight.len() == slots.len() {
                let (s, done, index) = in_flight.remove(0);
                self.finish_chunk(&slots[s], &done, index, &mut out, options)?;
            }
            let n = chunk.len();
            debug_assert!(n <= slot.rows);
            let times = self.time_table(t, chunk.clone());
            self.ctx.write(&slot.x, &x[chunk.start * d..chunk.end * d]);
            self.ctx.write(&slot.features, &times.features);
            self.ctx.write(&slot.time_index, &times.index);
            self.ctx.write(&slot.row_scale, &times.row_scale);
            let mut rec = Recorder::new(&self.ctx, &format!("mlp/score/chunk{i}"));
            self.record_forward(&mut rec, slot, n)?;
            let index = rec.submit();
            in_flight.push((i % slots.len(), chunk.clone(), index));
        }
        for (s, done, index) in in_flight {
            self.finish_chunk(&slots[s], &done, index, &mut out, options)?;
        }
        options.progress.finish();
        Ok(out)
    }

    fn finish_chunk(
        &self,
        slot: &ChunkBuffers,
        rows: &Range<usize>,
        submission: wgpu::SubmissionIndex,
        out: &mut [f32],
        options: JobOptions,
    ) -> Result<()> {
        let d = self.model.dim;
        let values: Vec<f32> = self.ctx.read_mapped(&slot.readback, rows.len() * d, Some(submission))?;
        out[rows.start * d..rows.end * d].copy_from_slice(&values);
        options.progress.advance(rows.len());
        Ok(())
    }
}
