//! One sampling job's model evaluations: a model, its objective's reverse
//! process (a respaced Gaussian diffusion, or a transport's ODE/SDE), a
//! sampler and classifier-free guidance.
//!
//! Every image's noise comes from a stream keyed by (seed, global image
//! index), so a batch of 8 equals two batches of 4, and shards of a large job
//! concatenate to the unsharded result image for image.

use crate::diffusion::{
    guidance::double_batch, ClassifierFreeGuidance, GaussianDiffusion, GuidanceChannels,
    NoiseSource, SampleOptions, SampleStep, Sampler,
};
use crate::dist::BatchSplit;
use crate::model::Dit;
use crate::transport::{Hooks, ObjectiveConfig, SamplerConfig, Transport};
use crate::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// A sampler of either family: the diffusion samplers for DDPM-trained
/// models, the transport integrators for SiT-trained ones.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerChoice {
    Diffusion(Sampler),
    Transport(SamplerConfig),
}

impl SamplerChoice {
    /// A short name: "ddpm", "ddim", "dpm++", "ode-dopri5", "sde-euler", ….
    pub fn name(&self) -> String {
        use crate::transport::{OdeMethod, SdeMethod};
        match self {
            SamplerChoice::Diffusion(Sampler::Ddpm) => "ddpm".into(),
            SamplerChoice::Diffusion(Sampler::Ddim { .. }) => "ddim".into(),
            SamplerChoice::Diffusion(Sampler::DpmSolverPP2M) => "dpm++".into(),
            SamplerChoice::Transport(SamplerConfig::Ode(ode)) => match ode.method {
                OdeMethod::Euler => "ode-euler".into(),
                OdeMethod::Heun => "ode-heun".into(),
                OdeMethod::Dopri5 => "ode-dopri5".into(),
            },
            SamplerChoice::Transport(SamplerConfig::Sde(sde)) => match sde.method {
                SdeMethod::Euler => "sde-euler".into(),
                SdeMethod::Heun => "sde-heun".into(),
            },
        }
    }
}

/// The samplers of DDPM-trained models, by name.
pub const DIFFUSION_SAMPLERS: &[&str] = &["ddpm", "ddim", "dpm++"];
/// The samplers of SiT-trained models, by name.
pub const TRANSPORT_SAMPLERS: &[&str] = &[
    "ode-dopri5",
    "ode-heun",
    "ode-euler",
    "sde-euler",
    "sde-heun",
];

impl SamplerChoice {
    /// The sampler called `name` with its default settings: DDIM with η = 0,
    /// the transport samplers on `grid_points` points (SiT's defaults
    /// otherwise). `None` for an unknown name.
    pub fn from_name(name: &str, grid_points: usize) -> Option<SamplerChoice> {
        use crate::transport::{OdeConfig, OdeMethod, SdeConfig, SdeMethod};
        let ode = |method| {
            SamplerChoice::Transport(SamplerConfig::Ode(OdeConfig {
                method,
                num_steps: grid_points,
                ..OdeConfig::default()
            }))
        };
        let sde = |method| {
            SamplerChoice::Transport(SamplerConfig::Sde(SdeConfig {
                method,
                num_steps: grid_points,
                ..SdeConfig::default()
            }))
        };
        Some(match name {
            "ddpm" => SamplerChoice::Diffusion(Sampler::Ddpm),
            "ddim" => SamplerChoice::Diffusion(Sampler::Ddim { eta: 0.0 }),
            "dpm++" => SamplerChoice::Diffusion(Sampler::DpmSolverPP2M),
            "ode-dopri5" => ode(OdeMethod::Dopri5),
            "ode-heun" => ode(OdeMethod::Heun),
            "ode-euler" => ode(OdeMethod::Euler),
            "sde-euler" => sde(SdeMethod::Euler),
            "sde-heun" => sde(SdeMethod::Heun),
            _ => return None,
        })
    }

