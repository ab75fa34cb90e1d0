//! The element types the fused CPU kernels are written for (f32 for speed,
//! f64 for finite-difference gradient checks).

use candle_core::cpu_backend::CpuStorage;
use candle_core::{Layout, Result, Shape, WithDType};

pub trait Float:
    WithDType
    + num_traits::Float
    + Send
    + Sync
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::MulAssign
{
    fn slice(s: &CpuStorage) -> Result<&[Self]>;
    fn slice_mut(s: &mut CpuStorage) -> Result<&mut [Self]>;
    /// `xs[i] ← e^(xs[i] − shift)`, returning the sum.
    fn exp_shifted_sum(xs: &mut [Self], shift: Self) -> Self;
    fn gelu_forward(x: &[Self], y: &mut [Self]);
    fn gelu_backward(x: &[Self], dy: &[Self], dx: &mut [Self]);
    /// [`super::bf16::matmul`] on this element type.
    ///
    /// # Safety
    /// As [`super::matmul::matmul`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn matmul_bf16(
        dims: (usize, usize, usize),
        dst: *mut Self,
        dst_rs: usize,
        accumulate: bool,
        lhs: Operand<Self>,
        rhs: Operand<Self>,
        scale: Self,
        threads: Threads,
    );

    /// `dst ← lhs·b` (`+ dst`) with `b` packed beforehand
    /// ([`super::bf16::matmul_prepacked`]); f32 only: weights are packed for
    /// f32 tensors alone ([`super::linear::WeightPacking`]), so the default
    /// is never called.
    ///
    /// # Safety
    /// As [`super::bf16::matmul_prepacked`].
    unsafe fn matmul_prepacked(
        _lhs: Operand<Self>,
        _m: usize,
        _b: &PackedRhs,
        _dst: *mut Self,
        _dst_rs: usize,
        _accumulate: bool,
        _threads: Threads,
    ) {
        unreachable!("packed weights are f32 only")
    }
}

use super::bf16::PackedRhs;
use super::matmul::{Operand, Threads};
use super::vmath;

impl Float for f32 {
    fn slice(s: &CpuStorage) -> Result<&[Self]> {
        s.as_slice::<f32>()
    }
    fn slice_mut(s: &mut CpuStorage) -> Result<&mut [Self]> {
        match s {
            CpuStorage::F32(v) => Ok(v.as_mut_slice()),
            _ => candle_core::bail!("expected f32 storage"),
        }
    }
    fn exp_shifted_sum(xs: &mut [Self], shift: Self) -> Self {
        vmath::exp_shifted_sum(xs, shift)
    }
    fn gelu_forward(x: &[Self], y: &mut [Self]) {
        vmath::gelu_forward(x, y)
    }
    fn gelu_backward(x: &[Self], dy: &[Self], dx: &mut [Self]) {
        vmath::gelu_backward(x, dy, dx)
    }
    unsafe fn matmul_bf16(
        dims: (usize, usize, usize),
        dst: *mut Self,
        dst_rs: usize,
        accumulate: bool,
        lhs: Operand<Self>,
        rhs: Operand<Self>,
        scale: Self,
        threads: Threads,
    ) {
        super::bf16::matmul(dims, dst, dst_rs, accumulate, lhs, rhs, scale, threads)
    }
    unsafe fn matmul_prepacked(
        lhs: Operand<Self>,
        m: usize,
        b: &PackedRhs,
        dst: *mut Self,
        dst_rs: usize,
        accumulate: bool,
        threads: Threads,
    ) {
        super::bf16::matmul_prepacked(lhs, m, b, dst, dst_rs, accumulate, threads)
    }
}

impl Float for f64 {
    fn slice(s: &CpuStorage) -> Result<&[Self]> {
        s.as_slice::<f64>()
    }
    fn slice_mut(s: &mut CpuStorage) -> Result<&mut [Self]> {
        match s {
            CpuStorage::F64(v) => Ok(v.as_mut_slice()),
            _ => candle_core::bail!("expected f64 storage"),
        }
    }
    fn exp_shifted_sum(xs: &mut [Self], shift: Self) -> Self {
        xs.iter_mut()
            .map(|x| {
                *x = (*x - shift).exp();
                *x
            })
            .sum()
    }
    fn gelu_forward(x: &[Self], y: &mut [Self]) {
        vmath::gelu_forward_f64(x, y)
    }
    fn gelu_backward(x: &[Self], dy: &[Self], dx: &mut [Self]) {
        vmath::gelu_backward_f64(x, dy, dx)
    }
    /// Never called: [`super::route`] has no bf16 kernel for f64 tensors
    /// (the exact gradient checks), which run the composition instead.
    unsafe fn matmul_bf16(
        _: (usize, usize, usize),
        _: *mut Self,
        _: usize,
        _: bool,
        _: Operand<Self>,
        _: Operand<Self>,
        _: Self,
        _: Threads,
    ) {
        unreachable!("bf16 products are routed for f32 tensors only")
    }
}

