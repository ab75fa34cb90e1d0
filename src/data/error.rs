use std::path::PathBuf;

/// Why data could not be opened or a sample could not be produced.
///
/// [`DataError::BadImage`] is kept apart from the rest because it is the one
/// failure the loader may skip (`skip_bad_images`); every other error stops
/// training.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An image file that exists but cannot be read or decoded.
    #[error("cannot load image {}: {reason}", path.display())]
    BadImage { path: PathBuf, reason: String },
    /// A dataset folder whose layout cannot be used.
    #[error("{}: {problem}", path.display())]
    Layout { path: PathBuf, problem: String },
    /// An IDX file (MNIST format) that is malformed.
    #[error("IDX data {source_name}: {problem}")]
    Idx {
        source_name: String,
        problem: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Under `skip_bad_images`, a whole epoch left fewer readable images
    /// than one batch.
    #[error("epoch {epoch} gave no full batch of {batch_size}: {skipped} of {len} images are unreadable")]
    TooFewReadable {
        epoch: u64,
        batch_size: usize,
        skipped: usize,
        len: usize,
    },
    /// A sample index past the end of the dataset.
    #[error("sample index {index} out of range for a dataset of {len} samples")]
    IndexOutOfRange { index: usize, len: usize },
}

impl DataError {
    pub(crate) fn layout(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        DataError::Layout {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
