//! The library's one error type.
//!
//! Every fallible function of `dit` returns [`Result`]. Errors from the tensor
//! engine, the file system and the data and diffusion modules convert into
//! [`Error`] with `?`; [`Context::context`] wraps any of them with what was
//! being done ("loading model.pt", "step 120"), so a message names the file,
//! key or shape it is about. Binaries may hand it to `anyhow`.

use crate::data::DataError;
use crate::diffusion::DiffusionError;
use std::fmt::Display;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shapes, dtypes, devices, a kernel).
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// Training data could not be opened or a sample not produced.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A diffusion could not be built (timesteps, respacing).
    #[error(transparent)]
    Diffusion(#[from] DiffusionError),
    /// A file could not be read or written.
    #[error("{}: {cause}", path.display())]
    File {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// An I/O error without a path (a stream, a pipe).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A JSON document (configuration, metadata, manifest) is malformed.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A safetensors file is malformed.
    #[error("invalid safetensors file: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// An image could not be encoded or decoded.
    #[error(transparent)]
    Image(#[from] image::ImageError),
    /// A zip archive (`.pt`, `.npz`) is malformed.
    #[error("invalid zip archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// A bad argument, configuration, file content or state, described in words.
    #[error("{0}")]
    Msg(String),
    /// What was being done when `inner` happened.
    #[error("{context}: {inner}")]
    Context { context: String, inner: Box<Error> },
}

impl Error {
    /// An error described in words.
    pub fn msg(message: impl Display) -> Self {
        Error::Msg(message.to_string())
    }

    /// An I/O error about `path`.
    pub fn file(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::File {
            path: path.into(),
            cause,
        }
    }

    /// The innermost error under any [`Error::Context`] layers.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { inner, .. } => inner.root(),
            other => other,
        }
    }
}

/// Adds what was being done to an error: `.context("reading x")`,
/// `.with_context(|| format!(…))`. On an `Option`, `None` becomes the message.
pub trait Context<T> {
    fn context(self, context: impl Display) -> Result<T>;
    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context.to_string(),
            inner: Box::new(e.into()),
        })
    }

    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: f().to_string(),
            inner: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.ok_or_else(|| Error::msg(context))
    }

    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.ok_or_else(|| Error::msg(f()))
    }
}

/// Returns early with an [`Error::Msg`] formatted like `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::Msg(format!($($arg)*)))
    };
}

/// Returns early with an [`Error::Msg`] unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::bail!($($arg)*);
        }
    };
}

/// An [`Error::Msg`] formatted like `format!`.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::Error::Msg(format!($($arg)*))
    };
}
