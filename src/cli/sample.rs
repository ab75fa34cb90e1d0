//! `dit sample`: draw images from a checkpoint (grid, PNG files, `.npz`).

use super::checkpoint_args::CheckpointArgs;
use super::compute_args::ComputeArgs;
use super::objective_args::ObjectiveArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use dit::diffusion::{GuidanceChannels, Sampler};
use dit::dist::{self, BatchSplit, Communicator, SingleProcess};
use dit::model::Dit;
use dit::sample::checkpoint_facts::{checkpoint_class_names, checkpoint_file, sampling_objective};
use dit::sample::job::check_decoder;
use dit::sample::{
    generator::DIFFUSION_SAMPLERS, resolve_classes, ClassChoice, ClassNames, DefaultSampling,
    SampleJob, SampleSettings, SampledImages, SamplerChoice, Shard,
};
use dit::transport::{ObjectiveConfig, OdeConfig, SamplerConfig};
use dit::vae::Vae;
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
  dit sample --ckpt runs/fashion-mnist --per-class 8 --sheet -o sheet.png   # a labelled row per class
  # FID batches, split over machines; then `dit merge-npz`:
  dit sample --ckpt DiT-XL-2-256x256.pt --vae sd-vae-ft-mse --cfg-scale 1.5 --num-samples 50000 --shard 0/4 --npz part0.npz

Without --class, classes are drawn uniformly at random per image. Image k's
noise and class depend only on (--seed, k), so shards, batch sizes and reruns
all give the same image k (up to float rounding where the batch size or
--batch-split differs: a pixel value may move by one level). Without -o, --out-dir or --npz a grid is written
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
    /// Sampling steps. DDPM models: a count ("250"), "ddim50" (evenly
    /// strided) or per-section counts ("10,15,20"). SiT models: grid points
    /// of the fixed-step ODE/SDE (unused by ode-dopri5). [default: 250 for
    /// ddpm and latent-space models, 25 for pixel-space models]
    #[arg(long)]
    pub steps: Option<String>,
    /// DDPM models: ddpm (as the paper), ddim or dpm++ (DPM-Solver++(2M),
    /// good at 10–50 steps). SiT models: ode-dopri5 (adaptive, SiT's
    /// default), ode-heun, ode-euler, sde-euler or sde-heun. [default:
    /// latent-space models as their papers, ddpm or ode-dopri5; pixel-space
    /// models (the embedded demo) the fast dpm++ or ode-heun]
    #[arg(long, value_parser = ["ddpm", "ddim", "dpm++", "ode-dopri5", "ode-heun", "ode-euler", "sde-euler", "sde-heun"])]
    pub sampler: Option<String>,
    /// ode-dopri5's absolute and relative error tolerances.
    #[arg(long, default_value_t = 1e-6)]
    pub atol: f64,
    #[arg(long, default_value_t = 1e-3)]
    pub rtol: f64,
    /// SDE samplers: the diffusion coefficient's form (constant, sbdm,
    /// sigma, linear, decreasing, increasing-decreasing).
    #[arg(long, default_value = "sigma")]
    pub diffusion_form: String,
    /// SDE samplers: scale of the diffusion coefficient.
    #[arg(long, default_value_t = 1.0)]
    pub diffusion_norm: f64,
    /// SDE samplers: the last step to t = 1 (none, mean, tweedie, euler).
    #[arg(long, default_value = "mean")]
    pub last_step: String,
    /// SDE samplers: the interval left for the last step.
    #[arg(long, default_value_t = 0.04)]
    pub last_step_size: f64,
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
    /// N images of each class (of --class, or of every class up to 100),
    /// one grid row per class: with --sheet, a labelled contact sheet.
    #[arg(long, value_name = "N", conflicts_with = "num_samples",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub per_class: Option<u64>,
    /// Produce only shard i of n (0-based, "i/n") of the --num-samples images.
    #[arg(long, conflicts_with = "distributed")]
    pub shard: Option<Shard>,
    /// One rank of a multi-process job (`mpirun -np N`, `srun`; needs a
    /// build with `--features mpi`): each rank samples its shard and rank 0
    /// writes the outputs, the same bytes one process would.
    #[arg(long)]
    pub distributed: bool,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Run each model call on a batch as N parts at once, each by its own
    /// worker thread with 1/N of the CPU threads (small models keep more
    /// cores busy this way; an image may differ from the whole batch's by
    /// float rounding)
    /// [default: on a CPU, one part per thread; on a GPU, 1].
    #[arg(long)]
    pub batch_split: Option<usize>,
    /// Grid PNG of all images.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Images per grid row (default: √N rounded up).
    #[arg(long)]
    pub nrow: Option<usize>,
    /// Write the grid as a contact sheet: each row labelled with its class
    /// name, small images enlarged ×3, the settings in the title.
    #[arg(long)]
    pub sheet: bool,
    /// One PNG per image, named by global image index.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// An .npz for the ADM evaluator: arr_0, uint8, (N, H, W, 3), with the
    /// class of each image as `labels`.
    #[arg(long)]
    pub npz: Option<PathBuf>,
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// What the checkpoint was trained with, for files that do not record
    /// it (an official SiT .pt: --objective sit; its tensors look like DiT's).
    #[command(flatten)]
    pub objective: ObjectiveArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

