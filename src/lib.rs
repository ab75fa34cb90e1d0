//! `dit`: Diffusion Transformers (Peebles & Xie, arXiv 2212.09748) in Rust.
//!
//! The library mirrors the system: [`model`] holds the network and its
//! checkpoint formats, [`diffusion`] the Gaussian diffusion it is trained and
//! sampled with, [`eval`] the metrics; the `dit` binary (src/main.rs, src/cli/)
//! is a thin command line over it.

pub mod atomic_file;
pub mod compute;
pub mod data;
pub mod diffusion;
pub mod dist;
pub mod error;
pub mod eval;
pub mod formats;
pub mod model;
pub mod ops;
pub mod sample;
pub mod serve;
pub mod train;
pub mod transport;
pub mod vae;

pub use error::{Context, Error, Result};
