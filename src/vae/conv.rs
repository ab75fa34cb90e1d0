//! 3×3, stride-1, zero-padded convolution: most of the VAE's arithmetic.
//!
//! candle's CPU conv2d gathers im2col tiles element by element and runs many
//! small GEMMs; here the padded image is laid out with row stride W+2, so each
//! of the nine taps is one large GEMM over a *contiguous shifted view* of it
//! (no im2col copy). The two extra columns per output row are computed and
//! dropped. Where [`route_in`] has no kernel, candle's conv2d runs.
//!
//! In bf16 ([`Precision::Bf16`]) on a CPU with bf16 instructions, the padded
//! image is rounded once into channel pairs (the bf16 kernels' right-operand
//! layout), each tap's weights are packed once at load, and the nine taps
//! accumulate into the same f32 output: an implicit GEMM whose shifted
//! views need no copies either.

use crate::compute::Precision;
use crate::ops::bf16::{self, matmul_pairs, pair_rows, round_operand, Bf16Kernel, PackedLhs};
use crate::ops::float::SharedMut;
use crate::ops::matmul::{matmul, Operand, Threads};
use crate::ops::route::{route_for_in, route_in, Kernels, Route};
use crate::{ensure, Result};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor};
use candle_nn::{Conv2d, Conv2dConfig};
use rayon::prelude::*;

/// A 3×3 conv with bias, padding 1, stride 1 (`nn.Conv2d(c_in, c_out, 3, padding=1)`).
#[derive(Clone, Debug)]
pub struct Conv3x3 {
    conv: Conv2d,
    /// The CPU kernel's copy of the weights; `None` for weights on a GPU.
    cpu: Option<ShiftedGemmConv>,
    precision: Precision,
}

impl Conv3x3 {
    /// `weight` is (c_out, c_in, 3, 3), `bias` (c_out); f32 arithmetic.
    pub fn new(weight: Tensor, bias: Tensor) -> Result<Self> {
        Self::new_in(Precision::F32, weight, bias)
    }

    /// The same with the products in `precision` (bf16: weights and input
    /// rounded to bf16, f32 accumulation and bias).
    pub fn new_in(precision: Precision, weight: Tensor, bias: Tensor) -> Result<Self> {
        let (c_out, c_in, kh, kw) = weight.dims4()?;
        ensure!(
            kh == 3 && kw == 3,
            "Conv3x3 needs a 3×3 kernel, got {kh}×{kw}"
        );
        let weight = match precision {
            Precision::F32 => weight,
            Precision::Bf16 => round_operand(&weight)?,
        };
        let route = route_in(
            precision,
            weight.device(),
            DType::F32,
            Kernels::CPU_F32_BF16,
        );
        let cpu = if route == Route::CpuKernel {
            // Tap-major (9, c_out, c_in) so each tap's matrix is contiguous.
            let taps = weight
                .to_dtype(DType::F32)?
                .permute((2, 3, 0, 1))?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let taps = match (precision, bf16::kernel()) {
                (Precision::Bf16, kernel) if kernel != Bf16Kernel::Convert => Taps::Bf16(
                    taps.chunks_exact(c_out * c_in)
                        .map(|tap| {
                            let mut packed = PackedLhs::default();
                            // SAFETY: each tap is a contiguous c_out × c_in matrix.
                            unsafe {
                                packed.pack(Operand::new(tap.as_ptr(), c_in, 1), (c_out, c_in))
                            };
                            packed
                        })
                        .collect::<Vec<_>>()
                        .into(),
                ),
                // Rounded already; the input is rounded per call.
                _ => Taps::F32 {
                    taps,
                    round_input: precision == Precision::Bf16,
                },
            };
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
            precision,
        })
    }
}

impl Module for Conv3x3 {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.cpu {
            Some(op)
                if route_for_in(self.precision, x, Kernels::CPU_F32_BF16) == Route::CpuKernel =>
            {
                x.apply_op1_no_bwd(op)
            }
            _ => match self.precision {
                Precision::F32 => self.conv.forward(x),
                Precision::Bf16 => self.conv.forward(&round_operand(x)?),
            },
        }
    }
}

/// The weights as the kernel reads them.
#[derive(Clone, Debug)]
enum Taps {
    /// Tap-major f32 `(9, c_out, c_in)` for the f32 product (already rounded
    /// to bf16 values when `round_input`, which rounds the image too).
    F32 { taps: Vec<f32>, round_input: bool },
    /// Each tap packed for the bf16 kernels.
    Bf16(std::sync::Arc<[PackedLhs]>),
}

#[derive(Clone, Debug)]
struct ShiftedGemmConv {
    taps: Taps,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
}

/// Output columns per task: the task's f32 output block (`c_out × chunk`)
/// within ~256 KiB so that it stays in L2 across the nine taps, and at
/// least four tasks per thread.
fn column_chunk(wide_len: usize, c_out: usize) -> usize {
    let cache = (64 * 1024 / c_out.max(1)).next_multiple_of(32);
    let share = (wide_len / (4 * rayon::current_num_threads())).next_multiple_of(32);
    cache.min(share).max(64)
}

/// Offset of tap `tap` (row-major over the 3×3 window) in a padded image of
/// row stride `row`.
fn tap_shift(tap: usize, row: usize) -> usize {
    (tap / 3) * row + tap % 3
}

