//! Matrix products through the `gemm` crate, with the work split across
//! rayon's threads by output tiles.
//!
//! gemm's own threading synchronises its threads once per block of the
//! inner dimension; for a long inner dimension and a narrow output (the MLP's
//! second layer: 3072 → 768) that halved its throughput on two cores
//! (117 against 162 GFLOP/s for the same product split in two column
//! panels), and a product with a handful of rows (adaLN's `(N, D)·(D, 6D)`)
//! ran on one core. Independent tiles, each multiplied single-threaded,
//! need no synchronisation at all.

use super::float::{Float, SharedMut};
use crate::compute::Precision;
use rayon::prelude::*;

/// A matrix operand: its first element and its (row, column) strides in
/// elements.
#[derive(Clone, Copy)]
pub struct Operand<T> {
    pub ptr: *const T,
    pub row_stride: usize,
    pub col_stride: usize,
}

// SAFETY: operands are only read, by tasks that the caller waits for.
unsafe impl<T: Sync> Send for Operand<T> {}
unsafe impl<T: Sync> Sync for Operand<T> {}

impl<T> Operand<T> {
    pub fn new(ptr: *const T, row_stride: usize, col_stride: usize) -> Self {
        Self {
            ptr,
            row_stride,
            col_stride,
        }
    }

    /// The operand that starts `rows` rows and `cols` columns further in.
    pub(crate) fn offset(self, rows: usize, cols: usize) -> Self {
        // SAFETY (of the caller's later reads): the sub-block lies inside the
        // block the caller passed.
        let ptr = self
            .ptr
            .wrapping_add(rows * self.row_stride + cols * self.col_stride);
        Self { ptr, ..self }
    }
}

/// Who computes a product.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread alone (the caller is already one of many tasks).
    One,
    /// All of rayon's current pool.
    Pool,
}

/// Smallest tile side worth a task of its own: below it packing and task
/// overheads outweigh the product.
const MIN_TILE: usize = 64;

/// `dst ← scale·lhs·rhs` (`+ dst` if `accumulate`), `lhs` `m×k`, `rhs` `k×n`,
/// `dst` `m×n` with row stride `dst_rs` and unit column stride.
///
/// # Safety
/// The pointers must address matrices of the given sizes and strides, and
/// `dst` must not overlap the operands. Without `accumulate`, `dst` is only
/// written, so it may be uninitialised memory.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul<T: Float>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    lhs: Operand<T>,
    rhs: Operand<T>,
    scale: T,
    threads: Threads,
) {
    let p = match threads {
        Threads::One => 1,
        Threads::Pool => rayon::current_num_threads(),
    };
    let dst = SharedMut(dst);
    // One single-threaded gemm over the `rows × cols` block at (r0, c0).
    let tile_product = |r0: usize, c0: usize, rows: usize, cols: usize| {
        let (lhs, rhs) = (lhs.offset(r0, 0), rhs.offset(0, c0));
        // SAFETY: the block lies inside `dst` (caller's contract), blocks of
        // different tasks are disjoint, and operands are only read.
        unsafe {
            gemm::gemm(
                rows,
                cols,
                k,
                dst.ptr().add(r0 * dst_rs + c0),
                1,
                dst_rs as isize,
                accumulate,
                lhs.ptr,
                lhs.col_stride as isize,
                lhs.row_stride as isize,
                rhs.ptr,
                rhs.col_stride as isize,
                rhs.row_stride as isize,
                T::one(),
                scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    };
    let (row_tiles, col_tiles) = tiles(m, n, p);
    if row_tiles * col_tiles == 1 {
        return tile_product(0, 0, m, n);
    }
    let (tile_m, tile_n) = (
        m.div_ceil(row_tiles),
        n.div_ceil(col_tiles).next_multiple_of(16),
    );
    (0..row_tiles * col_tiles).into_par_iter().for_each(|tile| {
        let (r0, c0) = ((tile / col_tiles) * tile_m, (tile % col_tiles) * tile_n);
        if r0 < m && c0 < n {
            tile_product(r0, c0, tile_m.min(m - r0), tile_n.min(n - c0));
        }
    });
}

/// [`matmul`] with the operands rounded to bf16 for [`Precision::Bf16`]
/// ([`super::bf16::matmul`]; f32 elements only, which [`super::route`]
/// ensures).
///
/// # Safety
/// As [`matmul`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_in<T: Float>(
    precision: Precision,
    dims: (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    lhs: Operand<T>,
    rhs: Operand<T>,
    scale: T,
    threads: Threads,
) {
    match precision {
        Precision::F32 => matmul(dims, dst, dst_rs, accumulate, lhs, rhs, scale, threads),
        Precision::Bf16 => T::matmul_bf16(dims, dst, dst_rs, accumulate, lhs, rhs, scale, threads),
    }
}

/// How many (row, column) tiles to cut an `m×n` output into for `p` threads:
/// column panels first (each task then reads all of `lhs` but only its part
/// of `rhs`, the weight in every linear layer), rows when columns run out.
pub(crate) fn tiles(m: usize, n: usize, p: usize) -> (usize, usize) {
    if p <= 1 {
        return (1, 1);
    }
    let mut cols = p;
    while cols > 1 && (!p.is_multiple_of(cols) || n / cols < MIN_TILE) {
        cols -= 1;
    }
    let rows = (p / cols).min((m / MIN_TILE).max(1));
    (rows, cols)
}

/// A buffer of `len` elements for a kernel that writes every one of them
/// before anything reads it, without zero-filling it first (a zero fill is
/// a full pass over the buffer: with one per fused op's output, memset was
/// ~12% of a bf16 training step).
pub fn output_buffer<T: Float>(len: usize, fill: impl FnOnce(*mut T)) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    fill(v.as_mut_ptr());
    // SAFETY: `fill` wrote all `len` elements (the contract above).
    unsafe { v.set_len(len) };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], (m, n, k): (usize, usize, usize)) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn tiled_product_equals_naive_for_odd_shapes_and_thread_counts() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 200, 7),
            (130, 129, 65),
            (257, 70, 300),
            (8, 1000, 33),
        ] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 17) % 13) as f64 - 6.0).collect();
            let want = naive(&a, &b, (m, n, k));
            for threads in [1, 2, 3, 4, 8] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                // b is read transposed (column-major view of bᵀ) to exercise strides.
                let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                let got = pool.install(|| {
                    output_buffer(m * n, |dst| unsafe {
                        matmul(
                            (m, n, k),
                            dst,
                            n,
                            false,
                            Operand::new(a.as_ptr(), k, 1),
                            Operand::new(bt.as_ptr(), 1, k),
                            1.0,
                            Threads::Pool,
                        )
                    })
                });
                assert_eq!(got, want, "m {m} n {n} k {k}, {threads} threads");
            }
        }
    }

    #[test]
    fn tiles_cover_the_pool_and_keep_panels_wide() {
        assert_eq!(tiles(512, 768, 2), (1, 2));
        assert_eq!(tiles(8, 4608, 2), (1, 2));
        assert_eq!(tiles(2048, 100, 2), (2, 1));
        assert_eq!(tiles(8, 100, 2), (1, 1));
        assert_eq!(tiles(2048, 384, 16), (4, 4));
        assert_eq!(tiles(512, 768, 1), (1, 1));
    }
}
