//! Multi-head self-attention straight from the fused qkv projection, tiled
//! by query blocks (flash-attention style): for each (sample, head) and each
//! block of `BLOCK_Q` queries, the scores against all keys live in a
//! `BLOCK_Q × T` scratch tile that stays in cache; the full `T × T` matrix
//! never exists, in the forward or the backward. The forward saves each
//! row's log-sum-exp so that the backward recomputes the probabilities
//! exactly with one exp per score.
//!
//! Layout: `qkv` is `(N, T, 3·D)` as the projection writes it (q, k, v
//! blocks, each split into heads of D/H channels); the output is `(N, T, D)`
//! with heads concatenated, ready for the output projection. Reading q, k, v
//! in place through strides saves the permute copies of the composition.

use super::attention_bf16;
use super::bf16::round_operand;
use super::float::{contiguous, run_kernel, CpuKernel, Float, SharedMut};
use super::matmul::{Operand, Threads};
use super::route::{route_for_in, Kernels, Route};
use crate::compute::Precision;
use crate::Result;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Device, Layout, Shape, Tensor, D};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

const BLOCK_Q: usize = 64;

/// softmax(q·kᵀ/√d)·v per head: the fused kernel where [`route_for_in`]
/// has one, else the unfused composition [`attention_reference`].
pub fn attention(qkv: &Tensor, num_heads: usize) -> Result<Tensor> {
    attention_in(Precision::F32, qkv, num_heads)
}

/// [`attention`] with its two products in `precision`: for bf16, q, k, the
/// probabilities and v are rounded to bf16 as the products read them (and
/// the backward's operands likewise); the scores, softmax and the row
/// log-sum-exps stay f32.
pub fn attention_in(precision: Precision, qkv: &Tensor, num_heads: usize) -> Result<Tensor> {
    let (_, _, d3) = qkv.dims3()?;
    if num_heads == 0 || d3 % (3 * num_heads) != 0 {
        crate::bail!("attention: last dim {d3} is not 3·heads·head_dim for {num_heads} heads");
    }
    Ok(
        match route_for_in(precision, qkv, Kernels::CPU_FLOAT_BF16) {
            Route::CpuKernel => qkv
                .contiguous()?
                .apply_op1(FlashAttention::new(precision, num_heads))?,
            Route::CudaKernel | Route::Composition => {
                attention_reference_in(precision, qkv, num_heads)?
            }
        },
    )
}

/// The unfused composition (what any device can run; the tests' reference).
pub fn attention_reference(qkv: &Tensor, num_heads: usize) -> Result<Tensor> {
    attention_reference_in(Precision::F32, qkv, num_heads)
}

/// [`attention_reference`] with the products' operands (q, k, the
/// probabilities, v) rounded for `precision`; 1/√d scales the f32 scores,
/// as in the kernel.
pub fn attention_reference_in(
    precision: Precision,
    qkv: &Tensor,
    num_heads: usize,
) -> Result<Tensor> {
    let round = |t: Tensor| -> Result<Tensor> {
        Ok(match precision {
            Precision::F32 => t,
            Precision::Bf16 => round_operand(&t)?,
        })
    };
    let (n, t, d3) = qkv.dims3()?;
    let d = d3 / 3;
    let hd = d / num_heads;
    let qkv = qkv
        .reshape((n, t, 3, num_heads, hd))?
        .permute((2, 0, 3, 1, 4))?;
    let q = round(qkv.get(0)?.contiguous()?)?;
    let k = round(qkv.get(1)?.contiguous()?)?;
    let v = round(qkv.get(2)?.contiguous()?)?;
    let scores = (q.matmul(&k.t()?)? * (hd as f64).powf(-0.5))?;
    // Differentiable softmax; candle's fused softmax_last_dim has no backward.
    let weights = round(candle_nn::ops::softmax(&scores, D::Minus1)?)?;
    Ok(weights.matmul(&v)?.transpose(1, 2)?.reshape((n, t, d))?)
}