fn parse_guidance_channels(s: &str) -> Result<GuidanceChannels, String> {
    match s {
        "3" => Ok(GuidanceChannels::Official),
        "all" => Ok(GuidanceChannels::All),
        _ => Err(format!("'{s}': use 3 (official) or all")),
    }
}

/// The sampler `--sampler` names, or the default for the model's family
/// and space ([`DefaultSampling`]), with this command's settings, and the
/// steps `--steps` gives or the default for that sampler.
fn sampler(
    args: &SampleArgs,
    objective: &ObjectiveConfig,
    latent_space: bool,
) -> Result<(SamplerChoice, String)> {
    let default = DefaultSampling::for_model(objective, latent_space);
    let name = args.sampler.as_deref().unwrap_or(default.sampler);
    let steps = match (&args.steps, name) {
        (Some(steps), _) => steps.clone(),
        // The paper's sampler keeps the paper's steps.
        (None, "ddpm") => "250".to_string(),
        (None, _) => default.steps.to_string(),
    };
    // Grid points matter to the transport's fixed-step samplers only.
    let fixed_transport_steps = name != "ode-dopri5" && !DIFFUSION_SAMPLERS.contains(&name);
    let grid_points = match fixed_transport_steps {
        true => steps.trim().parse().with_context(|| {
            format!("--steps {steps}: SiT samplers take a number of grid points")
        })?,
        false => OdeConfig::default().num_steps,
    };
    let mut choice = SamplerChoice::from_name(name, grid_points)
        .with_context(|| format!("unknown sampler {name}"))?;
    match &mut choice {
        SamplerChoice::Diffusion(Sampler::Ddim { eta }) => *eta = args.eta,
        SamplerChoice::Transport(SamplerConfig::Ode(ode)) => {
            (ode.atol, ode.rtol) = (args.atol, args.rtol);
        }
        SamplerChoice::Transport(SamplerConfig::Sde(sde)) => {
            sde.diffusion = args.diffusion_form.parse()?;
            sde.diffusion_norm = args.diffusion_norm;
            sde.last_step = args.last_step.parse()?;
            sde.last_step_size = args.last_step_size;
        }
        SamplerChoice::Diffusion(_) => {}
    }
    Ok((choice, steps))
}

