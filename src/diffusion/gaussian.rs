//! The forward process q and the model's reverse Gaussian p_θ.

use candle_core::{Result, Tensor};

use super::coefficients::{gather, timestep_indices};
use super::config::{DiffusionConfig, VarianceType};
use super::error::DiffusionError;
use super::schedule;
use super::tables::DiffusionTables;

/// A Gaussian diffusion with its float64 tables, possibly respaced to a subset
/// of the training timesteps (see [`GaussianDiffusion::respace`]).
///
/// Timestep tensors passed to its methods hold indices into *this* diffusion's
/// tables; the model is always shown the original training index
/// ([`GaussianDiffusion::model_timesteps`]).
#[derive(Clone, Debug)]
pub struct GaussianDiffusion {
    config: DiffusionConfig,
    tables: DiffusionTables,
    timestep_map: Vec<usize>,
    log_betas: Vec<f64>,
    fixed_large_variance: Vec<f64>,
    fixed_large_log_variance: Vec<f64>,
}

/// Mean and variance of a diagonal Gaussian over `x`'s shape.
#[derive(Clone, Debug)]
pub struct GaussianMoments {
    pub mean: Tensor,
    /// Broadcast to the mean's shape.
    pub variance: Tensor,
    /// Broadcast to the mean's shape.
    pub log_variance: Tensor,
}

/// The model's reverse step p_θ(x_{t−1} | x_t) and what it was derived from.
#[derive(Clone, Debug)]
pub struct ModelPrediction {
    pub moments: GaussianMoments,
    /// x̂0 from ε̂, clipped to [−1, 1] when asked.
    pub pred_x0: Tensor,
    /// The ε channels of the model output.
    pub eps: Tensor,
}

impl GaussianDiffusion {
    /// Builds the full T-step diffusion of `config`.
    pub fn new(config: &DiffusionConfig) -> std::result::Result<Self, DiffusionError> {
        if config.num_timesteps < 2 {
            return Err(DiffusionError::TooFewTimesteps(config.num_timesteps));
        }
        let betas = schedule::betas(config.schedule, config.num_timesteps);
        Ok(Self::from_betas(
            config.clone(),
            betas,
            (0..config.num_timesteps).collect(),
        ))
    }

    pub(super) fn from_betas(
        config: DiffusionConfig,
        betas: Vec<f64>,
        timestep_map: Vec<usize>,
    ) -> Self {
        let tables = DiffusionTables::from_betas(betas);
        let log_betas = tables.betas.iter().map(|b| b.ln()).collect();
        let mut fixed_large_variance = tables.betas.clone();
        // β_0 is replaced by β̃_1: the final step should not add more noise than
        // the posterior allows.
        fixed_large_variance[0] = tables.posterior_variance[1];
        let fixed_large_log_variance = fixed_large_variance.iter().map(|v| v.ln()).collect();
        Self {
            config,
            tables,
            timestep_map,
            log_betas,
            fixed_large_variance,
            fixed_large_log_variance,
        }
    }

    /// The configuration of the original (unspaced) diffusion.
    pub fn config(&self) -> &DiffusionConfig {
        &self.config
    }

    pub fn tables(&self) -> &DiffusionTables {
        &self.tables
    }

    /// Number of timesteps of this (possibly respaced) diffusion.
    pub fn num_timesteps(&self) -> usize {
        self.tables.len()
    }

    /// Original training timestep for each index of this diffusion.
    pub fn timestep_map(&self) -> &[usize] {
        &self.timestep_map
    }

    pub fn variance_type(&self) -> VarianceType {
        self.config.variance
    }

    /// The timesteps to show the model for indices `t` `(N,)`: the original
    /// training index, as f32.
    pub fn model_timesteps(&self, t: &Tensor) -> Result<Tensor> {
        let idx = timestep_indices(t, self.num_timesteps())?;
        let original: Vec<f32> = idx.iter().map(|&i| self.timestep_map[i] as f32).collect();
        Tensor::from_vec(original, idx.len(), t.device())
    }

    /// x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε.
    pub fn q_sample(&self, x0: &Tensor, t: &Tensor, noise: &Tensor) -> Result<Tensor> {
        let idx = self.indices(t)?;
        let a = gather(&self.tables.sqrt_alphas_cumprod, &idx, x0)?;
        let s = gather(&self.tables.sqrt_one_minus_alphas_cumprod, &idx, x0)?;
        x0.broadcast_mul(&a)? + noise.broadcast_mul(&s)?
    }

    /// The true posterior q(x_{t−1} | x_t, x0).
    pub fn q_posterior(&self, x0: &Tensor, x_t: &Tensor, t: &Tensor) -> Result<GaussianMoments> {
        let idx = self.indices(t)?;
        self.posterior_at(x0, x_t, &idx)
    }

    fn posterior_at(&self, x0: &Tensor, x_t: &Tensor, idx: &[usize]) -> Result<GaussianMoments> {
        let c1 = gather(&self.tables.posterior_mean_coef1, idx, x_t)?;
        let c2 = gather(&self.tables.posterior_mean_coef2, idx, x_t)?;
        let mean = (x0.broadcast_mul(&c1)? + x_t.broadcast_mul(&c2)?)?;
        let variance =
            gather(&self.tables.posterior_variance, idx, x_t)?.broadcast_as(x_t.shape())?;
        let log_variance = gather(&self.tables.posterior_log_variance_clipped, idx, x_t)?
            .broadcast_as(x_t.shape())?;
        Ok(GaussianMoments {
            mean,
            variance,
            log_variance,
        })
    }

