//! The last layer: modulated LayerNorm, then tokens → patch pixels.

use super::linear::Linear;
use super::weights::Weights;
use super::LN_EPS;
use crate::compute::Precision;
use crate::ops::layer_norm_modulate;
use crate::Result;
use candle_core::Tensor;

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

    pub fn forward(&self, x: &Tensor, c_silu: &Tensor, precision: Precision) -> Result<Tensor> {
        let m = self.modulation.forward(c_silu, precision)?.chunk(2, 1)?;
        let x = layer_norm_modulate(x, &m[0], &m[1], LN_EPS)?;
        self.linear.forward(&x, precision)
    }
}
