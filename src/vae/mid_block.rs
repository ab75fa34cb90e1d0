//! The lowest-resolution stage shared by encoder and decoder.

use super::attention::AttentionBlock;
use super::resnet::ResnetBlock;
use super::weights::Weights;
use crate::Result;
use candle_core::Tensor;

/// resnet → attention → resnet at constant width (diffusers' `UNetMidBlock2D`
/// without time embedding); the attention is absent when the config says so.
#[derive(Clone, Debug)]
pub struct MidBlock {
    resnet_in: ResnetBlock,
    attention: Option<AttentionBlock>,
    resnet_out: ResnetBlock,
}

impl MidBlock {
    pub fn new(w: &Weights, groups: usize, attention: bool) -> Result<Self> {
        let attention = if attention {
            Some(AttentionBlock::new(&w.pp("attentions.0"), groups)?)
        } else {
            None
        };
        Ok(Self {
            resnet_in: ResnetBlock::new(&w.pp("resnets.0"), groups)?,
            attention,
            resnet_out: ResnetBlock::new(&w.pp("resnets.1"), groups)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.resnet_in.forward(x)?;
        if let Some(attention) = &self.attention {
            x = attention.forward(&x)?;
        }
        self.resnet_out.forward(&x)
    }
}
