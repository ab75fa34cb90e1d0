//! Samplers driven by the exact model of Gaussian data.
//!
//! For x1 ~ N(μ, diag(s²)) and x0 ~ N(0, I), x_t = α·x1 + σ·x0 is
//! N(α·μ, V_t) with V_t = α²s² + σ², so the velocity, score and noise are
//! affine in x (see `support::GaussianData`). Every step of every sampler is
//! then affine in x plus independent Gaussian noise, so the exact mean and
//! variance of what a fixed-step sampler outputs, discretisation error
//! included, follow by propagating two numbers per dimension through the
//! scheme's formulas. Each run is checked twice:
//! * the samples against those exact moments, within sampling error alone
//!   (|z| ≤ 4.5 per dimension and ≤ 4 pooled over the 8 dimensions);
//! * the exact moments against the data (μ, s²): the discretisation bias,
//!   printed, within a stated allowance.
//!
//! Deterministic ODE solvers are also compared sample by sample with the
//! exact flow x(t1) = m(t1) + √(V(t1)/V(t0))·(z − m(t0)).

use candle_core::{DType, Device, Tensor};

use crate::transport::oracle_support::{diffusion_at, moments, nan_max, oracle, GaussianData};
use dit::diffusion::NoiseSource;
use dit::transport::{
    DiffusionForm, Hooks, Interpolant, LastStep, OdeConfig, OdeMethod, Phase, Prediction, Sampled,
    SamplerConfig, SdeConfig, SdeMethod, Transport, TransportConfig,
};

const SAMPLES: usize = 4096;
const Z_PER_DIM: f64 = 4.5;
const Z_POOLED: f64 = 4.0;

fn transport(path: Interpolant, prediction: Prediction, sample_eps: Option<f64>) -> Transport {
    Transport::new(TransportConfig {
        interpolant: path,
        prediction,
        sample_eps,
        ..TransportConfig::default()
    })
    .unwrap()
}

fn ode(method: OdeMethod, num_steps: usize) -> SamplerConfig {
    SamplerConfig::Ode(OdeConfig {
        method,
        num_steps,
        ..OdeConfig::default()
    })
}

fn sde(
    method: SdeMethod,
    diffusion: DiffusionForm,
    last_step: LastStep,
    num_steps: usize,
) -> SamplerConfig {
    SamplerConfig::Sde(SdeConfig {
        method,
        diffusion,
        last_step,
        num_steps,
        ..SdeConfig::default()
    })
}

/// Samples `n` rows from noise streams `first..first + n` of `seed`.
pub fn run(
    tr: &Transport,
    data: &GaussianData,
    sampler: &SamplerConfig,
    seed: u64,
    first: u64,
    n: usize,
    dtype: DType,
) -> dit::Result<(Sampled, Tensor)> {
    let mut calls = 0;
    let (path, prediction) = (tr.config().interpolant, tr.config().prediction);
    let mut model = oracle(data, path, prediction, &mut calls);
    let mut noise = NoiseSource::new(seed, first, n);
    let x0 = noise.draw(&[n, data.dims()], dtype, &Device::Cpu)?;
    let sampled = tr.sample_from(
        &mut model,
        x0.clone(),
        sampler,
        &mut noise,
        Hooks::default(),
    )?;
    drop(model);
    assert_eq!(sampled.nfe, calls, "reported NFE vs model calls");
    Ok((sampled, x0))
}

