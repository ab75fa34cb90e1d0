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

/// Where a product's results go: row-major f32 with row stride `rs`.
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

/// The micro-kernel loop over one depth block: `out (rows × cols at
/// origin) (+)= scale · a·b`, `a` a packed `[rows_pad][kc_pad]` block, `b`
/// packed `[cols_pad/NR][kc_pad/2][NR][2]` panels.
///
/// # Safety
/// As [`multiply_pair_rows`].
#[allow(clippy::too_many_arguments)]
unsafe fn multiply_block(
    kernel: Bf16Kernel,
    a: (*const u16, usize),
    (b, cols): (*const u16, usize),
    kc_pad: usize,
    out: Out,
    origin: (usize, usize),
    accumulate: bool,
    scale: f32,
) {
    let b = PairRows {
        ptr: b,
        row_stride: 2 * NR,
        panel_stride: kc_pad * NR,
    };
    multiply_pair_rows(kernel, a, (b, cols), kc_pad, out, origin, accumulate, scale)
}

/// The right operand as rows of column pairs: element pair `(p, j)` (depth
/// rows 2p and 2p+1 of column j) at `ptr + (j / NR)·panel_stride +
/// p·row_stride + 2·(j mod NR)`; packed panels have `row_stride = 2·NR`,
/// a pair-interleaved image row has `panel_stride = 2·NR`.
#[derive(Clone, Copy)]
pub struct PairRows {
    pub ptr: *const u16,
    pub row_stride: usize,
    pub panel_stride: usize,
}

/// [`multiply_block`] over any [`PairRows`] right operand.
///
/// # Safety
/// The operands have those sizes; the destination holds the block; for
/// AMX, [`amx::configure`] ran on this thread.
#[allow(clippy::too_many_arguments)]
unsafe fn multiply_pair_rows(
    kernel: Bf16Kernel,
    (a, rows): (*const u16, usize),
    (b, cols): (PairRows, usize),
    kc_pad: usize,
    out: Out,
    origin: (usize, usize),
    accumulate: bool,
    scale: f32,
) {
    let mut block = [0f32; MR * NR];
    let b_rs = b.row_stride;
    for jr in (0..cols).step_by(NR) {
        let b = b.ptr.add(jr / NR * b.panel_stride);
        for ir in (0..rows).step_by(MR) {
            let a = a.add(ir * kc_pad);
            let (rows, cols) = (MR.min(rows - ir), NR.min(cols - jr));
            let at = (origin.0 + ir, origin.1 + jr);
            match kernel {
                Bf16Kernel::Amx if rows == MR && cols == NR && scale == 1.0 => {
                    // A whole block: the tiles accumulate in dst itself.
                    let c = out.ptr.add(at.0 * out.rs + at.1);
                    amx::block_32x32(a, b, b_rs, kc_pad, c, out.rs, accumulate);
                    continue;
                }
                Bf16Kernel::Amx => {
                    amx::block_32x32(a, b, b_rs, kc_pad, block.as_mut_ptr(), NR, false)
                }
                Bf16Kernel::Avx512Bf16 => {
                    for r in (0..rows).step_by(avx512::ROWS) {
                        avx512::block_8x32(
                            a.add(r * kc_pad),
                            kc_pad,
                            b,
                            b_rs,
                            kc_pad,
                            block.as_mut_ptr().add(r * NR),
                            avx512::ROWS.min(rows - r),
                        )
                    }
                }
                Bf16Kernel::Convert => portable_block(a, b, b_rs, kc_pad, &mut block, rows),
            }
            out.store(at, (rows, cols), &block, accumulate, scale);
        }
    }
}

