//! Gaussian diffusion (improved-DDPM / ADM formulation as used by DiT).
//!
//! * [`DiffusionConfig`]: what a checkpoint records (schedule, T, variance
//!   type, loss).
//! * [`GaussianDiffusion`]: float64 tables, the forward process, the model's
//!   reverse Gaussian, [`GaussianDiffusion::training_losses`],
//!   [`GaussianDiffusion::respace`] and [`GaussianDiffusion::sample`].
//! * [`NoiseSource`]: seeded per-sample noise, independent of batching.
//!
//! The model output layout is ε in the first C channels and, when σ is
//! learned, the variance value v ∈ [−1, 1] in the next C.

mod coefficients;
pub mod config;
pub mod error;
pub mod gaussian;
pub mod guidance;
pub mod likelihood;
pub mod loss;
pub mod noise;
pub mod respace;
pub mod sampler;
pub mod schedule;
pub mod tables;

pub use config::{DiffusionConfig, LossType, NoiseSchedule, VarianceType};
pub use error::DiffusionError;
pub use gaussian::{GaussianDiffusion, GaussianMoments, ModelPrediction};
pub use guidance::{ClassifierFreeGuidance, GuidanceChannels};
pub use loss::LossTerms;
pub use noise::NoiseSource;
pub use respace::spaced_timesteps;
pub use sampler::{DenoiseFn, DpmSolverPP2M, SampleOptions, SampleStep, Sampler, StepObserver};
pub use tables::DiffusionTables;
