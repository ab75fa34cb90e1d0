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

impl ObjectiveConfig {
    /// The model family's name: "DiT" for DDPM's diffusion, "SiT" for the
    /// transport.
    pub fn family(&self) -> &'static str {
        match self {
            ObjectiveConfig::Ddpm(_) => "DiT",
            ObjectiveConfig::Sit(_) => "SiT",
        }
    }

    /// One line for people: "DDPM diffusion (linear schedule, 1000 steps,
    /// learned-range σ)", "SiT transport (linear path, velocity prediction)".
    pub fn describe(&self) -> String {
        match self {
            ObjectiveConfig::Ddpm(d) => format!(
                "DDPM diffusion ({:?} schedule, {} steps, {:?} variance, {:?} loss)",
                d.schedule, d.num_timesteps, d.variance, d.loss
            )
            .to_lowercase()
            .replace("ddpm", "DDPM"),
            ObjectiveConfig::Sit(t) => format!(
                "SiT transport ({:?} path, {:?} prediction, {:?} loss weight)",
                t.interpolant, t.prediction, t.loss_weight
            )
            .to_lowercase()
            .replace("sit", "SiT"),
        }
    }
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

    /// The same objective with its tables on `device` (DDPM's diffusion
    /// tables; a transport has none).
    pub fn to_device(&self, device: &candle_core::Device) -> Result<Self> {
        Ok(match self {
            Objective::Ddpm(d) => Objective::Ddpm(Box::new(d.to_device(device)?)),
            Objective::Sit(t) => Objective::Sit(t.clone()),
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
            Objective::Ddpm(d) => Ok(d.training_losses(|x_t, t| model(x_t, t), x, t, noise)?),
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
