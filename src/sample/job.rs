//! A whole sampling job: which images (global indices), which classes, in
//! batches, decoded to 8-bit pixels (through the VAE for latent models).

use super::labels::ClassChoice;
use super::{images, Generator, SampleSettings};
use crate::model::Dit;
use crate::transport::ObjectiveConfig;
use crate::vae::Vae;
use crate::{bail, Result};
use std::ops::Range;

pub struct SampleJob<'a> {
    pub model: &'a Dit,
    /// Decodes a latent model's samples; `None` for pixel-space models.
    pub vae: Option<&'a Vae>,
    /// What the model was trained with (its sampler family follows).
    pub objective: ObjectiveConfig,
    pub settings: SampleSettings,
    pub classes: ClassChoice,
    /// Global image indices to produce (a shard of a larger job, or all).
    pub indices: Range<u64>,
    pub batch_size: usize,
}

/// Samples as 8-bit images, `H·W·C` bytes each, in index order.
#[derive(Clone, Debug, PartialEq)]
pub struct SampledImages {
    pub first_index: u64,
    pub labels: Vec<u32>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<Vec<u8>>,
}

/// Refuses a latent model without a VAE and a VAE that does not fit the model.
pub fn check_decoder(model: &Dit, vae: Option<&Vae>) -> Result<()> {
    let c = model.config().in_channels;
    match vae {
        Some(vae) if vae.config().latent_channels != c => bail!(
            "the VAE has {} latent channels but the model works on {c}",
            vae.config().latent_channels
        ),
        None if c != 1 && c != 3 => bail!(
            "this model works in a latent space ({c} channels, {0}×{0}): pass --vae <dir> to decode its samples \
             (the official DiT models use the SD-VAE, stabilityai/sd-vae-ft-mse, in diffusers layout)",
            model.config().input_size
        ),
        _ => Ok(()),
    }
}

impl SampleJob<'_> {
    pub fn num_batches(&self) -> usize {
        ((self.indices.end - self.indices.start) as usize).div_ceil(self.batch_size.max(1))
    }

    /// Runs every batch; `progress(done, total)` counts model evaluations
    /// over the whole job (steps × batches).
    pub fn run(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<SampledImages> {
        check_decoder(self.model, self.vae)?;
        if self.batch_size == 0 {
            bail!("the batch size must be at least 1");
        }
        let generator = Generator::new(self.model, &self.objective, self.settings.clone())?;
        let batches = self.num_batches();
        let mut out = SampledImages {
            first_index: self.indices.start,
            labels: Vec::new(),
            channels: 0,
            height: 0,
            width: 0,
            pixels: Vec::new(),
        };
        let mut start = self.indices.start;
        let mut batch = 0;
        while start < self.indices.end {
            let end = (start + self.batch_size as u64).min(self.indices.end);
            let labels = self.classes.labels(self.settings.seed, start..end);
            // Each batch reports its own progress units; the job's are
            // batches × those.
            let samples = generator.generate(&labels, start, &mut |done, total| {
                progress(batch * total + done, batches * total)
            })?;
            let pixels = match self.vae {
                Some(vae) => vae.decode(&vae.from_latent(&samples)?)?,
                None => samples,
            };
            let (_, c, h, w) = pixels.dims4()?;
            (out.channels, out.height, out.width) = (c, h, w);
            out.pixels.extend(images::to_u8(&pixels)?);
            out.labels.extend(labels);
            start = end;
            batch += 1;
        }
        Ok(out)
    }
}
