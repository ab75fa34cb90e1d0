//! LayerNorm without affine parameters followed by adaLN modulation,
//! `y = x̂·(1 + scale) + shift` with per-sample `(N, D)` shift/scale over
//! `(N, T, D)` tokens, in one pass per token row; the backward recomputes
//! the row statistics instead of storing them.

use super::float::{cpu_forward_is_kernel, CpuKernel, Float};
use super::matmul::output_buffer;
use super::route::{route_for, Kernels, Route};
use candle_core::{CustomOp3, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// `layer_norm(x, eps)·(1 + scale) + shift`: the fused kernel where
/// [`route_for`] has one, else the composition.
pub fn layer_norm_modulate(
    x: &Tensor,
    shift: &Tensor,
    scale: &Tensor,
    eps: f64,
) -> crate::Result<Tensor> {
    let (n, _, d) = x.dims3()?;
    if shift.dims() != [n, d] || scale.dims() != [n, d] {
        crate::bail!(
            "layer_norm_modulate: x {:?} needs ({n}, {d}) shift/scale, got {:?} and {:?}",
            x.dims(),
            shift.dims(),
            scale.dims()
        );
    }
    match route_for(x, Kernels::CPU_FLOAT) {
        Route::CpuKernel => Ok(x.contiguous()?.apply_op3(
            &shift.contiguous()?,
            &scale.contiguous()?,
            LayerNormModulate { eps },
        )?),
        Route::CudaKernel | Route::Composition => {
            layer_norm_modulate_reference(x, shift, scale, eps)
        }
    }
}

/// The unfused composition (differentiable candle ops).
pub fn layer_norm_modulate_reference(
    x: &Tensor,
    shift: &Tensor,
    scale: &Tensor,
    eps: f64,
) -> crate::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed
        .broadcast_mul(&(scale.unsqueeze(1)? + 1.0)?)?
        .broadcast_add(&shift.unsqueeze(1)?)?)
}

struct LayerNormModulate {
    eps: f64,
}

/// Mean and 1/σ of a row (two passes: exact for rows with a large mean).
fn stats<T: Float>(row: &[T], eps: T) -> (T, T) {
    let d = T::from(row.len()).unwrap();
    let mean = row.iter().copied().sum::<T>() / d;
    let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() / d;
    (mean, T::one() / (var + eps).sqrt())
}

fn forward<T: Float>(
    x: &[T],
    shift: &[T],
    scale: &[T],
    (n, t, d): (usize, usize, usize),
    eps: f64,
) -> Vec<T> {
    let eps = T::from(eps).unwrap();
    // Every element is written below.
    let mut y = output_buffer(n * t * d, |_| {});
    y.par_chunks_mut(t * d).enumerate().for_each(|(b, yb)| {
        let (sh, sc) = (&shift[b * d..(b + 1) * d], &scale[b * d..(b + 1) * d]);
        for (xr, yr) in x[b * t * d..(b + 1) * t * d]
            .chunks_exact(d)
            .zip(yb.chunks_exact_mut(d))
        {
            let (mean, rstd) = stats(xr, eps);
            for i in 0..d {
                yr[i] = (xr[i] - mean) * rstd * (T::one() + sc[i]) + sh[i];
            }
        }
    });
    y
}

/// `[dx (N·T·D) | dshift (N·D) | dscale (N·D)]` in one buffer.
fn backward<T: Float>(
    x: &[T],
    scale: &[T],
    dy: &[T],
    (n, t, d): (usize, usize, usize),
    eps: f64,
) -> Vec<T> {
    let eps = T::from(eps).unwrap();
    let inv_d = T::one() / T::from(d).unwrap();
    // dx is written below; the shift and scale gradients are sums.
    let mut out = output_buffer(n * t * d + 2 * n * d, |_| {});
    let (dx, dmod) = out.split_at_mut(n * t * d);
    dmod.fill(T::zero());
    let (dshift, dscale) = dmod.split_at_mut(n * d);
    dx.par_chunks_mut(t * d)
        .zip(dshift.par_chunks_mut(d))
        .zip(dscale.par_chunks_mut(d))
        .enumerate()
        .for_each(|(b, ((dxb, dsh), dsc))| {
            let sc = &scale[b * d..(b + 1) * d];
            let mut g = vec![T::zero(); d];
            for ((xr, dyr), dxr) in x[b * t * d..(b + 1) * t * d]
                .chunks_exact(d)
                .zip(dy[b * t * d..(b + 1) * t * d].chunks_exact(d))
                .zip(dxb.chunks_exact_mut(d))
            {
                let (mean, rstd) = stats(xr, eps);
                let (mut sum_g, mut sum_gx) = (T::zero(), T::zero());
                for i in 0..d {
                    let xh = (xr[i] - mean) * rstd;
                    dsh[i] += dyr[i];
                    dsc[i] += dyr[i] * xh;
                    g[i] = dyr[i] * (T::one() + sc[i]);
                    sum_g += g[i];
                    sum_gx += g[i] * xh;
                }
                let (mean_g, mean_gx) = (sum_g * inv_d, sum_gx * inv_d);
                for i in 0..d {
                    let xh = (xr[i] - mean) * rstd;
                    dxr[i] = rstd * (g[i] - mean_g - xh * mean_gx);
                }
            }
        });
    out
}

impl CustomOp3 for LayerNormModulate {
    fn name(&self) -> &'static str {
        "layer-norm-modulate"
    }

    cpu_forward_is_kernel!(s1 l1, s2 l2, s3 l3);

    #[allow(clippy::type_complexity)]
    fn bwd(
        &self,
        x: &Tensor,
        _shift: &Tensor,
        scale: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, t, d) = x.dims3()?;
        let packed = x.apply_op3_no_bwd(
            scale,
            &dy.contiguous()?,
            &LayerNormModulateBackward { eps: self.eps },
        )?;
        let ntd = n * t * d;
        let dx = packed.narrow(0, 0, ntd)?.reshape((n, t, d))?;
        let dshift = packed.narrow(0, ntd, n * d)?.reshape((n, d))?;
        let dscale = packed.narrow(0, ntd + n * d, n * d)?.reshape((n, d))?;
        Ok((Some(dx), Some(dshift), Some(dscale)))
    }
}

struct LayerNormModulateBackward {
    eps: f64,
}

impl CustomOp3 for LayerNormModulateBackward {
    fn name(&self) -> &'static str {
        "layer-norm-modulate-backward"
    }

    cpu_forward_is_kernel!(s1 l1, s2 l2, s3 l3);
}

impl CpuKernel<3> for LayerNormModulate {
    const NAME: &'static str = "layer_norm_modulate";

    fn run<T: Float>(&self, [x, shift, scale]: [&[T]; 3], shapes: [&Shape; 3]) -> Result<Vec<T>> {
        Ok(forward(x, shift, scale, shapes[0].dims3()?, self.eps))
    }
}

impl CpuKernel<3> for LayerNormModulateBackward {
    const NAME: &'static str = "layer_norm_modulate backward";

    fn run<T: Float>(&self, [x, scale, dy]: [&[T]; 3], shapes: [&Shape; 3]) -> Result<Vec<T>> {
        Ok(backward(x, scale, dy, shapes[0].dims3()?, self.eps))
    }

    /// `[dx (N·T·D) | dshift (N·D) | dscale (N·D)]`.
    fn out_shape(&self, shapes: [&Shape; 3]) -> Result<Shape> {
        let (n, t, d) = shapes[0].dims3()?;
        Ok(Shape::from(n * t * d + 2 * n * d))
    }
}
