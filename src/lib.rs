//! `dit`: Diffusion Transformers (Peebles & Xie, arXiv 2212.09748) in Rust.
//!
//! The library mirrors the system: [`model`] holds the network and its
//! checkpoint formats, [`diffusion`] the Gaussian diffusion it is trained and
//! sampled with, [`eval`] the metrics, and [`cli`] the `dit` command line.

pub mod atomic_file;
pub mod cli;
pub mod compute;
pub mod data;
pub mod diffusion;
pub mod error;
pub mod eval;
pub mod model;
pub mod ops;
pub mod sample;
pub mod serve;
pub mod train;
pub mod vae;

pub use error::{Context, Error, Result};
