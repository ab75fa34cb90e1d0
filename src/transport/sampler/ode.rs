//! The probability-flow ODE dx/dt = v(x, t) from t0 to t1.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::{ensure_finite, grid, Evaluator, Hooks, Sampled};
use crate::transport::combination::{per_sample, Combination};
use crate::transport::config::Phase;
use crate::transport::interpolant::Interpolant;
use crate::transport::prediction::Prediction;
use crate::transport::Transport;
use crate::{bail, Result};

/// The ODE integrator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OdeMethod {
    /// Forward Euler on the grid: 1 model call per step.
    Euler,
    /// Heun's second-order method (explicit trapezoid; torchdiffeq's `heun2`)
    /// on the grid: 2 model calls per step, the last step included.
    Heun,
    /// Dormand–Prince 5(4) with adaptive steps (SiT's default).
    Dopri5,
}

/// ODE settings (SiT's `sample.py ODE` options).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OdeConfig {
    pub method: OdeMethod,
    /// Grid points for Euler and Heun (`num_steps − 1` steps); unused by
    /// Dormand–Prince, which only samples its output there in SiT.
    pub num_steps: usize,
    /// Absolute and relative tolerances of Dormand–Prince.
    pub atol: f64,
    pub rtol: f64,
}

impl Default for OdeConfig {
    fn default() -> Self {
        Self {
            method: OdeMethod::Dopri5,
            num_steps: 250,
            atol: 1e-6,
            rtol: 1e-3,
        }
    }
}

// Step-size control as torchdiffeq's (Hairer, Nørsett & Wanner, II.4).
const SAFETY: f64 = 0.9;
const MAX_GROWTH: f64 = 10.0;
const MAX_SHRINK: f64 = 0.2;
/// Step attempts after which the adaptive solver gives up.
const MAX_ATTEMPTS: usize = 100_000;
/// Progress resolution of the adaptive solver.
const PROGRESS_TOTAL: usize = 1000;

/// The Dormand–Prince 5(4) tableau: stage nodes, stage weights, the
/// fifth-order weights (which are also the last stage's, so the last stage
/// is the next step's first) and fifth minus fourth order weights.
const C: [f64; 6] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0];
const A: [&[f64]; 6] = [
    &[],
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
];
const B5: [f64; 6] = [
    35.0 / 384.0,
    0.0,
    500.0 / 1113.0,
    125.0 / 192.0,
    -2187.0 / 6784.0,
    11.0 / 84.0,
];
const B_ERR: [f64; 7] = [
    35.0 / 384.0 - 5179.0 / 57600.0,
    0.0,
    500.0 / 1113.0 - 7571.0 / 16695.0,
    125.0 / 192.0 - 393.0 / 640.0,
    -2187.0 / 6784.0 + 92097.0 / 339200.0,
    11.0 / 84.0 - 187.0 / 2100.0,
    -1.0 / 40.0,
];

impl OdeConfig {
    pub(super) fn run(
        &self,
        transport: &Transport,
        model: &mut Evaluator<'_, '_>,
        x0: Tensor,
        hooks: &mut Hooks<'_>,
    ) -> Result<Sampled> {
        let (t0, t1) = transport.config().interval(Phase::Ode);
        match self.method {
            OdeMethod::Euler | OdeMethod::Heun => self.fixed_steps(model, x0, t0, t1, hooks),
            OdeMethod::Dopri5 => self.dopri5(model, x0, t0, t1, hooks),
        }
    }

    fn fixed_steps(
        &self,
        model: &mut Evaluator<'_, '_>,
        x0: Tensor,
        t0: f64,
        t1: f64,
        hooks: &mut Hooks<'_>,
    ) -> Result<Sampled> {
        if self.num_steps < 2 {
            bail!(
                "an ODE needs at least 2 grid points (1 step), got {}",
                self.num_steps
            );
        }
        let n = x0.dim(0)?;
        let ts = grid(t0, t1, self.num_steps);
        let total = ts.len() - 1;
        let mut x = x0;
        for (k, pair) in ts.windows(2).enumerate() {
            let (t, h) = (pair[0], pair[1] - pair[0]);
            let eval = model.call(&x, &vec![t; n])?;
            if let Some(preview) = hooks.preview.as_mut() {
                preview(t, &model.data_estimate(&x, &eval)?);
            }
            let prediction = model.prediction;
            let k1 = eval
                .combination("velocity", |c| prediction.convert(Prediction::Velocity, c))?
                .apply(&x, &eval.out)?;
            x = match self.method {
                OdeMethod::Euler => (&x + (k1 * h)?)?,
                _ => {
                    let predicted = (&x + (&k1 * h)?)?;
                    let k2 = model.velocity(&predicted, &vec![t + h; n])?;
                    (&x + ((k1 + k2)? * (0.5 * h))?)?
                }
            };
            ensure_finite(&x, "ODE step", t)?;
            hooks.progress(k + 1, total)?;
        }
        Ok(Sampled {
            x,
            nfe: model.nfe,
            accepted_steps: vec![total; n],
            rejected_steps: vec![0; n],
        })
    }

