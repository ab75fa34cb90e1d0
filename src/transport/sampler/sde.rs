//! The SDE dx = [v + w(t)·∇log p_t(x)] dt + √(2w(t)) dW from t0 to t1, then
//! one last step to t = 1. For every w ≥ 0 its marginals are the path's p_t;
//! w only changes how much noise is injected and removed along the way.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

use super::{ensure_finite, grid, Evaluation, Evaluator, Hooks, Sampled};
use crate::diffusion::NoiseSource;
use crate::transport::combination::{times, Combination};
use crate::transport::config::Phase;
use crate::transport::interpolant::PathCoefficients;
use crate::transport::prediction::Prediction;
use crate::transport::Transport;
use crate::{bail, Result};

/// The SDE integrator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SdeMethod {
    /// Euler–Maruyama: 1 model call per step.
    Euler,
    /// SiT's stochastic Heun: add the step's noise, then take a Heun step of
    /// the drift from there (2 model calls per step).
    Heun,
}

/// The diffusion coefficient w(t) (SiT's `--diffusion-form`, paper Tab. 2),
/// each scaled by the diffusion norm n.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffusionForm {
    /// w = n.
    Constant,
    /// w = n·[(dα/α)σ² − σ·dσ], the score-based diffusion model's own SDE
    /// (β(t)/2 on VP); infinite at t = 0 on Linear and GVP.
    Sbdm,
    /// w = n·σ_t.
    Sigma,
    /// w = n·(1 − t).
    Linear,
    /// w = ¼(n·cos(πt) + 1)².
    Decreasing,
    /// w = n·sin²(πt). (SiT's command line offers it but its table misspells
    /// the key, so the official code cannot select it.)
    IncreasingDecreasing,
}

impl DiffusionForm {
    pub const ALL: [DiffusionForm; 6] = [
        DiffusionForm::Constant,
        DiffusionForm::Sbdm,
        DiffusionForm::Sigma,
        DiffusionForm::Linear,
        DiffusionForm::Decreasing,
        DiffusionForm::IncreasingDecreasing,
    ];

    /// w(t) with norm `norm` at the coefficients `c`.
    pub fn at(self, c: &PathCoefficients, norm: f64) -> f64 {
        match self {
            DiffusionForm::Constant => norm,
            DiffusionForm::Sbdm => norm * c.drift_variance,
            DiffusionForm::Sigma => norm * c.sigma,
            DiffusionForm::Linear => norm * (1.0 - c.t),
            DiffusionForm::Decreasing => 0.25 * (norm * (PI * c.t).cos() + 1.0).powi(2),
            DiffusionForm::IncreasingDecreasing => norm * (PI * c.t).sin().powi(2),
        }
    }
}

/// How the SDE reaches t = 1 from t1 (SiT's `--last-step`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastStep {
    /// No last step: the sample is the state at t1 = 1 − sample ε.
    None,
    /// One Euler step of the SDE drift, without noise.
    Mean,
    /// Tweedie's denoiser: E[x1 | x] = (x + σ²·∇log p)/α.
    Tweedie,
    /// One Euler step of the probability-flow ODE.
    Euler,
}

/// SDE settings (SiT's `sample.py SDE` options).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SdeConfig {
    pub method: SdeMethod,
    pub diffusion: DiffusionForm,
    pub diffusion_norm: f64,
    pub last_step: LastStep,
    /// The interval left for the last step: the SDE stops at 1 − this.
    /// Ignored (0) with [`LastStep::None`].
    pub last_step_size: f64,
    /// Grid points: `num_steps − 1` SDE steps, then the last step.
    pub num_steps: usize,
}

impl Default for SdeConfig {
    /// SiT's `sample.py SDE` defaults.
    fn default() -> Self {
        Self {
            method: SdeMethod::Euler,
            diffusion: DiffusionForm::Sigma,
            diffusion_norm: 1.0,
            last_step: LastStep::Mean,
            last_step_size: 0.04,
            num_steps: 250,
        }
    }
}

impl SdeConfig {
    /// The last step's size after SiT's rule that no last step means none.
    pub fn effective_last_step_size(&self) -> f64 {
        match self.last_step {
            LastStep::None => 0.0,
            _ => self.last_step_size,
        }
    }

