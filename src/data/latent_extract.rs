//! `dit extract`'s work: encode an image folder once with the VAE into a
//! [`LatentCache`](super::LatentCache), shard by shard.
//!
//! Each shard is written atomically and only after all its images are
//! encoded, so an interrupted extraction leaves whole shards and nothing
//! else; running it again skips them and produces the same files.

use super::latent_cache::{
    shard_path, CacheManifest, FORMAT, LABELS, MANIFEST_FILE, MOMENTS, MOMENTS_FLIPPED,
};
use super::{Dataset, ImageFolder};
use crate::dist::{Communicator, SingleProcess};
use crate::vae::Vae;
use crate::{bail, Context, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

pub struct ExtractJob {
    /// Image folder (one sub-folder per class).
    pub data: PathBuf,
    /// Cache folder to create or complete.
    pub out: PathBuf,
    /// Pixel size images are centre-cropped to (256 for DiT-XL/2-256).
    pub image_size: usize,
    /// Images per encoder call (each also encodes the mirror image).
    pub batch_size: usize,
    pub shard_size: usize,
    /// Stop after writing this many new shards (the rest stays to do).
    pub max_new_shards: Option<usize>,
    /// Where the VAE came from, recorded in the manifest.
    pub vae_source: String,
}

#[derive(Debug)]
pub struct ExtractOutcome {
    pub manifest: CacheManifest,
    /// Shards written by this run.
    pub written: Vec<usize>,
    /// Shards found finished and left alone.
    pub skipped: Vec<usize>,
    /// Whether every shard now exists.
    pub complete: bool,
}

/// Encodes `job.data` into `job.out`. `progress(done, total)` counts images,
/// finished shards included.
pub fn extract_latents(
    vae: &Vae,
    job: &ExtractJob,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExtractOutcome> {
    extract_latents_with(vae, job, &SingleProcess, progress)
}

/// [`extract_latents`] as one rank of `comm`'s job: rank 0 prepares the
/// folder, then rank r encodes the shards s with s mod world = r (a shared
/// folder; the files are those one process writes). `progress` counts this
/// rank's images; the outcome lists this rank's shards, and `complete`
/// says whether every shard now exists.
pub fn extract_latents_with(
    vae: &Vae,
    job: &ExtractJob,
    comm: &dyn Communicator,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExtractOutcome> {
    let config = vae.config();
    if config.shift_factor.is_some_and(|s| s != 0.0) {
        bail!(
            "VAEs with a shift_factor are not supported: training latents are scaling_factor · z"
        );
    }
    let factor = config.downscale();
    if job.image_size == 0 || !job.image_size.is_multiple_of(factor) {
        bail!(
            "--image-size {} must be a positive multiple of the VAE's downsampling factor {factor}",
            job.image_size
        );
    }
    if job.shard_size == 0 || job.batch_size == 0 {
        bail!("shard size and batch size must be at least 1");
    }
    let folder = ImageFolder::open(&job.data, job.image_size, config.in_channels)?;
    let latent = job.image_size / factor;
    let manifest = CacheManifest {
        format: FORMAT.to_string(),
        num_images: folder.len(),
        shard_size: job.shard_size,
        moments_shape: (2 * config.latent_channels, latent, latent),
        image_size: job.image_size,
        scaling_factor: config.scaling_factor,
        class_names: folder.class_names().to_vec(),
        source: job.data.display().to_string(),
        vae: job.vae_source.clone(),
    };
    let (rank, world) = (comm.rank(), comm.world_size());
    if rank == 0 {
        prepare_out_dir(job, &manifest)?;
    }
    comm.barrier()?;

    let mine = |s: usize| s % world == rank;
    let total: usize = (0..manifest.num_shards())
        .filter(|&s| mine(s))
        .map(|s| manifest.shard_len(s))
        .sum();
    let mut outcome = ExtractOutcome {
        manifest,
        written: Vec::new(),
        skipped: Vec::new(),
        complete: true,
    };
    let mut done = 0;
    for s in (0..outcome.manifest.num_shards()).filter(|&s| mine(s)) {
        let path = shard_path(&job.out, s);
        let n = outcome.manifest.shard_len(s);
        if path.is_file() {
            outcome.skipped.push(s);
            done += n;
            progress(done, total);
            continue;
        }
        if job
            .max_new_shards
            .is_some_and(|max| outcome.written.len() >= max)
        {
            outcome.complete = false;
            continue;
        }
        let first = s * outcome.manifest.shard_size;
        let tensors = encode_shard(vae, &folder, first..first + n, job.batch_size, &mut |k| {
            progress(done + k, total)
        })?;
        crate::atomic_file::write_atomically(&path, |tmp| {
            crate::formats::safetensors_file::write(tmp, &tensors, HashMap::new())
        })?;
        done += n;
        outcome.written.push(s);
    }
    if world > 1 {
        comm.barrier()?;
        outcome.complete =
            (0..outcome.manifest.num_shards()).all(|s| shard_path(&job.out, s).is_file());
    }
    Ok(outcome)
}

/// Creates the folder and manifest, or checks an existing manifest describes
/// the same extraction (so finished shards can be reused).
fn prepare_out_dir(job: &ExtractJob, manifest: &CacheManifest) -> Result<()> {
    std::fs::create_dir_all(&job.out).with_context(|| format!("creating {}", job.out.display()))?;
    let path = job.out.join(MANIFEST_FILE);
    if path.exists() {
        let old = CacheManifest::read(&job.out)?;
        // Paths may change between runs (a moved folder); the content may not.
        let same = CacheManifest {
            source: old.source.clone(),
            vae: old.vae.clone(),
            ..manifest.clone()
        } == old;
        if !same {
            bail!(
                "{} already holds a latent cache of different data or settings \
                 ({} images, {} classes, image size {}, shard size {}, latents {:?}); \
                 choose another --out or delete it",
                job.out.display(),
                old.num_images,
                old.class_names.len(),
                old.image_size,
                old.shard_size,
                old.moments_shape
            );
        }
        return Ok(());
    }
    let json = serde_json::to_string_pretty(manifest)?;
    crate::atomic_file::write_atomically(&path, |tmp| {
        std::fs::write(tmp, &json).with_context(|| format!("writing {}", tmp.display()))
    })
}

/// Moments of images `range`, unflipped and flipped, with their labels.
fn encode_shard(
    vae: &Vae,
    folder: &ImageFolder,
    range: std::ops::Range<usize>,
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<HashMap<String, Tensor>> {
    let device = vae.device();
    let (c, h, w) = folder.sample_shape();
    let mut plain = Vec::new();
    let mut flipped = Vec::new();
    let mut labels = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let end = (start + batch_size).min(range.end);
        let b = end - start;
        // The unflipped images first, then their mirror images: one encoder call.
        let mut pixels = Vec::with_capacity(2 * b * c * h * w);
        for flip in [false, true] {
            for index in start..end {
                let (values, label) = folder
                    .get(index, flip)
                    .context("dit extract stops at unreadable images; fix or remove the file")?;
                pixels.extend(values);
                if !flip {
                    labels.push(label);
                }
            }
        }
        let images = Tensor::from_vec(pixels, (2 * b, c, h, w), device)?;
        let posterior = vae.encode(&images)?;
        let moments = Tensor::cat(&[&posterior.mean, &posterior.logvar], 1)?;
        plain.push(moments.narrow(0, 0, b)?);
        flipped.push(moments.narrow(0, b, b)?);
        progress(end - range.start);
        start = end;
    }
    let n = labels.len();
    Ok(HashMap::from([
        (MOMENTS.to_string(), Tensor::cat(&plain, 0)?),
        (MOMENTS_FLIPPED.to_string(), Tensor::cat(&flipped, 0)?),
        (
            LABELS.to_string(),
            Tensor::from_vec(labels, n, &Device::Cpu)?,
        ),
    ]))
}