/// The exact per-dimension mean and variance of a fixed-step sampler's
/// output from x0 ~ N(0, 1), by propagating them through its steps.
fn propagated_moments(
    tr: &Transport,
    data: &GaussianData,
    sampler: &SamplerConfig,
) -> (Vec<f64>, Vec<f64>) {
    let path = tr.config().interpolant;
    let mut means = vec![];
    let mut vars = vec![];
    for j in 0..data.dims() {
        let (mut m, mut v) = (0.0, 1.0);
        // x ↦ c·x + e applied to N(m, v).
        let affine = |c: f64, e: f64, m: &mut f64, v: &mut f64| {
            *m = c * *m + e;
            *v *= c * c;
        };
        // One Heun step of the drift (w(t), w(t + h)) as x ↦ c·x + e.
        let heun = |t: f64, h: f64, w1: f64, w2: f64| {
            let (a1, b1) = data.drift(path, t, w1, j);
            let (a2, b2) = data.drift(path, t + h, w2, j);
            (
                1.0 + 0.5 * h * (a1 + a2 + h * a2 * a1),
                0.5 * h * (b1 + b2 + h * a2 * b1),
            )
        };
        match sampler {
            SamplerConfig::Ode(cfg) => {
                let (t0, t1) = tr.config().interval(Phase::Ode);
                let steps = cfg.num_steps - 1;
                let h = (t1 - t0) / steps as f64;
                for k in 0..steps {
                    let t = t0 + k as f64 * h;
                    let (c, e) = match cfg.method {
                        OdeMethod::Euler => {
                            let (a, b) = data.drift(path, t, 0.0, j);
                            (1.0 + h * a, h * b)
                        }
                        OdeMethod::Heun => heun(t, h, 0.0, 0.0),
                        OdeMethod::Dopri5 => panic!("dopri5 has no fixed steps"),
                    };
                    affine(c, e, &mut m, &mut v);
                }
            }
            SamplerConfig::Sde(cfg) => {
                let size = cfg.effective_last_step_size();
                let (t0, t1) = tr.config().interval(Phase::Sde {
                    diffusion: cfg.diffusion,
                    last_step_size: size,
                });
                let steps = cfg.num_steps - 1;
                let dt = (t1 - t0) / steps as f64;
                let w = |t: f64| diffusion_at(cfg.diffusion, path, t, cfg.diffusion_norm);
                for k in 0..steps {
                    let t = t0 + k as f64 * dt;
                    let spread = 2.0 * w(t) * dt;
                    match cfg.method {
                        SdeMethod::Euler => {
                            let (a, b) = data.drift(path, t, w(t), j);
                            affine(1.0 + dt * a, dt * b, &mut m, &mut v);
                            v += spread;
                        }
                        SdeMethod::Heun => {
                            v += spread;
                            let (c, e) = heun(t, dt, w(t), w(t + dt));
                            affine(c, e, &mut m, &mut v);
                        }
                    }
                }
                let (c, e) = match cfg.last_step {
                    LastStep::None => (1.0, 0.0),
                    LastStep::Mean => {
                        let (a, b) = data.drift(path, t1, w(t1), j);
                        (1.0 + size * a, size * b)
                    }
                    LastStep::Euler => {
                        let (a, b) = data.drift(path, t1, 0.0, j);
                        (1.0 + size * a, size * b)
                    }
                    LastStep::Tweedie => data.tweedie(path, t1, j),
                };
                affine(c, e, &mut m, &mut v);
            }
        }
        means.push(m);
        vars.push(v);
    }
    (means, vars)
}

/// Largest |z| per dimension and pooled, of the sample means and variances
/// against `mean`, `var` (Gaussian samples: SE(var) = var·√(2/(N−1))).
fn z_scores(x: &Tensor, mean: &[f64], var: &[f64]) -> (f64, f64) {
    let (m, v) = moments(x);
    let n = x.dim(0).unwrap() as f64;
    let d = mean.len();
    let zm: Vec<f64> = (0..d)
        .map(|j| (m[j] - mean[j]) / (var[j] / n).sqrt())
        .collect();
    let zv: Vec<f64> = (0..d)
        .map(|j| (v[j] - var[j]) / (var[j] * (2.0 / (n - 1.0)).sqrt()))
        .collect();
    let per_dim = zm.iter().chain(&zv).fold(0.0, |a, z| nan_max(a, z.abs()));
    let pooled = nan_max(
        (zm.iter().sum::<f64>() / (d as f64).sqrt()).abs(),
        (zv.iter().sum::<f64>() / (d as f64).sqrt()).abs(),
    );
    (per_dim, pooled)
}

/// Bias of `mean`, `var` against the data: max |m − μ| and max |var/s² − 1|.
fn bias(data: &GaussianData, mean: &[f64], var: &[f64]) -> (f64, f64) {
    let d = data.dims();
    let bm = (0..d).fold(0.0, |a, j| nan_max(a, (mean[j] - data.mean[j]).abs()));
    let bv = (0..d).fold(0.0, |a, j| {
        nan_max(a, (var[j] / data.std[j].powi(2) - 1.0).abs())
    });
    (bm, bv)
}

struct Case {
    path: Interpolant,
    prediction: Prediction,
    sample_eps: Option<f64>,
    sampler: SamplerConfig,
    /// Allowed discretisation bias: |mean − μ| and |var/s² − 1|.
    allowance: (f64, f64),
}

fn check_case(case: &Case, seed: u64) {
    let data = GaussianData::standard();
    let tr = transport(case.path, case.prediction, case.sample_eps);
    let (sampled, _) = run(&tr, &data, &case.sampler, seed, 0, SAMPLES, DType::F32).unwrap();
    let (mean, var) = propagated_moments(&tr, &data, &case.sampler);
    let (z_dim, z_pool) = z_scores(&sampled.x, &mean, &var);
    let (bm, bv) = bias(&data, &mean, &var);
    let what = format!("{:?} {:?} {:?}", case.path, case.prediction, case.sampler);
    println!(
        "{what}: NFE {}, bias |Δmean| {bm:.2e} |Δvar/s²| {bv:.2e}; samples vs exact moments \
         max|z| {z_dim:.2} pooled {z_pool:.2}",
        sampled.nfe
    );
    assert!(
        z_dim.is_finite() && z_dim <= Z_PER_DIM,
        "{what}: per-dim |z| = {z_dim}"
    );
    assert!(
        z_pool.is_finite() && z_pool <= Z_POOLED,
        "{what}: pooled |z| = {z_pool}"
    );
    let (am, av) = case.allowance;
    assert!(bm.is_finite() && bm <= am, "{what}: mean bias {bm} > {am}");
    assert!(
        bv.is_finite() && bv <= av,
        "{what}: variance bias {bv} > {av}"
    );
}

