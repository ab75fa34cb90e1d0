//! `--device` and `--precision`, shared by every command that computes.

use anyhow::Result;
use clap::Args;
use dit::compute::{parse_device, Compute, Precision};

#[derive(Args, Debug, Clone)]
pub struct ComputeArgs {
    /// Where to compute: cpu, cuda (GPU 0) or cuda:N. CUDA needs a build
    /// with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Arithmetic of the matrix products: f32, or bf16 (the DiT's linear
    /// maps and attention, and the VAE's 3×3 convolutions, take bf16 inputs
    /// and accumulate in f32). Weights, optimiser state, norms, softmax and
    /// the diffusion's arithmetic stay in f32 [default: f32; for the
    /// embedded demo's `dit train`, bf16 where the CPU has AMX or AVX512-BF16].
    #[arg(long)]
    pub precision: Option<String>,
}

impl ComputeArgs {
    /// The device and precision asked for, f32 unless `--precision` says otherwise.
    pub fn compute(&self) -> Result<Compute> {
        let precision: Option<Precision> = self.precision.as_deref().map(str::parse).transpose()?;
        Ok(Compute {
            device: parse_device(&self.device)?,
            precision: precision.unwrap_or_default(),
        })
    }
}
