//! `dit train`: train a DiT on an image folder, or on the embedded
//! Fashion-MNIST slice when no data is given.

use super::compute_args::ComputeArgs;
use super::objective_args::ObjectiveArgs;
use anyhow::{bail, Result};
use clap::Args;
use dit::compute::Precision;
use dit::data::{Dataset, FashionMnist, ImageFolder, LatentCache};
use dit::dist::{self, BatchSplit, Communicator, SingleProcess};
use dit::model::DitConfig;
use dit::train::{
    train_distributed, LoggedWindow, LrSchedule, TrainCheckpoint, TrainConfig, TrainJob,
    TrainObserver,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Arc;

/// Learning rate of the embedded-data run (see `--lr`).
const EMBEDDED_LR: f64 = 1e-3;
/// EMA decay of the embedded-data run (see `--ema-decay`).
const EMBEDDED_EMA_DECAY: f64 = 0.995;
/// Steps when `--steps` is not given: the embedded-data run's ~14 minutes
/// on 2 cores in f32, each batch in two parts (4.8 steps/s measured).
const DEFAULT_STEPS: u64 = 3600;
/// Steps of the embedded-data run where its products run in hardware bf16:
/// a bf16 step takes ~0.7× an f32 one there (7.1 steps/s on 2 cores, each
/// batch in two parts), so about the same wall time as [`DEFAULT_STEPS`]
/// in f32 (README: the measured run).
const EMBEDDED_BF16_STEPS: u64 = 5000;
/// The embedded-data run's objective (see `--objective`): SiT, by default
/// its linear path with a velocity target.
const EMBEDDED_OBJECTIVE: &str = "sit";

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  dit train                                   # embedded Fashion-MNIST, small model, SiT objective, ~15 min on 2 cores
  dit train --data ~/pets --image-size 64 --channels 3 --model DiT-S/4 --steps 50000
  dit train --resume runs/fashion-mnist       # continue a run (same data and model)
  dit train --latents latents/in256 --model DiT-XL/2   # latent space, from `dit extract`

Image folders use torchvision's layout: one sub-folder per class (classes in
sorted name order). Images are centre-cropped as in ADM/DiT and flipped at random.
Results: <out>/checkpoints/step-*.safetensors, samples/latest.png, loss.png, metrics.jsonl.")]
pub struct TrainArgs {
    /// Image folder with one sub-folder per class. Without it: the embedded
    /// Fashion-MNIST slice (6,000 images, 10 classes, 1×32×32).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Train in latent space on a cache written by `dit extract` (sizes,
    /// classes and the VAE scaling factor come from the cache). Sample
    /// the result with `dit sample --vae`.
    #[arg(long, conflicts_with_all = ["data", "image_size", "channels"])]
    pub latents: Option<PathBuf>,
    /// Image size for --data (pixel space).
    #[arg(long, default_value_t = 32)]
    pub image_size: usize,
    /// 3 for RGB, 1 for grayscale (--data only).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub channels: u8,
    /// Run folder (checkpoints, samples, metrics) [default: runs/<data>;
    /// with --resume, the resumed run's own folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from a checkpoint, or from the newest one in a run folder.
    #[arg(long)]
    pub resume: Option<PathBuf>,

    /// A preset (DiT-S/4, DiT-B/2 …) for the transformer's shape; the default
    /// is a small model sized for a CPU: depth 6, hidden 192, 3 heads, patch 4.
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub depth: Option<usize>,
    #[arg(long)]
    pub hidden_size: Option<usize>,
    #[arg(long)]
    pub num_heads: Option<usize>,
    #[arg(long)]
    pub patch_size: Option<usize>,

