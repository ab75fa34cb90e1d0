//! Seeded random tensors, so that every test draws the same numbers on every
//! run (candle's `Tensor::randn` on the CPU draws from an unseeded generator).

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// N(mean, std²) values of `shape` in `dtype`, from `seed`.
pub fn normal(seed: u64, shape: &[usize], mean: f64, std: f64, dtype: DType) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            mean + std * z
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// Uniform values in [lo, hi) of `shape` in `dtype`, from `seed`.
pub fn uniform(seed: u64, shape: &[usize], lo: f64, hi: f64, dtype: DType) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.gen_range(lo..hi)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}
