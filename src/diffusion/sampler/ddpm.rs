//! Ancestral (DDPM) sampling step.

use crate::Result;
use candle_core::Tensor;

use crate::diffusion::gaussian::GaussianDiffusion;

impl GaussianDiffusion {
    /// x_{k−1} = μ_θ(x_k) + σ_θ(x_k)·z, with z omitted at k = 0 (the last step
    /// returns the mean). `noise` must be given for k > 0.
    pub fn ddpm_step(
        &self,
        model_output: &Tensor,
        x: &Tensor,
        k: usize,
        clip_denoised: bool,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let t = self.uniform_timesteps(k, x)?;
        let moments = self
            .p_mean_variance(model_output, x, &t, clip_denoised)?
            .moments;
        if k == 0 {
            return Ok(moments.mean);
        }
        let Some(noise) = noise else {
            crate::bail!("DDPM step at timestep {k} needs noise")
        };
        let std = (moments.log_variance * 0.5)?.exp()?;
        Ok((moments.mean + (std * noise)?)?)
    }
}
