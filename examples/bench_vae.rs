//! The SD VAE's decode of one 32×32×4 latent to a 256×256 image (or the
//! encode of one image) in its own process, for `bench/compare.py`: median
//! wall time, CPU time per call, peak RSS. Random weights of the trained
//! network's magnitudes (fan-in scaled), as on the diffusers side.
//!
//! cargo run --release --example bench_vae -- --mode decode|encode|conv [--precision bf16]

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use dit::compute::Precision;
use dit::vae::params::param_specs;
use dit::vae::{Vae, VaeConfig};
use std::collections::HashMap;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn stat_field(path: &str, key: &str) -> Result<f64> {
    let status = std::fs::read_to_string(path)?;
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .context("no such field")?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

fn cpu_ms() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .context("stat")?
        .1
        .split_whitespace()
        .collect();
    Ok((f[11].parse::<f64>()? + f[12].parse::<f64>()?) * 10.0)
}

fn main() -> Result<()> {
    dit::ops::runtime::init();
    let (mut mode, mut precision, mut iters, mut warmup) =
        (String::from("decode"), Precision::F32, 3, 1);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => mode = value,
            "--precision" => precision = value.parse()?,
            "--iters" => iters = value.parse()?,
            "--warmup" => warmup = value.parse()?,
            // The DiT benchmark's flags, accepted so that one runner drives both.
            "--model" | "--batch" => {}
            other => bail!("unknown flag {other}"),
        }
    }
    let config = VaeConfig::default();
    let dev = Device::Cpu;
    let mut tensors = HashMap::new();
    for spec in param_specs(&config) {
        let t = if spec.name.contains("norm") && spec.name.ends_with(".weight") {
            Tensor::ones(spec.shape.as_slice(), candle_core::DType::F32, &dev)?
        } else if spec.name.ends_with(".weight") {
            let fan_in: usize = spec.shape[1..].iter().product();
            Tensor::randn(
                0f32,
                1.0 / (fan_in as f32).sqrt(),
                spec.shape.as_slice(),
                &dev,
            )?
        } else {
            Tensor::zeros(spec.shape.as_slice(), candle_core::DType::F32, &dev)?
        };
        tensors.insert(spec.name, t);
    }
    let vae = Vae::from_tensors(config, tensors, &dev)?.with_precision(precision)?;
    let latents = Tensor::randn(0f32, 1.0, (1, 4, 32, 32), &dev)?;
    let images = Tensor::rand(-1f32, 1.0, (1, 3, 256, 256), &dev)?;
    // One of the decoder's widest 3×3 convolutions alone: 128 → 128 channels at 256².
    let conv_weight = Tensor::randn(0f32, 1.0 / 1152f32.sqrt(), (128, 128, 3, 3), &dev)?;
    let conv = dit::vae::conv::Conv3x3::new_in(
        precision,
        conv_weight,
        Tensor::zeros(128, candle_core::DType::F32, &dev)?,
    )?;
    let activations = Tensor::randn(0f32, 1.0, (1, 128, 256, 256), &dev)?;
    let call = || -> Result<()> {
        match mode.as_str() {
            "decode" => drop(vae.decode(&latents)?),
            "encode" => drop(vae.encode(&images)?),
            "conv" => drop(candle_core::Module::forward(&conv, &activations)?),
            other => bail!("--mode is decode, encode or conv, not {other}"),
        }
        Ok(())
    };
    for _ in 0..warmup {
        call()?;
    }
    let cpu0 = cpu_ms()?;
    let mut times = Vec::new();
    for _ in 0..iters {
        let start = Instant::now();
        call()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (cpu_ms()? - cpu0) / iters as f64;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{{\"side\": \"dit\", \"model\": \"SD-VAE\", \"mode\": \"{}\", \"precision\": \"{precision}\", \
         \"bf16_kernel\": \"{}\", \"median_ms\": {:.1}, \"cpu_ms\": {cpu:.1}, \"times_ms\": {:?}, \
         \"peak_rss_mib\": {:.0}}}",
        mode,
        dit::ops::bf16::kernel().name(),
        sorted[sorted.len() / 2],
        times.iter().map(|t| (t * 10.0).round() / 10.0).collect::<Vec<_>>(),
        stat_field("/proc/self/status", "VmHWM:")? / 1024.0
    );
    Ok(())
}
