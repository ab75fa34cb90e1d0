//! How an op runs for a (device, dtype): the one place that decides.
//!
//! Every fused op (attention, LayerNorm+modulate, gated residual, GELU,
//! linear), the optimiser and EMA updates, and the VAE and Inception
//! convolutions ask [`route`] and run what it answers: their own CPU kernel,
//! their own CUDA kernel, or the unfused tensor composition that any device
//! can run (and that the tests use as the reference). Adding a device or a
//! precision to a kernel is a change here and in that kernel, not in the
//! model code.

use candle_core::{DType, Device, Tensor};

/// Which implementation of an op runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The op's fused CPU kernel.
    CpuKernel,
    /// The op's fused CUDA kernel.
    CudaKernel,
    /// The unfused composition of candle ops.
    Composition,
}

/// The dtypes an op's kernels are written for, per device.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub cpu: &'static [DType],
    pub cuda: &'static [DType],
}

impl Kernels {
    /// Generic CPU kernels for f32 (speed) and f64 (gradient checks); no
    /// CUDA kernel yet.
    pub const CPU_FLOAT: Kernels = Kernels {
        cpu: &[DType::F32, DType::F64],
        cuda: &[],
    };
    /// A CPU kernel for f32 only (the VAE and Inception convolutions).
    pub const CPU_F32: Kernels = Kernels {
        cpu: &[DType::F32],
        cuda: &[],
    };
}

/// The implementation to run on `device` for `dtype`, given the kernels an op has.
pub fn route(device: &Device, dtype: DType, kernels: Kernels) -> Route {
    match device {
        Device::Cpu if kernels.cpu.contains(&dtype) => Route::CpuKernel,
        Device::Cuda(_) if kernels.cuda.contains(&dtype) => Route::CudaKernel,
        _ => Route::Composition,
    }
}

/// [`route`] for an op whose main input is `x`.
pub fn route_for(x: &Tensor, kernels: Kernels) -> Route {
    route(x.device(), x.dtype(), kernels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_only_where_written() {
        let cpu = Device::Cpu;
        assert_eq!(
            route(&cpu, DType::F32, Kernels::CPU_FLOAT),
            Route::CpuKernel
        );
        assert_eq!(
            route(&cpu, DType::F64, Kernels::CPU_FLOAT),
            Route::CpuKernel
        );
        assert_eq!(
            route(&cpu, DType::BF16, Kernels::CPU_FLOAT),
            Route::Composition
        );
        assert_eq!(
            route(&cpu, DType::F64, Kernels::CPU_F32),
            Route::Composition
        );
    }
}
