//! Configuration, intervals, draws, hooks and errors.

use candle_core::{DType, Device, Tensor};

use crate::transport::oracle_support::{values, GaussianData};
use dit::diffusion::NoiseSource;
use dit::transport::{
    DiffusionForm, Hooks, Interpolant, LastStep, LossWeight, Objective, ObjectiveConfig, OdeConfig,
    OdeMethod, Phase, Prediction, SamplerConfig, SdeConfig, Transport, TransportConfig,
};

fn config(path: Interpolant, prediction: Prediction) -> TransportConfig {
    TransportConfig {
        interpolant: path,
        prediction,
        ..TransportConfig::default()
    }
}

/// The intervals of SiT's `check_interval` with `create_transport`'s
/// default ε, written out by hand from the official code's rules.
#[test]
fn intervals_follow_sit() {
    use DiffusionForm::{Sbdm, Sigma};
    use Interpolant::{Gvp, Linear, Vp};
    use Prediction::{Noise, Score, Velocity};
    let sde = |diffusion, last_step_size| Phase::Sde {
        diffusion,
        last_step_size,
    };
    let table: Vec<(Interpolant, Prediction, Phase, (f64, f64))> = vec![
        (Linear, Velocity, Phase::Train, (0.0, 1.0)),
        (Linear, Velocity, Phase::Ode, (0.0, 1.0)),
        (Linear, Velocity, sde(Sigma, 0.04), (0.0, 0.96)),
        (Linear, Velocity, sde(Sigma, 0.0), (0.0, 1.0)),
        (Linear, Velocity, sde(Sbdm, 0.04), (0.0, 0.96)),
        (Gvp, Velocity, Phase::Ode, (0.0, 1.0)),
        (Linear, Noise, Phase::Train, (1e-3, 1.0 - 1e-3)),
        (Linear, Score, Phase::Ode, (1e-3, 1.0 - 1e-3)),
        (Gvp, Noise, sde(Sigma, 0.04), (1e-3, 0.96)),
        (Gvp, Score, sde(Sigma, 0.0), (1e-3, 1.0 - 1e-3)),
        (Vp, Velocity, Phase::Train, (0.0, 1.0 - 1e-5)),
        (Vp, Noise, Phase::Ode, (0.0, 1.0 - 1e-3)),
        (Vp, Score, sde(Sbdm, 0.04), (0.0, 0.96)),
        (Vp, Velocity, sde(Sigma, 0.0), (0.0, 1.0 - 1e-3)),
    ];
    for (path, prediction, phase, want) in table {
        let got = config(path, prediction).interval(phase);
        assert_eq!(got, want, "{path:?} {prediction:?} {phase:?}");
    }
    // An explicit ε is used as given (SBDM starts at ε for a velocity model).
    let explicit = TransportConfig {
        sample_eps: Some(0.01),
        ..config(Linear, Velocity)
    };
    assert_eq!(explicit.interval(sde(Sbdm, 0.04)), (0.01, 0.96));
    assert_eq!(explicit.interval(Phase::Ode), (0.0, 1.0));
}

