//! The diffusion hyper-parameters a checkpoint carries.

use serde::{Deserialize, Serialize};

/// How β_t grows over the forward process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseSchedule {
    /// β evenly spaced from 1e-4·1000/T to 0.02·1000/T (Ho et al. 2020, scaled so
    /// any T describes the same continuous process).
    Linear,
    /// Squared-cosine ᾱ with offset s = 0.008 and β capped at 0.999
    /// (Nichol & Dhariwal 2021).
    Cosine,
}

/// What the reverse-process variance Σ_θ(x_t, t) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceType {
    /// The model outputs v ∈ [−1, 1] per element and
    /// log σ² = frac·log β_t + (1 − frac)·log β̃_t with frac = (v + 1)/2.
    LearnedRange,
    /// σ² = β_t (with β̃_1 at t = 0, so the last step is not needlessly noisy).
    FixedLarge,
    /// σ² = β̃_t, the posterior variance.
    FixedSmall,
}

/// The training objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// ε-MSE; when σ is learned the variational bound term L_vb is added
    /// (what DiT trains with).
    Mse,
    /// As [`LossType::Mse`] but L_vb is scaled by T/1000, which keeps its weight
    /// independent of the number of diffusion steps.
    RescaledMse,
}

/// Everything that defines the Gaussian diffusion a model was trained with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffusionConfig {
    pub schedule: NoiseSchedule,
    /// Number of training timesteps T.
    pub num_timesteps: usize,
    pub variance: VarianceType,
    pub loss: LossType,
}

impl Default for DiffusionConfig {
    /// DiT's: linear schedule, T = 1000, learned-range σ, MSE + L_vb.
    fn default() -> Self {
        Self {
            schedule: NoiseSchedule::Linear,
            num_timesteps: 1000,
            variance: VarianceType::LearnedRange,
            loss: LossType::Mse,
        }
    }
}

impl DiffusionConfig {
    /// Whether the model outputs 2C channels (ε then v) instead of C.
    pub fn learn_sigma(&self) -> bool {
        self.variance.is_learned()
    }
}

impl VarianceType {
    /// Whether the model predicts the variance (and so has 2C output channels).
    pub fn is_learned(self) -> bool {
        matches!(self, VarianceType::LearnedRange)
    }
}
