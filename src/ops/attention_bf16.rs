//! The bf16 variant of the fused attention ([`super::attention`]): the
//! same tiling by query blocks and the same f32 softmax and saved row
//! log-sum-exps, with every product's operands rounded to bf16 and packed
//! once for the bf16 kernels ([`super::bf16`]).
//!
//! Per (sample, head) task, k and v are packed once (as kᵀ and v for the
//! forward; as kᵀ, vᵀ and k for the backward); per query block, the
//! probabilities and dS are rounded straight from the f32 tile that
//! holds them. The backward computes dKᵀ = Qᵀ·dS and dVᵀ = dOᵀ·P, so that
//! P and dS are read along their rows (the cheap packing) rather than
//! transposed, and transposes dKᵀ and dVᵀ into d(qkv) once per task.

use super::bf16::{matmul_packed, PackedLhs, PackedRhs};
use super::float::SharedMut;
use super::matmul::{output_buffer, Operand};
use super::vmath;
use rayon::prelude::*;

/// Sizes of an attention call (as in [`super::attention`]).
#[derive(Clone, Copy)]
pub struct Dims {
    pub n: usize,
    pub t: usize,
    pub d: usize,
    pub heads: usize,
    pub hd: usize,
}

/// Query rows per block: the f32 score tiles (`block × T`, two in the
/// backward) stay within ~256 KiB each, in L2; a multiple of the AMX tile.
fn block_rows(t: usize) -> usize {
    ((64 * 1024 / t.max(1)) / 32 * 32).clamp(32, 256)
}

/// The operands of head `h` of sample `b`: pointers to q, k, v of its
/// first token (row stride 3·D).
///
/// # Safety
/// `qkv` holds N·T·3D elements.
unsafe fn head(
    qkv: &[f32],
    dims: Dims,
    b: usize,
    h: usize,
) -> (*const f32, *const f32, *const f32) {
    let base = qkv.as_ptr().add(b * dims.t * 3 * dims.d + h * dims.hd);
    (base, base.add(dims.d), base.add(2 * dims.d))
}

/// Output `(N, T, D)` and row log-sum-exps `(N, H, T)`.
pub fn forward(qkv: &[f32], dims: Dims) -> (Vec<f32>, Vec<f32>) {
    let Dims { n, t, d, heads, hd } = dims;
    let scale = 1.0 / (hd as f32).sqrt();
    let rs = 3 * d;
    let mut out = output_buffer(n * t * d, |_: *mut f32| {});
    let mut lse = output_buffer(n * heads * t, |_: *mut f32| {});
    let (out_p, lse_p) = (SharedMut(out.as_mut_ptr()), SharedMut(lse.as_mut_ptr()));
    let bq_max = block_rows(t);
    (0..n * heads).into_par_iter().for_each(|task| {
        let (b, h) = (task / heads, task % heads);
        let (mut kt, mut v_rhs) = (PackedRhs::default(), PackedRhs::default());
        let (mut q_lhs, mut p_lhs) = (PackedLhs::default(), PackedLhs::default());
        // Each block's scores are written whole by its first product.
        let mut s = output_buffer(bq_max * t, |_: *mut f32| {});
        // SAFETY: every operand is a view of this head inside `qkv`; this
        // task alone writes head h's columns of sample b's rows of `out` and
        // its lse entries.
        unsafe {
            let (q, k, v) = head(qkv, dims, b, h);
            kt.pack(Operand::new(k, 1, rs), (hd, t));
            v_rhs.pack(Operand::new(v, rs, 1), (t, hd));
            for q0 in (0..t).step_by(bq_max) {
                let bq = bq_max.min(t - q0);
                let s = &mut s[..bq * t];
                q_lhs.pack(Operand::new(q.add(q0 * rs), rs, 1), (bq, hd));
                matmul_packed(&q_lhs, &kt, s.as_mut_ptr(), t, false, 1.0);
                p_lhs.resize(bq, t);
                for (i, row) in s.chunks_exact_mut(t).enumerate() {
                    row.iter_mut().for_each(|x| *x *= scale);
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let sum = vmath::exp_shifted_sum(row, max);
                    p_lhs.write_row(i, row, 1.0 / sum);
                    *lse_p.ptr().add((b * heads + h) * t + q0 + i) = max + sum.ln();
                }
                let dst = out_p.ptr().add((b * t + q0) * d + h * hd);
                matmul_packed(&p_lhs, &v_rhs, dst, d, false, 1.0);
            }
        }
    });
    (out, lse)
}

