//! Against the float64 numpy reference of scripts/transport_fixtures.py.
//!
//! The library runs on f64 tensors here, so the tolerances measure the
//! formulas, not f32 rounding: max |Δ|/max(1, |ref|) ≤ 1e-11 and
//! rel-L2 ≤ 1e-12 unless stated. One f32 check bounds the training loss
//! as the trainer computes it.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::transport::oracle_support::{assert_close, discrepancy, values, Worst};
use dit::transport::{
    DiffusionForm, Interpolant, LossWeight, Prediction, TrainingDraws, Transport, TransportConfig,
};

const SCALED_TOL: f64 = 1e-11;
const REL_L2_TOL: f64 = 1e-12;

fn reference() -> &'static HashMap<String, Tensor> {
    static FIXTURE: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/transport/reference.safetensors"
        );
        candle_core::safetensors::load(path, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{path}: {e} (run scripts/transport_fixtures.py)"))
    })
}

fn get(key: &str) -> &'static Tensor {
    reference()
        .get(key)
        .unwrap_or_else(|| panic!("fixture has no {key}"))
}

fn name(path: Interpolant) -> &'static str {
    match path {
        Interpolant::Linear => "linear",
        Interpolant::Gvp => "gvp",
        Interpolant::Vp => "vp",
    }
}

fn form_name(form: DiffusionForm) -> &'static str {
    match form {
        DiffusionForm::Constant => "constant",
        DiffusionForm::Sbdm => "sbdm",
        DiffusionForm::Sigma => "sigma",
        DiffusionForm::Linear => "linear",
        DiffusionForm::Decreasing => "decreasing",
        DiffusionForm::IncreasingDecreasing => "increasing_decreasing",
    }
}

fn prediction_key(p: Prediction) -> &'static str {
    match p {
        Prediction::Velocity => "velocity",
        Prediction::Score => "score",
        Prediction::Noise => "noise",
    }
}

fn transport(path: Interpolant, prediction: Prediction, loss_weight: LossWeight) -> Transport {
    Transport::new(TransportConfig {
        interpolant: path,
        prediction,
        loss_weight,
        ..TransportConfig::default()
    })
    .unwrap()
}

#[test]
fn path_coefficients_match_reference() {
    let mut worst = Worst::default();
    for path in Interpolant::ALL {
        let p = name(path);
        let ts = values(get(&format!("{p}.coef.t")));
        let cs: Vec<_> = ts.iter().map(|&t| path.at(t)).collect();
        let field = |f: fn(&dit::transport::PathCoefficients) -> f64| -> Vec<f64> {
            cs.iter().map(f).collect()
        };
        for (key, got) in [
            ("alpha", field(|c| c.alpha)),
            ("sigma", field(|c| c.sigma)),
            ("d_alpha", field(|c| c.d_alpha)),
            ("d_sigma", field(|c| c.d_sigma)),
        ] {
            let want = values(get(&format!("{p}.coef.{key}")));
            worst.add(assert_close(
                &format!("{p} {key}"),
                &got,
                &want,
                SCALED_TOL,
                REL_L2_TOL,
            ));
        }
        let ts = values(get(&format!("{p}.t")));
        let got: Vec<f64> = ts.iter().map(|&t| path.at(t).drift_variance).collect();
        let want = values(get(&format!("{p}.drift_variance")));
        worst.add(assert_close(
            &format!("{p} drift variance"),
            &got,
            &want,
            SCALED_TOL,
            REL_L2_TOL,
        ));
    }
    worst.report("path_coefficients_match_reference");
}

#[test]
fn interpolation_and_velocity_target_match_reference() {
    let mut worst = Worst::default();
    for path in Interpolant::ALL {
        let p = name(path);
        let t = get(&format!("{p}.t"));
        let (x_t, u_t) = path
            .interpolate(t, get(&format!("{p}.x0")), get(&format!("{p}.x1")))
            .unwrap();
        let want_x = values(get(&format!("{p}.x_t")));
        let want_u = values(get(&format!("{p}.velocity")));
        worst.add(assert_close(
            &format!("{p} x_t"),
            &values(&x_t),
            &want_x,
            SCALED_TOL,
            REL_L2_TOL,
        ));
        worst.add(assert_close(
            &format!("{p} u_t"),
            &values(&u_t),
            &want_u,
            SCALED_TOL,
            REL_L2_TOL,
        ));
    }
    worst.report("interpolation_and_velocity_target_match_reference");
}

