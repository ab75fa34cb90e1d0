//! A linear layer `x·Wᵀ + b` in the official parameter layout, computed by
//! the fused [`crate::ops::linear_in`] in the model's precision.

use crate::compute::Precision;
use crate::ops;
use crate::Result;
use candle_core::Tensor;

/// `W` `(out, in)` and `b` `(out,)`, as `nn.Linear` stores them.
/// Sampling reuses the weight's bf16 packing across calls
/// ([`ops::WeightPacking`]).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
    packing: ops::WeightPacking,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Tensor) -> Self {
        Self {
            weight,
            bias,
            packing: ops::WeightPacking::default(),
        }
    }

    /// `x·Wᵀ + b` over the last dim.
    pub fn forward(&self, x: &Tensor, precision: Precision) -> Result<Tensor> {
        ops::linear_packed_in(
            precision,
            x,
            &self.weight,
            Some(&self.bias),
            Some(&self.packing),
        )
    }

    /// `x·Wᵀ` without the bias: the adaLN-Zero blocks add the bias of a
    /// branch's last layer inside the gated residual instead.
    pub fn forward_without_bias(&self, x: &Tensor, precision: Precision) -> Result<Tensor> {
        ops::linear_packed_in(precision, x, &self.weight, None, Some(&self.packing))
    }

    /// The weight's reusable bf16 packing (for the fused ops that take the
    /// weight: qkv attention, linear + GELU).
    pub fn packing(&self) -> &ops::WeightPacking {
        &self.packing
    }

    /// `x·Wᵀ + b` as candle's unfused product, as the official `nn.Linear`
    /// computes it (for the small timestep MLP, where fusing gains nothing).
    pub fn forward_unfused(&self, x: &Tensor, precision: Precision) -> Result<Tensor> {
        ops::linear_reference_in(precision, x, &self.weight, Some(&self.bias))
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}
