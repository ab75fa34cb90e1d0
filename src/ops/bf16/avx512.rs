//! The AVX512-BF16 micro-kernel: an 8×32 f32 block in sixteen zmm
//! accumulators, one `vdpbf16ps` per (row, 16 columns, k pair).

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512bf16")
    }

    /// Rows per call.
    pub const ROWS: usize = 8;

    /// `c (rows × 32 f32, row stride 32) ← a·b` for the first `rows ≤ 8`
    /// rows: `a` rows of `kc` bf16 (row stride `a_rs`), `b` `kc/2` rows of
    /// 32 column pairs (row stride `b_rs` elements) as for the AMX kernel;
    /// `kc` even.
    ///
    /// # Safety
    /// [`available`] returned true; the buffers have those sizes.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn block_8x32(
        a: *const u16,
        a_rs: usize,
        b: *const u16,
        b_rs: usize,
        kc: usize,
        c: *mut f32,
        rows: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
        for p in 0..kc / 2 {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * b_rs).cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * b_rs + 32).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = a.add(r * a_rs + 2 * p).cast::<i32>().read_unaligned();
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
                acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
            }
        }
        for (r, acc) in acc.iter().enumerate().take(rows) {
            _mm512_storeu_ps(c.add(r * 32), acc[0]);
            _mm512_storeu_ps(c.add(r * 32 + 16), acc[1]);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub fn available() -> bool {
        false
    }
    pub const ROWS: usize = 8;
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn block_8x32(
        _: *const u16,
        _: usize,
        _: *const u16,
        _: usize,
        _: usize,
        _: *mut f32,
        _: usize,
    ) {
        unreachable!("AVX512-BF16 is x86-64 only")
    }
}

pub use imp::*;