impl ShiftedGemmConv {
    /// The nine taps of one f32 image into `wide` (c_out × h·(w+2)).
    /// Threads split the output columns, and each sums all nine taps for
    /// its columns before moving on, so that its part of the output stays
    /// in cache instead of being read and written back nine times (one
    /// large product per tap ran at ~100 GFLOP per CPU-second against ~125
    /// for PyTorch's convolution).
    fn f32_taps(&self, taps: &[f32], padded: &[f32], (h, w): (usize, usize), wide: &mut [f32]) {
        let row = w + 2;
        let plane = (h + 3) * row;
        let wide_len = h * row;
        let out = SharedMut(wide.as_mut_ptr());
        let chunk = column_chunk(wide_len, self.c_out);
        (0..wide_len.div_ceil(chunk)).into_par_iter().for_each(|c| {
            let (col0, cols) = (c * chunk, chunk.min(wide_len - c * chunk));
            for tap in 0..9 {
                let lhs = &taps[tap * self.c_out * self.c_in..];
                // SAFETY: dst is the c_out × cols block at column col0 of
                // the c_out × wide_len output, which this task alone
                // writes; lhs is c_out × c_in contiguous; rhs reads c_in
                // rows of cols elements at stride `plane` from col0 + shift,
                // shift ≤ 2·row + 2, which ends before (h + 3)·row, inside
                // each channel's plane.
                unsafe {
                    matmul(
                        (self.c_out, cols, self.c_in),
                        out.ptr().add(col0),
                        wide_len,
                        tap > 0,
                        Operand::new(lhs.as_ptr(), self.c_in, 1),
                        Operand::new(padded.as_ptr().add(tap_shift(tap, row) + col0), plane, 1),
                        1.0,
                        Threads::One,
                    );
                }
            }
        });
    }

    /// The nine taps of one image on the bf16 kernels: the padded image as
    /// channel pairs, each tap a product with a shifted view of it, summed
    /// in `wide`; threads split the output columns.
    fn bf16_taps(
        &self,
        taps: &[PackedLhs],
        image: &[f32],
        (h, w): (usize, usize),
        wide: &mut [f32],
    ) {
        let row = w + 2;
        let plane = (h + 3) * row;
        let wide_len = h * row;
        // Pair rows up to a multiple of 32 channels (the kernels' depth
        // step) are zero, and a spare 32 pairs past the last keep the last
        // column block's reads inside the buffer.
        let pair_rows_total = self.c_in.next_multiple_of(32) / 2;
        let mut pairs = vec![0u16; (pair_rows_total * plane + 32) * 2];
        for p in 0..self.c_in.div_ceil(2) {
            let lo = &image[2 * p * h * w..(2 * p + 1) * h * w];
            let hi =
                (2 * p + 1 < self.c_in).then(|| &image[(2 * p + 1) * h * w..(2 * p + 2) * h * w]);
            for y in 0..h {
                let at = (p * plane + (y + 1) * row + 1) * 2;
                pair_rows(
                    &lo[y * w..(y + 1) * w],
                    hi.map(|hi| &hi[y * w..(y + 1) * w]),
                    &mut pairs[at..at + 2 * w],
                );
            }
        }
        let chunk = column_chunk(wide_len, self.c_out);
        let out = SharedMut(wide.as_mut_ptr());
        (0..wide_len.div_ceil(chunk)).into_par_iter().for_each(|c| {
            let (col0, cols) = (c * chunk, chunk.min(wide_len - c * chunk));
            for (tap, a) in taps.iter().enumerate() {
                // SAFETY: the view starts inside the pair buffer and every
                // pair row is readable for cols + 32 pairs past it (the spare
                // pairs at the end); this task alone writes columns col0..
                // col0 + cols of each output row.
                unsafe {
                    matmul_pairs(
                        a,
                        pairs.as_ptr().add((tap_shift(tap, row) + col0) * 2),
                        plane * 2,
                        cols,
                        out.ptr().add(col0),
                        wide_len,
                        tap > 0,
                    );
                }
            }
        });
    }
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
        let mut wide = vec![0f32; self.c_out * wide_len];
        let mut out = Vec::with_capacity(n * self.c_out * h * w);
        let mut padded = match self.taps {
            Taps::F32 { .. } => vec![0f32; c * plane],
            Taps::Bf16(_) => Vec::new(),
        };
        for image in input.chunks_exact(c * h * w) {
            match &self.taps {
                Taps::F32 { taps, round_input } => {
                    for (src, dst) in image
                        .chunks_exact(h * w)
                        .zip(padded.chunks_exact_mut(plane))
                    {
                        for (y, src_row) in src.chunks_exact(w).enumerate() {
                            let at = (y + 1) * row + 1;
                            let dst = &mut dst[at..at + w];
                            dst.copy_from_slice(src_row);
                            if *round_input {
                                dst.iter_mut().for_each(|v| *v = bf16::round_to_bf16(*v));
                            }
                        }
                    }
                    self.f32_taps(taps, &padded, (h, w), &mut wide);
                }
                Taps::Bf16(taps) => self.bf16_taps(taps, image, (h, w), &mut wide),
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
