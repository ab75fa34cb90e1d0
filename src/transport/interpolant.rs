//! The interpolants x_t = α_t·x1 + σ_t·x0 between noise x0 (t = 0) and data
//! x1 (t = 1), and their coefficients at one time.

use serde::{Deserialize, Serialize};
use std::f64::consts::FRAC_PI_2;

/// β at the noise end (t = 0) of the variance-preserving path.
pub const VP_BETA_MAX: f64 = 20.0;
/// β at the data end (t = 1) of the variance-preserving path.
pub const VP_BETA_MIN: f64 = 0.1;

/// Which path joins noise and data (SiT's `--path-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolant {
    /// α = t, σ = 1 − t: rectified flow / flow matching with a straight path.
    Linear,
    /// α = sin(πt/2), σ = cos(πt/2): α² + σ² = 1 ("generalised VP").
    Gvp,
    /// The score-SDE VP path with β linear from 0.1 (data) to 20 (noise), in
    /// SiT's time direction: log α = −¼(1−t)²(β_max − β_min) − ½(1−t)β_min,
    /// σ = √(1 − α²). α(0) ≈ 0.0066, so t = 0 is not exactly pure noise.
    Vp,
}

impl Interpolant {
    pub const ALL: [Interpolant; 3] = [Interpolant::Linear, Interpolant::Gvp, Interpolant::Vp];

    /// The name SiT's `--path-type` uses.
    pub fn official_name(self) -> &'static str {
        match self {
            Interpolant::Linear => "Linear",
            Interpolant::Gvp => "GVP",
            Interpolant::Vp => "VP",
        }
    }

    /// All coefficients at time `t`. Exact at the ends where they are
    /// finite; some are infinite there (the ratio dα/α at t = 0 for Linear and
    /// GVP, dσ at t = 1 for VP), which is why the samplers keep away from them.
    pub fn at(self, t: f64) -> PathCoefficients {
        match self {
            Interpolant::Linear => {
                let sigma = 1.0 - t;
                PathCoefficients::new(t, t, sigma, 1.0, -1.0, 1.0 / t)
            }
            Interpolant::Gvp => {
                let (sin, cos) = (FRAC_PI_2 * t).sin_cos();
                PathCoefficients::new(
                    t,
                    sin,
                    cos,
                    FRAC_PI_2 * cos,
                    -FRAC_PI_2 * sin,
                    FRAC_PI_2 * cos / sin,
                )
            }
            Interpolant::Vp => {
                let s = 1.0 - t;
                let log_alpha = -0.25 * s * s * (VP_BETA_MAX - VP_BETA_MIN) - 0.5 * s * VP_BETA_MIN;
                let half_beta = 0.5 * (VP_BETA_MIN + s * (VP_BETA_MAX - VP_BETA_MIN));
                let alpha = log_alpha.exp();
                // σ² = 1 − α² = −expm1(2 log α), exact near t = 1 where α → 1.
                let sigma = (-(2.0 * log_alpha).exp_m1()).sqrt();
                let d_alpha = alpha * half_beta;
                // d(σ²)/dt = −2α·dα.
                let d_sigma = -alpha * d_alpha / sigma;
                let mut c = PathCoefficients::new(t, alpha, sigma, d_alpha, d_sigma, half_beta);
                // Equal to the general formula (α² + σ² = 1), without its 0·∞ at t = 1.
                c.drift_variance = half_beta;
                c
            }
        }
    }
}

/// α, σ, their time derivatives and the derived quantities at one t.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PathCoefficients {
    pub t: f64,
    pub alpha: f64,
    pub sigma: f64,
    pub d_alpha: f64,
    pub d_sigma: f64,
    /// dα/α, the linear part of the velocity in x (infinite where α = 0).
    pub d_log_alpha: f64,
    /// (dα/α)·σ² − σ·dσ: the coefficient of the score in the velocity,
    /// v = (dα/α)·x + drift_variance·∇log p_t. SiT's "SBDM" diffusion and its
    /// loss weights use it; for VP it is β(t)/2.
    pub drift_variance: f64,
}

impl PathCoefficients {
    fn new(t: f64, alpha: f64, sigma: f64, d_alpha: f64, d_sigma: f64, d_log_alpha: f64) -> Self {
        Self {
            t,
            alpha,
            sigma,
            d_alpha,
            d_sigma,
            d_log_alpha,
            drift_variance: d_log_alpha * sigma * sigma - sigma * d_sigma,
        }
    }

    /// α/dα, finite at t = 0 where dα/α is not.
    pub fn alpha_over_d_alpha(&self) -> f64 {
        self.alpha / self.d_alpha
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences of α and σ agree with the stated derivatives.
    #[test]
    fn derivatives_match_finite_differences() {
        for path in Interpolant::ALL {
            for &t in &[0.05, 0.3, 0.5, 0.8, 0.95] {
                let h = 1e-6;
                let (lo, mid, hi) = (path.at(t - h), path.at(t), path.at(t + h));
                let da = (hi.alpha - lo.alpha) / (2.0 * h);
                let ds = (hi.sigma - lo.sigma) / (2.0 * h);
                let err_a = (da - mid.d_alpha).abs() / mid.d_alpha.abs().max(1.0);
                let err_s = (ds - mid.d_sigma).abs() / mid.d_sigma.abs().max(1.0);
                assert!(err_a < 1e-7, "{path:?} t={t}: dα {da} vs {}", mid.d_alpha);
                assert!(err_s < 1e-7, "{path:?} t={t}: dσ {ds} vs {}", mid.d_sigma);
            }
        }
    }
}