/// (path, prediction, sample ε, sampler, allowance).
type CaseRow = (
    Interpolant,
    Prediction,
    Option<f64>,
    SamplerConfig,
    (f64, f64),
);

fn cases(list: Vec<CaseRow>) {
    for (i, (path, prediction, sample_eps, sampler, allowance)) in list.into_iter().enumerate() {
        let case = Case {
            path,
            prediction,
            sample_eps,
            sampler,
            allowance,
        };
        check_case(&case, 100 + i as u64);
    }
}

use DiffusionForm as F;
use Interpolant::{Gvp, Linear, Vp};
use LastStep as L;
use Prediction::{Noise, Score, Velocity};

// The allowances are the exact biases of each scheme on this data (from
// `propagated_moments`, printed by the tests) rounded up. The mean biases of
// VP (≈ 0.02) come from its t = 0 marginal not being N(0, I) (α(0) ≈ 0.0066)
// and of the score and noise models (≈ 0.004) from the cut-off [1e-3, 1 − 1e-3].
// The SDEs' variance biases come mostly from the last step over 0.04, and are
// largest where w is large there (constant w: 30 %) or steps are coarse for w
// (VP with SBDM: w = β/2 up to 10).

#[test]
fn fixed_step_odes_recover_the_data() {
    let euler = ode(OdeMethod::Euler, 101);
    let heun = ode(OdeMethod::Heun, 26);
    cases(vec![
        (Linear, Velocity, None, euler, (1e-3, 0.04)),
        (Linear, Velocity, None, heun, (1e-3, 2e-3)),
        (Gvp, Velocity, None, heun, (2e-3, 4e-3)),
        (Vp, Velocity, None, heun, (0.025, 0.015)),
        (Linear, Noise, None, heun, (5e-3, 2e-3)),
        (Linear, Score, None, euler, (5e-3, 0.04)),
        (Gvp, Score, None, heun, (5e-3, 4e-3)),
        (Vp, Noise, None, euler, (0.03, 0.015)),
    ]);
}

#[test]
fn euler_maruyama_recovers_the_data_for_every_diffusion_form() {
    let em = |form, last| sde(SdeMethod::Euler, form, last, 101);
    cases(vec![
        (
            Linear,
            Velocity,
            None,
            em(F::Constant, L::Mean),
            (1e-3, 0.35),
        ),
        (
            Linear,
            Velocity,
            Some(1e-3),
            em(F::Sbdm, L::Mean),
            (1e-3, 0.03),
        ),
        (Linear, Velocity, None, em(F::Sigma, L::Mean), (1e-3, 0.035)),
        (
            Linear,
            Velocity,
            None,
            em(F::Linear, L::Mean),
            (1e-3, 0.035),
        ),
        (
            Linear,
            Velocity,
            None,
            em(F::Decreasing, L::Mean),
            (1e-3, 0.03),
        ),
        (
            Linear,
            Velocity,
            None,
            em(F::IncreasingDecreasing, L::Mean),
            (1e-3, 0.025),
        ),
    ]);
}

#[test]
fn euler_maruyama_last_steps_and_predictions_recover_the_data() {
    let em = |form, last| sde(SdeMethod::Euler, form, last, 101);
    cases(vec![
        (Linear, Velocity, None, em(F::Sigma, L::None), (1e-3, 0.025)),
        (
            Linear,
            Velocity,
            None,
            em(F::Sigma, L::Tweedie),
            (1e-3, 0.025),
        ),
        (
            Linear,
            Velocity,
            None,
            em(F::Sigma, L::Euler),
            (1e-3, 0.025),
        ),
        (Gvp, Velocity, None, em(F::Sigma, L::Mean), (0.02, 0.04)),
        (Vp, Velocity, None, em(F::Sbdm, L::Mean), (0.035, 0.2)),
        (Linear, Noise, None, em(F::Sigma, L::Mean), (2e-3, 0.035)),
        (Linear, Score, None, em(F::Sigma, L::Tweedie), (2e-3, 0.025)),
        (Vp, Noise, None, em(F::Constant, L::Euler), (0.025, 0.035)),
    ]);
}

#[test]
fn stochastic_heun_recovers_the_data() {
    let heun = |form, last| sde(SdeMethod::Heun, form, last, 51);
    cases(vec![
        (
            Linear,
            Velocity,
            None,
            heun(F::Sigma, L::Mean),
            (1e-3, 0.03),
        ),
        (
            Gvp,
            Velocity,
            None,
            heun(F::Decreasing, L::Tweedie),
            (1e-3, 0.015),
        ),
        (Vp, Score, None, heun(F::Sbdm, L::Mean), (0.025, 0.25)),
    ]);
}
