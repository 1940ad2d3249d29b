//! `.npy` arrays through the `npyz` crate: f32 and f64 in (little- or big-endian, C order), f32 or f64 out.

use std::path::Path;

use npyz::WriterBuilder;

use crate::error::{Error, Result};

/// An array read from a `.npy` file, as f32 values with its shape.
#[derive(Debug, Clone)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// An array in f64, for results that are written in double precision.
#[derive(Debug, Clone)]
pub struct Array64 {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

fn read_npy(path: &Path) -> Result<(Vec<usize>, npyz::NpyFile<std::io::BufReader<std::fs::File>>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .map_err(|e| Error::bad_file(path, format!("not a .npy file ({e})")))?;
    if npy.order() != npyz::Order::C {
        return Err(Error::bad_file(path, "Fortran-ordered arrays are not supported; save with np.ascontiguousarray"));
    }
    let shape = npy.shape().iter().map(|&s| s as usize).collect();
    Ok((shape, npy))
}

fn type_of(npy: &npyz::NpyFile<std::io::BufReader<std::fs::File>>) -> Option<(npyz::TypeChar, u64)> {
    match npy.dtype() {
        npyz::DType::Plain(ts) => Some((ts.type_char(), ts.size_field())),
        _ => None,
    }
}

/// Reads an f32 or f64 array as f64.
pub fn read_f64(path: &Path) -> Result<Array64> {
    let (shape, npy) = read_npy(path)?;
    let data: Vec<f64> = match type_of(&npy) {
        Some((npyz::TypeChar::Float, 4)) => npy.into_vec::<f32>().map(|v| v.into_iter().map(f64::from).collect()),
        Some((npyz::TypeChar::Float, 8)) => npy.into_vec::<f64>(),
        _ => {
            return Err(Error::bad_file(
                path,
                format!("dtype {} is not supported (use float32 or float64)", npy.dtype().descr()),
            ))
        }
    }
    .map_err(|e| Error::bad_file(path, format!("truncated or unreadable array data ({e})")))?;
    let expected: usize = shape.iter().product();
    if data.len() != expected {
        return Err(Error::bad_file(path, format!("holds {} values for shape {shape:?}", data.len())));
    }
    Ok(Array64 { shape, data })
}

/// Reads an f32 or f64 array as f32 (f64 values are rounded to nearest).
pub fn read_f32(path: &Path) -> Result<Array> {
    let a = read_f64(path)?;
    Ok(Array { shape: a.shape, data: a.data.into_iter().map(|v| v as f32).collect() })
}

fn encode<T: npyz::AutoSerialize + npyz::Serialize + Copy>(shape: &[usize], data: &[T]) -> Result<Vec<u8>> {
    let shape64: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
    let mut bytes = Vec::new();
    let mut write = || -> std::io::Result<()> {
        let mut writer = npyz::WriteOptions::new().default_dtype().shape(&shape64).writer(&mut bytes).begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()
    };
    write().map_err(|e| Error::bad_input("npy encoding", e.to_string()))?;
    Ok(bytes)
}

/// Writes a float32 array, whole or not at all.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    super::write_atomically(path, &encode(shape, data)?)
}

/// Writes an int64 array, whole or not at all.
pub fn write_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    super::write_atomically(path, &encode(shape, data)?)
}

/// Writes a float64 array, whole or not at all.
pub fn write_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
    super::write_atomically(path, &encode(shape, data)?)
}

/// Writes a float32 array chunk by chunk (for results too large to hold), to a temporary file that is renamed
/// into place by [`StreamWriter::finish`]; dropped unfinished, it removes the temporary file.
pub struct StreamWriter {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    writer: Option<npyz::NpyWriter<f32, std::io::BufWriter<std::fs::File>>>,
    remaining: u64,
}

