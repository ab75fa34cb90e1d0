//! The training run: set up (fresh or resumed), then steps of diffusion loss,
//! AdamW and EMA, with checkpoints, records and preview grids between them.
//!
//! [`TrainRun`] holds one run's state; its pieces ([`TrainRun::setup`],
//! [`TrainRun::step`], [`TrainRun::save_checkpoint`],
//! [`TrainRun::write_preview`]) are usable on their own, and
//! [`TrainRun::run`] strings them together as `dit train` does.

use super::adamw::{AdamW, AdamWConfig};
use super::checkpoint::{checkpoint_path, DataSpec, TrainCheckpoint, TrainState};
use super::config::TrainConfig;
use super::ema::Ema;
use super::records::{Records, StepFigures, TrainObserver};
use super::step_noise;
use crate::compute::Compute;
use crate::data::{Dataset, Loader, LoaderConfig, LoaderState};
use crate::dist::{
    sum_grads, BatchShare, BatchSplit, BucketedAllReduce, Communicator, Reduction, SingleProcess,
};
use crate::model::params::initial_tensors;
use crate::model::{Dit, DitConfig};
use crate::sample::sheet::{contact_sheet, SheetRow};
use crate::sample::{images, Generator, SampleSettings, SamplerChoice};
use crate::transport::{Objective, ObjectiveConfig, OdeConfig, OdeMethod, SamplerConfig};
use crate::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Samples per class row of a preview sheet.
pub const PREVIEW_PER_CLASS: usize = 8;

/// Everything a run needs.
pub struct TrainJob {
    pub model: DitConfig,
    /// DDPM's diffusion (DiT) or SiT's transport.
    pub objective: ObjectiveConfig,
    pub train: TrainConfig,
    pub dataset: Arc<dyn Dataset>,
    /// Where the data came from (recorded; a resume must match it).
    pub data_source: String,
    pub out_dir: PathBuf,
    /// A checkpoint to continue from.
    pub resume: Option<PathBuf>,
    /// Where and in which precision to compute (master weights stay f32).
    pub compute: Compute,
    pub skip_bad_images: bool,
    /// Latent-space training: each dataset sample holds VAE posterior
    /// moments `[mean, logvar]` (2C channels) and the trainer draws
    /// `z = scale·(mean + exp(logvar/2)·ε)` afresh every step.
    pub latent_scale: Option<f64>,
    /// Compute every batch (this process's share of it) as this many parts
    /// at once, each on its own worker thread ([`BatchSplit`]); 1: whole,
    /// on the calling thread's pool. Only the order of float additions
    /// depends on it, so a run may resume with another.
    pub batch_parts: usize,
}

/// What a finished run reports.
pub struct TrainOutcome {
    pub steps: u64,
    pub last_checkpoint: PathBuf,
    /// Mean loss over the last 10% of the steps this invocation ran.
    pub final_loss: f64,
    pub seconds: f64,
    pub skipped_images: usize,
}

/// One step's results.
#[derive(Clone, Copy, Debug)]
pub struct StepOutcome {
    /// Steps completed, this one included.
    pub step: u64,
    pub figures: StepFigures,
}

/// Runs (or continues) training until `train.steps`.
pub fn train(job: TrainJob, observer: &mut dyn TrainObserver) -> Result<TrainOutcome> {
    TrainRun::setup(job)?.run(observer)
}

