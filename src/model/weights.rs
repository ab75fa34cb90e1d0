//! Named-tensor lookup used while assembling a model from a state dict.

use super::linear::Linear;
use crate::{Context, Result};
use candle_core::Tensor;
use std::collections::HashMap;

/// A view of a state dict under a key prefix (`blocks.3.` …).
#[derive(Clone, Copy)]
pub struct Weights<'a> {
    tensors: &'a HashMap<String, Tensor>,
    prefix: &'a str,
}

impl<'a> Weights<'a> {
    pub fn new(tensors: &'a HashMap<String, Tensor>) -> Self {
        Self {
            tensors,
            prefix: "",
        }
    }

    pub fn with_prefix(tensors: &'a HashMap<String, Tensor>, prefix: &'a str) -> Self {
        Self { tensors, prefix }
    }

    pub fn get(&self, name: &str) -> Result<Tensor> {
        let key = format!("{}{name}", self.prefix);
        self.tensors
            .get(&key)
            .cloned()
            .with_context(|| format!("missing parameter '{key}'"))
    }

    /// `{name}.weight` and `{name}.bias`.
    pub fn linear(&self, name: &str) -> Result<Linear> {
        Ok(Linear::new(
            self.get(&format!("{name}.weight"))?,
            self.get(&format!("{name}.bias"))?,
        ))
    }
}
