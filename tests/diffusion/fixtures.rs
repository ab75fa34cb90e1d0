//! The diffusion against an independent float64 numpy reference and against
//! diffusers (float32), both produced by `scripts/diffusion_fixtures.py`.
//!
//! Run with `--nocapture` to see the measured errors.

use crate::support::compare::{max_nan, nan_max};
use candle_core::{DType, Device, Tensor};
use dit::diffusion::{
    spaced_timesteps, DiffusionConfig, DpmSolverPP2M, GaussianDiffusion, LossType, NoiseSchedule,
    VarianceType,
};
use serde_json::Value;

/// Relative tolerance on schedule quantities (against the float64 reference).
const SCHEDULE_TOL: f64 = 1e-6;
/// Relative tolerance on per-step tensors (against the float64 reference).
const STEP_TOL: f64 = 1e-5;
/// diffusers keeps ᾱ in float32: its cumulative product drifts by up to ~1.3e-5
/// relative over 1000 cosine steps, and σ_0 = √(1−ᾱ_0) loses ~4 digits to
/// cancellation, so the diffusers checks allow float32-level error.
const DIFFUSERS_SCHEDULE_TOL: f64 = 3e-5;
const DIFFUSERS_STEP_TOL: f64 = 2e-5;

fn load(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/diffusion/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn tensor(v: &Value, shape: &[usize]) -> Tensor {
    Tensor::from_vec(floats(v), shape, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Elementwise relative error |Δ|/|want|; returns (max |Δ|, max relative).
fn check_elementwise(what: &str, got: &[f64], want: &[f64], tol: f64) -> (f64, f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut max_abs = 0.0f64;
    let mut max_rel = 0.0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let abs = (g - w).abs();
        let rel = if *w == 0.0 { abs } else { abs / w.abs() };
        assert!(
            rel <= tol,
            "{what}[{i}]: got {g}, want {w} (relative error {rel:e} > {tol:e})"
        );
        max_abs = max_nan(max_abs, abs);
        max_rel = max_nan(max_rel, rel);
    }
    println!("{what}: max |Δ| {max_abs:.2e}, max rel {max_rel:.2e}");
    (max_abs, max_rel)
}

/// Error relative to the largest |want| of the tensor, for quantities whose
/// individual entries may be near zero.
fn check_scaled(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = nan_max(want.iter().map(|w| w.abs())).max(1e-300);
    let max_abs = nan_max(got.iter().zip(want).map(|(g, w)| (g - w).abs()));
    println!(
        "{what}: max |Δ| {max_abs:.2e}, relative to max |x| {:.2e}",
        max_abs / scale
    );
    assert!(
        max_abs <= tol * scale,
        "{what}: max |Δ| {max_abs:e} exceeds {tol:e} × {scale}"
    );
}

fn diffusion(schedule: NoiseSchedule, variance: VarianceType) -> GaussianDiffusion {
    GaussianDiffusion::new(&DiffusionConfig {
        schedule,
        num_timesteps: 1000,
        variance,
        loss: LossType::Mse,
    })
    .unwrap()
}

fn table<'a>(d: &'a GaussianDiffusion, name: &str) -> &'a [f64] {
    let t = d.tables();
    match name {
        "betas" => &t.betas,
        "alphas_cumprod" => &t.alphas_cumprod,
        "alphas_cumprod_prev" => &t.alphas_cumprod_prev,
        "sqrt_alphas_cumprod" => &t.sqrt_alphas_cumprod,
        "sqrt_one_minus_alphas_cumprod" => &t.sqrt_one_minus_alphas_cumprod,
        "sqrt_recip_alphas_cumprod" => &t.sqrt_recip_alphas_cumprod,
        "sqrt_recipm1_alphas_cumprod" => &t.sqrt_recipm1_alphas_cumprod,
        "posterior_variance" => &t.posterior_variance,
        "posterior_log_variance_clipped" => &t.posterior_log_variance_clipped,
        "posterior_mean_coef1" => &t.posterior_mean_coef1,
        "posterior_mean_coef2" => &t.posterior_mean_coef2,
        other => panic!("unknown table {other}"),
    }
}

