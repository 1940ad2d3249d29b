//! Files in and out: `.npy` arrays, and writing any output whole or not at all.

pub mod npy;

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// A hidden temporary name beside `path`, for writing before a rename.
pub fn temporary_path(path: &Path) -> Result<std::path::PathBuf> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::bad_input(path.display().to_string(), "is not a file path"))?;
    Ok(dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id())))
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a reader never sees a
/// partial file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary_path(path)?;
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}
