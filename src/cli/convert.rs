//! `dit convert`: any supported checkpoint → our safetensors.

use super::checkpoint_args::CheckpointArgs;
use anyhow::{bail, Result};
use candle_core::Device;
use clap::Args;
use dit::model::{checkpoint, Dit};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  dit convert DiT-XL-2-256x256.pt dit-xl-2-256.safetensors")]
pub struct ConvertArgs {
    /// Input: .pt/.pth (released state dict or train.py checkpoint), .safetensors, or a diffusers folder.
    pub input: PathBuf,
    /// Output .safetensors file (official parameter names, configuration in the metadata).
    pub output: PathBuf,
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    if args.output.extension().is_none_or(|e| e != "safetensors") {
        bail!("output {} must end in .safetensors", args.output.display());
    }
    let (config, tensors) =
        checkpoint::read(&args.input, &Device::Cpu, &args.checkpoint.load_options())?;
    // Building the model checks every shape before anything is written.
    Dit::from_tensors(config.clone(), &tensors)?;
    checkpoint::save(&args.output, &config, &tensors)?;
    println!(
        "wrote {} ({}, {} tensors)",
        args.output.display(),
        config.describe(),
        tensors.len()
    );
    Ok(())
}