    /// The names of the samplers that fit a model trained with `objective`.
    pub fn names_for(objective: &ObjectiveConfig) -> &'static [&'static str] {
        match objective {
            ObjectiveConfig::Ddpm(_) => DIFFUSION_SAMPLERS,
            ObjectiveConfig::Sit(_) => TRANSPORT_SAMPLERS,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleSettings {
    /// Diffusion samplers: the respacing of the training diffusion ("250",
    /// "ddim50", "10,10,10"). Transport samplers take their step count from
    /// their own configuration.
    pub steps: String,
    pub sampler: SamplerChoice,
    /// 1.0 = no guidance (no null-class half is computed).
    pub cfg_scale: f64,
    pub guidance_channels: GuidanceChannels,
    pub seed: u64,
    /// Diffusion samplers: clip x̂0 to [−1, 1] at every step.
    pub clip_denoised: bool,
    /// Run each model call as this many parts of the batch at once, each on
    /// its own worker ([`BatchSplit`]); 1: the whole batch on the calling
    /// thread's pool. Each sample is computed from its own inputs alone
    /// either way (up to float rounding: gemm's f32 kernels for few rows add
    /// in another order than for many).
    pub batch_parts: usize,
}

impl Default for SampleSettings {
    /// The official `sample.py`: 250 DDPM steps, guidance 4.0 on 3 channels.
    fn default() -> Self {
        Self {
            steps: "250".into(),
            sampler: SamplerChoice::Diffusion(Sampler::Ddpm),
            cfg_scale: 4.0,
            guidance_channels: GuidanceChannels::Official,
            seed: 0,
            clip_denoised: false,
            batch_parts: 1,
        }
    }
}

/// The reverse process a generator runs.
enum Process {
    Diffusion(Box<GaussianDiffusion>, Sampler),
    Transport(Transport, SamplerConfig),
}

pub struct Generator<'a> {
    model: &'a Dit,
    process: Process,
    settings: SampleSettings,
    split: BatchSplit,
}

impl<'a> Generator<'a> {
    /// Checks that the model, its objective and the sampler fit together.
    pub fn new(
        model: &'a Dit,
        objective: &ObjectiveConfig,
        settings: SampleSettings,
    ) -> Result<Self> {
        if !settings.cfg_scale.is_finite() {
            bail!(
                "the guidance scale must be a finite number, got {} (1 = no guidance)",
                settings.cfg_scale
            );
        }
        if settings.cfg_scale != 1.0 && model.config().null_class().is_none() {
            bail!("guidance needs a model trained with class dropout (it has no null class); use --cfg-scale 1");
        }
        let process = match (objective, settings.sampler) {
            (ObjectiveConfig::Ddpm(diffusion), SamplerChoice::Diffusion(sampler)) => {
                if diffusion.learn_sigma() != model.config().learn_sigma {
                    bail!(
                        "the diffusion's variance type ({:?}) does not match the model (learn_sigma = {})",
                        diffusion.variance,
                        model.config().learn_sigma
                    );
                }
                let diffusion = GaussianDiffusion::new(diffusion)?
                    .respace(&settings.steps)
                    .with_context(|| format!("--steps {}", settings.steps))?
                    .to_device(model.device())?;
                Process::Diffusion(Box::new(diffusion), sampler)
            }
            (ObjectiveConfig::Sit(transport), SamplerChoice::Transport(sampler)) => {
                Process::Transport(Transport::new(transport.clone())?, sampler)
            }
            (ObjectiveConfig::Ddpm(_), other) => bail!(
                "this model was trained with DDPM's diffusion: sample it with ddpm, ddim or dpm++, not {}",
                other.name()
            ),
            (ObjectiveConfig::Sit(_), other) => bail!(
                "this model was trained with SiT's transport objective: sample it with \
                 ode-dopri5, ode-heun, ode-euler, sde-euler or sde-heun, not {}",
                other.name()
            ),
        };
        Ok(Self {
            model,
            process,
            split: BatchSplit::sharing_threads(settings.batch_parts.max(1))?,
            settings,
        })
    }

    /// Progress units of one batch: model evaluations for the fixed-step
    /// samplers, thousandths of the time interval for the adaptive ODE.
    pub fn num_steps(&self) -> usize {
        use crate::transport::OdeMethod;
        match &self.process {
            Process::Diffusion(diffusion, _) => diffusion.num_timesteps(),
            Process::Transport(_, SamplerConfig::Ode(ode)) => match ode.method {
                OdeMethod::Dopri5 => 1000,
                _ => ode.num_steps.saturating_sub(1),
            },
            Process::Transport(_, SamplerConfig::Sde(sde)) => sde.num_steps,
        }
    }

    /// Samples in model space `(N, C, H, W)` for `labels`, the images having
    /// global indices `first_index ..`. `progress(done, total)` reports the
    /// batch's progress in [`Generator::num_steps`] units.
    pub fn generate(
        &self,
        labels: &[u32],
        first_index: u64,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor> {
        let noise = NoiseSource::new(self.settings.seed, first_index, labels.len());
        self.generate_observed(labels, noise, false, &mut |step| {
            progress(step.done, step.total);
            Ok(())
        })
    }

    /// Samples for `labels` drawing from `noise` (one stream per label, e.g.
    /// several requests' [`NoiseSource`]s joined), showing `observer` every
    /// step; an error from the observer abandons the batch. With `previews`,
    /// each step can show the process's current estimate of the clean
    /// samples ([`SamplingStep::estimate`]; for the transport samplers it is
    /// computed at every model call, so leave it off otherwise).
    pub fn generate_observed(
        &self,
        labels: &[u32],
        mut noise: NoiseSource,
        previews: bool,
        observer: &mut SamplingObserver<'_>,
    ) -> Result<Tensor> {
        let cfg = self.model.config();
        let device: Device = self.model.device().clone();
        let n = labels.len();
        if noise.batch_size() != n {
            bail!(
                "{} noise streams for {n} labels: one stream per image",
                noise.batch_size()
            );
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= cfg.num_classes) {
            bail!(
                "class {bad} out of range: the model has {} classes",
                cfg.num_classes
            );
        }
        let y = Tensor::new(labels, &device)?;
        let guidance =
            ClassifierFreeGuidance::new(self.settings.cfg_scale, self.settings.guidance_channels);
        let null = cfg.null_class();
        // t is whatever the process feeds the network: original DDPM
        // timesteps, or SiT's times in [0, 1].
        let denoise_part = |x: &Tensor, t: &Tensor, y: &Tensor| -> Result<Tensor> {
            let out = match null.filter(|_| guidance.scale != 1.0) {
                Some(null) => {
                    let (x2, t2, y2) = double_batch(x, t, y, null)?;
                    let out = self.model.forward_with_cfg(&x2, &t2, &y2, &guidance)?;
                    out.narrow(0, 0, x.dim(0)?)?
                }
                None => self.model.forward(x, t, y)?,
            };
            // Whatever the weights are (even Vars), a sampling loop keeps no graph.
            Ok(out.detach())
        };
        let mut denoise = |x: &Tensor, t: &Tensor| -> Result<Tensor> {
            if self.split.parts() == 1 || n < self.split.parts() {
                return denoise_part(x, t, &y);
            }
            let parts = self.split.run(n, |part| {
                let slice = |a: &Tensor| a.narrow(0, part.start, part.len());
                denoise_part(&slice(x)?, &slice(t)?, &slice(&y)?)
            })?;
            Ok(Tensor::cat(&parts, 0)?)
        };
        let shape = [n, cfg.in_channels, cfg.input_size, cfg.input_size];
        match &self.process {
            Process::Diffusion(diffusion, sampler) => {
                let options = SampleOptions {
                    sampler: *sampler,
                    clip_denoised: self.settings.clip_denoised,
                };
                let x_t = noise.draw(&shape, self.model.dtype(), &device)?;
                diffusion.sample_observed(&mut denoise, x_t, &options, &mut noise, &mut |step| {
                    observer(&SamplingStep {
                        done: step.done,
                        total: step.total,
                        estimate: Estimate::Diffusion(step),
                    })
                })
            }
            Process::Transport(transport, sampler) => {
                let latest: RefCell<Option<Tensor>> = RefCell::new(None);
                let mut keep = |_t: f64, x1: &Tensor| *latest.borrow_mut() = Some(x1.clone());
                let mut report = |done, total| {
                    let estimate = latest.borrow_mut().take();
                    observer(&SamplingStep {
                        done,
                        total,
                        estimate: Estimate::Data(estimate.as_ref()),
                    })
                };
                let hooks = Hooks {
                    progress: Some(&mut report),
                    preview: if previews { Some(&mut keep) } else { None },
                };
                Ok(transport
                    .sample(&mut denoise, &shape, &device, sampler, &mut noise, hooks)?
                    .x)
            }
        }
    }
}

/// Sees each step of a sampling loop of either family; returning an error
/// stops the loop.
pub type SamplingObserver<'a> = dyn FnMut(&SamplingStep<'_>) -> Result<()> + 'a;

/// One finished step of a sampling loop: `done` of `total` progress units.
pub struct SamplingStep<'a> {
    pub done: usize,
    pub total: usize,
    estimate: Estimate<'a>,
}

enum Estimate<'a> {
    /// x̂0 is computed from the step on demand.
    Diffusion(&'a SampleStep<'a>),
    /// The transport's data estimate after its last model call, when previews
    /// were asked for.
    Data(Option<&'a Tensor>),
}

impl SamplingStep<'_> {
    /// The current estimate of the clean samples in model space (x̂0 of a
    /// diffusion step, x̂1 of a transport step), when there is one.
    pub fn estimate(&self) -> Result<Option<Tensor>> {
        match &self.estimate {
            Estimate::Diffusion(step) => step.pred_x0().map(Some),
            Estimate::Data(estimate) => Ok(estimate.cloned()),
        }
    }
}
