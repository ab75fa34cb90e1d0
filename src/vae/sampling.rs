//! Resolution changes between the VAE's levels.

use super::conv::Conv3x3;
use super::weights::Weights;
use crate::Result;
use candle_core::{Module, Tensor};
use candle_nn::Conv2d;

/// Halves H and W: zero-pad one row/column at the bottom/right only, then a
/// stride-2 3×3 conv (the LDM VAE's asymmetric padding).
#[derive(Clone, Debug)]
pub struct Downsample {
    conv: Conv2d,
}

impl Downsample {
    pub fn new(w: &Weights) -> Result<Self> {
        Ok(Self {
            conv: w.conv2d("conv", 0, 2)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?;
        Ok(self.conv.forward(&x)?)
    }
}

/// Doubles H and W: nearest-neighbour repeat, then a 3×3 conv.
#[derive(Clone, Debug)]
pub struct Upsample {
    conv: Conv3x3,
}

impl Upsample {
    pub fn new(w: &Weights) -> Result<Self> {
        Ok(Self {
            conv: w.conv3x3("conv")?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let x = x.upsample_nearest2d(2 * h, 2 * w)?;
        Ok(self.conv.forward(&x)?)
    }
}
