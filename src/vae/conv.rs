//! 3×3, stride-1, zero-padded convolution: most of the VAE's arithmetic.
//!
//! candle's CPU conv2d gathers im2col tiles element by element and runs many
//! small GEMMs; here the padded image is laid out with row stride W+2, so each
//! of the nine taps is one large GEMM over a *contiguous shifted view* of it
//! (no im2col copy). The two extra columns per output row are computed and
//! dropped. Where [`route`] has no kernel, candle's conv2d runs.

use crate::ops::route::{route, route_for, Kernels, Route};
use crate::{ensure, Result};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor};
use candle_nn::{Conv2d, Conv2dConfig};

/// A 3×3 conv with bias, padding 1, stride 1 (`nn.Conv2d(c_in, c_out, 3, padding=1)`).
#[derive(Clone, Debug)]
pub struct Conv3x3 {
    conv: Conv2d,
    /// The CPU kernel's copy of the weights; `None` for weights on a GPU.
    cpu: Option<ShiftedGemmConv>,
}

impl Conv3x3 {
    /// `weight` is (c_out, c_in, 3, 3), `bias` (c_out).
    pub fn new(weight: Tensor, bias: Tensor) -> Result<Self> {
        let (c_out, c_in, kh, kw) = weight.dims4()?;
        ensure!(
            kh == 3 && kw == 3,
            "Conv3x3 needs a 3×3 kernel, got {kh}×{kw}"
        );
        let cpu = if route(weight.device(), DType::F32, Kernels::CPU_F32) == Route::CpuKernel {
            // Tap-major (9, c_out, c_in) so each tap's matrix is contiguous.
            let taps = weight
                .to_dtype(DType::F32)?
                .permute((2, 3, 0, 1))?
                .flatten_all()?
                .to_vec1::<f32>()?;
            Some(ShiftedGemmConv {
                taps,
                bias: bias.to_dtype(DType::F32)?.to_vec1::<f32>()?,
                c_in,
                c_out,
            })
        } else {
            None
        };
        let config = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Self {
            conv: Conv2d::new(weight, Some(bias), config),
            cpu,
        })
    }
}

impl Module for Conv3x3 {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.cpu {
            Some(op) if route_for(x, Kernels::CPU_F32) == Route::CpuKernel => {
                x.apply_op1_no_bwd(op)
            }
            _ => self.conv.forward(x),
        }
    }
}

#[derive(Clone, Debug)]
struct ShiftedGemmConv {
    taps: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
}

impl CustomOp1 for ShiftedGemmConv {
    fn name(&self) -> &'static str {
        "conv3x3-shifted-gemm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        if c != self.c_in {
            candle_core::bail!(
                "conv3x3: input has {c} channels, weight expects {}",
                self.c_in
            );
        }
        let input = storage.as_slice::<f32>()?;
        let input = match layout.contiguous_offsets() {
            Some((start, end)) => &input[start..end],
            None => candle_core::bail!("conv3x3: input must be contiguous"),
        };
        let row = w + 2;
        // One spare row at the bottom keeps the last tap's shifted view in bounds.
        let plane = (h + 3) * row;
        let wide_len = h * row;
        let mut padded = vec![0f32; c * plane];
        let mut wide = vec![0f32; self.c_out * wide_len];
        let mut out = Vec::with_capacity(n * self.c_out * h * w);
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        for image in input.chunks_exact(c * h * w) {
            for (src, dst) in image
                .chunks_exact(h * w)
                .zip(padded.chunks_exact_mut(plane))
            {
                for (y, src_row) in src.chunks_exact(w).enumerate() {
                    let at = (y + 1) * row + 1;
                    dst[at..at + w].copy_from_slice(src_row);
                }
            }
            for tap in 0..9 {
                let shift = (tap / 3) * row + tap % 3;
                let lhs = &self.taps[tap * self.c_out * self.c_in..];
                // SAFETY: dst is c_out × wide_len (row stride wide_len), lhs is
                // c_out × c_in contiguous, rhs reads c_in rows of wide_len
                // elements at stride `plane` from `shift` ≤ 2·row + 2, which
                // ends before (h + 3)·row, inside each channel's plane.
                unsafe {
                    gemm::gemm(
                        self.c_out,
                        wide_len,
                        self.c_in,
                        wide.as_mut_ptr(),
                        1,
                        wide_len as isize,
                        tap > 0,
                        lhs.as_ptr(),
                        1,
                        self.c_in as isize,
                        padded.as_ptr().add(shift),
                        1,
                        plane as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        parallelism,
                    );
                }
            }
            for (channel, &b) in wide.chunks_exact(wide_len).zip(&self.bias) {
                for wide_row in channel.chunks_exact(row) {
                    out.extend(wide_row[..w].iter().map(|v| v + b));
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, self.c_out, h, w))))
    }
}
