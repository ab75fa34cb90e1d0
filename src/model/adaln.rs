//! The two operations adaLN conditioning is built from, as the unfused
//! composition (the model itself uses the fused
//! [`crate::ops::layer_norm_modulate`], which falls back to this form).
//!
//! Written with differentiable tensor ops on purpose: candle's fused
//! `candle_nn::ops::layer_norm` has no backward and would silently cut the
//! gradient in training.

use candle_core::{Result, Tensor, D};

/// LayerNorm over the last dimension without affine parameters.
pub fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    centered.broadcast_div(&(var + eps)?.sqrt()?)
}

/// `x·(1 + scale) + shift` with per-sample `(N, D)` shift/scale over `(N, T, D)` tokens.
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let scale = (scale.unsqueeze(1)? + 1.0)?;
    x.broadcast_mul(&scale)?.broadcast_add(&shift.unsqueeze(1)?)
}

/// DiT's LayerNorm epsilon (blocks and final layer).
pub const LN_EPS: f64 = 1e-6;