/// Every conversion maps the exact velocity, score and noise of a pair
/// (x0, x1) onto each other, and each gives back x1 as the data estimate.
#[test]
fn conversions_match_reference() {
    let mut worst = Worst::default();
    for path in Interpolant::ALL {
        let p = name(path);
        let t = get(&format!("{p}.t"));
        let x_t = get(&format!("{p}.x_t"));
        let x1 = values(get(&format!("{p}.x1")));
        for from in Prediction::ALL {
            let out = get(&format!("{p}.{}", prediction_key(from)));
            for to in Prediction::ALL {
                let got = path.convert(from, to, x_t, out, t).unwrap();
                let want = values(get(&format!("{p}.{}", prediction_key(to))));
                let what = format!("{p} {from:?} → {to:?}");
                worst.add(assert_close(
                    &what,
                    &values(&got),
                    &want,
                    SCALED_TOL,
                    REL_L2_TOL,
                ));
            }
            let got = path.data_estimate(from, x_t, out, t).unwrap();
            let what = format!("{p} data estimate from {from:?}");
            worst.add(assert_close(
                &what,
                &values(&got),
                &x1,
                SCALED_TOL,
                REL_L2_TOL,
            ));
        }
    }
    worst.report("conversions_match_reference");
}

#[test]
fn sde_diffusion_and_drift_match_reference() {
    let mut worst = Worst::default();
    for path in Interpolant::ALL {
        let p = name(path);
        let t = get(&format!("{p}.t"));
        let ts = values(t);
        let x_t = get(&format!("{p}.x_t"));
        for form in DiffusionForm::ALL {
            for norm in [1.0, 0.7] {
                let key = format!("{p}.sde.{}.{norm:?}", form_name(form));
                let w: Vec<f64> = ts.iter().map(|&t| form.at(&path.at(t), norm)).collect();
                let want_w = values(get(&format!("{key}.w")));
                worst.add(assert_close(
                    &format!("{key} w"),
                    &w,
                    &want_w,
                    SCALED_TOL,
                    REL_L2_TOL,
                ));
                let want = values(get(&format!("{key}.drift")));
                for prediction in Prediction::ALL {
                    let out = get(&format!("{p}.{}", prediction_key(prediction)));
                    let tr = transport(path, prediction, LossWeight::None);
                    let got = tr.sde_drift(form, norm, x_t, out, t).unwrap();
                    let what = format!("{key} drift from {prediction:?}");
                    worst.add(assert_close(
                        &what,
                        &values(&got),
                        &want,
                        SCALED_TOL,
                        REL_L2_TOL,
                    ));
                }
            }
        }
    }
    worst.report("sde_diffusion_and_drift_match_reference");
}

const LOSSES: [(Prediction, LossWeight, &str); 7] = [
    (Prediction::Velocity, LossWeight::None, "velocity.none"),
    (Prediction::Noise, LossWeight::None, "noise.none"),
    (Prediction::Noise, LossWeight::Velocity, "noise.velocity"),
    (
        Prediction::Noise,
        LossWeight::Likelihood,
        "noise.likelihood",
    ),
    (Prediction::Score, LossWeight::None, "score.none"),
    (Prediction::Score, LossWeight::Velocity, "score.velocity"),
    (
        Prediction::Score,
        LossWeight::Likelihood,
        "score.likelihood",
    ),
];

