//! Packing operands into the micro-kernels' bf16 layouts, rounding them on
//! the way (the AMX and AVX512-BF16 kernels' only conversion).
//!
//! * A (`rows × kc`): 32-row micro-panels, each row-major with row stride
//!   `kc_pad` (a multiple of 32), zero past the block.
//! * B (`kc × cols`): 32-column micro-panels of `kc_pad/2` rows of column
//!   pairs: element (l, j) of panel `q` at
//!   `q·kc_pad·32 + (l/2)·64 + 2·(j mod 32) + l mod 2`, zero past the block.
//!
//! f32 operands with a unit stride on either side take AVX-512 paths
//! (`vcvtne2ps2bf16` rounds 32 values at once, to nearest even like
//! [`super::to_bf16_bits`] apart from flushing subnormals, which bf16 cannot
//! hold usefully anyway); anything else goes element by element.

use super::convert::Bf16Input;
use crate::ops::matmul::Operand;

/// Micro-panel rows (A) and columns (B).
pub const MR: usize = 32;
pub const NR: usize = 32;

/// Whether the vectorised packing can run (AVX512-BF16).
pub fn simd_available() -> bool {
    super::avx512::available()
}

/// `dst ← bf16(scale·row)`, zero past the row.
///
/// # Safety
/// [`simd_available`].
pub unsafe fn round_row(row: &[f32], scale: f32, dst: &mut [u16]) {
    simd::round_row(row, scale, dst)
}

/// `dst[j] ← (bf16(lo[j]), bf16(hi[j]))` as pairs (`hi` zero if absent).
///
/// # Safety
/// [`simd_available`]; `dst` holds `2·lo.len()` elements, `hi` as many as `lo`.
pub unsafe fn pair_rows(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u16]) {
    simd::pair_rows(lo, hi, dst)
}

/// Packs A's `rows × kc` block into `out`.
///
/// # Safety
/// `a` addresses a `rows × kc` block; the packing kernels (AVX512-BF16)
/// are available; `out` holds `rows.next_multiple_of(MR)·kc_pad` elements.
pub unsafe fn pack_a<L: Bf16Input>(
    a: Operand<L>,
    rows: usize,
    kc: usize,
    kc_pad: usize,
    out: &mut [u16],
) {
    let rows_pad = rows.next_multiple_of(MR);
    let out = &mut out[..rows_pad * kc_pad];
    if let Some(a) = L::as_f32(a).filter(|_| simd_available()) {
        if a.col_stride == 1 {
            return simd::rows_contiguous(a, rows, kc, kc_pad, out);
        }
        if a.row_stride == 1 {
            return simd::rows_transposed(a, rows, kc, kc_pad, out);
        }
    }
    out.fill(0);
    for r in 0..rows {
        for l in 0..kc {
            out[r * kc_pad + l] = (*a.ptr.add(r * a.row_stride + l * a.col_stride)).bf16_bits();
        }
    }
}

