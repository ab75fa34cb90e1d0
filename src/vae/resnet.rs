//! diffusers' `ResnetBlock2D` without time embedding, as the VAE uses it.

use super::conv::Conv3x3;
use super::weights::Weights;
use crate::Result;
use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, GroupNorm};

/// norm → SiLU → conv3×3, twice, plus the input (1×1-projected when the
/// width changes). Dropout is 0 and the output scale 1 in every VAE.
#[derive(Clone, Debug)]
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv3x3,
    norm2: GroupNorm,
    conv2: Conv3x3,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    pub fn new(w: &Weights, groups: usize) -> Result<Self> {
        let conv_shortcut = if w.contains("conv_shortcut.weight") {
            Some(w.conv2d("conv_shortcut", 0, 1)?)
        } else {
            None
        };
        Ok(Self {
            norm1: w.group_norm("norm1", groups)?,
            conv1: w.conv3x3("conv1")?,
            norm2: w.group_norm("norm2", groups)?,
            conv2: w.conv3x3("conv2")?,
            conv_shortcut,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x)?.silu()?)?;
        let h = self.conv2.forward(&self.norm2.forward(&h)?.silu()?)?;
        let skip = match &self.conv_shortcut {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        Ok((skip + h)?)
    }
}