pub(crate) struct FlashAttention {
    num_heads: usize,
    precision: Precision,
    /// Row log-sum-exps of the forward, `(N, H, T)`, for the backward.
    lse: Arc<Mutex<Option<Tensor>>>,
}

#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    t: usize,
    d: usize,
    heads: usize,
    hd: usize,
}

impl Dims {
    fn new(shape: &Shape, heads: usize) -> candle_core::Result<Self> {
        let (n, t, d3) = shape.dims3()?;
        let d = d3 / 3;
        Ok(Self {
            n,
            t,
            d,
            heads,
            hd: d / heads,
        })
    }
}

/// dst (m×n, row stride dst_rs) = scale·lhs·rhs (+ dst if `accumulate`) on
/// the calling thread (each head is already a task of its own). Strides are
/// (row, column) in elements.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul<T: Float>(
    dims: (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const T,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const T,
    (rhs_rs, rhs_cs): (usize, usize),
    scale: T,
) {
    super::matmul::matmul(
        dims,
        dst,
        dst_rs,
        accumulate,
        Operand::new(lhs, lhs_rs, lhs_cs),
        Operand::new(rhs, rhs_rs, rhs_cs),
        scale,
        Threads::One,
    )
}

fn forward<T: Float>(qkv: &[T], dims: Dims) -> (Vec<T>, Vec<T>) {
    let Dims { n, t, d, heads, hd } = dims;
    let scale = T::from(1.0 / (hd as f64).sqrt()).unwrap();
    let mut out = vec![T::zero(); n * t * d];
    let mut lse = vec![T::zero(); n * heads * t];
    let (out_p, lse_p) = (SharedMut(out.as_mut_ptr()), SharedMut(lse.as_mut_ptr()));
    (0..n * heads).into_par_iter().for_each(|task| {
        let (b, h) = (task / heads, task % heads);
        let base = qkv[b * t * 3 * d..].as_ptr();
        // SAFETY: q, k, v of head h lie inside sample b's rows of `qkv`.
        let (q, k, v) = unsafe {
            (
                base.add(h * hd),
                base.add(d + h * hd),
                base.add(2 * d + h * hd),
            )
        };
        let mut tile = vec![T::zero(); BLOCK_Q * t];
        for q0 in (0..t).step_by(BLOCK_Q) {
            let bq = BLOCK_Q.min(t - q0);
            let s = &mut tile[..bq * t];
            // SAFETY: pointer ranges are in bounds by construction; this task
            // alone writes head h's columns of sample b's output rows.
            unsafe {
                matmul(
                    (bq, t, hd),
                    s.as_mut_ptr(),
                    t,
                    false,
                    q.add(q0 * 3 * d),
                    (3 * d, 1),
                    k,
                    (1, 3 * d),
                    scale,
                );
            }
            for (i, row) in s.chunks_exact_mut(t).enumerate() {
                let max = row
                    .iter()
                    .copied()
                    .fold(T::neg_infinity(), num_traits::Float::max);
                let sum = T::exp_shifted_sum(row, max);
                let inv = T::one() / sum;
                row.iter_mut().for_each(|p| *p *= inv);
                // SAFETY: index (b, h, q0 + i) is this task's.
                unsafe { *lse_p.ptr().add((b * heads + h) * t + q0 + i) = max + sum.ln() };
            }
            unsafe {
                let dst = out_p.ptr().add((b * t + q0) * d + h * hd);
                matmul(
                    (bq, hd, t),
                    dst,
                    d,
                    false,
                    s.as_ptr(),
                    (t, 1),
                    v,
                    (3 * d, 1),
                    T::one(),
                );
            }
        }
    });
    (out, lse)
}