crate::ops::vmath::dispatch! {
    /// The packed layouts' product without bf16 instructions: bf16 widens
    /// to f32 exactly, so this is the other kernels' arithmetic up to the
    /// order of the f32 additions. Rows past `rows` are left alone.
    pub fn portable_rows(a: &[u16], b: &[u16], b_rs: usize, kc_pad: usize, block: &mut [f32], rows: usize) {
        let widen = |bits: u16| f32::from_bits((bits as u32) << 16);
        for (r, out) in block.chunks_exact_mut(NR).enumerate().take(rows) {
            let mut acc = [0f32; NR];
            let a_row = &a[r * kc_pad..(r + 1) * kc_pad];
            for (p, pair) in a_row.chunks_exact(2).enumerate() {
                let b_row = &b[p * b_rs..p * b_rs + 2 * NR];
                let (a0, a1) = (widen(pair[0]), widen(pair[1]));
                for (j, acc) in acc.iter_mut().enumerate() {
                    *acc += a0 * widen(b_row[2 * j]) + a1 * widen(b_row[2 * j + 1]);
                }
            }
            out.copy_from_slice(&acc);
        }
    }
}

/// [`portable_rows`] on raw packed blocks.
unsafe fn portable_block(
    a: *const u16,
    b: *const u16,
    b_rs: usize,
    kc_pad: usize,
    block: &mut [f32; MR * NR],
    rows: usize,
) {
    let a = std::slice::from_raw_parts(a, MR * kc_pad);
    let b = std::slice::from_raw_parts(b, (kc_pad / 2 - 1) * b_rs + 2 * NR);
    portable_rows(a, b, b_rs, kc_pad, block, rows)
}

/// The depth blocks of a depth `k`: (start, length, padded length); every
/// block but the last is KC long, so block `q` starts at `q·KC` in the
/// padded depth as well.
fn depth_blocks(k: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..k).step_by(KC).map(move |pc| {
        let kc = KC.min(k - pc);
        (pc, kc, kc.next_multiple_of(32))
    })
}

/// The left operand of products that reuse it, rounded and packed once:
/// per depth block, a row-major `[m_pad][kc_pad]` bf16 block (rows padded
/// to a multiple of 32 with zeros).
#[derive(Default)]
pub struct PackedLhs {
    data: Vec<u16>,
    m: usize,
    k: usize,
}

impl PackedLhs {
    fn m_pad(&self) -> usize {
        self.m.next_multiple_of(MR)
    }

    /// Sizes the buffer for an `m × k` operand whose rows are then all
    /// written with [`PackedLhs::write_row`]; the padding rows are zeroed
    /// here (only they: the rows are overwritten whole).
    pub fn resize(&mut self, m: usize, k: usize) {
        self.m = m;
        self.k = k;
        let m_pad = self.m_pad();
        self.data.resize(m_pad * k.next_multiple_of(32), 0);
        for (pc, _, kc_pad) in depth_blocks(k) {
            self.data[m_pad * pc + m * kc_pad..m_pad * (pc + kc_pad)].fill(0);
        }
    }

    /// Packs the `m × k` operand `a`.
    ///
    /// # Safety
    /// `a` addresses an `m × k` matrix.
    pub unsafe fn pack<L: Bf16Input>(&mut self, a: Operand<L>, (m, k): (usize, usize)) {
        self.m = m;
        self.k = k;
        let m_pad = self.m_pad();
        self.data.resize(m_pad * k.next_multiple_of(32), 0);
        for (pc, kc, kc_pad) in depth_blocks(k) {
            let block = &mut self.data[m_pad * pc..m_pad * (pc + kc_pad)];
            pack_a(a.offset(0, pc), m, kc, kc_pad, block);
        }
    }

    /// Writes row `r` (`k` values, each times `scale`), rounding them.
    pub fn write_row(&mut self, r: usize, row: &[f32], scale: f32) {
        debug_assert!(r < self.m && row.len() == self.k);
        let m_pad = self.m_pad();
        for (pc, kc, kc_pad) in depth_blocks(self.k) {
            let at = m_pad * pc + r * kc_pad;
            round_row(&row[pc..pc + kc], scale, &mut self.data[at..at + kc_pad]);
        }
    }
}

