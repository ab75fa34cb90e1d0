//! Respacing: sampling with a subset of the training timesteps.
//!
//! Keeping timesteps S ⊂ {0, …, T−1} and recomputing β from the kept ᾱ
//! (β'_i = 1 − ᾱ_{s_i}/ᾱ_{s_{i−1}}) gives a shorter diffusion whose marginals
//! q(x_{s_i} | x0) are exactly the original ones, so an ε-model trained on the
//! full process can be sampled with fewer steps.

use super::error::DiffusionError;
use super::gaussian::GaussianDiffusion;

impl GaussianDiffusion {
    /// The diffusion restricted to the timesteps chosen by `spec`:
    ///
    /// * `"250"` or `"10,15,20"`: the T steps are cut into as many equal
    ///   sections as there are counts (the first T mod n sections one step
    ///   longer), and each section keeps its count of steps evenly strided from
    ///   its first to its last step, rounding half to even.
    /// * `"ddimN"`: the steps 0, k, 2k, … for the integer stride k that yields
    ///   exactly N of them.
    ///
    /// The result maps its indices back to the original training timesteps
    /// ([`GaussianDiffusion::timestep_map`]).
    pub fn respace(&self, spec: &str) -> Result<GaussianDiffusion, DiffusionError> {
        let kept = spaced_timesteps(self.num_timesteps(), spec)?;
        if kept.len() < 2 {
            return Err(invalid(spec, "it keeps fewer than 2 timesteps"));
        }
        let mut betas = Vec::with_capacity(kept.len());
        let mut last_alpha_cumprod = 1.0;
        for &k in &kept {
            let alpha_cumprod = self.tables().alphas_cumprod[k];
            betas.push(1.0 - alpha_cumprod / last_alpha_cumprod);
            last_alpha_cumprod = alpha_cumprod;
        }
        let timestep_map = kept.iter().map(|&k| self.timestep_map()[k]).collect();
        Ok(GaussianDiffusion::from_betas(
            self.config().clone(),
            betas,
            timestep_map,
        ))
    }
}

/// The sorted timesteps of `0..num_timesteps` that `spec` keeps (see
/// [`GaussianDiffusion::respace`]).
pub fn spaced_timesteps(num_timesteps: usize, spec: &str) -> Result<Vec<usize>, DiffusionError> {
    let spec_trimmed = spec.trim();
    if let Some(count) = spec_trimmed.strip_prefix("ddim") {
        let count = parse_count(spec, count)?;
        return ddim_timesteps(num_timesteps, count).ok_or_else(|| {
            invalid(
                spec,
                &format!("no integer stride gives exactly {count} of {num_timesteps} steps"),
            )
        });
    }
    let counts = spec_trimmed
        .split(',')
        .map(|c| parse_count(spec, c.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    section_timesteps(num_timesteps, &counts).map_err(|reason| invalid(spec, &reason))
}

fn parse_count(spec: &str, text: &str) -> Result<usize, DiffusionError> {
    match text.parse::<usize>() {
        Ok(0) => Err(invalid(spec, "a step count must be positive")),
        Ok(n) => Ok(n),
        Err(_) => Err(invalid(
            spec,
            &format!("\"{text}\" is not a step count (expected e.g. \"250\", \"10,15,20\" or \"ddim50\")"),
        )),
    }
}

fn ddim_timesteps(num_timesteps: usize, count: usize) -> Option<Vec<usize>> {
    (1..num_timesteps)
        .find(|stride| num_timesteps.div_ceil(*stride) == count)
        .map(|stride| (0..num_timesteps).step_by(stride).collect())
}

fn section_timesteps(num_timesteps: usize, counts: &[usize]) -> Result<Vec<usize>, String> {
    if counts.len() > num_timesteps {
        return Err(format!(
            "{} sections do not fit in {num_timesteps} steps",
            counts.len()
        ));
    }
    let base_size = num_timesteps / counts.len();
    let extra = num_timesteps % counts.len();
    let mut kept = Vec::new();
    let mut start = 0;
    for (i, &count) in counts.iter().enumerate() {
        let size = base_size + usize::from(i < extra);
        if count > size {
            return Err(format!(
                "section {i} has {size} steps, cannot take {count} of them"
            ));
        }
        let stride = if count > 1 {
            (size - 1) as f64 / (count - 1) as f64
        } else {
            1.0
        };
        let mut position = 0.0f64;
        for _ in 0..count {
            kept.push(start + position.round_ties_even() as usize);
            position += stride;
        }
        start += size;
    }
    kept.sort_unstable();
    kept.dedup();
    Ok(kept)
}

fn invalid(spec: &str, reason: &str) -> DiffusionError {
    DiffusionError::InvalidRespacing {
        spec: spec.to_string(),
        reason: reason.to_string(),
    }
}
