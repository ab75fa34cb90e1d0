//! `attention(x·Wᵀ + b)`: the qkv projection and the tiled attention as one
//! custom op. The projection's `(N, T, 3D)` output is kept inside the op for
//! the backward instead of being a node of candle's graph, which would cost
//! a zero-filled gradient buffer and an add in candle's backward.

use super::attention::{attention_reference_in, FlashAttention};
use super::bf16::PackedRhs;
use super::float::{cpu_forward_on, tensor_from_storage};
use super::linear::{linear_gradients, linear_reference_in, Linear, WeightPacking};
use super::route::{route_for_in, Kernels, Route};
use crate::compute::Precision;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// Multi-head self-attention of `num_heads` heads over `qkv = x·Wᵀ + b`,
/// `x`: `(N, T, D)`, `W`: `(3D, D)`; both products in `precision`.
pub fn qkv_attention_in(
    precision: Precision,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    num_heads: usize,
) -> crate::Result<Tensor> {
    qkv_attention_packed_in(precision, x, weight, bias, num_heads, None)
}

/// [`qkv_attention_in`] reusing `packing`'s packed projection weight where
/// [`WeightPacking`] allows one.
pub fn qkv_attention_packed_in(
    precision: Precision,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    num_heads: usize,
    packing: Option<&WeightPacking>,
) -> crate::Result<Tensor> {
    let (_, _, d) = x.dims3()?;
    if weight.dims() != [3 * d, d] || bias.dims() != [3 * d] || num_heads == 0 || d % num_heads != 0
    {
        crate::bail!(
            "qkv attention: x {:?}, weight {:?}, bias {:?} and {num_heads} heads do not fit \
             (expected (3D, D) and (3D,) with D divisible by the heads)",
            x.dims(),
            weight.dims(),
            bias.dims()
        );
    }
    if route_for_in(precision, x, Kernels::CPU_FLOAT_BF16) != Route::CpuKernel {
        return qkv_attention_reference_in(precision, x, weight, bias, num_heads);
    }
    Ok(x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        QkvAttention {
            precision,
            packed: packing.and_then(|p| p.for_product(precision, x, weight)),
            attention: FlashAttention::new(precision, num_heads),
            qkv: Arc::new(Mutex::new(None)),
        },
    )?)
}

/// The composition: [`linear_reference_in`], then [`attention_reference_in`].
pub fn qkv_attention_reference_in(
    precision: Precision,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    num_heads: usize,
) -> crate::Result<Tensor> {
    let qkv = linear_reference_in(precision, x, weight, Some(bias))?;
    attention_reference_in(precision, &qkv, num_heads)
}

struct QkvAttention {
    precision: Precision,
    packed: Option<Arc<PackedRhs>>,
    attention: FlashAttention,
    /// The projection of the forward, for the backward.
    qkv: Arc<Mutex<Option<Tensor>>>,
}

impl CustomOp3 for QkvAttention {
    fn name(&self) -> &'static str {
        "qkv-attention"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let linear = Linear::with_packed(self.precision, self.packed.clone());
        let (qkv, shape) = linear.cpu_fwd(x, lx, w, lw, b, lb)?;
        let qkv = tensor_from_storage(qkv, shape)?;
        let out = cpu_forward_on(&qkv, "qkv attention", |s, l| self.attention.cpu_fwd(s, l))?;
        *self.qkv.lock().unwrap() = Some(qkv);
        Ok(out)
    }

    #[allow(clippy::type_complexity)]
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        out: &Tensor,
        grad_out: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let qkv = self.qkv.lock().unwrap().clone();
        let qkv = qkv.ok_or_else(|| {
            candle_core::Error::Msg("qkv attention: backward without forward".into())
        })?;
        let dqkv = self.attention.gradient(&qkv, out, grad_out)?;
        let (dx, dw, db) = linear_gradients(self.precision, x, w, &dqkv, true)?;
        Ok((Some(dx), Some(dw), db))
    }
}