impl std::fmt::Debug for PackedLhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedLhs({}×{})", self.m, self.k)
    }
}

/// The right operand of products that reuse it, rounded and packed once:
/// per depth block, `[n_pad/NR][kc_pad/2][NR][2]` panels.
#[derive(Default)]
pub struct PackedRhs {
    data: Vec<u16>,
    k: usize,
    n: usize,
}

impl PackedRhs {
    /// Packs the `k × n` operand `b`.
    ///
    /// # Safety
    /// `b` addresses a `k × n` matrix.
    pub unsafe fn pack<R: Bf16Input>(&mut self, b: Operand<R>, (k, n): (usize, usize)) {
        self.k = k;
        self.n = n;
        let n_pad = n.next_multiple_of(NR);
        self.data.resize(n_pad * k.next_multiple_of(32), 0);
        for (pc, kc, kc_pad) in depth_blocks(k) {
            let block = &mut self.data[n_pad * pc..n_pad * (pc + kc_pad)];
            pack_b(b.offset(pc, 0), kc, n, kc_pad, block);
        }
    }
}

impl PackedRhs {
    /// The `k × n` operand's depth and width.
    pub fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// `dst ← lhs·b` (`+ dst` if `accumulate`) for an `m × b.k` left operand and
/// a right operand packed beforehand (a weight that many products reuse:
/// packing a weight costs about what multiplying it by a few hundred rows
/// does). Rows are shared among `threads`, each task packing its own rows.
///
/// # Safety
/// `lhs` addresses an `m × k` matrix; `dst` holds `m × b.n` elements at row
/// stride `dst_rs`.
pub unsafe fn matmul_prepacked<L: Bf16Input>(
    lhs: Operand<L>,
    m: usize,
    b: &PackedRhs,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    threads: Threads,
) {
    if m == 0 {
        return;
    }
    let p = match threads {
        Threads::One => 1,
        Threads::Pool => rayon::current_num_threads(),
    };
    let rows_each = m.div_ceil(p).next_multiple_of(MR);
    let dst = SharedMut(dst);
    let rows_from = |r0: usize| {
        let rows = rows_each.min(m - r0);
        let mut a = PackedLhs::default();
        // SAFETY: rows r0..r0+rows of lhs and dst (the caller's sizes); the
        // tasks write disjoint rows.
        unsafe {
            a.pack(lhs.offset(r0, 0), (rows, b.k));
            matmul_packed(&a, b, dst.ptr().add(r0 * dst_rs), dst_rs, accumulate, 1.0);
        }
    };
    if m <= rows_each {
        return rows_from(0);
    }
    let starts: Vec<usize> = (0..m).step_by(rows_each).collect();
    starts.into_par_iter().for_each(rows_from);
}

/// `dst ← scale·a·b` (`+ dst` if `accumulate`) of packed operands on the
/// calling thread; `dst` row-major with row stride `dst_rs`.
///
/// # Safety
/// `dst` holds `a.m × b.n` elements at that stride; `a.k == b.k`.
pub unsafe fn matmul_packed(
    a: &PackedLhs,
    b: &PackedRhs,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    scale: f32,
) {
    matmul_packed_with(kernel(), a, b, dst, dst_rs, accumulate, scale)
}

/// [`matmul_packed`] on a given kernel.
///
/// # Safety
/// As [`matmul_packed`], and `kernel` must be available on this CPU.
pub unsafe fn matmul_packed_with(
    kernel: Bf16Kernel,
    a: &PackedLhs,
    b: &PackedRhs,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    scale: f32,
) {
    debug_assert_eq!(a.k, b.k);
    let out = Out {
        ptr: dst,
        rs: dst_rs,
    };
    let (m, n, k) = (a.m, b.n, a.k);
    if k == 0 {
        return zero_or_keep(out, (m, n), accumulate);
    }
    let (m_pad, n_pad) = (m.next_multiple_of(MR), n.next_multiple_of(NR));
    if kernel == Bf16Kernel::Amx {
        amx::configure();
    }
    for (pc, _, kc_pad) in depth_blocks(k) {
        multiply_block(
            kernel,
            (a.data.as_ptr().add(m_pad * pc), m),
            (b.data.as_ptr().add(n_pad * pc), n),
            kc_pad,
            out,
            (0, 0),
            accumulate || pc > 0,
            scale,
        );
    }
    if kernel == Bf16Kernel::Amx {
        amx::release();
    }
}

/// `dst ← a·B` (`+ dst` if `accumulate`) on the calling thread, `B` the
/// `a.k × n` matrix stored as rows of column pairs (`b[p][j] = (B[2p][j],
/// B[2p+1][j])`, pair row `p` at `b + p·b_row_stride`), rows past `a.k`
/// zero up to the next multiple of 32 (an implicit-GEMM convolution's
/// image; see [`pair_rows`]).
///
/// # Safety
/// `b` holds `a.k.next_multiple_of(32) / 2` pair rows at that stride, each
/// readable for `n.next_multiple_of(32)` pairs; `dst` holds `a.m × n`.
pub unsafe fn matmul_pairs(
    a: &PackedLhs,
    b: *const u16,
    b_row_stride: usize,
    n: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
) {
    let kernel = kernel();
    let out = Out {
        ptr: dst,
        rs: dst_rs,
    };
    let (m, k) = (a.m, a.k);
    if k == 0 {
        return zero_or_keep(out, (m, n), accumulate);
    }
    let m_pad = m.next_multiple_of(MR);
    if kernel == Bf16Kernel::Amx {
        amx::configure();
    }
    for (pc, _, kc_pad) in depth_blocks(k) {
        let b = PairRows {
            ptr: b.add(pc / 2 * b_row_stride),
            row_stride: b_row_stride,
            panel_stride: 2 * NR,
        };
        let a_block = (a.data.as_ptr().add(m_pad * pc), m);
        let acc = accumulate || pc > 0;
        multiply_pair_rows(kernel, a_block, (b, n), kc_pad, out, (0, 0), acc, 1.0);
    }
    if kernel == Bf16Kernel::Amx {
        amx::release();
    }
}

/// `dst[j] ← (bf16(lo[j]), bf16(hi[j]))` as pairs, `hi` zero when absent;
/// `dst` holds `2·lo.len()` elements.
pub fn pair_rows(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u16]) {
    debug_assert!(hi.is_none_or(|h| h.len() == lo.len()) && dst.len() == 2 * lo.len());
    if super::pack::simd_available() {
        // SAFETY: the CPU has the instructions (just checked).
        unsafe { super::pack::pair_rows(lo, hi, dst) }
    } else {
        for (j, pair) in dst.chunks_exact_mut(2).enumerate() {
            pair[0] = super::to_bf16_bits(lo[j]);
            pair[1] = hi.map_or(0, |h| super::to_bf16_bits(h[j]));
        }
    }
}

