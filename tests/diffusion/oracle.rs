//! End-to-end sampler checks with an exact model.
//!
//! For data x0 ~ N(μ, diag(s²)) the noised marginal is
//! x_t ~ N(√ᾱ_t μ, V_t) with V_t = ᾱ_t s² + 1 − ᾱ_t, so the MMSE noise
//! predictor is E[ε | x_t] = √(1−ᾱ_t)(x_t − √ᾱ_t μ)/V_t and the true reverse
//! conditional q(x_{t−1} | x_t) has variance V_{t−1} β_t / V_t, which the
//! learned-range model reaches with v = 2(log σ²_opt − log β̃)/(log β − log β̃) − 1.
//! Plugged in as "the model", every sampler must reproduce μ and s² up to
//! sampling error plus its own discretisation error.
//!
//! Two checks per sampler:
//! * against the exact moments of that sampler's output, discretisation
//!   error included, which `scripts/diffusion_fixtures.py` computes by
//!   propagating mean and variance through the float64 reference steps
//!   (each step is affine in x plus independent noise): within sampling
//!   error only;
//! * against the data's μ and s²: within sampling error plus the stated
//!   discretisation allowance of the sampler at that step count. DDPM is
//!   held to sampling error alone; with the optimal learned variance it is
//!   exact at any step count.

use crate::support::compare::max_nan;
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use dit::Result;
use serde_json::Value;

use dit::diffusion::{
    DiffusionConfig, GaussianDiffusion, LossType, NoiseSchedule, NoiseSource, SampleOptions,
    Sampler, VarianceType,
};

const SAMPLES: usize = 4096;
const DIMS: usize = 16;
/// z-score bounds: per dimension (16 × 2 tests per run) and for the average
/// over dimensions, which has 4× smaller standard error.
const Z_PER_DIM: f64 = 4.5;
const Z_POOLED: f64 = 4.0;

struct GaussianData {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl GaussianData {
    fn marginal_variance(&self, alpha_bar: f64, j: usize) -> f64 {
        alpha_bar * self.std[j].powi(2) + 1.0 - alpha_bar
    }
}

fn load_fixture() -> Value {
    let path = format!(
        "{}/tests/fixtures/diffusion/oracle.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn row(values: Vec<f64>) -> Tensor {
    Tensor::from_vec(values, (1, DIMS), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

/// The exact ε-predictor (and, for learned-range diffusions, the v that
/// yields the true reverse variance) for `data` under `spaced`, whose
/// training-time ᾱ come from `base`.
fn oracle_model<'a>(
    base: &'a GaussianDiffusion,
    spaced: &'a GaussianDiffusion,
    data: &'a GaussianData,
) -> impl FnMut(&Tensor, &Tensor) -> Result<Tensor> + 'a {
    let spaced_index: HashMap<usize, usize> = spaced
        .timestep_map()
        .iter()
        .enumerate()
        .map(|(k, &t)| (t, k))
        .collect();
    move |x: &Tensor, t: &Tensor| {
        let times = t.to_vec1::<f32>()?;
        let original = times[0] as usize;
        assert!(times.iter().all(|&s| s as usize == original));
        let alpha_bar = base.tables().alphas_cumprod[original];
        let (a, s) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        let scale = (0..DIMS)
            .map(|j| s / data.marginal_variance(alpha_bar, j))
            .collect();
        let shift = (0..DIMS).map(|j| a * data.mean[j]).collect();
        let eps = x.broadcast_sub(&row(shift))?.broadcast_mul(&row(scale))?;
        if !spaced.variance_type().is_learned() {
            return Ok(eps);
        }
        let k = spaced_index[&original];
        let tables = spaced.tables();
        let v = (0..DIMS)
            .map(|j| {
                if k == 0 {
                    return 0.0; // the last step adds no noise
                }
                let prev = data.marginal_variance(tables.alphas_cumprod_prev[k], j);
                let now = data.marginal_variance(tables.alphas_cumprod[k], j);
                let optimal = (prev * tables.betas[k] / now).ln();
                let low = tables.posterior_log_variance_clipped[k];
                let high = tables.betas[k].ln();
                2.0 * (optimal - low) / (high - low) - 1.0
            })
            .collect::<Vec<f64>>();
        // s = 1 puts v at the top of the range, up to rounding.
        assert!(v.iter().all(|v| v.abs() <= 1.0 + 1e-9), "v = {v:?}");
        let v = row(v).broadcast_as(eps.shape())?.contiguous()?;
        Ok(Tensor::cat(&[&eps, &v], 1)?)
    }
}

/// Largest |var/s² − 1| a sampler may show on this data beyond sampling
/// error; the measured discretisation error is in the fixture script's output.
struct Allowance {
    relative_variance: f64,
    mean: f64,
}

fn check_recovers_data(
    variance: VarianceType,
    spacing: &str,
    sampler: Sampler,
    seed: u64,
    allowance: Allowance,
) {
    let fx = load_fixture();
    let data = GaussianData {
        mean: floats(&fx["mean"]),
        std: floats(&fx["std"]),
    };
    assert_eq!(data.mean.len(), DIMS);
    let (sampler_name, eta) = match sampler {
        Sampler::Ddpm => ("ddpm", 0.0),
        Sampler::Ddim { eta } => ("ddim", eta),
        Sampler::DpmSolverPP2M => ("dpmpp_2m", 0.0),
    };
    let variance_name = match variance {
        VarianceType::LearnedRange => "learned_range",
        VarianceType::FixedLarge => "fixed_large",
        VarianceType::FixedSmall => "fixed_small",
    };
    let case = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["variance"] == variance_name
                && c["spacing"] == spacing
                && c["sampler"] == sampler_name
                && c["eta"].as_f64() == Some(eta)
        })
        .unwrap_or_else(|| panic!("no fixture for {variance_name} {spacing} {sampler_name}"));
    let exact_mean = floats(&case["mean"]);
    let exact_var = floats(&case["variance_of_samples"]);

