//! A score field with a known error added: s̃(x, t) = s(x, t) + e(x, t), for interventions ("what do the samples
//! do when the score is wrong by this much, in this direction?").
//!
//! - [`ScoreSource`]: what a sampler needs of a field (dimension, schedule, batched scores); [`ScoreField`] and
//!   [`Perturbed`] implement it, so [`crate::sampler::sample`] runs on either.
//! - [`ErrorTerm`]: an error evaluated on the host in f64 at a batch of points and one time. [`RandomFeatureError`]
//!   is a smooth random field of known size; other terms (e.g. an error projected onto a ridge's normal space,
//!   [`crate::analysis::ridge::projected`]) build on it.
//! - [`Perturbed`]: the base field's score (on its GPU) plus the error, optionally only while std(t) is at most a
//!   given level (an error switched on in the late phase of sampling).

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::ops::Range;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::draws::{row_rng, stream};
use crate::error::{Error, Result};
use crate::field::{validate_batch, ScoreField};

use crate::model::NoiseSchedule;
use crate::scheduler::JobOptions;

/// What a sampler needs of a score field.
pub trait ScoreSource {
    fn dim(&self) -> usize;
    fn schedule(&self) -> NoiseSchedule;
    /// s(x, t) for every row of `x`; `t` has one entry per row or one for all.
    fn score(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>>;
}

impl ScoreSource for ScoreField {
    fn dim(&self) -> usize {
        ScoreField::dim(self)
    }
    fn schedule(&self) -> NoiseSchedule {
        ScoreField::schedule(self)
    }
    fn score(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        ScoreField::score(self, x, t, options)
    }
}

impl<T: ScoreSource + ?Sized> ScoreSource for &T {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn schedule(&self) -> NoiseSchedule {
        (**self).schedule()
    }
    fn score(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        (**self).score(x, t, options)
    }
}

/// An error added to a score: e(x, t) at every row of `x` ([B, D]) at one time `t`, where the noise level is `std`.
pub trait ErrorTerm: Sync {
    fn dim(&self) -> usize;
    fn error(&self, x: &[f32], t: f64, std: f64, options: JobOptions) -> Result<Vec<f64>>;
}

/// A smooth random error of known size, in units of the noise:
/// e(x, t) = (size / std(t)) · g(x), g(x) = √(2/M) Σⱼ aⱼ cos(ωⱼ·x + bⱼ),
/// with M features ωⱼ ~ N(0, I/ℓ²) (ℓ the length scale), bⱼ ~ U[0, 2π), aⱼ ~ N(0, I/D). Then E‖g(x)‖² = 1 at every
/// x (over the draws), so std(t)·‖e‖ has RMS `size`: the error's size as the model cards measure score errors
/// (std(t)·|s_model − s_exact|). Smooth on the scale ℓ: g is a sample of a Gaussian process with the squared-
/// exponential kernel exp(−‖x − y‖²/2ℓ²) (Rahimi & Recht's random features).
#[derive(Debug, Clone)]
pub struct RandomFeatureError {
    dim: usize,
    size: f64,
    /// [M, D]
    frequencies: Vec<f64>,
    /// [M]
    phases: Vec<f64>,
    /// [M, D]
    amplitudes: Vec<f64>,
}

impl RandomFeatureError {
    /// `features` (M ≥ 1) random features in R^`dim` at `length_scale` (> 0), scaled to RMS `size` (≥ 0), drawn
    /// from `seed`.
    pub fn new(dim: usize, features: usize, length_scale: f64, size: f64, seed: u64) -> Result<Self> {
        if dim == 0 {
            return Err(Error::InvalidArgument("dim = 0: the error field needs at least one dimension".into()));
        }
        if features == 0 {
            return Err(Error::InvalidArgument("features = 0: the error field needs at least one feature".into()));
        }
        if !(length_scale > 0.0 && length_scale.is_finite()) {
            return Err(Error::InvalidArgument(format!("length_scale = {length_scale}: expected a positive number")));
        }
        if !(size >= 0.0 && size.is_finite()) {
            return Err(Error::InvalidArgument(format!("size = {size}: expected a finite number ≥ 0")));
        }
        let mut frequencies = Vec::with_capacity(features * dim);
        let mut phases = Vec::with_capacity(features);
        let mut amplitudes = Vec::with_capacity(features * dim);
        for j in 0..features {
            // One generator per feature: the first M features are the same whatever M.
            let mut rng = row_rng(seed, stream::ERROR_FIELD, j as u64, 0);
            for _ in 0..dim {
                let z: f64 = StandardNormal.sample(&mut rng);
                frequencies.push(z / length_scale);
            }
            phases.push(rng.random_range(0.0..2.0 * PI));
            for _ in 0..dim {
                let z: f64 = StandardNormal.sample(&mut rng);
                amplitudes.push(z / (dim as f64).sqrt());
            }
        }
        Ok(RandomFeatureError { dim, size, frequencies, phases, amplitudes })
    }

    pub fn size(&self) -> f64 {
        self.size
    }

    pub fn features(&self) -> usize {
        self.phases.len()
    }