#[test]
fn configs_round_trip_through_json_and_names() {
    let sit = ObjectiveConfig::Sit(TransportConfig {
        interpolant: Interpolant::Gvp,
        prediction: Prediction::Score,
        loss_weight: LossWeight::Likelihood,
        train_eps: Some(1e-4),
        sample_eps: None,
    });
    let json = serde_json::to_string(&sit).unwrap();
    assert_eq!(
        json,
        r#"{"kind":"sit","interpolant":"gvp","prediction":"score","loss_weight":"likelihood","train_eps":0.0001,"sample_eps":null}"#
    );
    assert_eq!(serde_json::from_str::<ObjectiveConfig>(&json).unwrap(), sit);
    let minimal: ObjectiveConfig =
        serde_json::from_str(r#"{"kind":"sit","interpolant":"linear","prediction":"velocity"}"#)
            .unwrap();
    assert_eq!(minimal, ObjectiveConfig::Sit(TransportConfig::default()));
    let ddpm = ObjectiveConfig::default();
    let back: ObjectiveConfig =
        serde_json::from_str(&serde_json::to_string(&ddpm).unwrap()).unwrap();
    assert_eq!(back, ddpm);

    for sampler in [
        SamplerConfig::default(),
        SamplerConfig::Sde(SdeConfig::default()),
    ] {
        let json = serde_json::to_string(&sampler).unwrap();
        assert_eq!(
            serde_json::from_str::<SamplerConfig>(&json).unwrap(),
            sampler,
            "{json}"
        );
    }

    assert_eq!("GVP".parse::<Interpolant>().unwrap(), Interpolant::Gvp);
    assert_eq!("noise".parse::<Prediction>().unwrap(), Prediction::Noise);
    assert_eq!(
        "likelihood".parse::<LossWeight>().unwrap(),
        LossWeight::Likelihood
    );
    assert_eq!(
        "increasing-decreasing".parse::<DiffusionForm>().unwrap(),
        DiffusionForm::IncreasingDecreasing
    );
    assert_eq!(
        "SBDM".parse::<DiffusionForm>().unwrap(),
        DiffusionForm::Sbdm
    );
    assert_eq!("Tweedie".parse::<LastStep>().unwrap(), LastStep::Tweedie);
    let err = "cosine".parse::<Interpolant>().unwrap_err().to_string();
    assert!(
        err.contains("\"cosine\"") && err.contains("linear, gvp, vp"),
        "{err}"
    );
}

#[test]
fn bad_configs_are_refused() {
    let weighted_velocity = TransportConfig {
        loss_weight: LossWeight::Velocity,
        ..TransportConfig::default()
    };
    let err = Transport::new(weighted_velocity).unwrap_err().to_string();
    assert!(err.contains("score or noise"), "{err}");
    let bad_eps = TransportConfig {
        train_eps: Some(-1e-3),
        ..config(Interpolant::Linear, Prediction::Noise)
    };
    let err = Transport::new(bad_eps).unwrap_err().to_string();
    assert!(err.contains("train ε"), "{err}");
    assert!(matches!(
        Objective::new(&ObjectiveConfig::Sit(TransportConfig::default())).unwrap(),
        Objective::Sit(_)
    ));
}

/// A model whose output turns to NaN after t = 0.5 stops the sampler with an
/// error naming the step's time instead of returning NaN samples.
#[test]
fn non_finite_steps_stop_with_the_time() {
    let tr = Transport::new(TransportConfig::default()).unwrap();
    let nan_after_half = |x: &Tensor, t: &Tensor| -> dit::Result<Tensor> {
        let late = values(t).iter().any(|&t| t > 0.5);
        Ok(if late {
            (x.zeros_like()? / 0.0)?
        } else {
            x.zeros_like()?
        })
    };
    for (sampler, want) in [
        (
            SamplerConfig::Ode(OdeConfig {
                method: OdeMethod::Euler,
                num_steps: 11,
                ..OdeConfig::default()
            }),
            "t = 0.6",
        ),
        (
            SamplerConfig::Sde(SdeConfig {
                num_steps: 11,
                ..SdeConfig::default()
            }),
            "t = 0.576",
        ),
        (SamplerConfig::default(), "dopri5"),
    ] {
        let mut model = nan_after_half;
        let mut noise = NoiseSource::new(0, 0, 2);
        let err = tr
            .sample(
                &mut model,
                &[2, 3],
                &Device::Cpu,
                &sampler,
                &mut noise,
                Hooks::default(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(want) && err.contains("non-finite"),
            "{sampler:?}: {err}"
        );
    }
    // SBDM is infinite at t = 0 on Linear: refused at once with a reason.
    let mut model = |x: &Tensor, _: &Tensor| x.zeros_like().map_err(Into::into);
    let sampler = SamplerConfig::Sde(SdeConfig {
        diffusion: DiffusionForm::Sbdm,
        num_steps: 11,
        ..SdeConfig::default()
    });
    let err = tr
        .sample(
            &mut model,
            &[2, 3],
            &Device::Cpu,
            &sampler,
            &mut NoiseSource::new(0, 0, 2),
            Hooks::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("t = 0") && err.contains("sample ε"), "{err}");
}

/// Progress counts every step; the preview's first estimate, at t = 0 where
/// x_t carries no information about the data, is E[x1] = μ.
#[test]
fn hooks_report_progress_and_data_estimates() {
    let data = GaussianData::standard();
    let tr = Transport::new(TransportConfig::default()).unwrap();
    for (sampler, total) in [
        (
            SamplerConfig::Ode(OdeConfig {
                method: OdeMethod::Heun,
                num_steps: 6,
                ..OdeConfig::default()
            }),
            5,
        ),
        (
            SamplerConfig::Sde(SdeConfig {
                last_step: LastStep::Tweedie,
                num_steps: 6,
                ..SdeConfig::default()
            }),
            6,
        ),
        (SamplerConfig::default(), 1000),
    ] {
        let mut progress = vec![];
        let mut previews: Vec<(f64, Vec<f64>)> = vec![];
        let mut calls = 0;
        let mut model = crate::transport::oracle_support::oracle(
            &data,
            Interpolant::Linear,
            Prediction::Velocity,
            &mut calls,
        );
        let mut noise = NoiseSource::new(1, 0, 16);
        let mut on_progress = |done, total| -> dit::Result<()> {
            progress.push((done, total));
            Ok(())
        };
        let mut on_preview = |t: f64, x1: &Tensor| previews.push((t, values(x1)));
        let sampled = tr
            .sample(
                &mut model,
                &[16, data.dims()],
                &Device::Cpu,
                &sampler,
                &mut noise,
                Hooks {
                    progress: Some(&mut on_progress),
                    preview: Some(&mut on_preview),
                },
            )
            .unwrap();
        assert_eq!(progress.last(), Some(&(total, total)), "{sampler:?}");
        assert!(
            progress.windows(2).all(|w| w[0].0 <= w[1].0),
            "{progress:?}"
        );
        let (t, first) = &previews[0];
        assert_eq!(*t, 0.0);
        for (i, v) in first.iter().enumerate() {
            let mu = data.mean[i % data.dims()];
            assert!(
                (v - mu).abs() < 1e-5,
                "{sampler:?}: x̂1 at t = 0 is {v}, μ = {mu}"
            );
        }
        // The last estimate is close to the final samples.
        let last = &previews.last().unwrap().1;
        let x = values(&sampled.x);
        let gap = last.iter().zip(&x).fold(0.0, |a, (p, x)| {
            crate::transport::oracle_support::nan_max(a, (p - x).abs())
        });
        assert!(
            gap.is_finite() && gap < 0.5,
            "{sampler:?}: last preview {gap} from the samples"
        );
    }
}

/// Training times lie in the training interval, come from (seed, step)
/// alone and are spread uniformly; the noise is standard normal.
#[test]
fn training_draws_follow_seed_and_step() {
    let tr = Transport::new(config(Interpolant::Linear, Prediction::Noise)).unwrap();
    let shape = [4096, 2, 2];
    let a = tr.draw(5, 10, &shape, &Device::Cpu).unwrap();
    let b = tr.draw(5, 10, &shape, &Device::Cpu).unwrap();
    let c = tr.draw(5, 11, &shape, &Device::Cpu).unwrap();
    assert_eq!(a.t.dtype(), DType::F32);
    assert_eq!(values(&a.t), values(&b.t));
    assert_eq!(values(&a.noise), values(&b.noise));
    assert_ne!(values(&a.t), values(&c.t));
    assert_ne!(values(&a.noise), values(&c.noise));
    let t = values(&a.t);
    assert!(
        t.iter().all(|&t| (1e-3..=1.0 - 1e-3).contains(&t)),
        "t outside [ε, 1 − ε]"
    );
    let n = t.len() as f64;
    let mean = t.iter().sum::<f64>() / n;
    // U[ε, 1 − ε] has mean 0.5 and sd ≈ 0.2887.
    assert!(
        (mean - 0.5).abs() < 4.0 * 0.2887 / n.sqrt(),
        "mean t = {mean}"
    );
    let z = values(&a.noise);
    let zm = z.iter().sum::<f64>() / z.len() as f64;
    let zv = z.iter().map(|v| (v - zm).powi(2)).sum::<f64>() / z.len() as f64;
    assert!(
        zm.abs() < 0.02 && (zv - 1.0).abs() < 0.03,
        "noise mean {zm} var {zv}"
    );
}
