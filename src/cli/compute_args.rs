//! `--device` and `--precision`, shared by every command that computes.

use anyhow::Result;
use clap::Args;
use dit::compute::Compute;

#[derive(Args, Debug, Clone)]
pub struct ComputeArgs {
    /// Where to compute: cpu, cuda (GPU 0) or cuda:N. CUDA needs a build
    /// with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Arithmetic of the matrix products: f32, or bf16 (the DiT's linear
    /// maps and attention, and the VAE's 3×3 convolutions, take bf16 inputs
    /// and accumulate in f32). Weights, optimiser state, norms, softmax and
    /// the diffusion's arithmetic stay in f32.
    #[arg(long, default_value = "f32")]
    pub precision: String,
}

impl ComputeArgs {
    pub fn compute(&self) -> Result<Compute> {
        Ok(Compute::parse(&self.device, &self.precision)?)
    }
}
