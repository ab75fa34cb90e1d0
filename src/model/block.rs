//! The DiT block with adaLN-Zero conditioning (paper, Figure 3, right):
//!
//! ```text
//! shift₁ scale₁ gate₁ shift₂ scale₂ gate₂ = Linear(SiLU(c))
//! x ← x + gate₁ · Attention(LayerNorm(x)·(1 + scale₁) + shift₁)
//! x ← x + gate₂ · Mlp(LayerNorm(x)·(1 + scale₂) + shift₂)
//! ```
//!
//! Each line is a few fused ops of [`crate::ops`]: modulated LayerNorm, the
//! qkv projection with the tiled attention, the MLP's first layer with its
//! GELU, and the gated residual, which also adds the bias of the branch's
//! last linear layer.

use super::linear::Linear;
use super::weights::Weights;
use super::LN_EPS;
use crate::compute::Precision;
use crate::ops::{
    gated_residual, layer_norm_modulate, linear_gelu_packed_in, qkv_attention_packed_in,
};
use crate::Result;
use candle_core::Tensor;

/// Multi-head self-attention with a fused qkv projection; the output
/// projection's bias is left to the gated residual.
struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
}

impl Attention {
    fn forward_without_output_bias(&self, x: &Tensor, precision: Precision) -> Result<Tensor> {
        let (w, b) = (self.qkv.weight(), self.qkv.bias());
        let packing = Some(self.qkv.packing());
        let heads = qkv_attention_packed_in(precision, x, w, b, self.num_heads, packing)?;
        self.proj.forward_without_bias(&heads, precision)
    }
}

/// Linear → GELU (tanh approximation) → Linear, without the last bias.
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn forward_without_output_bias(&self, x: &Tensor, precision: Precision) -> Result<Tensor> {
        let (w, b, packing) = (self.fc1.weight(), self.fc1.bias(), self.fc1.packing());
        let hidden = linear_gelu_packed_in(precision, x, w, b, Some(packing))?;
        self.fc2.forward_without_bias(&hidden, precision)
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
            attn: Attention {
                qkv: w.linear("attn.qkv")?,
                proj: w.linear("attn.proj")?,
                num_heads,
            },
            mlp: Mlp {
                fc1: w.linear("mlp.fc1")?,
                fc2: w.linear("mlp.fc2")?,
            },
            modulation: w.linear("adaLN_modulation.1")?,
        })
    }

    /// Every linear map of the block.
    #[cfg(test)]
    pub(super) fn linears(&self) -> [&Linear; 5] {
        let (attn, mlp) = (&self.attn, &self.mlp);
        [&attn.qkv, &attn.proj, &mlp.fc1, &mlp.fc2, &self.modulation]
    }

    /// `x`: `(N, T, D)` tokens; `c_silu`: SiLU(c), `(N, D)`, shared by all
    /// blocks; the linear maps and attention compute in `precision`.
    pub fn forward(&self, x: &Tensor, c_silu: &Tensor, precision: Precision) -> Result<Tensor> {
        let m = self.modulation.forward(c_silu, precision)?.chunk(6, 1)?;
        let [shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp] = m.as_slice() else {
            unreachable!("chunk(6) yields six tensors")
        };
        let normed = layer_norm_modulate(x, shift_msa, scale_msa, LN_EPS)?;
        let h = self.attn.forward_without_output_bias(&normed, precision)?;
        let x = gated_residual(x, &h, self.attn.proj.bias(), gate_msa)?;
        let normed = layer_norm_modulate(&x, shift_mlp, scale_mlp, LN_EPS)?;
        let h = self.mlp.forward_without_output_bias(&normed, precision)?;
        gated_residual(&x, &h, self.mlp.fc2.bias(), gate_mlp)
    }
}