/// [`train`] as one rank of a multi-process job (every rank calls it with
/// the same job): each rank computes its share of every batch, gradients
/// are averaged over the ranks, and rank 0 alone writes checkpoints,
/// records and previews (and reports to `observer`).
/// An error on any rank ends the whole job, naming the rank and what it was
/// doing (the last checkpoint, written atomically, stays whole): the other
/// ranks would otherwise wait for it in a collective.
pub fn train_distributed(
    job: TrainJob,
    comm: Arc<dyn Communicator>,
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome> {
    let outcome = TrainRun::setup_with(job, comm.clone()).and_then(|run| run.run(observer));
    match outcome {
        Err(err) if comm.world_size() > 1 => comm.abort(&err.to_string()),
        outcome => outcome,
    }
}

/// A run in progress: the model's parameters, optimiser, EMA, data stream
/// and records, at a step.
pub struct TrainRun {
    job: TrainJob,
    /// The other processes of the job (a [`SingleProcess`] when alone).
    comm: Arc<dyn Communicator>,
    /// This process's samples of every batch.
    share: BatchShare,
    /// How this process computes its share.
    split: BatchSplit,
    data: DataSpec,
    objective: Objective,
    /// Trainable parameters in a fixed (sorted) order.
    params: Vec<(String, Var)>,
    model: Dit,
    optimizer: AdamW,
    ema: Ema,
    loader: Loader,
    /// Rank 0's metrics and loss plot (other ranks keep none).
    records: Option<Records>,
    /// Steps completed.
    step: u64,
    last_checkpoint: Option<PathBuf>,
}

impl TrainRun {
    /// One step, then (rank 0) its records, and the preview and checkpoint
    /// due at it.
    fn step_and_record(&mut self, observer: &mut dyn TrainObserver) -> Result<StepOutcome> {
        let outcome = self.step()?;
        let done = outcome.step;
        if let Some(records) = self.records.as_mut() {
            let logged = records.step(done, outcome.figures)?;
            observer.step(done, logged.as_ref());
        }
        let t = &self.job.train;
        let last = done == t.steps;
        if self.previews_enabled() && (done % t.sample_every == 0 || last) {
            if let Some(path) = self.write_preview()? {
                observer.note(&format!("samples: {}", path.display()));
            }
        }
        if done % t.checkpoint_every.max(1) == 0 || last {
            self.save_checkpoint()?;
            if self.records.is_some() {
                observer.note(&format!("checkpoint at step {done}"));
            }
        }
        Ok(outcome)
    }

    /// Checks the job, then builds the model (fresh from the seed, or from
    /// `job.resume` with its optimiser, EMA and data position).
    pub fn setup(job: TrainJob) -> Result<Self> {
        Self::setup_with(job, Arc::new(SingleProcess))
    }

    /// [`TrainRun::setup`] as one rank of `comm`'s job: refuses a job that
    /// differs between ranks, and starts every rank from rank 0's weights.
    pub fn setup_with(job: TrainJob, comm: Arc<dyn Communicator>) -> Result<Self> {
        let share = BatchShare::of(comm.rank(), comm.world_size(), job.train.batch_size)?;
        let split = BatchSplit::sharing_threads(job.batch_parts.max(1))?;
        split.ranges(share.count)?;
        let leader = comm.rank() == 0;
        let data = DataSpec {
            source: job.data_source.clone(),
            sample_shape: job.dataset.sample_shape(),
            class_names: job.dataset.class_names().to_vec(),
        };
        check_model_fits_data(&job.model, &data, job.latent_scale.is_some())?;
        let device = &job.compute.device;
        let objective = Objective::new(&job.objective)?.to_device(device)?;
        if objective
            .requires_learn_sigma()
            .is_some_and(|learned| learned != job.model.learn_sigma)
        {
            bail!("the model's learn_sigma and the diffusion's variance type disagree");
        }
        let master = job.compute.master_dtype();

        let (tensors, resumed) = match &job.resume {
            Some(path) => {
                let ckpt = TrainCheckpoint::load(path, device)?;
                check_resume(&job, &data, &ckpt, path)?;
                let params = ckpt.params.clone();
                (params, Some(ckpt))
            }
            None => {
                if leader {
                    refuse_existing_run(&job.out_dir)?;
                }
                let mut t = initial_tensors(&job.model, job.train.seed, device, master)?;
                t.remove("pos_embed");
                (t, None)
            }
        };
        if comm.world_size() > 1 {
            check_ranks_agree(&*comm, &job, &data, resumed.as_ref().map(|c| c.state.step))?;
        }
        if leader {
            std::fs::create_dir_all(job.out_dir.join("checkpoints"))
                .with_context(|| format!("creating {}", job.out_dir.display()))?;
        }

        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        let params: Vec<(String, Var)> = names
            .into_iter()
            .map(|n| {
                let mut t = tensors[n].to_dtype(master)?;
                if comm.world_size() > 1 {
                    // Every rank starts from rank 0's weights.
                    t = comm.broadcast_tensor(&t, 0)?;
                }
                Ok((n.clone(), Var::from_tensor(&t)?))
            })
            .collect::<Result<_>>()?;
        let model_tensors: HashMap<String, Tensor> = params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let model = Dit::from_tensors(job.model.clone(), &model_tensors)?
            .with_precision(job.compute.precision);

        let t = &job.train;
        let mut optimizer = AdamW::new(
            params.clone(),
            AdamWConfig {
                lr: t.lr,
                beta1: t.beta1,
                beta2: t.beta2,
                eps: t.eps,
                weight_decay: t.weight_decay,
            },
        )?;
        let mut ema = Ema::new(&params, t.ema_decay)?;
        let (step, loader_state) = match &resumed {
            Some(ckpt) => {
                optimizer
                    .load_state(&ckpt.optimizer)
                    .context("restoring the optimizer state")?;
                ema.load_state(&ckpt.ema)
                    .context("restoring the EMA weights")?;
                (ckpt.state.step, ckpt.state.loader)
            }
            None => (0, LoaderState::default()),
        };
        let loader = Loader::new(
            job.dataset.clone(),
            LoaderConfig {
                flip: t.flip,
                skip_bad_images: job.skip_bad_images,
                share: Some(share),
                ..LoaderConfig::new(t.batch_size, t.seed)
            },
            loader_state,
            device,
        )?;
        let records = match leader {
            true => Some(Records::open(&job.out_dir, t.steps)?),
            false => None,
        };
        Ok(Self {
            comm,
            share,
            split,
            last_checkpoint: job.resume.clone(),
            data,
            objective,
            params,
            model,
            optimizer,
            ema,
            loader,
            records,
            step,
            job,
        })
    }

    /// Steps completed so far.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// One optimisation step: a batch, its loss, the gradients (clipped when
    /// asked), AdamW and the EMA. A non-finite loss stops the run before
    /// anything is updated, naming the step and the last good checkpoint.
    pub fn step(&mut self) -> Result<StepOutcome> {
        let t = &self.job.train;
        let step = self.step;
        let device = &self.job.compute.device;
        let batch = self.loader.next_batch()?;
        let share = self.share;
        let x0 = match self.job.latent_scale {
            Some(scale) => step_noise::latent_sample(t.seed, step, &batch.x, share, scale)?,
            None => batch.x,
        };
        let dropout = step_noise::LabelDropout {
            null_class: self.job.model.null_class(),
            prob: self.job.model.class_dropout_prob,
        };
        // Labels after dropout, the objective's times and its noise.
        let (y, times, noise) = match &self.objective {
            Objective::Ddpm(diffusion) => {
                let draws = step_noise::draw(
                    t.seed,
                    step,
                    &batch.labels,
                    share,
                    x0.dims(),
                    diffusion.num_timesteps(),
                    dropout,
                    x0.dtype(),
                    device,
                )?;
                (draws.y, draws.t, draws.noise)
            }
            Objective::Sit(transport) => {
                let y = step_noise::labels_after_dropout(
                    t.seed,
                    step,
                    &batch.labels,
                    share,
                    dropout,
                    device,
                )?;
                let draws = transport.draw_share(t.seed, step, share, x0.dims(), device)?;
                (y, draws.t, draws.noise)
            }
        };
        // Each part of the batch: its share of the batch-mean loss (sum over
        // the part / the batch: the parts add up to the mean), its scalars and
        // its gradients, at once on the split's workers.
        let (model, objective) = (&self.model, &self.objective);
        let count = share.count;
        let parts = self.split.run(count, |part| {
            let slice = |t: &Tensor| t.narrow(0, part.start, part.len());
            let (x0, y, times, noise) = (slice(&x0)?, slice(&y)?, slice(&times)?, slice(&noise)?);
            let terms = objective.loss(|x_t, t| model.forward(x_t, t, &y), &x0, &times, &noise)?;
            let loss = (terms.loss.sum_all()? / count as f64)?;
            let mut scalars = vec![loss.clone(), (terms.mse.sum_all()? / count as f64)?];
            if let Some(vb) = &terms.vb {
                scalars.push((vb.sum_all()? / count as f64)?);
            }
            // The part's scalars in one read from the device.
            let scalars = Tensor::stack(&scalars, 0)?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?;
            Ok((scalars, loss.backward()?))
        })?;
        let (part_scalars, part_grads): (Vec<Vec<f32>>, Vec<GradStore>) = parts.into_iter().unzip();
        let mut scalars = part_scalars[0].clone();
        for more in &part_scalars[1..] {
            scalars.iter_mut().zip(more).for_each(|(s, m)| *s += m);
        }
        let world = self.comm.world_size();
        if world > 1 {
            // Every rank's mean over an equal share: their mean is the batch's.
            self.comm.all_reduce_mean(&mut scalars)?;
        }
        let loss_value = scalars[0] as f64;
        if !loss_value.is_finite() {
            let kept = self
                .last_checkpoint
                .as_ref()
                .map_or("none was written yet".to_string(), |p| {
                    p.display().to_string()
                });
            bail!(
                "the loss became {loss_value} at step {} (training diverged); stopped without saving. \
                 Last good checkpoint: {kept}. Try a lower --lr or --grad-clip.",
                step + 1
            );
        }
        let mut grads = sum_grads(part_grads, &self.params)?;
        if world > 1 {
            average_grads(&*self.comm, &mut grads, &self.params)?;
        }
        let grad_norm = global_norm(&grads, &self.params)?;
        if let Some(max) = t.grad_clip.filter(|max| grad_norm > *max) {
            scale_grads(&mut grads, &self.params, max / grad_norm)?;
        }
        let lr = t.lr_at(step);
        self.optimizer.set_lr(lr);
        self.optimizer.step(&grads)?;
        self.ema.set_decay(t.ema_decay_at(step));
        self.ema.update(&self.params)?;
        self.step = step + 1;
        Ok(StepOutcome {
            step: self.step,
            figures: StepFigures {
                loss: loss_value,
                mse: scalars[1] as f64,
                vb: scalars.get(2).map_or(0.0, |&v| v as f64),
                lr,
                grad_norm,
                epoch: batch.epoch,
            },
        })
    }

    /// Writes a checkpoint of the current step (atomically) and redraws the
    /// records; returns its path. In a multi-process job rank 0 alone writes
    /// (every rank holds the same weights); the others return the path.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let path = checkpoint_path(&self.job.out_dir, self.step);
        let Some(records) = self.records.as_mut() else {
            self.last_checkpoint = Some(path.clone());
            return Ok(path);
        };
        TrainCheckpoint {
            model_config: self.job.model.clone(),
            objective: self.job.objective.clone(),
            state: TrainState {
                step: self.step,
                loader: self.loader.state(),
                data: self.data.clone(),
                train: self.job.train.clone(),
            },
            params: self
                .params
                .iter()
                .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?)))
                .collect::<Result<_>>()?,
            ema: self.ema.tensors()?,
            optimizer: self.optimizer.state()?,
        }
        .save(&path)?;
        records.checkpoint()?;
        self.last_checkpoint = Some(path.clone());
        Ok(path)
    }

    /// Whether this run draws preview grids: pixel-space runs only, since
    /// the trainer has no VAE decoder for latents.
    pub fn previews_enabled(&self) -> bool {
        self.job.train.sample_every > 0 && self.job.latent_scale.is_none()
    }

    /// A contact sheet from the EMA model: one labelled row per class (up
    /// to 10 classes), [`PREVIEW_PER_CLASS`] samples each, enlarged, the step
    /// in the title; `samples/step-N.png` and `samples/latest.png`. `None`
    /// for latent-space runs.
    pub fn write_preview(&self) -> Result<Option<PathBuf>> {
        if self.job.latent_scale.is_some() || self.records.is_none() {
            return Ok(None);
        }
        let job = &self.job;
        // Detached: sampling must not record an autograd graph.
        let weights = self
            .ema
            .tensors()?
            .into_iter()
            .map(|(k, t)| (k, t.detach()))
            .collect();
        let model =
            Dit::from_tensors(job.model.clone(), &weights)?.with_precision(job.compute.precision);
        let classes: Vec<u32> = (0..job.model.num_classes.min(10))
            .map(|c| (c * job.model.num_classes / job.model.num_classes.min(10)) as u32)
            .collect();
        let labels: Vec<u32> = classes
            .iter()
            .flat_map(|&c| std::iter::repeat_n(c, PREVIEW_PER_CLASS))
            .collect();
        let cfg_scale = if job.model.null_class().is_some() {
            job.train.sample_cfg_scale
        } else {
            1.0
        };
        let sampler = match &job.objective {
            ObjectiveConfig::Ddpm(_) => {
                SamplerChoice::Diffusion(crate::diffusion::Sampler::DpmSolverPP2M)
            }
            // Heun on as many grid points as DPM-Solver++ takes steps.
            ObjectiveConfig::Sit(_) => SamplerChoice::Transport(SamplerConfig::Ode(OdeConfig {
                method: OdeMethod::Heun,
                num_steps: job.train.sample_steps.parse().unwrap_or(20),
                ..OdeConfig::default()
            })),
        };
        let settings = SampleSettings {
            steps: job.train.sample_steps.clone(),
            sampler,
            cfg_scale,
            seed: job.train.seed,
            // Pixel space: keep x̂0 in the data range, as ADM's pixel samplers do;
            // early in training the unclipped estimate at large t is far outside it.
            clip_denoised: true,
            batch_parts: BatchSplit::default_parts(&job.compute.device, labels.len()),
            ..Default::default()
        };
        let sampler_name = settings.sampler.name();
        let generator = Generator::new(&model, &job.objective, settings)?;
        let samples = generator.generate(&labels, 0, &mut |_, _| {})?;
        let (_, c, h, w) = samples.dims4()?;
        let pixels = images::to_u8(&samples)?;
        let rows: Vec<SheetRow> = classes
            .iter()
            .zip(pixels.chunks(PREVIEW_PER_CLASS))
            .map(|(&class, row)| SheetRow {
                label: self
                    .data
                    .class_names
                    .get(class as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("class {class}")),
                images: row.iter().map(Vec::as_slice).collect(),
            })
            .collect();
        let title = format!(
            "step {} · EMA weights · {sampler_name}, {} steps · guidance {cfg_scale}",
            self.step, job.train.sample_steps
        );
        let scale = if h.max(w) <= 64 { 3 } else { 1 };
        let sheet = image::DynamicImage::ImageRgb8(contact_sheet(&title, &rows, (c, h, w), scale));
        let dir = job.out_dir.join("samples");
        std::fs::create_dir_all(&dir).map_err(|e| crate::Error::file(&dir, e))?;
        let path = dir.join(format!("step-{:07}.png", self.step));
        images::save_png(&path, &sheet)?;
        images::save_png(&dir.join("latest.png"), &sheet)?;
        Ok(Some(path))
    }

    /// Steps until `train.steps`, with checkpoints, records and previews at
    /// their intervals and at the end.
    pub fn run(mut self, observer: &mut dyn TrainObserver) -> Result<TrainOutcome> {
        let started = Instant::now();
        let total = self.job.train.steps;
        let first = self.step;
        let tail_from = first + (total - first.min(total)) * 9 / 10;
        let mut tail_losses = Vec::new();
        let leader = self.records.is_some();
        if leader {
            observer.start(first, total);
        }
        while self.step < total {
            let step = self.step + 1;
            let outcome = self
                .step_and_record(observer)
                .with_context(|| format!("step {step}"))?;
            if outcome.step > tail_from {
                tail_losses.push(outcome.figures.loss);
            }
        }
        if leader {
            observer.finish();
        }
        self.comm.finish()?;
        let last_checkpoint = self
            .last_checkpoint
            .clone()
            .context("nothing to do: the run already reached --steps")?;
        Ok(TrainOutcome {
            steps: total,
            last_checkpoint,
            final_loss: tail_losses.iter().sum::<f64>() / tail_losses.len().max(1) as f64,
            seconds: started.elapsed().as_secs_f64(),
            skipped_images: self.loader.skipped_images().len(),
        })
    }
}

