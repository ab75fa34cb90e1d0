//! Named-tensor lookup while assembling the network from a checked state dict.

use super::conv::Conv3x3;
use crate::compute::Precision;
use crate::{Context, Result};
use candle_core::Tensor;
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, Linear};
use std::collections::HashMap;

/// Torch's `nn.GroupNorm` eps as diffusers builds every VAE norm.
pub const NORM_EPS: f64 = 1e-6;

/// A view of a state dict under a key prefix (`encoder.mid_block.` …).
#[derive(Clone)]
pub struct Weights<'a> {
    tensors: &'a HashMap<String, Tensor>,
    prefix: String,
    /// The arithmetic of the 3×3 convolutions built from this view.
    precision: Precision,
}

impl<'a> Weights<'a> {
    pub fn new(tensors: &'a HashMap<String, Tensor>) -> Self {
        Self::in_precision(tensors, Precision::F32)
    }

    pub fn in_precision(tensors: &'a HashMap<String, Tensor>, precision: Precision) -> Self {
        Self {
            tensors,
            prefix: String::new(),
            precision,
        }
    }

    /// The view one level down: `pp("resnets.0")` reads `…resnets.0.*`.
    pub fn pp(&self, name: &str) -> Self {
        Self {
            tensors: self.tensors,
            prefix: format!("{}{name}.", self.prefix),
            precision: self.precision,
        }
    }

    pub fn get(&self, name: &str) -> Result<Tensor> {
        let key = format!("{}{name}", self.prefix);
        self.tensors
            .get(&key)
            .cloned()
            .with_context(|| format!("missing VAE parameter '{key}'"))
    }

    /// The device the tensors are on (they are all on one).
    pub fn device(&self) -> Result<candle_core::Device> {
        self.tensors
            .values()
            .next()
            .map(|t| t.device().clone())
            .ok_or_else(|| crate::err!("the VAE state dict is empty"))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(&format!("{}{name}", self.prefix))
    }

    /// A conv with bias; `padding` applies to all four sides.
    pub fn conv2d(&self, name: &str, padding: usize, stride: usize) -> Result<Conv2d> {
        let w = self.pp(name);
        let config = Conv2dConfig {
            padding,
            stride,
            ..Default::default()
        };
        Ok(Conv2d::new(w.get("weight")?, Some(w.get("bias")?), config))
    }

    /// A 3×3 conv with bias and padding 1 (every stride-1 conv of the VAE),
    /// in the view's precision.
    pub fn conv3x3(&self, name: &str) -> Result<Conv3x3> {
        let w = self.pp(name);
        Conv3x3::new_in(self.precision, w.get("weight")?, w.get("bias")?)
    }

    pub fn linear(&self, name: &str) -> Result<Linear> {
        let w = self.pp(name);
        Ok(Linear::new(w.get("weight")?, Some(w.get("bias")?)))
    }

    pub fn group_norm(&self, name: &str, groups: usize) -> Result<GroupNorm> {
        let w = self.pp(name);
        let weight = w.get("weight")?;
        let channels = weight.dim(0)?;
        Ok(GroupNorm::new(
            weight,
            w.get("bias")?,
            channels,
            groups,
            NORM_EPS,
        )?)
    }
}
