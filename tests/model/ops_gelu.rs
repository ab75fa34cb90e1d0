//! Fused GELU-tanh against candle's composition: values and gradients over
//! a range that covers both tails, f32 and f64, odd lengths.

use candle_core::{DType, Device, Tensor, Var};
use dit::ops::{gelu_tanh, gelu_tanh_reference};

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn compare(dtype: DType, len: usize) -> (f64, f64) {
    let dev = Device::Cpu;
    let x = Tensor::arange(0u32, len as u32, &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    // Evenly from −12 to 12, plus a random part so values are not on a grid.
    let x = ((x * (24.0 / len as f64)).unwrap() - 12.0).unwrap();
    let x = (x + crate::support::random::uniform(1, &[len], 0.0, 0.01, DType::F64))
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let r = crate::support::random::normal(2, &[len], 0.0, 1.0, dtype);
    let run = |f: &dyn Fn(&Tensor) -> Tensor| {
        let v = Var::from_tensor(&x).unwrap();
        let y = f(v.as_tensor());
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        (y, g.get(v.as_tensor()).unwrap().clone())
    };
    let (y1, g1) = run(&|x| gelu_tanh(x).unwrap());
    let (y2, g2) = run(&|x| gelu_tanh_reference(x).unwrap());
    (max_abs(&y1, &y2), max_abs(&g1, &g2))
}

#[test]
fn f32_matches_the_composition() {
    let (y, g) = compare(DType::F32, 10_007);
    eprintln!("f32: value {y:.2e}, gradient {g:.2e}");
    assert!(y < 5e-6, "value max error {y:e}");
    assert!(g < 2e-5, "gradient max error {g:e}");
}

#[test]
fn f64_values_match_and_the_derivative_is_exact() {
    // candle's backward of gelu uses constants rounded to 6 digits (errors
    // near 1e-6), so the f64 gradient is checked by central differences.
    let (y, _) = compare(DType::F64, 1001);
    assert!(y < 1e-13, "value max error {y:e}");
    let dev = Device::Cpu;
    let x = ((Tensor::arange(0f64, 1001.0, &dev).unwrap() * 0.024).unwrap() - 12.0).unwrap();
    let v = Var::from_tensor(&x).unwrap();
    let g = gelu_tanh(v.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = g.get(v.as_tensor()).unwrap().clone();
    let h = 1e-5;
    let fd = ((gelu_tanh_reference(&(&x + h).unwrap()).unwrap()
        - gelu_tanh_reference(&(&x - h).unwrap()).unwrap())
    .unwrap()
        / (2.0 * h))
        .unwrap();
    let err = max_abs(&g, &fd);
    eprintln!("f64: value {y:.2e}, gradient vs finite differences {err:.2e}");
    assert!(err < 1e-9, "gradient vs finite differences: {err:e}");
}
