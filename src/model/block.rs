//! The DiT block with adaLN-Zero conditioning (paper, Figure 3, right).

use super::adaln::{layer_norm, modulate, LN_EPS};
use super::weights::Weights;
use crate::ops::{attention, gelu_tanh};
use anyhow::Result;
use candle_core::{Module, Tensor};
use candle_nn::Linear;

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

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Fused and tiled on the CPU (with its own backward); the unfused
        // composition on other devices.
        let out = attention(&self.qkv.forward(x)?, self.num_heads)?;
        Ok(self.proj.forward(&out)?)
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

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.fc2.forward(&gelu_tanh(&self.fc1.forward(x)?)?)?)
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
        let m = self.modulation.forward(c_silu)?.chunk(6, 1)?;
        let [shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp] = m.as_slice() else {
            unreachable!("chunk(6) yields six tensors")
        };
        let h = self
            .attn
            .forward(&modulate(&layer_norm(x, LN_EPS)?, shift_msa, scale_msa)?)?;
        let x = (x + h.broadcast_mul(&gate_msa.unsqueeze(1)?)?)?;
        let h = self
            .mlp
            .forward(&modulate(&layer_norm(&x, LN_EPS)?, shift_mlp, scale_mlp)?)?;
        Ok((&x + h.broadcast_mul(&gate_mlp.unsqueeze(1)?)?)?)
    }
}
