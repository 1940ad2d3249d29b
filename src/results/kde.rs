//! `kde`: log p, ∇log p (and ∇²log p) of the Gaussian-smoothed data p(x) = (1/N) Σᵢ N(x; xᵢ, σ² I) at every row
//! of X. Writes log_density.npy [B], score.npy [B, D] and with the Hessian hessian.npy [B, D, D] (float32), and
//! shard.json for a shard.

use std::path::Path;
use std::time::Instant;

use ndarray::ArrayD;

use super::{array, concatenate, create_dir, write_arrays, ArrayRef, Layout, NamedArrays};
use crate::batch::{split_rows, Shard};
use crate::error::{Error, Result};
use crate::field::KdeField;
use crate::scheduler::JobOptions;

/// Every array joins along its rows.
pub const LAYOUT: Layout = Layout { axis: &[], same: &[] };

#[derive(Debug, Clone)]
pub struct KdeResult {
    /// [B]: log p(x).
    pub log_density: ArrayD<f32>,
    /// [B, D]: ∇log p(x).
    pub score: ArrayD<f32>,
    /// [B, D, D]: ∇²log p(x), when asked for.
    pub hessian: Option<ArrayD<f32>>,
    /// The rows taken, of all the input's.
    pub shard: Shard,
    /// The run's signature, for a shard's manifest (what the shards of one run share).
    pub run: String,
    pub seconds: f64,
}

/// log p, ∇log p and, with `hessian`, ∇²log p of the smoothed data at the rows of `shard` of `x` ([rows, D], all
/// the input's rows), spread over `fields` (the same data on each device).
pub fn kde(
    fields: &[&KdeField],
    x: &[f32],
    shard: &Shard,
    hessian: bool,
    options: JobOptions,
    run: &str,
) -> Result<KdeResult> {
    let field = *fields.first().ok_or_else(|| Error::Device("no device to run on".into()))?;
    let d = field.dim();
    let x = shard.slice(x, d);
    let started = Instant::now();
    let blocks = split_rows(fields, shard.len(), |field, rows| {
        let out = field.evaluate(&x[rows.start * d..rows.end * d], hessian, options)?;
        let n = rows.len();
        Ok((
            array(&[n], out.log_density)?,
            array(&[n, d], out.score)?,
            out.hessian.map(|h| array(&[n, d, d], h)).transpose()?,
        ))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    log::info!("kde: {} points over {} data points in {seconds:.3} s", shard.len(), field.len());
    let log_density = concatenate(&blocks.iter().map(|b| b.0.clone()).collect::<Vec<_>>(), 0)?;
    let score = concatenate(&blocks.iter().map(|b| b.1.clone()).collect::<Vec<_>>(), 0)?;
    let hessian = match hessian {
        true => Some(concatenate(&blocks.iter().filter_map(|b| b.2.clone()).collect::<Vec<_>>(), 0)?),
        false => None,
    };
    Ok(KdeResult { log_density, score, hessian, shard: shard.clone(), run: run.to_string(), seconds })
}

impl KdeResult {
    /// The arrays, named as their files and in the order the command line writes them.
    pub fn arrays(&self) -> NamedArrays<'_> {
        let mut arrays = vec![("log_density", ArrayRef::F32(&self.log_density)), ("score", ArrayRef::F32(&self.score))];
        if let Some(h) = &self.hessian {
            arrays.push(("hessian", ArrayRef::F32(h)));
        }
        arrays
    }

    /// Writes the command line's files into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_arrays(dir, &self.arrays())?;
        super::write_manifest(dir, &self.shard, &self.run, LAYOUT.axis, LAYOUT.same)
    }
}