fn check_model_fits_data(model: &DitConfig, data: &DataSpec, latent: bool) -> Result<()> {
    let (c, h, w) = data.sample_shape;
    // Latent samples carry mean and log-variance: twice the model's channels.
    let c = if latent { c / 2 } else { c };
    if (c, h, w) != (model.in_channels, model.input_size, model.input_size) {
        bail!(
            "the data is {c}×{h}×{w} but the model expects {}×{}×{}",
            model.in_channels,
            model.input_size,
            model.input_size
        );
    }
    if data.class_names.len() != model.num_classes {
        bail!(
            "the data has {} classes but the model {}",
            data.class_names.len(),
            model.num_classes
        );
    }
    Ok(())
}

fn check_resume(
    job: &TrainJob,
    data: &DataSpec,
    ckpt: &TrainCheckpoint,
    path: &Path,
) -> Result<()> {
    let p = path.display();
    if ckpt.model_config != job.model {
        bail!(
            "cannot resume from {p}: it holds a different model ({}; this run asks for {})",
            ckpt.model_config.describe(),
            job.model.describe()
        );
    }
    if ckpt.state.data.class_names != data.class_names {
        bail!(
            "cannot resume from {p}: its classes ({}) differ from the data's ({})",
            ckpt.state.data.class_names.join(", "),
            data.class_names.join(", ")
        );
    }
    if ckpt.state.data.sample_shape != data.sample_shape {
        bail!(
            "cannot resume from {p}: it was trained on {:?} samples, the data is {:?}",
            ckpt.state.data.sample_shape,
            data.sample_shape
        );
    }
    if ckpt.objective != job.objective {
        bail!("cannot resume from {p}: its objective (diffusion or transport settings) differs from this run's");
    }
    let (old, new) = (&ckpt.state.train, &job.train);
    if old.batch_size != new.batch_size || old.seed != new.seed || old.flip != new.flip {
        bail!(
            "cannot resume from {p}: batch size, seed and flips must stay as they were ({}, {}, {})",
            old.batch_size,
            old.seed,
            old.flip
        );
    }
    Ok(())
}

