//! Fused `x + gate·(h + b)` against the composition: values and the
//! gradients of x, h, b and gate, f32 and f64, odd sizes.

use candle_core::{DType, Device, Tensor};
use dit::ops::{gated_residual, gated_residual_reference};

use crate::support::model as common;

fn compare(n: usize, t: usize, d: usize, dtype: DType) -> f64 {
    let seed = std::cell::Cell::new(0);
    let rnd = |shape: &[usize]| {
        seed.set(seed.get() + 1);
        crate::support::random::normal(seed.get(), shape, 0.0, 1.0, dtype)
    };
    let inputs = [rnd(&[n, t, d]), rnd(&[n, t, d]), rnd(&[d]), rnd(&[n, d])];
    let r = rnd(&[n, t, d]);
    common::worst_rel_l2_with_grads(
        &inputs,
        &r,
        &|t| gated_residual(t[0], t[1], t[2], t[3]).unwrap(),
        &|t| gated_residual_reference(t[0], t[1], t[2], t[3]).unwrap(),
    )
}

#[test]
fn f32_matches_the_composition() {
    for &(n, t, d) in &[(3, 7, 13), (2, 65, 33), (1, 1, 1), (8, 16, 384)] {
        let e = compare(n, t, d, DType::F32);
        eprintln!("f32 ({n}, {t}, {d}): {e:.2e}");
        assert!(e < 1e-6, "rel-L2 {e:e} at ({n}, {t}, {d})");
    }
}

#[test]
fn f64_matches_the_composition() {
    let e = compare(3, 11, 17, DType::F64);
    eprintln!("f64: {e:.2e}");
    assert!(e < 1e-14, "rel-L2 {e:e}");
}

#[test]
fn rejects_mismatched_shapes() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 4), DType::F32, &dev).unwrap();
    let b = Tensor::zeros(5, DType::F32, &dev).unwrap();
    let g = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
    assert!(gated_residual(&x, &x, &b, &g).is_err());
}
