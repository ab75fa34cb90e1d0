//! The VAE against diffusers' AutoencoderKL (scripts/vae_fixtures.py) at f32:
//! posterior mean, log-variance and decoded images within relative L2 1e-5
//! and max |Δ| 1e-4, for a tiny committed model (in both attention namings)
//! and for the full sd-vae-ft-mse configuration with generated weights.

use crate::support::model as common;

use candle_core::{Device, Tensor};
use common::{assert_close, det_uniform, errors};
use dit::vae::params::param_specs;
use dit::vae::{Vae, VaeConfig};
use std::collections::HashMap;
use std::path::PathBuf;

fn vae_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vae")
        .join(name)
}

fn load_io(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(vae_fixture(name), &Device::Cpu).unwrap()
}

fn is_norm_weight(name: &str) -> bool {
    [
        "norm1.weight",
        "norm2.weight",
        "conv_norm_out.weight",
        "group_norm.weight",
    ]
    .iter()
    .any(|suffix| name.ends_with(suffix))
}

/// The fixture generator's weights: GroupNorm weights 1 + 0.1·u, other
/// weights u/√fan_in, biases 0.1·u (as `det_state_dict` in the script).
fn det_weights(config: &VaeConfig) -> HashMap<String, Tensor> {
    param_specs(config)
        .into_iter()
        .map(|spec| {
            let u = det_uniform(&spec.name, spec.numel(), 0);
            let values: Vec<f32> = if is_norm_weight(&spec.name) {
                u.iter().map(|&x| (1.0 + 0.1 * x as f64) as f32).collect()
            } else if spec.name.ends_with(".weight") {
                let fan_in: usize = spec.shape[1..].iter().product();
                let scale = 1.0 / (fan_in as f64).sqrt();
                u.iter().map(|&x| (x as f64 * scale) as f32).collect()
            } else {
                u.iter().map(|&x| (0.1 * x as f64) as f32).collect()
            };
            let t = Tensor::from_vec(values, spec.shape.as_slice(), &Device::Cpu).unwrap();
            (spec.name, t)
        })
        .collect()
}

fn check(tag: &str, vae: &Vae, io: &HashMap<String, Tensor>) {
    let posterior = vae.encode(&io["images"]).unwrap();
    assert_close(&format!("{tag} encode mean"), posterior.mean(), &io["mean"]);
    assert_close(
        &format!("{tag} encode logvar"),
        &posterior.logvar,
        &io["logvar"],
    );
    let decoded = vae.decode(&io["latents"]).unwrap();
    assert_close(&format!("{tag} decode"), &decoded, &io["decoded"]);
}

#[test]
fn tiny_diffusers_folder_matches_diffusers() {
    let vae = Vae::load(vae_fixture("tiny"), &Device::Cpu).unwrap();
    assert_eq!(vae.config().block_out_channels, [16, 32]);
    check("tiny folder", &vae, &load_io("tiny_io.safetensors"));
}

#[test]
fn tiny_weights_file_uses_the_config_beside_it() {
    let file = vae_fixture("tiny/diffusion_pytorch_model.safetensors");
    let vae = Vae::load(file, &Device::Cpu).unwrap();
    check("tiny file", &vae, &load_io("tiny_io.safetensors"));
}

#[test]
fn tiny_old_attention_names_in_f16_match_diffusers() {
    let vae = Vae::load(vae_fixture("tiny_old_names"), &Device::Cpu).unwrap();
    check("tiny old names", &vae, &load_io("tiny_io.safetensors"));
}

#[test]
fn full_sd_config_matches_diffusers() {
    let config = VaeConfig::default();
    let vae = Vae::from_tensors(config.clone(), det_weights(&config), &Device::Cpu).unwrap();
    check(
        "sd-vae-ft-mse config",
        &vae,
        &load_io("full_io.safetensors"),
    );
}

/// Timing only (no bound): `cargo test --test vae_parity -- --ignored --nocapture`.
#[test]
#[ignore]
fn time_256_encode_decode() {
    let config = VaeConfig::default();
    let vae = Vae::from_tensors(config.clone(), det_weights(&config), &Device::Cpu).unwrap();
    let images = Tensor::new(det_uniform("timing.images", 3 * 256 * 256, 0), &Device::Cpu)
        .unwrap()
        .reshape((1, 3, 256, 256))
        .unwrap();
    let latents = (Tensor::new(det_uniform("timing.latents", 4 * 32 * 32, 0), &Device::Cpu)
        .unwrap()
        .reshape((1, 4, 32, 32))
        .unwrap()
        * 3.0)
        .unwrap();
    let best = |f: &dyn Fn()| {
        f();
        (0..3)
            .map(|_| {
                let start = std::time::Instant::now();
                f();
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let encode = best(&|| {
        vae.encode(&images).unwrap();
    });
    let decode = best(&|| {
        vae.decode(&latents).unwrap();
    });
    println!("256x256 encode {encode:.3} s, decode {decode:.3} s (best of 3)");
}

/// bf16 convolutions (`--precision bf16`): encode and decode within bf16
/// rounding of the f32 network and of diffusers' f32 outputs (rel-L2 < 2e-2),
/// on the full SD configuration's fixture; the f32 network is unchanged.
#[test]
fn full_sd_config_in_bf16_stays_near_f32() {
    use crate::support::compare::within;
    let config = VaeConfig::default();
    let f32_vae = Vae::from_tensors(config.clone(), det_weights(&config), &Device::Cpu).unwrap();
    let bf16_vae = f32_vae
        .clone()
        .with_precision(dit::compute::Precision::Bf16)
        .unwrap();
    let io = load_io("full_io.safetensors");
    check(
        "sd-vae-ft-mse config (f32 after a bf16 copy)",
        &f32_vae,
        &io,
    );
    let ours = |vae: &Vae| {
        let posterior = vae.encode(&io["images"]).unwrap();
        (
            posterior.mean().clone(),
            vae.decode(&io["latents"]).unwrap(),
        )
    };
    let ((mean32, dec32), (mean16, dec16)) = (ours(&f32_vae), ours(&bf16_vae));
    for (what, bf16, f32, reference) in [
        ("encode mean", &mean16, &mean32, &io["mean"]),
        ("decode", &dec16, &dec32, &io["decoded"]),
    ] {
        let (_, own) = errors(bf16, f32);
        let (_, vs_diffusers) = errors(bf16, reference);
        eprintln!("bf16 {what}: vs dit f32 {own:.2e}, vs diffusers f32 {vs_diffusers:.2e}");
        assert!(within(own, 2e-2) && own > 0.0, "{what}: {own:e}");
        assert!(within(vs_diffusers, 2e-2), "{what}: {vs_diffusers:e}");
    }
}
