//! SiT's training loss and the randomness of one training step.

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::combination::{per_sample, times};
use super::config::{LossWeight, Phase};
use super::interpolant::PathCoefficients;
use super::prediction::Prediction;
use super::sampler::first_channels;
use super::Transport;
use crate::diffusion::NoiseSource;
use crate::dist::BatchShare;
use crate::{bail, Result};

// Distinct from the DDPM step's salts, so the two objectives never share a stream.
const TIME_SALT: u64 = 0x7369_745f_7469_6d65;
const NOISE_SALT: u64 = 0x7369_745f_6e6f_6973;

/// The random inputs of one training step.
#[derive(Clone, Debug)]
pub struct TrainingDraws {
    /// `(N,)` f32 times, uniform in the training interval.
    pub t: Tensor,
    /// x0 ~ N(0, I), shaped like the batch.
    pub noise: Tensor,
}

impl Transport {
    /// Times and noise for training step `step`, from (seed, step) alone: the
    /// times from one ChaCha8 stream per step, the noise from per-sample
    /// streams keyed by the sample's number `step·N + i` (as DDPM's steps).
    pub fn draw(
        &self,
        seed: u64,
        step: u64,
        shape: &[usize],
        device: &Device,
    ) -> Result<TrainingDraws> {
        let Some(&n) = shape.first() else {
            bail!("a training batch needs a shape (N, …), got {shape:?}");
        };
        self.draw_share(seed, step, BatchShare::whole(n), shape, device)
    }

    /// [`Transport::draw`] for the `share` of a batch one process computes
    /// (`shape` is the share's): exactly the values the whole batch's draw
    /// gives those samples.
    pub fn draw_share(
        &self,
        seed: u64,
        step: u64,
        share: BatchShare,
        shape: &[usize],
        device: &Device,
    ) -> Result<TrainingDraws> {
        if shape.first() != Some(&share.count) {
            bail!(
                "a share of {} samples cannot have the shape {shape:?}",
                share.count
            );
        }
        let (t0, t1) = self.config().interval(Phase::Train);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ TIME_SALT);
        rng.set_stream(step);
        let t: Vec<f32> = (0..share.global)
            .map(|_| (t0 + (t1 - t0) * rng.gen::<f64>()) as f32)
            .skip(share.first)
            .take(share.count)
            .collect();
        let first = step * share.global as u64 + share.first as u64;
        let mut noise = NoiseSource::new(seed ^ NOISE_SALT, first, share.count);
        Ok(TrainingDraws {
            t: Tensor::from_vec(t, share.count, device)?,
            noise: noise.draw(shape, DType::F32, device)?,
        })
    }

    /// The per-sample `(N,)` loss of SiT's `training_losses` for data `x1`:
    /// the model sees x_t = α·x1 + σ·x0 and t, and its output (first C
    /// channels) is compared with
    /// * velocity: dα·x1 + dσ·x0, unweighted;
    /// * noise: x0, as λ(t)·|out − x0|²;
    /// * score: −x0/σ, as λ(t)·|σ·out + x0|²;
    ///
    /// each averaged over a sample's elements, with λ from the loss weight.
    /// Gradients reach the model output.
    pub fn training_loss<F>(&self, model: F, x1: &Tensor, draws: &TrainingDraws) -> Result<Tensor>
    where
        F: FnOnce(&Tensor, &Tensor) -> Result<Tensor>,
    {
        let path = self.config().interpolant;
        let t = times(&draws.t)?;
        if t.len() != x1.dim(0)? || draws.noise.dims() != x1.dims() {
            bail!(
                "training draws for {} samples with noise {:?} do not match the batch {:?}",
                t.len(),
                draws.noise.dims(),
                x1.dims()
            );
        }
        let coefs: Vec<PathCoefficients> = t.iter().map(|&t| path.at(t)).collect();
        let x0 = draws.noise.to_dtype(x1.dtype())?;
        let (x_t, u_t) = path.interpolate(&draws.t, &x0, x1)?;
        let out = first_channels(&model(&x_t, &draws.t)?, x1)?;
        let residual = match self.config().prediction {
            Prediction::Velocity => (out - u_t)?,
            Prediction::Noise => (out - &x0)?,
            Prediction::Score => {
                let sigma: Vec<f64> = coefs.iter().map(|c| c.sigma).collect();
                (out.broadcast_mul(&per_sample(&sigma, x1)?)? + &x0)?
            }
        };
        let mse = residual.sqr()?.flatten_from(1)?.mean(1)?;
        let weight: Vec<f64> = coefs.iter().map(|c| self.loss_weight_at(c)).collect();
        if weight.iter().all(|&w| w == 1.0) {
            return Ok(mse);
        }
        if let Some(i) = weight.iter().position(|w| !w.is_finite()) {
            bail!(
                "the {:?} loss weight is not finite at t = {} (raise train ε)",
                self.config().loss_weight,
                t[i]
            );
        }
        Ok(
            (mse * Tensor::from_slice(&weight, weight.len(), x1.device())?
                .to_dtype(x1.dtype())?)?,
        )
    }

    /// λ(t) of the score and noise losses; 1 for velocity.
    pub fn loss_weight_at(&self, c: &PathCoefficients) -> f64 {
        if self.config().prediction == Prediction::Velocity {
            return 1.0;
        }
        match self.config().loss_weight {
            LossWeight::None => 1.0,
            LossWeight::Velocity => (c.drift_variance / c.sigma).powi(2),
            LossWeight::Likelihood => c.drift_variance / (c.sigma * c.sigma),
        }
    }
}
