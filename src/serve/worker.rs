//! The worker: one thread that owns the model and runs the scheduler's
//! batches, one forward pass per step for every job in the batch.
//!
//! A batch's rows are its jobs' images side by side; each job keeps its own
//! noise streams keyed by (its seed, k) and its own labels, so a job's images
//! are those `dit sample` draws for the same settings, whatever else shares
//! the batch. Between steps the worker publishes progress and, every few
//! steps, a small x̂0 preview, and abandons the batch once all its jobs are
//! cancelled.

use super::jobs::{BatchPolicy, GeneratedImage, Job, JobOutput, JobStatus, Preview, Scheduler};
use super::model::ServedModel;
use crate::diffusion::{GuidanceChannels, NoiseSource};
use crate::dist::BatchSplit;
use crate::sample::images::{grid_u8, png_bytes, to_u8};
use crate::sample::{Generator, SampleSettings, SampledImages};
use crate::{Context, Result};
use candle_core::Tensor;
use image::imageops::FilterType;
use image::DynamicImage;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

/// Images of a job shown in its preview.
const PREVIEW_IMAGES: usize = 4;
/// Largest side of one image in a preview, in pixels.
const PREVIEW_SIDE: u32 = 96;
/// Previews per job when the cadence is automatic.
const PREVIEWS_PER_JOB: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkerSettings {
    pub batching: BatchPolicy,
    /// A preview every this many steps; 0: about ten per job; `usize::MAX`: none.
    pub preview_every: usize,
}

/// Runs batches until the scheduler shuts down.
pub fn run(model: ServedModel, scheduler: Arc<Scheduler>, settings: WorkerSettings) {
    while let Some(batch) = scheduler.next_batch(settings.batching) {
        let started = Instant::now();
        // A panic inside the model code must not leave its jobs waiting forever.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_batch(&model, &batch, settings.preview_every, started)
        }))
        .unwrap_or_else(|_| Err(crate::Error::msg("the worker panicked while sampling")));
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(outputs) => {
                for (job, output) in batch.iter().zip(outputs) {
                    scheduler.finish(job, JobStatus::Succeeded(Arc::new(output)));
                }
            }
            // An abandoned batch: its jobs are already marked cancelled.
            Err(_) if batch.iter().all(|j| j.is_cancelled()) => {}
            Err(err) => {
                for job in &batch {
                    scheduler.finish(job, JobStatus::Failed(format!("{err}")));
                }
            }
        }
        scheduler.batch_done(batch.len(), seconds);
    }
}

fn run_batch(
    served: &ServedModel,
    batch: &[Arc<Job>],
    preview_every: usize,
    started: Instant,
) -> Result<Vec<JobOutput>> {
    let spec = &batch[0].spec;
    let settings = SampleSettings {
        steps: spec.steps.to_string(),
        sampler: spec.sampler,
        cfg_scale: spec.guidance_scale,
        guidance_channels: GuidanceChannels::Official,
        // Unused: each job brings its own noise below.
        seed: 0,
        clip_denoised: served.clip_denoised(),
        batch_parts: BatchSplit::default_parts(
            served.model.device(),
            batch.iter().map(|j| j.spec.n).sum(),
        ),
    };
    let generator = Generator::new(&served.model, &served.objective, settings)?;
    let total = generator.num_steps();
    let every = match preview_every {
        0 => total.div_ceil(PREVIEWS_PER_JOB).max(1),
        n => n,
    };
    let labels: Vec<u32> = batch
        .iter()
        .flat_map(|j| std::iter::repeat_n(j.spec.class, j.spec.n))
        .collect();
    let noise = NoiseSource::concat(
        batch
            .iter()
            .map(|j| NoiseSource::new(j.spec.seed, 0, j.spec.n)),
    );
    let rows: Vec<usize> = batch
        .iter()
        .scan(0, |first, j| {
            let row = *first;
            *first += j.spec.n;
            Some(row)
        })
        .collect();
    for job in batch {
        job.set_running(0, total, 0.0);
    }
    let samples = generator.generate_observed(&labels, noise, true, &mut |step| {
        if batch.iter().all(|j| j.is_cancelled()) {
            crate::bail!("every job of the batch was cancelled");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let pred_x0 = match step.done % every == 0 && step.done < step.total {
            true => step.estimate()?,
            false => None,
        };
        for (job, &row) in batch.iter().zip(&rows) {
            if job.is_cancelled() {
                continue;
            }
            job.set_running(step.done, step.total, elapsed);
            if let Some(x0) = &pred_x0 {
                let shown = job.spec.n.min(PREVIEW_IMAGES);
                let png = preview_png(served, &x0.narrow(0, row, shown)?)?;
                job.set_preview(Preview {
                    step: step.done,
                    png,
                });
            }
        }
        Ok(())
    })?;
    let decoded = decode(served, &samples)?;
    let (_, channels, h, w) = decoded.dims4()?;
    let pixels = to_u8(&decoded)?;
    let run_seconds = started.elapsed().as_secs_f64();
    batch
        .iter()
        .zip(&rows)
        .map(|(job, &row)| {
            let images = SampledImages {
                first_index: 0,
                labels: vec![job.spec.class; job.spec.n],
                channels,
                height: h,
                width: w,
                pixels: pixels[row..row + job.spec.n].to_vec(),
            };
            let images = (0..job.spec.n)
                .map(|k| {
                    Ok(GeneratedImage {
                        index: k,
                        class: job.spec.class,
                        png: png_bytes(&images.image(k)?)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(JobOutput {
                images,
                batch_images: labels.len(),
                wait_seconds: started.duration_since(job.submitted).as_secs_f64(),
                run_seconds,
            })
        })
        .collect()
}

/// Model-space samples → images in [−1, 1] (through the VAE for latent models).
fn decode(served: &ServedModel, samples: &Tensor) -> Result<Tensor> {
    Ok(match &served.vae {
        Some(vae) => vae.decode(&vae.from_latent(samples)?)?,
        None => samples.clone(),
    })
}

/// x̂0 rows → one small PNG: the images side by side, each at most
/// `PREVIEW_SIDE` pixels.
fn preview_png(served: &ServedModel, x0: &Tensor) -> Result<Vec<u8>> {
    let images = decode(served, x0)?;
    let (n, c, h, w) = images.dims4()?;
    let grid = grid_u8(&to_u8(&images)?, (c, h, w), n);
    let scale = (PREVIEW_SIDE as f64 / h.max(w) as f64).min(1.0);
    let grid = DynamicImage::ImageRgb8(grid);
    let grid = if scale < 1.0 {
        let (gw, gh) = (grid.width() as f64 * scale, grid.height() as f64 * scale);
        grid.resize_exact(gw.round() as u32, gh.round() as u32, FilterType::Triangle)
    } else {
        grid
    };
    png_bytes(&grid).context("encoding a preview")
}