/// d(qkv) from q, k, v, the output o, its gradient and the saved row lse.
fn backward<T: Float>(qkv: &[T], o: &[T], d_o: &[T], lse: &[T], dims: Dims) -> Vec<T> {
    let Dims { n, t, d, heads, hd } = dims;
    let scale = T::from(1.0 / (hd as f64).sqrt()).unwrap();
    let mut dqkv = vec![T::zero(); n * t * 3 * d];
    let dqkv_p = SharedMut(dqkv.as_mut_ptr());
    (0..n * heads).into_par_iter().for_each(|task| {
        let (b, h) = (task / heads, task % heads);
        let base = qkv[b * t * 3 * d..].as_ptr();
        let (q, k, v) = unsafe {
            (
                base.add(h * hd),
                base.add(d + h * hd),
                base.add(2 * d + h * hd),
            )
        };
        let dbase = unsafe { dqkv_p.ptr().add(b * t * 3 * d) };
        let (dq, dk, dv) = unsafe {
            (
                dbase.add(h * hd),
                dbase.add(d + h * hd),
                dbase.add(2 * d + h * hd),
            )
        };
        let mut p_tile = vec![T::zero(); BLOCK_Q * t];
        let mut ds_tile = vec![T::zero(); BLOCK_Q * t];
        for q0 in (0..t).step_by(BLOCK_Q) {
            let bq = BLOCK_Q.min(t - q0);
            let (p, ds) = (&mut p_tile[..bq * t], &mut ds_tile[..bq * t]);
            let qb = unsafe { q.add(q0 * 3 * d) };
            let dob = d_o[(b * t + q0) * d + h * hd..].as_ptr();
            // SAFETY (all blocks below): in-bounds strided views; this task
            // alone writes head h's q/k/v columns of sample b's gradient rows.
            unsafe {
                matmul(
                    (bq, t, hd),
                    p.as_mut_ptr(),
                    t,
                    false,
                    qb,
                    (3 * d, 1),
                    k,
                    (1, 3 * d),
                    scale,
                );
                matmul(
                    (bq, t, hd),
                    ds.as_mut_ptr(),
                    t,
                    false,
                    dob,
                    (d, 1),
                    v,
                    (1, 3 * d),
                    T::one(),
                );
            }
            for i in 0..bq {
                let row = (b * t + q0 + i) * d + h * hd;
                let delta: T = (0..hd).map(|j| d_o[row + j] * o[row + j]).sum();
                let l = lse[(b * heads + h) * t + q0 + i];
                let (pr, dr) = (&mut p[i * t..(i + 1) * t], &mut ds[i * t..(i + 1) * t]);
                T::exp_shifted_sum(pr, l);
                for (dsv, &pv) in dr.iter_mut().zip(pr.iter()) {
                    *dsv = pv * (*dsv - delta);
                }
            }
            unsafe {
                matmul(
                    (bq, hd, t),
                    dq.add(q0 * 3 * d),
                    3 * d,
                    false,
                    ds.as_ptr(),
                    (t, 1),
                    k,
                    (3 * d, 1),
                    scale,
                );
                matmul(
                    (t, hd, bq),
                    dk,
                    3 * d,
                    true,
                    ds.as_ptr(),
                    (1, t),
                    qb,
                    (3 * d, 1),
                    scale,
                );
                matmul(
                    (t, hd, bq),
                    dv,
                    3 * d,
                    true,
                    p.as_ptr(),
                    (1, t),
                    dob,
                    (d, 1),
                    T::one(),
                );
            }
        }
    });
    dqkv
}