    /// Total optimisation steps [default: 3600; 5000 for the embedded-data
    /// run in bf16 on a CPU with AMX or AVX512-BF16, the same ~14 minutes].
    #[arg(long)]
    pub steps: Option<u64>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// AdamW learning rate [default: 1e-4 as DiT for --data/--latents;
    /// 1e-3 for the small embedded-data model, whose 15-minute run needs it].
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Linear learning-rate warm-up steps.
    #[arg(long, default_value_t = 100)]
    pub warmup_steps: u64,
    /// After the warm-up: constant (DiT's), or cosine (half a cosine down to
    /// --lr-floor · lr at the last step) [default: constant as DiT for
    /// --data/--latents; cosine for the embedded-data run; a resumed run's own].
    #[arg(long, value_parser = ["constant", "cosine"])]
    pub lr_schedule: Option<String>,
    /// The cosine schedule's last learning rate, as a fraction of --lr.
    #[arg(long, default_value_t = 0.0)]
    pub lr_floor: f64,
    /// Clip the global gradient norm.
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// EMA decay [default: 0.9999 as DiT for --data/--latents; 0.995 for
    /// the embedded-data run: a few-thousand-step run wants an average over its
    /// last few hundred steps, not thousands].
    #[arg(long)]
    pub ema_decay: Option<f64>,
    /// Disable the EMA warm-up min(decay, (1+step)/(10+step)).
    #[arg(long)]
    pub no_ema_warmup: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Disable random horizontal flips.
    #[arg(long)]
    pub no_flip: bool,
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: u64,
    /// Sample grid from the EMA model every N steps and at the end (0: never).
    #[arg(long, default_value_t = 500)]
    pub sample_every: u64,
    /// Guidance scale of the preview grids.
    #[arg(long, default_value_t = 3.0)]
    pub sample_cfg_scale: f64,
    /// Skip unreadable images with a warning instead of stopping.
    #[arg(long)]
    pub skip_bad_images: bool,
    /// One rank of a multi-process job started by `mpirun -np N` or `srun`
    /// (needs a build with `--features mpi`): --batch-size is the global
    /// batch, shared equally by the ranks; rank 0 writes the run folder.
    /// With `--device cuda` in a build with `--features nccl`, each rank
    /// takes the GPU of its local rank and gradients are summed by NCCL.
    #[arg(long)]
    pub distributed: bool,
    /// Compute each batch as N parts at once, each by its own worker
    /// thread with 1/N of the CPU threads (small models keep more cores busy
    /// this way than by splitting each product over threads; only the order
    /// of float additions changes) [default: on a CPU, one part per thread;
    /// on a GPU, 1].
    #[arg(long)]
    pub batch_split: Option<usize>,
    #[command(flatten)]
    pub objective: ObjectiveArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// The progress bar of a training run.
struct TrainBar(ProgressBar);

impl TrainObserver for TrainBar {
    fn start(&mut self, first_step: u64, total_steps: u64) {
        self.0.set_length(total_steps);
        self.0.set_position(first_step);
    }

    fn step(&mut self, step: u64, logged: Option<&LoggedWindow>) {
        self.0.set_position(step);
        if let Some(w) = logged {
            self.0.set_message(format!(
                "loss {:.4} | {:.2} steps/s",
                w.loss, w.steps_per_sec
            ));
        }
    }

    fn note(&mut self, message: &str) {
        self.0.println(message);
    }

