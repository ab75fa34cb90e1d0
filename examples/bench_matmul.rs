//! Throughput of the matrix products behind the DiT layers: dit's f32
//! product and its bf16 kernels, on the shapes of a DiT-S/2 / DiT-B
//! training step (tokens × in → out), for `bench/matmul.py`.
//!
//! RAYON_NUM_THREADS=2 cargo run --release --example bench_matmul

use dit::ops::bf16::{self, Bf16Kernel};
use dit::ops::matmul::{matmul, Operand, Threads};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (m, n, k, what): `x (m×k) · Wᵀ (k×n)`.
const SHAPES: &[(usize, usize, usize, &str)] = &[
    (2048, 1152, 384, "S/2 qkv"),
    (2048, 1536, 384, "S/2 fc1"),
    (2048, 384, 1536, "S/2 fc2"),
    (512, 2304, 768, "B/4 qkv"),
    (512, 3072, 768, "B/4 fc1"),
    (512, 768, 3072, "B/4 fc2"),
    (512, 4608, 1152, "XL/2 fc1 (b2)"),
    (512, 1152, 4608, "XL/2 fc2 (b2)"),
];

/// CPU time (user + system) of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// (GFLOP/s of wall time, best of 3; GFLOP per CPU-second over all runs):
/// the second is what a loaded machine distorts least.
fn time_gflops(flops: f64, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut best = f64::INFINITY;
    let (cpu0, mut count) = (cpu_seconds(), 0);
    let start = Instant::now();
    while count < 15 || start.elapsed().as_secs_f64() < 1.0 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        count += 1;
    }
    let cpu = cpu_seconds() - cpu0;
    (flops / best / 1e9, flops * count as f64 / cpu / 1e9)
}

fn main() {
    dit::ops::runtime::init();
    let kernels = Bf16Kernel::all_available();
    println!(
        "# {} threads; bf16 kernels here: {:?}",
        rayon::current_num_threads(),
        kernels
    );
    let only_ops = std::env::args().any(|a| a == "--ops");
    for &(m, n, k, what) in SHAPES.iter().filter(|_| !only_ops) {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i % 89) as f32 - 44.0) / 89.0)
            .collect();
        let mut y = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let (lhs, rhs) = (
            Operand::new(x.as_ptr(), k, 1),
            Operand::new(w.as_ptr(), 1, k),
        );
        let f32_rate = time_gflops(flops, || unsafe {
            matmul(
                (m, n, k),
                y.as_mut_ptr(),
                n,
                false,
                lhs,
                rhs,
                1.0,
                Threads::Pool,
            )
        });
        let mut line = format!(
            "{what:>14} {m:>5}x{n:>5}x{k:>5}  f32 {:5.0} ({:4.0}/cpu-s)",
            f32_rate.0, f32_rate.1
        );
        for &kernel in &kernels {
            let rate = time_gflops(flops, || unsafe {
                bf16::matmul_with(
                    kernel,
                    (m, n, k),
                    y.as_mut_ptr(),
                    n,
                    false,
                    lhs,
                    rhs,
                    1.0,
                    Threads::Pool,
                )
            });
            line += &format!("  {} {:5.0} ({:4.0}/cpu-s)", kernel.name(), rate.0, rate.1);
        }
        println!("{line}  GFLOP/s");
    }
    attention_times();
}

/// Milliseconds per call of `f` (median of 7, after one warm-up).
fn time_ms(mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[3]
}

/// The fused attention of a DiT-S/2 b8 block (T = 256, 6 heads of 64),
/// forward and forward + backward, in both precisions.
fn attention_times() {
    use candle_core::{Device, Tensor, Var};
    use dit::compute::Precision;
    let qkv = Tensor::randn(0f32, 1.0, (8, 256, 3 * 384), &Device::Cpu).unwrap();
    let var = Var::from_tensor(&qkv).unwrap();
    for precision in [Precision::F32, Precision::Bf16] {
        let fwd = time_ms(|| {
            dit::ops::attention_in(precision, &qkv, 6).unwrap();
        });
        let both = time_ms(|| {
            let out = dit::ops::attention_in(precision, var.as_tensor(), 6).unwrap();
            out.sum_all().unwrap().backward().unwrap();
        });
        println!(
            "attention S/2 b8 {precision}: forward {fwd:.1} ms, forward + backward {both:.1} ms"
        );
    }
}
