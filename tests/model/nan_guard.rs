//! The comparisons themselves: a NaN or an infinity planted in an output or
//! a gradient must make them fail (`f64::max(x, NaN)` is `x`, so folds
//! with it let an all-NaN forward pass a parity test).

use crate::support::compare::{nan_max, within};
use crate::support::model::{
    assert_close, det_tensors, errors, labels, load_io, worst_rel_l2_with_grads,
};
use candle_core::{DType, Device, Tensor};
use dit::model::{Dit, DitConfig};

/// The DiT-S/8 fixture's output and ours, which agree.
fn s8_output_and_reference() -> (Tensor, Tensor) {
    let cfg = DitConfig::preset("DiT-S/8", 16).unwrap();
    let model = Dit::from_tensors(cfg.clone(), &det_tensors(&cfg, DType::F32)).unwrap();
    let io = load_io("dit_s8_io.safetensors");
    let out = model
        .forward(&io["x"], &io["t"], &labels(&io, "y"))
        .unwrap();
    (out, io["out"].clone())
}

fn planted(t: &Tensor, at: &[usize], value: f32) -> Tensor {
    let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for &i in at {
        v[i] = value;
    }
    Tensor::from_vec(v, t.shape(), t.device()).unwrap()
}

fn comparison_fails(actual: &Tensor, expected: &Tensor) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_close("planted", actual, expected)
    }))
    .is_err()
}

#[test]
fn a_planted_nan_or_inf_fails_the_parity_comparison() {
    let (out, reference) = s8_output_and_reference();
    assert!(
        !comparison_fails(&out, &reference),
        "the clean output passes"
    );
    let n = out.elem_count();
    for (what, bad) in [
        ("one NaN", planted(&out, &[17], f32::NAN)),
        ("one +inf", planted(&out, &[n - 1], f32::INFINITY)),
        (
            "all NaN",
            planted(&out, &(0..n).collect::<Vec<_>>(), f32::NAN),
        ),
    ] {
        let (max, rel) = errors(&bad, &reference);
        assert!(
            !within(max, 1.0) && !within(rel, 1.0),
            "{what}: max |Δ| {max}, rel-L2 {rel} look finite"
        );
        assert!(comparison_fails(&bad, &reference), "{what} passed");
    }
}

#[test]
fn a_nan_gradient_fails_the_fused_op_comparison() {
    // sqrt(x²) equals |x| everywhere, but its gradient at 0 is 0·∞ = NaN.
    let x = Tensor::new(&[-1.5f64, 0.0, 2.0], &Device::Cpu).unwrap();
    let r = Tensor::ones(3, DType::F64, &Device::Cpu).unwrap();
    let worst = worst_rel_l2_with_grads(
        &[x],
        &r,
        &|xs| xs[0].sqr().unwrap().sqrt().unwrap(),
        &|xs| xs[0].abs().unwrap(),
    );
    assert!(
        worst.is_nan(),
        "worst rel-L2 {worst} hides the NaN gradient"
    );
    assert!(!within(worst, 1e-6));
}

#[test]
fn the_nan_aware_max_propagates() {
    assert!(nan_max([1.0, f64::NAN, 2.0]).is_nan());
    assert!(nan_max([f64::NAN]).is_nan());
    assert_eq!(nan_max([1.0, 3.0, 2.0]), 3.0);
    assert!(!within(f64::INFINITY, 1e9));
}
