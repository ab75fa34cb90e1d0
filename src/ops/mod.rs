//! Fused kernels for the training and sampling hot paths.
//!
//! Each differentiable op is a candle custom op with its own backward, so it
//! works with `Tensor::backward`. [`route`] decides, for a device and dtype,
//! whether an op runs its own kernel or the unfused tensor composition
//! (which is also the reference the tests compare against).

pub mod attention;
mod attention_bf16;
pub mod bf16;
pub(crate) mod float;
pub mod gated_residual;
pub mod gelu;
pub mod layer_norm_modulate;
pub mod linear;
pub mod linear_gelu;
pub mod matmul;
pub mod qkv_attention;
pub mod route;
pub mod runtime;
pub mod vmath;

pub use attention::{attention, attention_in, attention_reference, attention_reference_in};
pub use gated_residual::{gated_residual, gated_residual_reference};
pub use gelu::{gelu_tanh, gelu_tanh_reference};
pub use layer_norm_modulate::{layer_norm_modulate, layer_norm_modulate_reference};
pub use linear::{
    linear, linear_in, linear_packed_in, linear_reference, linear_reference_in, WeightPacking,
};
pub use linear_gelu::{linear_gelu_in, linear_gelu_packed_in, linear_gelu_reference_in};
pub use qkv_attention::{qkv_attention_in, qkv_attention_packed_in, qkv_attention_reference_in};
