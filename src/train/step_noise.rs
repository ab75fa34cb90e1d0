//! The randomness of one training step, derived from (seed, step) alone.
//!
//! Nothing random carries state from one step to the next, so a resumed run
//! needs only the step number to draw exactly what an uninterrupted run
//! would have drawn.

use crate::diffusion::NoiseSource;
use crate::dist::BatchShare;
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

/// Draws timesteps, label drops and noise (in `dtype` on `device`) for the
/// `share` of `step`'s batch whose labels are `labels`.
#[allow(clippy::too_many_arguments)]
pub fn draw(
    seed: u64,
    step: u64,
    labels: &[u32],
    share: BatchShare,
    shape: &[usize],
    num_timesteps: usize,
    dropout: LabelDropout,
    dtype: DType,
    device: &Device,
) -> Result<StepDraws> {
    let (t, drop) = timesteps_and_drops(seed, step, share.global, num_timesteps, dropout);
    let range = share.range();
    let y = LabelEmbedder::token_drop(labels, &drop[range.clone()], dropout.null_class);
    Ok(StepDraws {
        t: Tensor::new(&t[range], device)?,
        y: Tensor::new(y, device)?,
        noise: sample_noise(seed ^ NOISE_SALT, step, share).draw(shape, dtype, device)?,
    })
}

/// The labels of `step` after class dropout (as `device`'s tensor), for
/// objectives that draw their own times and noise (SiT's transport). The
/// drops are the ones [`draw`] makes.
pub fn labels_after_dropout(
    seed: u64,
    step: u64,
    labels: &[u32],
    share: BatchShare,
    dropout: LabelDropout,
    device: &Device,
) -> Result<Tensor> {
    // DDPM's timesteps come first on the stream; drawn (for 1000 steps) and
    // dropped so that the label drops are the same whatever the objective.
    let (_, drop) = timesteps_and_drops(seed, step, share.global, 1000, dropout);
    let y = LabelEmbedder::token_drop(labels, &drop[share.range()], dropout.null_class);
    Ok(Tensor::new(y, device)?)
}

/// Per-sample noise streams keyed by the sample's number in the run,
/// `step·batch + i`, whichever process draws it.
fn sample_noise(seed: u64, step: u64, share: BatchShare) -> NoiseSource {
    let first = step * share.global as u64 + share.first as u64;
    NoiseSource::new(seed, first, share.count)
}

/// For the whole batch of `batch` samples: DDPM timesteps, then label
/// drops, from the step's one stream.
fn timesteps_and_drops(
    seed: u64,
    step: u64,
    batch: usize,
    num_timesteps: usize,
    dropout: LabelDropout,
) -> (Vec<u32>, Vec<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ TIMESTEP_SALT);
    rng.set_stream(step);
    let t: Vec<u32> = (0..batch)
        .map(|_| rng.gen_range(0..num_timesteps as u32))
        .collect();
    // Drawn only when there is a null class to drop to.
    let drop: Vec<bool> = (0..batch)
        .map(|_| dropout.null_class.is_some() && rng.gen::<f64>() < dropout.prob)
        .collect();
    (t, drop)
}

/// Draws `scale·(mean + exp(logvar/2)·ε)` from the stored VAE posterior
/// moments `(N, 2C, h, w)` of `share`, with ε from the samples' own streams.
pub fn latent_sample(
    seed: u64,
    step: u64,
    moments: &Tensor,
    share: BatchShare,
    scale: f64,
) -> Result<Tensor> {
    let (n, c2, h, w) = moments.dims4()?;
    if c2 % 2 != 0 {
        bail!("latent moments must have an even channel count (mean, logvar), got {c2}");
    }
    let mean = moments.narrow(1, 0, c2 / 2)?;
    let std = (moments.narrow(1, c2 / 2, c2 / 2)? * 0.5)?.exp()?;
    let eps = sample_noise(seed ^ LATENT_SALT, step, share).draw(
        &[n, c2 / 2, h, w],
        moments.dtype(),
        moments.device(),
    )?;
    Ok(((mean + (std * eps)?)? * scale)?)
}
