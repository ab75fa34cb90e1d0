//! Image → moments of the latent posterior.

use super::config::VaeConfig;
use super::conv::Conv3x3;
use super::mid_block::MidBlock;
use super::resnet::ResnetBlock;
use super::sampling::Downsample;
use super::weights::Weights;
use crate::Result;
use candle_core::{Module, Tensor};
use candle_nn::GroupNorm;

/// One resolution level: resnets, then a 2× downsample except at the last level.
#[derive(Clone, Debug)]
struct DownBlock {
    resnets: Vec<ResnetBlock>,
    downsample: Option<Downsample>,
}

/// diffusers' `Encoder` with `double_z`: outputs 2·latent channels
/// (mean then log-variance) at 1/2^(levels−1) of the input size.
#[derive(Clone, Debug)]
pub struct Encoder {
    conv_in: Conv3x3,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv3x3,
}

impl Encoder {
    pub fn new(w: &Weights, config: &VaeConfig) -> Result<Self> {
        let groups = config.norm_num_groups;
        let levels = config.block_out_channels.len();
        let down_blocks = (0..levels)
            .map(|i| {
                let block = w.pp(&format!("down_blocks.{i}"));
                let resnets = (0..config.layers_per_block)
                    .map(|j| ResnetBlock::new(&block.pp(&format!("resnets.{j}")), groups))
                    .collect::<Result<_>>()?;
                let downsample = if i + 1 < levels {
                    Some(Downsample::new(&block.pp("downsamplers.0"))?)
                } else {
                    None
                };
                Ok(DownBlock {
                    resnets,
                    downsample,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            conv_in: w.conv3x3("conv_in")?,
            down_blocks,
            mid_block: MidBlock::new(&w.pp("mid_block"), groups, config.mid_block_add_attention)?,
            norm_out: w.group_norm("conv_norm_out", groups)?,
            conv_out: w.conv3x3("conv_out")?,
        })
    }

    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let mut x = self.conv_in.forward(images)?;
        for block in &self.down_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(&x)?;
            }
            if let Some(down) = &block.downsample {
                x = down.forward(&x)?;
            }
        }
        let x = self.mid_block.forward(&x)?;
        let x = self.norm_out.forward(&x)?.silu()?;
        Ok(self.conv_out.forward(&x)?)
    }
}
