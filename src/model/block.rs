//! The DiT block with adaLN-Zero conditioning (paper, Figure 3, right).
//!
//! Built from the fused ops of [`crate::ops`] (each with its own backward,
//! and the unfused composition on devices without a kernel): modulated
//! LayerNorm, tiled attention, GELU, and the gated residual, which also adds
//! the bias of the branch's last linear layer.

use super::adaln::LN_EPS;
use super::weights::Weights;
use crate::ops::{self, attention, gated_residual, gelu_tanh, layer_norm_modulate};
use anyhow::{Context, Result};
use candle_core::Tensor;
use candle_nn::Linear;

/// `x·Wᵀ` over the last dim, without the layer's bias.
fn matmul_weight(x: &Tensor, layer: &Linear) -> Result<Tensor> {
    Ok(ops::linear(x, layer.weight(), None)?)
}

/// `x·Wᵀ + b` over the last dim.
pub(crate) fn linear(x: &Tensor, layer: &Linear) -> Result<Tensor> {
    Ok(ops::linear(x, layer.weight(), layer.bias())?)
}

fn bias(layer: &Linear) -> Result<&Tensor> {
    layer.bias().context("DiT linear layers have biases")
}

/// Multi-head self-attention with a fused qkv projection.
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
}

impl Attention {
    pub fn new(w: Weights, num_heads: usize) -> Result<Self> {
        Ok(Self {
            qkv: w.linear("attn.qkv")?,
            proj: w.linear("attn.proj")?,
            num_heads,
        })
    }

    /// The output projection's input times its weight; its bias is left out.
    fn forward_without_output_bias(&self, x: &Tensor) -> Result<Tensor> {
        let heads = attention(&linear(x, &self.qkv)?, self.num_heads)?;
        matmul_weight(&heads, &self.proj)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self
            .forward_without_output_bias(x)?
            .broadcast_add(bias(&self.proj)?)?)
    }
}

/// Linear → GELU (tanh approximation) → Linear.
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    pub fn new(w: Weights) -> Result<Self> {
        Ok(Self {
            fc1: w.linear("mlp.fc1")?,
            fc2: w.linear("mlp.fc2")?,
        })
    }

    fn forward_without_output_bias(&self, x: &Tensor) -> Result<Tensor> {
        matmul_weight(&gelu_tanh(&linear(x, &self.fc1)?)?, &self.fc2)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self
            .forward_without_output_bias(x)?
            .broadcast_add(bias(&self.fc2)?)?)
    }
}

/// A transformer block whose LayerNorms are modulated by the conditioning
/// and whose residual branches are gated, all six vectors regressed from c.
pub struct AdaLnZeroBlock {
    attn: Attention,
    mlp: Mlp,
    modulation: Linear,
}

impl AdaLnZeroBlock {
    pub fn new(w: Weights, num_heads: usize) -> Result<Self> {
        Ok(Self {
            attn: Attention::new(w, num_heads)?,
            mlp: Mlp::new(w)?,
            modulation: w.linear("adaLN_modulation.1")?,
        })
    }

    /// `x`: `(N, T, D)` tokens; `c_silu`: SiLU(c), `(N, D)`, shared by all blocks.
    pub fn forward(&self, x: &Tensor, c_silu: &Tensor) -> Result<Tensor> {
        let m = linear(c_silu, &self.modulation)?.chunk(6, 1)?;
        let [shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp] = m.as_slice() else {
            unreachable!("chunk(6) yields six tensors")
        };
        let h = self
            .attn
            .forward_without_output_bias(&layer_norm_modulate(x, shift_msa, scale_msa, LN_EPS)?)?;
        let x = gated_residual(x, &h, bias(&self.attn.proj)?, gate_msa)?;
        let h = self
            .mlp
            .forward_without_output_bias(&layer_norm_modulate(&x, shift_mlp, scale_mlp, LN_EPS)?)?;
        Ok(gated_residual(&x, &h, bias(&self.mlp.fc2)?, gate_mlp)?)
    }
}
