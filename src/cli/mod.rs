//! The `dit` command line: argument parsing and dispatch. Each subcommand lives
//! in its own file and calls into the library.

mod checkpoint_args;
mod comm_check;
mod compute_args;
mod convert;
mod eval;
mod extract;
mod info;
mod merge_npz;
mod objective_args;
mod sample;
mod serve;
mod train;

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
    /// Check and time the communicator of a distributed job (tests, benches).
    #[command(hide = true)]
    CommCheck(comm_check::CommCheckArgs),
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
        Command::CommCheck(args) => comm_check::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: library errors
/// already include their inner error in their message.
fn error_chain(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}
