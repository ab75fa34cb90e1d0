//! Classifier-free guidance (Ho & Salimans 2022) as DiT applies it.
//!
//! The batch holds the conditional half first and the null-class half second.
//! The guided noise prediction replaces both halves, so the sampler keeps
//! stepping a doubled batch whose halves stay identical; the variance channels
//! pass through untouched from each half.

use crate::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Which output channels guidance mixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuidanceChannels {
    /// The official release mixes only the first 3 channels, even for 4-channel
    /// latents; its published FIDs were measured this way. For models with fewer
    /// than 3 input channels we stop at the ε channels rather than mixing the
    /// variance prediction.
    Official,
    /// Every ε channel (all `in_channels`).
    All,
}

impl GuidanceChannels {
    pub fn count(self, in_channels: usize) -> usize {
        match self {
            GuidanceChannels::Official => in_channels.min(3),
            GuidanceChannels::All => in_channels,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierFreeGuidance {
    /// 1.0 means no guidance; the official `sample.py` default is 4.0.
    pub scale: f64,
    pub channels: GuidanceChannels,
}

impl ClassifierFreeGuidance {
    pub fn new(scale: f64, channels: GuidanceChannels) -> Self {
        Self { scale, channels }
    }

    /// Mixes a doubled-batch model output `(2N, C_out, ...)` (conditional rows,
    /// then unconditional rows) from a model with `in_channels` ε channels.
    ///
    /// Written as `s·cond + (1−s)·uncond` so that s = 1 returns the conditional
    /// prediction and s = 0 the unconditional one bit for bit.
    pub fn combine(&self, out: &Tensor, in_channels: usize) -> Result<Tensor> {
        let n2 = out.dim(0)?;
        if n2 % 2 != 0 {
            crate::bail!("guidance needs an even batch (cond then null class), got {n2}");
        }
        let n = n2 / 2;
        let c_out = out.dim(1)?;
        let k = self.channels.count(in_channels).min(c_out);
        let eps = out.narrow(1, 0, k)?;
        let cond = eps.narrow(0, 0, n)?;
        let uncond = eps.narrow(0, n, n)?;
        let mixed = ((cond * self.scale)? + (uncond * (1.0 - self.scale))?)?;
        let eps = Tensor::cat(&[&mixed, &mixed], 0)?;
        if k == c_out {
            return Ok(eps);
        }
        let rest = out.narrow(1, k, c_out - k)?;
        Ok(Tensor::cat(&[&eps, &rest], 1)?)
    }
}

/// Doubles a batch for guidance: inputs and timesteps repeated, labels followed
/// by the null class.
pub fn double_batch(
    x: &Tensor,
    t: &Tensor,
    y: &Tensor,
    null_class: u32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let null = Tensor::full(null_class, y.dims(), y.device())?.to_dtype(y.dtype())?;
    Ok((
        Tensor::cat(&[x, x], 0)?,
        Tensor::cat(&[t, t], 0)?,
        Tensor::cat(&[y, &null], 0)?,
    ))
}
