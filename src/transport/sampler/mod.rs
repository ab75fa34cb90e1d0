//! Sampling a transport model from noise (t = 0) to data (t = 1).
//!
//! The model is a closure `(x_t, t) → output` with `t` the per-sample times
//! as f32 `(N,)` in [0, 1], fed to the network as they are (SiT's
//! `TimestepEmbedder` embeds t itself, not 1000·t as DiT does). The output
//! has C channels, or 2C from a `learn_sigma` network, whose extra channels
//! SiT drops; guidance lives in the closure, as for the diffusion samplers.
//!
//! * ODE (probability flow, dx = v dt): fixed-step Euler and Heun on SiT's
//!   grid, or adaptive Dormand–Prince 5(4).
//! * SDE dx = [v + w(t)·∇log p_t] dt + √(2w(t)) dW: Euler–Maruyama or Heun,
//!   then one last step to t = 1.
//!
//! Step counts follow SiT: `num_steps` is the number of grid points, so a
//! fixed-step ODE takes `num_steps − 1` steps and an SDE `num_steps − 1`
//! steps plus its last step. Every quantity of a step (velocity, score, SDE
//! drift, last step) comes from ONE model call at (x, t); SiT's code calls
//! the model separately for the drift and for the score of an SDE step, with
//! the same inputs, so its NFE for the SDEs is twice the one reported here.

mod ode;
mod sde;

pub use ode::{OdeConfig, OdeMethod};
pub use sde::{DiffusionForm, LastStep, SdeConfig, SdeMethod};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::combination::Combination;
use super::interpolant::{Interpolant, PathCoefficients};
use super::prediction::Prediction;
use super::Transport;
use crate::diffusion::NoiseSource;
use crate::{bail, Result};

/// The model a sampler calls: `(x_t, t as f32 (N,) in [0, 1]) → output` with
/// the prediction in the first C channels.
pub type ModelFn<'a> = dyn FnMut(&Tensor, &Tensor) -> Result<Tensor> + 'a;

/// Which integrator to sample with (SiT's `sample.py ODE|SDE` options).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SamplerConfig {
    Ode(OdeConfig),
    Sde(SdeConfig),
}

impl Default for SamplerConfig {
    /// SiT's default: adaptive Dormand–Prince with atol 1e-6, rtol 1e-3.
    fn default() -> Self {
        SamplerConfig::Ode(OdeConfig::default())
    }
}

/// What a sampler reports besides the samples.
#[derive(Clone, Debug)]
pub struct Sampled {
    /// x at t = 1 (or at the end of the interval), shaped like the noise.
    pub x: Tensor,
    /// Model calls made (each on the whole batch, or on the samples still
    /// stepping for the adaptive solver).
    pub nfe: usize,
    /// Per sample: accepted steps (the adaptive solver's count; for fixed
    /// steps every sample takes them all).
    pub accepted_steps: Vec<usize>,
    /// Per sample: rejected steps (adaptive solver only).
    pub rejected_steps: Vec<usize>,
}

/// `(done, total)` progress of a sampler; an error stops the sampler and is
/// returned (the way to abandon a sampling job).
pub type ProgressFn<'h> = dyn FnMut(usize, usize) -> Result<()> + 'h;
/// `(t, x̂1)`: the data estimate at time t.
pub type PreviewFn<'h> = dyn FnMut(f64, &Tensor) + 'h;

/// Callbacks a sampler makes while it runs.
#[derive(Default)]
pub struct Hooks<'h> {
    /// `(done, total)` after each step; the adaptive solver reports the part
    /// of [t0, t1] its slowest sample has covered, in thousandths.
    pub progress: Option<&'h mut ProgressFn<'h>>,
    /// `(t, x̂1)` after each model call: the current estimate E[x1 | x_t] of the
    /// data, for a live preview. `t` is the least advanced sample's time. It
    /// costs a few tensor operations per step, so leave it `None` otherwise.
    pub preview: Option<&'h mut PreviewFn<'h>>,
}

impl Hooks<'_> {
    fn progress(&mut self, done: usize, total: usize) -> Result<()> {
        match self.progress.as_mut() {
            Some(progress) => progress(done, total),
            None => Ok(()),
        }
    }
}

impl Transport {
    /// Draws x0 of `shape` `(N, C, …)` from `noise` and integrates it to data.
    pub fn sample(
        &self,
        model: &mut ModelFn<'_>,
        shape: &[usize],
        device: &Device,
        sampler: &SamplerConfig,
        noise: &mut NoiseSource,
        hooks: Hooks<'_>,
    ) -> Result<Sampled> {
        let x0 = noise.draw(shape, DType::F32, device)?;
        self.sample_from(model, x0, sampler, noise, hooks)
    }