    fn finish(&mut self) {
        self.0.finish();
    }
}

/// `--precision` and `--steps` where not given: the embedded demo's budget
/// is wall time, not bit-exactness with PyTorch's f32, so where bf16 runs in
/// hardware it trains in bf16 and takes the steps that buys; everything else
/// is f32 and [`DEFAULT_STEPS`].
fn precision_and_steps(
    embedded: bool,
    hardware_bf16: bool,
    precision: Option<Precision>,
    steps: Option<u64>,
) -> (Precision, u64) {
    let fast = embedded && hardware_bf16;
    let precision = precision.unwrap_or(if fast {
        Precision::Bf16
    } else {
        Precision::F32
    });
    let steps = steps.unwrap_or(if fast && precision == Precision::Bf16 {
        EMBEDDED_BF16_STEPS
    } else {
        DEFAULT_STEPS
    });
    (precision, steps)
}

pub fn run(args: TrainArgs) -> Result<()> {
    if args.batch_split == Some(0) {
        bail!("--batch-split must be at least 1 (1: whole batches)");
    }
    let embedded = args.data.is_none() && args.latents.is_none();
    let mut compute = args.compute.compute()?;
    let hardware_bf16 = compute.device.is_cpu() && Precision::fastest_on_cpu() == Precision::Bf16;
    let (precision, steps) = precision_and_steps(
        embedded,
        hardware_bf16,
        // What --precision named (already parsed into `compute`), if anything.
        args.compute
            .precision
            .is_some()
            .then_some(compute.precision),
        args.steps,
    );
    compute.precision = precision;
    if compute.device.is_cpu() && args.batch_split != Some(1) {
        // Before any other thread starts: the batch's parts run candle's
        // elementwise ops themselves (see BatchSplit).
        dit::ops::runtime::inline_elementwise_ops();
    }
    // A CUDA job built with NCCL puts each rank on a GPU of its own.
    let comm: Arc<dyn Communicator> = match args.distributed {
        true => {
            let (comm, device) = dist::from_launcher_on(&compute.device)?;
            compute.device = device;
            comm.into()
        }
        false => Arc::new(SingleProcess),
    };
    // Rank 0 alone talks; the others' bars and messages would interleave.
    let leader = comm.rank() == 0;
    let mut latent_scale = None;
    let (dataset, source): (Arc<dyn Dataset>, String) = match (&args.latents, &args.data) {
        (Some(dir), _) => {
            let cache = LatentCache::open(dir)?;
            latent_scale = Some(cache.scaling_factor());
            (Arc::new(cache), dir.display().to_string())
        }
        (None, Some(dir)) => {
            let folder = ImageFolder::open(dir, args.image_size, args.channels as usize)?;
            (Arc::new(folder), dir.display().to_string())
        }
        (None, None) => (
            Arc::new(FashionMnist::embedded()?),
            "fashion-mnist (embedded)".to_string(),
        ),
    };
    let resume = match &args.resume {
        Some(p) => Some(dit::train::checkpoint::resolve(p)?),
        None => None,
    };
    // A resumed run continues in its own folder unless --out says otherwise.
    let out = match (&args.out, &resume) {
        (Some(out), _) => out.clone(),
        (None, Some(ckpt)) => dit::train::checkpoint::run_dir(ckpt),
        (None, None) => match args.latents.as_ref().or(args.data.as_ref()) {
            Some(dir) => PathBuf::from("runs").join(dir.file_name().unwrap_or_default()),
            None => PathBuf::from("runs/fashion-mnist"),
        },
    };
    let resumed = match &resume {
        Some(path) => Some(TrainCheckpoint::read_description(path)?),
        None => None,
    };
    // A resumed run keeps its objective and model unless the user names them
    // (then they must match). The embedded run trains SiT's velocity
    // objective, which the judge scores far above DDPM's after the same
    // 15 minutes (README); the user's data get DiT's own.
    let objective = match &resumed {
        Some((_, objective, _)) if !args.objective.given() => objective.clone(),
        _ if embedded => args.objective.config_or(EMBEDDED_OBJECTIVE)?,
        _ => args.objective.config()?,
    };
    let model = match &resumed {
        Some((model, ..))
            if args.model.is_none() && args.depth.is_none() && args.hidden_size.is_none() =>
        {
            model.clone()
        }
        _ => model_config(&args, dataset.as_ref())?,
    };
    // DiT's own lr and EMA decay (TrainConfig's defaults) for the user's
    // data; the embedded run's 15-minute budget needs faster ones.
    let dit = TrainConfig::default();
    let train_config = TrainConfig {
        steps,
        batch_size: args.batch_size,
        lr: args
            .lr
            .unwrap_or(if embedded { EMBEDDED_LR } else { dit.lr }),
        weight_decay: args.weight_decay,
        warmup_steps: args.warmup_steps,
        lr_schedule: match (args.lr_schedule.as_deref(), &resumed) {
            (Some("cosine"), _) => LrSchedule::Cosine {
                final_fraction: args.lr_floor,
            },
            (Some(_), _) => LrSchedule::Constant,
            (None, Some((_, _, state))) => state.train.lr_schedule,
            (None, None) if embedded => LrSchedule::Cosine {
                final_fraction: args.lr_floor,
            },
            (None, None) => dit.lr_schedule,
        },
        grad_clip: args.grad_clip,
        ema_decay: args.ema_decay.unwrap_or(if embedded {
            EMBEDDED_EMA_DECAY
        } else {
            dit.ema_decay
        }),
        ema_warmup: !args.no_ema_warmup,
        seed: args.seed,
        flip: !args.no_flip,
        checkpoint_every: args.checkpoint_every,
        sample_every: args.sample_every,
        sample_cfg_scale: args.sample_cfg_scale,
        ..dit
    };
    let batch_parts = args.batch_split.unwrap_or_else(|| {
        BatchSplit::default_parts(&compute.device, args.batch_size / comm.world_size())
    });
    let parts = match batch_parts {
        1 => String::new(),
        n => format!(", each batch as {n} parts at once"),
    };
    let (c, h, w) = dataset.sample_shape();
    let ranks = match comm.world_size() {
        1 => String::new(),
        n => format!(" over {n} ranks ({})", comm.description()),
    };
    if leader {
        println!(
            "training {} on {source}: {} images, {} classes, {c}×{h}×{w}; {}",
            model.describe().replacen("DiT", objective.family(), 1),
            dataset.len(),
            dataset.num_classes(),
            objective.describe()
        );
    }
    let (params, _) = dit::model::params::parameter_counts(&model);
    if leader {
        println!(
            "{params} parameters; {} steps of batch {} on {}{ranks}{parts}; results in {}{}",
            steps,
            args.batch_size,
            compute.describe(),
            out.display(),
            resume
                .as_ref()
                .map(|p| format!(" (resuming {})", p.display()))
                .unwrap_or_default()
        );
        if latent_scale.is_some() && args.sample_every > 0 {
            println!("no preview grids for a latent-space run (they need the VAE decoder): sample checkpoints with `dit sample --vae`");
        }
    }
    let bar = match leader {
        true => ProgressBar::new(steps),
        false => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} step {pos}/{len} | {msg} | {elapsed_precise} < {eta_precise}",
        )
        .expect("valid template"),
    );
    let outcome = train_distributed(
        TrainJob {
            model,
            objective,
            train: train_config,
            dataset,
            data_source: source,
            out_dir: out.clone(),
            resume,
            compute,
            skip_bad_images: args.skip_bad_images,
            latent_scale,
            batch_parts,
        },
        comm,
        &mut TrainBar(bar),
    )?;
    if !leader {
        return Ok(());
    }
    if outcome.skipped_images > 0 {
        eprintln!(
            "warning: skipped {} unreadable images (--skip-bad-images)",
            outcome.skipped_images
        );
    }
    println!(
        "done: {} steps in {:.0} s, final loss {:.4}; checkpoint {}; samples {}",
        outcome.steps,
        outcome.seconds,
        outcome.final_loss,
        outcome.last_checkpoint.display(),
        out.join("samples/latest.png").display()
    );
    println!("{}", next_steps(&out, latent_scale.is_some()));
    Ok(())
}

