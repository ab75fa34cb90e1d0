//! The forward process q and the model's reverse Gaussian p_θ.

use candle_core::{Device, Tensor};

use super::coefficients::{timestep_indices, Table};
use super::config::{DiffusionConfig, VarianceType};
use super::error::DiffusionError;
use super::schedule;
use super::tables::DiffusionTables;
use crate::{bail, Result};

/// A Gaussian diffusion with its float64 tables, possibly respaced to a subset
/// of the training timesteps (see [`GaussianDiffusion::respace`]).
///
/// Timestep tensors passed to its methods hold indices into *this* diffusion's
/// tables; the model is always shown the original training index
/// ([`GaussianDiffusion::model_timesteps`]).
///
/// The tables live on a device ([`GaussianDiffusion::to_device`]; the CPU
/// after [`GaussianDiffusion::new`]) and are gathered there, so a sampling or
/// training step reads nothing back from the device.
#[derive(Clone, Debug)]
pub struct GaussianDiffusion {
    config: DiffusionConfig,
    tables: DiffusionTables,
    timestep_map: Vec<usize>,
    on_device: DeviceTables,
}

/// The tables the forward process, the posterior and the model's reverse
/// Gaussian gather per sample, on one device.
#[derive(Clone, Debug)]
struct DeviceTables {
    sqrt_alphas_cumprod: Table,
    sqrt_one_minus_alphas_cumprod: Table,
    sqrt_recip_alphas_cumprod: Table,
    sqrt_recipm1_alphas_cumprod: Table,
    posterior_mean_coef1: Table,
    posterior_mean_coef2: Table,
    posterior_variance: Table,
    posterior_log_variance_clipped: Table,
    log_betas: Table,
    fixed_large_variance: Table,
    fixed_large_log_variance: Table,
    /// The original training timestep of each index, as f32.
    model_timesteps: Tensor,
}