#[test]
fn schedules_match_numpy_and_diffusers() {
    let fx = load("schedules.json");
    let indices = usizes(&fx["indices"]);
    for (name, schedule) in [
        ("linear", NoiseSchedule::Linear),
        ("cosine", NoiseSchedule::Cosine),
    ] {
        let d = diffusion(schedule, VarianceType::LearnedRange);
        let reference = fx["numpy"][name].as_object().unwrap();
        assert_eq!(reference.len(), 11, "every table is in the fixture");
        for (quantity, want) in reference {
            let got: Vec<f64> = indices.iter().map(|&i| table(&d, quantity)[i]).collect();
            check_elementwise(
                &format!("numpy {name} {quantity}"),
                &got,
                &floats(want),
                SCHEDULE_TOL,
            );
        }
        for scheduler in ["DDPMScheduler", "DDIMScheduler"] {
            let reference = &fx["diffusers"][format!("{scheduler}/{name}")];
            for quantity in ["betas", "alphas_cumprod"] {
                let got: Vec<f64> = indices.iter().map(|&i| table(&d, quantity)[i]).collect();
                check_elementwise(
                    &format!("diffusers {scheduler} {name} {quantity}"),
                    &got,
                    &floats(&reference[quantity]),
                    DIFFUSERS_SCHEDULE_TOL,
                );
            }
        }
    }
    let t100 = &fx["numpy"]["linear_T100"];
    let d = GaussianDiffusion::new(&DiffusionConfig {
        num_timesteps: 100,
        ..DiffusionConfig::default()
    })
    .unwrap();
    let got: Vec<f64> = usizes(&t100["indices"])
        .iter()
        .map(|&i| d.tables().betas[i])
        .collect();
    check_elementwise(
        "numpy linear T=100 betas",
        &got,
        &floats(&t100["betas"]),
        SCHEDULE_TOL,
    );
}

struct GaussianCase {
    fx: Value,
    shape: Vec<usize>,
    out_shape: Vec<usize>,
    x0: Tensor,
    noise: Tensor,
    t: Tensor,
    model_output: Tensor,
}

fn gaussian_case() -> GaussianCase {
    let fx = load("gaussian.json");
    let shape = usizes(&fx["shape"]);
    let mut out_shape = shape.clone();
    out_shape[1] *= 2;
    let t: Vec<u32> = usizes(&fx["t"]).iter().map(|&t| t as u32).collect();
    GaussianCase {
        x0: tensor(&fx["x0"], &shape),
        noise: tensor(&fx["noise"], &shape),
        t: Tensor::new(t, &Device::Cpu).unwrap(),
        model_output: tensor(&fx["model_output"], &out_shape),
        fx,
        shape,
        out_shape,
    }
}

#[test]
fn forward_process_and_posterior_match_numpy() {
    let c = gaussian_case();
    let d = diffusion(NoiseSchedule::Linear, VarianceType::LearnedRange);
    let x_t = d.q_sample(&c.x0, &c.t, &c.noise).unwrap();
    check_scaled("q_sample", &values(&x_t), &floats(&c.fx["x_t"]), STEP_TOL);
    let post = d.q_posterior(&c.x0, &x_t, &c.t).unwrap();
    let want = &c.fx["posterior"];
    check_scaled(
        "posterior mean",
        &values(&post.mean),
        &floats(&want["mean"]),
        STEP_TOL,
    );
    check_elementwise(
        "posterior variance",
        &values(&post.variance),
        &floats(&want["variance"]),
        SCHEDULE_TOL,
    );
    check_elementwise(
        "posterior log variance",
        &values(&post.log_variance),
        &floats(&want["log_variance"]),
        SCHEDULE_TOL,
    );
    assert_eq!(c.shape, post.mean.dims());
}

#[test]
fn p_mean_variance_matches_numpy_for_each_variance_type() {
    let c = gaussian_case();
    let x_t = tensor(&c.fx["x_t"], &c.shape);
    for (name, variance) in [
        ("learned_range", VarianceType::LearnedRange),
        ("fixed_large", VarianceType::FixedLarge),
        ("fixed_small", VarianceType::FixedSmall),
    ] {
        let d = diffusion(NoiseSchedule::Linear, variance);
        for clip in [false, true] {
            let p = d
                .p_mean_variance(&c.model_output, &x_t, &c.t, clip)
                .unwrap();
            let want = &c.fx["p_mean_variance"][format!("{name}/clip={clip}")];
            let label = format!("p_mean_variance {name} clip={clip}");
            check_scaled(
                &format!("{label} mean"),
                &values(&p.moments.mean),
                &floats(&want["mean"]),
                STEP_TOL,
            );
            check_elementwise(
                &format!("{label} variance"),
                &values(&p.moments.variance),
                &floats(&want["variance"]),
                STEP_TOL,
            );
            check_elementwise(
                &format!("{label} log variance"),
                &values(&p.moments.log_variance),
                &floats(&want["log_variance"]),
                STEP_TOL,
            );
            check_scaled(
                &format!("{label} pred_x0"),
                &values(&p.pred_x0),
                &floats(&want["pred_x0"]),
                STEP_TOL,
            );
        }
    }
}

