//! The smoothed empirical distribution as a score field: p_t = (1/N) Σ N(x; α xᵢ, σ² I) with (α, σ) either fixed
//! (a bandwidth) or the diffusion's at each row's t (α(t), std(t)), so the exact score of the training set's
//! diffused distribution can be sampled, differentiated and analysed like a network. Its Jacobian is the Hessian
//! of log p_t: symmetric, so J·v and Jᵀ·u are the same product.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::field::{validate_batch, KdeField, KdeScale};
use crate::gpu::GpuContext;
use crate::model::NoiseSchedule;
use crate::scheduler::JobOptions;

/// How (α, σ) are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smoothing {
    /// α = 1, σ = the bandwidth, whatever t.
    Bandwidth(f64),
    /// α(t), std(t) of the schedule.
    Schedule,
}

pub struct SmoothedData {
    ctx: Arc<GpuContext>,
    data: Vec<f32>,
    dim: usize,
    schedule: NoiseSchedule,
    smoothing: Smoothing,
}

impl SmoothedData {
    pub fn new(
        ctx: Arc<GpuContext>,
        data: Vec<f32>,
        dim: usize,
        schedule: NoiseSchedule,
        smoothing: Smoothing,
    ) -> Result<Self> {
        // Validates the data and the bandwidth once.
        let scale = match smoothing {
            Smoothing::Bandwidth(sigma) => KdeScale::bandwidth(sigma),
            Smoothing::Schedule => KdeScale::at_time(&schedule, 1.0),
        };
        KdeField::new(ctx.clone(), data.clone(), dim, scale)?;
        Ok(SmoothedData { ctx, data, dim, schedule, smoothing })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn schedule(&self) -> NoiseSchedule {
        self.schedule
    }

    pub fn ctx(&self) -> &GpuContext {
        &self.ctx
    }

    /// The (α, σ) at time t.
    pub fn scale_at(&self, t: f32) -> KdeScale {
        match self.smoothing {
            Smoothing::Bandwidth(sigma) => KdeScale::bandwidth(sigma),
            Smoothing::Schedule => KdeScale::at_time(&self.schedule, t as f64),
        }
    }

    /// The KDE field at time t.
    pub fn at(&self, t: f32) -> Result<KdeField> {
        KdeField::new(self.ctx.clone(), self.data.clone(), self.dim, self.scale_at(t))
    }

    /// Rows grouped by their (α, σ): one KDE evaluation per distinct scale.
    fn by_scale(&self, rows: usize, t: &[f32]) -> BTreeMap<u32, Vec<usize>> {
        let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for r in 0..rows {
            let tr = if t.len() == 1 || self.smoothing != Smoothing::Schedule { t[0] } else { t[r] };
            groups.entry(tr.to_bits()).or_default().push(r);
        }
        groups
    }

    /// Applies `f(field, rows' x, rows' extra)` per group of rows sharing a scale, `out_per_row` outputs a row.
    fn grouped(
        &self,
        x: &[f32],
        t: &[f32],
        extra: &[f32],
        extra_per_row: usize,
        out_per_row: usize,
        f: impl Fn(&KdeField, &[f32], &[f32]) -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let d = self.dim;
        let rows = validate_batch(x, d, t, "X", "T")?;
        let mut out = vec![0f32; rows * out_per_row];
        for (bits, members) in self.by_scale(rows, t) {
            let field = self.at(f32::from_bits(bits))?;
            let xs: Vec<f32> = members.iter().flat_map(|&r| x[r * d..(r + 1) * d].iter().copied()).collect();
            let es: Vec<f32> = members
                .iter()
                .flat_map(|&r| extra[r * extra_per_row..(r + 1) * extra_per_row].iter().copied())
                .collect();
            let values = f(&field, &xs, &es)?;
            for (i, &r) in members.iter().enumerate() {
                out[r * out_per_row..(r + 1) * out_per_row]
                    .copy_from_slice(&values[i * out_per_row..(i + 1) * out_per_row]);
            }
        }
        Ok(out)
    }

    /// ∇log p_t at every row.
    pub fn score(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        self.grouped(x, t, &[], 0, self.dim, |field, xs, _| field.score(xs, options))
    }

    /// ∇²log p_t · v for `per_point` directions per row (`v` [B, P, D]): the exact J·v (and Jᵀ·v).
    pub fn hessian_vector(
        &self,
        x: &[f32],
        t: &[f32],
        v: &[f32],
        per_point: usize,
        options: JobOptions,
    ) -> Result<Vec<f32>> {
        let d = self.dim;
        if per_point == 0 || v.len() != x.len() * per_point {
            return Err(Error::bad_input("V", format!("{} values do not form [B, {per_point}, {d}]", v.len())));
        }
        self.grouped(x, t, v, per_point * d, per_point * d, |field, xs, vs| {
            field.hessian_vector(xs, vs, per_point, options)
        })
    }

    /// ∇²log p_t [B, D, D].
    pub fn hessian(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        self.grouped(x, t, &[], 0, self.dim * self.dim, |field, xs, _| field.hessian(xs, options))
    }
}