/// The contiguous range of a layout, or an error naming the op.
pub fn contiguous(layout: &Layout, op: &str) -> Result<(usize, usize)> {
    layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input must be contiguous")))
}

/// A raw pointer that rayon tasks may share: each task writes a disjoint
/// part of the buffer (its own head's columns, its own rows).
#[derive(Clone, Copy)]
pub struct SharedMut<T>(pub *mut T);
// SAFETY: users guarantee that concurrent writes go to disjoint elements.
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// Through a method so that closures capture the wrapper, not the field.
    pub fn ptr(&self) -> *mut T {
        self.0
    }
}

/// A CPU kernel of `N` inputs, written once for both element types.
pub trait CpuKernel<const N: usize> {
    /// The op's name, for errors.
    const NAME: &'static str;
    /// `inputs[i]`: input i's contiguous elements; `shapes[i]`: its shape.
    fn run<T: Float>(&self, inputs: [&[T]; N], shapes: [&Shape; N]) -> Result<Vec<T>>;
    /// The output's shape; by default the first input's.
    fn out_shape(&self, shapes: [&Shape; N]) -> Result<Shape> {
        Ok(shapes[0].clone())
    }
}

/// Runs `kernel` over contiguous f32 or f64 inputs of one dtype: the output
/// and its shape, as a custom op's `cpu_fwd` returns them.
pub fn run_kernel<const N: usize, K: CpuKernel<N>>(
    kernel: &K,
    inputs: [(&CpuStorage, &Layout); N],
) -> Result<(CpuStorage, Shape)> {
    fn go<T: Float, const N: usize, K: CpuKernel<N>>(
        kernel: &K,
        inputs: [(&CpuStorage, &Layout); N],
    ) -> Result<CpuStorage> {
        let mut slices: [&[T]; N] = [&[]; N];
        for (slice, (s, l)) in slices.iter_mut().zip(inputs) {
            let (start, end) = contiguous(l, K::NAME)?;
            *slice = &T::slice(s)?[start..end];
        }
        Ok(storage(kernel.run(slices, inputs.map(|(_, l)| l.shape()))?))
    }
    let out = match inputs.first() {
        Some((CpuStorage::F32(_), _)) => go::<f32, N, K>(kernel, inputs)?,
        Some((CpuStorage::F64(_), _)) => go::<f64, N, K>(kernel, inputs)?,
        _ => candle_core::bail!("{}: f32 or f64 only", K::NAME),
    };
    Ok((out, kernel.out_shape(inputs.map(|(_, l)| l.shape()))?))
}

/// The `cpu_fwd` method of a candle custom op whose CPU forward is its own
/// [`CpuKernel`] impl, given the argument names:
/// `cpu_forward_is_kernel!(s1 l1, s2 l2, s3 l3);`.
macro_rules! cpu_forward_is_kernel {
    ($($storage:ident $layout:ident),+) => {
        fn cpu_fwd(
            &self,
            $($storage: &candle_core::CpuStorage, $layout: &candle_core::Layout),+
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            $crate::ops::float::run_kernel(self, [$(($storage, $layout)),+])
        }
    };
}
pub(crate) use cpu_forward_is_kernel;

/// A CPU tensor over a finished f32 or f64 buffer (no copy).
pub fn tensor_from_storage(s: CpuStorage, shape: Shape) -> Result<candle_core::Tensor> {
    let cpu = &candle_core::Device::Cpu;
    match s {
        CpuStorage::F32(v) => candle_core::Tensor::from_vec(v, shape, cpu),
        CpuStorage::F64(v) => candle_core::Tensor::from_vec(v, shape, cpu),
        _ => candle_core::bail!("expected f32 or f64 storage"),
    }
}

/// A fused op's second stage: `forward` on the CPU storage of `intermediate`,
/// a tensor the op computed itself (and keeps for its backward).
pub fn cpu_forward_on<R>(
    intermediate: &candle_core::Tensor,
    op: &str,
    forward: impl FnOnce(&CpuStorage, &candle_core::Layout) -> Result<R>,
) -> Result<R> {
    let (storage, layout) = intermediate.storage_and_layout();
    let candle_core::Storage::Cpu(storage) = &*storage else {
        candle_core::bail!("{op}: the intermediate left the CPU");
    };
    forward(storage, layout)
}

/// Wraps a finished buffer as candle storage.
pub fn storage<T: Float>(v: Vec<T>) -> CpuStorage {
    T::to_cpu_storage_owned(v)
}
