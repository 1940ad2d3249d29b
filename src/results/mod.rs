//! Typed results of the analyses: one type per analysis, its arrays as n-dimensional arrays with named fields,
//! the batch axis of each array (how blocks of rows — shards, devices — join), and the writers of the files the
//! command line writes (`.npy`, `summary.json`, `shard.json`). The command line and the Python package both write
//! through these, so a folder is the same whichever face made it.

pub mod derivatives;
pub mod descriptors;
pub mod kde;
pub mod lyapunov;
pub mod merge;
pub mod ridge;
pub mod ridge_error;
pub mod sample;
pub mod spectrum;

use std::path::Path;

use ndarray::{ArrayD, Axis, IxDyn};

use crate::batch::Shard;
use crate::error::{Error, Result};
use crate::io::{npy, write_atomically};

pub use derivatives::{DivergenceResult, JacobianResult, JvpResult, ScoreResult, VjpResult};
pub use descriptors::DescriptorsResult;
pub use kde::KdeResult;
pub use lyapunov::LyapunovResult;
pub use merge::{merge, write_manifest, MANIFEST};
pub use ridge::RidgeResult;
pub use ridge_error::{PhaseTable, RidgeErrorResult};
pub use sample::SampleResult;
pub use spectrum::SpectrumResult;

/// How a result's arrays join across blocks of rows: arrays joined along an axis other than the first (by file
/// name; every other `.npy` joins along axis 0), and arrays every block holds whole and identical (copied once).
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub axis: &'static [(&'static str, usize)],
    pub same: &'static [&'static str],
}

impl Layout {
    /// The batch axis of the array written as `name`.
    pub fn axis_of(&self, name: &str) -> usize {
        self.axis.iter().find(|(n, _)| *n == name).map_or(0, |&(_, a)| a)
    }

    /// Writes shard.json for a shard of a run (nothing for a whole run).
    pub fn write_manifest(&self, dir: &Path, info: &RunInfo) -> Result<()> {
        write_manifest(dir, &info.shard, &info.run, self.axis, self.same)
    }
}

/// What every result records of the run that made it, for its summary: the field's source, the adapter, the
/// number of devices, the shard of rows, the wall time, and the run's signature (what shards of one run share).
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The model or WGSL file the field came from.
    pub source: String,
    pub adapter: String,
    pub devices: usize,
    pub shard: Shard,
    pub seconds: f64,
    /// The settings without what may differ between the shards of one run; `merge` checks the parts agree on it.
    pub run: String,
}

/// Parts of one array made on consecutive blocks of rows, joined along `axis`.
pub fn concatenate<A: Clone>(parts: &[ArrayD<A>], axis: usize) -> Result<ArrayD<A>> {
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(axis), &views)
        .map_err(|e| Error::Device(format!("blocks of one run do not join along axis {axis}: {e}")))
}

/// An array of `shape` from row-major values (the analyses' flat layout).
pub fn array<A>(shape: &[usize], values: Vec<A>) -> Result<ArrayD<A>> {
    ArrayD::from_shape_vec(IxDyn(shape), values)
        .map_err(|e| Error::Device(format!("a result of the wrong length for shape {shape:?}: {e}")))
}

/// Row-major values of an array whatever its memory order.
fn values<A: Clone>(a: &ArrayD<A>) -> std::borrow::Cow<'_, [A]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().cloned().collect()),
    }
}

pub fn write_f32(path: &Path, a: &ArrayD<f32>) -> Result<()> {
    npy::write_f32(path, a.shape(), &values(a))
}

pub fn write_f64(path: &Path, a: &ArrayD<f64>) -> Result<()> {
    npy::write_f64(path, a.shape(), &values(a))
}

pub fn write_i64(path: &Path, a: &ArrayD<i64>) -> Result<()> {
    npy::write_i64(path, a.shape(), &values(a))
}

/// A bool array (numpy dtype `|b1`), whole or not at all.
pub fn write_bool(path: &Path, a: &ArrayD<bool>) -> Result<()> {
    use npyz::WriterBuilder;
    let shape: Vec<u64> = a.shape().iter().map(|&s| s as u64).collect();
    let mut bytes = Vec::new();
    let mut write = || -> std::io::Result<()> {
        let mut writer = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(&mut bytes).begin_nd()?;
        writer.extend(a.iter().copied())?;
        writer.finish()
    };
    write().map_err(|e| Error::io(path, e))?;
    write_atomically(path, &bytes)
}

/// Writes a JSON value, pretty-printed, whole or not at all.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::bad_input(name, e.to_string()))?;
    write_atomically(path, text.as_bytes())
}

/// One array of a result, by its element type: what a writer or a binding needs of it.
#[derive(Debug, Clone, Copy)]
pub enum ArrayRef<'a> {
    F32(&'a ArrayD<f32>),
    F64(&'a ArrayD<f64>),
    I64(&'a ArrayD<i64>),
    Bool(&'a ArrayD<bool>),
}

/// A result's arrays by the names of their files (without `.npy`), in the order the command line writes them.
pub type NamedArrays<'a> = Vec<(&'static str, ArrayRef<'a>)>;

/// Writes each array as `dir`/NAME.npy.
pub fn write_arrays(dir: &Path, arrays: &NamedArrays) -> Result<()> {
    for (name, array) in arrays {
        let path = dir.join(format!("{name}.npy"));
        match array {
            ArrayRef::F32(a) => write_f32(&path, a)?,
            ArrayRef::F64(a) => write_f64(&path, a)?,
            ArrayRef::I64(a) => write_i64(&path, a)?,
            ArrayRef::Bool(a) => write_bool(&path, a)?,
        }
    }
    Ok(())
}

/// Creates an output folder (and its parents) if missing.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}
