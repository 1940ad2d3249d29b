//! Block Golub–Kahan–Lanczos with the Krylov bases resident on the GPU: the same method, thick restarts and
//! per-point draws as [`super::block_krylov::block_krylov_svd`] (its host f64 twin and fallback), on a
//! [`DeviceBatchOperator`] whose products read and write device buffers.
//!
//! What stays on the device: per point, `left` = [U; AV] and `right` = [V; AᵀU] (two blocks of `capacity` rows of
//! length D each), the pending block and the products. What crosses to the host is small: the Gram–Schmidt
//! coefficients ([points, m, b]), the projected matrix B = Uᵀ·AV (only its new b-wide strips each step, all of it
//! after a restart), the diagonal of the new blocks' Gram matrix and of the residual blocks' (their norms), all
//! from one Gram kernel (shaders/block_gram.wgsl, f32 with pairwise sums) and read in f64; the small SVD of B
//! runs on the host in f64. f32 Gram matrices suffice for a 1e-5 tolerance: the residuals are measured on the
//! vectors themselves, so rounding in B costs at most a step, never a wrong answer. Ritz vectors and the residual vectors A vᵢ − sᵢ uᵢ = (AV) yᵢ − sᵢ U xᵢ and Aᵀ uᵢ − sᵢ vᵢ =
//! (AᵀU) xᵢ − sᵢ V yᵢ are formed on the device by batched matmuls; vectors come to the host only when a point
//! finishes.
//!
//! Orthogonalisation of a new block W (f32) against a basis Q: twice { W ← W − Q (Qᵀ W) (block classical
//! Gram–Schmidt, the coefficients in f64 on the host, the update on the device); W ← qr(W) (MGS², in place,
//! [`crate::ops::qr`]) }. After the first pass a column whose norm fell below 1e-5 of its norm before the
//! projection lay in the basis (to the products' rounding): it is replaced by a random column drawn for its
//! point (as the host twin does) and the block is orthogonalised again.
//!
//! Locking, as the host twin does it (a leading triplet's vectors frozen at the step it passed), is not done here:
//! with f32 bases, Ritz vectors inside a repeated value's eigenspace turn from step to step, and vectors frozen at
//! different steps were found to overlap (tests/krylov_resident.rs, "repeated"). A point stops when all k pass
//! at one step and reports that step's Rayleigh–Ritz triplets; locked triplets would not shrink the basis or the
//! products anyway (the host twin keeps them in its basis too).
//!
//! All points of a chunk advance in lockstep (the same basis size m); a point that finishes leaves the device
//! buffers (the others are compacted) and the products. The method needs D ≥ capacity + 2b ([`resident_fits`]);
//! smaller operators take the host path, where the basis may span all of R^D.

use faer::Mat;

use super::block_krylov::{stack, starting_blocks, KrylovSettings, Refill, Triplets};
use super::operator::DeviceBatchOperator;
use crate::draws::stream;
use crate::error::{Error, Result};
use crate::gpu::{BufferRole, GpuContext, Recorder};
use crate::ops::gram::{gram_len, record_block_gram, RowBlock};
use crate::ops::lincomb::record_lincomb;
use crate::ops::matmul::{record_matmul, Epilogue, MatmulShape};
use crate::ops::qr::{record_qr_rows, QrFactors};

/// A column that kept less than this fraction of its norm through the projection is replaced.
const VANISHED: f64 = 1e-5;

/// Whether the resident method applies at dimension D: the basis and two pending blocks fit in R^D.
pub fn resident_fits(settings: &KrylovSettings, d: usize) -> bool {
    let (b, capacity) = settings.sizes(d);
    capacity + 2 * b <= d
}

/// Device helpers of one run: D, the block b, the per-point capacity of each half of `left` / `right`.
struct Device<'a> {
    ctx: &'a GpuContext,
    d: usize,
    b: usize,
    capacity: usize,
}

