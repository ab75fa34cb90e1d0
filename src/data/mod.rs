//! Training data: where images come from and how they reach the model.
//!
//! A [`Dataset`] turns an index into one preprocessed sample (C×H×W floats in
//! [−1, 1] and a class label). Two sources implement it: [`ImageFolder`]
//! (torchvision's one-folder-per-class layout, preprocessed with ADM's
//! [`CenterCrop`]) and [`FashionMnist`] (the slice embedded in the binary, or
//! the full IDX files). The [`Loader`] batches any dataset into tensors on
//! worker threads, in an order fixed by the seed alone, and records a
//! [`LoaderState`] that a checkpoint can store to resume the exact stream.
//! [`LatentCache`] is the third: VAE latent moments extracted once by
//! `dit extract`; the training loop only sees tensors.

mod dataset;
mod error;
pub mod fashion_mnist;
pub mod idx;
pub mod image_folder;
pub mod latent_cache;
pub mod latent_extract;
pub mod loader;
pub mod order;
pub mod pixels;
pub mod preprocess;
pub mod resample;

pub use dataset::Dataset;
pub use error::DataError;
pub use fashion_mnist::{FashionMnist, FASHION_MNIST_CLASSES};
pub use idx::IdxFile;
pub use image_folder::{ImageFolder, IMAGE_EXTENSIONS};
pub use latent_cache::LatentCache;
pub use loader::{Batch, Loader, LoaderConfig, LoaderState, SkippedImage};
pub use order::EpochOrder;
pub use pixels::U8Image;
pub use preprocess::CenterCrop;
pub use resample::{resize, Filter};