    let base = GaussianDiffusion::new(&DiffusionConfig {
        schedule: NoiseSchedule::Linear,
        num_timesteps: 1000,
        variance,
        loss: LossType::Mse,
    })
    .unwrap();
    let spaced = base.respace(spacing).unwrap();
    let mut model = oracle_model(&base, &spaced, &data);
    let mut noise = NoiseSource::new(seed, 0, SAMPLES);
    let mut calls = 0;
    let samples = spaced
        .sample(
            &mut model,
            &[SAMPLES, DIMS],
            DType::F32,
            &Device::Cpu,
            &SampleOptions {
                sampler,
                clip_denoised: false,
            },
            &mut noise,
            &mut |done, total| {
                calls += 1;
                assert_eq!((done, total), (calls, spaced.num_timesteps()));
            },
        )
        .unwrap();
    assert_eq!(calls, spaced.num_timesteps());
    let x = samples
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();

    let n = SAMPLES as f64;
    let var_se = (2.0 / (n - 1.0)).sqrt();
    let label = format!("{variance_name} \"{spacing}\" {sampler:?}");
    let (mut pooled_mean, mut pooled_var) = (0.0, 0.0);
    let (mut worst_mean, mut worst_var) = (0.0f64, 0.0f64);
    let (mut worst_z_mean, mut worst_z_var) = (0.0f64, 0.0f64);
    for j in 0..DIMS {
        let column: Vec<f64> = x.iter().map(|r| r[j]).collect();
        let mean = column.iter().sum::<f64>() / n;
        let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);

        // Against the exact output distribution of this discretised sampler.
        let z_mean = (mean - exact_mean[j]) / (exact_var[j] / n).sqrt();
        let z_var = (var / exact_var[j] - 1.0) / var_se;
        assert!(
            z_mean.abs() < Z_PER_DIM && z_var.abs() < Z_PER_DIM,
            "{label} dim {j}: mean {mean:.5} vs exact {:.5} (z {z_mean:.2}), \
             var {var:.5} vs exact {:.5} (z {z_var:.2})",
            exact_mean[j],
            exact_var[j]
        );
        pooled_mean += z_mean / (DIMS as f64).sqrt();
        pooled_var += z_var / (DIMS as f64).sqrt();
        worst_z_mean = max_nan(worst_z_mean, z_mean.abs());
        worst_z_var = max_nan(worst_z_var, z_var.abs());

