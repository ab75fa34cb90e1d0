//! The Stable Diffusion VAE (diffusers' `AutoencoderKL`) that maps images to
//! the latent space DiT works in, computed exactly as diffusers does in f32.
//!
//! Scaling convention: [`Vae::encode`] and [`Vae::decode`] work on *raw* VAE
//! latents. DiT trains and samples on `to_latent(z) = z · 0.18215`; decode
//! its output with `vae.decode(&vae.from_latent(&x)?)`.
//!
//! ```no_run
//! # fn main() -> dit::Result<()> {
//! use dit::vae::Vae;
//! let device = candle_core::Device::Cpu;
//! let vae = Vae::load("sd-vae-ft-mse", &device)?;
//! # let images = candle_core::Tensor::zeros((1, 3, 256, 256), candle_core::DType::F32, &device)?;
//! let latents = vae.to_latent(&vae.encode(&images)?.sample_seeded(0)?)?;
//! let recon = vae.decode(&vae.from_latent(&latents)?)?; // ≈ images, in [-1, 1]
//! # Ok(()) }
//! ```

pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod conv;
pub mod decoder;
pub mod encoder;
pub mod mid_block;
pub mod params;
pub mod posterior;
pub mod resnet;
pub mod sampling;
pub mod weights;

pub use config::VaeConfig;
pub use posterior::Posterior;

use crate::compute::Precision;
use crate::{bail, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::Conv2d;
use decoder::Decoder;
use encoder::Encoder;
use std::collections::HashMap;
use std::path::Path;
use weights::Weights;

/// An AutoencoderKL ready for inference (f32, or its 3×3 convolutions in
/// bf16: [`Vae::with_precision`]).
#[derive(Clone, Debug)]
pub struct Vae {
    config: VaeConfig,
    /// The prepared state dict (shared with the layers), to rebuild them in
    /// another precision.
    tensors: HashMap<String, Tensor>,
    precision: Precision,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    device: Device,
}

impl Vae {
    /// Loads diffusers weights: a pipeline folder (uses `vae/`), a VAE folder
    /// (`config.json` + `diffusion_pytorch_model.safetensors`), or a
    /// safetensors file (with the `config.json` beside it if there is one,
    /// else the sd-vae-ft-mse configuration). Old attention names
    /// (`query`/`key`/`value`/`proj_attn`) are accepted.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Vae> {
        let located = checkpoint::locate(path.as_ref())?;
        let config = match &located.config {
            Some(config) => VaeConfig::from_json_file(config)?,
            None => VaeConfig::default(),
        };
        Self::load_with_config(&located.weights, config, device)
    }

    /// Loads a safetensors weight file with an explicit configuration.
    pub fn load_with_config(path: &Path, config: VaeConfig, device: &Device) -> Result<Vae> {
        config.validate()?;
        let tensors = checkpoint::read(path, &config, device)?;
        Self::build(config, tensors, Precision::F32)
    }

    /// Builds from an in-memory state dict (diffusers names, old or new);
    /// tensors are converted to f32 on `device`.
    pub fn from_tensors(
        config: VaeConfig,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Vae> {
        config.validate()?;
        let tensors = checkpoint::prepare(&config, tensors, device, "state dict")?;
        Self::build(config, tensors, Precision::F32)
    }

    /// The same network with its 3×3 convolutions (nearly all of its
    /// arithmetic) in `precision`; bf16 rounds their weights and inputs to
    /// bf16 and accumulates in f32. The norms, the mid-block attention, the
    /// 1×1 and stride-2 convolutions stay f32.
    pub fn with_precision(self, precision: Precision) -> Result<Vae> {
        if precision == self.precision {
            return Ok(self);
        }
        Self::build(self.config, self.tensors, precision)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    fn build(
        config: VaeConfig,
        tensors: HashMap<String, Tensor>,
        precision: Precision,
    ) -> Result<Vae> {
        let w = Weights::in_precision(&tensors, precision);
        let quant_conv = if config.use_quant_conv {
            Some(w.conv2d("quant_conv", 0, 1)?)
        } else {
            None
        };
        let post_quant_conv = if config.use_post_quant_conv {
            Some(w.conv2d("post_quant_conv", 0, 1)?)
        } else {
            None
        };
        Ok(Vae {
            encoder: Encoder::new(&w.pp("encoder"), &config)?,
            decoder: Decoder::new(&w.pp("decoder"), &config)?,
            quant_conv,
            post_quant_conv,
            device: w.device()?,
            config,
            tensors,
            precision,
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Where the weights live (and encoding and decoding run).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Images (N, in_channels, H, W) in [-1, 1] → posterior over raw latents
    /// (N, latent_channels, H/8, W/8 for the SD VAE).
    pub fn encode(&self, images: &Tensor) -> Result<Posterior> {
        check_input("images", images, self.config.in_channels)?;
        let images = images.to_dtype(DType::F32)?;
        let mut moments = self.encoder.forward(&images)?;
        if let Some(conv) = &self.quant_conv {
            moments = conv.forward(&moments)?;
        }
        Posterior::from_moments(&moments)
    }

    /// Raw latents (N, latent_channels, h, w) → images (N, out_channels, 8h, 8w),
    /// nominally in [-1, 1] but not clamped.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        check_input("latents", latents, self.config.latent_channels)?;
        let mut z = latents.to_dtype(DType::F32)?;
        if let Some(conv) = &self.post_quant_conv {
            z = conv.forward(&z)?;
        }
        self.decoder.forward(&z)
    }

    /// The config's `scaling_factor` (0.18215 for the SD VAE).
    pub fn scaling_factor(&self) -> f64 {
        self.config.scaling_factor
    }

    /// Raw VAE latents (encoder side) → diffusion latents: `(z − shift) · s`.
    pub fn to_latent(&self, z: &Tensor) -> Result<Tensor> {
        let shift = self.config.shift_factor.unwrap_or(0.0);
        Ok(z.affine(
            self.config.scaling_factor,
            -shift * self.config.scaling_factor,
        )?)
    }

    /// Diffusion latents → raw VAE latents (decoder side): `x / s + shift`.
    pub fn from_latent(&self, latents: &Tensor) -> Result<Tensor> {
        let shift = self.config.shift_factor.unwrap_or(0.0);
        Ok(latents.affine(1.0 / self.config.scaling_factor, shift)?)
    }
}

fn check_input(what: &str, x: &Tensor, channels: usize) -> Result<()> {
    match x.dims() {
        [_, c, _, _] if *c == channels => Ok(()),
        dims => bail!("VAE {what} must be (N, {channels}, H, W), got {dims:?}"),
    }
}
