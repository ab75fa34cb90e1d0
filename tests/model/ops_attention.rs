//! Fused flash-style attention against the unfused composition: outputs and
//! d(qkv), f32 and f64, sequence lengths around the query tile (64) and odd
//! head sizes.

use candle_core::{DType, Device, Tensor, Var};
use dit::ops::{attention, attention_reference};

use crate::support::model as common;

fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    common::errors(a, b).1
}

/// (output rel-L2, gradient rel-L2) of fused vs reference.
fn compare(n: usize, t: usize, heads: usize, hd: usize, dtype: DType) -> (f64, f64) {
    let d = heads * hd;
    // Scores of a few units so the softmax is far from uniform.
    let qkv = crate::support::random::normal(1, &[n, t, 3 * d], 0.0, 1.5, dtype);
    let r = crate::support::random::normal(2, &[n, t, d], 0.0, 1.0, dtype);
    let run = |f: &dyn Fn(&Tensor) -> Tensor| {
        let v = Var::from_tensor(&qkv).unwrap();
        let out = f(v.as_tensor());
        let g = (&out * &r).unwrap().sum_all().unwrap().backward().unwrap();
        (out, g.get(v.as_tensor()).unwrap().clone())
    };
    let (o1, g1) = run(&|x| attention(x, heads).unwrap());
    let (o2, g2) = run(&|x| attention_reference(x, heads).unwrap());
    (rel_l2(&o1, &o2), rel_l2(&g1, &g2))
}

#[test]
fn f32_matches_the_composition() {
    for &(n, t, heads, hd) in &[(2, 70, 3, 5), (1, 64, 2, 8), (3, 5, 1, 7), (2, 129, 6, 16)] {
        let (o, g) = compare(n, t, heads, hd, DType::F32);
        eprintln!("f32 ({n}, {t}, {heads}x{hd}): output {o:.2e}, gradient {g:.2e}");
        assert!(
            o < 2e-6,
            "output rel-L2 {o:e} at {n}x{t}, {heads} heads of {hd}"
        );
        assert!(
            g < 2e-5,
            "gradient rel-L2 {g:e} at {n}x{t}, {heads} heads of {hd}"
        );
    }
}

#[test]
fn f64_matches_the_composition() {
    for &(n, t, heads, hd) in &[(2, 67, 3, 5), (1, 1, 1, 3)] {
        let (o, g) = compare(n, t, heads, hd, DType::F64);
        eprintln!("f64 ({n}, {t}, {heads}x{hd}): output {o:.2e}, gradient {g:.2e}");
        assert!(o < 1e-13, "output rel-L2 {o:e}");
        assert!(g < 1e-12, "gradient rel-L2 {g:e}");
    }
}

#[test]
fn rejects_a_width_that_does_not_split_into_heads() {
    let x = Tensor::zeros((1, 4, 3 * 10), DType::F32, &Device::Cpu).unwrap();
    assert!(attention(&x, 3).is_err());
}
