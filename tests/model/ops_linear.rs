//! The fused linear layer against candle's matmul + broadcast add: values
//! and the gradients of x, W and b, with and without bias, f32 and f64,
//! odd sizes and 2-D/3-D inputs.

use candle_core::{DType, Device, Tensor};
use dit::ops::{linear, linear_reference};

use crate::support::model as common;

fn compare(x_shape: &[usize], n_out: usize, with_bias: bool, dtype: DType) -> f64 {
    let k = *x_shape.last().unwrap();
    let seed = std::cell::Cell::new(0);
    let rnd = |shape: &[usize]| {
        seed.set(seed.get() + 1);
        crate::support::random::normal(seed.get(), shape, 0.0, 1.0, dtype)
    };
    let inputs = [rnd(x_shape), rnd(&[n_out, k]), rnd(&[n_out])];
    let mut out_shape = x_shape.to_vec();
    *out_shape.last_mut().unwrap() = n_out;
    let r = rnd(&out_shape);
    // Without bias the op sees (and is differentiated for) x and W only.
    let used = &inputs[..if with_bias { 3 } else { 2 }];
    common::worst_rel_l2_with_grads(
        used,
        &r,
        &|t| linear(t[0], t[1], t.get(2).copied()).unwrap(),
        &|t| linear_reference(t[0], t[1], t.get(2).copied()).unwrap(),
    )
}

#[test]
fn f32_matches_the_composition() {
    for (shape, n) in [
        (vec![3, 7, 13], 11),
        (vec![5, 33], 17),
        (vec![2, 65, 64], 192),
        (vec![1, 1], 1),
    ] {
        for bias in [true, false] {
            let e = compare(&shape, n, bias, DType::F32);
            eprintln!("f32 x {shape:?} -> {n}, bias {bias}: {e:.2e}");
            assert!(
                e < 1e-5,
                "rel-L2 {e:e} for x {shape:?}, {n} outputs, bias {bias}"
            );
        }
    }
}

#[test]
fn f64_matches_the_composition() {
    for bias in [true, false] {
        let e = compare(&[3, 9, 13], 7, bias, DType::F64);
        eprintln!("f64 bias {bias}: {e:.2e}");
        assert!(e < 1e-13, "rel-L2 {e:e}, bias {bias}");
    }
}

#[test]
fn rejects_mismatched_shapes() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 4), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((5, 4), DType::F32, &dev).unwrap();
    let b = Tensor::zeros(4, DType::F32, &dev).unwrap();
    assert!(linear(&x, &w, Some(&b)).is_err());
    assert!(linear(&x, &w.t().unwrap(), None).is_err());
}
