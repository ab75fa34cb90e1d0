//! The error measures every numeric claim is stated in, written so that a
//! NaN or an infinity anywhere makes them fail: `f64::max(x, NaN)` is `x`,
//! so a fold with it would let an all-NaN output pass.

use candle_core::{DType, Device, Tensor};
use dit::train::TrainCheckpoint;
use std::path::Path;

/// The larger of `a` and `b`, or NaN if either is NaN (unlike `f64::max`).
pub fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// The largest of `values`, or NaN if any is NaN (0 for none).
pub fn nan_max(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().fold(0.0, max_nan)
}

/// max |a − b| (NaN when either side holds a NaN, ∞ when only one is infinite).
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    nan_max(a.iter().zip(b).map(|(x, y)| (x - y).abs()))
}

/// ‖a − b‖ / ‖b‖ (NaN or ∞ propagate).
pub fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

/// A tensor's values as f64.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// (max |Δ|, relative L2 = ‖a − b‖ / ‖b‖), computed in f64.
pub fn tensor_errors(actual: &Tensor, expected: &Tensor) -> (f64, f64) {
    assert_eq!(actual.dims(), expected.dims(), "shape mismatch");
    let (a, b) = (values(actual), values(expected));
    (max_abs_diff(&a, &b), rel_l2(&a, &b))
}

/// Whether `err` is a finite number no larger than `tol` (NaN and ∞ are not).
pub fn within(err: f64, tol: f64) -> bool {
    err.is_finite() && err <= tol
}

/// The worst relative L2 difference over every tensor of two checkpoints
/// (model, EMA and AdamW moments), and the number of tensors compared.
pub fn checkpoint_difference(a: &Path, b: &Path) -> (f64, usize) {
    let (a, b) = (
        TrainCheckpoint::load(a, &Device::Cpu).unwrap(),
        TrainCheckpoint::load(b, &Device::Cpu).unwrap(),
    );
    assert_eq!(a.state, b.state, "step, data position and settings");
    let mut worst = 0.0f64;
    let mut count = 0;
    for (group_a, group_b) in [
        (&a.params, &b.params),
        (&a.ema, &b.ema),
        (&a.optimizer, &b.optimizer),
    ] {
        assert_eq!(group_a.len(), group_b.len());
        for (name, ta) in group_a {
            let (x, y) = (values(ta), values(&group_b[name]));
            // Zero tensors (an untouched bias's moments) compare exactly.
            let err = if y.iter().all(|v| *v == 0.0) {
                max_abs_diff(&x, &y)
            } else {
                rel_l2(&x, &y)
            };
            worst = max_nan(worst, err);
            count += 1;
        }
    }
    (worst, count)
}