    /// Dormand–Prince 5(4) with its own step size per sample, so a sample's
    /// path does not depend on what it is batched with. (torchdiffeq, which
    /// SiT uses, controls one step size with an RMS error over the whole
    /// batch; it also steps past t1 and interpolates back, where this stops
    /// exactly at t1 so the model never sees t > t1.) Each attempt calls the
    /// model on the samples still stepping, each at its own t.
    fn dopri5(
        &self,
        model: &mut Evaluator<'_, '_>,
        x0: Tensor,
        t0: f64,
        t1: f64,
        hooks: &mut Hooks<'_>,
    ) -> Result<Sampled> {
        if self.atol.is_nan() || self.atol <= 0.0 || self.rtol.is_nan() || self.rtol < 0.0 {
            bail!(
                "dopri5 needs atol > 0 and rtol ≥ 0, got {} and {}",
                self.atol,
                self.rtol
            );
        }
        let n = x0.dim(0)?;
        let span = t1 - t0;
        let mut x = x0;
        let mut t = vec![t0; n];
        let mut k1 = model.velocity(&x, &t)?;
        ensure_finite(&k1, "velocity", t0)?;
        preview_from_velocity(hooks, model.path, &x, &k1, &t)?;
        let mut h = self.initial_steps(model, &x, &k1, t0, span)?;
        let mut accepted = vec![0usize; n];
        let mut rejected = vec![0usize; n];
        let mut attempts = 0usize;
        loop {
            let active: Vec<usize> = (0..n).filter(|&i| t[i] < t1).collect();
            if active.is_empty() {
                break;
            }
            attempts += 1;
            if attempts > MAX_ATTEMPTS {
                bail!(
                    "dopri5 gave up after {MAX_ATTEMPTS} step attempts (t = {})",
                    min(&t)
                );
            }
            let rows = Rows::new(&active, n, x.device())?;
            let xa = rows.gather(&x)?;
            let k1a = rows.gather(&k1)?;
            let ta: Vec<f64> = active.iter().map(|&i| t[i]).collect();
            // The step, cut short where it would pass t1.
            let ha: Vec<f64> = active.iter().map(|&i| h[i].min(t1 - t[i])).collect();
            let h_col = per_sample(&ha, &xa)?;
            let at = |c: f64| -> Vec<f64> { ta.iter().zip(&ha).map(|(t, h)| t + c * h).collect() };

            let mut k = vec![k1a];
            for stage in 1..6 {
                let xs = (&xa + combine(A[stage], &k)?.broadcast_mul(&h_col)?)?;
                k.push(model.velocity(&xs, &at(C[stage]))?);
            }
            let y = (&xa + combine(&B5, &k)?.broadcast_mul(&h_col)?)?;
            let t_next = at(1.0);
            k.push(model.velocity(&y, &t_next)?);
            let err = combine(&B_ERR, &k)?.broadcast_mul(&h_col)?;
            let scale = ((xa.abs()?.maximum(&y.abs()?)? * self.rtol)? + self.atol)?;
            let ratios = rms_per_sample(&(err / scale)?)?;

            let mut accept = vec![false; active.len()];
            for (j, &i) in active.iter().enumerate() {
                let ratio = ratios[j];
                if !ratio.is_finite() {
                    bail!(
                        "dopri5: the step from t = {} produced non-finite values (NaN or \
                         infinity); stopped",
                        ta[j]
                    );
                }
                accept[j] = ratio <= 1.0;
                let lower = if accept[j] { 1.0 } else { MAX_SHRINK };
                let factor = if ratio == 0.0 {
                    MAX_GROWTH
                } else {
                    (SAFETY * ratio.powf(-0.2)).clamp(lower, MAX_GROWTH)
                };
                if accept[j] {
                    accepted[i] += 1;
                    // Land exactly on t1 when the step was cut to reach it.
                    t[i] = if ha[j] == t1 - ta[j] { t1 } else { t_next[j] };
                } else {
                    rejected[i] += 1;
                }
                h[i] = ha[j] * factor;
                if t[i] < t1 && h[i] <= span * 1e-12 {
                    bail!("dopri5: the step size underflowed at t = {}", t[i]);
                }
            }
            x = rows.scatter(&x, &y, &accept)?;
            // An overflow to ∞ in y can hide from the error ratio (∞ scale).
            ensure_finite(&x, "dopri5 step", min(&ta))?;
            k1 = rows.scatter(&k1, &k[6], &accept)?;
            preview_from_velocity(hooks, model.path, &x, &k1, &t)?;
            let covered = (min(&t) - t0) / span;
            hooks.progress((covered * PROGRESS_TOTAL as f64) as usize, PROGRESS_TOTAL)?;
        }
        Ok(Sampled {
            x,
            nfe: model.nfe,
            accepted_steps: accepted,
            rejected_steps: rejected,
        })
    }

