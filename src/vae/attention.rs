//! The single-head spatial self-attention of the VAE's mid block.

use super::weights::Weights;
use crate::Result;
use candle_core::{Module, Tensor};
use candle_nn::{GroupNorm, Linear};

/// GroupNorm, then softmax(q·kᵀ/√C)·v over all H·W positions with one head
/// as wide as the block, projected and added to the input.
#[derive(Clone, Debug)]
pub struct AttentionBlock {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl AttentionBlock {
    /// Expects the current names (`to_q`…`to_out.0`); older files are renamed
    /// on load (see `checkpoint`).
    pub fn new(w: &Weights, groups: usize) -> Result<Self> {
        Ok(Self {
            group_norm: w.group_norm("group_norm", groups)?,
            to_q: w.linear("to_q")?,
            to_k: w.linear("to_k")?,
            to_v: w.linear("to_v")?,
            to_out: w.linear("to_out.0")?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let tokens = self
            .group_norm
            .forward(x)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = self.to_q.forward(&tokens)?;
        let k = self.to_k.forward(&tokens)?;
        let v = self.to_v.forward(&tokens)?;
        let scale = 1.0 / (c as f64).sqrt();
        let scores = (q * scale)?.matmul(&k.t()?)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = self.to_out.forward(&probs.matmul(&v)?)?;
        let out = out.transpose(1, 2)?.reshape((b, c, h, w))?;
        Ok((out + x)?)
    }
}