/// A run folder that already holds checkpoints is only continued with --resume.
fn refuse_existing_run(out: &Path) -> Result<()> {
    let dir = out.join("checkpoints");
    let has_checkpoints = std::fs::read_dir(&dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if has_checkpoints {
        bail!(
            "{} already holds checkpoints: continue it with --resume {} or choose another --out",
            out.display(),
            out.display()
        );
    }
    Ok(())
}

/// Refuses a job whose ranks were started differently (other data, model,
/// objective, seed, settings or resume point): each rank's description is
/// compared with rank 0's there, and every rank gets the verdict.
fn check_ranks_agree(
    comm: &dyn Communicator,
    job: &TrainJob,
    data: &DataSpec,
    resume_step: Option<u64>,
) -> Result<()> {
    let description = serde_json::to_vec(&serde_json::json!({
        "model": job.model,
        "objective": job.objective,
        "train": job.train,
        "data": data,
        "samples": job.dataset.len(),
        "latent_scale": job.latent_scale,
        "resume_step": resume_step,
    }))?;
    let mut verdict = match comm.gather_bytes(&description, 0)? {
        Some(all) => all
            .iter()
            .enumerate()
            .find(|(_, d)| **d != description)
            .map(|(rank, theirs)| {
                format!(
                    "rank {rank} was started with another configuration than rank 0 \
                     (every rank needs the same data, model, objective, seed and settings): \
                     rank 0 has {}, rank {rank} has {}",
                    String::from_utf8_lossy(&description),
                    String::from_utf8_lossy(theirs)
                )
            })
            .unwrap_or_default()
            .into_bytes(),
        None => Vec::new(),
    };
    comm.broadcast_bytes(&mut verdict, 0)?;
    if !verdict.is_empty() {
        bail!("{}", String::from_utf8_lossy(&verdict));
    }
    Ok(())
}

/// Replaces every gradient with its mean over the ranks (bucketed
/// all-reduces), so that every rank applies the same update.
fn average_grads(
    comm: &dyn Communicator,
    grads: &mut GradStore,
    params: &[(String, Var)],
) -> Result<()> {
    let present: Vec<&Var> = params
        .iter()
        .map(|(_, v)| v)
        .filter(|v| grads.get(v.as_tensor()).is_some())
        .collect();
    let mut tensors: Vec<Tensor> = present
        .iter()
        .map(|v| grads.get(v.as_tensor()).expect("present").contiguous())
        .collect::<std::result::Result<_, _>>()?;
    BucketedAllReduce::default().run(comm, &mut tensors, Reduction::Mean)?;
    for (v, g) in present.into_iter().zip(tensors) {
        grads.insert(v.as_tensor(), g);
    }
    Ok(())
}

/// The global gradient norm, with one read from the device: each gradient's
/// sum of squares is reduced where it lives, then all of them come back at once.
fn global_norm(grads: &GradStore, params: &[(String, Var)]) -> Result<f64> {
    let squares = params
        .iter()
        .filter_map(|(_, v)| grads.get(v.as_tensor()))
        .map(|g| Ok(g.sqr()?.sum_all()?.to_dtype(DType::F64)?))
        .collect::<Result<Vec<_>>>()?;
    if squares.is_empty() {
        return Ok(0.0);
    }
    let sum: f64 = Tensor::stack(&squares, 0)?.to_vec1::<f64>()?.iter().sum();
    Ok(sum.sqrt())
}

fn scale_grads(grads: &mut GradStore, params: &[(String, Var)], factor: f64) -> Result<()> {
    for (_, v) in params {
        if let Some(g) = grads.remove(v.as_tensor()) {
            grads.insert(v.as_tensor(), (g * factor)?);
        }
    }
    Ok(())
}