    /// x̂0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1)·ε.
    pub fn predict_x0_from_eps(&self, x_t: &Tensor, t: &Tensor, eps: &Tensor) -> Result<Tensor> {
        let idx = self.indices(t)?;
        self.x0_from_eps_at(x_t, &idx, eps)
    }

    fn x0_from_eps_at(&self, x_t: &Tensor, idx: &[usize], eps: &Tensor) -> Result<Tensor> {
        let a = gather(&self.tables.sqrt_recip_alphas_cumprod, idx, x_t)?;
        let b = gather(&self.tables.sqrt_recipm1_alphas_cumprod, idx, x_t)?;
        x_t.broadcast_mul(&a)? - eps.broadcast_mul(&b)?
    }

    /// ε = (x_t/√ᾱ_t − x̂0)/√(1/ᾱ_t − 1): the noise consistent with a (possibly
    /// clipped) x̂0.
    pub fn predict_eps_from_x0(&self, x_t: &Tensor, t: &Tensor, x0: &Tensor) -> Result<Tensor> {
        let idx = self.indices(t)?;
        let a = gather(&self.tables.sqrt_recip_alphas_cumprod, &idx, x_t)?;
        let b = gather(&self.tables.sqrt_recipm1_alphas_cumprod, &idx, x_t)?;
        (x_t.broadcast_mul(&a)? - x0)?.broadcast_div(&b)
    }

    /// Splits a model output `(N, C or 2C, ...)` for inputs with `C` channels
    /// into ε and, when present, the variance value v.
    pub fn split_model_output(
        &self,
        model_output: &Tensor,
        channels: usize,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let out_channels = model_output.dim(1)?;
        let learned = self.config.variance.is_learned();
        if out_channels == 2 * channels {
            let eps = model_output.narrow(1, 0, channels)?;
            let v = model_output.narrow(1, channels, channels)?;
            Ok((eps, learned.then_some(v)))
        } else if out_channels == channels && !learned {
            Ok((model_output.clone(), None))
        } else {
            candle_core::bail!(
                "model output has {out_channels} channels; expected {} for {} channels of input with {:?} variance",
                if learned { 2 * channels } else { channels },
                channels,
                self.config.variance
            )
        }
    }

    /// The model's reverse Gaussian p_θ(x_{t−1} | x_t) for an ε-predicting
    /// model output. `clip_denoised` clips x̂0 to [−1, 1] (the official sampler
    /// does not).
    pub fn p_mean_variance(
        &self,
        model_output: &Tensor,
        x_t: &Tensor,
        t: &Tensor,
        clip_denoised: bool,
    ) -> Result<ModelPrediction> {
        let idx = self.indices(t)?;
        let (eps, v) = self.split_model_output(model_output, x_t.dim(1)?)?;
        let (variance, log_variance) = match (self.config.variance, v) {
            (VarianceType::LearnedRange, Some(v)) => {
                let min_log = gather(&self.tables.posterior_log_variance_clipped, &idx, x_t)?;
                let max_log = gather(&self.log_betas, &idx, x_t)?;
                let frac = ((v + 1.0)? * 0.5)?;
                let one_minus = frac.affine(-1.0, 1.0)?;
                let log_variance =
                    (frac.broadcast_mul(&max_log)? + one_minus.broadcast_mul(&min_log)?)?;
                (log_variance.exp()?, log_variance)
            }
            (VarianceType::LearnedRange, None) => unreachable!("split_model_output checks v"),
            (VarianceType::FixedLarge, _) => (
                gather(&self.fixed_large_variance, &idx, x_t)?.broadcast_as(x_t.shape())?,
                gather(&self.fixed_large_log_variance, &idx, x_t)?.broadcast_as(x_t.shape())?,
            ),
            (VarianceType::FixedSmall, _) => (
                gather(&self.tables.posterior_variance, &idx, x_t)?.broadcast_as(x_t.shape())?,
                gather(&self.tables.posterior_log_variance_clipped, &idx, x_t)?
                    .broadcast_as(x_t.shape())?,
            ),
        };
        let mut pred_x0 = self.x0_from_eps_at(x_t, &idx, &eps)?;
        if clip_denoised {
            pred_x0 = pred_x0.clamp(-1.0, 1.0)?;
        }
        let mean = self.posterior_at(&pred_x0, x_t, &idx)?.mean;
        Ok(ModelPrediction {
            moments: GaussianMoments {
                mean,
                variance,
                log_variance,
            },
            pred_x0,
            eps,
        })
    }

    pub(super) fn indices(&self, t: &Tensor) -> Result<Vec<usize>> {
        timestep_indices(t, self.num_timesteps())
    }

    /// A `(N,)` u32 tensor holding index `k` for every sample of `x`: the
    /// samplers step the whole batch at one index.
    pub fn uniform_timesteps(&self, k: usize, x: &Tensor) -> Result<Tensor> {
        Tensor::full(k as u32, x.dim(0)?, x.device())
    }
}
