//! The Diffusion Transformer.
