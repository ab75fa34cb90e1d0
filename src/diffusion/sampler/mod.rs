//! Sampling loops over any (respaced) diffusion.
//!
//! The model is a closure `(x_t, t) → output` where `t` holds the ORIGINAL
//! training timesteps as f32 `(N,)`; guidance and the latent/pixel choice
//! live in that closure. For classifier-free guidance the closure doubles
//! the batch ([`crate::diffusion::guidance::double_batch`]), mixes
//! ([`crate::diffusion::ClassifierFreeGuidance::combine`]) and returns the
//! first (conditional) N rows, so the sampler only ever steps N samples.

mod ddim;
mod ddpm;
mod dpm_solver;

pub use dpm_solver::DpmSolverPP2M;

use crate::Result;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::gaussian::GaussianDiffusion;
use super::noise::NoiseSource;

/// The model a sampler calls: `(x_t, original timesteps as f32) → output`
/// with ε in the first C channels (then v when σ is learned).
pub type DenoiseFn<'a> = dyn FnMut(&Tensor, &Tensor) -> Result<Tensor> + 'a;

/// Which reverse process to run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Ancestral sampling from p_θ (Ho et al. 2020), with the model's variance;
    /// no noise is added at the last step. What DiT's `sample.py` uses.
    Ddpm,
    /// DDIM (Song et al. 2021); η = 0 is deterministic, η = 1 has DDPM's
    /// posterior variance. Uses only the ε channels.
    Ddim { eta: f64 },
    /// DPM-Solver++(2M) (Lu et al. 2022), deterministic, for 10–50 steps.
    /// Uses only the ε channels.
    DpmSolverPP2M,
}

/// Sampling settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleOptions {
    pub sampler: Sampler,
    /// Clip x̂0 to [−1, 1] at every step. The official sampler does not.
    pub clip_denoised: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self {
            sampler: Sampler::Ddpm,
            clip_denoised: false,
        }
    }
}

impl GaussianDiffusion {
    /// Draws samples of `shape` `(N, ...)`: x_T from `noise`, then every
    /// timestep of this diffusion from the last to 0. `progress(done, total)`
    /// is called after each model evaluation.
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        model: &mut DenoiseFn<'_>,
        shape: &[usize],
        dtype: DType,
        device: &Device,
        options: &SampleOptions,
        noise: &mut NoiseSource,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor> {
        let x_t = noise.draw(shape, dtype, device)?;
        self.sample_from(model, x_t, options, noise, progress)
    }

    /// As [`GaussianDiffusion::sample`], starting from a given x_T.
    pub fn sample_from(
        &self,
        model: &mut DenoiseFn<'_>,
        x_t: Tensor,
        options: &SampleOptions,
        noise: &mut NoiseSource,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor> {
        let total = self.num_timesteps();
        let clip = options.clip_denoised;
        let mut solver = DpmSolverPP2M::default();
        let mut x = x_t;
        for (done, k) in (0..total).rev().enumerate() {
            let t = self.uniform_timesteps(k, &x)?;
            let output = model(&x, &self.model_timesteps(&t)?)?;
            let step_noise = |noise: &mut NoiseSource, x: &Tensor| -> Result<Option<Tensor>> {
                if k > 0 {
                    noise.draw(x.dims(), x.dtype(), x.device()).map(Some)
                } else {
                    Ok(None)
                }
            };
            x = match options.sampler {
                Sampler::Ddpm => {
                    let z = step_noise(noise, &x)?;
                    self.ddpm_step(&output, &x, k, clip, z.as_ref())?
                }
                Sampler::Ddim { eta } => {
                    // Deterministic DDIM draws nothing, so η = 0 leaves the
                    // noise streams where x_T left them.
                    let z = if eta != 0.0 {
                        step_noise(noise, &x)?
                    } else {
                        None
                    };
                    self.ddim_step(&output, &x, k, eta, clip, z.as_ref())?
                }
                Sampler::DpmSolverPP2M => solver.step(self, &output, &x, k, clip)?,
            };
            progress(done + 1, total);
        }
        Ok(x)
    }
}
