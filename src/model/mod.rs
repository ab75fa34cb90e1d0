//! The Diffusion Transformer (Peebles & Xie 2022), computed exactly as the
//! official PyTorch release, with its checkpoint formats.

pub mod block;
pub mod checkpoint;
pub mod config;
pub mod dit;
pub mod embed;
pub mod final_layer;
pub mod linear;
pub mod params;
pub mod weights;

pub use checkpoint::{LoadOptions, WeightSet};
pub use config::DitConfig;
pub use dit::Dit;

use crate::Result;

/// DiT's LayerNorm epsilon (blocks and final layer).
pub const LN_EPS: f64 = 1e-6;
use candle_core::Device;
use std::path::Path;

impl Dit {
    /// Loads any supported checkpoint (native safetensors, official `.pt`,
    /// `train.py` dictionaries — EMA weights —, diffusers folders) in f32.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Dit> {
        Self::load_with(path, device, &LoadOptions::default())
    }

    pub fn load_with(path: impl AsRef<Path>, device: &Device, opts: &LoadOptions) -> Result<Dit> {
        let (config, tensors) = checkpoint::read(path.as_ref(), device, opts)?;
        Dit::from_tensors(config, &tensors)
    }
}
