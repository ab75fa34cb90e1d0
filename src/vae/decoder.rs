//! Latent → image.

use super::config::VaeConfig;
use super::conv::Conv3x3;
use super::mid_block::MidBlock;
use super::resnet::ResnetBlock;
use super::sampling::Upsample;
use super::weights::Weights;
use crate::Result;
use candle_core::{Module, Tensor};
use candle_nn::GroupNorm;

/// One resolution level: layers+1 resnets, then a 2× upsample except at the last.
#[derive(Clone, Debug)]
struct UpBlock {
    resnets: Vec<ResnetBlock>,
    upsample: Option<Upsample>,
}

/// diffusers' `Decoder`: widths in reverse order of the encoder's, ending at
/// the input resolution.
#[derive(Clone, Debug)]
pub struct Decoder {
    conv_in: Conv3x3,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv3x3,
}

impl Decoder {
    pub fn new(w: &Weights, config: &VaeConfig) -> Result<Self> {
        let groups = config.norm_num_groups;
        let levels = config.block_out_channels.len();
        let up_blocks = (0..levels)
            .map(|i| {
                let block = w.pp(&format!("up_blocks.{i}"));
                let resnets = (0..=config.layers_per_block)
                    .map(|j| ResnetBlock::new(&block.pp(&format!("resnets.{j}")), groups))
                    .collect::<Result<_>>()?;
                let upsample = if i + 1 < levels {
                    Some(Upsample::new(&block.pp("upsamplers.0"))?)
                } else {
                    None
                };
                Ok(UpBlock { resnets, upsample })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            conv_in: w.conv3x3("conv_in")?,
            mid_block: MidBlock::new(&w.pp("mid_block"), groups, config.mid_block_add_attention)?,
            up_blocks,
            norm_out: w.group_norm("conv_norm_out", groups)?,
            conv_out: w.conv3x3("conv_out")?,
        })
    }

    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let x = self.conv_in.forward(z)?;
        let mut x = self.mid_block.forward(&x)?;
        for block in &self.up_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(&x)?;
            }
            if let Some(up) = &block.upsample {
                x = up.forward(&x)?;
            }
        }
        let x = self.norm_out.forward(&x)?.silu()?;
        Ok(self.conv_out.forward(&x)?)
    }
}
