//! DDIM sampling step (Song et al. 2021, eq. 12).

use crate::Result;
use candle_core::Tensor;

use crate::diffusion::gaussian::GaussianDiffusion;

impl GaussianDiffusion {
    /// x_{k−1} = √ᾱ_{k−1}·x̂0 + √(1 − ᾱ_{k−1} − σ²)·ε + σ·z with
    /// σ = η·√((1−ᾱ_{k−1})/(1−ᾱ_k))·√(1 − ᾱ_k/ᾱ_{k−1}).
    ///
    /// ε is re-derived from the (possibly clipped) x̂0 so that clipping stays
    /// consistent; `noise` is needed only when η > 0 and k > 0.
    pub fn ddim_step(
        &self,
        model_output: &Tensor,
        x: &Tensor,
        k: usize,
        eta: f64,
        clip_denoised: bool,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let t = self.uniform_timesteps(k, x)?;
        let pred_x0 = self
            .p_mean_variance(model_output, x, &t, clip_denoised)?
            .pred_x0;
        let eps = self.predict_eps_from_x0(x, &t, &pred_x0)?;
        let tables = self.tables();
        let alpha_bar = tables.alphas_cumprod[k];
        let alpha_bar_prev = tables.alphas_cumprod_prev[k];
        let sigma = eta
            * ((1.0 - alpha_bar_prev) / (1.0 - alpha_bar)).sqrt()
            * (1.0 - alpha_bar / alpha_bar_prev).sqrt();
        let direction = (1.0 - alpha_bar_prev - sigma * sigma).max(0.0).sqrt();
        let mean = ((pred_x0 * alpha_bar_prev.sqrt())? + (eps * direction)?)?;
        if k == 0 || sigma == 0.0 {
            return Ok(mean);
        }
        let Some(noise) = noise else {
            crate::bail!("DDIM step with eta {eta} at timestep {k} needs noise")
        };
        Ok((mean + (noise * sigma)?)?)
    }
}