pub fn run(args: SampleArgs) -> Result<()> {
    let Some(ckpt) = &args.ckpt else {
        bail!("{WEIGHTS_HELP}")
    };
    if !ckpt.exists() {
        bail!("{} does not exist.\n{WEIGHTS_HELP}", ckpt.display());
    }
    let ckpt = checkpoint_file(ckpt);
    if args.batch_split == Some(0) {
        bail!("--batch-split must be at least 1 (1: whole batches)");
    }
    let compute = args.compute.compute()?;
    let device = compute.device.clone();
    let model = Dit::load_with(&ckpt, &device, &args.checkpoint.load_options())
        .with_context(|| format!("loading {}", ckpt.display()))?
        .with_precision(compute.precision);
    let vae = match &args.vae {
        Some(path) => Some(
            Vae::load(path, &device)
                .and_then(|vae| vae.with_precision(compute.precision))
                .with_context(|| format!("loading the VAE {}", path.display()))?,
        ),
        None => None,
    };
    check_decoder(&model, vae.as_ref())?;

    let num_classes = model.config().num_classes;
    let named_classes = match args.classes.is_empty() {
        true => None,
        false => {
            let names = checkpoint_class_names(&ckpt, num_classes);
            Some(resolve_classes(&args.classes, names.as_ref(), num_classes)?)
        }
    };
    let classes = match (named_classes, args.per_class) {
        (None, None) => ClassChoice::Uniform { num_classes },
        (Some(list), None) => ClassChoice::Cycle(list),
        (list, Some(per_class)) => {
            let list = list.unwrap_or_else(|| (0..num_classes.min(100) as u32).collect());
            ClassChoice::Cycle(
                list.iter()
                    .flat_map(|&c| std::iter::repeat_n(c, per_class as usize))
                    .collect(),
            )
        }
    };
    let total = args.num_samples.unwrap_or(match &classes {
        ClassChoice::Cycle(list) => list.len() as u64,
        ClassChoice::Uniform { .. } => 8,
    });
    let comm: Box<dyn Communicator> = match args.distributed {
        true => dist::from_launcher()?,
        false => Box::new(SingleProcess),
    };
    let leader = comm.rank() == 0;
    let shard = match args.distributed {
        true => Shard {
            index: comm.rank(),
            count: comm.world_size(),
        },
        false => args.shard.unwrap_or(Shard::WHOLE),
    };
    let named = match args.objective.given() {
        true => Some(args.objective.config()?),
        false => None,
    };
    let objective = sampling_objective(&ckpt, &model, named)?;
    let described = model
        .config()
        .describe()
        .replacen("DiT", objective.family(), 1);
    let (sampler, steps) = sampler(&args, &objective, vae.is_some())?;
    let sampler_name = sampler.name();
    let settings = SampleSettings {
        steps: steps.clone(),
        sampler,
        cfg_scale: args.cfg_scale,
        guidance_channels: args.guidance_channels,
        seed: args.seed,
        clip_denoised: args.clip_denoised.unwrap_or(vae.is_none()),
        batch_parts: args
            .batch_split
            .unwrap_or_else(|| BatchSplit::default_parts(&device, args.batch_size)),
    };
    let job = SampleJob {
        model: &model,
        vae: vae.as_ref(),
        objective,
        settings,
        classes,
        indices: shard.range(total),
        batch_size: args.batch_size,
    };
    let ranks = match comm.world_size() {
        1 => String::new(),
        w => format!(" on {w} ranks (this is rank 0's share)"),
    };
    if leader {
        eprintln!(
            "sampling images {}..{} of {total} with {} ({} steps, {}, guidance {}){ranks}",
            job.indices.start, job.indices.end, described, steps, sampler_name, args.cfg_scale
        );
    }
    let bar = match leader {
        true => ProgressBar::new(0),
        false => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps [{elapsed_precise}<{eta_precise}]",
        )
        .expect("valid template"),
    );
    let images = job.run(&mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let images = match (images, comm.world_size()) {
        (Ok(images), 1) => images,
        (Err(err), 1) => return Err(err.into()),
        // The others wait for this rank's images: end them all.
        (Err(err), _) => comm.abort(&format!("sampling images {:?}: {err}", job.indices)),
        (Ok(images), _) => {
            let gathered = dist::or_abort(
                &*comm,
                "gathering the images on rank 0",
                comm.gather_bytes(&images.to_bytes(), 0),
            );
            let Some(parts) = gathered else {
                comm.finish()?;
                return Ok(());
            };
            let parts = parts
                .iter()
                .map(|bytes| SampledImages::from_bytes(bytes))
                .collect::<dit::Result<Vec<_>>>();
            let joined = parts.and_then(SampledImages::join);
            dist::or_abort(&*comm, "joining the ranks' images", joined)
        }
    };
    let title = format!(
        "{} · {} {} steps · guidance {} · seed {}",
        described, sampler_name, steps, args.cfg_scale, args.seed
    );
    let names = checkpoint_class_names(&ckpt, model.config().num_classes);
    match (
        write_outputs(&args, &images, &title, names.as_ref()),
        comm.world_size(),
    ) {
        (Err(err), w) if w > 1 => comm.abort(&format!("writing the samples: {err}")),
        (written, _) => written?,
    }
    comm.finish()?;
    Ok(())
}

/// Writes the grid (or sheet), the PNGs and the npz the arguments ask for.
fn write_outputs(
    args: &SampleArgs,
    images: &SampledImages,
    title: &str,
    names: Option<&ClassNames>,
) -> Result<()> {
    let n = images.pixels.len() as u64;

    let grid = match (&args.output, &args.out_dir, &args.npz) {
        (None, None, None) => Some(PathBuf::from("samples.png")),
        (grid, _, _) => grid.clone(),
    };
    if let Some(path) = &grid {
        let nrow = args
            .nrow
            .or(args.per_class.map(|k| k as usize))
            .unwrap_or((n as f64).sqrt().ceil() as usize);
        if args.sheet {
            let scale = if images.height.max(images.width) <= 64 {
                3
            } else {
                1
            };
            images.save_sheet(path, title, names, nrow, scale)?;
        } else {
            images.save_grid(path, nrow)?;
        }
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
