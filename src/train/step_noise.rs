//! The randomness of one training step, derived from (seed, step) alone.
//!
//! Nothing random carries state from one step to the next, so a resumed run
//! needs only the step number to draw exactly what an uninterrupted run
//! would have drawn.

use crate::diffusion::NoiseSource;
use crate::model::embed::LabelEmbedder;
use crate::{bail, Result};
use candle_core::{DType, Device, Tensor};
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

/// Draws timesteps, label drops and noise (in `dtype` on `device`) for `step`.
#[allow(clippy::too_many_arguments)]
pub fn draw(
    seed: u64,
    step: u64,
    labels: &[u32],
    shape: &[usize],
    num_timesteps: usize,
    dropout: LabelDropout,
    dtype: DType,
    device: &Device,
) -> Result<StepDraws> {
    let n = labels.len();
    let (t, y) = timesteps_and_labels(seed, step, labels, num_timesteps, dropout);
    // Per-sample noise streams keyed by the global sample number.
    let mut noise = NoiseSource::new(seed ^ NOISE_SALT, step * n as u64, n);
    Ok(StepDraws {
        t: Tensor::new(t, device)?,
        y: Tensor::new(y, device)?,
        noise: noise.draw(shape, dtype, device)?,
    })
}

/// The labels of `step` after class dropout (as `device`'s tensor), for
/// objectives that draw their own times and noise (SiT's transport). The
/// drops are the ones [`draw`] makes.
pub fn labels_after_dropout(
    seed: u64,
    step: u64,
    labels: &[u32],
    dropout: LabelDropout,
    device: &Device,
) -> Result<Tensor> {
    // DDPM's timesteps come first on the stream; drawn (for 1000 steps) and
    // dropped so that the label drops are the same whatever the objective.
    let (_, y) = timesteps_and_labels(seed, step, labels, 1000, dropout);
    Ok(Tensor::new(y, device)?)
}

/// DDPM timesteps, then label drops, from the step's one stream.
fn timesteps_and_labels(
    seed: u64,
    step: u64,
    labels: &[u32],
    num_timesteps: usize,
    dropout: LabelDropout,
) -> (Vec<u32>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ TIMESTEP_SALT);
    rng.set_stream(step);
    let t: Vec<u32> = labels
        .iter()
        .map(|_| rng.gen_range(0..num_timesteps as u32))
        .collect();
    // Drawn only when there is a null class to drop to.
    let drop: Vec<bool> = labels
        .iter()
        .map(|_| dropout.null_class.is_some() && rng.gen::<f64>() < dropout.prob)
        .collect();
    (
        t,
        LabelEmbedder::token_drop(labels, &drop, dropout.null_class),
    )
}

/// Draws `scale·(mean + exp(logvar/2)·ε)` from a batch of stored VAE
/// posterior moments `(N, 2C, h, w)`, with ε from the step's own stream.
pub fn latent_sample(seed: u64, step: u64, moments: &Tensor, scale: f64) -> Result<Tensor> {
    let (n, c2, h, w) = moments.dims4()?;
    if c2 % 2 != 0 {
        bail!("latent moments must have an even channel count (mean, logvar), got {c2}");
    }
    let mean = moments.narrow(1, 0, c2 / 2)?;
    let std = (moments.narrow(1, c2 / 2, c2 / 2)? * 0.5)?.exp()?;
    let mut noise = NoiseSource::new(seed ^ LATENT_SALT, step * n as u64, n);
    let eps = noise.draw(&[n, c2 / 2, h, w], moments.dtype(), moments.device())?;
    Ok(((mean + (std * eps)?)? * scale)?)
}
