//! The randomness of one training step, derived from (seed, step) alone.
//!
//! Nothing random carries state from one step to the next, so a resumed run
//! needs only the step number to draw exactly what an uninterrupted run
//! would have drawn.

use crate::diffusion::NoiseSource;
use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// Distinct streams so that changing one use never shifts another.
const TIMESTEP_SALT: u64 = 0x7469_6d65_7374_6570;
const NOISE_SALT: u64 = 0x6e6f_6973_6500_0000;
const LATENT_SALT: u64 = 0x6c61_7465_6e74_0000;

pub struct StepDraws {
    /// `(N,)` u32 timesteps, uniform in [0, T).
    pub t: Tensor,
    /// Labels after class dropout.
    pub y: Tensor,
    /// ε, shaped like the batch.
    pub noise: Tensor,
}

/// Classifier-free guidance training: labels replaced by the null class
/// with probability `prob` (nothing is dropped without a null class).
#[derive(Clone, Copy, Debug)]
pub struct LabelDropout {
    pub null_class: Option<u32>,
    pub prob: f64,
}

/// Draws timesteps, label drops and noise for `step`.
pub fn draw(
    seed: u64,
    step: u64,
    labels: &[u32],
    shape: &[usize],
    num_timesteps: usize,
    dropout: LabelDropout,
    device: &Device,
) -> Result<StepDraws> {
    let n = labels.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ TIMESTEP_SALT);
    rng.set_stream(step);
    let t: Vec<u32> = (0..n)
        .map(|_| rng.gen_range(0..num_timesteps as u32))
        .collect();
    let y: Vec<u32> = labels
        .iter()
        .map(|&label| match dropout.null_class {
            Some(null) if rng.gen::<f64>() < dropout.prob => null,
            _ => label,
        })
        .collect();
    // Per-sample noise streams keyed by the global sample number.
    let mut noise = NoiseSource::new(seed ^ NOISE_SALT, step * n as u64, n);
    Ok(StepDraws {
        t: Tensor::new(t, device)?,
        y: Tensor::new(y, device)?,
        noise: noise.draw(shape, candle_core::DType::F32, device)?,
    })
}

/// Draws `scale·(mean + exp(logvar/2)·ε)` from a batch of stored VAE
/// posterior moments `(N, 2C, h, w)`, with ε from the step's own stream.
pub fn latent_sample(seed: u64, step: u64, moments: &Tensor, scale: f64) -> Result<Tensor> {
    let (n, c2, h, w) = moments.dims4()?;
    if c2 % 2 != 0 {
        anyhow::bail!("latent moments must have an even channel count (mean, logvar), got {c2}");
    }
    let mean = moments.narrow(1, 0, c2 / 2)?;
    let std = (moments.narrow(1, c2 / 2, c2 / 2)? * 0.5)?.exp()?;
    let mut noise = NoiseSource::new(seed ^ LATENT_SALT, step * n as u64, n);
    let eps = noise.draw(&[n, c2 / 2, h, w], moments.dtype(), moments.device())?;
    Ok(((mean + (std * eps)?)? * scale)?)
}
