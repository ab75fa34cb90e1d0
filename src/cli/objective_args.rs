//! `--objective` and SiT's transport options, shared by `train` (what to
//! train) and `sample`/`info` (what an official SiT checkpoint was trained
//! with, since its tensors look like a DiT's).

use anyhow::Result;
use clap::Args;
use dit::diffusion::DiffusionConfig;
use dit::transport::{ObjectiveConfig, TransportConfig};

#[derive(Args, Debug, Clone)]
pub struct ObjectiveArgs {
    /// ddpm: DiT's Gaussian diffusion (ε-prediction with learned σ); sit:
    /// SiT's stochastic interpolants (flow matching, velocity target by
    /// default) on the same transformer. [default: dit train: sit for the
    /// embedded data, ddpm for --data/--latents; dit sample: what the
    /// checkpoint records, else ddpm]
    #[arg(long, value_parser = ["ddpm", "sit"])]
    pub objective: Option<String>,
    /// SiT path: linear (α = t, σ = 1 − t), gvp (α = sin(πt/2),
    /// σ = cos(πt/2)) or vp (variance preserving, β 0.1…20).
    #[arg(long, default_value = "linear")]
    pub path: String,
    /// SiT target: velocity, score or noise.
    #[arg(long, default_value = "velocity")]
    pub prediction: String,
    /// SiT loss weighting for score and noise targets: none, velocity or
    /// likelihood.
    #[arg(long, default_value = "none")]
    pub loss_weight: String,
    /// SiT: keep training times this far from the path's singular ends
    /// [default: SiT's for the path and target].
    #[arg(long)]
    pub train_eps: Option<f64>,
    /// SiT: as --train-eps, for sampling.
    #[arg(long)]
    pub sample_eps: Option<f64>,
}

impl ObjectiveArgs {
    /// Whether `--objective` was given.
    pub fn given(&self) -> bool {
        self.objective.is_some()
    }

    /// The objective these options describe (DDPM when none is named).
    pub fn config(&self) -> Result<ObjectiveConfig> {
        self.config_or("ddpm")
    }

    /// The objective these options describe, `default` ("ddpm" or "sit")
    /// when none is named.
    pub fn config_or(&self, default: &str) -> Result<ObjectiveConfig> {
        Ok(match self.objective.as_deref().unwrap_or(default) {
            "sit" => {
                let config = TransportConfig {
                    interpolant: self.path.parse()?,
                    prediction: self.prediction.parse()?,
                    loss_weight: self.loss_weight.parse()?,
                    train_eps: self.train_eps,
                    sample_eps: self.sample_eps,
                };
                config.validate()?;
                ObjectiveConfig::Sit(config)
            }
            _ => ObjectiveConfig::Ddpm(DiffusionConfig::default()),
        })
    }
}
