//! Training a DiT with the diffusion loss: AdamW, EMA, exact resume, records.

pub mod adamw;
pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod records;
pub mod step_noise;
pub mod trainer;

pub use adamw::{AdamW, AdamWConfig};
pub use checkpoint::{DataSpec, TrainCheckpoint, TrainState};
pub use config::{LrSchedule, TrainConfig};
pub use ema::Ema;
pub use records::{LoggedWindow, Quiet, StepFigures, TrainObserver};
pub use trainer::{train, train_distributed, StepOutcome, TrainJob, TrainOutcome, TrainRun};