    /// As [`Transport::sample`], from a given x0. `noise` supplies the SDE's
    /// Brownian increments (the ODE draws nothing), per sample, so a batch of
    /// 8 gives the same samples as two batches of 4 with streams 0..4 and 4..8.
    pub fn sample_from(
        &self,
        model: &mut ModelFn<'_>,
        x0: Tensor,
        sampler: &SamplerConfig,
        noise: &mut NoiseSource,
        mut hooks: Hooks<'_>,
    ) -> Result<Sampled> {
        if x0.rank() < 2 {
            bail!("samples must be shaped (N, C, …); got {:?}", x0.dims());
        }
        if noise.batch_size() != x0.dim(0)? {
            bail!(
                "the noise source has {} streams for a batch of {}",
                noise.batch_size(),
                x0.dim(0)?
            );
        }
        let mut model = Evaluator::new(model, self.config().interpolant, self.config().prediction);
        match sampler {
            SamplerConfig::Ode(ode) => ode.run(self, &mut model, x0, &mut hooks),
            SamplerConfig::Sde(sde) => sde.run(self, &mut model, x0, noise, &mut hooks),
        }
    }
}

/// One model evaluation: the output (first C channels) and the path
/// coefficients at the times the model was given.
struct Evaluation {
    out: Tensor,
    coefs: Vec<PathCoefficients>,
}

impl Evaluation {
    /// `to` at every sample, as a combination of (x, out), which must be finite.
    fn combination(
        &self,
        what: &str,
        mut f: impl FnMut(&PathCoefficients) -> (f64, f64),
    ) -> Result<Combination> {
        let combination = Combination::from_fn(self.coefs.len(), |i| f(&self.coefs[i]));
        if let Some(i) = combination.first_non_finite() {
            bail!(
                "the {what} is not finite at t = {} (the interval reaches a singular end \
                 of the path; use a larger sample ε or another diffusion form)",
                self.coefs[i].t
            );
        }
        Ok(combination)
    }
}

/// Calls the model at per-sample times and counts the calls.
struct Evaluator<'m, 'a> {
    model: &'m mut ModelFn<'a>,
    path: Interpolant,
    prediction: Prediction,
    nfe: usize,
}

impl<'m, 'a> Evaluator<'m, 'a> {
    fn new(model: &'m mut ModelFn<'a>, path: Interpolant, prediction: Prediction) -> Self {
        Self {
            model,
            path,
            prediction,
            nfe: 0,
        }
    }

    /// The model at `(x, t)`. The model sees t rounded to f32 and the
    /// coefficients are taken at that same rounded t.
    fn call(&mut self, x: &Tensor, t: &[f64]) -> Result<Evaluation> {
        let t32: Vec<f32> = t.iter().map(|&t| t as f32).collect();
        let coefs = t32.iter().map(|&t| self.path.at(t as f64)).collect();
        let t_tensor = Tensor::from_vec(t32, t.len(), x.device())?;
        let out = (self.model)(x, &t_tensor)?;
        self.nfe += 1;
        Ok(Evaluation {
            out: first_channels(&out, x)?,
            coefs,
        })
    }

    /// The probability-flow velocity at `(x, t)`.
    fn velocity(&mut self, x: &Tensor, t: &[f64]) -> Result<Tensor> {
        let eval = self.call(x, t)?;
        let prediction = self.prediction;
        eval.combination("velocity", |c| prediction.convert(Prediction::Velocity, c))?
            .apply(x, &eval.out)
    }

    /// E[x1 | x] from an evaluation at `x`.
    fn data_estimate(&self, x: &Tensor, eval: &Evaluation) -> Result<Tensor> {
        let prediction = self.prediction;
        eval.combination("data estimate", |c| prediction.data_estimate(c))?
            .apply(x, &eval.out)
    }
}

/// The first C channels of a model output for samples shaped like `x`
/// `(N, C, …)`: the whole output, or its first half for a `learn_sigma`
/// network's 2C channels.
pub(crate) fn first_channels(out: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (o, s) = (out.dims(), x.dims());
    let c = s[1];
    let same_but_channels = o.len() == s.len() && o[0] == s[0] && o[2..] == s[2..];
    if same_but_channels && o[1] == c {
        return Ok(out.clone());
    }
    if same_but_channels && o[1] == 2 * c {
        return Ok(out.narrow(1, 0, c)?);
    }
    bail!(
        "the model returned shape {o:?} for samples of shape {s:?}; expected {c} or {} \
         channels in dimension 1",
        2 * c
    )
}

/// Stops with an error naming `t` when `x` holds a NaN or an infinity.
fn ensure_finite(x: &Tensor, what: &str, t: f64) -> Result<()> {
    let total = x
        .abs()?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    if !total.is_finite() {
        bail!("the {what} from t = {t} produced non-finite values (NaN or infinity); stopped");
    }
    Ok(())
}

/// `n` evenly spaced points from `t0` to `t1`, both included, as
/// `torch.linspace` (the last one is exactly `t1`).
fn grid(t0: f64, t1: f64, n: usize) -> Vec<f64> {
    let last = (n - 1) as f64;
    (0..n)
        .map(|k| {
            if k + 1 == n {
                t1
            } else {
                t0 + (t1 - t0) * (k as f64 / last)
            }
        })
        .collect()
}
