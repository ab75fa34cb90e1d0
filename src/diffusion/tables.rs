//! Per-timestep float64 quantities derived from β.

/// Everything the forward process, the posterior and the samplers need per
/// timestep, indexed 0 … T−1 (for a respaced diffusion, by the spaced index).
#[derive(Clone, Debug, PartialEq)]
pub struct DiffusionTables {
    pub betas: Vec<f64>,
    /// ᾱ_t = ∏_{s≤t} (1 − β_s).
    pub alphas_cumprod: Vec<f64>,
    /// ᾱ_{t−1}, with ᾱ_{−1} = 1.
    pub alphas_cumprod_prev: Vec<f64>,
    pub sqrt_alphas_cumprod: Vec<f64>,
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    /// 1/√ᾱ_t, for x̂0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1)·ε.
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    /// √(1/ᾱ_t − 1).
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    /// β̃_t = β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t); zero at t = 0.
    pub posterior_variance: Vec<f64>,
    /// log β̃_t with the t = 0 entry (log 0) replaced by the t = 1 entry.
    pub posterior_log_variance_clipped: Vec<f64>,
    /// Coefficient of x̂0 in the posterior mean μ̃_t.
    pub posterior_mean_coef1: Vec<f64>,
    /// Coefficient of x_t in the posterior mean μ̃_t.
    pub posterior_mean_coef2: Vec<f64>,
}

impl DiffusionTables {
    /// Derives every table from β. Needs at least two timesteps, since the
    /// clipped posterior log-variance borrows β̃_1 for t = 0.
    pub fn from_betas(betas: Vec<f64>) -> Self {
        assert!(betas.len() >= 2, "a diffusion needs at least 2 timesteps");
        let mut alphas_cumprod = Vec::with_capacity(betas.len());
        let mut running = 1.0;
        for &beta in &betas {
            running *= 1.0 - beta;
            alphas_cumprod.push(running);
        }
        let alphas_cumprod_prev: Vec<f64> = std::iter::once(1.0)
            .chain(alphas_cumprod[..betas.len() - 1].iter().copied())
            .collect();
        let map = |f: &dyn Fn(usize) -> f64| (0..betas.len()).map(f).collect::<Vec<f64>>();
        let posterior_variance =
            map(&|t| betas[t] * (1.0 - alphas_cumprod_prev[t]) / (1.0 - alphas_cumprod[t]));
        let posterior_log_variance_clipped = map(&|t| posterior_variance[t.max(1)].ln());
        Self {
            sqrt_alphas_cumprod: map(&|t| alphas_cumprod[t].sqrt()),
            sqrt_one_minus_alphas_cumprod: map(&|t| (1.0 - alphas_cumprod[t]).sqrt()),
            sqrt_recip_alphas_cumprod: map(&|t| (1.0 / alphas_cumprod[t]).sqrt()),
            sqrt_recipm1_alphas_cumprod: map(&|t| (1.0 / alphas_cumprod[t] - 1.0).sqrt()),
            posterior_mean_coef1: map(&|t| {
                betas[t] * alphas_cumprod_prev[t].sqrt() / (1.0 - alphas_cumprod[t])
            }),
            posterior_mean_coef2: map(&|t| {
                (1.0 - alphas_cumprod_prev[t]) * (1.0 - betas[t]).sqrt() / (1.0 - alphas_cumprod[t])
            }),
            posterior_variance,
            posterior_log_variance_clipped,
            alphas_cumprod,
            alphas_cumprod_prev,
            betas,
        }
    }

    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }
}
