//! Posterior sampling and the latent scaling convention.

use candle_core::{Device, Tensor};
use dit::vae::{Posterior, Vae};
use std::path::PathBuf;

fn tiny_vae() -> Vae {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae/tiny");
    Vae::load(dir, &Device::Cpu).unwrap()
}

fn images() -> Tensor {
    let io = candle_core::safetensors::load(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae/tiny_io.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    io["images"].clone()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn sampling_is_deterministic_for_a_seed() {
    let posterior = tiny_vae().encode(&images()).unwrap();
    let a = values(&posterior.sample_seeded(7).unwrap());
    let b = values(&posterior.sample_seeded(7).unwrap());
    let c = values(&posterior.sample_seeded(8).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, values(posterior.mean()));
}

#[test]
fn samples_are_mean_plus_std_times_standard_normal() {
    // 2·4·64·64 elements with a spread of means and log-variances.
    let n = 2 * 4 * 64 * 64;
    let mean: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
    let logvar: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
    let moments = Tensor::cat(
        &[
            Tensor::from_vec(mean, (2, 4, 64, 64), &Device::Cpu).unwrap(),
            Tensor::from_vec(logvar, (2, 4, 64, 64), &Device::Cpu).unwrap(),
        ],
        1,
    )
    .unwrap();
    let posterior = Posterior::from_moments(&moments).unwrap();
    let sample = posterior.sample_seeded(0).unwrap();
    let eps = ((sample - posterior.mean()).unwrap() / posterior.std().unwrap()).unwrap();
    let eps = values(&eps);
    let m = eps.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let var = eps.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n as f64;
    // 32768 draws: the sample mean's s.d. is 0.0055, the variance's 0.0078.
    assert!(m.abs() < 0.03, "noise mean {m}");
    assert!((var - 1.0).abs() < 0.04, "noise variance {var}");
}

#[test]
fn logvar_is_clamped_like_diffusers() {
    let moments = Tensor::new(&[0f32, 0.0, -100.0, 100.0], &Device::Cpu)
        .unwrap()
        .reshape((1, 4, 1, 1))
        .unwrap();
    let posterior = Posterior::from_moments(&moments).unwrap();
    assert_eq!(values(&posterior.logvar), [-30.0, 20.0]);
}

#[test]
fn latent_scaling_multiplies_on_the_encoder_side() {
    let vae = tiny_vae();
    assert_eq!(vae.scaling_factor(), 0.18215);
    let z = vae.encode(&images()).unwrap().mean;
    let scaled = vae.to_latent(&z).unwrap();
    for (s, r) in values(&scaled).iter().zip(values(&z)) {
        assert_eq!(*s, r * 0.18215f32);
    }
    let back = values(&vae.from_latent(&scaled).unwrap());
    for (b, r) in back.iter().zip(values(&z)) {
        assert!((b - r).abs() <= 1e-6 * r.abs().max(1.0), "{b} vs {r}");
    }
}
