//! `x·Wᵀ (+ b)` over the last dim as one custom op with its own backward.
//!
//! Through candle's ops the weight gradient arrives as the transpose of
//! `xᵀ·dy`, a strided view that the optimizer must copy into row-major order
//! for every matrix on every step, and the bias gradient is a column
//! reduction. Here the backward writes `dW = dyᵀ·x` directly in `W`'s
//! row-major layout (gemm takes the transposed operand through strides) and
//! sums the bias gradient row by row.

use super::bf16::{round_operand, PackedRhs};
use super::float::{cpu_forward_is_kernel, CpuKernel, Float};
use super::matmul::{matmul_in, output_buffer, Operand, Threads};
use super::route::{route_for_in, Kernels, Route};
use crate::compute::Precision;
use candle_core::{CustomOp2, CustomOp3, DType, Result, Shape, Tensor};
use std::sync::{Arc, OnceLock};

/// `x·Wᵀ + b` (or without `b`); `x`: `(..., K)`, `W`: `(N, K)`, `b`: `(N,)`.
/// The fused kernel where [`route_for_in`] has one; candle's matmul and
/// broadcast add elsewhere.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> crate::Result<Tensor> {
    linear_in(Precision::F32, x, weight, bias)
}

/// [`linear`] with the product in `precision` (bf16: `x` and `W` rounded
/// to bf16, f32 accumulation; the bias added in f32).
pub fn linear_in(
    precision: Precision,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> crate::Result<Tensor> {
    linear_packed_in(precision, x, weight, bias, None)
}

/// A weight's bf16 packing, made on its first use and reused by every later
/// product with it. Packing rounds and lays out the whole weight: at the
/// shapes of a sampling forward it cost as much as the product itself
/// (half a DiT-B/4 bf16 forward's time). Only for weights that cannot
/// change (not a [`candle_core::Var`]) and inputs autograd does not follow:
/// sampling's products, where one packing serves every step; training
/// (whose weights change every step) packs per product as before.
#[derive(Clone, Default)]
pub struct WeightPacking(Arc<OnceLock<Option<Arc<PackedRhs>>>>);

impl std::fmt::Debug for WeightPacking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            Some(Some(p)) => write!(f, "WeightPacking({:?})", p.dims()),
            _ => f.write_str("WeightPacking(none)"),
        }
    }
}

impl WeightPacking {
    /// Whether a product has made the packing (and later ones reuse it).
    pub fn is_made(&self) -> bool {
        matches!(self.0.get(), Some(Some(_)))
    }

    /// The packed `weight` for a product with `x`, where one may be used.
    pub(crate) fn for_product(
        &self,
        precision: Precision,
        x: &Tensor,
        weight: &Tensor,
    ) -> Option<Arc<PackedRhs>> {
        let reusable = precision == Precision::Bf16
            && x.dtype() == DType::F32
            && weight.dtype() == DType::F32
            && !weight.is_variable()
            && !weight.track_op()
            && !x.track_op()
            && route_for_in(precision, x, Kernels::CPU_FLOAT_BF16) == Route::CpuKernel;
        if !reusable {
            return None;
        }
        self.0.get_or_init(|| pack_weight(weight).ok()).clone()
    }
}

/// `W` `(N, K)` packed as the `K × N` right operand of `x·Wᵀ`.
fn pack_weight(weight: &Tensor) -> crate::Result<Arc<PackedRhs>> {
    let (n, k) = weight.dims2()?;
    let w: Vec<f32> = weight.flatten_all()?.to_vec1()?;
    let mut packed = PackedRhs::default();
    // SAFETY: `w` holds the n × k weight, read as its k × n transpose.
    unsafe { packed.pack(Operand::new(w.as_ptr(), 1, k), (k, n)) };
    Ok(Arc::new(packed))
}

/// [`linear_in`] reusing `packing`'s packed weight where
/// [`WeightPacking`] allows one.
pub fn linear_packed_in(
    precision: Precision,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    packing: Option<&WeightPacking>,
) -> crate::Result<Tensor> {
    let (n_out, k) = weight.dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&k) || bias.is_some_and(|b| b.dims() != [n_out]) {
        crate::bail!(
            "linear: x {:?}, weight {:?}, bias {:?} do not fit",
            dims,
            weight.dims(),
            bias.map(|b| b.dims().to_vec())
        );
    }
    if route_for_in(precision, x, Kernels::CPU_FLOAT_BF16) != Route::CpuKernel {
        return linear_reference_in(precision, x, weight, bias);
    }
    let packed = packing.and_then(|p| p.for_product(precision, x, weight));
    let (x, w) = (x.contiguous()?, weight.contiguous()?);
    let op = Linear { precision, packed };
    Ok(match bias {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op)?,
        None => x.apply_op2(&w, op)?,
    })
}

