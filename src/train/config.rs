//! Training hyper-parameters (recorded in every checkpoint).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Total optimisation steps (a resumed run continues up to this).
    pub steps: u64,
    /// Global batch size.
    pub batch_size: usize,
    /// AdamW, as DiT: lr 1e-4, β (0.9, 0.999), ε 1e-8, no weight decay.
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Linear learning-rate warm-up over this many steps (0: none).
    pub warmup_steps: u64,
    /// The learning rate after the warm-up.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Clip the global gradient norm to this value.
    pub grad_clip: Option<f64>,
    /// EMA decay (DiT: 0.9999, updated every step).
    pub ema_decay: f64,
    /// Use min(decay, (1 + step) / (10 + step)) so short runs' EMA is not
    /// dominated by the initial weights.
    pub ema_warmup: bool,
    /// Seed for initialisation, data order, flips, timesteps, noise and label drops.
    pub seed: u64,
    /// Random horizontal flips.
    pub flip: bool,
    pub checkpoint_every: u64,
    /// Write a sample grid from the EMA model every this many steps (0: never).
    pub sample_every: u64,
    pub log_every: u64,
    /// Respacing for the preview grids (sampled with DPM-Solver++(2M)).
    pub sample_steps: String,
    pub sample_cfg_scale: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 400_000,
            batch_size: 256,
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 0,
            lr_schedule: LrSchedule::Constant,
            grad_clip: None,
            ema_decay: 0.9999,
            ema_warmup: false,
            seed: 0,
            flip: true,
            checkpoint_every: 50_000,
            sample_every: 10_000,
            log_every: 100,
            sample_steps: "20".into(),
            sample_cfg_scale: 4.0,
        }
    }
}

/// How the learning rate moves after the warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// `lr` throughout (DiT's).
    #[default]
    Constant,
    /// Half a cosine from `lr` down to `lr · final_fraction` at the last step.
    Cosine { final_fraction: f64 },
}

impl TrainConfig {
    /// Learning rate at a 0-based step.
    pub fn lr_at(&self, step: u64) -> f64 {
        let warmup = if self.warmup_steps == 0 {
            1.0
        } else {
            ((step + 1) as f64 / self.warmup_steps as f64).min(1.0)
        };
        let decay = match self.lr_schedule {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine { final_fraction } => {
                let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let done = (step.saturating_sub(self.warmup_steps) as f64 / span).min(1.0);
                final_fraction
                    + (1.0 - final_fraction) * 0.5 * (1.0 + (std::f64::consts::PI * done).cos())
            }
        };
        self.lr * warmup * decay
    }

    /// EMA decay for the update after 0-based `step`.
    pub fn ema_decay_at(&self, step: u64) -> f64 {
        if self.ema_warmup {
            self.ema_decay.min((1 + step) as f64 / (10 + step) as f64)
        } else {
            self.ema_decay
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_decays_from_lr_after_the_warmup_to_its_floor() {
        let config = TrainConfig {
            steps: 110,
            lr: 1e-3,
            warmup_steps: 10,
            lr_schedule: LrSchedule::Cosine {
                final_fraction: 0.1,
            },
            ..TrainConfig::default()
        };
        assert!((config.lr_at(4) - 0.5e-3).abs() < 1e-18, "warm-up");
        assert_eq!(config.lr_at(10), 1e-3);
        assert!((config.lr_at(60) - 0.55e-3).abs() < 1e-15, "half way");
        assert!((config.lr_at(110) - 1e-4).abs() < 1e-18, "floor");
        let lrs: Vec<f64> = (10..110).map(|s| config.lr_at(s)).collect();
        assert!(lrs.windows(2).all(|w| w[1] < w[0]));
        let constant = TrainConfig {
            lr_schedule: LrSchedule::Constant,
            ..config
        };
        assert_eq!(constant.lr_at(100), 1e-3);
    }
}