impl StreamWriter {
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self> {
        let tmp = super::temporary_path(path)?;
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(path, e))?;
        let shape64: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
        let writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape64)
            .writer(std::io::BufWriter::new(file))
            .begin_nd()
            .map_err(|e| Error::io(path, e))?;
        Ok(StreamWriter { path: path.into(), tmp, writer: Some(writer), remaining: shape64.iter().product() })
    }

    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::bad_input(self.path.display().to_string(), "written after finish"))?;
        writer.extend(values.iter().copied()).map_err(|e| Error::io(&self.path, e))?;
        self.remaining = self.remaining.saturating_sub(values.len() as u64);
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        if self.remaining != 0 {
            return Err(Error::bad_input(
                self.path.display().to_string(),
                format!("{} values were never written", self.remaining),
            ));
        }
        if let Some(writer) = self.writer.take() {
            writer.finish().map_err(|e| Error::io(&self.path, e))?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// An array of any dtype this crate writes (f32, f64, i64, bool), kept as it is for joining.
enum Typed {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

fn read_typed(path: &Path) -> Result<(Vec<usize>, Typed)> {
    let (shape, npy) = read_npy(path)?;
    let bad = |e: std::io::Error| Error::bad_file(path, format!("truncated or unreadable array data ({e})"));
    let data = match type_of(&npy) {
        Some((npyz::TypeChar::Float, 4)) => Typed::F32(npy.into_vec().map_err(bad)?),
        Some((npyz::TypeChar::Float, 8)) => Typed::F64(npy.into_vec().map_err(bad)?),
        Some((npyz::TypeChar::Int, 8)) => Typed::I64(npy.into_vec().map_err(bad)?),
        Some((npyz::TypeChar::Bool, 1)) => Typed::Bool(npy.into_vec().map_err(bad)?),
        _ => {
            return Err(Error::bad_file(
                path,
                format!("dtype {} cannot be merged (float32, float64, int64, bool)", npy.dtype().descr()),
            ))
        }
    };
    Ok((shape, data))
}

/// Joins arrays along their first axis (shard outputs in shard order) into `out`, whole or not at all. The parts
/// must share dtype and trailing shape.
pub fn concatenate(parts: &[std::path::PathBuf], out: &Path) -> Result<()> {
    concatenate_along(parts, 0, out)
}

/// The parts' blocks along `axis`, in order: for every index of the axes before it, each part's slab.
fn interleave<T: Copy>(parts: &[(&[usize], &[T])], axis: usize) -> Vec<T> {
    let outer: usize = parts[0].0[..axis].iter().product();
    let mut out = Vec::with_capacity(parts.iter().map(|(_, d)| d.len()).sum());
    for o in 0..outer {
        for (shape, data) in parts {
            let slab: usize = shape[axis..].iter().product();
            out.extend_from_slice(&data[o * slab..(o + 1) * slab]);
        }
    }
    out
}

/// Joins arrays along `axis` (shard outputs in shard order; e.g. axis 1 for [levels, rows, ...]) into `out`,
/// whole or not at all. The parts must share dtype and every other axis.
pub fn concatenate_along(parts: &[std::path::PathBuf], axis: usize, out: &Path) -> Result<()> {
    let read: Vec<(&std::path::PathBuf, Vec<usize>, Typed)> =
        parts.iter().map(|p| read_typed(p).map(|(shape, data)| (p, shape, data))).collect::<Result<_>>()?;
    let (_, first, _) = read.first().ok_or_else(|| Error::InvalidArgument("merge needs at least one part".into()))?;
    let mut shape = first.clone();
    for (i, (part, part_shape, _)) in read.iter().enumerate() {
        if part_shape.len() <= axis {
            return Err(Error::bad_file(part, format!("shape {part_shape:?} has no axis {axis} to join along")));
        }
        let others = |s: &[usize]| [&s[..axis], &s[axis + 1..]].concat();
        if part_shape.len() != first.len() || others(part_shape) != others(first) {
            return Err(Error::bad_file(
                part,
                format!("shape {part_shape:?} does not fit {first:?} (the first part's) outside axis {axis}"),
            ));
        }
        if i > 0 {
            shape[axis] += part_shape[axis];
        }
    }
    macro_rules! join_as {
        ($variant:ident) => {{
            let typed = read
                .iter()
                .map(|(part, part_shape, data)| match data {
                    Typed::$variant(v) => Ok((&part_shape[..], &v[..])),
                    _ => Err(Error::bad_file(part, "its dtype differs from the first part's")),
                })
                .collect::<Result<Vec<_>>>()?;
            encode(&shape, &interleave(&typed, axis))?
        }};
    }
    let bytes = match &read[0].2 {
        Typed::F32(_) => join_as!(F32),
        Typed::F64(_) => join_as!(F64),
        Typed::I64(_) => join_as!(I64),
        Typed::Bool(_) => join_as!(Bool),
    };
    super::write_atomically(out, &bytes)
}
