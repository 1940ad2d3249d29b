//! Reading model files: safetensors with the architecture in `__metadata__` (shared spec: model-format.md).
//! Tensors may be F32, F16 or BF16 (upcast to f32); `module.` prefixes (DataParallel) are dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors};

use crate::error::{Error, Result};

/// A parsed model file: metadata and tensors by their (prefix-stripped) names, upcast to f32.
pub struct ModelFile {
    pub path: PathBuf,
    pub metadata: HashMap<String, String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn describe_safetensors_error(e: &SafeTensorError, file_len: usize) -> String {
    match e {
        SafeTensorError::HeaderTooSmall => {
            format!("not a safetensors file: {file_len} bytes is shorter than the 8-byte header length")
        }
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => {
            format!("not a safetensors file, or truncated: its header length does not fit in its {file_len} bytes")
        }
        SafeTensorError::InvalidHeader(_) | SafeTensorError::InvalidHeaderDeserialization(_) => {
            format!("not a safetensors file: the header is not valid safetensors JSON ({e})")
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            format!("truncated file: the tensors' data ends past the file's {file_len} bytes")
        }
        other => format!("not a valid safetensors file: {other}"),
    }
}

fn strip_prefix(name: &str) -> &str {
    let mut n = name;
    while let Some(rest) = n.strip_prefix("module.") {
        n = rest;
    }
    n
}

fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    match dtype {
        Dtype::F32 => Some(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        Dtype::F16 => Some(data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        Dtype::BF16 => Some(data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        _ => None,
    }
}

impl ModelFile {
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, &bytes)
    }

    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let parsed = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::bad_file(path, describe_safetensors_error(&e, bytes.len())))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::bad_file(path, describe_safetensors_error(&e, bytes.len())))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let mut tensors = HashMap::new();
        for (name, view) in parsed.iter() {
            let key = strip_prefix(name).to_string();
            let values = to_f32(view.dtype(), view.data()).ok_or_else(|| Error::BadTensor {
                path: path.into(),
                tensor: name.into(),
                message: format!("dtype {:?} is not supported (use F32, F16 or BF16)", view.dtype()),
            })?;
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::BadTensor {
                    path: path.into(),
                    tensor: name.into(),
                    message: format!("element {i} is {} (weights must be finite)", values[i]),
                });
            }
            tensors.insert(key, (view.shape().to_vec(), values));
        }
        Ok(ModelFile { path: path.into(), metadata, tensors })
    }

    /// A required metadata string.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata.get(key).map(String::as_str).ok_or_else(|| Error::BadMetadata {
            path: self.path.clone(),
            key: key.into(),
            message: "missing (see model-format.md)".into(),
        })
    }

    pub fn meta_opt(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// A metadata value parsed as a number.
    pub fn meta_f64(&self, key: &str) -> Result<f64> {
        let raw = self.meta(key)?;
        raw.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.bad_meta(key, format!("{raw:?} is not a finite number")))
    }

    pub fn meta_usize_opt(&self, key: &str) -> Result<Option<usize>> {
        match self.meta_opt(key) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse::<usize>()
                .map(Some)
                .map_err(|_| self.bad_meta(key, format!("{raw:?} is not a non-negative integer"))),
        }
    }

    pub fn bad_meta(&self, key: &str, message: impl Into<String>) -> Error {
        Error::BadMetadata { path: self.path.clone(), key: key.into(), message: message.into() }
    }

    pub fn bad_tensor(&self, tensor: &str, message: impl Into<String>) -> Error {
        Error::BadTensor { path: self.path.clone(), tensor: tensor.into(), message: message.into() }
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// A tensor with the given shape; `None` entries of `shape` accept any extent and are reported back.
    pub fn tensor(&self, name: &str, shape: &[Option<usize>]) -> Result<(Vec<usize>, Vec<f32>)> {
        let (actual, values) = self.tensors.get(name).ok_or_else(|| self.bad_tensor(name, "missing"))?;
        let matches = actual.len() == shape.len() && actual.iter().zip(shape).all(|(a, s)| s.is_none_or(|s| s == *a));
        if !matches {
            let wanted: Vec<String> = shape.iter().map(|s| s.map_or("_".to_string(), |v| v.to_string())).collect();
            return Err(self.bad_tensor(name, format!("shape {actual:?}, expected [{}]", wanted.join(", "))));
        }
        Ok((actual.clone(), values.clone()))
    }

    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
}

/// Writes f32 tensors and metadata as safetensors bytes.
pub fn serialize_f32(tensors: Vec<(String, Vec<usize>, &[f32])>, metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, data)| (name, shape, bytemuck::cast_slice::<f32, u8>(data).to_vec()))
        .collect();
    let views: Result<Vec<(String, safetensors::tensor::TensorView)>> = bytes
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::bad_input(format!("tensor `{name}`"), e.to_string()))
        })
        .collect();
    safetensors::tensor::serialize(views?, Some(metadata)).map_err(|e| Error::bad_input("safetensors", e.to_string()))
}
