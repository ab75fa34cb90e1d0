//! `dit extract`: encode an image folder once into a latent cache for
//! `dit train --latents`.

use super::compute_args::ComputeArgs;
use anyhow::{Context, Result};
use clap::Args;
use dit::data::latent_extract::{extract_latents_with, ExtractJob};
use dit::dist::{self, Communicator, SingleProcess};
use dit::vae::Vae;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  dit extract --data ~/imagenet/train --vae sd-vae-ft-mse --out latents/in256 --image-size 256
  dit train --latents latents/in256 --model DiT-XL/2

Each image is centre-cropped as in ADM/DiT and encoded with its mirror image;
the cache stores the posterior mean and log-variance of both (training draws
a fresh latent every step and keeps random flips), the labels, the class
names and the VAE's scaling factor. Interrupted? Run the same command again:
finished shards are kept.")]
pub struct ExtractArgs {
    /// Image folder with one sub-folder per class.
    #[arg(long)]
    pub data: PathBuf,
    /// The SD-VAE in diffusers layout (e.g. stabilityai/sd-vae-ft-mse).
    #[arg(long)]
    pub vae: PathBuf,
    /// Cache folder (created, or completed if it holds an unfinished extraction).
    #[arg(long)]
    pub out: PathBuf,
    /// Pixel size before encoding; latents are this divided by 8 for the SD-VAE.
    #[arg(long, default_value_t = 256)]
    pub image_size: usize,
    /// Images per encoder call (each is encoded with its mirror image).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Images per shard file.
    #[arg(long, default_value_t = 1024)]
    pub shard_size: usize,
    /// One rank of a multi-process job (`mpirun -np N`, `srun`; needs a
    /// build with `--features mpi`): the ranks share the shards of one
    /// folder that they all see (the files are those one process writes).
    #[arg(long)]
    pub distributed: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

pub fn run(args: ExtractArgs) -> Result<()> {
    let comm: Box<dyn Communicator> = match args.distributed {
        true => dist::from_launcher()?,
        false => Box::new(SingleProcess),
    };
    let leader = comm.rank() == 0;
    let compute = args.compute.compute()?;
    let vae = Vae::load(&args.vae, &compute.device)
        .and_then(|vae| vae.with_precision(compute.precision))
        .with_context(|| format!("loading the VAE {}", args.vae.display()))?;
    let job = ExtractJob {
        data: args.data.clone(),
        out: args.out.clone(),
        image_size: args.image_size,
        batch_size: args.batch_size,
        shard_size: args.shard_size,
        max_new_shards: None,
        vae_source: args.vae.display().to_string(),
    };
    let bar = match leader {
        true => ProgressBar::new(0),
        false => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images [{elapsed_precise}<{eta_precise}]",
        )
        .expect("valid template"),
    );
    let outcome = extract_latents_with(&vae, &job, &*comm, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let outcome = match (outcome, comm.world_size()) {
        (Err(err), w) if w > 1 => comm.abort(&format!("extracting latents: {err}")),
        (outcome, _) => outcome?,
    };
    comm.finish()?;
    if !leader {
        return Ok(());
    }
    let m = &outcome.manifest;
    println!(
        "{}: {} images, {} classes, latents {}×{}×{} (moments {:?}); {} shards written, {} already done{}",
        args.out.display(),
        m.num_images,
        m.class_names.len(),
        m.moments_shape.0 / 2,
        m.moments_shape.1,
        m.moments_shape.2,
        m.moments_shape,
        outcome.written.len(),
        outcome.skipped.len(),
        match comm.world_size() {
            1 => String::new(),
            w => format!(" by rank 0 of {w}; complete: {}", outcome.complete),
        }
    );
    Ok(())
}
