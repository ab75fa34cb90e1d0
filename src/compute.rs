//! Where and in which precision a job computes: the one place devices and
//! precisions are decided. A job (training, sampling, extraction, evaluation)
//! takes a [`Compute`]; models, trainers and samplers read their device and
//! dtypes from it instead of choosing their own.
//!
//! Master weights, optimiser and EMA moments are always f32
//! ([`Compute::master_dtype`]); the diffusion arithmetic is f32/f64; only the
//! network's matrix products follow the [`Precision`].

use crate::{bail, Result};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The arithmetic of the network's matrix products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Full f32, as the official PyTorch code computes (and the tensors'
    /// own precision for f64 tensors: the gradient checks).
    #[default]
    F32,
    /// Mixed precision as PyTorch's bf16 autocast on the CPU: the inputs of
    /// every matrix product (linear layers, attention's two products, the
    /// convolutions) are rounded to bf16 and the products accumulate in f32;
    /// LayerNorm statistics, softmax, GELU, the adaLN modulation and the
    /// residual stream stay f32 arithmetic. Activations are stored in f32
    /// (see [`Precision::activation_dtype`]).
    Bf16,
}

impl Precision {
    /// The dtype activations are stored in: f32 for both precisions. bf16
    /// rounds the operands of the matrix products inside their kernels
    /// instead of storing bf16 tensors, because every gradient candle's
    /// autograd accumulates costs a zero-fill and an add in the tensor's
    /// dtype, which candle's CPU backend runs element by element for bf16.
    pub fn activation_dtype(self) -> DType {
        DType::F32
    }

    /// bf16 where this CPU multiplies bf16 operands in hardware (AMX, or
    /// AVX512-BF16 where it beats the f32 product: see
    /// [`crate::ops::bf16::kernel`]), else f32. For jobs whose budget is
    /// time rather than exactness (the embedded demo run): on such CPUs a
    /// bf16 step of the demo model takes ~0.7× the f32 step's time.
    pub fn fastest_on_cpu() -> Precision {
        match crate::ops::bf16::kernel() {
            crate::ops::bf16::Bf16Kernel::Convert => Precision::F32,
            _ => Precision::Bf16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" => {
                bail!("precision '{s}' is not available in this version of dit; use f32 or bf16")
            }
            _ => bail!("unknown precision '{s}': use f32 or bf16"),
        }
    }
}

/// A device and a precision: everything a job needs to place its tensors.
#[derive(Clone, Debug)]
pub struct Compute {
    pub device: Device,
    pub precision: Precision,
}

impl Default for Compute {
    fn default() -> Self {
        Self::cpu()
    }
}

impl Compute {
    /// The CPU in f32: what every job does unless told otherwise.
    pub fn cpu() -> Self {
        Self {
            device: Device::Cpu,
            precision: Precision::F32,
        }
    }

    /// Parameters, optimiser moments and EMA weights: always f32.
    pub fn master_dtype(&self) -> DType {
        DType::F32
    }

    /// The dtype the network computes in.
    pub fn activation_dtype(&self) -> DType {
        self.precision.activation_dtype()
    }

    /// "cpu, f32", "cuda:0, f32".
    pub fn describe(&self) -> String {
        format!("{}, {}", device_name(&self.device), self.precision)
    }
}

/// A device's name as `--device` spells it.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            _ => "cuda".into(),
        },
        Device::Metal(_) => "metal".into(),
    }
}

/// `cpu`, `cuda` (GPU 0) or `cuda:N`. Refuses CUDA with a clear reason when
/// this build has no CUDA support or no GPU answers.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match name.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => match rest.strip_prefix(':').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => bail!("unknown device '{name}': use cpu, cuda or cuda:N (N = 0, 1, …)"),
        },
        None => bail!("unknown device '{name}': use cpu, cuda or cuda:N (N = 0, 1, …)"),
    };
    if !candle_core::utils::cuda_is_available() {
        bail!(
            "--device {name}: this dit was built without CUDA support; \
             rebuild with `cargo build --release --features cuda` (see README, \"GPU\")"
        );
    }
    Device::new_cuda(ordinal).map_err(|e| {
        crate::err!("--device {name}: no usable CUDA GPU {ordinal} ({e}); check nvidia-smi")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_or_say_why() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device(" CPU ").unwrap().is_cpu());
        for bad in ["gpu", "cuda:x", "cuda0", "tpu:1"] {
            let err = parse_device(bad).unwrap_err().to_string();
            assert!(err.contains("unknown device"), "{bad}: {err}");
        }
        if !candle_core::utils::cuda_is_available() {
            let err = parse_device("cuda:1").unwrap_err().to_string();
            assert!(err.contains("without CUDA support"), "{err}");
        }
    }

    #[test]
    fn precisions_parse_or_say_why() {
        assert_eq!("f32".parse::<Precision>().unwrap(), Precision::F32);
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert!("f16"
            .parse::<Precision>()
            .unwrap_err()
            .to_string()
            .contains("not available"));
        assert!("f8".parse::<Precision>().is_err());
    }
}