impl CustomOp1 for FlashAttention {
    fn name(&self) -> &'static str {
        "flash-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = Dims::new(l.shape(), self.num_heads)?;
        let (start, end) = contiguous(l, "attention")?;
        let lse_shape = (dims.n, dims.heads, dims.t);
        let (out, lse) = match s {
            CpuStorage::F32(x) => {
                let x = &x[start..end];
                let (o, l) = match self.precision {
                    Precision::F32 => forward(x, dims),
                    Precision::Bf16 => attention_bf16::forward(x, dims.into()),
                };
                (
                    CpuStorage::F32(o),
                    Tensor::from_vec(l, lse_shape, &Device::Cpu)?,
                )
            }
            CpuStorage::F64(x) => {
                let (o, l) = forward(&x[start..end], dims);
                (
                    CpuStorage::F64(o),
                    Tensor::from_vec(l, lse_shape, &Device::Cpu)?,
                )
            }
            _ => candle_core::bail!("attention: f32 or f64 only"),
        };
        *self.lse.lock().unwrap() = Some(lse);
        Ok((out, Shape::from((dims.n, dims.t, dims.d))))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.gradient(qkv, out, grad_out)?))
    }
}

impl FlashAttention {
    pub(crate) fn new(precision: Precision, num_heads: usize) -> Self {
        Self {
            num_heads,
            precision,
            lse: Arc::new(Mutex::new(None)),
        }
    }

    /// d(qkv) for the output `out` of this op's last forward and its
    /// gradient `grad_out`.
    pub(crate) fn gradient(
        &self,
        qkv: &Tensor,
        out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let lse =
            self.lse.lock().unwrap().clone().ok_or_else(|| {
                candle_core::Error::Msg("attention: backward without forward".into())
            })?;
        let op = FlashAttentionBackward {
            num_heads: self.num_heads,
            precision: self.precision,
            lse,
        };
        qkv.apply_op3_no_bwd(out, &grad_out.contiguous()?, &op)
    }
}

struct FlashAttentionBackward {
    num_heads: usize,
    precision: Precision,
    /// The forward's row log-sum-exps, `(N, H, T)`.
    lse: Tensor,
}

impl CustomOp3 for FlashAttentionBackward {
    fn name(&self) -> &'static str {
        "flash-attention-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let inputs = [(s1, l1), (s2, l2), (s3, l3)];
        match (self.precision, s1) {
            (Precision::Bf16, CpuStorage::F32(_)) => {
                let dims = Dims::new(l1.shape(), self.num_heads)?;
                let mut slices: [&[f32]; 3] = [&[]; 3];
                for (slice, (s, l)) in slices.iter_mut().zip(inputs) {
                    let (start, end) = contiguous(l, "attention backward")?;
                    *slice = &s.as_slice::<f32>()?[start..end];
                }
                let [qkv, o, d_o] = slices;
                let (storage, layout) = self.lse.storage_and_layout();
                let candle_core::Storage::Cpu(lse) = &*storage else {
                    candle_core::bail!("attention backward: the saved lse is not on the CPU");
                };
                let (start, end) = contiguous(layout, "attention backward")?;
                let lse = &lse.as_slice::<f32>()?[start..end];
                let dqkv = attention_bf16::backward(qkv, o, d_o, lse, dims.into());
                Ok((CpuStorage::F32(dqkv), l1.shape().clone()))
            }
            _ => run_kernel(self, inputs),
        }
    }
}

impl From<Dims> for attention_bf16::Dims {
    fn from(Dims { n, t, d, heads, hd }: Dims) -> Self {
        Self { n, t, d, heads, hd }
    }
}

impl CpuKernel<3> for FlashAttentionBackward {
    const NAME: &'static str = "attention backward";

    /// Inputs qkv, the forward's output and its gradient.
    fn run<T: Float>(
        &self,
        [qkv, o, d_o]: [&[T]; 3],
        shapes: [&Shape; 3],
    ) -> candle_core::Result<Vec<T>> {
        let dims = Dims::new(shapes[0], self.num_heads)?;
        let (storage, layout) = self.lse.storage_and_layout();
        let candle_core::Storage::Cpu(lse) = &*storage else {
            candle_core::bail!("attention backward: the saved lse is not on the CPU");
        };
        let (start, end) = contiguous(layout, "attention backward")?;
        Ok(backward(qkv, o, d_o, &T::slice(lse)?[start..end], dims))
    }
}
