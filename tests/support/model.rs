//! Helpers of the model tests: the fixture generator's weights, fixture
//! loading, running the binary, and the parity measures.

use super::compare::within;
use candle_core::{DType, Device, Tensor, Var};
use dit::model::params::param_specs;
use dit::model::DitConfig;
use std::collections::HashMap;
use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/model")
        .join(name)
}

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF29CE484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001B3)
    })
}

/// Same stream as `det_uniform` in scripts/model_fixtures.py: values in [-1, 1).
pub fn det_uniform(name: &str, n: usize, salt: u64) -> Vec<f32> {
    let seed = fnv1a64(name) ^ salt;
    (1..=n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_mul(0x9E3779B97F4A7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            z ^= z >> 31;
            ((z >> 40) as f64 / (1u64 << 23) as f64 - 1.0) as f32
        })
        .collect()
}

fn det_scale(name: &str, shape: &[usize]) -> f32 {
    if name.ends_with("embedding_table.weight") {
        0.5
    } else if name.ends_with(".weight") {
        1.0 / (shape[1..].iter().product::<usize>() as f32).sqrt()
    } else {
        0.1
    }
}

/// The generator's weights for `cfg` (without `pos_embed`, which the model computes).
pub fn det_tensors(cfg: &DitConfig, dtype: DType) -> HashMap<String, Tensor> {
    param_specs(cfg)
        .into_iter()
        .filter(|s| s.name != "pos_embed")
        .map(|s| {
            let scale = det_scale(&s.name, &s.shape);
            let v: Vec<f32> = det_uniform(&s.name, s.numel(), 0)
                .into_iter()
                .map(|x| x * scale)
                .collect();
            let t = Tensor::from_vec(v, s.shape.as_slice(), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            (s.name, t)
        })
        .collect()
}

pub fn load_io(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name), &Device::Cpu).unwrap()
}

pub fn labels(io: &HashMap<String, Tensor>, key: &str) -> Tensor {
    io[key].to_dtype(DType::U32).unwrap()
}

/// (max |Δ|, relative L2 = ‖a − b‖ / ‖b‖), computed in f64; NaN or ∞ in
/// either tensor make the result non-finite.
pub fn errors(actual: &Tensor, expected: &Tensor) -> (f64, f64) {
    super::compare::tensor_errors(actual, expected)
}

/// Runs the `dit` binary: whether it succeeded, and its stdout followed by
/// its stderr.
pub fn run_dit(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dit"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Worst relative L2 between two implementations of one differentiable op,
/// over its output and the gradient of every input: both run on the same
/// `inputs` and are back-propagated with the same cotangent `r`.
pub fn worst_rel_l2_with_grads(
    inputs: &[Tensor],
    r: &Tensor,
    fused: &dyn Fn(&[&Tensor]) -> Tensor,
    reference: &dyn Fn(&[&Tensor]) -> Tensor,
) -> f64 {
    let run = |f: &dyn Fn(&[&Tensor]) -> Tensor| {
        let vs: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let ts: Vec<&Tensor> = vs.iter().map(|v| v.as_tensor()).collect();
        let y = f(&ts);
        let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
        let grads: Vec<Tensor> = ts.iter().map(|t| g.get(t).unwrap().clone()).collect();
        (y, grads)
    };
    let (y1, g1) = run(fused);
    let (y2, g2) = run(reference);
    let grads = g1.iter().zip(&g2).map(|(a, b)| errors(a, b).1);
    super::compare::nan_max(std::iter::once(errors(&y1, &y2).1).chain(grads))
}

/// The f32 parity bar: relative L2 < 1e-5 and max |Δ| < 1e-4.
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor) {
    let (max, rel) = errors(actual, expected);
    println!("{what}: max |Δ| {max:.3e}, rel L2 {rel:.3e}");
    assert!(
        within(rel, 1e-5) && within(max, 1e-4),
        "{what}: max |Δ| {max:.3e}, rel L2 {rel:.3e} exceed 1e-4 / 1e-5"
    );
}