#[test]
fn loss_terms_match_numpy() {
    let c = gaussian_case();
    let d = diffusion(NoiseSchedule::Linear, VarianceType::LearnedRange);
    let want_x_t = floats(&c.fx["x_t"]);
    let want_model_t: Vec<f64> = usizes(&c.fx["t"]).iter().map(|&t| t as f64).collect();
    let terms = d
        .training_losses(
            |x_t, t| {
                check_scaled("x_t given to the model", &values(x_t), &want_x_t, STEP_TOL);
                assert_eq!(values(t), want_model_t);
                assert_eq!(t.dtype(), DType::F32);
                Ok(c.model_output.clone())
            },
            &c.x0,
            &c.t,
            &c.noise,
        )
        .unwrap();
    let want = &c.fx["loss"];
    check_elementwise(
        "loss mse",
        &values(&terms.mse),
        &floats(&want["mse"]),
        STEP_TOL,
    );
    let vb = values(terms.vb.as_ref().unwrap());
    check_elementwise("loss vb", &vb, &floats(&want["vb"]), STEP_TOL);
    check_elementwise(
        "loss total",
        &values(&terms.loss),
        &floats(&want["loss"]),
        STEP_TOL,
    );
    // The fixture covers both branches of L_vb: t = 0 uses the decoder NLL.
    let t = usizes(&c.fx["t"]);
    let kl = floats(&want["kl_bits"]);
    let nll = floats(&want["decoder_nll_bits"]);
    for (i, &ti) in t.iter().enumerate() {
        let (label, reference) = if ti == 0 {
            ("decoder NLL (t = 0)", nll[i])
        } else {
            ("KL", kl[i])
        };
        check_elementwise(
            &format!("loss {label} sample {i}"),
            &vb[i..=i],
            &[reference],
            STEP_TOL,
        );
    }
    assert!(t.contains(&0) && t.iter().any(|&t| t > 0));

    // Fixed σ: the loss is the MSE alone.
    let fixed = diffusion(NoiseSchedule::Linear, VarianceType::FixedSmall);
    let eps_only = c.model_output.narrow(1, 0, c.shape[1]).unwrap();
    let terms = fixed
        .training_losses(|_, _| Ok(eps_only), &c.x0, &c.t, &c.noise)
        .unwrap();
    assert!(terms.vb.is_none());
    check_elementwise(
        "fixed-σ loss = mse",
        &values(&terms.loss),
        &floats(&want["mse"]),
        STEP_TOL,
    );
    assert_eq!(c.out_shape[1], 2 * c.shape[1]);
}

#[test]
fn respacing_matches_numpy() {
    let fx = load("respacing.json");
    let base = diffusion(NoiseSchedule::Linear, VarianceType::LearnedRange);
    for spec in ["250", "ddim25", "10,15,20"] {
        let want_map = usizes(&fx[spec]["timestep_map"]);
        assert_eq!(spaced_timesteps(1000, spec).unwrap(), want_map, "{spec}");
        let spaced = base.respace(spec).unwrap();
        assert_eq!(spaced.timestep_map(), want_map.as_slice(), "{spec}");
        check_elementwise(
            &format!("respaced \"{spec}\" betas"),
            &spaced.tables().betas,
            &floats(&fx[spec]["betas"]),
            SCHEDULE_TOL,
        );
    }
}

fn step_inputs(case: &Value, shape: &[usize]) -> (Tensor, Tensor, Tensor) {
    let mut out_shape = shape.to_vec();
    out_shape[1] *= 2;
    (
        tensor(&case["x"], shape),
        tensor(&case["model_output"], &out_shape),
        tensor(&case["noise"], shape),
    )
}

