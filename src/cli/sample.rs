//! `dit sample`: draw images from a checkpoint (grid, PNG files, `.npz`).

use super::checkpoint_args::CheckpointArgs;
use crate::diffusion::{GuidanceChannels, Sampler};
use crate::model::Dit;
use crate::sample::checkpoint_facts::{
    checkpoint_class_names, checkpoint_file, sampling_diffusion,
};
use crate::sample::job::check_decoder;
use crate::sample::{resolve_classes, ClassChoice, SampleJob, SampleSettings, Shard};
use crate::vae::Vae;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// Where the official weights come from; `dit` never downloads them.
pub const WEIGHTS_HELP: &str = "\
dit sample needs a checkpoint: --ckpt <file or folder>.
  Official DiT weights (facebookresearch/DiT release, no login needed):
    https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt   (256×256)
    https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-512x512.pt   (512×512)
  These work in the SD-VAE's latent space, so also pass --vae <folder>: the
  stabilityai/sd-vae-ft-mse repository on Hugging Face in diffusers layout
  (config.json + diffusion_pytorch_model.safetensors).
    dit sample --ckpt DiT-XL-2-256x256.pt --vae sd-vae-ft-mse --class 207,360,387,974,88,979,417,279
  A checkpoint of your own (dit train) or a diffusers DiT folder works too;
  pixel-space models need no --vae.";

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  dit sample --ckpt DiT-XL-2-256x256.pt --vae sd-vae-ft-mse --class 207,360,387,974,88,979,417,279
  dit sample --ckpt DiT-XL-2-256x256.pt --vae sd-vae-ft-mse --class \"golden retriever\" -n 16 --steps ddim50 --sampler ddim
  dit sample --ckpt runs/fashion-mnist --class sneaker --cfg-scale 3 --steps 50 --sampler dpm++ --out-dir samples/
  # FID batches, split over machines; then `dit merge-npz`:
  dit sample --ckpt DiT-XL-2-256x256.pt --vae sd-vae-ft-mse --cfg-scale 1.5 --num-samples 50000 --shard 0/4 --npz part0.npz

Without --class, classes are drawn uniformly at random per image. Image k's
noise and class depend only on (--seed, k), so shards, batch sizes and reruns
all give the same image k. Without -o, --out-dir or --npz a grid is written
to samples.png. Official weights: run `dit sample` without --ckpt for where to get them.")]
pub struct SampleArgs {
    /// A checkpoint: official .pt, dit train checkpoint or run folder,
    /// safetensors, diffusers folder.
    #[arg(long)]
    pub ckpt: Option<PathBuf>,
    /// SD-VAE folder (diffusers layout) to decode a latent model's samples.
    #[arg(long)]
    pub vae: Option<PathBuf>,
    /// Classes, as ids or names ("golden retriever", "tabby"): ImageNet's for
    /// 1000-class models, else the names stored by dit train. Repeat or
    /// separate with commas; the list repeats to fill -n.
    #[arg(long = "class", value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Classifier-free guidance scale (1 = none; the official sample.py uses 4).
    #[arg(long, default_value_t = 4.0)]
    pub cfg_scale: f64,
    /// Channels guidance mixes: 3 (as the official code, also for 4-channel
    /// latents) or all.
    #[arg(long, default_value = "3", value_parser = parse_guidance_channels)]
    pub guidance_channels: GuidanceChannels,
    /// Sampling steps: a count ("250"), "ddim50" (evenly strided) or
    /// per-section counts ("10,15,20").
    #[arg(long, default_value = "250")]
    pub steps: String,
    /// ddpm (as the paper), ddim or dpm++ (DPM-Solver++(2M), good at 10–50 steps).
    #[arg(long, default_value = "ddpm", value_parser = ["ddpm", "ddim", "dpm++"])]
    pub sampler: String,
    /// DDIM's η (0: deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// Clip the predicted x̂0 to [−1, 1] at every step: on by default for
    /// pixel-space models (as ADM's pixel samplers), off for latent models
    /// (as DiT's official sampler).
    #[arg(long, value_name = "true|false")]
    pub clip_denoised: Option<bool>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of images (default: one per --class, or 8).
    #[arg(short = 'n', long = "num-samples")]
    pub num_samples: Option<u64>,
    /// Produce only shard i of n (0-based, "i/n") of the --num-samples images.
    #[arg(long)]
    pub shard: Option<Shard>,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Grid PNG of all images.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Images per grid row (default: √N rounded up).
    #[arg(long)]
    pub nrow: Option<usize>,
    /// One PNG per image, named by global image index.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// An .npz for the ADM evaluator: arr_0, uint8, (N, H, W, 3).
    #[arg(long)]
    pub npz: Option<PathBuf>,
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
}

