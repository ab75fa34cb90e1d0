//! Training a DiT with the diffusion loss: AdamW, EMA, exact resume, records.

pub mod checkpoint;
pub mod config;
pub mod records;
pub mod step_noise;
pub mod trainer;

pub use checkpoint::{DataSpec, TrainCheckpoint, TrainState};
pub use config::TrainConfig;
pub use trainer::{train, TrainJob, TrainOutcome};