/// An empty sum: zero unless accumulating.
unsafe fn zero_or_keep(out: Out, (m, n): (usize, usize), accumulate: bool) {
    if !accumulate {
        for r in 0..m {
            std::slice::from_raw_parts_mut(out.ptr.add(r * out.rs), n).fill(0.0);
        }
    }
}

crate::ops::vmath::dispatch! {
    /// `dst ← bf16(scale·row)`, zero past the row.
    pub fn round_row_portable(row: &[f32], scale: f32, dst: &mut [u16]) {
        let (head, tail) = dst.split_at_mut(row.len());
        for (d, &v) in head.iter_mut().zip(row) {
            *d = super::to_bf16_bits(scale * v);
        }
        tail.fill(0);
    }
}

fn round_row(row: &[f32], scale: f32, dst: &mut [u16]) {
    if super::pack::simd_available() {
        // SAFETY: the CPU has the instructions (just checked).
        unsafe { super::pack::round_row(row, scale, dst) }
    } else {
        round_row_portable(row, scale, dst)
    }
}

/// One thread's `m×n` product into `out`: A is packed once for the whole
/// tile, B one column panel and depth block at a time.
unsafe fn tile<L: Bf16Input, R: Bf16Input>(
    kernel: Bf16Kernel,
    (m, n, k): (usize, usize, usize),
    out: Out,
    accumulate: bool,
    lhs: Operand<L>,
    rhs: Operand<R>,
    scale: f32,
) {
    if k == 0 {
        return zero_or_keep(out, (m, n), accumulate);
    }
    if kernel == Bf16Kernel::Convert {
        return convert_tile((m, n, k), out, accumulate, lhs, rhs, scale);
    }
    let mut a_pack = PackedLhs::default();
    a_pack.pack(lhs, (m, k));
    let m_pad = m.next_multiple_of(MR);
    let mut b_pack = vec![0u16; KC.min(k.next_multiple_of(32)) * NC.min(n.next_multiple_of(NR))];
    if kernel == Bf16Kernel::Amx {
        amx::configure();
    }
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for (pc, kc, kc_pad) in depth_blocks(k) {
            pack_b(rhs.offset(pc, jc), kc, nc, kc_pad, &mut b_pack);
            let a_block = a_pack.data.as_ptr().add(m_pad * pc);
            for ic in (0..m).step_by(MC) {
                multiply_block(
                    kernel,
                    (a_block.add(ic * kc_pad), MC.min(m - ic)),
                    (b_pack.as_ptr(), nc),
                    kc_pad,
                    out,
                    (ic, jc),
                    accumulate || pc > 0,
                    scale,
                );
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

    #[test]
    fn packed_products_match_the_rounded_product_on_every_kernel() {
        for kernel in Bf16Kernel::all_available() {
            for &(m, n, k) in &[(1, 1, 1), (37, 45, 70), (64, 33, 1100), (5, 64, 512)] {
                let a = values(m * k, 4);
                let b = values(k * n, 5);
                let want = reference(&a, &b, (m, n, k));
                let mut rhs = PackedRhs::default();
                let mut lhs = PackedLhs::default();
                let mut by_rows = PackedLhs::default();
                // 2·a written row by row, then scaled back by ½ in the product.
                by_rows.resize(m, k);
                let doubled: Vec<f32> = a.iter().map(|v| 0.5 * v).collect();
                unsafe {
                    rhs.pack(Operand::new(b.as_ptr(), n, 1), (k, n));
                    lhs.pack(Operand::new(a.as_ptr(), k, 1), (m, k));
                }
                for (r, row) in doubled.chunks_exact(k).enumerate() {
                    by_rows.write_row(r, row, 2.0);
                }
                for (name, lhs, scale) in [
                    ("packed", &lhs, 1.0),
                    ("rows", &by_rows, 1.0),
                    ("scaled", &lhs, 0.25),
                ] {
                    let mut got = vec![f32::NAN; m * (n + 3)];
                    unsafe {
                        matmul_packed_with(kernel, lhs, &rhs, got.as_mut_ptr(), n + 3, false, scale)
                    };
                    for i in 0..m {
                        for j in 0..n {
                            let w = scale as f64 * want[i * n + j];
                            let err = (got[i * (n + 3) + j] as f64 - w).abs();
                            assert!(
                                err <= 2e-6 * k as f64 + 1e-6 * w.abs(),
                                "{kernel:?} {name} m {m} n {n} k {k}: [{i}, {j}] {} vs {w}",
                                got[i * (n + 3) + j]
                            );
                        }
                        // The padding columns of dst are never written.
                        assert!(got[i * (n + 3) + n].is_nan());
                    }
                }
            }
        }
    }
}
