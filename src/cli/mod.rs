//! The `dit` command line: argument parsing and dispatch. Each subcommand lives
//! in its own file and calls into the library.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod eval;

#[derive(Parser, Debug)]
#[command(
    name = "dit",
    version,
    about = "Diffusion Transformers (DiT): train, sample, evaluate, convert",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sample-quality metrics: FID, precision and recall with the FID Inception.
    Eval(eval::EvalArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
