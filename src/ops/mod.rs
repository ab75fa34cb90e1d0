//! Fused CPU kernels for the training and sampling hot paths.
//!
//! Each differentiable op is a candle custom op with its own backward, so it
//! works with `Tensor::backward`; on devices without a kernel here (CUDA,
//! Metal) the same function falls back to the unfused tensor composition,
//! which is also the reference the tests compare against. The optimizer and
//! EMA update parameters in place, in one pass over memory.

pub mod adamw;
pub mod attention;
pub mod ema;
mod float;
pub mod gated_residual;
pub mod gelu;
pub mod layer_norm_modulate;
pub mod linear;
pub mod matmul;
pub mod runtime;
pub mod vmath;

pub use adamw::{AdamW, AdamWConfig};
pub use attention::{attention, attention_reference};
pub use ema::{ema_update, Ema};
pub use gated_residual::{gated_residual, gated_residual_reference};
pub use gelu::{gelu_tanh, gelu_tanh_reference};
pub use layer_norm_modulate::{layer_norm_modulate, layer_norm_modulate_reference};
pub use linear::{linear, linear_reference};
