//! Stochastic interpolants (SiT, Ma et al. 2024, arXiv 2401.08740): the
//! same transformer trained to transport noise into data along a path
//! x_t = α_t·x1 + σ_t·x0 (x0 noise at t = 0, x1 data at t = 1), and sampled
//! with ODE or SDE integrators.
//!
//! * [`Interpolant`]: the Linear, GVP and VP paths and their coefficients.
//! * [`Prediction`]: velocity, score or noise, and the conversions between
//!   them ([`Interpolant::convert`], [`Interpolant::data_estimate`]).
//! * [`TransportConfig`]: what a checkpoint records; the ε cut-offs and
//!   intervals ([`TransportConfig::interval`]).
//! * [`Transport`]: the loss ([`Transport::training_loss`], with
//!   [`Transport::draw`]) and the samplers ([`Transport::sample`]).
//! * [`Objective`]: DDPM or SiT, for the trainer.
//!
//! Behaviour follows the official code (willisma/SiT) where it is
//! well-defined; the few places that differ are documented where they are.
//!
//! The network sees t ∈ [0, 1] as it is: SiT's timestep embedder takes the
//! raw t (DiT's takes the integer step 0…999), so a DiT checkpoint's
//! timestep embedding does not carry over.

mod combination;
pub mod config;
pub mod interpolant;
pub mod objective;
pub mod prediction;
pub mod sampler;
pub mod training;

pub use combination::Combination;
pub use config::{LossWeight, Phase, TransportConfig};
pub use interpolant::{Interpolant, PathCoefficients};
pub use objective::{Objective, ObjectiveConfig};
pub use prediction::Prediction;
pub use sampler::{
    DiffusionForm, Hooks, LastStep, ModelFn, OdeConfig, OdeMethod, PreviewFn, ProgressFn, Sampled,
    SamplerConfig, SdeConfig, SdeMethod,
};
pub use training::TrainingDraws;

use crate::Result;

/// A transport: a path, what the model predicts, and how it is trained and
/// sampled.
#[derive(Clone, Debug)]
pub struct Transport {
    config: TransportConfig,
}

impl Transport {
    pub fn new(config: TransportConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    pub fn config(&self) -> &TransportConfig {
        &self.config
    }
}
