//! The adaLN-Zero residual update `x + gate·(h + b)`: the branch output `h`
//! (a linear map without its bias), the bias `b` `(D,)` and the per-sample
//! gate `(N, D)` folded into one pass over `(N, T, D)`.

use super::float::{cpu_forward_is_kernel, CpuKernel, Float};
use super::matmul::output_buffer;
use super::route::{route_for, Kernels, Route};
use candle_core::{CustomOp3, Result, Shape, Tensor};
use rayon::prelude::*;

/// `x + gate·(h + bias)`; `x`, `h`: `(N, T, D)`, `gate`: `(N, D)`, `bias`: `(D,)`.
pub fn gated_residual(
    x: &Tensor,
    h: &Tensor,
    bias: &Tensor,
    gate: &Tensor,
) -> crate::Result<Tensor> {
    let (n, _, d) = x.dims3()?;
    if h.dims() != x.dims() || gate.dims() != [n, d] || bias.dims() != [d] {
        crate::bail!(
            "gated_residual: shapes x {:?}, h {:?}, bias {:?}, gate {:?} do not fit",
            x.dims(),
            h.dims(),
            bias.dims(),
            gate.dims()
        );
    }
    match route_for(x, Kernels::CPU_FLOAT) {
        Route::CpuKernel => {
            // Gate rows then the bias row: one (N + 1, D) operand.
            let gate_bias = Tensor::cat(&[gate, &bias.unsqueeze(0)?], 0)?;
            Ok(x.contiguous()?.apply_op3(
                &h.contiguous()?,
                &gate_bias.contiguous()?,
                GatedResidual,
            )?)
        }
        Route::CudaKernel | Route::Composition => gated_residual_reference(x, h, bias, gate),
    }
}

/// The unfused composition.
pub fn gated_residual_reference(
    x: &Tensor,
    h: &Tensor,
    bias: &Tensor,
    gate: &Tensor,
) -> crate::Result<Tensor> {
    Ok((x + h.broadcast_add(bias)?.broadcast_mul(&gate.unsqueeze(1)?)?)?)
}

struct GatedResidual;

fn forward<T: Float>(x: &[T], h: &[T], gb: &[T], (n, t, d): (usize, usize, usize)) -> Vec<T> {
    // Every element is written below.
    let mut y = output_buffer(n * t * d, |_| {});
    let bias = &gb[n * d..];
    y.par_chunks_mut(t * d).enumerate().for_each(|(b, yb)| {
        let gate = &gb[b * d..(b + 1) * d];
        let off = b * t * d;
        for (r, yr) in yb.chunks_exact_mut(d).enumerate() {
            let (xr, hr) = (
                &x[off + r * d..off + (r + 1) * d],
                &h[off + r * d..off + (r + 1) * d],
            );
            for i in 0..d {
                yr[i] = xr[i] + gate[i] * (hr[i] + bias[i]);
            }
        }
    });
    y
}

/// `[dh (N·T·D) | dgate (N·D) | dbias (D)]`.
fn backward<T: Float>(h: &[T], gb: &[T], dy: &[T], (n, t, d): (usize, usize, usize)) -> Vec<T> {
    // dh is written below; the gate and bias gradients are sums.
    let mut out = output_buffer(n * t * d + (n + 1) * d, |_| {});
    let bias = &gb[n * d..];
    let (dh, dgb) = out.split_at_mut(n * t * d);
    dgb.fill(T::zero());
    let (dgate, dbias) = dgb.split_at_mut(n * d);
    // Per sample: dgate and Σ_t dy (the bias gradient needs gate·Σ_t dy).
    let mut dy_sums = vec![T::zero(); n * d];
    dh.par_chunks_mut(t * d)
        .zip(dgate.par_chunks_mut(d))
        .zip(dy_sums.par_chunks_mut(d))
        .enumerate()
        .for_each(|(b, ((dhb, dg), sums))| {
            let gate = &gb[b * d..(b + 1) * d];
            let off = b * t * d;
            for (r, dhr) in dhb.chunks_exact_mut(d).enumerate() {
                let (hr, dyr) = (
                    &h[off + r * d..off + (r + 1) * d],
                    &dy[off + r * d..off + (r + 1) * d],
                );
                for i in 0..d {
                    dhr[i] = dyr[i] * gate[i];
                    dg[i] += dyr[i] * (hr[i] + bias[i]);
                    sums[i] += dyr[i];
                }
            }
        });
    for b in 0..n {
        for i in 0..d {
            dbias[i] += gb[b * d + i] * dy_sums[b * d + i];
        }
    }
    out
}

impl CustomOp3 for GatedResidual {
    fn name(&self) -> &'static str {
        "gated-residual"
    }

    cpu_forward_is_kernel!(s1 l1, s2 l2, s3 l3);

    #[allow(clippy::type_complexity)]
    fn bwd(
        &self,
        _x: &Tensor,
        h: &Tensor,
        gate_bias: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, t, d) = h.dims3()?;
        let dy = dy.contiguous()?;
        let packed = h.apply_op3_no_bwd(gate_bias, &dy, &GatedResidualBackward)?;
        let ntd = n * t * d;
        let dh = packed.narrow(0, 0, ntd)?.reshape((n, t, d))?;
        let dgb = packed.narrow(0, ntd, (n + 1) * d)?.reshape((n + 1, d))?;
        Ok((Some(dy), Some(dh), Some(dgb)))
    }
}

struct GatedResidualBackward;

impl CpuKernel<3> for GatedResidual {
    const NAME: &'static str = "gated_residual";

    fn run<T: Float>(&self, [x, h, gate_bias]: [&[T]; 3], shapes: [&Shape; 3]) -> Result<Vec<T>> {
        Ok(forward(x, h, gate_bias, shapes[0].dims3()?))
    }
}

impl CpuKernel<3> for GatedResidualBackward {
    const NAME: &'static str = "gated_residual backward";

    /// Inputs `h`, gate and bias, `dy`.
    fn run<T: Float>(&self, [h, gate_bias, dy]: [&[T]; 3], shapes: [&Shape; 3]) -> Result<Vec<T>> {
        Ok(backward(h, gate_bias, dy, shapes[0].dims3()?))
    }

    /// `[dh (N·T·D) | dgate (N·D) | dbias (D)]`.
    fn out_shape(&self, shapes: [&Shape; 3]) -> Result<Shape> {
        let (n, t, d) = shapes[0].dims3()?;
        Ok(Shape::from(n * t * d + (n + 1) * d))
    }
}

impl CustomOp3 for GatedResidualBackward {
    fn name(&self) -> &'static str {
        "gated-residual-backward"
    }

    cpu_forward_is_kernel!(s1 l1, s2 l2, s3 l3);
}
