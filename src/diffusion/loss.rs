//! The training objective: ε-MSE plus, when σ is learned, the variational
//! bound term L_vb that trains the variance (Nichol & Dhariwal 2021, L_hybrid).

use crate::Result;
use candle_core::Tensor;

use super::config::LossType;
use super::gaussian::GaussianDiffusion;
use super::likelihood::{discretized_gaussian_log_likelihood, normal_kl};

/// Per-sample `(N,)` loss terms.
#[derive(Clone, Debug)]
pub struct LossTerms {
    /// What to minimise: `mse + vb` (or `mse` alone with fixed σ).
    pub loss: Tensor,
    /// Mean over non-batch dims of (ε − ε̂)².
    pub mse: Tensor,
    /// L_vb in bits per dimension (KL to the posterior, or the decoder NLL at
    /// t = 0), already scaled for [`LossType::RescaledMse`]; `None` with fixed σ.
    pub vb: Option<Tensor>,
}

impl GaussianDiffusion {
    /// Loss for x0 noised to `x_t = q_sample(x0, t, noise)`.
    ///
    /// `model` receives `x_t` and the ORIGINAL training timesteps as f32 `(N,)`;
    /// `t` holds indices into this diffusion. Gradients reach the model output:
    /// through ε̂ from the MSE only, and through v from L_vb only (the mean is
    /// detached there, as in the paper, so L_vb trains only the variance).
    pub fn training_losses<F>(
        &self,
        model: F,
        x0: &Tensor,
        t: &Tensor,
        noise: &Tensor,
    ) -> Result<LossTerms>
    where
        F: FnOnce(&Tensor, &Tensor) -> Result<Tensor>,
    {
        let x_t = self.q_sample(x0, t, noise)?;
        let model_output = model(&x_t, &self.model_timesteps(t)?)?;
        let channels = x0.dim(1)?;
        let (eps, v) = self.split_model_output(&model_output, channels)?;
        let mse = mean_over_sample(&(noise - &eps)?.sqr()?)?;
        let Some(v) = v else {
            return Ok(LossTerms {
                loss: mse.clone(),
                mse,
                vb: None,
            });
        };
        let frozen = Tensor::cat(&[&eps.detach(), &v], 1)?;
        let mut vb = self.variational_bound_bits(&frozen, x0, &x_t, t)?;
        if self.config().loss == LossType::RescaledMse {
            vb = (vb * (self.num_timesteps() as f64 / 1000.0))?;
        }
        Ok(LossTerms {
            loss: (&mse + &vb)?,
            mse,
            vb: Some(vb),
        })
    }

    /// Per-sample L_vb term in bits per dimension: KL(q(x_{t−1}|x_t,x0) ‖
    /// p_θ(x_{t−1}|x_t)) for t > 0 and the discretised decoder NLL −log p_θ(x0|x_1)
    /// at t = 0. The official sampler's convention of no clipping applies.
    pub fn variational_bound_bits(
        &self,
        model_output: &Tensor,
        x0: &Tensor,
        x_t: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor> {
        let posterior = self.q_posterior(x0, x_t, t)?;
        let model = self.p_mean_variance(model_output, x_t, t, false)?.moments;
        let kl = normal_kl(
            &posterior.mean,
            &posterior.log_variance,
            &model.mean,
            &model.log_variance,
        )?;
        let kl = (mean_over_sample(&kl)? / std::f64::consts::LN_2)?;
        let log_scales = (&model.log_variance * 0.5)?;
        let decoder_ll = discretized_gaussian_log_likelihood(x0, &model.mean, &log_scales)?;
        let decoder_nll = (mean_over_sample(&decoder_ll)? / -std::f64::consts::LN_2)?;
        let at_start = self.indices(t)?.eq(0u32)?;
        Ok(at_start.where_cond(&decoder_nll, &kl)?)
    }
}

/// Mean over every dim but the first: `(N, ...)` → `(N,)`.
pub(super) fn mean_over_sample(x: &Tensor) -> Result<Tensor> {
    Ok(x.flatten_from(1)?.mean(1)?)
}
