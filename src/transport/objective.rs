//! What a DiT-shaped network is trained to do: DiT's Gaussian diffusion or
//! SiT's transport. One value for the trainer and the checkpoint.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::config::TransportConfig;
use super::training::TrainingDraws;
use super::Transport;
use crate::diffusion::{DiffusionConfig, GaussianDiffusion, LossTerms};
use crate::Result;

/// The objective a checkpoint records (`{"kind": "ddpm", …}` or
/// `{"kind": "sit", …}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ObjectiveConfig {
    Ddpm(DiffusionConfig),
    Sit(TransportConfig),
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        ObjectiveConfig::Ddpm(DiffusionConfig::default())
    }
}

/// A built objective.
#[derive(Clone, Debug)]
pub enum Objective {
    Ddpm(Box<GaussianDiffusion>),
    Sit(Transport),
}

impl Objective {
    pub fn new(config: &ObjectiveConfig) -> Result<Self> {
        Ok(match config {
            ObjectiveConfig::Ddpm(c) => Objective::Ddpm(Box::new(GaussianDiffusion::new(c)?)),
            ObjectiveConfig::Sit(c) => Objective::Sit(Transport::new(c.clone())?),
        })
    }

    pub fn config(&self) -> ObjectiveConfig {
        match self {
            Objective::Ddpm(d) => ObjectiveConfig::Ddpm(d.config().clone()),
            Objective::Sit(t) => ObjectiveConfig::Sit(t.config().clone()),
        }
    }

    /// Whether the network must output 2C channels. DDPM with a learned σ
    /// needs them; SiT ignores any extra channels, so either width works.
    pub fn requires_learn_sigma(&self) -> Option<bool> {
        match self {
            Objective::Ddpm(d) => Some(d.config().learn_sigma()),
            Objective::Sit(_) => None,
        }
    }

    /// Per-sample loss terms for data `x` with the step's timesteps `t` and
    /// `noise`: DDPM takes u32 timestep indices, SiT f32 times in [0, 1]
    /// (from [`Transport::draw`]). SiT's terms have `mse = loss`, no `vb`.
    pub fn loss<F>(&self, model: F, x: &Tensor, t: &Tensor, noise: &Tensor) -> Result<LossTerms>
    where
        F: FnOnce(&Tensor, &Tensor) -> Result<Tensor>,
    {
        match self {
            Objective::Ddpm(d) => Ok(d.training_losses(
                |x_t, t| model(x_t, t).map_err(candle_core::Error::wrap),
                x,
                t,
                noise,
            )?),
            Objective::Sit(transport) => {
                let draws = TrainingDraws {
                    t: t.clone(),
                    noise: noise.clone(),
                };
                let loss = transport.training_loss(model, x, &draws)?;
                Ok(LossTerms {
                    mse: loss.clone(),
                    loss,
                    vb: None,
                })
            }
        }
    }
}
