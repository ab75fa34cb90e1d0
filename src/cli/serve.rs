//! `dit serve`: the HTTP API and page over one checkpoint.

use super::checkpoint_args::CheckpointArgs;
use super::compute_args::ComputeArgs;
use super::objective_args::ObjectiveArgs;
use anyhow::{Context, Result};
use clap::Args;
use dit::serve::{newest_run, BatchPolicy, Limits, ServeConfig, ServedModel};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  dit serve                                   # the newest run under runs/, on http://127.0.0.1:8080
  dit serve --ckpt runs/fashion-mnist --addr 127.0.0.1:9000
  dit serve --ckpt DiT-XL-2-256x256.pt --vae sd-vae-ft-mse
  DIT_API_KEY=secret dit serve --addr 0.0.0.0:8080   # beyond loopback a key is required

Then open the address in a browser, or see docs/serve.md for the API (curl examples).")]
pub struct ServeArgs {
    /// A checkpoint (file, dit train run folder, diffusers folder). Default:
    /// the newest run under --runs.
    #[arg(long)]
    pub ckpt: Option<PathBuf>,
    /// SD-VAE folder (diffusers layout) to decode a latent model's samples.
    #[arg(long)]
    pub vae: Option<PathBuf>,
    /// Address to listen on; anything but loopback needs --api-key.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Bearer key required on /v1/* (default: $DIT_API_KEY). Prefer the
    /// environment variable: arguments are visible to other local users.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Where `dit train` runs are looked for when --ckpt is not given.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Most images per request.
    #[arg(long, default_value_t = Limits::default().max_n)]
    pub max_n: usize,
    /// Most sampling steps per request.
    #[arg(long, default_value_t = Limits::default().max_steps)]
    pub max_steps: usize,
    /// Jobs that may wait; beyond, requests get 429 with Retry-After.
    #[arg(long, default_value_t = ServeConfig::default().queue_capacity)]
    pub queue: usize,
    /// Most images in one forward pass when batching compatible requests.
    #[arg(long, default_value_t = ServeConfig::default().batching.max_images)]
    pub max_batch: usize,
    /// Run each request alone instead of batching compatible ones.
    #[arg(long)]
    pub no_batching: bool,
    /// An x̂0 preview every this many steps (0: about ten per job).
    #[arg(long, default_value_t = 0)]
    pub preview_every: usize,
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// What the checkpoint was trained with, for files that do not record
    /// it (an official SiT .pt: --objective sit).
    #[command(flatten)]
    pub objective: ObjectiveArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let ckpt = match &args.ckpt {
        Some(path) => path.clone(),
        None => newest_run(&args.runs)?,
    };
    let api_key = args
        .api_key
        .clone()
        .or_else(|| std::env::var("DIT_API_KEY").ok().filter(|k| !k.is_empty()));
    let defaults = ServeConfig::default();
    let config = ServeConfig {
        addr: args.addr,
        api_key,
        limits: Limits {
            max_n: args.max_n,
            max_steps: args.max_steps,
            ..Limits::default()
        },
        queue_capacity: args.queue,
        batching: BatchPolicy {
            combine: !args.no_batching,
            max_images: args.max_batch,
        },
        preview_every: args.preview_every,
        ..defaults
    };
    if !config.addr.ip().is_loopback() && config.api_key.is_none() {
        // Refuse before spending time loading the model.
        anyhow::bail!(
            "--addr {}: serving beyond this machine needs --api-key <key> (or DIT_API_KEY)",
            config.addr
        );
    }
    let compute = args.compute.compute()?;
    let objective = match args.objective.given() {
        true => Some(args.objective.config()?),
        false => None,
    };
    eprintln!("loading {}", ckpt.display());
    let model = ServedModel::load(
        &ckpt,
        args.vae.as_deref(),
        &compute,
        &args.checkpoint.load_options(),
        objective,
    )
    .with_context(|| format!("serving {}", ckpt.display()))?;
    let describe = format!(
        "{} from {}",
        model
            .model
            .config()
            .describe()
            .replacen("DiT", model.objective.family(), 1),
        model.checkpoint.display()
    );
    dit::serve::run(model, config, |server| {
        println!(
            "serving {describe} on {} (page: {}/)",
            server.url(),
            server.url()
        );
    })?;
    Ok(())
}