/// Packs B's `kc × cols` block into `out`.
///
/// # Safety
/// As [`pack_a`]; `out` holds `cols.next_multiple_of(NR)·kc_pad` elements.
pub unsafe fn pack_b<R: Bf16Input>(
    b: Operand<R>,
    kc: usize,
    cols: usize,
    kc_pad: usize,
    out: &mut [u16],
) {
    let cols_pad = cols.next_multiple_of(NR);
    let out = &mut out[..cols_pad * kc_pad];
    if let Some(b) = R::as_f32(b).filter(|_| simd_available()) {
        if b.row_stride == 1 {
            return simd::columns_contiguous(b, kc, cols, kc_pad, out);
        }
        if b.col_stride == 1 {
            return simd::columns_interleaved(b, kc, cols, kc_pad, out);
        }
    }
    out.fill(0);
    for l in 0..kc {
        for j in 0..cols {
            let at = (j / NR) * kc_pad * NR + (l / 2) * 2 * NR + 2 * (j % NR) + l % 2;
            out[at] = (*b.ptr.add(l * b.row_stride + j * b.col_stride)).bf16_bits();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::NR;
    use crate::ops::matmul::Operand;
    use std::arch::x86_64::*;

    /// Mask of the first `n ≤ 16` lanes.
    #[inline(always)]
    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// Up to 16 f32 from `p` (zero past `n`).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load(p: *const f32, n: usize) -> __m512 {
        if n >= 16 {
            _mm512_loadu_ps(p)
        } else {
            _mm512_maskz_loadu_ps(lanes(n), p)
        }
    }

    /// Sixteen (lo, hi) bf16 pairs as u32 lanes: `lo` in the low half.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn pairs(lo: __m512, hi: __m512) -> __m512i {
        // Lanes 0–15 hold bf16(lo), 16–31 bf16(hi).
        let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        let lo16 = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(both));
        let hi16 = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64::<1>(both));
        _mm512_or_si512(lo16, _mm512_slli_epi32::<16>(hi16))
    }

    /// `dst ← bf16(scale·row)`, zero past the row (`dst` a multiple of 32).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn round_row(row: &[f32], scale: f32, dst: &mut [u16]) {
        let (src, n, s) = (row.as_ptr(), row.len(), _mm512_set1_ps(scale));
        for l in (0..dst.len()).step_by(32) {
            let v0 = _mm512_mul_ps(s, load(src.wrapping_add(l), n.saturating_sub(l)));
            let v1 = _mm512_mul_ps(s, load(src.wrapping_add(l + 16), n.saturating_sub(l + 16)));
            let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(v1, v0));
            _mm512_storeu_si512(dst.as_mut_ptr().add(l).cast(), bf);
        }
    }

    /// Two rows into bf16 pairs, sixteen at a time.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn pair_rows(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u16]) {
        let n = lo.len();
        let out = dst.as_mut_ptr().cast::<i32>();
        for j in (0..n).step_by(16) {
            let left = n - j;
            let l = load(lo.as_ptr().add(j), left);
            let h = match hi {
                Some(hi) => load(hi.as_ptr().add(j), left),
                None => _mm512_setzero_ps(),
            };
            _mm512_mask_storeu_epi32(out.add(j), lanes(left), pairs(l, h));
        }
    }

    /// A rows with contiguous depth: convert 32 at a time.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn rows_contiguous(
        a: Operand<f32>,
        rows: usize,
        kc: usize,
        kc_pad: usize,
        out: &mut [u16],
    ) {
        for (r, row) in out.chunks_exact_mut(kc_pad).enumerate() {
            let dst = row.as_mut_ptr();
            if r >= rows {
                row.fill(0);
                continue;
            }
            let src = a.ptr.add(r * a.row_stride);
            for l in (0..kc_pad).step_by(32) {
                let v0 = load(src.wrapping_add(l), kc.saturating_sub(l));
                let v1 = load(src.wrapping_add(l + 16), kc.saturating_sub(l + 16));
                let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(v1, v0));
                _mm512_storeu_si512(dst.add(l).cast(), bf);
            }
        }
    }

    /// A stored transposed (rows contiguous per depth index, `dyᵀ` in the
    /// weight gradient): pairs of depth rows become u32 pairs, scattered to
    /// their rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn rows_transposed(
        a: Operand<f32>,
        rows: usize,
        kc: usize,
        kc_pad: usize,
        out: &mut [u16],
    ) {
        out.fill(0);
        let dst = out.as_mut_ptr().cast::<i32>();
        let row_step = _mm512_set1_epi32((kc_pad / 2) as i32);
        let index0 = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            row_step,
        );
        for r0 in (0..rows).step_by(16) {
            let n = rows - r0;
            let mask = lanes(n);
            let index = _mm512_add_epi32(index0, _mm512_set1_epi32((r0 * kc_pad / 2) as i32));
            for p in 0..kc.div_ceil(2) {
                let lo = load(a.ptr.add(r0 + 2 * p * a.col_stride), n);
                let hi = if 2 * p + 1 < kc {
                    load(a.ptr.add(r0 + (2 * p + 1) * a.col_stride), n)
                } else {
                    _mm512_setzero_ps()
                };
                _mm512_mask_i32scatter_epi32::<4>(dst.add(p), mask, index, pairs(lo, hi));
            }
        }
    }

    /// B with contiguous depth per column (`Wᵀ` in `x·Wᵀ`): a column's
    /// depth run is already a run of pairs, scattered down its panel.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn columns_contiguous(
        b: Operand<f32>,
        kc: usize,
        cols: usize,
        kc_pad: usize,
        out: &mut [u16],
    ) {
        let cols_pad = cols.next_multiple_of(NR);
        if cols < cols_pad {
            out[cols / NR * kc_pad * NR..].fill(0);
        }
        let dst = out.as_mut_ptr().cast::<i32>();
        // Pair p of a column goes NR u32 further than pair p − 1.
        let index = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(NR as i32),
        );
        for j in 0..cols {
            let src = b.ptr.add(j * b.col_stride);
            let col = dst.add((j / NR) * kc_pad * NR / 2 + j % NR);
            for l in (0..kc_pad).step_by(32) {
                let v0 = load(src.wrapping_add(l), kc.saturating_sub(l));
                let v1 = load(src.wrapping_add(l + 16), kc.saturating_sub(l + 16));
                // bf16 of v0 then v1: sixteen consecutive depth pairs.
                let run: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(v1, v0));
                _mm512_i32scatter_epi32::<4>(col.add(l / 2 * NR), index, run);
            }
        }
    }

    /// B with contiguous columns (row-major, `W` in `dy·W`): two depth rows
    /// interleave into u32 pairs stored in place.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn columns_interleaved(
        b: Operand<f32>,
        kc: usize,
        cols: usize,
        kc_pad: usize,
        out: &mut [u16],
    ) {
        let cols_pad = cols.next_multiple_of(NR);
        let dst = out.as_mut_ptr().cast::<i32>();
        for p in 0..kc_pad / 2 {
            let (l0, l1) = (2 * p, 2 * p + 1);
            for j in (0..cols_pad).step_by(16) {
                let n = cols.saturating_sub(j);
                let lo = if l0 < kc && n > 0 {
                    load(b.ptr.add(l0 * b.row_stride + j), n)
                } else {
                    _mm512_setzero_ps()
                };
                let hi = if l1 < kc && n > 0 {
                    load(b.ptr.add(l1 * b.row_stride + j), n)
                } else {
                    _mm512_setzero_ps()
                };
                let at = (j / NR) * kc_pad * NR / 2 + p * NR + j % NR;
                _mm512_storeu_si512(dst.add(at).cast(), pairs(lo, hi));
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use crate::ops::matmul::Operand;
    pub unsafe fn pair_rows(_: &[f32], _: Option<&[f32]>, _: &mut [u16]) {
        unreachable!("bf16 packing runs on x86-64 only")
    }
    pub unsafe fn round_row(_: &[f32], _: f32, _: &mut [u16]) {
        unreachable!("bf16 packing runs on x86-64 only")
    }
    pub unsafe fn rows_contiguous(_: Operand<f32>, _: usize, _: usize, _: usize, _: &mut [u16]) {
        unreachable!("bf16 packing runs on x86-64 only")
    }
    pub use rows_contiguous as rows_transposed;
    pub unsafe fn columns_contiguous(_: Operand<f32>, _: usize, _: usize, _: usize, _: &mut [u16]) {
        unreachable!("bf16 packing runs on x86-64 only")
    }
    pub use columns_contiguous as columns_interleaved;
}
