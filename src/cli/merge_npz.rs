//! `dit merge-npz`: join the `.npz` files of a sharded `dit sample` run.

use crate::sample::npz::{concatenate, read_npz, write_npz};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(after_help = "Example:
  dit sample --ckpt DiT-XL-2-256x256.pt --vae sd-vae-ft-mse --num-samples 50000 --shard 0/2 --npz part0.npz
  dit sample --ckpt DiT-XL-2-256x256.pt --vae sd-vae-ft-mse --num-samples 50000 --shard 1/2 --npz part1.npz
  dit merge-npz part0.npz part1.npz -o samples-50k.npz

Shards are joined in the order given (give them in shard order); every array
must have the same image shape.")]
pub struct MergeNpzArgs {
    /// The shards' .npz files, in shard order.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// The joined .npz.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(args: MergeNpzArgs) -> Result<()> {
    let arrays = args
        .shards
        .iter()
        .map(|p| read_npz(p))
        .collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = args
        .shards
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    // Arrays are numbered in the order given; name them in the error.
    let merged = concatenate(&arrays).with_context(|| format!("merging {}", names.join(", ")))?;
    write_npz(&args.output, &merged)?;
    println!(
        "wrote {} with shape {:?}",
        args.output.display(),
        merged.shape
    );
    Ok(())
}
