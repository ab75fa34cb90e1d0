//! AutoencoderKL hyper-parameters, read from diffusers' `config.json`.

use crate::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Scale that maps SD-VAE posterior samples to unit-variance diffusion latents.
pub const SD_SCALING_FACTOR: f64 = 0.18215;

/// The fields of diffusers' `AutoencoderKL` configuration that fix the
/// network; unknown fields (`_class_name`, `force_upcast`, …) are ignored.
/// The default is `stabilityai/sd-vae-ft-mse` (and `-ema`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    /// Width of each resolution level; every level but the last halves (encoder)
    /// or doubles (decoder) the spatial size.
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub act_fn: String,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    /// Latents fed to the diffusion model are `(z − shift_factor) · scaling_factor`.
    pub scaling_factor: f64,
    pub shift_factor: Option<f64>,
    /// Image size the VAE was trained at (informational).
    pub sample_size: usize,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub mid_block_add_attention: bool,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            norm_num_groups: 32,
            act_fn: "silu".into(),
            down_block_types: vec!["DownEncoderBlock2D".into(); 4],
            up_block_types: vec!["UpDecoderBlock2D".into(); 4],
            scaling_factor: SD_SCALING_FACTOR,
            shift_factor: None,
            sample_size: 256,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }
}

impl VaeConfig {
    /// Reads and validates a diffusers `config.json`.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an AutoencoderKL config", path.display()))?;
        config
            .validate()
            .with_context(|| format!("unsupported VAE config {}", path.display()))?;
        Ok(config)
    }

    /// Rejects configurations this implementation does not compute.
    pub fn validate(&self) -> Result<()> {
        let levels = self.block_out_channels.len();
        if levels == 0 {
            bail!("block_out_channels is empty");
        }
        if self.layers_per_block == 0 {
            bail!("layers_per_block must be at least 1");
        }
        if self.act_fn != "silu" {
            bail!("act_fn '{}' is not supported (only silu)", self.act_fn);
        }
        for (field, types, expected) in [
            (
                "down_block_types",
                &self.down_block_types,
                "DownEncoderBlock2D",
            ),
            ("up_block_types", &self.up_block_types, "UpDecoderBlock2D"),
        ] {
            if types.len() != levels {
                bail!(
                    "{field} has {} entries but block_out_channels has {levels}",
                    types.len()
                );
            }
            if let Some(other) = types.iter().find(|t| *t != expected) {
                bail!("{field}: block type '{other}' is not supported (only {expected})");
            }
        }
        let groups = self.norm_num_groups;
        if groups == 0 {
            bail!("norm_num_groups must be at least 1");
        }
        if let Some(c) = self.block_out_channels.iter().find(|c| **c % groups != 0) {
            bail!("norm_num_groups {groups} does not divide block width {c}");
        }
        if !(self.scaling_factor.is_finite() && self.scaling_factor > 0.0) {
            bail!(
                "scaling_factor must be positive, got {}",
                self.scaling_factor
            );
        }
        Ok(())
    }

    /// Spatial down-sampling factor between images and latents (8 for SD).
    pub fn downscale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}
