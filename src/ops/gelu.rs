//! GELU with the tanh approximation, written as x·σ(2u) with
//! u = √(2/π)(x + 0.044715x³) (the same function, since ½(1 + tanh u) = σ(2u)),
//! evaluated with the vectorised exp; the backward is its exact derivative.

use super::float::{contiguous, storage, Float};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// GELU-tanh, fused on the CPU for f32/f64; candle's composition elsewhere.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    match (x.device(), x.dtype()) {
        (Device::Cpu, DType::F32 | DType::F64) => x.contiguous()?.apply_op1(Gelu),
        _ => gelu_tanh_reference(x),
    }
}

/// candle's own tanh-form GELU (differentiable through its op graph).
pub fn gelu_tanh_reference(x: &Tensor) -> Result<Tensor> {
    x.gelu()
}

struct Gelu;

/// Elements per rayon task: large enough to amortise the task, small enough
/// that an MLP activation (`N·T·4D`) spreads over every thread.
const CHUNK: usize = 1 << 14;

fn map<T: Float>(x: &[T]) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| T::gelu_forward(x, y));
    y
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-tanh"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = contiguous(l, "gelu")?;
        let out = match s {
            CpuStorage::F32(x) => storage(map(&x[a..b])),
            CpuStorage::F64(x) => storage(map(&x[a..b])),
            _ => candle_core::bail!("gelu: f32 or f64 only"),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&dy.contiguous()?, &GeluBackward)?))
    }
}

struct GeluBackward;

fn grad<T: Float>(x: &[T], dy: &[T]) -> Vec<T> {
    let mut dx = vec![T::zero(); x.len()];
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dx, (x, dy))| T::gelu_backward(x, dy, dx));
    dx
}

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "gelu-tanh-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = contiguous(l1, "gelu backward")?;
        let (c, d) = contiguous(l2, "gelu backward")?;
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(dy)) => storage(grad(&x[a..b], &dy[c..d])),
            (CpuStorage::F64(x), CpuStorage::F64(dy)) => storage(grad(&x[a..b], &dy[c..d])),
            _ => candle_core::bail!("gelu backward: f32 or f64, same dtypes"),
        };
        Ok((out, l1.shape().clone()))
    }
}
