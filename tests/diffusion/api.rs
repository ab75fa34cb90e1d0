//! Behaviour of the diffusion API that the model, trainer and CLI rely on:
//! gradients through the loss, guidance limits, batch-independent noise,
//! respacing errors and the checkpointed configuration.

use crate::support::compare::nan_max;
use candle_core::{DType, Device, Tensor, Var};
use dit::diffusion::guidance::double_batch;
use dit::diffusion::{
    ClassifierFreeGuidance, DiffusionConfig, DiffusionError, GaussianDiffusion, GuidanceChannels,
    LossType, NoiseSchedule, NoiseSource, SampleOptions, Sampler, VarianceType,
};
use dit::Result;

fn dit_diffusion() -> GaussianDiffusion {
    GaussianDiffusion::new(&DiffusionConfig::default()).unwrap()
}

fn seeded(seed: u64, shape: &[usize]) -> Tensor {
    NoiseSource::new(seed, 0, shape[0])
        .draw(shape, DType::F64, &Device::Cpu)
        .unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn default_config_is_dits_and_round_trips_through_json() {
    let config = DiffusionConfig::default();
    assert_eq!(config.schedule, NoiseSchedule::Linear);
    assert_eq!(config.num_timesteps, 1000);
    assert_eq!(config.variance, VarianceType::LearnedRange);
    assert_eq!(config.loss, LossType::Mse);
    assert!(config.learn_sigma());
    let fixed = DiffusionConfig {
        variance: VarianceType::FixedLarge,
        ..config.clone()
    };
    assert!(!fixed.learn_sigma());
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(
        serde_json::from_str::<DiffusionConfig>(&json).unwrap(),
        config
    );
    assert!(json.contains("\"learned_range\""), "{json}");
    assert_eq!(
        GaussianDiffusion::new(&DiffusionConfig {
            num_timesteps: 1,
            ..config
        })
        .unwrap_err(),
        DiffusionError::TooFewTimesteps(1)
    );
}

#[test]
fn bad_respacing_specs_are_rejected_with_the_spec_and_the_reason() {
    let d = dit_diffusion();
    for (spec, reason) in [
        ("", "is not a step count"),
        ("abc", "is not a step count"),
        ("10,x", "is not a step count"),
        ("ddim", "is not a step count"),
        ("0", "must be positive"),
        ("1", "fewer than 2"),
        ("2000", "cannot take 2000"),
        ("10,600", "cannot take 600"),
        ("ddim999", "no integer stride"),
    ] {
        let err = d.respace(spec).unwrap_err().to_string();
        assert!(
            err.contains(&format!("\"{spec}\"")) && err.contains(reason),
            "{spec}: {err}"
        );
    }
}

#[test]
fn the_model_sees_original_timesteps() {
    let spaced = dit_diffusion().respace("ddim25").unwrap();
    let t = Tensor::new(&[0u32, 1, 24], &Device::Cpu).unwrap();
    let shown = spaced.model_timesteps(&t).unwrap();
    assert_eq!(shown.dtype(), DType::F32);
    assert_eq!(shown.to_vec1::<f32>().unwrap(), vec![0.0, 40.0, 960.0]);
    let out_of_range = Tensor::new(&[25u32], &Device::Cpu).unwrap();
    assert!(spaced.model_timesteps(&out_of_range).is_err());
}

#[test]
fn loss_gradient_reaches_both_eps_and_variance_channels() {
    let d = dit_diffusion();
    let shape = [3, 2, 4, 4];
    let x0 = seeded(1, &shape).clamp(-1.0, 1.0).unwrap();
    let noise = seeded(2, &shape);
    let t = Tensor::new(&[0u32, 10, 700], &Device::Cpu).unwrap();
    let init = Tensor::cat(
        &[
            (&noise + (seeded(3, &shape) * 0.2).unwrap()).unwrap(),
            (seeded(4, &shape) * 0.3).unwrap(),
        ],
        1,
    )
    .unwrap();
    let output = Var::from_tensor(&init).unwrap();
    let loss_of = |out: &Tensor| {
        d.training_losses(|_, _| Ok(out.clone()), &x0, &t, &noise)
            .unwrap()
    };
    let terms = loss_of(output.as_tensor());
    let grads = terms.loss.mean_all().unwrap().backward().unwrap();
    let grad = grads
        .get(&output)
        .expect("gradient reaches the model output");
    let eps_grad = values(&grad.narrow(1, 0, 2).unwrap());
    let v_grad = values(&grad.narrow(1, 2, 2).unwrap());

    // ε channels: exactly the MSE gradient −2(ε − ε̂)/(N·D), because the mean
    // is detached in L_vb.
    let n_d = (shape.iter().product::<usize>()) as f64;
    let want: Vec<f64> = values(&noise)
        .iter()
        .zip(values(&init.narrow(1, 0, 2).unwrap()))
        .map(|(e, e_hat)| -2.0 * (e - e_hat) / n_d)
        .collect();
    let worst = nan_max(eps_grad.iter().zip(&want).map(|(g, w)| (g - w).abs()));
    assert!(
        worst < 1e-12,
        "ε gradient differs from the MSE one by {worst}"
    );

    // v channels: nonzero and equal to a finite difference of the mean loss.
    assert!(v_grad.iter().all(|g| g.is_finite()));
    assert!(v_grad.iter().any(|g| g.abs() > 1e-8));
    let mean_loss = |out: &Tensor| {
        loss_of(out)
            .loss
            .mean_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    // One v entry of each sample, including the t = 0 (decoder NLL) sample.
    for sample in 0..3 {
        let index = sample * 64 + 2 * 16 + 5; // (sample, channel 2, 1, 1)
        let h = 1e-6;
        let bump = |delta: f64| {
            let mut raw = values(&init);
            raw[index] += delta;
            Tensor::from_vec(raw, init.dims(), &Device::Cpu).unwrap()
        };
        let numeric = (mean_loss(&bump(h)) - mean_loss(&bump(-h))) / (2.0 * h);
        let analytic = values(grad)[index];
        println!("sample {sample}: ∂loss/∂v analytic {analytic:e}, numeric {numeric:e}");
        assert!(
            // 1e-9: round-off of a central difference with h = 1e-6 on an O(1) loss.
            (numeric - analytic).abs() <= 1e-5 * analytic.abs() + 1e-9,
            "sample {sample}: ∂loss/∂v analytic {analytic:e}, numeric {numeric:e}"
        );
    }
}

#[test]
fn loss_in_f32_agrees_with_f64() {
    let d = dit_diffusion();
    let shape = [4, 3, 2, 2];
    let x0 = seeded(5, &shape).clamp(-1.0, 1.0).unwrap();
    let noise = seeded(6, &shape);
    let out = Tensor::cat(
        &[&seeded(7, &shape), &(seeded(8, &shape) * 0.5).unwrap()],
        1,
    )
    .unwrap()
    .clamp(-1.0, 1.0)
    .unwrap();
    let t = Tensor::new(&[0u32, 3, 400, 999], &Device::Cpu).unwrap();
    let loss = |dtype: DType| {
        let cast = |x: &Tensor| x.to_dtype(dtype).unwrap();
        let o = cast(&out);
        values(
            &d.training_losses(|_, _| Ok(o), &cast(&x0), &t, &cast(&noise))
                .unwrap()
                .loss,
        )
    };
    for (a, b) in loss(DType::F32).iter().zip(loss(DType::F64)) {
        assert!((a - b).abs() <= 1e-4 * b.abs(), "f32 {a} vs f64 {b}");
    }
}

fn doubled_output() -> Tensor {
    // (2N, 2C, H, W) with C = 4 (latent-like), conditional rows then null rows.
    seeded(9, &[4, 8, 2, 2])
}

#[test]
fn guidance_scale_one_is_the_conditional_output_and_zero_the_unconditional() {
    let out = doubled_output();
    let (cond, uncond) = (out.narrow(0, 0, 2).unwrap(), out.narrow(0, 2, 2).unwrap());
    for channels in [GuidanceChannels::Official, GuidanceChannels::All] {
        let mixed_count = channels.count(4);
        for (scale, source) in [(1.0, &cond), (0.0, &uncond)] {
            let guided = ClassifierFreeGuidance::new(scale, channels)
                .combine(&out, 4)
                .unwrap();
            assert_eq!(guided.dims(), out.dims());
            for half in 0..2 {
                let rows = guided.narrow(0, 2 * half, 2).unwrap();
                // Mixed channels: exactly the chosen half.
                assert_eq!(
                    values(&rows.narrow(1, 0, mixed_count).unwrap()),
                    values(&source.narrow(1, 0, mixed_count).unwrap()),
                    "{channels:?} scale {scale}"
                );
                // Everything else, variance included, passes through per half.
                let own = out.narrow(0, 2 * half, 2).unwrap();
                let rest = 8 - mixed_count;
                assert_eq!(
                    values(&rows.narrow(1, mixed_count, rest).unwrap()),
                    values(&own.narrow(1, mixed_count, rest).unwrap())
                );
            }
        }
    }
    // In between, the guided ε moves away from the unconditional one.
    let guided = ClassifierFreeGuidance::new(4.0, GuidanceChannels::Official)
        .combine(&out, 4)
        .unwrap();
    let want = ((cond.narrow(1, 0, 3).unwrap() * 4.0).unwrap()
        - (uncond.narrow(1, 0, 3).unwrap() * 3.0).unwrap())
    .unwrap();
    let got = guided.narrow(0, 0, 2).unwrap().narrow(1, 0, 3).unwrap();
    let worst = nan_max(values(&(got - want).unwrap()).iter().map(|d| d.abs()));
    assert!(worst < 1e-12);
}

/// A toy class-conditional ε-model: linear in x with a class-dependent shift.
fn toy_model(x: &Tensor, t: &Tensor, y: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    let shift = (y.to_dtype(DType::F32)?.reshape((n, 1, 1, 1))? * 0.1)?;
    let time = (t.reshape((n, 1, 1, 1))? / 1000.0)?;
    let eps = (x.broadcast_mul(&time)? * 0.5)?.broadcast_add(&shift)?;
    let v = (x.ones_like()? * 0.25)?;
    Ok(Tensor::cat(&[&eps, &v], 1)?)
}

fn run_sampler(
    d: &GaussianDiffusion,
    sampler: Sampler,
    seed: u64,
    first_index: u64,
    batch: usize,
    model: &mut dyn FnMut(&Tensor, &Tensor) -> Result<Tensor>,
) -> Vec<f64> {
    let mut noise = NoiseSource::new(seed, first_index, batch);
    let options = SampleOptions {
        sampler,
        clip_denoised: false,
    };
    let out = d
        .sample(
            model,
            &[batch, 2, 3, 3],
            DType::F32,
            &Device::Cpu,
            &options,
            &mut noise,
            &mut |_, _| {},
        )
        .unwrap();
    values(&out)
}

#[test]
fn guided_sampling_at_scale_one_equals_conditional_sampling() {
    let d = dit_diffusion().respace("ddim10").unwrap();
    let labels = Tensor::new(&[3u32, 7], &Device::Cpu).unwrap();
    let mut conditional = |x: &Tensor, t: &Tensor| toy_model(x, t, &labels);
    let plain = run_sampler(&d, Sampler::Ddpm, 11, 0, 2, &mut conditional);
    let guidance = ClassifierFreeGuidance::new(1.0, GuidanceChannels::Official);
    let mut guided = |x: &Tensor, t: &Tensor| -> Result<Tensor> {
        let (x2, t2, y2) = double_batch(x, t, &labels, 1000)?;
        let out = guidance.combine(&toy_model(&x2, &t2, &y2)?, 2)?;
        Ok(out.narrow(0, 0, x.dim(0)?)?)
    };
    assert_eq!(run_sampler(&d, Sampler::Ddpm, 11, 0, 2, &mut guided), plain);
}

#[test]
fn noise_depends_only_on_seed_and_global_index() {
    let shape_of = |n: usize| [n, 3, 5];
    let mut whole = NoiseSource::new(42, 0, 8);
    let mut first = NoiseSource::new(42, 0, 4);
    let mut second = NoiseSource::new(42, 4, 4);
    for _ in 0..3 {
        let all = values(&whole.draw(&shape_of(8), DType::F32, &Device::Cpu).unwrap());
        let a = values(&first.draw(&shape_of(4), DType::F32, &Device::Cpu).unwrap());
        let b = values(&second.draw(&shape_of(4), DType::F32, &Device::Cpu).unwrap());
        assert_eq!(all, [a, b].concat());
    }
    let other_seed = values(
        &NoiseSource::new(43, 0, 8)
            .draw(&shape_of(8), DType::F32, &Device::Cpu)
            .unwrap(),
    );
    let same_seed = values(
        &NoiseSource::new(42, 0, 8)
            .draw(&shape_of(8), DType::F32, &Device::Cpu)
            .unwrap(),
    );
    assert_ne!(other_seed, same_seed);
    assert!(NoiseSource::new(1, 0, 2)
        .draw(&[3, 4], DType::F32, &Device::Cpu)
        .is_err());
}

#[test]
fn noise_is_standard_normal() {
    let n = 200_000;
    let x = values(&seeded(12, &[4, n / 4]));
    let mean = x.iter().sum::<f64>() / n as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let kurtosis = x.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
    // Standard errors: 1/√n, √(2/n), √(24/n).
    let n = n as f64;
    assert!(mean.abs() < 4.0 / n.sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 4.0 * (2.0 / n).sqrt(), "var {var}");
    assert!(
        (kurtosis - 3.0).abs() < 4.0 * (24.0 / n).sqrt(),
        "kurtosis {kurtosis}"
    );
}

#[test]
fn sampling_in_one_batch_equals_sampling_in_two() {
    let d = dit_diffusion().respace("10").unwrap();
    for sampler in [
        Sampler::Ddpm,
        Sampler::Ddim { eta: 0.5 },
        Sampler::DpmSolverPP2M,
    ] {
        let mut model = |x: &Tensor, t: &Tensor| {
            let labels = Tensor::full(5u32, x.dim(0)?, x.device())?;
            toy_model(x, t, &labels)
        };
        let whole = run_sampler(&d, sampler, 7, 0, 8, &mut model);
        let first = run_sampler(&d, sampler, 7, 0, 4, &mut model);
        let second = run_sampler(&d, sampler, 7, 4, 4, &mut model);
        assert_eq!(whole, [first, second].concat(), "{sampler:?}");
        let reseeded = run_sampler(&d, sampler, 8, 0, 8, &mut model);
        assert_ne!(whole, reseeded, "{sampler:?}");
    }
}

#[test]
fn clipping_keeps_the_denoised_estimate_in_range() {
    let d = dit_diffusion().respace("ddim10").unwrap();
    // A model that predicts x̂0 far outside [−1, 1].
    let mut model = |x: &Tensor, _: &Tensor| -> Result<Tensor> {
        Ok(Tensor::cat(&[&(x * -20.0)?, &x.zeros_like()?], 1)?)
    };
    let mut noise = NoiseSource::new(3, 0, 2);
    let options = SampleOptions {
        sampler: Sampler::Ddim { eta: 0.0 },
        clip_denoised: true,
    };
    let out = d
        .sample(
            &mut model,
            &[2, 2, 3, 3],
            DType::F32,
            &Device::Cpu,
            &options,
            &mut noise,
            &mut |_, _| {},
        )
        .unwrap();
    let out = values(&out);
    assert!(out.iter().all(|v| v.abs() <= 1.0 + 1e-6), "{out:?}");
    assert!(out.iter().any(|v| v.abs() > 0.99));
    assert!(!SampleOptions::default().clip_denoised);
}
