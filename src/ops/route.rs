//! How an op runs for a (device, dtype): the one place that decides.
//!
//! Every fused op (attention, LayerNorm+modulate, gated residual, GELU,
//! linear), the optimiser and EMA updates, and the VAE and Inception
//! convolutions ask [`route`] and run what it answers: their own CPU kernel,
//! their own CUDA kernel, or the unfused tensor composition that any device
//! can run (and that the tests use as the reference). Adding a device or a
//! precision to a kernel is a change here and in that kernel, not in the
//! model code.

use crate::compute::Precision;
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
    /// The storage dtypes of the CPU kernel's bf16-product variant
    /// ([`Precision::Bf16`]); empty for ops without matrix products, whose
    /// arithmetic is the same in both precisions.
    pub cpu_bf16: &'static [DType],
    pub cuda: &'static [DType],
}

impl Kernels {
    /// Generic CPU kernels for f32 (speed) and f64 (gradient checks); no
    /// CUDA kernel yet.
    pub const CPU_FLOAT: Kernels = Kernels {
        cpu: &[DType::F32, DType::F64],
        cpu_bf16: &[],
        cuda: &[],
    };
    /// [`Kernels::CPU_FLOAT`] plus bf16 products on f32 tensors (linear,
    /// attention).
    pub const CPU_FLOAT_BF16: Kernels = Kernels {
        cpu: &[DType::F32, DType::F64],
        cpu_bf16: &[DType::F32],
        cuda: &[],
    };
    /// A CPU kernel for f32 only (the VAE and Inception convolutions).
    pub const CPU_F32: Kernels = Kernels {
        cpu: &[DType::F32],
        cpu_bf16: &[],
        cuda: &[],
    };
    /// [`Kernels::CPU_F32`] with bf16 products as well.
    pub const CPU_F32_BF16: Kernels = Kernels {
        cpu: &[DType::F32],
        cpu_bf16: &[DType::F32],
        cuda: &[],
    };
}

/// The implementation to run on `device` for `dtype` in full precision,
/// given the kernels an op has.
pub fn route(device: &Device, dtype: DType, kernels: Kernels) -> Route {
    route_in(Precision::F32, device, dtype, kernels)
}

/// The implementation to run on `device` for `dtype` with the products in
/// `precision`. An op without a kernel for that precision runs its
/// composition, which rounds the products' operands the same way.
pub fn route_in(precision: Precision, device: &Device, dtype: DType, kernels: Kernels) -> Route {
    let cpu = match precision {
        Precision::F32 => kernels.cpu,
        Precision::Bf16 => kernels.cpu_bf16,
    };
    match device {
        Device::Cpu if cpu.contains(&dtype) => Route::CpuKernel,
        Device::Cuda(_) if precision == Precision::F32 && kernels.cuda.contains(&dtype) => {
            Route::CudaKernel
        }
        _ => Route::Composition,
    }
}

/// [`route`] for an op whose main input is `x`.
pub fn route_for(x: &Tensor, kernels: Kernels) -> Route {
    route(x.device(), x.dtype(), kernels)
}

/// [`route_in`] for an op whose main input is `x`.
pub fn route_for_in(precision: Precision, x: &Tensor, kernels: Kernels) -> Route {
    route_in(precision, x.device(), x.dtype(), kernels)
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

    #[test]
    fn bf16_products_only_where_written() {
        let (cpu, bf16) = (Device::Cpu, Precision::Bf16);
        let f32_bf16 = route_in(bf16, &cpu, DType::F32, Kernels::CPU_FLOAT_BF16);
        assert_eq!(f32_bf16, Route::CpuKernel);
        // f64 (the exact gradient checks) and ops without a variant compose.
        let f64_bf16 = route_in(bf16, &cpu, DType::F64, Kernels::CPU_FLOAT_BF16);
        assert_eq!(f64_bf16, Route::Composition);
        let no_variant = route_in(bf16, &cpu, DType::F32, Kernels::CPU_FLOAT);
        assert_eq!(no_variant, Route::Composition);
    }
}
