//! The qkv projection + attention and the linear + GELU ops against their
//! compositions: values and every input's gradient, f32, f64 and bf16.

use crate::support::compare::within;
use crate::support::model as common;
use candle_core::{DType, Tensor};
use dit::compute::Precision::{self, Bf16, F32};
use dit::ops::{
    linear_gelu_in, linear_gelu_reference_in, qkv_attention_in, qkv_attention_reference_in,
};

fn randn(seed: u64, shape: &[usize], std: f64, dtype: DType) -> Tensor {
    crate::support::random::normal(seed, shape, 0.0, std, dtype)
}

/// Worst rel-L2 (output and gradients) of the fused op in `precision`
/// against the composition in `reference`.
fn qkv_attention_error(
    (n, t, heads, hd): (usize, usize, usize, usize),
    dtype: DType,
    precision: Precision,
    reference: Precision,
) -> f64 {
    let d = heads * hd;
    let inputs = [
        randn(1, &[n, t, d], 1.0, dtype),
        randn(2, &[3 * d, d], 1.5 / (d as f64).sqrt(), dtype),
        randn(3, &[3 * d], 0.1, dtype),
    ];
    let r = randn(4, &[n, t, d], 1.0, dtype);
    common::worst_rel_l2_with_grads(
        &inputs,
        &r,
        &|x| qkv_attention_in(precision, x[0], x[1], x[2], heads).unwrap(),
        &|x| qkv_attention_reference_in(reference, x[0], x[1], x[2], heads).unwrap(),
    )
}

fn linear_gelu_error(
    (rows, k, n): (usize, usize, usize),
    dtype: DType,
    precision: Precision,
    reference: Precision,
) -> f64 {
    let inputs = [
        randn(11, &[2, rows, k], 1.0, dtype),
        randn(12, &[n, k], 1.0 / (k as f64).sqrt(), dtype),
        randn(13, &[n], 0.1, dtype),
    ];
    let r = randn(14, &[2, rows, n], 1.0, dtype);
    common::worst_rel_l2_with_grads(
        &inputs,
        &r,
        &|x| linear_gelu_in(precision, x[0], x[1], x[2]).unwrap(),
        &|x| linear_gelu_reference_in(reference, x[0], x[1], x[2]).unwrap(),
    )
}

const ATTENTION_CASES: [(usize, usize, usize, usize); 3] =
    [(2, 70, 3, 8), (1, 5, 1, 7), (2, 129, 2, 16)];
const LINEAR_CASES: [(usize, usize, usize); 3] = [(7, 13, 11), (65, 64, 256), (1, 3, 1)];

#[test]
fn f32_and_f64_match_the_composition() {
    for case in ATTENTION_CASES {
        let e32 = qkv_attention_error(case, DType::F32, F32, F32);
        let e64 = qkv_attention_error(case, DType::F64, F32, F32);
        eprintln!("qkv attention {case:?}: f32 {e32:.2e}, f64 {e64:.2e}");
        assert!(
            within(e32, 2e-5) && within(e64, 1e-12),
            "{case:?}: {e32:e}, {e64:e}"
        );
    }
    for case in LINEAR_CASES {
        let e32 = linear_gelu_error(case, DType::F32, F32, F32);
        let e64 = linear_gelu_error(case, DType::F64, F32, F32);
        eprintln!("linear gelu {case:?}: f32 {e32:.2e}, f64 {e64:.2e}");
        // candle's GELU backward (the composition's) rounds its constants to
        // six digits (see ops_gelu), which bounds the f64 agreement.
        assert!(
            within(e32, 1e-5) && within(e64, 1e-6),
            "{case:?}: {e32:e}, {e64:e}"
        );
    }
}

#[test]
fn bf16_matches_the_f32_composition_within_bf16_rounding() {
    for case in ATTENTION_CASES {
        let e = qkv_attention_error(case, DType::F32, Bf16, F32);
        eprintln!("bf16 qkv attention {case:?}: {e:.2e}");
        assert!(within(e, 2e-2) && e > 1e-4, "{case:?}: {e:e}");
    }
    for case in LINEAR_CASES {
        let e = linear_gelu_error(case, DType::F32, Bf16, F32);
        eprintln!("bf16 linear gelu {case:?}: {e:.2e}");
        assert!(within(e, 1.5e-2) && e > 1e-4, "{case:?}: {e:e}");
    }
}

#[test]
fn shapes_that_do_not_fit_are_refused() {
    let x = randn(21, &[2, 3, 8], 1.0, DType::F32);
    let w = randn(22, &[24, 8], 1.0, DType::F32);
    let b = randn(23, &[24], 1.0, DType::F32);
    let err = qkv_attention_in(F32, &x, &w, &b, 3)
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not fit"), "{err}");
    let err = linear_gelu_in(F32, &x, &w, &b.narrow(0, 0, 5).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not fit"), "{err}");
}
