//! `dit info`: what a checkpoint or preset is, and how many parameters it has.

use super::checkpoint_args::CheckpointArgs;
use super::objective_args::ObjectiveArgs;
use anyhow::{bail, Result};
use clap::Args;
use dit::model::checkpoint;
use dit::model::params::parameter_counts;
use dit::model::DitConfig;
use dit::train::checkpoint::stored_objective;
use dit::transport::ObjectiveConfig;
use std::path::Path;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  dit info --model DiT-XL/2 --image-size 256\n  dit info DiT-XL-2-256x256.pt\n  dit info path/to/diffusers/pipeline"
)]
pub struct InfoArgs {
    /// A checkpoint (.safetensors, .pt, diffusers folder) or a preset name such as DiT-XL/2.
    pub target: Option<String>,
    /// A preset: DiT-S/2 … DiT-XL/8 (sizes S, B, L, XL; patch 2, 4, 8).
    #[arg(long, conflicts_with = "target")]
    pub model: Option<String>,
    /// Image size for a preset; presets work on SD-VAE latents of size image/8.
    #[arg(long, default_value_t = 256)]
    pub image_size: usize,
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// What the checkpoint was trained with, for files that do not record
    /// it: an official SiT .pt is told with --objective sit.
    #[command(flatten)]
    pub objective: ObjectiveArgs,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let stored = args
        .target
        .as_deref()
        .and_then(|t| stored_objective(Path::new(t)));
    let objective = match (stored, args.objective.given()) {
        (Some(stored), _) => stored,
        (None, true) => args.objective.config()?,
        (None, false) => ObjectiveConfig::default(),
    };
    let (config, source) = match (&args.model, &args.target) {
        (Some(name), _) => (preset(name, args.image_size)?, "preset".to_string()),
        (None, Some(target))
            if !Path::new(target).exists() && target.contains('/') && !target.contains('.') =>
        {
            (preset(target, args.image_size)?, "preset".to_string())
        }
        (None, Some(path)) => {
            let info = checkpoint::inspect(Path::new(path), &args.checkpoint.load_options())?;
            let how = if info.inferred && args.checkpoint.num_heads.is_none() {
                "; configuration inferred from tensor shapes, pass --num-heads if the heads differ"
            } else {
                ""
            };
            (info.config, format!("{path} ({}{how})", info.format))
        }
        (None, None) => bail!("name a checkpoint or a preset, e.g. `dit info --model DiT-XL/2`"),
    };
    print!("{}", describe(&config, &objective, &source));
    Ok(())
}

fn preset(name: &str, image_size: usize) -> Result<DitConfig> {
    if !image_size.is_multiple_of(8) {
        bail!("--image-size {image_size} is not a multiple of 8 (the SD-VAE downsampling factor)");
    }
    Ok(DitConfig::preset(name, image_size / 8)?)
}

/// The report `dit info` prints.
pub fn describe(c: &DitConfig, objective: &ObjectiveConfig, source: &str) -> String {
    let (total, trainable) = parameter_counts(c);
    let null = if c.has_null_class() {
        format!(" + null class (label dropout {})", c.class_dropout_prob)
    } else {
        String::new()
    };
    format!(
        "model:        {}\n\
         objective:    {}\n\
         source:       {source}\n\
         input:        {} × {} × {} (patch {} → {} tokens)\n\
         hidden size:  {}\n\
         depth:        {}\n\
         heads:        {} (head dim {})\n\
         mlp ratio:    {}\n\
         classes:      {}{null}\n\
         learn sigma:  {} ({} output channels)\n\
         parameters: {total}\n\
         trainable:  {trainable}\n",
        c.describe().replacen("DiT", objective.family(), 1),
        objective.describe(),
        c.in_channels,
        c.input_size,
        c.input_size,
        c.patch_size,
        c.num_tokens(),
        c.hidden_size,
        c.depth,
        c.num_heads,
        c.head_dim(),
        c.mlp_ratio,
        c.num_classes,
        if c.learn_sigma { "yes" } else { "no" },
        c.out_channels(),
    )
}
