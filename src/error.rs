//! One error type at the library boundary. Every message names the file, tensor, key, shape or value at fault,
//! because the person reading it is a researcher with a model file, not a debugger.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- bad input: the user can fix these (exit status 2) ----
    #[error("{path}: file not found")]
    FileNotFound { path: PathBuf },

    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },

    #[error("{path}: metadata key `{key}`: {message}")]
    BadMetadata { path: PathBuf, key: String, message: String },

    #[error("{path}: tensor `{tensor}`: {message}")]
    BadTensor { path: PathBuf, tensor: String, message: String },

    #[error("{what}: {message}")]
    BadInput { what: String, message: String },

    #[error("{what}: value {value} at row {row} is not finite")]
    NotFinite { what: String, row: usize, value: f64 },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    // ---- environment / device: not the user's data (exit status 1) ----
    #[error("no GPU adapter found{hint}")]
    NoAdapter { hint: String },

    #[error("GPU device: {0}")]
    Device(String),

    #[error("kernel `{kernel}`: {message}")]
    Kernel { kernel: String, message: String },

    #[error("job does not fit: {0}")]
    DoesNotFit(String),

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    /// True when the fault lies in what the user gave (files, flags, values): the CLI exits with status 2.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::FileNotFound { .. }
                | Error::BadFile { .. }
                | Error::BadMetadata { .. }
                | Error::BadTensor { .. }
                | Error::BadInput { .. }
                | Error::NotFinite { .. }
                | Error::InvalidArgument(_)
                | Error::DoesNotFit(_)
        )
    }

    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), message: message.into() }
    }

    pub fn bad_input(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadInput { what: what.into(), message: message.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::FileNotFound { path }
        } else {
            Error::Io { path, source }
        }
    }
}
