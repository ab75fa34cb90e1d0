//! Blocking and packing for the bf16 products (GotoBLAS order: a column
//! panel of B, a depth block, a row block of A, then 32×32 micro-tiles),
//! threaded like the f32 product by independent output tiles
//! ([`crate::ops::matmul`]).

use super::convert::Bf16Input;
use super::pack::{pack_a, pack_b, MR, NR};
use super::{amx, avx512, kernel, Bf16Kernel};
use crate::ops::float::SharedMut;
use crate::ops::matmul::{tiles, Operand, Threads};
use rayon::prelude::*;

/// Depth block: a packed 32-column B micro-panel (KC·NR bf16 = 32 KiB)
/// stays in L1 while the row block's micro-panels stream past it.
const KC: usize = 512;
/// Row block: MC·KC bf16 of A (128 KiB) stay in L2.
const MC: usize = 128;
/// Column panel: KC·NC bf16 of B (512 KiB) in L2/L3.
const NC: usize = 512;

/// `dst ← scale·lhs·rhs` (`+ dst` if `accumulate`) with both operands
/// rounded to bf16 and f32 accumulation, on [`kernel`]'s instructions.
/// Shapes, strides and threads as [`crate::ops::matmul::matmul`].
///
/// # Safety
/// As [`crate::ops::matmul::matmul`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul<L: Bf16Input, R: Bf16Input>(
    dims: (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: Operand<L>,
    rhs: Operand<R>,
    scale: f32,
    threads: Threads,
) {
    matmul_with(
        kernel(),
        dims,
        dst,
        dst_rs,
        accumulate,
        lhs,
        rhs,
        scale,
        threads,
    )
}

/// [`matmul`] on a given kernel (the tests run each one the CPU has).
///
/// # Safety
/// As [`matmul`], and `kernel` must be available on this CPU.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_with<L: Bf16Input, R: Bf16Input>(
    kernel: Bf16Kernel,
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: Operand<L>,
    rhs: Operand<R>,
    scale: f32,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    let p = match threads {
        Threads::One => 1,
        Threads::Pool => rayon::current_num_threads(),
    };
    let dst = SharedMut(dst);
    let tile_product = |r0: usize, c0: usize, rows: usize, cols: usize| {
        // SAFETY: the tile lies inside dst; tiles of different tasks are
        // disjoint; operands are only read.
        unsafe {
            let out = Out {
                ptr: dst.ptr().add(r0 * dst_rs + c0),
                rs: dst_rs,
            };
            tile(
                kernel,
                (rows, cols, k),
                out,
                accumulate,
                lhs.offset(r0, 0),
                rhs.offset(0, c0),
                scale,
            )
        }
    };
    let (row_tiles, col_tiles) = split(m, n, p);
    if row_tiles * col_tiles == 1 {
        return tile_product(0, 0, m, n);
    }
    let (tile_m, tile_n) = (
        m.div_ceil(row_tiles),
        n.div_ceil(col_tiles).next_multiple_of(NR),
    );
    (0..row_tiles * col_tiles).into_par_iter().for_each(|t| {
        let (r0, c0) = ((t / col_tiles) * tile_m, (t % col_tiles) * tile_n);
        if r0 < m && c0 < n {
            tile_product(r0, c0, tile_m.min(m - r0), tile_n.min(n - c0));
        }
    });
}

/// How to cut the output among `p` threads: every thread packs (rounds)
/// the whole operand the split does not divide, so split the larger side.
fn split(m: usize, n: usize, p: usize) -> (usize, usize) {
    if m > n && m / p >= MR {
        (p, 1)
    } else {
        tiles(m, n, p)
    }
}

/// Where a tile's results go: row-major f32 with row stride `rs`.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    rs: usize,
}

impl Out {
    /// `dst[r][c] ← (dst[r][c] if accumulate) + scale·block[r][c]` for the
    /// `rows × cols` corner of a 32-wide block.
    ///
    /// # Safety
    /// The block at (r0, c0) lies inside the destination.
    #[inline]
    unsafe fn store(
        self,
        (r0, c0): (usize, usize),
        (rows, cols): (usize, usize),
        block: &[f32; MR * NR],
        accumulate: bool,
        scale: f32,
    ) {
        for r in 0..rows {
            let d = std::slice::from_raw_parts_mut(self.ptr.add((r0 + r) * self.rs + c0), cols);
            let s = &block[r * NR..r * NR + cols];
            if accumulate {
                d.iter_mut().zip(s).for_each(|(d, &s)| *d += scale * s);
            } else {
                d.iter_mut().zip(s).for_each(|(d, &s)| *d = scale * s);
            }
        }
    }
}