impl Device<'_> {
    /// Elements between two points' regions of `left` / `right`.
    fn stride(&self) -> usize {
        2 * self.capacity * self.d
    }

    fn zeros(&self, label: &str, elements: usize) -> wgpu::Buffer {
        self.ctx.buffer(label, (elements * 4) as u64, BufferRole::Storage)
    }

    /// `rows` rows of a basis half: `first` = the first row (0 for U / V, capacity for AV / AᵀU, plus an offset).
    fn rows<'b>(&self, buffer: &'b wgpu::Buffer, first: usize, rows: usize) -> RowBlock<'b> {
        RowBlock { buffer, rows, stride: self.stride(), offset: first * self.d }
    }

    /// A compact [points, rows, D] block.
    fn compact<'b>(&self, buffer: &'b wgpu::Buffer, rows: usize) -> RowBlock<'b> {
        RowBlock { buffer, rows, stride: rows * self.d, offset: 0 }
    }

    /// Copies `from`'s rows to `to` point by point (same row count, layouts given by the two row blocks).
    fn copy_rows(&self, from: RowBlock, to: RowBlock, points: usize) {
        let mut encoder =
            self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("krylov/copy") });
        let bytes = (from.rows * self.d * 4) as u64;
        for p in 0..points {
            encoder.copy_buffer_to_buffer(
                from.buffer,
                ((from.offset + p * from.stride) * 4) as u64,
                to.buffer,
                ((to.offset + p * to.stride) * 4) as u64,
                bytes,
            );
        }
        self.ctx.queue.submit([encoder.finish()]);
    }

    /// G[p] = aᵀ c per point in f64, [points, a.rows, c.rows] (or [points, a.rows] when `diagonal`).
    fn gram(&self, a: RowBlock, c: RowBlock, points: usize, diagonal: bool) -> Result<Vec<f64>> {
        Ok(self.grams(&[(a, c, diagonal)], points)?.remove(0))
    }

    /// Several Gram matrices of one submission, read back together (one wait instead of one each).
    fn grams(&self, pairs: &[(RowBlock, RowBlock, bool)], points: usize) -> Result<Vec<Vec<f64>>> {
        let lens: Vec<usize> =
            pairs.iter().map(|(a, c, diagonal)| gram_len(points, a.rows, c.rows, *diagonal)).collect();
        let total: usize = lens.iter().sum();
        let outs: Vec<wgpu::Buffer> = lens.iter().map(|&len| self.zeros("krylov/gram", len)).collect();
        let mut rec = Recorder::new(self.ctx, "krylov/gram");
        for ((a, c, diagonal), out) in pairs.iter().zip(&outs) {
            record_block_gram(&mut rec, points, self.d, *a, *c, *diagonal, out)?;
        }
        rec.submit();
        let together = self.zeros("krylov/grams", total);
        let mut encoder =
            self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("krylov/grams") });
        let mut offset = 0;
        for (out, &len) in outs.iter().zip(&lens) {
            if len > 0 {
                encoder.copy_buffer_to_buffer(out, 0, &together, (offset * 4) as u64, (len * 4) as u64);
            }
            offset += len;
        }
        self.ctx.queue.submit([encoder.finish()]);
        let values: Vec<f32> = self.ctx.download(&together, total)?;
        let mut parts = Vec::with_capacity(pairs.len());
        let mut rest = &values[..];
        for &len in &lens {
            let (head, tail) = rest.split_at(len);
            parts.push(head.iter().map(|&v| f64::from(v)).collect());
            rest = tail;
        }
        Ok(parts)
    }

    /// Records out[p, i] = Σ_j coef[p, i, j] · src[p, j] for i < rows (`coef` [points, rows, src.rows]), into the
    /// rows of `out` (point stride and offset in elements).
    #[allow(clippy::too_many_arguments)]
    fn record_combine(
        &self,
        rec: &mut Recorder,
        coef: &wgpu::Buffer,
        rows: usize,
        src: RowBlock,
        out: &wgpu::Buffer,
        out_stride: usize,
        out_offset: usize,
        points: usize,
    ) -> Result<()> {
        let mut shape = MatmulShape::new(rows, self.d, src.rows).with_batch(points);
        shape.stride_b = src.stride as u32;
        shape.offset_b = src.offset as u32;
        shape.stride_c = out_stride as u32;
        shape.offset_c = out_offset as u32;
        record_matmul(rec, &shape, coef, src.buffer, Epilogue::NONE, out)
    }

    /// A new compact [points, rows, D] block of the combinations Σ_j coef[p, i, j] · src[p, j].
    fn combine(&self, coef: &[f32], rows: usize, src: RowBlock, points: usize) -> Result<wgpu::Buffer> {
        let out = self.zeros("krylov/combined", points * rows * self.d);
        if src.rows == 0 {
            return Ok(out);
        }
        let coefficients = self.ctx.upload("krylov/coef", coef);
        let mut rec = Recorder::new(self.ctx, "krylov/combine");
        self.record_combine(&mut rec, &coefficients, rows, src, &out, rows * self.d, 0, points)?;
        rec.submit();
        Ok(out)
    }

    /// w ← w − Q C for the `basis` rows Q and C = Qᵀ w ([points, m, b], computed here when not given), through
    /// `scratch` (w's shape).
    fn project_out(
        &self,
        basis: RowBlock,
        w: &wgpu::Buffer,
        scratch: &wgpu::Buffer,
        points: usize,
        coefficients: Option<Vec<f64>>,
    ) -> Result<()> {
        let (m, b, d) = (basis.rows, self.b, self.d);
        if m == 0 {
            return Ok(());
        }
        let c = match coefficients {
            Some(c) => c,
            None => self.gram(basis, self.compact(w, b), points, false)?,
        };
        if c.iter().any(|v| !v.is_finite()) {
            return Err(Error::Device("block Krylov: a product or projection is not finite".into()));
        }
        // coef[p, j, i] = −C[p, i, j]: the correction rows −Σ_i C[i, j] q_i.
        let mut coef = vec![0f32; points * b * m];
        for p in 0..points {
            for i in 0..m {
                for j in 0..b {
                    coef[(p * b + j) * m + i] = -c[(p * m + i) * b + j] as f32;
                }
            }
        }
        let correction = self.combine(&coef, b, basis, points)?;
        let mut rec = Recorder::new(self.ctx, "krylov/project");
        record_lincomb(&mut rec, points * b * d, &[(1.0, w), (1.0, &correction)], scratch)?;
        rec.copy(scratch, w, (points * b * d * 4) as u64);
        rec.submit();
        Ok(())
    }

    /// Orthonormalises each point's b rows of `w` ([points, b, D]) against the `basis` rows and each other, in
    /// place (see the module documentation); `refill(slot)` draws a replacement column for the point in `slot`.
    fn orthonormalize(
        &self,
        basis: RowBlock,
        w: &wgpu::Buffer,
        points: usize,
        refill: &mut dyn FnMut(usize) -> Vec<f64>,
    ) -> Result<()> {
        let (b, d) = (self.b, self.d);
        let scratch = self.zeros("krylov/scratch", points * b * d);
        let log_diag = self.zeros("krylov/log_diag", points * b);
        for attempt in 0..4 {
            // The columns' norms before the projection and the first projection's coefficients, read together.
            let mut pairs = vec![(self.compact(w, b), self.compact(w, b), true)];
            if basis.rows > 0 {
                pairs.push((basis, self.compact(w, b), false));
            }
            let mut both = self.grams(&pairs, points)?;
            let coefficients = (basis.rows > 0).then(|| both.pop().expect("two Gram matrices"));
            let before = both.pop().expect("the norms");
            if before.iter().any(|v| !v.is_finite()) {
                return Err(Error::Device("block Krylov: a product is not finite".into()));
            }
            self.project_out(basis, w, &scratch, points, coefficients)?;
            let mut rec = Recorder::new(self.ctx, "krylov/qr");
            record_qr_rows(&mut rec, w, points, b, d, QrFactors { r: None, log_diag: &log_diag, slot: 0 })?;
            rec.submit();
            let kept: Vec<f32> = self.ctx.download(&log_diag, points * b)?;
            let mut replaced = false;
            for (e, log) in kept.iter().enumerate() {
                let norm_before = before[e].max(0.0).sqrt();
                let after = (*log as f64).exp();
                // Written so that a NaN norm counts as vanished.
                let kept = after > VANISHED * norm_before;
                if norm_before == 0.0 || !kept {
                    if attempt == 3 {
                        return Err(Error::Device(format!(
                            "block Krylov: a new direction of point slot {} vanished four times",
                            e / b
                        )));
                    }
                    let column: Vec<f32> = refill(e / b).into_iter().map(|v| v as f32).collect();
                    self.ctx.queue.write_buffer(w, (e * d * 4) as u64, bytemuck::cast_slice(&column));
                    replaced = true;
                }
            }
            if replaced {
                // The replaced columns were written over the once-orthogonalised block: orthogonalise it all again.
                continue;
            }
            self.project_out(basis, w, &scratch, points, None)?;
            let mut rec = Recorder::new(self.ctx, "krylov/qr");
            record_qr_rows(&mut rec, w, points, b, d, QrFactors { r: None, log_diag: &log_diag, slot: 0 })?;
            rec.submit();
            return Ok(());
        }
        Err(Error::Device("block Krylov: orthogonalisation did not settle".into()))
    }
}