#[test]
fn ddpm_steps_match_numpy_and_diffusers() {
    let fx = load("steps.json");
    let shape = usizes(&fx["shape"]);
    for case in fx["ddpm_250"].as_array().unwrap() {
        let k = case["k"].as_u64().unwrap() as usize;
        let (x, out, noise) = step_inputs(case, &shape);
        for (name, variance) in [
            ("learned_range", VarianceType::LearnedRange),
            ("fixed_large", VarianceType::FixedLarge),
        ] {
            let d = diffusion(NoiseSchedule::Linear, variance)
                .respace("250")
                .unwrap();
            let got = values(&d.ddpm_step(&out, &x, k, false, Some(&noise)).unwrap());
            check_scaled(
                &format!("DDPM step k={k} {name} vs numpy"),
                &got,
                &floats(&case[format!("numpy/{name}")]),
                STEP_TOL,
            );
            if variance == VarianceType::LearnedRange {
                check_scaled(
                    &format!("DDPM step k={k} {name} vs diffusers"),
                    &got,
                    &floats(&case["diffusers/learned_range"]),
                    DIFFUSERS_STEP_TOL,
                );
            }
        }
    }
}

#[test]
fn ddim_steps_match_numpy_and_diffusers() {
    let fx = load("steps.json");
    let shape = usizes(&fx["shape"]);
    let d = diffusion(NoiseSchedule::Linear, VarianceType::LearnedRange)
        .respace("ddim25")
        .unwrap();
    for case in fx["ddim_25"].as_array().unwrap() {
        let k = case["k"].as_u64().unwrap() as usize;
        let eta = case["eta"].as_f64().unwrap();
        let (x, out, noise) = step_inputs(case, &shape);
        let got = values(&d.ddim_step(&out, &x, k, eta, false, Some(&noise)).unwrap());
        let label = format!("DDIM step k={k} eta={eta}");
        check_scaled(
            &format!("{label} vs numpy"),
            &got,
            &floats(&case["numpy"]),
            STEP_TOL,
        );
        check_scaled(
            &format!("{label} vs diffusers"),
            &got,
            &floats(&case["diffusers"]),
            DIFFUSERS_STEP_TOL,
        );
    }
}

#[test]
fn dpm_solver_pp_2m_matches_numpy_and_diffusers() {
    let fx = load("steps.json");
    let shape = usizes(&fx["shape"]);
    let mut diffusers_steps = 0;
    for spec in ["10", "20"] {
        let case = &fx[format!("dpmpp_2m_{spec}")];
        let d = diffusion(NoiseSchedule::Linear, VarianceType::LearnedRange)
            .respace(spec)
            .unwrap();
        assert_eq!(d.timestep_map(), usizes(&case["timestep_map"]).as_slice());
        let eps: Vec<Tensor> = case["eps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| tensor(e, &shape))
            .collect();
        let numpy = case["numpy"].as_array().unwrap();
        let diffusers = case["diffusers"].as_array().unwrap();
        let mut solver = DpmSolverPP2M::default();
        let mut x = tensor(&case["x"], &shape);
        for (i, k) in (0..d.num_timesteps()).rev().enumerate() {
            let label = format!("DPM-Solver++(2M) \"{spec}\" step {i} (k={k})");
            // The ε given is that of the ε channels; v must be ignored.
            let out = Tensor::cat(&[&eps[i], &eps[i].ones_like().unwrap()], 1).unwrap();
            if !diffusers[i].is_null() {
                // diffusers was fed the reference state at every step; so is
                // this side of its comparison.
                let start = if i == 0 {
                    tensor(&case["x"], &shape)
                } else {
                    tensor(&numpy[i - 1], &shape)
                };
                let from_reference = solver.clone().step(&d, &out, &start, k, false).unwrap();
                check_scaled(
                    &format!("{label} vs diffusers"),
                    &values(&from_reference),
                    &floats(&diffusers[i]),
                    DIFFUSERS_STEP_TOL,
                );
                diffusers_steps += 1;
            }
            x = solver.step(&d, &out, &x, k, false).unwrap();
            check_scaled(
                &format!("{label} vs numpy"),
                &values(&x),
                &floats(&numpy[i]),
                STEP_TOL,
            );
        }
    }
    assert_eq!(diffusers_steps, 9 + 19);
}