/// What to run next: sample more (one labelled row per class), and for
/// latent runs, with the VAE; or look at the model in the browser.
fn next_steps(out: &std::path::Path, latent: bool) -> String {
    let vae = if latent { " --vae <sd-vae folder>" } else { "" };
    let ckpt = out.display();
    format!(
        "next: sample more with\n  dit sample --ckpt {ckpt}{vae} --per-class 8 --sheet -o samples.png\n\
         or generate in the browser (http://127.0.0.1:8080) with\n  dit serve --ckpt {ckpt}{vae}"
    )
}

fn model_config(args: &TrainArgs, data: &dyn Dataset) -> Result<DitConfig> {
    let (c, h, w) = data.sample_shape();
    // Latent samples hold mean and log-variance: twice the model's channels.
    let c = if args.latents.is_some() { c / 2 } else { c };
    if h != w {
        bail!("the model needs square inputs, the data is {h}×{w}");
    }
    let mut config = match &args.model {
        Some(name) => DitConfig::preset(name, h)?,
        None => DitConfig {
            input_size: h,
            patch_size: 4,
            in_channels: c,
            hidden_size: 192,
            depth: 6,
            num_heads: 3,
            mlp_ratio: 4.0,
            class_dropout_prob: 0.1,
            num_classes: data.num_classes(),
            learn_sigma: true,
        },
    };
    config.input_size = h;
    config.in_channels = c;
    config.num_classes = data.num_classes();
    if let Some(d) = args.depth {
        config.depth = d;
    }
    if let Some(d) = args.hidden_size {
        config.hidden_size = d;
    }
    if let Some(d) = args.num_heads {
        config.num_heads = d;
    }
    if let Some(d) = args.patch_size {
        config.patch_size = d;
    }
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_run_takes_bf16_and_more_steps_only_where_bf16_is_hardware() {
        use Precision::{Bf16, F32};
        let cases = [
            // (embedded, hardware bf16, --precision, --steps) → (precision, steps)
            ((true, true, None, None), (Bf16, 5000)),
            ((true, false, None, None), (F32, 3600)),
            ((false, true, None, None), (F32, 3600)),
            ((true, true, Some(F32), None), (F32, 3600)),
            ((true, false, Some(Bf16), None), (Bf16, 3600)),
            ((false, true, Some(Bf16), None), (Bf16, 3600)),
            ((true, true, None, Some(10)), (Bf16, 10)),
            ((false, false, Some(F32), Some(7)), (F32, 7)),
        ];
        for ((embedded, hw, precision, steps), expected) in cases {
            assert_eq!(
                precision_and_steps(embedded, hw, precision, steps),
                expected,
                "embedded {embedded}, hardware bf16 {hw}, {precision:?}, {steps:?}"
            );
        }
    }
}