    /// (ω [M, D], b [M], a [M, D]), for references.
    pub fn parameters(&self) -> (&[f64], &[f64], &[f64]) {
        (&self.frequencies, &self.phases, &self.amplitudes)
    }

    /// g(x), the unit-RMS smooth field, at every row of `x` ([B, D]).
    pub fn unit_field(&self, x: &[f32]) -> Vec<f64> {
        let d = self.dim;
        let m = self.features();
        let norm = (2.0 / m as f64).sqrt();
        let mut out = vec![0.0; x.len()];
        for (row, o) in x.chunks(d).zip(out.chunks_mut(d)) {
            for j in 0..m {
                let w = &self.frequencies[j * d..(j + 1) * d];
                let arg: f64 = w.iter().zip(row).map(|(a, &b)| a * b as f64).sum::<f64>() + self.phases[j];
                let c = norm * arg.cos();
                for (k, ok) in o.iter_mut().enumerate() {
                    *ok += c * self.amplitudes[j * d + k];
                }
            }
        }
        out
    }
}

impl ErrorTerm for RandomFeatureError {
    fn dim(&self) -> usize {
        self.dim
    }

    fn error(&self, x: &[f32], _t: f64, std: f64, _options: JobOptions) -> Result<Vec<f64>> {
        if !(std > 0.0 && std.is_finite()) {
            return Err(Error::InvalidArgument(format!("std(t) = {std}: the error is scaled by 1/std(t)")));
        }
        let scale = self.size / std;
        Ok(self.unit_field(x).into_iter().map(|v| scale * v).collect())
    }
}

/// s̃ = s + e: a base field's score plus an error term, the error on only while std(t) ≤ `on_below_std` (all
/// times when None) and only on the batch's rows in `rows` (all rows when None: with a range, one sampler run
/// carries both the perturbed rows and an unperturbed control).
pub struct Perturbed<'a> {
    base: &'a dyn ScoreSource,
    error: &'a dyn ErrorTerm,
    on_below_std: Option<f64>,
    rows: Option<Range<usize>>,
}

impl<'a> Perturbed<'a> {
    /// Any score source as the base: a field, or another perturbed field (errors on different rows).
    pub fn new(base: &'a dyn ScoreSource, error: &'a dyn ErrorTerm) -> Result<Self> {
        if error.dim() != base.dim() {
            return Err(Error::InvalidArgument(format!(
                "the error term has dimension {}, the field {}",
                error.dim(),
                base.dim()
            )));
        }
        Ok(Perturbed { base, error, on_below_std: None, rows: None })
    }

    /// The error only where std(t) ≤ `level` (> 0).
    pub fn on_below_std(mut self, level: f64) -> Result<Self> {
        if !(level > 0.0) {
            return Err(Error::InvalidArgument(format!("on_below_std = {level}: expected a positive level")));
        }
        self.on_below_std = Some(level);
        Ok(self)
    }

    /// The error only on the rows `rows` of every batch (the others get the base score alone).
    pub fn only_rows(mut self, rows: Range<usize>) -> Self {
        self.rows = Some(rows);
        self
    }

    /// e(x, t) at every row (zeros where the error is off), [B, D] in f64.
    pub fn error(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f64>> {
        let d = self.base.dim();
        let rows = validate_batch(x, d, t, "X", "T")?;
        let schedule = self.base.schedule();
        let mut out = vec![0.0; x.len()];
        // One evaluation per distinct time (samplers pass one t for all rows).
        let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for r in 0..rows {
            if self.rows.as_ref().is_some_and(|keep| !keep.contains(&r)) {
                continue;
            }
            groups.entry(t[if t.len() == 1 { 0 } else { r }].to_bits()).or_default().push(r);
        }
        for (bits, members) in groups {
            let tr = f32::from_bits(bits) as f64;
            let std = schedule.std(tr);
            if self.on_below_std.is_some_and(|level| std > level) {
                continue;
            }
            let xs: Vec<f32> = members.iter().flat_map(|&r| x[r * d..(r + 1) * d].iter().copied()).collect();
            let e = self.error.error(&xs, tr, std, options)?;
            if e.len() != xs.len() {
                return Err(Error::bad_input(
                    "error term",
                    format!("{} values for {} rows of {d}", e.len(), members.len()),
                ));
            }
            if let Some(i) = e.iter().position(|v| !v.is_finite()) {
                return Err(Error::NotFinite { what: "error term".into(), row: members[i / d], value: e[i] });
            }
            for (i, &r) in members.iter().enumerate() {
                out[r * d..(r + 1) * d].copy_from_slice(&e[i * d..(i + 1) * d]);
            }
        }
        Ok(out)
    }
}

impl ScoreSource for Perturbed<'_> {
    fn dim(&self) -> usize {
        self.base.dim()
    }

    fn schedule(&self) -> NoiseSchedule {
        self.base.schedule()
    }

    fn score(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        let s = self.base.score(x, t, options)?;
        let e = self.error(x, t, options)?;
        Ok(s.iter().zip(&e).map(|(&a, &b)| (a as f64 + b) as f32).collect())
    }
}
