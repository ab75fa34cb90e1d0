//! GELU with the tanh approximation, written as x·σ(2u) with
//! u = √(2/π)(x + 0.044715x³) (the same function, since ½(1 + tanh u) = σ(2u)),
//! evaluated with the vectorised exp; the backward is its exact derivative.

use super::float::{cpu_forward_is_kernel, CpuKernel, Float};
use super::matmul::output_buffer;
use super::route::{route_for, Kernels, Route};
use candle_core::{CustomOp1, CustomOp2, Result, Shape, Tensor};
use rayon::prelude::*;

/// GELU-tanh: the fused kernel where [`route_for`] has one, candle's
/// composition elsewhere.
pub fn gelu_tanh(x: &Tensor) -> crate::Result<Tensor> {
    match route_for(x, Kernels::CPU_FLOAT) {
        Route::CpuKernel => Ok(x.contiguous()?.apply_op1(Gelu)?),
        Route::CudaKernel | Route::Composition => gelu_tanh_reference(x),
    }
}

/// candle's own tanh-form GELU (differentiable through its op graph).
pub fn gelu_tanh_reference(x: &Tensor) -> crate::Result<Tensor> {
    Ok(x.gelu()?)
}

pub(crate) struct Gelu;

/// The gradient of GELU-tanh at `x` for the output gradient `dy`.
pub(crate) fn gelu_gradient(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    x.apply_op2_no_bwd(&dy.contiguous()?, &GeluBackward)
}

/// Elements per rayon task: large enough to amortise the task, small enough
/// that an MLP activation (`N·T·4D`) spreads over every thread.
const CHUNK: usize = 1 << 14;

impl CpuKernel<1> for Gelu {
    const NAME: &'static str = "gelu";

    fn run<T: Float>(&self, [x]: [&[T]; 1], _: [&Shape; 1]) -> Result<Vec<T>> {
        // Every element is written below.
        let mut y = output_buffer(x.len(), |_| {});
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| T::gelu_forward(x, y));
        Ok(y)
    }
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-tanh"
    }

    cpu_forward_is_kernel!(s l);

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(gelu_gradient(x, dy)?))
    }
}

struct GeluBackward;

impl CpuKernel<2> for GeluBackward {
    const NAME: &'static str = "gelu backward";

    fn run<T: Float>(&self, [x, dy]: [&[T]; 2], _: [&Shape; 2]) -> Result<Vec<T>> {
        // Every element is written below.
        let mut dx = output_buffer(x.len(), |_| {});
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
            .for_each(|(dx, (x, dy))| T::gelu_backward(x, dy, dx));
        Ok(dx)
    }
}

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "gelu-tanh-backward"
    }

    cpu_forward_is_kernel!(s1 l1, s2 l2);
}
