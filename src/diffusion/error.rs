//! Errors in building or respacing a diffusion.

/// Why a diffusion could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiffusionError {
    #[error("a diffusion needs at least 2 timesteps, got {0}")]
    TooFewTimesteps(usize),
    #[error("invalid respacing \"{spec}\": {reason}")]
    InvalidRespacing { spec: String, reason: String },
}