/// candle's composition: flattened matmul, then broadcast bias.
pub fn linear_reference(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> crate::Result<Tensor> {
    linear_reference_in(Precision::F32, x, weight, bias)
}

/// [`linear_reference`] with the operands rounded for `precision`.
pub fn linear_reference_in(
    precision: Precision,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> crate::Result<Tensor> {
    let (x, weight) = match precision {
        Precision::F32 => (x.clone(), weight.clone()),
        Precision::Bf16 => (round_operand(x)?, round_operand(weight)?),
    };
    let k = weight.dim(1)?;
    let mut out_shape = x.dims().to_vec();
    *out_shape.last_mut().unwrap() = weight.dim(0)?;
    let y = x
        .reshape(((), k))?
        .matmul(&weight.t()?)?
        .reshape(out_shape)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

pub(crate) struct Linear {
    precision: Precision,
    /// The weight packed beforehand, for the forward.
    packed: Option<Arc<PackedRhs>>,
}

/// `dst (m×n, row-major) = lhs·rhs (+ dst)` on rayon's pool.
unsafe fn product<T: Float>(
    precision: Precision,
    dims: (usize, usize, usize),
    dst: *mut T,
    accumulate: bool,
    lhs: Operand<T>,
    rhs: Operand<T>,
) {
    matmul_in(
        precision,
        dims,
        dst,
        dims.1,
        accumulate,
        lhs,
        rhs,
        T::one(),
        Threads::Pool,
    )
}

fn forward<T: Float>(
    precision: Precision,
    packed: Option<&PackedRhs>,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    n: usize,
) -> Vec<T> {
    let k = w.len() / n;
    let m = x.len() / k;
    let run = |y: *mut T, accumulate| {
        let lhs = Operand::new(x.as_ptr(), k, 1);
        // SAFETY: sizes were checked by `linear`; all buffers are row-major;
        // a packed weight is this `w` (`WeightPacking` packed it from it).
        unsafe {
            match packed {
                Some(p) => T::matmul_prepacked(lhs, m, p, y, n, accumulate, Threads::Pool),
                None => product(
                    precision,
                    (m, n, k),
                    y,
                    accumulate,
                    lhs,
                    Operand::new(w.as_ptr(), 1, k),
                ),
            }
        }
    };
    match b {
        Some(b) => output_buffer(m * n, |y: *mut T| {
            for r in 0..m {
                // SAFETY: row r of the m×n buffer; `b` has n elements.
                unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), y.add(r * n), n) };
            }
            run(y, true)
        }),
        None => output_buffer(m * n, |y| run(y, false)),
    }
}

/// `[dx (M·K) | dW (N·K) | db (N, with bias)]`.
fn backward<T: Float>(
    precision: Precision,
    x: &[T],
    w: &[T],
    dy: &[T],
    n: usize,
    with_bias: bool,
) -> Vec<T> {
    let k = w.len() / n;
    let m = x.len() / k;
    let bias_len = if with_bias { n } else { 0 };
    output_buffer(m * k + n * k + bias_len, |out| {
        // SAFETY: as in `forward`; dyᵀ is read through swapped strides. The
        // two products write the first two parts of `out`, the loop the last.
        unsafe {
            product(
                precision,
                (m, k, n),
                out,
                false,
                Operand::new(dy.as_ptr(), n, 1),
                Operand::new(w.as_ptr(), k, 1),
            );
            product(
                precision,
                (n, k, m),
                out.add(m * k),
                false,
                Operand::new(dy.as_ptr(), 1, n),
                Operand::new(x.as_ptr(), k, 1),
            );
            if with_bias {
                let db = out.add(m * k + n * k);
                db.write_bytes(0, n); // all-zero bits are 0.0
                let db = std::slice::from_raw_parts_mut(db, n);
                for r in dy.chunks_exact(n) {
                    for (acc, &g) in db.iter_mut().zip(r) {
                        *acc += g;
                    }
                }
            }
        }
    })
}

/// x's shape with the last dim replaced by W's output count.
fn out_shape(x: &Shape, w: &Shape) -> Result<Shape> {
    let mut dims = x.dims().to_vec();
    *dims.last_mut().unwrap() = w.dims()[0];
    Ok(Shape::from(dims))
}

