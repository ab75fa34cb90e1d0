//! CPU convolution + bias + ReLU as im2col and one large GEMM.
//!
//! candle's CPU conv2d reached 2–13 GFLOP/s on this network's layers (the
//! 147×147 stem convolutions were the slowest); unrolling several images into
//! one column matrix and calling the `gemm` crate directly gets close to the
//! matrix-multiply peak, and fusing bias and ReLU saves two passes over the
//! activations.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};

/// Upper bound on the unrolled column matrix (f32 elements) per GEMM call;
/// images are grouped until it is reached, so small late layers still get wide
/// matrices while the early ones stay within a few tens of MB.
const MAX_COLUMN_ELEMS: usize = 8 << 20;

/// A convolution with folded batch norm followed by ReLU, on contiguous f32 NCHW.
pub(super) struct ConvBiasRelu {
    /// `[out, in · kh · kw]`, row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: (usize, usize),
    pub stride: usize,
    pub padding: (usize, usize),
}

impl ConvBiasRelu {
    fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let (kh, kw) = self.kernel;
        let (ph, pw) = self.padding;
        (
            (h + 2 * ph - kh) / self.stride + 1,
            (w + 2 * pw - kw) / self.stride + 1,
        )
    }

    /// Unrolls `images` (consecutive `[C, H, W]` planes) into `cols`
    /// `[C·kh·kw, images·OH·OW]`.
    fn im2col(&self, images: &[f32], count: usize, (h, w): (usize, usize), cols: &mut [f32]) {
        let (kh, kw) = self.kernel;
        let (ph, pw) = self.padding;
        let s = self.stride;
        let (oh, ow) = self.output_size(h, w);
        let plane = oh * ow;
        let width = count * plane;
        let c = self.in_channels;
        for ci in 0..c {
            for ki in 0..kh {
                for kj in 0..kw {
                    let row = &mut cols[((ci * kh + ki) * kw + kj) * width..][..width];
                    // Output columns whose input column lies inside the image.
                    let ox_lo = pw.saturating_sub(kj).div_ceil(s);
                    let ox_hi = ((w + pw).saturating_sub(kj)).div_ceil(s).min(ow);
                    for g in 0..count {
                        let src = &images[(g * c + ci) * h * w..][..h * w];
                        let dst = &mut row[g * plane..][..plane];
                        for oy in 0..oh {
                            let out = &mut dst[oy * ow..][..ow];
                            let iy = (oy * s + ki) as isize - ph as isize;
                            if iy < 0 || iy >= h as isize || ox_lo >= ox_hi {
                                out.fill(0.0);
                                continue;
                            }
                            let line = &src[iy as usize * w..][..w];
                            out[..ox_lo].fill(0.0);
                            out[ox_hi..].fill(0.0);
                            let ix0 = ox_lo * s + kj - pw;
                            if s == 1 {
                                out[ox_lo..ox_hi].copy_from_slice(&line[ix0..ix0 + ox_hi - ox_lo]);
                            } else {
                                for (o, ox) in out[ox_lo..ox_hi].iter_mut().zip(0..) {
                                    *o = line[ix0 + ox * s];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

impl CustomOp1 for ConvBiasRelu {
    fn name(&self) -> &'static str {
        "inception-conv-bias-relu"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("{}: expected f32 input", self.name())
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("{}: expected a contiguous input", self.name())
        };
        let x = &data[start..end];
        let (n, c, h, w) = layout.shape().dims4()?;
        if c != self.in_channels {
            candle_core::bail!(
                "{}: input has {c} channels, expected {}",
                self.name(),
                self.in_channels
            )
        }
        let (kh, kw) = self.kernel;
        let (oh, ow) = self.output_size(h, w);
        let plane = oh * ow;
        let k = c * kh * kw;
        let cout = self.out_channels;
        let group = (MAX_COLUMN_ELEMS / (k * plane)).clamp(1, n.max(1));
        let mut cols = vec![0f32; k * plane * group];
        let mut gathered = vec![0f32; cout * plane * group];
        let mut out = vec![0f32; n * cout * plane];
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };

        for first in (0..n).step_by(group) {
            let count = group.min(n - first);
            let width = count * plane;
            self.im2col(&x[first * c * h * w..], count, (h, w), &mut cols);
            // SAFETY: dst is cout × width with row stride `width`, lhs cout × k with row
            // stride k, rhs k × width with row stride `width` (all column stride 1); the
            // buffers hold at least that many elements and do not overlap.
            unsafe {
                gemm::gemm(
                    cout,
                    width,
                    k,
                    gathered.as_mut_ptr(),
                    1,
                    width as isize,
                    false,
                    self.weight.as_ptr(),
                    1,
                    k as isize,
                    cols.as_ptr(),
                    1,
                    width as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
            // [cout, count, plane] → [count, cout, plane], adding bias and clamping at 0.
            for g in 0..count {
                for co in 0..cout {
                    let src = &gathered[co * width + g * plane..][..plane];
                    let dst = &mut out[((first + g) * cout + co) * plane..][..plane];
                    let b = self.bias[co];
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = (v + b).max(0.0);
                    }
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, cout, oh, ow))))
    }
}
