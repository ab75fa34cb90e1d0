//! The transport hyper-parameters a checkpoint records, and the time
//! intervals SiT trains and samples on.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

use super::interpolant::Interpolant;
use super::prediction::Prediction;
use super::sampler::{DiffusionForm, LastStep};
use crate::{bail, Result};

/// How the score and noise losses are weighted over t (SiT's `--loss-weight`).
/// The velocity loss is never weighted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossWeight {
    #[default]
    None,
    /// (w_SBDM/σ)², with w_SBDM = [`PathCoefficients::drift_variance`](super::PathCoefficients).
    Velocity,
    /// w_SBDM/σ².
    Likelihood,
}

/// Everything that defines how a SiT model was trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransportConfig {
    pub interpolant: Interpolant,
    pub prediction: Prediction,
    #[serde(default)]
    pub loss_weight: LossWeight,
    /// Training keeps t away from the singular ends by this much; `None` is
    /// SiT's default for the path and prediction ([`TransportConfig::train_eps`]).
    #[serde(default)]
    pub train_eps: Option<f64>,
    /// As `train_eps`, for sampling.
    #[serde(default)]
    pub sample_eps: Option<f64>,
}

impl Default for TransportConfig {
    /// SiT's: Linear path, velocity prediction, no weighting.
    fn default() -> Self {
        Self {
            interpolant: Interpolant::Linear,
            prediction: Prediction::Velocity,
            loss_weight: LossWeight::None,
            train_eps: None,
            sample_eps: None,
        }
    }
}

/// What an interval is for: SiT cuts off different ends when training, when
/// integrating the probability-flow ODE and when integrating an SDE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Phase {
    Train,
    Ode,
    Sde {
        diffusion: DiffusionForm,
        /// 0 when the SDE has no special last step.
        last_step_size: f64,
    },
}

impl TransportConfig {
    /// ε for training: 1e-5 on VP, 1e-3 for score or noise models on Linear
    /// and GVP, 0 for velocity models on Linear and GVP (stable on all of
    /// [0, 1]); an explicit value always wins.
    ///
    /// SiT's `create_transport` differs in corner cases that look unintended:
    /// it replaces explicit values by 0 for velocity models on Linear/GVP, and
    /// takes the default sample ε whenever train ε is not given.
    pub fn train_eps(&self) -> f64 {
        self.train_eps
            .unwrap_or(match (self.interpolant, self.prediction) {
                (Interpolant::Vp, _) => 1e-5,
                (_, Prediction::Velocity) => 0.0,
                _ => 1e-3,
            })
    }

    /// ε for sampling: 1e-3, or 0 for velocity models on Linear and GVP; an
    /// explicit value always wins.
    pub fn sample_eps(&self) -> f64 {
        self.sample_eps
            .unwrap_or(match (self.interpolant, self.prediction) {
                (Interpolant::Vp, _) => 1e-3,
                (_, Prediction::Velocity) => 0.0,
                _ => 1e-3,
            })
    }

    /// The time interval [t0, t1] of `phase`, as SiT's `check_interval`:
    /// * VP: [0, 1 − ε] (an SDE with a last step stops at 1 − last_step_size);
    /// * Linear/GVP, score or noise model: [ε, 1 − ε], same SDE rule;
    /// * Linear/GVP, velocity model: [0, 1] for training and the ODE; for an
    ///   SDE t0 = ε with the SBDM diffusion (else 0) and t1 as above.
    pub fn interval(&self, phase: Phase) -> (f64, f64) {
        let eps = match phase {
            Phase::Train => self.train_eps(),
            Phase::Ode | Phase::Sde { .. } => self.sample_eps(),
        };
        let (sde, sbdm, last_step_size) = match phase {
            Phase::Sde {
                diffusion,
                last_step_size,
            } => (true, diffusion == DiffusionForm::Sbdm, last_step_size),
            _ => (false, false, 0.0),
        };
        let t1 = if sde && last_step_size != 0.0 {
            1.0 - last_step_size
        } else {
            1.0 - eps
        };
        let velocity = self.prediction == Prediction::Velocity;
        match self.interpolant {
            Interpolant::Vp => (0.0, t1),
            _ if !velocity => (eps, t1),
            _ if sde => (if sbdm { eps } else { 0.0 }, t1),
            _ => (0.0, 1.0),
        }
    }

    /// Checks the combination before anything runs.
    pub fn validate(&self) -> Result<()> {
        if self.prediction == Prediction::Velocity && self.loss_weight != LossWeight::None {
            bail!(
                "loss weight {:?} needs a score or noise prediction: SiT never weights the \
                 velocity loss (drop the loss weight or change the prediction)",
                self.loss_weight
            );
        }
        for (name, eps) in [("train", self.train_eps), ("sample", self.sample_eps)] {
            if let Some(eps) = eps {
                if !(0.0..0.5).contains(&eps) {
                    bail!("{name} ε must be in [0, 0.5), got {eps}");
                }
            }
        }
        Ok(())
    }
}

// Names as SiT's command line spells them (case-insensitive), for the CLI.
macro_rules! parse_names {
    ($ty:ty, $what:literal, [$($name:literal => $value:expr),+ $(,)?]) => {
        impl FromStr for $ty {
            type Err = crate::Error;
            /// Accepts SiT's spelling, case-insensitively.
            fn from_str(s: &str) -> Result<Self> {
                match s.to_ascii_lowercase().as_str() {
                    $($name => Ok($value),)+
                    _ => bail!(
                        concat!("unknown ", $what, " {:?}; expected one of: {}"),
                        s,
                        [$($name),+].join(", ")
                    ),
                }
            }
        }
    };
}

parse_names!(Interpolant, "path", [
    "linear" => Interpolant::Linear,
    "gvp" => Interpolant::Gvp,
    "vp" => Interpolant::Vp,
]);
parse_names!(Prediction, "prediction", [
    "velocity" => Prediction::Velocity,
    "score" => Prediction::Score,
    "noise" => Prediction::Noise,
]);
parse_names!(LossWeight, "loss weight", [
    "none" => LossWeight::None,
    "velocity" => LossWeight::Velocity,
    "likelihood" => LossWeight::Likelihood,
]);
parse_names!(DiffusionForm, "diffusion form", [
    "constant" => DiffusionForm::Constant,
    "sbdm" => DiffusionForm::Sbdm,
    "sigma" => DiffusionForm::Sigma,
    "linear" => DiffusionForm::Linear,
    "decreasing" => DiffusionForm::Decreasing,
    "increasing-decreasing" => DiffusionForm::IncreasingDecreasing,
]);
parse_names!(LastStep, "last step", [
    "none" => LastStep::None,
    "mean" => LastStep::Mean,
    "tweedie" => LastStep::Tweedie,
    "euler" => LastStep::Euler,
]);
