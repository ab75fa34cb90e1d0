//! Closed-form Gaussian KL and the discretised-Gaussian decoder likelihood,
//! written with differentiable tensor ops only (no fused kernels) so that the
//! loss backpropagates.

use crate::Result;
use candle_core::Tensor;

/// KL(N(μ1, e^{lv1}) ‖ N(μ2, e^{lv2})) elementwise, in nats.
pub fn normal_kl(
    mean1: &Tensor,
    log_var1: &Tensor,
    mean2: &Tensor,
    log_var2: &Tensor,
) -> Result<Tensor> {
    // ½(−1 + lv2 − lv1 + e^{lv1−lv2} + (μ1−μ2)² e^{−lv2})
    let diff = (mean1 - mean2)?;
    let inv_var2 = log_var2.neg()?.exp()?;
    let terms = ((log_var2 - log_var1)? + (log_var1 - log_var2)?.exp()?)?;
    let terms = (terms + diff.sqr()?.mul(&inv_var2)?)?;
    Ok(terms.affine(0.5, -0.5)?)
}

/// The tanh approximation of the standard normal CDF that the official
/// decoder likelihood uses; kept so losses match its numbers.
fn approx_standard_normal_cdf(x: &Tensor) -> Result<Tensor> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    // x·x·x rather than powf: powf goes through ln and is NaN for x < 0.
    let cube = x.sqr()?.mul(x)?;
    let inner = ((x + (cube * 0.044715)?)? * c)?;
    Ok(inner.tanh()?.affine(0.5, 0.5)?)
}

/// Half-width of a pixel bin: 8-bit values rescaled to [−1, 1] are 2/255 apart.
const HALF_BIN: f64 = 1.0 / 255.0;
/// Floor inside log so that empty bins give a large finite penalty, not −∞.
const LOG_FLOOR: f64 = 1e-12;
/// Beyond these, x0 is the extreme pixel value and its bin is open-ended.
const EDGE: f64 = 0.999;

/// log-likelihood of `x` (data in [−1, 1] quantised to 256 levels) under a
/// Gaussian with `means` and `log_scales` (log σ) discretised into pixel bins;
/// the outermost bins extend to ±∞. Elementwise, in nats.
pub fn discretized_gaussian_log_likelihood(
    x: &Tensor,
    means: &Tensor,
    log_scales: &Tensor,
) -> Result<Tensor> {
    let centered = (x - means)?;
    let inv_stdv = log_scales.neg()?.exp()?;
    let cdf_plus = approx_standard_normal_cdf(&(centered.affine(1.0, HALF_BIN)? * &inv_stdv)?)?;
    let cdf_min = approx_standard_normal_cdf(&(centered.affine(1.0, -HALF_BIN)? * &inv_stdv)?)?;
    let log_cdf_plus = cdf_plus.maximum(LOG_FLOOR)?.log()?;
    let log_one_minus_cdf_min = cdf_min.affine(-1.0, 1.0)?.maximum(LOG_FLOOR)?.log()?;
    let log_cdf_delta = (cdf_plus - cdf_min)?.maximum(LOG_FLOOR)?.log()?;
    let is_low = x.lt(-EDGE)?;
    let is_high = x.gt(EDGE)?;
    let inner = is_high.where_cond(&log_one_minus_cdf_min, &log_cdf_delta)?;
    Ok(is_low.where_cond(&log_cdf_plus, &inner)?)
}
