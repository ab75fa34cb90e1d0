//! Gaussian diffusion (improved-DDPM / ADM formulation as used by DiT).

pub mod guidance;

pub use guidance::{ClassifierFreeGuidance, GuidanceChannels};
