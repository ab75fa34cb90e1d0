//! Fused LayerNorm + adaLN modulate against the composition: values and the
//! gradients of x, shift and scale, f32 and f64, odd widths and lengths, and
//! rows with a large mean (where one-pass variance would lose digits).

use candle_core::{DType, Device, Tensor};
use dit::ops::{layer_norm_modulate, layer_norm_modulate_reference};

use crate::support::model as common;

/// Worst rel-L2 over the output and the three gradients.
fn compare(n: usize, t: usize, d: usize, offset: f64, dtype: DType) -> f64 {
    let seed = std::cell::Cell::new(0);
    let rnd = |shape: &[usize], s: f64| {
        seed.set(seed.get() + 1);
        crate::support::random::normal(seed.get(), shape, 0.0, s, dtype)
    };
    let x = (rnd(&[n, t, d], 2.0) + offset).unwrap();
    let (shift, scale, r) = (rnd(&[n, d], 1.0), rnd(&[n, d], 1.0), rnd(&[n, t, d], 1.0));
    common::worst_rel_l2_with_grads(
        &[x, shift, scale],
        &r,
        &|t| layer_norm_modulate(t[0], t[1], t[2], 1e-6).unwrap(),
        &|t| layer_norm_modulate_reference(t[0], t[1], t[2], 1e-6).unwrap(),
    )
}

#[test]
fn f32_matches_the_composition() {
    for &(n, t, d, off) in &[
        (3, 7, 13, 0.0),
        (2, 65, 33, 0.0),
        (1, 1, 5, 0.0),
        (2, 9, 384, 30.0),
    ] {
        let e = compare(n, t, d, off, DType::F32);
        eprintln!("f32 ({n}, {t}, {d}) offset {off}: {e:.2e}");
        assert!(e < 2e-5, "rel-L2 {e:e} at ({n}, {t}, {d}), offset {off}");
    }
}

#[test]
fn f64_matches_the_composition() {
    for &(n, t, d) in &[(3, 7, 13), (2, 17, 64)] {
        let e = compare(n, t, d, 1.0, DType::F64);
        eprintln!("f64 ({n}, {t}, {d}): {e:.2e}");
        assert!(e < 1e-12, "rel-L2 {e:e} at ({n}, {t}, {d})");
    }
}

#[test]
fn rejects_mismatched_modulation() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 4), DType::F32, &dev).unwrap();
    let m = Tensor::zeros((2, 5), DType::F32, &dev).unwrap();
    assert!(layer_norm_modulate(&x, &m, &m, 1e-6).is_err());
}
