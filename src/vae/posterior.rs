//! The encoder's diagonal Gaussian over latents, q(z | x).

use crate::{bail, Result};
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// Log-variance bounds diffusers applies before use (keeps exp() finite).
pub const LOGVAR_RANGE: (f64, f64) = (-30.0, 20.0);

/// A diagonal Gaussian posterior: per-element mean and log-variance, both
/// (N, latent_channels, H/8, W/8) for the SD VAE. Values are *unscaled* VAE
/// latents; apply [`super::Vae::to_latent`] before handing them to DiT.
#[derive(Clone, Debug)]
pub struct Posterior {
    pub mean: Tensor,
    /// Already clamped to [`LOGVAR_RANGE`].
    pub logvar: Tensor,
}

impl Posterior {
    /// Splits the encoder's 2·C moment channels into mean and log-variance.
    pub fn from_moments(moments: &Tensor) -> Result<Self> {
        let channels = moments.dim(1)?;
        if channels % 2 != 0 {
            bail!("posterior moments need an even channel count, got {channels}");
        }
        let half = channels / 2;
        let mean = moments.narrow(1, 0, half)?.contiguous()?;
        let logvar = moments
            .narrow(1, half, half)?
            .clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1)?
            .contiguous()?;
        Ok(Self { mean, logvar })
    }

    /// The posterior mode (what deterministic pipelines encode to).
    pub fn mean(&self) -> &Tensor {
        &self.mean
    }

    /// Per-element standard deviation, exp(logvar / 2).
    pub fn std(&self) -> Result<Tensor> {
        Ok((&self.logvar * 0.5)?.exp()?)
    }

    /// mean + std · ε with ε ~ N(0, 1) drawn from `rng` in row-major order
    /// (so image i of a batch uses the stream after images 0..i).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<Tensor> {
        let n = self.mean.elem_count();
        let noise: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let noise = Tensor::from_vec(noise, self.mean.shape(), self.mean.device())?
            .to_dtype(self.mean.dtype())?;
        Ok((&self.mean + (self.std()? * noise)?)?)
    }

    /// [`Self::sample`] with a fresh `StdRng` seeded by `seed`: the same seed
    /// gives the same latents on every platform.
    pub fn sample_seeded(&self, seed: u64) -> Result<Tensor> {
        self.sample(&mut rand::rngs::StdRng::seed_from_u64(seed))
    }
}
