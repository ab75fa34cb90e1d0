//! β schedules, computed in float64.

use super::config::NoiseSchedule;

/// Cosine offset s: keeps β_0 from being vanishingly small (Nichol & Dhariwal 2021, §3.2).
const COSINE_OFFSET: f64 = 0.008;
/// Cap on cosine β: near t = T the ratio ᾱ_t/ᾱ_{t−1} goes to 0 and β to 1,
/// which would make the last step singular.
const COSINE_MAX_BETA: f64 = 0.999;

/// β_0 … β_{T−1} of `schedule` with `num_timesteps` steps.
pub fn betas(schedule: NoiseSchedule, num_timesteps: usize) -> Vec<f64> {
    match schedule {
        NoiseSchedule::Linear => linear_betas(num_timesteps),
        NoiseSchedule::Cosine => cosine_betas(num_timesteps),
    }
}

fn linear_betas(num_timesteps: usize) -> Vec<f64> {
    let scale = 1000.0 / num_timesteps as f64;
    let start = scale * 1e-4;
    let end = scale * 0.02;
    if num_timesteps == 1 {
        return vec![start];
    }
    let step = (end - start) / (num_timesteps - 1) as f64;
    let mut betas: Vec<f64> = (0..num_timesteps)
        .map(|i| start + step * i as f64)
        .collect();
    // Pin the end point exactly, as numpy's linspace does, rather than letting
    // rounding in start + step·(T−1) move it by an ulp.
    betas[num_timesteps - 1] = end;
    betas
}

fn cosine_betas(num_timesteps: usize) -> Vec<f64> {
    let alpha_bar = |u: f64| {
        let c = ((u + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * std::f64::consts::FRAC_PI_2).cos();
        c * c
    };
    let t = num_timesteps as f64;
    (0..num_timesteps)
        .map(|i| {
            let ratio = alpha_bar((i + 1) as f64 / t) / alpha_bar(i as f64 / t);
            (1.0 - ratio).min(COSINE_MAX_BETA)
        })
        .collect()
}
