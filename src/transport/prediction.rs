//! What the model predicts, and the conversions between predictions.
//!
//! With x_t = α·x1 + σ·x0 the three targets are the velocity
//! v = E[dα·x1 + dσ·x0 | x_t], the score ∇log p_t(x_t) = −E[x0 | x_t]/σ and
//! the noise E[x0 | x_t]. Each is linear in (x_t, any other one), which is
//! what [`Prediction::convert`] returns.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::combination::{times, Combination};
use super::interpolant::{Interpolant, PathCoefficients};
use crate::Result;

/// The model's output (SiT's `--prediction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// dx_t/dt given x_t (SiT's default).
    #[default]
    Velocity,
    /// ∇ log p_t(x_t).
    Score,
    /// E[x0 | x_t], the ε of DDPM.
    Noise,
}

impl Prediction {
    pub const ALL: [Prediction; 3] = [Prediction::Velocity, Prediction::Score, Prediction::Noise];

    /// `(a, b)` with `to = a·x_t + b·(this prediction)` at the coefficients `c`.
    pub fn convert(self, to: Prediction, c: &PathCoefficients) -> (f64, f64) {
        use Prediction::*;
        // α/dα rather than its inverse keeps the velocity-based forms finite at
        // t = 0 of Linear and GVP, where α = 0.
        let q = c.alpha_over_d_alpha();
        match (self, to) {
            (Velocity, Velocity) | (Score, Score) | (Noise, Noise) => (0.0, 1.0),
            (Score, Velocity) => (c.d_log_alpha, c.drift_variance),
            (Noise, Velocity) => (c.d_log_alpha, -c.drift_variance / c.sigma),
            (Velocity, Score) => {
                let var = c.sigma * c.sigma - q * c.d_sigma * c.sigma;
                (-1.0 / var, q / var)
            }
            (Noise, Score) => (0.0, -1.0 / c.sigma),
            (Velocity, Noise) => {
                let var = q * c.d_sigma - c.sigma;
                (-1.0 / var, q / var)
            }
            (Score, Noise) => (0.0, -c.sigma),
        }
    }

    /// `(a, b)` with the data estimate E[x1 | x_t] = a·x_t + b·(this prediction).
    pub fn data_estimate(self, c: &PathCoefficients) -> (f64, f64) {
        match self {
            // Solves x_t = α·x1 + σ·x0, v = dα·x1 + dσ·x0 for x1; the
            // determinant σ·dα − α·dσ is positive on all of [0, 1].
            Prediction::Velocity => {
                let det = c.sigma * c.d_alpha - c.alpha * c.d_sigma;
                (-c.d_sigma / det, c.sigma / det)
            }
            // Tweedie: E[x1 | x_t] = (x_t + σ²·score)/α.
            Prediction::Score => (1.0 / c.alpha, c.sigma * c.sigma / c.alpha),
            Prediction::Noise => (1.0 / c.alpha, -c.sigma / c.alpha),
        }
    }
}

impl Interpolant {
    /// x_t and the conditional velocity dα·x1 + dσ·x0 at per-sample times
    /// `t` `(N,)`: the training input and the velocity target.
    pub fn interpolate(&self, t: &Tensor, x0: &Tensor, x1: &Tensor) -> Result<(Tensor, Tensor)> {
        let coefs: Vec<PathCoefficients> = times(t)?.into_iter().map(|t| self.at(t)).collect();
        let n = coefs.len();
        let x_t = Combination::from_fn(n, |i| (coefs[i].sigma, coefs[i].alpha)).apply(x0, x1)?;
        let u_t =
            Combination::from_fn(n, |i| (coefs[i].d_sigma, coefs[i].d_alpha)).apply(x0, x1)?;
        Ok((x_t, u_t))
    }

    /// The `to` prediction equivalent to `out`, a `from` prediction at
    /// `(x_t, t)` with per-sample times `t` `(N,)`.
    pub fn convert(
        &self,
        from: Prediction,
        to: Prediction,
        x_t: &Tensor,
        out: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor> {
        let t = times(t)?;
        Combination::from_fn(t.len(), |i| from.convert(to, &self.at(t[i]))).apply(x_t, out)
    }

    /// E[x1 | x_t] from `out`, a `from` prediction at `(x_t, t)`.
    pub fn data_estimate(
        &self,
        from: Prediction,
        x_t: &Tensor,
        out: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor> {
        let t = times(t)?;
        Combination::from_fn(t.len(), |i| from.data_estimate(&self.at(t[i]))).apply(x_t, out)
    }
}