    /// The first step per sample, chosen as Hairer, Nørsett & Wanner (II.4)
    /// and torchdiffeq do: one extra model call.
    fn initial_steps(
        &self,
        model: &mut Evaluator<'_, '_>,
        x: &Tensor,
        f0: &Tensor,
        t0: f64,
        span: f64,
    ) -> Result<Vec<f64>> {
        let n = x.dim(0)?;
        let scale = ((x.abs()? * self.rtol)? + self.atol)?;
        let d0 = rms_per_sample(&(x / &scale)?)?;
        let d1 = rms_per_sample(&(f0 / &scale)?)?;
        let h0: Vec<f64> = (0..n)
            .map(|i| {
                if d0[i] < 1e-5 || d1[i] < 1e-5 {
                    1e-6
                } else {
                    0.01 * d0[i] / d1[i]
                }
                .min(span)
            })
            .collect();
        let probe = (x + f0.broadcast_mul(&per_sample(&h0, x)?)?)?;
        let probe_t: Vec<f64> = h0.iter().map(|h| t0 + h).collect();
        let f1 = model.velocity(&probe, &probe_t)?;
        let d2 = rms_per_sample(&((f1 - f0)? / &scale)?)?;
        Ok((0..n)
            .map(|i| {
                let d = d1[i].max(d2[i] / h0[i]);
                let h1 = if d <= 1e-15 {
                    (h0[i] * 1e-3).max(1e-6)
                } else {
                    (0.01 / d).powf(0.2)
                };
                (100.0 * h0[i]).min(h1).min(span)
            })
            .collect())
    }
}

/// Shows the data estimate from the velocities `v` at per-sample times `t`.
fn preview_from_velocity(
    hooks: &mut Hooks<'_>,
    path: Interpolant,
    x: &Tensor,
    v: &Tensor,
    t: &[f64],
) -> Result<()> {
    if let Some(preview) = hooks.preview.as_mut() {
        let estimate = Combination::from_fn(t.len(), |i| {
            Prediction::Velocity.data_estimate(&path.at(t[i] as f32 as f64))
        })
        .apply(x, v)?;
        preview(min(t), &estimate);
    }
    Ok(())
}

/// Σ_j weights[j]·k[j] over the first `weights.len()` stages (zero weights skipped).
fn combine(weights: &[f64], k: &[Tensor]) -> Result<Tensor> {
    let mut sum: Option<Tensor> = None;
    for (w, k) in weights.iter().zip(k) {
        if *w == 0.0 {
            continue;
        }
        let term = (k * *w)?;
        sum = Some(match sum {
            Some(s) => (s + term)?,
            None => term,
        });
    }
    match sum {
        Some(s) => Ok(s),
        None => Ok(k[0].zeros_like()?),
    }
}

/// √(mean of squares) over each sample's elements, as f64.
fn rms_per_sample(x: &Tensor) -> Result<Vec<f64>> {
    Ok(x.sqr()?
        .flatten_from(1)?
        .mean(1)?
        .sqrt()?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?)
}

/// The smallest of `values` (NaN if any is NaN, so a bad time is not hidden).
fn min(values: &[f64]) -> f64 {
    values.iter().fold(f64::INFINITY, |a, &b| {
        if a.is_nan() || b.is_nan() {
            f64::NAN
        } else {
            a.min(b)
        }
    })
}

/// The rows of a batch that are still stepping.
struct Rows {
    active: Vec<usize>,
    n: usize,
    /// `None` when every row is active (no gathering needed).
    index: Option<Tensor>,
}

impl Rows {
    fn new(active: &[usize], n: usize, device: &candle_core::Device) -> Result<Self> {
        let index = if active.len() == n {
            None
        } else {
            let idx: Vec<u32> = active.iter().map(|&i| i as u32).collect();
            Some(Tensor::from_vec(idx, active.len(), device)?)
        };
        Ok(Self {
            active: active.to_vec(),
            n,
            index,
        })
    }

    fn gather(&self, full: &Tensor) -> Result<Tensor> {
        Ok(match &self.index {
            Some(index) => full.index_select(index, 0)?,
            None => full.clone(),
        })
    }

    /// `full` with the active rows whose `accept` is set replaced by the
    /// matching rows of `part`; the values are copied, never recomputed.
    fn scatter(&self, full: &Tensor, part: &Tensor, accept: &[bool]) -> Result<Tensor> {
        if self.index.is_none() && accept.iter().all(|&a| a) {
            return Ok(part.clone());
        }
        let mut source: Vec<u32> = (0..self.n as u32).collect();
        for (j, &i) in self.active.iter().enumerate() {
            if accept[j] {
                source[i] = (self.n + j) as u32;
            }
        }
        let source = Tensor::from_vec(source, self.n, full.device())?;
        Ok(Tensor::cat(&[full, part], 0)?.index_select(&source, 0)?)
    }
}
