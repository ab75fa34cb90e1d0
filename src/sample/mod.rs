//! Drawing samples from a trained DiT: the sampling loop with guidance, and
//! turning model-space tensors into images (grids, PNG files, `.npz`).

pub mod generator;
pub mod images;

pub use generator::{Generator, SampleSettings};