impl CpuKernel<3> for Linear {
    const NAME: &'static str = "linear";

    fn run<T: Float>(&self, [x, w, b]: [&[T]; 3], shapes: [&Shape; 3]) -> Result<Vec<T>> {
        Ok(forward(
            self.precision,
            self.packed.as_deref(),
            x,
            w,
            Some(b),
            shapes[1].dims()[0],
        ))
    }

    fn out_shape(&self, [x, w, _]: [&Shape; 3]) -> Result<Shape> {
        out_shape(x, w)
    }
}

impl CpuKernel<2> for Linear {
    const NAME: &'static str = "linear";

    fn run<T: Float>(&self, [x, w]: [&[T]; 2], shapes: [&Shape; 2]) -> Result<Vec<T>> {
        Ok(forward(
            self.precision,
            self.packed.as_deref(),
            x,
            w,
            None,
            shapes[1].dims()[0],
        ))
    }

    fn out_shape(&self, [x, w]: [&Shape; 2]) -> Result<Shape> {
        out_shape(x, w)
    }
}

/// Packed gradients → (dx, dW, db) as contiguous views.
fn unpack(
    packed: &Tensor,
    x: &Tensor,
    w: &Tensor,
    with_bias: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let (mk, (n, k)) = (x.elem_count(), w.dims2()?);
    let dx = packed.narrow(0, 0, mk)?.reshape(x.shape())?;
    let dw = packed.narrow(0, mk, n * k)?.reshape((n, k))?;
    let db = if with_bias {
        Some(packed.narrow(0, mk + n * k, n)?)
    } else {
        None
    };
    Ok((dx, dw, db))
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    cpu_forward_is_kernel!(s1 l1, s2 l2, s3 l3);

    #[allow(clippy::type_complexity)]
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let packed = x.apply_op3_no_bwd(w, &dy.contiguous()?, &self.backward(true))?;
        let (dx, dw, db) = unpack(&packed, x, w, true)?;
        Ok((Some(dx), Some(dw), db))
    }
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear-no-bias"
    }

    cpu_forward_is_kernel!(s1 l1, s2 l2);

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let packed = x.apply_op3_no_bwd(w, &dy.contiguous()?, &self.backward(false))?;
        let (dx, dw, _) = unpack(&packed, x, w, false)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `(dx, dW, db)` of `x·Wᵀ (+ b)` for the output gradient `dy`.
pub(crate) fn linear_gradients(
    precision: Precision,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    with_bias: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let op = Linear::new(precision).backward(with_bias);
    unpack(
        &x.apply_op3_no_bwd(w, &dy.contiguous()?, &op)?,
        x,
        w,
        with_bias,
    )
}

impl Linear {
    pub(crate) fn new(precision: Precision) -> Self {
        Self::with_packed(precision, None)
    }

    /// With the weight packed beforehand (see [`WeightPacking`]).
    pub(crate) fn with_packed(precision: Precision, packed: Option<Arc<PackedRhs>>) -> Self {
        Self { precision, packed }
    }

    fn backward(&self, with_bias: bool) -> LinearBackward {
        LinearBackward {
            with_bias,
            precision: self.precision,
        }
    }
}

/// The backward's products round `dy`, `W` and `x` to bf16 in bf16, as
/// autocast's backward does; the bias gradient sums `dy` in f32.
struct LinearBackward {
    with_bias: bool,
    precision: Precision,
}

impl CustomOp3 for LinearBackward {
    fn name(&self) -> &'static str {
        "linear-backward"
    }

    cpu_forward_is_kernel!(s1 l1, s2 l2, s3 l3);
}

impl CpuKernel<3> for LinearBackward {
    const NAME: &'static str = "linear backward";

    fn run<T: Float>(&self, [x, w, dy]: [&[T]; 3], shapes: [&Shape; 3]) -> Result<Vec<T>> {
        Ok(backward(
            self.precision,
            x,
            w,
            dy,
            shapes[1].dims()[0],
            self.with_bias,
        ))
    }

    /// `[dx (M·K) | dW (N·K) | db (N, with bias)]`.
    fn out_shape(&self, [x, w, _]: [&Shape; 3]) -> Result<Shape> {
        let (n, k) = w.dims2()?;
        Ok(Shape::from(
            x.elem_count() + n * k + if self.with_bias { n } else { 0 },
        ))
    }
}
