//! The model a server serves: the DiT, its VAE (latent models), the
//! diffusion and class names its checkpoint implies, read exactly as
//! `dit sample` reads them so that both sample the same images.

use crate::compute::Compute;
use crate::model::{Dit, DitConfig, LoadOptions};
use crate::sample::checkpoint_facts::{
    checkpoint_class_names, checkpoint_file, sampling_objective,
};
use crate::sample::job::check_decoder;
use crate::sample::{ClassNames, DefaultSampling, SamplerChoice};
use crate::transport::ObjectiveConfig;
use crate::vae::Vae;
use crate::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The most grid points a transport sampler may take per request.
const MAX_TRANSPORT_GRID_POINTS: usize = 1000;

pub struct ServedModel {
    pub model: Dit,
    /// Decodes a latent model's samples; `None` for pixel-space models.
    pub vae: Option<Vae>,
    /// What the model was trained with (its sampler family follows).
    pub objective: ObjectiveConfig,
    pub class_names: Option<ClassNames>,
    /// The checkpoint file, for `/v1/models` and the log.
    pub checkpoint: PathBuf,
}

impl ServedModel {
    /// Loads a checkpoint (a file, a `dit train` run folder, a diffusers
    /// folder) and, for latent models, the VAE that decodes its samples.
    /// `objective` says what a checkpoint that does not record it was
    /// trained with (an official SiT .pt).
    pub fn load(
        ckpt: &Path,
        vae: Option<&Path>,
        compute: &Compute,
        options: &LoadOptions,
        objective: Option<ObjectiveConfig>,
    ) -> Result<Self> {
        if !ckpt.exists() {
            bail!("--ckpt {}: no such file or folder", ckpt.display());
        }
        let file = checkpoint_file(ckpt);
        let model = Dit::load_with(&file, &compute.device, options)
            .with_context(|| format!("loading {}", file.display()))?
            .with_precision(compute.precision);
        let vae = match vae {
            Some(path) => Some(
                Vae::load(path, &compute.device)
                    .and_then(|vae| vae.with_precision(compute.precision))
                    .with_context(|| format!("loading the VAE {}", path.display()))?,
            ),
            None => None,
        };
        Self::new(model, vae, &file, objective)
    }

    /// A loaded model; `checkpoint` is where its objective and class names
    /// are read from.
    pub fn new(
        model: Dit,
        vae: Option<Vae>,
        checkpoint: &Path,
        objective: Option<ObjectiveConfig>,
    ) -> Result<Self> {
        check_decoder(&model, vae.as_ref())?;
        let objective = sampling_objective(checkpoint, &model, objective)?;
        let class_names = checkpoint_class_names(checkpoint, model.config().num_classes);
        Ok(Self {
            model,
            vae,
            objective,
            class_names,
            checkpoint: checkpoint.to_path_buf(),
        })
    }

    /// `dit sample`'s default: clip x̂0 for pixel-space models only.
    pub fn clip_denoised(&self) -> bool {
        self.vae.is_none()
    }

    /// Side of the images it makes, in pixels (after the VAE for latent models).
    pub fn image_size(&self) -> usize {
        let latent = self.model.config().input_size;
        match &self.vae {
            // Every decoder level but the last doubles the size.
            Some(vae) => latent << vae.config().block_out_channels.len().saturating_sub(1),
            None => latent,
        }
    }

    pub fn facts(&self) -> ModelFacts {
        let config = self.model.config().clone();
        ModelFacts {
            class_names: self.class_names.clone(),
            max_steps: match &self.objective {
                ObjectiveConfig::Ddpm(d) => d.num_timesteps,
                // Grid points of the transport's fixed-step samplers.
                ObjectiveConfig::Sit(_) => MAX_TRANSPORT_GRID_POINTS,
            },
            family: self.objective.family(),
            samplers: SamplerChoice::names_for(&self.objective),
            fast_sampling: DefaultSampling::fast(&self.objective),
            image_size: self.image_size(),
            image_channels: self
                .vae
                .as_ref()
                .map_or(config.in_channels, |v| v.config().out_channels),
            latent: self.vae.is_some(),
            name: self
                .checkpoint
                .file_name()
                .map_or_else(|| "dit".to_string(), |n| n.to_string_lossy().into_owned()),
            config,
        }
    }
}

/// What the HTTP side knows of the model (the worker owns the model itself).
#[derive(Clone, Debug)]
pub struct ModelFacts {
    pub config: DitConfig,
    pub class_names: Option<ClassNames>,
    /// The most sampling steps there can be: the training timesteps of a
    /// diffusion, a cap on a transport sampler's grid points.
    pub max_steps: usize,
    /// "DiT" (DDPM's diffusion) or "SiT" (the transport).
    pub family: &'static str,
    /// The sampler names that fit the model, the first the default.
    pub samplers: &'static [&'static str],
    /// The family's fast sampler and steps, the page's and API's default.
    pub fast_sampling: DefaultSampling,
    /// Side of the generated images in pixels.
    pub image_size: usize,
    /// Channels of the generated images (1 or 3).
    pub image_channels: usize,
    /// Works in a VAE's latent space.
    pub latent: bool,
    /// The checkpoint's file name (never its path: that is the server's business).
    pub name: String,
}

impl ModelFacts {
    /// The name of class `label`, or its id when the model has no names.
    pub fn class_name(&self, label: u32) -> String {
        self.class_names
            .as_ref()
            .and_then(|names| names.name(label))
            .map_or_else(|| label.to_string(), str::to_string)
    }
}

/// The run under `runs_dir` (as `dit train` lays them out:
/// `runs/<name>/checkpoints/step-*.safetensors`) whose newest checkpoint was
/// written last. Says how to get one when there is none.
pub fn newest_run(runs_dir: &Path) -> Result<PathBuf> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(runs_dir) {
        for run in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            let Ok(checkpoints) = std::fs::read_dir(run.join("checkpoints")) else {
                continue;
            };
            for file in checkpoints.filter_map(|e| e.ok()) {
                let name = file.file_name();
                let name = name.to_string_lossy();
                if !(name.starts_with("step-") && name.ends_with(".safetensors")) {
                    continue;
                }
                let Ok(modified) = file.metadata().and_then(|m| m.modified()) else {
                    continue;
                };
                if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
                    newest = Some((modified, run.clone()));
                }
            }
        }
    }
    match newest {
        Some((_, run)) => Ok(run),
        None => bail!(
            "no --ckpt given and no trained run under {}/ to serve.\n  \
             Train one (about 15 minutes on 2 cores, writes runs/fashion-mnist/checkpoints/):\n    \
             dit train\n  \
             or serve a checkpoint you have:\n    \
             dit serve --ckpt <file or run folder> [--vae <dir> for latent models]\n  \
             (`dit sample` without --ckpt says where the official DiT weights are.)",
            runs_dir.display()
        ),
    }
}
