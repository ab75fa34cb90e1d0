//! Deterministic accuracy of the ODE solvers against the exact flow of the
//! Gaussian oracle, and independence of batching.

use candle_core::DType;

use crate::transport::oracle::run;
use crate::transport::oracle_support::{nan_max, values, GaussianData};
use dit::transport::{
    DiffusionForm, Interpolant, LastStep, OdeConfig, OdeMethod, Phase, Prediction, SamplerConfig,
    SdeConfig, SdeMethod, Transport, TransportConfig,
};

fn transport(path: Interpolant, prediction: Prediction) -> Transport {
    Transport::new(TransportConfig {
        interpolant: path,
        prediction,
        ..TransportConfig::default()
    })
    .unwrap()
}

fn ode(method: OdeMethod, num_steps: usize, atol: f64, rtol: f64) -> SamplerConfig {
    SamplerConfig::Ode(OdeConfig {
        method,
        num_steps,
        atol,
        rtol,
    })
}

/// The solver's output against the exact flow from the same x0: max |Δ|,
/// the largest per-sample RMS(Δ)/(atol + rtol·RMS(exact)) (the global
/// error in units of the tolerance at the sample's scale), and the NFE.
fn flow_error(
    tr: &Transport,
    sampler: &SamplerConfig,
    n: usize,
    dtype: DType,
) -> (f64, f64, usize) {
    let data = GaussianData::standard();
    let (sampled, x0) = run(tr, &data, sampler, 7, 0, n, dtype).unwrap();
    let (t0, t1) = tr.config().interval(Phase::Ode);
    let (atol, rtol) = match sampler {
        SamplerConfig::Ode(c) => (c.atol, c.rtol),
        _ => unreachable!(),
    };
    let (x, z) = (values(&sampled.x), values(&x0));
    let d = data.dims();
    let (mut max_abs, mut max_rms) = (0.0, 0.0);
    for (row_x, row_z) in x.chunks(d).zip(z.chunks(d)) {
        let (mut err2, mut exact2) = (0.0, 0.0);
        for (j, (&x, &z)) in row_x.iter().zip(row_z).enumerate() {
            let exact = data.exact_flow(tr.config().interpolant, t0, t1, j, z);
            let err = (x - exact).abs();
            max_abs = nan_max(max_abs, err);
            err2 += err * err;
            exact2 += exact * exact;
        }
        let rms = |sum: f64| (sum / d as f64).sqrt();
        max_rms = nan_max(max_rms, rms(err2) / (atol + rtol * rms(exact2)));
    }
    (max_abs, max_rms, sampled.nfe)
}

/// Halving the step divides Euler's error by ≈ 2 and Heun's by ≈ 4 (f64
/// tensors, so rounding is far below the errors measured).
#[test]
fn fixed_step_errors_shrink_at_their_order() {
    for path in [Interpolant::Linear, Interpolant::Gvp, Interpolant::Vp] {
        let tr = transport(path, Prediction::Velocity);
        for (method, steps, order) in [(OdeMethod::Euler, 40, 1), (OdeMethod::Heun, 20, 2)] {
            let coarse = flow_error(&tr, &ode(method, steps + 1, 1.0, 0.0), 64, DType::F64);
            let fine = flow_error(&tr, &ode(method, 2 * steps + 1, 1.0, 0.0), 64, DType::F64);
            let ratio = coarse.0 / fine.0;
            let expected = 2f64.powi(order);
            println!(
                "{path:?} {method:?}: max error {:.3e} at {steps} steps (NFE {}), {:.3e} at {} \
                 steps (NFE {}): ratio {ratio:.2} (order {order} → {expected})",
                coarse.0,
                coarse.2,
                fine.0,
                2 * steps,
                fine.2
            );
            assert!(
                ratio.is_finite() && (ratio / expected - 1.0).abs() < 0.2,
                "{path:?} {method:?}: error ratio {ratio}, expected ≈ {expected}"
            );
            assert_eq!(coarse.2, steps * order as usize, "NFE");
        }
    }
}

/// Dormand–Prince controls the local error per step; its global error stays
/// within 10× the tolerance at the sample's scale (measured: ≤ 7.5× at SiT's
/// 1e-6/1e-3, ≤ 1.9× at 1e-8/1e-5), and a 100× tighter tolerance costs more
/// calls and buys an error at least 30× smaller.
#[test]
fn dopri5_meets_its_tolerance() {
    for path in [Interpolant::Linear, Interpolant::Gvp, Interpolant::Vp] {
        for prediction in [Prediction::Velocity, Prediction::Noise] {
            let tr = transport(path, prediction);
            let mut last: Option<(f64, usize)> = None;
            for (atol, rtol) in [(1e-6, 1e-3), (1e-8, 1e-5)] {
                let sampler = ode(OdeMethod::Dopri5, 2, atol, rtol);
                let (err, in_tol, nfe) = flow_error(&tr, &sampler, 256, DType::F64);
                println!(
                    "{path:?} {prediction:?} dopri5 atol {atol:e} rtol {rtol:e}: NFE {nfe}, max \
                     |Δ| {err:.2e} = {in_tol:.2} × (atol + rtol·|x|)"
                );
                assert!(
                    in_tol.is_finite() && in_tol <= 10.0,
                    "{path:?}: error {in_tol} × tolerance"
                );
                if let Some((prev_err, prev_nfe)) = last {
                    assert!(
                        nfe > prev_nfe && err * 30.0 < prev_err,
                        "tighter tolerance: {nfe} calls (was {prev_nfe}), error {err} (was {prev_err})"
                    );
                }
                last = Some((err, nfe));
            }
        }
    }
}

/// Batch 8 equals batches 0..4 and 4..8 bit for bit (the adaptive solver
/// keeps a step size per sample; the SDE noise is per sample).
#[test]
fn batches_do_not_change_samples() {
    let data = GaussianData::standard();
    let samplers = [
        ode(OdeMethod::Euler, 11, 0.0, 0.0),
        ode(OdeMethod::Heun, 11, 0.0, 0.0),
        ode(OdeMethod::Dopri5, 2, 1e-6, 1e-3),
        SamplerConfig::Sde(SdeConfig {
            num_steps: 21,
            ..SdeConfig::default()
        }),
        SamplerConfig::Sde(SdeConfig {
            method: SdeMethod::Heun,
            diffusion: DiffusionForm::Decreasing,
            last_step: LastStep::Tweedie,
            num_steps: 21,
            ..SdeConfig::default()
        }),
    ];
    for path in [Interpolant::Linear, Interpolant::Vp] {
        let tr = transport(path, Prediction::Velocity);
        for sampler in &samplers {
            let (all, _) = run(&tr, &data, sampler, 3, 0, 8, DType::F32).unwrap();
            let (lo, _) = run(&tr, &data, sampler, 3, 0, 4, DType::F32).unwrap();
            let (hi, _) = run(&tr, &data, sampler, 3, 4, 4, DType::F32).unwrap();
            let joined: Vec<f32> = [values(&lo.x), values(&hi.x)]
                .concat()
                .into_iter()
                .map(|v| v as f32)
                .collect();
            let whole: Vec<f32> = values(&all.x).into_iter().map(|v| v as f32).collect();
            assert!(
                whole
                    .iter()
                    .zip(&joined)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{path:?} {sampler:?}: batch of 8 differs from two batches of 4"
            );
            let steps = [lo.accepted_steps, hi.accepted_steps].concat();
            assert_eq!(all.accepted_steps, steps, "{sampler:?}: per-sample steps");
        }
    }
}
