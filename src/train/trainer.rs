//! The training loop: diffusion loss, AdamW, EMA, checkpoints, records.

use super::checkpoint::{checkpoint_path, DataSpec, TrainCheckpoint, TrainState};
use super::config::TrainConfig;
use super::records::Records;
use super::step_noise;
use crate::data::{Dataset, Loader, LoaderConfig, LoaderState};
use crate::diffusion::{DiffusionConfig, GaussianDiffusion};
use crate::model::params::initial_tensors;
use crate::model::{Dit, DitConfig};
use crate::ops::adamw::{AdamW, AdamWConfig};
use crate::ops::ema::Ema;
use crate::sample::{images, Generator, SampleSettings};
use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Everything a run needs.
pub struct TrainJob {
    pub model: DitConfig,
    pub diffusion: DiffusionConfig,
    pub train: TrainConfig,
    pub dataset: Arc<dyn Dataset>,
    /// Where the data came from (recorded; a resume must match it).
    pub data_source: String,
    pub out_dir: PathBuf,
    /// A checkpoint to continue from.
    pub resume: Option<PathBuf>,
    pub device: Device,
    pub skip_bad_images: bool,
    /// Show a progress bar (off in tests).
    pub progress: bool,
    /// Latent-space training: each dataset sample holds VAE posterior
    /// moments `[mean, logvar]` (2C channels) and the trainer draws
    /// `z = scale·(mean + exp(logvar/2)·ε)` afresh every step.
    pub latent_scale: Option<f64>,
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

/// Runs (or continues) training until `train.steps`.
pub fn train(job: TrainJob) -> Result<TrainOutcome> {
    let started = Instant::now();
    let data = DataSpec {
        source: job.data_source.clone(),
        sample_shape: job.dataset.sample_shape(),
        class_names: job.dataset.class_names().to_vec(),
    };
    check_model_fits_data(&job.model, &data, job.latent_scale.is_some())?;
    let diffusion = GaussianDiffusion::new(&job.diffusion)?;
    if job.diffusion.learn_sigma() != job.model.learn_sigma {
        bail!("the model's learn_sigma and the diffusion's variance type disagree");
    }

    let (tensors, ema_tensors, optimizer_state, start) = match &job.resume {
        Some(path) => {
            let ckpt = TrainCheckpoint::load(path, &job.device)?;
            check_resume(&job, &data, &ckpt, path)?;
            (
                ckpt.params,
                Some(ckpt.ema),
                Some(ckpt.optimizer),
                (ckpt.state.step, ckpt.state.loader),
            )
        }
        None => {
            refuse_existing_run(&job.out_dir)?;
            let mut t = initial_tensors(&job.model, job.train.seed, &job.device, DType::F32)?;
            t.remove("pos_embed");
            (t, None, None, (0, LoaderState::default()))
        }
    };
    let (start_step, loader_state) = start;
    std::fs::create_dir_all(job.out_dir.join("checkpoints"))
        .with_context(|| format!("creating {}", job.out_dir.display()))?;

    // Trainable parameters as Vars, in a fixed (sorted) order.
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let params: Vec<(String, Var)> = names
        .into_iter()
        .map(|n| Ok((n.clone(), Var::from_tensor(&tensors[n])?)))
        .collect::<Result<_>>()?;
    let model_tensors: HashMap<String, Tensor> = params
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let model = Dit::from_tensors(job.model.clone(), &model_tensors)?;

    let t = &job.train;
    let adam_config = AdamWConfig {
        lr: t.lr,
        beta1: t.beta1,
        beta2: t.beta2,
        eps: t.eps,
        weight_decay: t.weight_decay,
    };
    let mut optimizer = AdamW::new(params.clone(), adam_config)?;
    let mut ema = Ema::new(&params, t.ema_decay)?;
    if let Some(state) = &optimizer_state {
        optimizer
            .load_state(state)
            .context("restoring the optimizer state")?;
    }
    if let Some(weights) = &ema_tensors {
        ema.load_state(weights)
            .context("restoring the EMA weights")?;
    }

    let loader_config = LoaderConfig {
        flip: t.flip,
        skip_bad_images: job.skip_bad_images,
        ..LoaderConfig::new(t.batch_size, t.seed)
    };
    let mut loader = Loader::new(
        job.dataset.clone(),
        loader_config,
        loader_state,
        &job.device,
    )?;
    let mut records = Records::open(&job.out_dir, start_step, t.steps, job.progress)?;
    let null_class = job.model.null_class();
    let mut last_checkpoint = job.resume.clone();
    let mut tail_losses = Vec::new();
    let tail_from = start_step + (t.steps - start_step.min(t.steps)) * 9 / 10;

    for step in start_step..t.steps {
        let batch = loader.next_batch()?;
        let labels = batch.y.to_vec1::<u32>()?;
        let x0 = match job.latent_scale {
            Some(scale) => step_noise::latent_sample(t.seed, step, &batch.x, scale)?,
            None => batch.x,
        };
        let draws = step_noise::draw(
            t.seed,
            step,
            &labels,
            x0.dims(),
            job.diffusion.num_timesteps,
            step_noise::LabelDropout {
                null_class,
                prob: job.model.class_dropout_prob,
            },
            &job.device,
        )?;
        let terms = diffusion.training_losses(
            |x_t, t| {
                model
                    .forward(x_t, t, &draws.y)
                    .map_err(candle_core::Error::wrap)
            },
            &x0,
            &draws.t,
            &draws.noise,
        )?;
        let loss = terms.loss.mean_all()?;
        let loss_value = loss.to_scalar::<f32>()? as f64;
        if !loss_value.is_finite() {
            let kept = last_checkpoint
                .as_ref()
                .map_or("none was written yet".to_string(), |p: &PathBuf| {
                    p.display().to_string()
                });
            bail!(
                "the loss became {loss_value} at step {} (training diverged); stopped without saving. \
                 Last good checkpoint: {kept}. Try a lower --lr or --grad-clip.",
                step + 1
            );
        }
        let mut grads = loss.backward()?;
        let grad_norm = global_norm(&grads, &params)?;
        if let Some(max) = t.grad_clip.filter(|max| grad_norm > *max) {
            scale_grads(&mut grads, &params, max / grad_norm)?;
        }
        optimizer.set_lr(t.lr_at(step));
        optimizer.step(&grads)?;
        ema.set_decay(t.ema_decay_at(step));
        ema.update(&params)?;

        let done = step + 1;
        let mse = terms.mse.mean_all()?.to_scalar::<f32>()? as f64;
        let vb = match &terms.vb {
            Some(vb) => vb.mean_all()?.to_scalar::<f32>()? as f64,
            None => 0.0,
        };
        if step >= tail_from {
            tail_losses.push(loss_value);
        }
        records.step(
            done,
            loss_value,
            mse,
            vb,
            t.lr_at(step),
            grad_norm,
            batch.epoch,
        )?;

        let last = done == t.steps;
        if t.sample_every > 0 && (done % t.sample_every == 0 || last) {
            let path = write_sample_grid(&job, &ema, done)?;
            records.note(&format!("samples: {}", path.display()));
        }
        if done % t.checkpoint_every.max(1) == 0 || last {
            let path = checkpoint_path(&job.out_dir, done);
            TrainCheckpoint {
                model_config: job.model.clone(),
                diffusion: job.diffusion.clone(),
                state: TrainState {
                    step: done,
                    loader: loader.state(),
                    data: data.clone(),
                    train: t.clone(),
                },
                params: params
                    .iter()
                    .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?)))
                    .collect::<Result<_>>()?,
                ema: ema.tensors()?,
                optimizer: optimizer.state()?,
            }
            .save(&path)?;
            records.checkpoint(done)?;
            last_checkpoint = Some(path);
        }
    }
    records.finish();
    let last_checkpoint =
        last_checkpoint.context("nothing to do: the run already reached --steps")?;
    Ok(TrainOutcome {
        steps: t.steps,
        last_checkpoint,
        final_loss: tail_losses.iter().sum::<f64>() / tail_losses.len().max(1) as f64,
        seconds: started.elapsed().as_secs_f64(),
        skipped_images: loader.skipped_images().len(),
    })
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
    if ckpt.diffusion != job.diffusion {
        bail!("cannot resume from {p}: its diffusion settings differ from this run's");
    }
    let (old, new) = (&ckpt.state.train, &job.train);
    if old.batch_size != new.batch_size || old.seed != new.seed || old.flip != new.flip {
        bail!("cannot resume from {p}: batch size, seed and flips must stay as they were ({}, {}, {})", old.batch_size, old.seed, old.flip);
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

fn global_norm(grads: &GradStore, params: &[(String, Var)]) -> Result<f64> {
    let mut sum = 0.0;
    for (_, v) in params {
        if let Some(g) = grads.get(v.as_tensor()) {
            sum += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
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

/// One row per class (up to 10 classes), 8 samples each, from the EMA model.
fn write_sample_grid(job: &TrainJob, ema: &Ema, step: u64) -> Result<PathBuf> {
    // Detached: sampling must not record an autograd graph.
    let weights = ema
        .tensors()?
        .into_iter()
        .map(|(k, t)| (k, t.detach()))
        .collect();
    let model = Dit::from_tensors(job.model.clone(), &weights)?;
    let classes = job.model.num_classes.min(10);
    let per_class = 4;
    let labels: Vec<u32> = (0..classes)
        .flat_map(|c| std::iter::repeat_n((c * job.model.num_classes / classes) as u32, per_class))
        .collect();
    let cfg_scale = if job.model.null_class().is_some() {
        job.train.sample_cfg_scale
    } else {
        1.0
    };
    let settings = SampleSettings {
        steps: job.train.sample_steps.clone(),
        sampler: crate::diffusion::Sampler::DpmSolverPP2M,
        cfg_scale,
        seed: job.train.seed,
        // Pixel space: keep x̂0 in the data range, as ADM's pixel samplers do;
        // early in training the unclipped estimate at large t is far outside it.
        clip_denoised: true,
        ..Default::default()
    };
    let generator = Generator::new(&model, &job.diffusion, settings)?;
    let samples = generator.generate(&labels, 0, &mut |_, _| {})?;
    let grid = image::DynamicImage::ImageRgb8(images::grid(&samples, per_class)?);
    let dir = job.out_dir.join("samples");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("step-{step:07}.png"));
    images::save_png(&path, &grid)?;
    images::save_png(&dir.join("latest.png"), &grid)?;
    Ok(path)
}
