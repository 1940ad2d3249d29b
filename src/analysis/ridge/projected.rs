//! An error that is purely normal or purely tangent to the ridges of the smoothed data: the controlled errors of
//! the reach / align / slide account (arXiv 2602.06021). At each point x and time t, H = ∇²log p_t(x) of the
//! smoothed training data, E = its D − d eigenvectors of smallest eigenvalue (the normal space of a d-dimensional
//! ridge, as in SCMS); an inner error e (e.g. a [`crate::field::RandomFeatureError`]) is replaced by E Eᵀ e
//! (normal) or (I − E Eᵀ) e (tangent). Added to the exact smoothed-data score with [`crate::field::Perturbed`], the
//! sampler then feels an error of one kind only.

use crate::error::{Error, Result};
use crate::field::{ErrorTerm, SmoothedData};
use crate::scheduler::JobOptions;

use super::{check_ridge_dim, symmetric_eigen};

/// Which part of the error is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RidgePart {
    /// E Eᵀ e: across the ridge.
    Normal,
    /// (I − E Eᵀ) e: along the ridge.
    Tangent,
}

impl RidgePart {
    pub fn name(self) -> &'static str {
        match self {
            RidgePart::Normal => "normal",
            RidgePart::Tangent => "tangent",
        }
    }
}

/// (E Eᵀ v, (I − E Eᵀ) v) for every row of `v` ([B, D], f64) at the rows of `x`, E from the smoothed data's
/// Hessian at time `t` (one time for all rows), the ridge of dimension `ridge_dim`.
pub fn split_at_ridge(
    smoothed: &SmoothedData,
    x: &[f32],
    t: f32,
    v: &[f64],
    ridge_dim: usize,
    options: JobOptions,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let d = smoothed.dim();
    check_ridge_dim(ridge_dim, d)?;
    if v.len() != x.len() {
        return Err(Error::bad_input(
            "V",
            format!("{} values for {} rows of D = {d} (expected X's shape)", v.len(), x.len() / d),
        ));
    }
    let hessians = smoothed.hessian(x, &[t], options)?;
    let mut normal = Vec::with_capacity(v.len());
    let mut tangent = Vec::with_capacity(v.len());
    for (h, vr) in hessians.chunks(d * d).zip(v.chunks(d)) {
        let h: Vec<f64> = h.iter().map(|&a| a as f64).collect();
        let n = symmetric_eigen(&h, d)?.project_normal(vr, ridge_dim);
        tangent.extend(vr.iter().zip(&n).map(|(a, b)| a - b));
        normal.extend(n);
    }
    Ok((normal, tangent))
}

/// An inner error with only its normal or only its tangent part to the ridges of `smoothed` kept.
pub struct RidgeProjectedError<'a> {
    smoothed: &'a SmoothedData,
    inner: &'a dyn ErrorTerm,
    ridge_dim: usize,
    part: RidgePart,
}

impl<'a> RidgeProjectedError<'a> {
    pub fn new(
        smoothed: &'a SmoothedData,
        inner: &'a dyn ErrorTerm,
        ridge_dim: usize,
        part: RidgePart,
    ) -> Result<Self> {
        check_ridge_dim(ridge_dim, smoothed.dim())?;
        if inner.dim() != smoothed.dim() {
            return Err(Error::InvalidArgument(format!(
                "the inner error has dimension {}, the smoothed data {}",
                inner.dim(),
                smoothed.dim()
            )));
        }
        Ok(RidgeProjectedError { smoothed, inner, ridge_dim, part })
    }
}

impl ErrorTerm for RidgeProjectedError<'_> {
    fn dim(&self) -> usize {
        self.smoothed.dim()
    }

    fn error(&self, x: &[f32], t: f64, std: f64, options: JobOptions) -> Result<Vec<f64>> {
        let e = self.inner.error(x, t, std, options)?;
        let (normal, tangent) = split_at_ridge(self.smoothed, x, t as f32, &e, self.ridge_dim, options)?;
        Ok(match self.part {
            RidgePart::Normal => normal,
            RidgePart::Tangent => tangent,
        })
    }
}
