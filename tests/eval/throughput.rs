//! Inception throughput (images/s), the Rust side of bench/inception_throughput.py.
//! Ignored by default (it measures, it does not check):
//!
//!     RAYON_NUM_THREADS=2 cargo test --release --test eval_throughput -- --ignored --nocapture
//!
//! Settings via EVAL_BENCH_BATCH (16) and EVAL_BENCH_BATCHES (4).

use crate::support::eval as eval_support;

use candle_core::{DType, Device};
use dit::eval::InceptionV3;
use std::time::Instant;

/// User + system CPU seconds of this process (Linux), to compare with
/// `time.process_time()` on the PyTorch side: on a shared machine the wall
/// clock mostly measures the other tenants.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // Linux reports them in USER_HZ, 100 on every mainstream configuration.
    (ticks(11) + ticks(12)) / 100.0
}

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
    let x = crate::support::random::uniform(0, &[batch, 3, 299, 299], -1.0, 0.99, DType::F32);
    assert_eq!(x.dtype(), DType::F32);
    net.forward(&x).unwrap(); // warm-up
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    for _ in 0..batches {
        let y = net.forward(&x).unwrap();
        assert_eq!(y.dims(), [batch, 2048]);
    }
    let (elapsed, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu_start);
    let n = batch * batches;
    println!(
        "rust/candle: {:.2} images/s (batch {batch}, {} threads, {n} images in {elapsed:.2} s; \
         {:.3} CPU-s/image; load average {})",
        n as f64 / elapsed,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into()),
        cpu / n as f64,
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split(' ').next().unwrap_or("?").to_string())
            .unwrap_or_else(|_| "?".into()),
    );
}
