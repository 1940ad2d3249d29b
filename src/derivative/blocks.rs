//! Blocks of direction rows kept on the GPU beside a linearised network: the operator API of block Krylov and
//! subspace methods (randomized SVD, subspace iteration) without moving blocks to the host.
//!
//! A block holds P rows of length D per point ([points, P, D]). J·V and Jᵀ·U come from one linearisation made
//! once; the QR of every point's rows runs on the GPU (MGS², [`crate::ops::qr`]); recombinations by small
//! per-point coefficient matrices are batched matmuls. What crosses to the host is small: R factors ([points, P,
//! P]) and residual norms; whole blocks only when asked for.

use std::ops::Range;

use crate::derivative::{linearize, plan_products, Linearization, TangentLayout};
use crate::error::{Error, Result};
use crate::field::ScoreField;
use crate::gpu::{BufferRole, GpuContext, Recorder};
use crate::ops::lincomb::record_lincomb;
use crate::ops::matmul::{record_matmul, Epilogue, MatmulShape};
use crate::ops::qr::{record_qr_rows, QrFactors};
use crate::scheduler::JobOptions;
use crate::solver::operator::DeviceBatchOperator;

/// P rows per point of a block on the GPU.
pub struct DeviceBlock {
    buffer: wgpu::Buffer,
    per_point: usize,
}

impl DeviceBlock {
    pub fn per_point(&self) -> usize {
        self.per_point
    }
}

/// A field linearised at a batch of points, with room for products of up to `max_per_point` rows per point.
pub struct BlockOperator<'f> {
    lin: Linearization<'f>,
    ctx: &'f GpuContext,
    points: usize,
    d: usize,
    max_per_point: usize,
}

/// Whether a field's exact products can run on resident blocks (networks with both modes).
pub fn supports(field: &ScoreField) -> bool {
    matches!(field, ScoreField::Graph(_))
}

/// Chunks of points whose blocks of `per_point` rows fit the budget together, or `None` when even one point's
/// rows must be split (resident methods then do not apply).
pub fn point_chunks(
    field: &ScoreField,
    points: usize,
    per_point: usize,
    options: JobOptions,
) -> Result<Option<Vec<Range<usize>>>> {
    let (point_chunks, tangent_chunks) = plan_products(field, points, per_point, options)?;
    Ok((tangent_chunks.len() == 1).then_some(point_chunks))
}

impl<'f> BlockOperator<'f> {
    pub fn new(field: &'f ScoreField, x: &[f32], t: &[f32], max_per_point: usize) -> Result<Self> {
        let d = field.dim();
        let points = x.len() / d;
        let lin = linearize(field, x, t, points * max_per_point)?;
        Ok(BlockOperator { lin, ctx: field.ctx(), points, d, max_per_point })
    }

    fn empty(&self, per_point: usize, label: &str) -> DeviceBlock {
        let bytes = (self.points * per_point * self.d * 4) as u64;
        DeviceBlock { buffer: self.ctx.buffer(label, bytes, BufferRole::Storage), per_point }
    }

    fn check(&self, block: &DeviceBlock) -> Result<()> {
        if block.per_point > self.max_per_point {
            return Err(Error::InvalidArgument(format!(
                "a block of {} rows per point on an operator built for {}",
                block.per_point, self.max_per_point
            )));
        }
        Ok(())
    }

    /// A block from host values [points, P, D].
    pub fn upload(&self, values: &[f32], per_point: usize) -> Result<DeviceBlock> {
        if values.len() != self.points * per_point * self.d {
            return Err(Error::bad_input(
                "block",
                format!("{} values do not form [{}, {per_point}, {}]", values.len(), self.points, self.d),
            ));
        }
        Ok(DeviceBlock { buffer: self.ctx.upload("blocks/upload", values), per_point })
    }

    pub fn download(&self, block: &DeviceBlock) -> Result<Vec<f32>> {
        self.ctx.download(&block.buffer, self.points * block.per_point * self.d)
    }

    /// J·V, row by row.
    pub fn jvp(&self, v: &DeviceBlock) -> Result<DeviceBlock> {
        self.check(v)?;
        let out = self.empty(v.per_point, "blocks/jvp");
        let mut rec = Recorder::new(self.ctx, "blocks/jvp");
        self.lin.record_jvp(&mut rec, &v.buffer, v.per_point, &out.buffer, TangentLayout::LikeInput)?;
        rec.submit();
        Ok(out)
    }