impl DeviceTables {
    fn new(tables: &DiffusionTables, timestep_map: &[usize], device: &Device) -> Result<Self> {
        let table = |values: &[f64]| Table::new(values, device);
        let log_betas: Vec<f64> = tables.betas.iter().map(|b| b.ln()).collect();
        let mut fixed_large_variance = tables.betas.clone();
        // β_0 is replaced by β̃_1: the final step should not add more noise than
        // the posterior allows.
        fixed_large_variance[0] = tables.posterior_variance[1];
        let fixed_large_log_variance: Vec<f64> =
            fixed_large_variance.iter().map(|v| v.ln()).collect();
        let model_timesteps: Vec<f32> = timestep_map.iter().map(|&i| i as f32).collect();
        Ok(Self {
            sqrt_alphas_cumprod: table(&tables.sqrt_alphas_cumprod)?,
            sqrt_one_minus_alphas_cumprod: table(&tables.sqrt_one_minus_alphas_cumprod)?,
            sqrt_recip_alphas_cumprod: table(&tables.sqrt_recip_alphas_cumprod)?,
            sqrt_recipm1_alphas_cumprod: table(&tables.sqrt_recipm1_alphas_cumprod)?,
            posterior_mean_coef1: table(&tables.posterior_mean_coef1)?,
            posterior_mean_coef2: table(&tables.posterior_mean_coef2)?,
            posterior_variance: table(&tables.posterior_variance)?,
            posterior_log_variance_clipped: table(&tables.posterior_log_variance_clipped)?,
            log_betas: table(&log_betas)?,
            fixed_large_variance: table(&fixed_large_variance)?,
            fixed_large_log_variance: table(&fixed_large_log_variance)?,
            model_timesteps: Tensor::new(model_timesteps, device)?,
        })
    }
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
        let on_device = DeviceTables::new(&tables, &timestep_map, &Device::Cpu)
            .expect("tensors from host slices on the CPU");
        Self {
            config,
            tables,
            timestep_map,
            on_device,
        }
    }

    /// The same diffusion with its tables on `device` (where the samples are).
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(Self {
            on_device: DeviceTables::new(&self.tables, &self.timestep_map, device)?,
            ..self.clone()
        })
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
        let idx = self.indices(t)?;
        Ok(self
            .on_device
            .model_timesteps
            .to_device(t.device())?
            .index_select(&idx, 0)?)
    }

    /// x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε.
    pub fn q_sample(&self, x0: &Tensor, t: &Tensor, noise: &Tensor) -> Result<Tensor> {
        let idx = self.indices(t)?;
        let d = &self.on_device;
        let a = d.sqrt_alphas_cumprod.gather(&idx, x0)?;
        let s = d.sqrt_one_minus_alphas_cumprod.gather(&idx, x0)?;
        Ok((x0.broadcast_mul(&a)? + noise.broadcast_mul(&s)?)?)
    }

    /// The true posterior q(x_{t−1} | x_t, x0).
    pub fn q_posterior(&self, x0: &Tensor, x_t: &Tensor, t: &Tensor) -> Result<GaussianMoments> {
        let idx = self.indices(t)?;
        self.posterior_at(x0, x_t, &idx)
    }

    fn posterior_at(&self, x0: &Tensor, x_t: &Tensor, idx: &Tensor) -> Result<GaussianMoments> {
        let d = &self.on_device;
        let c1 = d.posterior_mean_coef1.gather(idx, x_t)?;
        let c2 = d.posterior_mean_coef2.gather(idx, x_t)?;
        let mean = (x0.broadcast_mul(&c1)? + x_t.broadcast_mul(&c2)?)?;
        let variance = d
            .posterior_variance
            .gather(idx, x_t)?
            .broadcast_as(x_t.shape())?;
        let log_variance = d
            .posterior_log_variance_clipped
            .gather(idx, x_t)?
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

    fn x0_from_eps_at(&self, x_t: &Tensor, idx: &Tensor, eps: &Tensor) -> Result<Tensor> {
        let a = self.on_device.sqrt_recip_alphas_cumprod.gather(idx, x_t)?;
        let b = self
            .on_device
            .sqrt_recipm1_alphas_cumprod
            .gather(idx, x_t)?;
        Ok((x_t.broadcast_mul(&a)? - eps.broadcast_mul(&b)?)?)
    }

    /// ε = (x_t/√ᾱ_t − x̂0)/√(1/ᾱ_t − 1): the noise consistent with a (possibly
    /// clipped) x̂0.
    pub fn predict_eps_from_x0(&self, x_t: &Tensor, t: &Tensor, x0: &Tensor) -> Result<Tensor> {
        let idx = self.indices(t)?;
        let a = self.on_device.sqrt_recip_alphas_cumprod.gather(&idx, x_t)?;
        let b = self
            .on_device
            .sqrt_recipm1_alphas_cumprod
            .gather(&idx, x_t)?;
        Ok((x_t.broadcast_mul(&a)? - x0)?.broadcast_div(&b)?)
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
            bail!(
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
        let d = &self.on_device;
        let (variance, log_variance) = match (self.config.variance, v) {
            (VarianceType::LearnedRange, Some(v)) => {
                let min_log = d.posterior_log_variance_clipped.gather(&idx, x_t)?;
                let max_log = d.log_betas.gather(&idx, x_t)?;
                let frac = ((v + 1.0)? * 0.5)?;
                let one_minus = frac.affine(-1.0, 1.0)?;
                let log_variance =
                    (frac.broadcast_mul(&max_log)? + one_minus.broadcast_mul(&min_log)?)?;
                (log_variance.exp()?, log_variance)
            }
            (VarianceType::LearnedRange, None) => unreachable!("split_model_output checks v"),
            (VarianceType::FixedLarge, _) => (
                d.fixed_large_variance
                    .gather(&idx, x_t)?
                    .broadcast_as(x_t.shape())?,
                d.fixed_large_log_variance
                    .gather(&idx, x_t)?
                    .broadcast_as(x_t.shape())?,
            ),
            (VarianceType::FixedSmall, _) => (
                d.posterior_variance
                    .gather(&idx, x_t)?
                    .broadcast_as(x_t.shape())?,
                d.posterior_log_variance_clipped
                    .gather(&idx, x_t)?
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

    /// `t` as u32 indices into this diffusion's tables.
    pub(super) fn indices(&self, t: &Tensor) -> Result<Tensor> {
        timestep_indices(t, self.num_timesteps())
    }

    /// A `(N,)` u32 tensor holding index `k` for every sample of `x`: the
    /// samplers step the whole batch at one index.
    pub fn uniform_timesteps(&self, k: usize, x: &Tensor) -> Result<Tensor> {
        Ok(Tensor::full(k as u32, x.dim(0)?, x.device())?)
    }
}
