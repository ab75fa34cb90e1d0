//! The library in ten lines: load a DiT checkpoint and the SD-VAE, sample four
//! ImageNet classes with classifier-free guidance (the official sample.py's
//! 250 DDPM steps at scale 4), decode, and save a grid.
//!
//! cargo run --release --example guided_sampling -- DiT-XL-2-256x256.pt sd-vae-ft-mse/

use dit::sample::{ClassChoice, SampleJob, SampleSettings};
use dit::{model::Dit, transport::ObjectiveConfig, vae::Vae};

fn main() -> dit::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (ckpt, vae_dir) = (args.get(1).expect("checkpoint"), args.get(2).expect("VAE"));
    let device = candle_core::Device::Cpu;
    let (model, vae) = (Dit::load(ckpt, &device)?, Vae::load(vae_dir, &device)?);
    let job = SampleJob {
        model: &model,
        vae: Some(&vae),
        objective: ObjectiveConfig::default(), // DiT's diffusion
        settings: SampleSettings::default(),   // 250 DDPM steps, guidance 4.0
        classes: ClassChoice::Cycle(vec![207, 360, 387, 974]),
        indices: 0..4,
        batch_size: 4,
    };
    job.run(&mut |_, _| {})?
        .save_grid("samples.png".as_ref(), 2)
}