        // Against the data distribution itself.
        let s2 = data.std[j].powi(2);
        let mean_error = (mean - data.mean[j]).abs();
        let var_error = (var / s2 - 1.0).abs();
        assert!(
            mean_error < Z_PER_DIM * data.std[j] / n.sqrt() + allowance.mean,
            "{label} dim {j}: mean {mean:.5}, data μ {:.5}",
            data.mean[j]
        );
        assert!(
            var_error < Z_PER_DIM * var_se + allowance.relative_variance,
            "{label} dim {j}: var {var:.5}, data s² {s2:.5}"
        );
        worst_mean = max_nan(worst_mean, mean_error);
        worst_var = max_nan(worst_var, var_error);
    }
    println!(
        "{label}: vs exact discretised moments: worst |z| mean {worst_z_mean:.2}, var {worst_z_var:.2}; \
         pooled z mean {pooled_mean:.2}, var {pooled_var:.2}. \
         vs data: worst |mean − μ| {worst_mean:.4} (SE ≤ {:.4}), worst |var/s² − 1| {worst_var:.4} (SE {var_se:.4})",
        1.0 / n.sqrt()
    );
    assert!(
        pooled_mean.abs() < Z_POOLED && pooled_var.abs() < Z_POOLED,
        "{label}: pooled z-scores against the exact moments: mean {pooled_mean:.2}, var {pooled_var:.2}"
    );
}

/// DDPM's discretisation error on this data is below 0.7% of s² at 250 steps,
/// under the sampling error of one dimension.
const DDPM: Allowance = Allowance {
    relative_variance: 0.0,
    mean: 0.0,
};

#[test]
fn ddpm_250_fixed_large_recovers_gaussian_data() {
    check_recovers_data(VarianceType::FixedLarge, "250", Sampler::Ddpm, 1, DDPM);
}

#[test]
fn ddpm_250_learned_range_recovers_gaussian_data() {
    check_recovers_data(VarianceType::LearnedRange, "250", Sampler::Ddpm, 2, DDPM);
}

/// With the optimal v every reverse step is the true reverse conditional, so
/// even 10 steps are exact; a wrong learned-range formula would show here.
#[test]
fn ddpm_10_learned_range_is_exact_with_the_optimal_variance() {
    check_recovers_data(VarianceType::LearnedRange, "10", Sampler::Ddpm, 3, DDPM);
}

/// DDIM (η = 0) is a first-order ODE solver: each step shrinks the
/// noise-aligned component by cos of the step's angle, so at 50 steps it
/// loses 7–9% of the variance on this data.
#[test]
fn ddim_50_recovers_gaussian_data() {
    let allowance = Allowance {
        relative_variance: 0.10,
        mean: 0.005,
    };
    let sampler = Sampler::Ddim { eta: 0.0 };
    check_recovers_data(VarianceType::LearnedRange, "ddim50", sampler, 4, allowance);
}

/// η = 1 adds β̃-sized noise, which at 50 steps undershoots the variance by
/// 14–17% on this data.
#[test]
fn ddim_50_with_eta_one_recovers_gaussian_data() {
    let allowance = Allowance {
        relative_variance: 0.19,
        mean: 0.0,
    };
    let sampler = Sampler::Ddim { eta: 1.0 };
    check_recovers_data(VarianceType::FixedLarge, "ddim50", sampler, 5, allowance);
}

/// Second order: within 3% of s² at 20 steps on this data.
#[test]
fn dpm_solver_pp_2m_20_recovers_gaussian_data() {
    let allowance = Allowance {
        relative_variance: 0.035,
        mean: 0.004,
    };
    let sampler = Sampler::DpmSolverPP2M;
    check_recovers_data(VarianceType::LearnedRange, "20", sampler, 6, allowance);
}

/// At 10 steps the time-uniform grid is coarse where the data's scale is
/// resolved: 13–25% of the variance is lost, but the run must still match the
/// exact discretised moments.
#[test]
fn dpm_solver_pp_2m_10_matches_its_discretised_moments() {
    let allowance = Allowance {
        relative_variance: 0.27,
        mean: 0.004,
    };
    let sampler = Sampler::DpmSolverPP2M;
    check_recovers_data(VarianceType::LearnedRange, "10", sampler, 7, allowance);
}
