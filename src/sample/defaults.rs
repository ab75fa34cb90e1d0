//! The sampler and step count a run uses when the user names neither.

use crate::transport::ObjectiveConfig;

/// A sampler by name ([`super::SamplerChoice::from_name`]) and its steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultSampling {
    pub sampler: &'static str,
    /// DDPM samplers: the respaced step count; transport samplers: grid
    /// points (unused by the adaptive ode-dopri5).
    pub steps: usize,
}

/// Steps of the fast samplers for pixel-space models. On the embedded
/// Fashion-MNIST model the judge (docs/judge.md) scores 1,000 samples of
/// Heun's ODE at 25 steps as it scores 250 DDPM steps, in a tenth of the
/// time; see the README's figures.
pub const PIXEL_SPACE_STEPS: usize = 25;

impl DefaultSampling {
    /// Latent-space models (the released DiT and SiT checkpoints) sample as
    /// their papers' `sample.py` do: 250 DDPM steps, or SiT's adaptive
    /// Dormand–Prince. Pixel-space models (the embedded demo, small image
    /// folders) are sampled for a look: DPM-Solver++(2M) or Heun's ODE at
    /// [`PIXEL_SPACE_STEPS`], so that a 100-image sheet takes seconds.
    pub fn for_model(objective: &ObjectiveConfig, latent_space: bool) -> Self {
        match (objective, latent_space) {
            (ObjectiveConfig::Ddpm(_), true) => Self {
                sampler: "ddpm",
                steps: 250,
            },
            (ObjectiveConfig::Sit(_), true) => Self {
                sampler: "ode-dopri5",
                steps: crate::transport::OdeConfig::default().num_steps,
            },
            (_, false) => Self::fast(objective),
        }
    }

    /// The family's fast sampler, DPM-Solver++(2M) or Heun's ODE, at
    /// [`PIXEL_SPACE_STEPS`]: pixel-space models' default, and every model's
    /// where a person waits for the image (`dit serve`).
    pub fn fast(objective: &ObjectiveConfig) -> Self {
        let sampler = match objective {
            ObjectiveConfig::Ddpm(_) => "dpm++",
            ObjectiveConfig::Sit(_) => "ode-heun",
        };
        Self {
            sampler,
            steps: PIXEL_SPACE_STEPS,
        }
    }
}
