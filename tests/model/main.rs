//! The networks: DiT parity with PyTorch, gradients, initialisation and checkpoint
//! errors; the fused ops against their compositions; the SD-VAE.

#[path = "../support/mod.rs"]
mod support;

mod bf16;
mod checkpoint_errors;
mod gradients;
mod init;
mod nan_guard;
mod ops_attention;
mod ops_fused_branches;
mod ops_gated_residual;
mod ops_gelu;
mod ops_layer_norm_modulate;
mod ops_linear;
mod parity;
mod vae_load_errors;
mod vae_parity;
mod vae_posterior;