/// d(qkv) `(N, T, 3D)` from qkv, the output, its gradient and the saved lse.
pub fn backward(qkv: &[f32], o: &[f32], d_o: &[f32], lse: &[f32], dims: Dims) -> Vec<f32> {
    let Dims { n, t, d, heads, hd } = dims;
    let scale = 1.0 / (hd as f32).sqrt();
    let rs = 3 * d;
    let mut dqkv = output_buffer(n * t * rs, |_: *mut f32| {});
    let dqkv_p = SharedMut(dqkv.as_mut_ptr());
    let bq_max = block_rows(t);
    (0..n * heads).into_par_iter().for_each(|task| {
        let (b, h) = (task / heads, task % heads);
        // Right operands: kᵀ, vᵀ, k (per task); dS and P (per block).
        let [mut kt, mut vt, mut k_rhs, mut ds_rhs, mut p_rhs] = <[PackedRhs; 5]>::default();
        // Left operands: q, dO, dS, qᵀ, dOᵀ of the block.
        let [mut q_lhs, mut do_lhs, mut ds_lhs, mut qt_lhs, mut dot_lhs] =
            <[PackedLhs; 5]>::default();
        // The score tiles are written whole by each block's products, dKᵀ
        // and dVᵀ (hd × T, summed over the query blocks) by the first
        // block's.
        let mut p = output_buffer(bq_max * t, |_: *mut f32| {});
        let mut ds = output_buffer(bq_max * t, |_: *mut f32| {});
        let mut dkt = output_buffer(hd * t, |_: *mut f32| {});
        let mut dvt = output_buffer(hd * t, |_: *mut f32| {});
        // SAFETY: as in `forward`; this task alone writes head h's q, k, v
        // columns of sample b's rows of d(qkv).
        unsafe {
            let (q, k, v) = head(qkv, dims, b, h);
            kt.pack(Operand::new(k, 1, rs), (hd, t));
            vt.pack(Operand::new(v, 1, rs), (hd, t));
            k_rhs.pack(Operand::new(k, rs, 1), (t, hd));
            let dq = dqkv_p.ptr().add(b * t * rs + h * hd);
            for q0 in (0..t).step_by(bq_max) {
                let bq = bq_max.min(t - q0);
                let (p, ds) = (&mut p[..bq * t], &mut ds[..bq * t]);
                let (qb, dob) = (q.add(q0 * rs), d_o.as_ptr().add((b * t + q0) * d + h * hd));
                q_lhs.pack(Operand::new(qb, rs, 1), (bq, hd));
                do_lhs.pack(Operand::new(dob, d, 1), (bq, hd));
                matmul_packed(&q_lhs, &kt, p.as_mut_ptr(), t, false, 1.0);
                matmul_packed(&do_lhs, &vt, ds.as_mut_ptr(), t, false, 1.0);
                for i in 0..bq {
                    let row = (b * t + q0 + i) * d + h * hd;
                    let delta: f32 = (0..hd).map(|j| d_o[row + j] * o[row + j]).sum();
                    let l = lse[(b * heads + h) * t + q0 + i];
                    let (pr, dr) = (&mut p[i * t..(i + 1) * t], &mut ds[i * t..(i + 1) * t]);
                    vmath::exp_scaled_shifted(pr, scale, l);
                    // dS already carries the 1/√d of the scores' gradient.
                    for (dsv, &pv) in dr.iter_mut().zip(pr.iter()) {
                        *dsv = scale * pv * (*dsv - delta);
                    }
                }
                // dQ = dS·K for this block's rows.
                ds_lhs.resize(bq, t);
                for (i, row) in ds.chunks_exact(t).enumerate() {
                    ds_lhs.write_row(i, row, 1.0);
                }
                matmul_packed(&ds_lhs, &k_rhs, dq.add(q0 * rs), rs, false, 1.0);
                // dKᵀ += Qᵀ·dS, dVᵀ += dOᵀ·P.
                let first = q0 == 0;
                qt_lhs.pack(Operand::new(qb, 1, rs), (hd, bq));
                ds_rhs.pack(Operand::new(ds.as_ptr(), t, 1), (bq, t));
                matmul_packed(&qt_lhs, &ds_rhs, dkt.as_mut_ptr(), t, !first, 1.0);
                dot_lhs.pack(Operand::new(dob, 1, d), (hd, bq));
                p_rhs.pack(Operand::new(p.as_ptr(), t, 1), (bq, t));
                matmul_packed(&dot_lhs, &p_rhs, dvt.as_mut_ptr(), t, !first, 1.0);
            }
            let (dk, dv) = (dq.add(d), dq.add(2 * d));
            for j in 0..t {
                for c in 0..hd {
                    *dk.add(j * rs + c) = dkt[c * t + j];
                    *dv.add(j * rs + c) = dvt[c * t + j];
                }
            }
        }
    });
    dqkv
}