    /// Jᵀ·U, row by row.
    pub fn vjp(&self, u: &DeviceBlock) -> Result<DeviceBlock> {
        self.check(u)?;
        let out = self.empty(u.per_point, "blocks/vjp");
        let mut rec = Recorder::new(self.ctx, "blocks/vjp");
        self.lin.record_vjp(&mut rec, &u.buffer, u.per_point, &out.buffer)?;
        rec.submit();
        Ok(out)
    }

    /// Orthonormalises each point's rows in place (block = Rᵀ Q); returns R, [points, P, P] row-major, R_jj ≥ 0.
    pub fn orthonormalize(&self, block: &mut DeviceBlock) -> Result<Vec<f64>> {
        let p = block.per_point;
        let r = self.ctx.buffer("blocks/r", (self.points * p * p * 4) as u64, BufferRole::Storage);
        let log_diag = self.ctx.buffer("blocks/log_diag", (self.points * p * 4) as u64, BufferRole::Storage);
        let mut rec = Recorder::new(self.ctx, "blocks/qr");
        record_qr_rows(
            &mut rec,
            &block.buffer,
            self.points,
            p,
            self.d,
            QrFactors { r: Some(&r), log_diag: &log_diag, slot: 0 },
        )?;
        rec.submit();
        let values: Vec<f32> = self.ctx.download(&r, self.points * p * p)?;
        Ok(values.into_iter().map(|v| v as f64).collect())
    }

    /// Rows Σ_c coef[b, i, c] · block[b, c] for i < K: `coef` [points, K, P].
    pub fn combine(&self, coef: &[f32], k: usize, block: &DeviceBlock) -> Result<DeviceBlock> {
        let p = block.per_point;
        if coef.len() != self.points * k * p {
            return Err(Error::bad_input(
                "coefficients",
                format!("{} values for [{}, {k}, {p}]", coef.len(), self.points),
            ));
        }
        let coefficients = self.ctx.upload("blocks/coef", coef);
        let out = self.empty(k, "blocks/combined");
        let shape = MatmulShape::new(k, self.d, p).with_batch(self.points);
        let mut rec = Recorder::new(self.ctx, "blocks/combine");
        record_matmul(&mut rec, &shape, &coefficients, &block.buffer, Epilogue::NONE, &out.buffer)?;
        rec.submit();
        Ok(out)
    }

    /// Σ_j c_j · block_j, blocks of the same shape.
    pub fn add(&self, terms: &[(f64, &DeviceBlock)]) -> Result<DeviceBlock> {
        let p = terms.first().map_or(0, |(_, b)| b.per_point);
        if terms.iter().any(|(_, b)| b.per_point != p) {
            return Err(Error::InvalidArgument("adding blocks that differ in shape".into()));
        }
        let out = self.empty(p, "blocks/sum");
        let list: Vec<(f64, &wgpu::Buffer)> = terms.iter().map(|(c, b)| (*c, &b.buffer)).collect();
        let mut rec = Recorder::new(self.ctx, "blocks/add");
        record_lincomb(&mut rec, self.points * p * self.d, &list, &out.buffer)?;
        rec.submit();
        Ok(out)
    }

    /// The Gram matrices A Bᵀ of every point's rows ([points, P_a, P_b], f64 from f32 products on the GPU).
    pub fn gram(&self, a: &DeviceBlock, b: &DeviceBlock) -> Result<Vec<f64>> {
        let (pa, pb) = (a.per_point, b.per_point);
        let out = self.ctx.buffer("blocks/gram", (self.points * pa * pb * 4) as u64, BufferRole::Storage);
        let shape = MatmulShape::new(pa, pb, self.d).with_trans_b().with_batch(self.points);
        let mut rec = Recorder::new(self.ctx, "blocks/gram");
        record_matmul(&mut rec, &shape, &a.buffer, &b.buffer, Epilogue::NONE, &out)?;
        rec.submit();
        let values: Vec<f32> = self.ctx.download(&out, self.points * pa * pb)?;
        Ok(values.into_iter().map(|v| v as f64).collect())
    }

