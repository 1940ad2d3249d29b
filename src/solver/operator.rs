//! The face a solver sees of a batch of linear operators A_b : R^D → R^D (one per point b): products with blocks
//! of rows, A_b·v and A_bᵀ·u, for a subset of the points. The score Jacobian on the GPU is one implementation
//! (`analysis::lowrank`); explicit f64 matrices ([`DenseBatch`]) are the host twin the solvers are tested on.
//!
//! [`DeviceBatchOperator`] is the same face with the blocks on the GPU (f32 rows in device buffers), for the
//! resident solvers (`solver::resident_krylov`): the score Jacobians of networks (`derivative::blocks`) and
//! [`DeviceDense`], explicit matrices whose products take the host detour, for tests.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// A batch of D×D linear operators applied to blocks of rows.
pub trait BatchOperator {
    /// D, the length of every row.
    fn dim(&self) -> usize;
    /// The points in the batch.
    fn points(&self) -> usize;
    /// A_b·v for each point b of `active` (indices into the batch, ascending): `block` holds `rows` vectors of
    /// length D per active point ([active.len(), rows, D], row-major); returns the same shape.
    fn apply(&mut self, active: &[usize], block: &[f64], rows: usize) -> Result<Vec<f64>>;
    /// A_bᵀ·u, as [`BatchOperator::apply`].
    fn apply_transpose(&mut self, active: &[usize], block: &[f64], rows: usize) -> Result<Vec<f64>>;
}

/// Explicit row-major D×D matrices, one per point. With `single_precision` every product rounds its input to
/// f32 and accumulates in f32, as the GPU's products do, so a solver's tolerance is tested against that noise.
pub struct DenseBatch {
    matrices: Vec<Vec<f64>>,
    d: usize,
    single_precision: bool,
}

impl DenseBatch {
    pub fn new(matrices: Vec<Vec<f64>>, d: usize, single_precision: bool) -> Result<Self> {
        if let Some((b, m)) = matrices.iter().enumerate().find(|(_, m)| m.len() != d * d) {
            return Err(Error::bad_input(
                "matrices",
                format!("matrix {b} has {} entries, not D² = {}", m.len(), d * d),
            ));
        }
        Ok(DenseBatch { matrices, d, single_precision })
    }

    fn product(&self, active: &[usize], block: &[f64], rows: usize, transpose: bool) -> Result<Vec<f64>> {
        let d = self.d;
        if block.len() != active.len() * rows * d {
            return Err(Error::bad_input(
                "block",
                format!("{} values do not form [{}, {rows}, {d}]", block.len(), active.len()),
            ));
        }
        let mut out = vec![0.0; block.len()];
        for (slot, &b) in active.iter().enumerate() {
            let a = &self.matrices[b];
            let entry = |r: usize, c: usize| if transpose { a[c * d + r] } else { a[r * d + c] };
            for row in 0..rows {
                let v = &block[(slot * rows + row) * d..(slot * rows + row + 1) * d];
                let target = &mut out[(slot * rows + row) * d..(slot * rows + row + 1) * d];
                for (r, value) in target.iter_mut().enumerate() {
                    *value = if self.single_precision {
                        (0..d).fold(0f32, |acc, c| acc + entry(r, c) as f32 * v[c] as f32) as f64
                    } else {
                        (0..d).map(|c| entry(r, c) * v[c]).sum()
                    };
                }
            }
        }
        Ok(out)
    }
}

impl BatchOperator for DenseBatch {
    fn dim(&self) -> usize {
        self.d
    }
    fn points(&self) -> usize {
        self.matrices.len()
    }
    fn apply(&mut self, active: &[usize], block: &[f64], rows: usize) -> Result<Vec<f64>> {
        self.product(active, block, rows, false)
    }
    fn apply_transpose(&mut self, active: &[usize], block: &[f64], rows: usize) -> Result<Vec<f64>> {
        self.product(active, block, rows, true)
    }
}

/// A batch of D×D linear operators applied to blocks of f32 rows that live on the GPU (the solver is given the
/// same device's context beside it).
pub trait DeviceBatchOperator {
    /// D, the length of every row.
    fn dim(&self) -> usize;
    /// The points in the batch.
    fn points(&self) -> usize;
    /// A_b·v (A_bᵀ·v when `transpose`) for each point b of `active` (indices into the batch, ascending): `block`
    /// holds `rows` rows of length D per active point ([active.len(), rows, D] f32 from offset 0); returns a new
    /// buffer of the same shape.
    fn apply_device(
        &mut self,
        active: &[usize],
        block: &wgpu::Buffer,
        rows: usize,
        transpose: bool,
    ) -> Result<wgpu::Buffer>;
}

/// [`DenseBatch`] behind the device face: each product downloads the block, multiplies on the host (in f32
/// when the batch is single precision) and uploads the result. The resident solvers' test twin.
pub struct DeviceDense {
    ctx: Arc<GpuContext>,
    dense: DenseBatch,
}

impl DeviceDense {
    pub fn new(ctx: Arc<GpuContext>, dense: DenseBatch) -> Self {
        DeviceDense { ctx, dense }
    }
}

impl DeviceBatchOperator for DeviceDense {
    fn dim(&self) -> usize {
        self.dense.d
    }
    fn points(&self) -> usize {
        self.dense.matrices.len()
    }
    fn apply_device(
        &mut self,
        active: &[usize],
        block: &wgpu::Buffer,
        rows: usize,
        transpose: bool,
    ) -> Result<wgpu::Buffer> {
        let values: Vec<f32> = self.ctx.download(block, active.len() * rows * self.dense.d)?;
        let wide: Vec<f64> = values.into_iter().map(f64::from).collect();
        let out = self.dense.product(active, &wide, rows, transpose)?;
        let narrow: Vec<f32> = out.into_iter().map(|v| v as f32).collect();
        Ok(self.ctx.upload("dense/product", &narrow))
    }
}
