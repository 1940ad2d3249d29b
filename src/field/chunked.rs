//! The host scheduler's execution half: runs a batch job chunk by chunk, two chunks in flight (one computing
//! while the previous one is read back), every chunk one submit, read-back only at chunk ends.

use std::ops::Range;

use crate::error::Result;
use crate::gpu::{GpuContext, Recorder};
use crate::scheduler::{plan_chunks, DeviceBounds, JobOptions, RowCost};

/// A computation over independent rows that a field runs in chunks.
pub(crate) trait ChunkedJob {
    /// Device buffers for one chunk of up to `rows` rows.
    type Slot;

    /// Output values per row.
    fn outputs_per_row(&self) -> usize;
    fn row_cost(&self) -> RowCost;
    /// The most rows one chunk's dispatches can cover.
    fn max_rows_per_dispatch(&self, ctx: &GpuContext) -> u64;
    fn allocate(&self, ctx: &GpuContext, rows: usize, label: &str) -> Self::Slot;
    /// Uploads the chunk's inputs and records its work, ending with a copy into the slot's read-back buffer.
    fn record(&self, ctx: &GpuContext, slot: &Self::Slot, rows: Range<usize>, rec: &mut Recorder) -> Result<()>;
    fn readback<'s>(&self, slot: &'s Self::Slot) -> &'s wgpu::Buffer;
}

pub(crate) fn run_chunked<J: ChunkedJob>(
    ctx: &GpuContext,
    job: &J,
    rows: usize,
    label: &str,
    options: JobOptions,
) -> Result<Vec<f32>> {
    let bounds = DeviceBounds {
        memory_budget: options.memory_budget,
        max_binding_bytes: ctx.caps.max_binding_bytes(),
        max_rows_per_dispatch: job.max_rows_per_dispatch(ctx),
    };
    let chunks = plan_chunks(rows, job.row_cost(), bounds)?;
    let chunk_rows = chunks.first().map_or(0, |c| c.len());
    let slots: Vec<J::Slot> =
        (0..chunks.len().min(2)).map(|s| job.allocate(ctx, chunk_rows, &format!("{label}/slot{s}"))).collect();
    let per_row = job.outputs_per_row();
    let mut out = vec![0f32; rows * per_row];

    let finish = |slot: &J::Slot, done: &Range<usize>, index: wgpu::SubmissionIndex, out: &mut [f32]| -> Result<()> {
        let values: Vec<f32> = ctx.read_mapped(job.readback(slot), done.len() * per_row, Some(index))?;
        out[done.start * per_row..done.end * per_row].copy_from_slice(&values);
        options.progress.advance(done.len());
        Ok(())
    };

    options.progress.start(label, rows);
    let mut in_flight: Vec<(usize, Range<usize>, wgpu::SubmissionIndex)> = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let s = i % slots.len();
        if in_flight.len() == slots.len() {
            let (done_slot, done, index) = in_flight.remove(0);
            finish(&slots[done_slot], &done, index, &mut out)?;
        }
        let mut rec = Recorder::new(ctx, &format!("{label}/chunk{i}"));
        job.record(ctx, &slots[s], chunk.clone(), &mut rec)?;
        in_flight.push((s, chunk.clone(), rec.submit()));
    }
    for (s, done, index) in in_flight {
        finish(&slots[s], &done, index, &mut out)?;
    }
    options.progress.finish();
    Ok(out)
}
