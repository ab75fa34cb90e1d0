//! One benchmark case of the `dit` model in its own process, for
//! `bench/compare.py`: median wall time of a sampling forward or a full
//! training step (forward, diffusion loss, backward, AdamW), then peak RSS.
//!
//! cargo run --release --example bench_dit -- --model DiT-S/2 --batch 8 --mode train [--precision bf16] [--split N]
//!
//! `--split N` computes the batch as N parts at once (`dit train/sample
//! --batch-split`; default: one part per thread, as `dit` does). With more
//! than one part, candle's elementwise ops run inline as in `dit train`,
//! unless `BENCH_CANDLE_POOL` is set (to measure candle's own pool).

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use dit::compute::Precision;
use dit::diffusion::{DiffusionConfig, GaussianDiffusion};
use dit::dist::{sum_grads, BatchSplit};
use dit::model::{Dit, DitConfig};
use dit::train::{AdamW, AdamWConfig};
use std::collections::HashMap;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    model: String,
    batch: usize,
    train: bool,
    warmup: usize,
    iters: usize,
    precision: Precision,
    /// Training steps: the batch computed as this many parts at once
    /// (`dit train --batch-split`; by default as `dit train` does).
    split: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        model: "DiT-S/2".into(),
        batch: 8,
        train: false,
        warmup: 2,
        iters: 5,
        precision: Precision::F32,
        split: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => a.model = value,
            "--batch" => a.batch = value.parse()?,
            "--mode" => {
                a.train = match value.as_str() {
                    "train" => true,
                    "forward" => false,
                    other => bail!("--mode is forward or train, not {other}"),
                }
            }
            "--warmup" => a.warmup = value.parse()?,
            "--iters" => a.iters = value.parse()?,
            "--precision" => a.precision = value.parse()?,
            "--split" => a.split = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// Peak resident set size of this process (VmHWM), in MiB.
fn peak_rss_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?;
    Ok(kib / 1024.0)
}

/// CPU time (user + system) of this process so far, in ms.
fn cpu_ms() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them, in clock ticks (100 per second on Linux).
    let rest = stat
        .rsplit_once(')')
        .context("malformed /proc/self/stat")?
        .1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks * 10.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    dit::ops::runtime::init();
    let mut args = parse_args()?;
    if args.split == 0 {
        args.split = BatchSplit::default_parts(&Device::Cpu, args.batch);
    }
    if args.split > 1 && std::env::var_os("BENCH_CANDLE_POOL").is_none() {
        dit::ops::runtime::inline_elementwise_ops();
    }
    let split = BatchSplit::sharing_threads(args.split)?;
    let cfg = DitConfig::preset(&args.model, 32)?;
    let dev = Device::Cpu;
    let n = args.batch;
    // Random weights of the size of PyTorch's default init (not adaLN-zero,
    // so that every branch computes real values), made one tensor at a time
    // as PyTorch's side does; pos_embed is left to the model to compute.
    let mut tensors = HashMap::new();
    let mut params = Vec::new();
    for spec in dit::model::params::param_specs(&cfg) {
        if !spec.trainable {
            continue;
        }
        let fan_in: usize = spec.shape[1..].iter().product();
        let std = if spec.shape.len() > 1 {
            1.0 / (fan_in as f64).sqrt()
        } else {
            0.02
        };
        let t = Tensor::randn(0f32, std as f32, spec.shape.as_slice(), &dev)?;
        if args.train {
            let v = Var::from_tensor(&t)?;
            tensors.insert(spec.name.clone(), v.as_tensor().clone());
            params.push((spec.name, v));
        } else {
            tensors.insert(spec.name, t);
        }
    }
    let model = Dit::from_tensors(cfg.clone(), &tensors)?.with_precision(args.precision);
    let x = Tensor::randn(0f32, 1.0, (n, 4, 32, 32), &dev)?;
    let noise = Tensor::randn(0f32, 1.0, (n, 4, 32, 32), &dev)?;
    let t_idx: Vec<u32> = (0..n).map(|i| ((i * 997 + 13) % 1000) as u32).collect();
    let t_idx = Tensor::from_vec(t_idx, n, &dev)?;
    let y: Vec<u32> = (0..n).map(|i| ((i * 131) % 1000) as u32).collect();
    let y = Tensor::from_vec(y, n, &dev)?;
    let diffusion = GaussianDiffusion::new(&DiffusionConfig::default())?;
    let mut opt = AdamW::new(params.clone(), AdamWConfig::default())?;

    let mut step = || -> Result<()> {
        if args.train {
            let parts = split.run(n, |part| {
                let slice = |t: &Tensor| t.narrow(0, part.start, part.len());
                let y = slice(&y)?;
                let terms = diffusion.training_losses(
                    |xt, tt| model.forward(xt, tt, &y),
                    &slice(&x)?,
                    &slice(&t_idx)?,
                    &slice(&noise)?,
                )?;
                Ok((terms.loss.sum_all()? / n as f64)?.backward()?)
            })?;
            opt.step(&sum_grads(parts, &params)?)?;
        } else {
            let t = diffusion.model_timesteps(&t_idx)?;
            let parts = split.run(n, |part| {
                let slice = |a: &Tensor| a.narrow(0, part.start, part.len());
                model.forward(&slice(&x)?, &slice(&t)?, &slice(&y)?)
            })?;
            let out = Tensor::cat(&parts, 0)?;
            out.flatten_all()?.get(0)?.to_scalar::<f32>()?;
        }
        Ok(())
    };
    for _ in 0..args.warmup {
        step()?;
    }
    let mut times = Vec::with_capacity(args.iters);
    let cpu_start = cpu_ms()?;
    for _ in 0..args.iters {
        let start = Instant::now();
        step()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let cpu_per_step = (cpu_ms()? - cpu_start) / args.iters as f64;
    println!(
        "{{\"side\": \"dit\", \"model\": \"{}\", \"batch\": {}, \"mode\": \"{}\", \"precision\": \"{}\", \"bf16_kernel\": \"{}\", \"batch_parts\": {}, \"median_ms\": {:.1}, \"cpu_ms\": {:.1}, \"times_ms\": {:?}, \"peak_rss_mib\": {:.0}}}",
        args.model,
        n,
        if args.train { "train" } else { "forward" },
        args.precision,
        dit::ops::bf16::kernel().name(),
        args.split,
        median(times.clone()),
        cpu_per_step,
        times.iter().map(|t| (t * 10.0).round() / 10.0).collect::<Vec<_>>(),
        peak_rss_mib()?
    );
    Ok(())
}
