//! `dit merge-npz`: join the `.npz` files of a sharded `dit sample` run.

use anyhow::Result;
use clap::Args;
use dit::formats::npz;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(after_help = "Example:
  dit sample --ckpt DiT-XL-2-256x256.pt --vae sd-vae-ft-mse --num-samples 50000 --shard 0/2 --npz part0.npz
  dit sample --ckpt DiT-XL-2-256x256.pt --vae sd-vae-ft-mse --num-samples 50000 --shard 1/2 --npz part1.npz
  dit merge-npz part0.npz part1.npz -o samples-50k.npz

Shards are joined in the order given (give them in shard order); every array
must have the same image shape. Class labels stored beside the images are\njoined the same way.")]
pub struct MergeNpzArgs {
    /// The shards' .npz files, in shard order.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// The joined .npz.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(args: MergeNpzArgs) -> Result<()> {
    let shards: Vec<&std::path::Path> = args.shards.iter().map(|p| p.as_path()).collect();
    let merged = npz::merge_files(&shards, &args.output)?;
    for (name, shape) in merged {
        println!(
            "wrote {} '{name}' with shape {shape:?}",
            args.output.display()
        );
    }
    Ok(())
}