/// One thread's `m×n` product into `out`.
unsafe fn tile<L: Bf16Input, R: Bf16Input>(
    kernel: Bf16Kernel,
    (m, n, k): (usize, usize, usize),
    out: Out,
    accumulate: bool,
    lhs: Operand<L>,
    rhs: Operand<R>,
    scale: f32,
) {
    if kernel == Bf16Kernel::Convert || k == 0 {
        return convert_tile((m, n, k), out, accumulate, lhs, rhs, scale);
    }
    let kc_max = KC.min(k.next_multiple_of(32));
    let mut b_pack = vec![0u16; kc_max * NC.min(n.next_multiple_of(NR))];
    let mut a_pack = vec![0u16; kc_max * MC.min(m.next_multiple_of(MR))];
    let mut block = [0f32; MR * NR];
    if kernel == Bf16Kernel::Amx {
        amx::configure();
    }
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let kc_pad = kc.next_multiple_of(32);
            pack_b(rhs.offset(pc, jc), kc, nc, kc_pad, &mut b_pack);
            let acc = accumulate || pc > 0;
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                pack_a(lhs.offset(ic, pc), mc, kc, kc_pad, &mut a_pack);
                for jr in (0..nc).step_by(NR) {
                    let b = b_pack.as_ptr().add(jr * kc_pad);
                    for ir in (0..mc).step_by(MR) {
                        let a = a_pack.as_ptr().add(ir * kc_pad);
                        let (rows, cols) = (MR.min(mc - ir), NR.min(nc - jr));
                        let at = (ic + ir, jc + jr);
                        if kernel == Bf16Kernel::Amx && rows == MR && cols == NR && scale == 1.0 {
                            // A whole block: the tiles accumulate in dst itself.
                            let c = out.ptr.add(at.0 * out.rs + at.1);
                            amx::block_32x32(a, b, kc_pad, c, out.rs, acc);
                            continue;
                        }
                        match kernel {
                            Bf16Kernel::Amx => {
                                amx::block_32x32(a, b, kc_pad, block.as_mut_ptr(), NR, false)
                            }
                            _ => {
                                for r in (0..rows).step_by(avx512::ROWS) {
                                    avx512::block_8x32(
                                        a.add(r * kc_pad),
                                        kc_pad,
                                        b,
                                        kc_pad,
                                        block.as_mut_ptr().add(r * NR),
                                        avx512::ROWS.min(rows - r),
                                    )
                                }
                            }
                        }
                        out.store(at, (rows, cols), &block, acc, scale);
                    }
                }
            }
        }
    }
    if kernel == Bf16Kernel::Amx {
        amx::release();
    }
}

/// Without bf16 instructions: both blocks rounded to bf16 into f32 copies,
/// then the f32 product.
unsafe fn convert_tile<L: Bf16Input, R: Bf16Input>(
    (m, n, k): (usize, usize, usize),
    out: Out,
    accumulate: bool,
    lhs: Operand<L>,
    rhs: Operand<R>,
    scale: f32,
) {
    let widen = |bits: u16| f32::from_bits((bits as u32) << 16);
    let mut a = vec![0f32; m * k];
    let mut b = vec![0f32; k * n];
    for (i, row) in a.chunks_exact_mut(k.max(1)).enumerate().take(m) {
        for (l, v) in row.iter_mut().enumerate() {
            *v = widen((*lhs.ptr.add(i * lhs.row_stride + l * lhs.col_stride)).bf16_bits());
        }
    }
    for (l, row) in b.chunks_exact_mut(n).enumerate().take(k) {
        for (j, v) in row.iter_mut().enumerate() {
            *v = widen((*rhs.ptr.add(l * rhs.row_stride + j * rhs.col_stride)).bf16_bits());
        }
    }
    crate::ops::matmul::matmul(
        (m, n, k),
        out.ptr,
        out.rs,
        accumulate,
        Operand::new(a.as_ptr(), k, 1),
        Operand::new(b.as_ptr(), n, 1),
        scale,
        Threads::One,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::bf16::round_to_bf16;

    /// The product of the bf16-rounded operands in f64.
    fn reference(a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize)) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|l| {
                        round_to_bf16(a[i * k + l]) as f64 * round_to_bf16(b[l * n + j]) as f64
                    })
                    .sum();
            }
        }
        c
    }

    fn values(len: usize, salt: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 2654435761 + salt * 97) % 1999) as f32 / 1999.0 - 0.5) * 3.0)
            .collect()
    }

    #[test]
    fn every_kernel_matches_the_rounded_product() {
        for kernel in Bf16Kernel::all_available() {
            for &(m, n, k) in &[
                (1, 1, 1),
                (3, 200, 7),
                (130, 129, 65),
                (257, 70, 600),
                (8, 1000, 33),
                (64, 64, 1100),
            ] {
                let a = values(m * k, 1);
                let b = values(k * n, 2);
                let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                let at: Vec<f32> = (0..m * k).map(|i| a[(i % m) * k + i / m]).collect();
                let want = reference(&a, &b, (m, n, k));
                let prior: Vec<f32> = values(m * n, 3);
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    // (lhs as given or transposed) × (rhs row-major or transposed), accumulating.
                    for (a_t, b_t) in [(false, false), (false, true), (true, true)] {
                        let lhs = if a_t {
                            Operand::new(at.as_ptr(), 1, m)
                        } else {
                            Operand::new(a.as_ptr(), k, 1)
                        };
                        let rhs = if b_t {
                            Operand::new(bt.as_ptr(), 1, k)
                        } else {
                            Operand::new(b.as_ptr(), n, 1)
                        };
                        let mut got = prior.clone();
                        pool.install(|| unsafe {
                            matmul_with(
                                kernel,
                                (m, n, k),
                                got.as_mut_ptr(),
                                n,
                                true,
                                lhs,
                                rhs,
                                0.5,
                                Threads::Pool,
                            )
                        });
                        for i in 0..m * n {
                            let w = prior[i] as f64 + 0.5 * want[i];
                            let err = (got[i] as f64 - w).abs();
                            // f32 accumulation of k exact products.
                            let tol = 1e-6 * (k as f64) * 2.0 + 1e-6 * w.abs();
                            assert!(
                                err <= tol,
                                "{kernel:?} m {m} n {n} k {k} threads {threads} transposed ({a_t}, {b_t}): \
                                 [{i}] {} vs {w} (err {err:e})",
                                got[i]
                            );
                        }
                    }
                }
            }
        }
    }
}
