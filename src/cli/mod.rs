//! The `dit` command line: argument parsing and dispatch. Each subcommand lives
//! in its own file and calls into the library.

pub mod checkpoint_args;
pub mod convert;
pub mod eval;
pub mod extract;
pub mod info;
pub mod merge_npz;
pub mod sample;
pub mod serve;
pub mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "dit",
    version,
    about = "Diffusion Transformers (DiT): train, sample, evaluate, convert",
    long_about = "Diffusion Transformers (Peebles & Xie, arXiv 2212.09748) in one binary.\n\
                  Reads official PyTorch checkpoints, diffusers folders and safetensors."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a DiT (no arguments: the embedded Fashion-MNIST, ~15 min on 2 cores).
    Train(train::TrainArgs),
    /// Sample-quality metrics: FID, precision and recall with the FID Inception.
    Eval(eval::EvalArgs),
    /// Show a checkpoint's or preset's configuration and parameter count.
    Info(info::InfoArgs),
    /// Convert a checkpoint (.pt, diffusers, safetensors) to dit's safetensors.
    Convert(convert::ConvertArgs),
    /// Draw images from a checkpoint: grid PNG, per-image PNGs, .npz for FID.
    Sample(sample::SampleArgs),
    /// Encode an image folder once into VAE latents for `dit train --latents`.
    Extract(extract::ExtractArgs),
    /// Serve an HTTP API and a web page for generating images.
    Serve(serve::ServeArgs),
    /// Join the .npz files of a sharded `dit sample` run, in order.
    MergeNpz(merge_npz::MergeNpzArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Info(args) => info::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Extract(args) => extract::run(args),
        Command::MergeNpz(args) => merge_npz::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
