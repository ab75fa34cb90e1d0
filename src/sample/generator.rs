//! One sampling job: a model, a respaced diffusion, a sampler and guidance.
//!
//! Every image's noise comes from a stream keyed by (seed, global image
//! index), so a batch of 8 equals two batches of 4, and shards of a large job
//! concatenate to the unsharded result image for image.

use crate::diffusion::{
    guidance::double_batch, ClassifierFreeGuidance, DiffusionConfig, GaussianDiffusion,
    GuidanceChannels, NoiseSource, SampleOptions, Sampler, StepObserver,
};
use crate::model::Dit;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleSettings {
    /// Respacing of the training diffusion: "250", "ddim50", "10,10,10".
    pub steps: String,
    pub sampler: Sampler,
    /// 1.0 = no guidance (no null-class half is computed).
    pub cfg_scale: f64,
    pub guidance_channels: GuidanceChannels,
    pub seed: u64,
    pub clip_denoised: bool,
}

impl Default for SampleSettings {
    /// The official `sample.py`: 250 DDPM steps, guidance 4.0 on 3 channels.
    fn default() -> Self {
        Self {
            steps: "250".into(),
            sampler: Sampler::Ddpm,
            cfg_scale: 4.0,
            guidance_channels: GuidanceChannels::Official,
            seed: 0,
            clip_denoised: false,
        }
    }
}

pub struct Generator<'a> {
    model: &'a Dit,
    diffusion: GaussianDiffusion,
    settings: SampleSettings,
}

impl<'a> Generator<'a> {
    pub fn new(
        model: &'a Dit,
        diffusion: &DiffusionConfig,
        settings: SampleSettings,
    ) -> Result<Self> {
        if diffusion.learn_sigma() != model.config().learn_sigma {
            bail!(
                "the diffusion's variance type ({:?}) does not match the model (learn_sigma = {})",
                diffusion.variance,
                model.config().learn_sigma
            );
        }
        if settings.cfg_scale != 1.0 && model.config().null_class().is_none() {
            bail!("guidance needs a model trained with class dropout (it has no null class); use --cfg-scale 1");
        }
        let diffusion = GaussianDiffusion::new(diffusion)?
            .respace(&settings.steps)
            .with_context(|| format!("--steps {}", settings.steps))?;
        Ok(Self {
            model,
            diffusion,
            settings,
        })
    }

    /// Number of model evaluations per batch.
    pub fn num_steps(&self) -> usize {
        self.diffusion.num_timesteps()
    }

    /// Samples in model space `(N, C, H, W)` for `labels`, the images having
    /// global indices `first_index ..`.
    pub fn generate(
        &self,
        labels: &[u32],
        first_index: u64,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor> {
        let noise = NoiseSource::new(self.settings.seed, first_index, labels.len());
        self.generate_observed(labels, noise, &mut |step| {
            progress(step.done, step.total);
            Ok(())
        })
    }

    /// Samples for `labels` drawing from `noise` (one stream per label, e.g.
    /// several requests' [`NoiseSource`]s joined), showing `observer` every
    /// step; an error from the observer abandons the batch.
    pub fn generate_observed(
        &self,
        labels: &[u32],
        mut noise: NoiseSource,
        observer: &mut StepObserver<'_>,
    ) -> Result<Tensor> {
        let cfg = self.model.config();
        let device: Device = self.model.device().clone();
        let n = labels.len();
        if noise.batch_size() != n {
            bail!(
                "{} noise streams for {n} labels: one stream per image",
                noise.batch_size()
            );
        }
        for &label in labels {
            if label as usize >= cfg.num_classes {
                bail!(
                    "class {label} out of range: the model has {} classes",
                    cfg.num_classes
                );
            }
        }
        let y = Tensor::new(labels, &device)?;
        let guidance =
            ClassifierFreeGuidance::new(self.settings.cfg_scale, self.settings.guidance_channels);
        let null = cfg.null_class();
        let mut denoise = |x: &Tensor, t: &Tensor| -> candle_core::Result<Tensor> {
            let out = match null.filter(|_| guidance.scale != 1.0) {
                Some(null) => {
                    let (x2, t2, y2) = double_batch(x, t, &y, null)?;
                    let out = self
                        .model
                        .forward_with_cfg(&x2, &t2, &y2, &guidance)
                        .map_err(candle_core::Error::wrap)?;
                    out.narrow(0, 0, n)?
                }
                None => self
                    .model
                    .forward(x, t, &y)
                    .map_err(candle_core::Error::wrap)?,
            };
            // Whatever the weights are (even Vars), a sampling loop keeps no graph.
            Ok(out.detach())
        };
        let shape = [n, cfg.in_channels, cfg.input_size, cfg.input_size];
        let options = SampleOptions {
            sampler: self.settings.sampler,
            clip_denoised: self.settings.clip_denoised,
        };
        let x_t = noise.draw(&shape, self.model.dtype(), &device)?;
        Ok(self
            .diffusion
            .sample_observed(&mut denoise, x_t, &options, &mut noise, observer)?)
    }
}
