//! The last layer: modulated LayerNorm, then tokens → patch pixels.

use super::adaln::{layer_norm, modulate, LN_EPS};
use super::weights::Weights;
use anyhow::Result;
use candle_core::{Module, Tensor};
use candle_nn::Linear;

/// adaLN (shift, scale only: no gate) and a linear map to p·p·C_out values per token.
pub struct FinalLayer {
    linear: Linear,
    modulation: Linear,
}

impl FinalLayer {
    pub fn new(w: Weights) -> Result<Self> {
        Ok(Self {
            linear: w.linear("final_layer.linear")?,
            modulation: w.linear("final_layer.adaLN_modulation.1")?,
        })
    }

    pub fn forward(&self, x: &Tensor, c_silu: &Tensor) -> Result<Tensor> {
        let m = self.modulation.forward(c_silu)?.chunk(2, 1)?;
        let x = modulate(&layer_norm(x, LN_EPS)?, &m[0], &m[1])?;
        Ok(self.linear.forward(&x)?)
    }
}