    /// ‖a_i − s_i b_i‖ for every row i of every point (`scale` [points, P]), in f32 on the GPU.
    pub fn residual_norms(&self, a: &DeviceBlock, b: &DeviceBlock, scale: &[f32]) -> Result<Vec<f64>> {
        let p = a.per_point;
        if b.per_point != p || scale.len() != self.points * p {
            return Err(Error::InvalidArgument("residual norms of blocks that differ in shape".into()));
        }
        // s_i b_i as a combination with diagonal coefficients, then a − s b, then each row's norm as the R of a
        // one-row QR.
        let diagonal: Vec<f32> =
            (0..self.points * p * p).map(|e| if (e % (p * p)) % (p + 1) == 0 { scale[e / p] } else { 0.0 }).collect();
        let scaled = self.combine(&diagonal, p, b)?;
        let difference = self.empty(p, "blocks/difference");
        let rows = self.points * p;
        let log_norms = self.ctx.buffer("blocks/log_norms", (rows * 4) as u64, BufferRole::Storage);
        let mut rec = Recorder::new(self.ctx, "blocks/residual");
        record_lincomb(&mut rec, rows * self.d, &[(1.0, &a.buffer), (-1.0, &scaled.buffer)], &difference.buffer)?;
        record_qr_rows(
            &mut rec,
            &difference.buffer,
            rows,
            1,
            self.d,
            QrFactors { r: None, log_diag: &log_norms, slot: 0 },
        )?;
        rec.submit();
        let logs: Vec<f32> = self.ctx.download(&log_norms, rows)?;
        Ok(logs.into_iter().map(|v| (v as f64).exp()).collect())
    }
}

/// The score Jacobians of a batch of networks' points as a [`DeviceBatchOperator`] for the resident solvers:
/// J·V and Jᵀ·U on device blocks, linearised once per set of active points (a point that leaves the batch
/// triggers one new linearisation of the others).
pub struct ResidentJacobians<'f> {
    field: &'f ScoreField,
    x: &'f [f32],
    t: &'f [f32],
    rows_per_point: usize,
    linearized: Option<(Vec<usize>, BlockOperator<'f>)>,
}

impl<'f> ResidentJacobians<'f> {
    /// `rows_per_point`: the most rows per point one product will carry (the solver's block). `t` holds one time
    /// for all points or one per point.
    pub fn new(field: &'f ScoreField, x: &'f [f32], t: &'f [f32], rows_per_point: usize) -> Result<Self> {
        if !supports(field) {
            return Err(Error::InvalidArgument("resident products need a network field (MLP or graph)".into()));
        }
        Ok(ResidentJacobians { field, x, t, rows_per_point, linearized: None })
    }

    /// The network linearised at the `active` points (indices into the batch), made anew only when the set changed.
    pub fn linearized_for(&mut self, active: &[usize]) -> Result<&BlockOperator<'f>> {
        if self.linearized.as_ref().is_none_or(|(set, _)| set != active) {
            let (x, t) = rows_of(self.x, self.t, self.field.dim(), active);
            self.linearized = Some((active.to_vec(), BlockOperator::new(self.field, &x, &t, self.rows_per_point)?));
        }
        Ok(&self.linearized.as_ref().expect("linearised above").1)
    }
}

/// X and T of the `active` points of a batch of D-long rows `x` (`t` one time for all points, kept as is, or one
/// per point).
pub fn rows_of(x: &[f32], t: &[f32], d: usize, active: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let xs = active.iter().flat_map(|&p| x[p * d..(p + 1) * d].iter().copied()).collect();
    let ts = if t.len() == 1 { t.to_vec() } else { active.iter().map(|&p| t[p]).collect() };
    (xs, ts)
}

impl DeviceBatchOperator for ResidentJacobians<'_> {
    fn dim(&self) -> usize {
        self.field.dim()
    }
    fn points(&self) -> usize {
        self.x.len() / self.field.dim()
    }
    fn apply_device(
        &mut self,
        active: &[usize],
        block: &wgpu::Buffer,
        rows: usize,
        transpose: bool,
    ) -> Result<wgpu::Buffer> {
        let op = self.linearized_for(active)?;
        let input = DeviceBlock { buffer: block.clone(), per_point: rows };
        let out = if transpose { op.vjp(&input)? } else { op.jvp(&input)? };
        Ok(out.buffer)
    }
}
