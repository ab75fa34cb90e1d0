//! Drawing samples from a trained DiT: the sampling loop with guidance, and
//! turning model-space tensors into images (grids, PNG files, `.npz`).

pub mod checkpoint_facts;
pub mod class_names;
pub mod defaults;
pub mod generator;
pub mod images;
pub mod job;
pub mod labels;
pub mod output;
pub mod shard;
pub mod sheet;

pub use class_names::{resolve_classes, ClassNames};
pub use defaults::DefaultSampling;
pub use generator::{Generator, SampleSettings, SamplerChoice};
pub use job::{SampleJob, SampledImages};
pub use labels::ClassChoice;
pub use shard::Shard;