fn parse_guidance_channels(s: &str) -> Result<GuidanceChannels, String> {
    match s {
        "3" => Ok(GuidanceChannels::Official),
        "all" => Ok(GuidanceChannels::All),
        _ => Err(format!("'{s}': use 3 (official) or all")),
    }
}

fn sampler(args: &SampleArgs) -> Sampler {
    match args.sampler.as_str() {
        "ddim" => Sampler::Ddim { eta: args.eta },
        "dpm++" => Sampler::DpmSolverPP2M,
        _ => Sampler::Ddpm,
    }
}

pub fn run(args: SampleArgs) -> Result<()> {
    let Some(ckpt) = &args.ckpt else {
        bail!("{WEIGHTS_HELP}")
    };
    if !ckpt.exists() {
        bail!("{} does not exist.\n{WEIGHTS_HELP}", ckpt.display());
    }
    let ckpt = checkpoint_file(ckpt);
    let device = Device::Cpu;
    let model = Dit::load_with(&ckpt, &device, &args.checkpoint.load_options())
        .with_context(|| format!("loading {}", ckpt.display()))?;
    let vae = match &args.vae {
        Some(path) => Some(
            Vae::load(path, &device)
                .with_context(|| format!("loading the VAE {}", path.display()))?,
        ),
        None => None,
    };
    check_decoder(&model, vae.as_ref())?;

    let num_classes = model.config().num_classes;
    let classes = if args.classes.is_empty() {
        ClassChoice::Uniform { num_classes }
    } else {
        let names = checkpoint_class_names(&ckpt, num_classes);
        ClassChoice::Cycle(resolve_classes(&args.classes, names.as_ref(), num_classes)?)
    };
    let total = args.num_samples.unwrap_or(match &classes {
        ClassChoice::Cycle(list) => list.len() as u64,
        ClassChoice::Uniform { .. } => 8,
    });
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let settings = SampleSettings {
        steps: args.steps.clone(),
        sampler: sampler(&args),
        cfg_scale: args.cfg_scale,
        guidance_channels: args.guidance_channels,
        seed: args.seed,
        clip_denoised: args.clip_denoised.unwrap_or(vae.is_none()),
    };
    let job = SampleJob {
        model: &model,
        vae: vae.as_ref(),
        diffusion: sampling_diffusion(&ckpt, &model),
        settings,
        classes,
        indices: shard.range(total),
        batch_size: args.batch_size,
    };
    let n = job.indices.end - job.indices.start;
    eprintln!(
        "sampling images {}..{} of {total} with {} ({} steps, {}, guidance {})",
        job.indices.start,
        job.indices.end,
        model.config().describe(),
        args.steps,
        args.sampler,
        args.cfg_scale
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} model evaluations [{elapsed_precise}<{eta_precise}]",
        )
        .expect("valid template"),
    );
    let images = job.run(&mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let images = images?;

    let grid = match (&args.output, &args.out_dir, &args.npz) {
        (None, None, None) => Some(PathBuf::from("samples.png")),
        (grid, _, _) => grid.clone(),
    };
    if let Some(path) = &grid {
        let nrow = args.nrow.unwrap_or((n as f64).sqrt().ceil() as usize);
        images.save_grid(path, nrow)?;
        println!("wrote {} ({n} images)", path.display());
    }
    if let Some(dir) = &args.out_dir {
        images.save_each(dir)?;
        println!("wrote {n} PNGs to {}", dir.display());
    }
    if let Some(path) = &args.npz {
        images.save_npz(path)?;
        println!(
            "wrote {} (uint8, {}×{}×{}×3)",
            path.display(),
            n,
            images.height,
            images.width
        );
    }
    Ok(())
}