/// The loss of a model that returns the fixture's made-up output; the model
/// must be shown the reference x_t and t.
fn loss(path: Interpolant, prediction: Prediction, weight: LossWeight, dtype: DType) -> Vec<f64> {
    let p = name(path);
    let cast = |key: &str| get(&format!("{p}.{key}")).to_dtype(dtype).unwrap();
    let draws = TrainingDraws {
        t: cast("t"),
        noise: cast("x0"),
    };
    let model_out = cast("model_out");
    let want_x_t = values(&cast("x_t"));
    let tr = transport(path, prediction, weight);
    let loss = tr
        .training_loss(
            |x_t: &Tensor, t: &Tensor| {
                // f32: x_t also moves with t rounded to f32 (dσ/dt ≈ −50 at VP's 1 − 1e-5).
                let tol = if dtype == DType::F64 {
                    SCALED_TOL
                } else {
                    1e-5
                };
                let d = discrepancy(&values(x_t), &want_x_t);
                assert!(
                    d.max_scaled.is_finite() && d.max_scaled <= tol,
                    "model input x_t: {:e}",
                    d.max_scaled
                );
                assert_eq!(values(t), values(&draws.t));
                Ok(model_out.clone())
            },
            &cast("x1"),
            &draws,
        )
        .unwrap();
    assert_eq!(loss.dims(), &[draws.t.dim(0).unwrap()]);
    values(&loss)
}

#[test]
fn training_losses_match_reference() {
    let mut worst = Worst::default();
    for path in Interpolant::ALL {
        for (prediction, weight, key) in LOSSES {
            let got = loss(path, prediction, weight, DType::F64);
            let want = values(get(&format!("{}.loss.{key}", name(path))));
            let what = format!("{} {key} loss", name(path));
            worst.add(assert_close(&what, &got, &want, SCALED_TOL, REL_L2_TOL));
        }
    }
    worst.report("training_losses_match_reference");
}

/// In f32 (times rounded to f32 as the trainer's are) the unweighted losses
/// stay within max |Δ|/max(1, |ref|) ≤ 1e-5 and rel-L2 ≤ 1e-6 for t ≤ 0.99.
/// (Nearer 1, VP's dσ/dt ∝ 1/√(1−t) moves by 1e-3 relative when t = 1 − 1e-5
/// is rounded to f32, and the velocity loss with it.)
#[test]
fn f32_training_losses_match_reference() {
    let mut worst = Worst::default();
    for path in Interpolant::ALL {
        let keep = values(get(&format!("{}.t", name(path))))
            .iter()
            .filter(|&&t| t <= 0.99)
            .count();
        for (prediction, weight, key) in LOSSES {
            if weight != LossWeight::None {
                continue;
            }
            let got = &loss(path, prediction, weight, DType::F32)[..keep];
            let want = &values(get(&format!("{}.loss.{key}", name(path))))[..keep];
            let what = format!("{} {key} loss (f32)", name(path));
            worst.add(assert_close(&what, got, want, 1e-5, 1e-6));
        }
    }
    worst.report("f32_training_losses_match_reference");
}

/// A learn_sigma network's extra channels change nothing; other widths are refused.
#[test]
fn extra_output_channels_are_ignored() {
    let path = Interpolant::Gvp;
    let draws = TrainingDraws {
        t: get("gvp.t").clone(),
        noise: get("gvp.x0").clone(),
    };
    let x1 = get("gvp.x1");
    let out = get("gvp.model_out");
    let tr = transport(path, Prediction::Noise, LossWeight::Likelihood);
    let plain = tr
        .training_loss(|_, _| Ok(out.clone()), x1, &draws)
        .unwrap();
    let junk = (out.ones_like().unwrap() * 1e6).unwrap();
    let wide = Tensor::cat(&[out, &junk], 1).unwrap();
    let with_sigma = tr
        .training_loss(|_, _| Ok(wide.clone()), x1, &draws)
        .unwrap();
    assert_eq!(values(&plain), values(&with_sigma));

    let three = Tensor::cat(&[out, out, out], 1).unwrap();
    let err = tr
        .training_loss(|_, _| Ok(three.clone()), x1, &draws)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("channels") && err.contains("[12, 6, 3, 3]"),
        "{err}"
    );
}
