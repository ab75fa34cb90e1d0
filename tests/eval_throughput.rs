//! Inception throughput (images/s), the Rust side of bench/inception_throughput.py.
//! Ignored by default (it measures, it does not check):
//!
//!     RAYON_NUM_THREADS=2 cargo test --release --test eval_throughput -- --ignored --nocapture
//!
//! Settings via EVAL_BENCH_BATCH (16) and EVAL_BENCH_BATCHES (4).

mod eval_support;

use candle_core::{DType, Device, Tensor};
use dit::eval::InceptionV3;
use std::time::Instant;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn inception_images_per_second() {
    let Some(pt) = eval_support::torchscript_weights() else {
        return;
    };
    let batch = env_usize("EVAL_BENCH_BATCH", 16);
    let batches = env_usize("EVAL_BENCH_BATCHES", 4);
    let net = InceptionV3::load(&pt, &Device::Cpu).unwrap();
    let x = Tensor::rand(-1f32, 0.99f32, (batch, 3, 299, 299), &Device::Cpu).unwrap();
    assert_eq!(x.dtype(), DType::F32);
    net.forward(&x).unwrap(); // warm-up
    let start = Instant::now();
    for _ in 0..batches {
        let y = net.forward(&x).unwrap();
        assert_eq!(y.dims(), [batch, 2048]);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = batch * batches;
    println!(
        "rust/candle: {:.2} images/s (batch {batch}, {} threads, {n} images in {elapsed:.2} s)",
        n as f64 / elapsed,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into()),
    );
}
