use candle_core::{DType, Device, Tensor, Var};
use dit::model::{Dit, DitConfig};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("DiT-S/2");
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let cfg = DitConfig::preset(name, 32)?;
    let dev = Device::Cpu;
    let tensors = dit::model::params::initial_tensors(&cfg, 0, &dev, DType::F32)?;
    let mut vars = Vec::new();
    let mut map = std::collections::HashMap::new();
    for (k, t) in tensors {
        // random non-zero weights so that all paths compute
        let t = if k == "pos_embed" { t } else { (Tensor::randn(0f32, 0.02, t.dims(), &dev)? + t)? };
        if k == "pos_embed" { map.insert(k, t); } else { let v = Var::from_tensor(&t)?; map.insert(k, v.as_tensor().clone()); vars.push(v); }
    }
    let model = Dit::from_tensors(cfg.clone(), &map)?;
    let x = Tensor::randn(0f32, 1.0, (batch, 4, 32, 32), &dev)?;
    let t = Tensor::new(vec![500f32; batch], &dev)?;
    let y = Tensor::new(vec![3u32; batch], &dev)?;
    for _ in 0..2 { model.forward(&x, &t, &y)?; }
    let n = 5;
    let s = Instant::now();
    for _ in 0..n { let _ = model.forward(&x.detach(), &t, &y)?; }
    let fwd = s.elapsed().as_secs_f64() / n as f64;
    let s = Instant::now();
    for _ in 0..n { let out = model.forward(&x, &t, &y)?; let g = out.sqr()?.mean_all()?.backward()?; drop(g); }
    let fb = s.elapsed().as_secs_f64() / n as f64;
    println!("{name} batch {batch}: forward {:.1} ms, forward+backward {:.1} ms", fwd * 1e3, fb * 1e3);
    Ok(())
}