/// One point's host-side state.
struct PointState {
    products: usize,
    refill: Refill,
    /// B = Uᵀ·AV, m × m.
    projected: Mat<f64>,
}

/// The top-k singular triplets of every point's operator with the bases on the GPU (see the module
/// documentation); `ctx` is the device the operator's blocks live on, `first_row` as for
/// [`super::block_krylov::block_krylov_svd`], whose results (to the f32 rounding of the bases) these are.
pub fn block_krylov_svd_resident(
    ctx: &GpuContext,
    op: &mut dyn DeviceBatchOperator,
    settings: KrylovSettings,
    first_row: usize,
) -> Result<Vec<Triplets>> {
    let (d, n) = (op.dim(), op.points());
    settings.check(d)?;
    let k = settings.k;
    let (b, capacity) = settings.sizes(d);
    if !resident_fits(&settings, d) {
        return Err(Error::InvalidArgument(format!(
            "the resident block Krylov method needs D = {d} ≥ basis + 2·block = {} (use the host path)",
            capacity + 2 * b
        )));
    }
    let last = settings.last_iteration(b);
    let dev = Device { ctx, d, b, capacity };
    let starts = starting_blocks(&settings, first_row, stream::LOWRANK_DIRECTIONS, n, d, b);
    let pending_host: Vec<f32> = stack(starts.iter().map(|(p, _)| p), b, d).into_iter().map(|v| v as f32).collect();
    let mut states: Vec<PointState> =
        starts.into_iter().map(|(_, refill)| PointState { products: 0, refill, projected: Mat::zeros(0, 0) }).collect();
    let mut slots: Vec<usize> = (0..n).collect();
    let mut pending = ctx.upload("krylov/pending", &pending_host);
    let mut left = dev.zeros("krylov/left", n * dev.stride());
    let mut right = dev.zeros("krylov/right", n * dev.stride());
    let mut m = 0usize;
    let mut full_gram = true;
    let mut results: Vec<Option<Triplets>> = vec![None; n];
    for iteration in 1..=last {
        let na = slots.len();
        if na == 0 {
            break;
        }
        // A P; V ← [V, P], AV ← [AV, A P]; U's new block = orth(A P against U).
        let w = op.apply_device(&slots, &pending, b, false)?;
        dev.copy_rows(dev.compact(&pending, b), dev.rows(&right, m, b), na);
        dev.copy_rows(dev.compact(&w, b), dev.rows(&left, capacity + m, b), na);
        dev.orthonormalize(dev.rows(&left, 0, m), &w, na, &mut |s| states[slots[s]].refill.next())?;
        dev.copy_rows(dev.compact(&w, b), dev.rows(&left, m, b), na);
        // Aᵀ U_new; AᵀU ← [AᵀU, Aᵀ U_new]; the next pending block = orth(Aᵀ U_new against V).
        let z = op.apply_device(&slots, &w, b, true)?;
        dev.copy_rows(dev.compact(&z, b), dev.rows(&right, capacity + m, b), na);
        for &p in &slots {
            states[p].products += 2 * b;
        }
        let grown = m + b;
        dev.orthonormalize(dev.rows(&right, 0, grown), &z, na, &mut |s| states[slots[s]].refill.next())?;
        pending = z;
        // B = Uᵀ AV: all of it after a restart, else its new column and row strips.
        if full_gram {
            let g = dev.gram(dev.rows(&left, 0, grown), dev.rows(&left, capacity, grown), na, false)?;
            for (s, &p) in slots.iter().enumerate() {
                states[p].projected = Mat::from_fn(grown, grown, |i, j| g[(s * grown + i) * grown + j]);
            }
            full_gram = false;
        } else {
            let mut strips = dev.grams(
                &[
                    (dev.rows(&left, 0, grown), dev.rows(&left, capacity + m, b), false),
                    (dev.rows(&left, m, b), dev.rows(&left, capacity, m), false),
                ],
                na,
            )?;
            let (row, column) = (strips.pop().expect("two strips"), strips.pop().expect("two strips"));
            for (s, &p) in slots.iter().enumerate() {
                let old = &states[p].projected;
                states[p].projected = Mat::from_fn(grown, grown, |i, j| {
                    if j >= m {
                        column[(s * grown + i) * b + (j - m)]
                    } else if i >= m {
                        row[(s * b + (i - m)) * m + j]
                    } else {
                        old[(i, j)]
                    }
                });
            }
        }
        m = grown;
        if m < k {
            continue;
        }
        // Rayleigh–Ritz on the host in f64.
        let mut factors = Vec::with_capacity(na);
        for &p in &slots {
            let svd =
                states[p].projected.thin_svd().map_err(|e| Error::Device(format!("SVD did not converge: {e:?}")))?;
            factors.push((svd.U().to_owned(), svd.V().to_owned(), svd.S().column_vector().to_owned()));
        }
        // Residual vectors of the top k on the device: rows (AV) yᵢ − sᵢ U xᵢ over [U; AV], (AᵀU) xᵢ − sᵢ V yᵢ over
        // [V; AᵀU]; their norms through the Gram kernel's diagonal.
        let width = capacity + m;
        let mut coef_left = vec![0f32; na * k * width];
        let mut coef_right = vec![0f32; na * k * width];
        for (s, (x, y, sv)) in factors.iter().enumerate() {
            for i in 0..k {
                let row = (s * k + i) * width;
                for j in 0..m {
                    coef_left[row + j] = (-sv[i] * x[(j, i)]) as f32;
                    coef_left[row + capacity + j] = y[(j, i)] as f32;
                    coef_right[row + j] = (-sv[i] * y[(j, i)]) as f32;
                    coef_right[row + capacity + j] = x[(j, i)] as f32;
                }
            }
        }
        let r_left = dev.combine(&coef_left, k, dev.rows(&left, 0, width), na)?;
        let r_right = dev.combine(&coef_right, k, dev.rows(&right, 0, width), na)?;
        let mut norms = dev.grams(
            &[
                (dev.compact(&r_left, k), dev.compact(&r_left, k), true),
                (dev.compact(&r_right, k), dev.compact(&r_right, k), true),
            ],
            na,
        )?;
        let (n_right, n_left) = (norms.pop().expect("two norms"), norms.pop().expect("two norms"));
        // Stopping: a point stops when all k pass at once (or at the cap) and reports this step's triplets.
        let mut finished = Vec::with_capacity(na);
        for s in 0..na {
            let s1 = factors[s].2[0].max(f64::MIN_POSITIVE);
            let passes = |i: usize| {
                let (r1, r2) = (n_left[s * k + i].max(0.0).sqrt() / s1, n_right[s * k + i].max(0.0).sqrt() / s1);
                r1 <= settings.tolerance && r2 <= settings.tolerance
            };
            finished.push((0..k).all(passes) || iteration == last);
        }
        let vectors = if finished.iter().any(|&f| f) {
            let mut coef_u = vec![0f32; na * k * m];
            let mut coef_v = vec![0f32; na * k * m];
            for (s, (x, y, _)) in factors.iter().enumerate() {
                for i in 0..k {
                    for j in 0..m {
                        coef_u[(s * k + i) * m + j] = x[(j, i)] as f32;
                        coef_v[(s * k + i) * m + j] = y[(j, i)] as f32;
                    }
                }
            }
            let u = dev.combine(&coef_u, k, dev.rows(&left, 0, m), na)?;
            let v = dev.combine(&coef_v, k, dev.rows(&right, 0, m), na)?;
            let u: Vec<f32> = ctx.download(&u, na * k * d)?;
            let v: Vec<f32> = ctx.download(&v, na * k * d)?;
            Some((u, v))
        } else {
            None
        };
        let mut survivors = Vec::with_capacity(na);
        for (s, &p) in slots.iter().enumerate() {
            if !finished[s] {
                survivors.push(s);
                continue;
            }
            let (u, v) = vectors.as_ref().expect("fetched when a point finishes");
            let sv = &factors[s].2;
            let s1 = sv[0].max(f64::MIN_POSITIVE);
            let rows =
                |block: &[f32]| -> Vec<f64> { block[s * k * d..(s + 1) * k * d].iter().map(|&e| e as f64).collect() };
            let residuals: Vec<f64> = (0..k).map(|i| n_left[s * k + i].max(0.0).sqrt() / s1).collect();
            let transpose_residuals: Vec<f64> = (0..k).map(|i| n_right[s * k + i].max(0.0).sqrt() / s1).collect();
            let converged = residuals.iter().chain(&transpose_residuals).all(|&r| r <= settings.tolerance);
            results[p] = Some(Triplets {
                singular_values: (0..k).map(|i| sv[i]).collect(),
                left: rows(u),
                right: rows(v),
                residuals,
                transpose_residuals,
                converged,
                iterations: iteration,
                products: states[p].products,
            });
        }
        // Thick restart on the top k + b Ritz vectors (the pending block is orthogonal to them already).
        let restart = m + b > capacity;
        let keep = (k + b).min(m);
        if survivors.len() < na || restart {
            let ns = survivors.len();
            let (new_left, new_right) =
                (dev.zeros("krylov/left", ns * dev.stride()), dev.zeros("krylov/right", ns * dev.stride()));
            let new_pending = dev.zeros("krylov/pending", ns * b * d);
            let mut encoder =
                ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("krylov/compact") });
            for (to, &from) in survivors.iter().enumerate() {
                let bytes = (dev.stride() * 4) as u64;
                encoder.copy_buffer_to_buffer(&left, from as u64 * bytes, &new_left, to as u64 * bytes, bytes);
                encoder.copy_buffer_to_buffer(&right, from as u64 * bytes, &new_right, to as u64 * bytes, bytes);
                let bytes = (b * d * 4) as u64;
                encoder.copy_buffer_to_buffer(&pending, from as u64 * bytes, &new_pending, to as u64 * bytes, bytes);
            }
            ctx.queue.submit([encoder.finish()]);
            (left, right, pending) = (new_left, new_right, new_pending);
            slots = survivors.iter().map(|&s| slots[s]).collect();
            if restart && ns > 0 {
                // Half by half: U X_keep, AV Y_keep into the new left; V Y_keep, AᵀU X_keep into the new right.
                let mut coef_x = vec![0f32; ns * keep * m];
                let mut coef_y = vec![0f32; ns * keep * m];
                for (to, &from) in survivors.iter().enumerate() {
                    let (x, y, _) = &factors[from];
                    for i in 0..keep {
                        for j in 0..m {
                            coef_x[(to * keep + i) * m + j] = x[(j, i)] as f32;
                            coef_y[(to * keep + i) * m + j] = y[(j, i)] as f32;
                        }
                    }
                }
                let (cx, cy) = (ctx.upload("krylov/coef", &coef_x), ctx.upload("krylov/coef", &coef_y));
                let (restarted_left, restarted_right) =
                    (dev.zeros("krylov/left", ns * dev.stride()), dev.zeros("krylov/right", ns * dev.stride()));
                let mut rec = Recorder::new(ctx, "krylov/restart");
                let stride = dev.stride();
                dev.record_combine(&mut rec, &cx, keep, dev.rows(&left, 0, m), &restarted_left, stride, 0, ns)?;
                dev.record_combine(
                    &mut rec,
                    &cy,
                    keep,
                    dev.rows(&left, capacity, m),
                    &restarted_left,
                    stride,
                    capacity * d,
                    ns,
                )?;
                dev.record_combine(&mut rec, &cy, keep, dev.rows(&right, 0, m), &restarted_right, stride, 0, ns)?;
                dev.record_combine(
                    &mut rec,
                    &cx,
                    keep,
                    dev.rows(&right, capacity, m),
                    &restarted_right,
                    stride,
                    capacity * d,
                    ns,
                )?;
                rec.submit();
                (left, right) = (restarted_left, restarted_right);
                m = keep;
                full_gram = true;
            }
        }
    }
    results.into_iter().map(|r| r.ok_or_else(|| Error::Device("block Krylov: no iteration ran".into()))).collect()
}