    pub(super) fn run(
        &self,
        transport: &Transport,
        model: &mut Evaluator<'_, '_>,
        x0: Tensor,
        noise: &mut NoiseSource,
        hooks: &mut Hooks<'_>,
    ) -> Result<Sampled> {
        if self.num_steps < 2 {
            bail!(
                "an SDE needs at least 2 grid points (1 step), got {}",
                self.num_steps
            );
        }
        let last_step_size = self.effective_last_step_size();
        let norm = self.diffusion_norm;
        if !(0.0..1.0).contains(&last_step_size) || norm.is_nan() || norm < 0.0 {
            bail!(
                "SDE settings out of range: last step size {} (need [0, 1)), diffusion norm {} \
                 (need ≥ 0)",
                self.last_step_size,
                self.diffusion_norm
            );
        }
        let (t0, t1) = transport.config().interval(Phase::Sde {
            diffusion: self.diffusion,
            last_step_size,
        });
        if t0 >= t1 {
            bail!("the SDE interval [{t0}, {t1}] is empty");
        }
        let n = x0.dim(0)?;
        let steps = self.num_steps - 1;
        let dt = (t1 - t0) / steps as f64;
        let total = steps + usize::from(self.last_step != LastStep::None);
        let mut x = x0;
        for (k, &t) in grid(t0, t1, self.num_steps)[..steps].iter().enumerate() {
            let z = noise.draw(x.dims(), x.dtype(), x.device())?;
            let w = self
                .diffusion
                .at(&model.path.at(t as f32 as f64), self.diffusion_norm);
            let spread = (2.0 * w * dt).sqrt();
            if !spread.is_finite() {
                bail!(
                    "the diffusion w(t) = {w} is not usable at t = {t} (the {:?} form is \
                     singular there; use a larger sample ε or another diffusion form)",
                    self.diffusion
                );
            }
            x = match self.method {
                SdeMethod::Euler => {
                    let eval = model.call(&x, &vec![t; n])?;
                    preview(hooks, model, &x, &eval, t)?;
                    let drift = self.drift(model.prediction, &eval)?.apply(&x, &eval.out)?;
                    ((&x + (drift * dt)?)? + (z * spread)?)?
                }
                SdeMethod::Heun => {
                    let x_hat = (&x + (z * spread)?)?;
                    let eval = model.call(&x_hat, &vec![t; n])?;
                    preview(hooks, model, &x_hat, &eval, t)?;
                    let k1 = self
                        .drift(model.prediction, &eval)?
                        .apply(&x_hat, &eval.out)?;
                    let predicted = (&x_hat + (&k1 * dt)?)?;
                    let eval = model.call(&predicted, &vec![t + dt; n])?;
                    let k2 = self
                        .drift(model.prediction, &eval)?
                        .apply(&predicted, &eval.out)?;
                    (&x_hat + ((k1 + k2)? * (0.5 * dt))?)?
                }
            };
            ensure_finite(&x, "SDE step", t)?;
            hooks.progress(k + 1, total)?;
        }
        if self.last_step != LastStep::None {
            let eval = model.call(&x, &vec![t1; n])?;
            preview(hooks, model, &x, &eval, t1)?;
            x = self
                .last(model.prediction, &eval, last_step_size)?
                .apply(&x, &eval.out)?;
            ensure_finite(&x, "last step", t1)?;
            hooks.progress(total, total)?;
        }
        Ok(Sampled {
            x,
            nfe: model.nfe,
            accepted_steps: vec![total; n],
            rejected_steps: vec![0; n],
        })
    }

    fn drift_at(&self, prediction: Prediction, c: &PathCoefficients) -> (f64, f64) {
        drift_coefficients(prediction, self.diffusion, self.diffusion_norm, c)
    }

    fn drift(&self, prediction: Prediction, eval: &Evaluation) -> Result<Combination> {
        eval.combination("SDE drift", |c| self.drift_at(prediction, c))
    }

    /// The last step from t1 to 1 as a combination of (x, output at t1).
    fn last(&self, prediction: Prediction, eval: &Evaluation, h: f64) -> Result<Combination> {
        eval.combination("last step", |c| match self.last_step {
            LastStep::None => (1.0, 0.0),
            LastStep::Mean => {
                let (dx, dout) = self.drift_at(prediction, c);
                (1.0 + h * dx, h * dout)
            }
            LastStep::Tweedie => {
                let (sx, so) = prediction.convert(Prediction::Score, c);
                let s2 = c.sigma * c.sigma;
                ((1.0 + s2 * sx) / c.alpha, s2 * so / c.alpha)
            }
            LastStep::Euler => {
                let (vx, vo) = prediction.convert(Prediction::Velocity, c);
                (1.0 + h * vx, h * vo)
            }
        })
    }
}

/// The SDE drift v + w·score as `(a, b)` in `a·x + b·out`.
fn drift_coefficients(
    prediction: Prediction,
    diffusion: DiffusionForm,
    norm: f64,
    c: &PathCoefficients,
) -> (f64, f64) {
    let (vx, vo) = prediction.convert(Prediction::Velocity, c);
    let (sx, so) = prediction.convert(Prediction::Score, c);
    let w = diffusion.at(c, norm);
    (vx + w * sx, vo + w * so)
}

impl Transport {
    /// The SDE drift v + w(t)·∇log p_t at `(x_t, t)` from `out`, the model's
    /// prediction there, with per-sample times `t` `(N,)`.
    pub fn sde_drift(
        &self,
        diffusion: DiffusionForm,
        norm: f64,
        x_t: &Tensor,
        out: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor> {
        let (path, prediction) = (self.config().interpolant, self.config().prediction);
        let t = times(t)?;
        Combination::from_fn(t.len(), |i| {
            drift_coefficients(prediction, diffusion, norm, &path.at(t[i]))
        })
        .apply(x_t, out)
    }
}

fn preview(
    hooks: &mut Hooks<'_>,
    model: &Evaluator<'_, '_>,
    x: &Tensor,
    eval: &Evaluation,
    t: f64,
) -> Result<()> {
    if let Some(preview) = hooks.preview.as_mut() {
        preview(t, &model.data_estimate(x, eval)?);
    }
    Ok(())
}
