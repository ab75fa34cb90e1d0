//! `GELU-tanh(x·Wᵀ + b)`, the MLP's first layer and its activation, as one
//! custom op. The pre-activation is kept inside the op for the backward
//! instead of being a node of candle's graph: every node costs a
//! zero-filled gradient buffer and an add in candle's backward, and this
//! one is the widest tensor of a block (`N·T·4D`).

use super::bf16::PackedRhs;
use super::float::{cpu_forward_on, tensor_from_storage};
use super::gelu::{gelu_gradient, gelu_tanh_reference, Gelu};
use super::linear::{linear_gradients, linear_reference_in, Linear, WeightPacking};
use super::route::{route_for_in, Kernels, Route};
use crate::compute::Precision;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// `gelu_tanh(x·Wᵀ + b)` with the product in `precision`: the fused op
/// where [`route_for_in`] has the linear kernel, the composition elsewhere.
pub fn linear_gelu_in(
    precision: Precision,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
) -> crate::Result<Tensor> {
    linear_gelu_packed_in(precision, x, weight, bias, None)
}

/// [`linear_gelu_in`] reusing `packing`'s packed weight where
/// [`WeightPacking`] allows one.
pub fn linear_gelu_packed_in(
    precision: Precision,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    packing: Option<&WeightPacking>,
) -> crate::Result<Tensor> {
    if route_for_in(precision, x, Kernels::CPU_FLOAT_BF16) != Route::CpuKernel {
        return linear_gelu_reference_in(precision, x, weight, bias);
    }
    let (n_out, k) = weight.dims2()?;
    if x.dims().last() != Some(&k) || bias.dims() != [n_out] {
        crate::bail!(
            "linear-gelu: x {:?}, weight {:?}, bias {:?} do not fit",
            x.dims(),
            weight.dims(),
            bias.dims()
        );
    }
    Ok(x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LinearGelu {
            precision,
            packed: packing.and_then(|p| p.for_product(precision, x, weight)),
            pre_activation: Arc::new(Mutex::new(None)),
        },
    )?)
}

/// The composition: [`linear_reference_in`], then candle's GELU.
pub fn linear_gelu_reference_in(
    precision: Precision,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
) -> crate::Result<Tensor> {
    gelu_tanh_reference(&linear_reference_in(precision, x, weight, Some(bias))?)
}

struct LinearGelu {
    precision: Precision,
    packed: Option<Arc<PackedRhs>>,
    /// `x·Wᵀ + b` of the forward, for the backward.
    pre_activation: Arc<Mutex<Option<Tensor>>>,
}

impl CustomOp3 for LinearGelu {
    fn name(&self) -> &'static str {
        "linear-gelu"
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
        let (h, shape) = linear.cpu_fwd(x, lx, w, lw, b, lb)?;
        let h = tensor_from_storage(h, shape)?;
        let out = cpu_forward_on(&h, "linear-gelu", |s, l| Gelu.cpu_fwd(s, l))?;
        *self.pre_activation.lock().unwrap() = Some(h);
        Ok(out)
    }

    #[allow(clippy::type_complexity)]
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = self.pre_activation.lock().unwrap().clone();
        let h = h.ok_or_else(|| {
            candle_core::Error::Msg("linear-gelu: backward without forward".into())
        })?;
        let dh = gelu_gradient(&h, dy)?;
        let (dx, dw, db) = linear_gradients(self.precision, x, w, &dh, true)?;
        Ok((Some(dx), Some(dw), db))
    }
}
