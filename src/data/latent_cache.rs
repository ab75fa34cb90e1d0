//! A folder of VAE latents extracted once from an image folder (`dit
//! extract`), read back as a [`Dataset`] for latent-space training.
//!
//! Layout: `cache.json` (the [`CacheManifest`]) and `shard-NNNNN.safetensors`
//! files of up to `shard_size` images each, holding `moments` and
//! `moments_flipped` — f32 `(n, 2C, h, w)`: the posterior mean then the
//! log-variance, of the image and of its mirror image — and `labels` (u32).
//! Moments rather than one latent draw are stored so that training can draw
//! a fresh latent every step, as the official pipeline does by re-encoding.

use super::{DataError, Dataset};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "cache.json";
pub const FORMAT: &str = "dit-latent-cache/1";
pub const MOMENTS: &str = "moments";
pub const MOMENTS_FLIPPED: &str = "moments_flipped";
pub const LABELS: &str = "labels";

/// What a cache holds; written before any shard so that a resumed
/// extraction can check it is finishing the same job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheManifest {
    pub format: String,
    pub num_images: usize,
    pub shard_size: usize,
    /// Moments shape `(2C, h, w)` of one image.
    pub moments_shape: (usize, usize, usize),
    /// Pixel size the images were centre-cropped to before encoding.
    pub image_size: usize,
    /// The VAE's `scaling_factor`: training latents are `s · z`.
    pub scaling_factor: f64,
    pub class_names: Vec<String>,
    /// The image folder and VAE it came from (informational).
    pub source: String,
    pub vae: String,
}

impl CacheManifest {
    pub fn num_shards(&self) -> usize {
        self.num_images.div_ceil(self.shard_size)
    }

    /// Images in shard `s`.
    pub fn shard_len(&self, s: usize) -> usize {
        self.shard_size.min(self.num_images - s * self.shard_size)
    }

    pub fn read(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            DataError::layout(&path, format!("cannot read the latent cache manifest ({e}); create the cache with `dit extract`"))
        })?;
        let manifest: CacheManifest = serde_json::from_str(&text)
            .map_err(|e| DataError::layout(&path, format!("not a latent cache manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(DataError::layout(
                &path,
                format!("format '{}', expected '{FORMAT}'", manifest.format),
            ));
        }
        Ok(manifest)
    }
}

pub fn shard_path(dir: &Path, shard: usize) -> PathBuf {
    dir.join(format!("shard-{shard:05}.safetensors"))
}

/// Where one shard's tensors lie in its file.
#[derive(Clone, Debug)]
struct ShardIndex {
    path: PathBuf,
    moments_at: u64,
    flipped_at: u64,
}

/// The cache as a dataset: `get(i, flip)` reads image `i`'s stored moments
/// (of the mirrored image when `flip`) straight from its shard file.
/// Values are latent moments, not pixels in [−1, 1].
#[derive(Clone, Debug)]
pub struct LatentCache {
    dir: PathBuf,
    manifest: CacheManifest,
    shards: Vec<ShardIndex>,
    labels: Vec<u32>,
}

impl LatentCache {
    /// Opens a finished cache; refuses one with missing or malformed shards.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = CacheManifest::read(&dir)?;
        let (c2, h, w) = manifest.moments_shape;
        let mut shards = Vec::new();
        let mut labels = Vec::with_capacity(manifest.num_images);
        for s in 0..manifest.num_shards() {
            let path = shard_path(&dir, s);
            if !path.is_file() {
                return Err(DataError::layout(
                    &path,
                    "shard missing: the extraction did not finish; rerun the same `dit extract` to complete it",
                ));
            }
            let n = manifest.shard_len(s);
            let header = read_layout(&path)?;
            let find = |name: &str, shape: &[usize], bytes: usize| -> Result<u64, DataError> {
                let entry = header
                    .iter()
                    .find(|e| e.name == name)
                    .ok_or_else(|| DataError::layout(&path, format!("no '{name}' tensor")))?;
                if entry.shape != shape
                    || entry.dtype != if name == LABELS { "U32" } else { "F32" }
                    || entry.len != bytes
                {
                    return Err(DataError::layout(
                        &path,
                        format!(
                            "'{name}' is {} {:?}, expected {shape:?}",
                            entry.dtype, entry.shape
                        ),
                    ));
                }
                Ok(entry.start)
            };
            let moments_at = find(MOMENTS, &[n, c2, h, w], n * c2 * h * w * 4)?;
            let flipped_at = find(MOMENTS_FLIPPED, &[n, c2, h, w], n * c2 * h * w * 4)?;
            let labels_at = find(LABELS, &[n], n * 4)?;
            let bytes = read_at(&path, labels_at, n * 4)?;
            labels.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            shards.push(ShardIndex {
                path,
                moments_at,
                flipped_at,
            });
        }
        if let Some(&bad) = labels
            .iter()
            .find(|&&l| l as usize >= manifest.class_names.len())
        {
            return Err(DataError::layout(
                &dir,
                format!(
                    "label {bad} out of range for {} classes",
                    manifest.class_names.len()
                ),
            ));
        }
        Ok(Self {
            dir,
            manifest,
            shards,
            labels,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &CacheManifest {
        &self.manifest
    }

    pub fn scaling_factor(&self) -> f64 {
        self.manifest.scaling_factor
    }

    pub fn labels(&self) -> &[u32] {
        &self.labels
    }
}

impl Dataset for LatentCache {
    fn len(&self) -> usize {
        self.manifest.num_images
    }

    fn num_classes(&self) -> usize {
        self.manifest.class_names.len()
    }

    fn class_names(&self) -> &[String] {
        &self.manifest.class_names
    }

    fn sample_shape(&self) -> (usize, usize, usize) {
        self.manifest.moments_shape
    }

    fn get(&self, index: usize, flip: bool) -> Result<(Vec<f32>, u32), DataError> {
        if index >= self.len() {
            return Err(DataError::IndexOutOfRange {
                index,
                len: self.len(),
            });
        }
        let (c2, h, w) = self.manifest.moments_shape;
        let per = c2 * h * w;
        let shard = &self.shards[index / self.manifest.shard_size];
        let row = (index % self.manifest.shard_size) as u64;
        let start = if flip {
            shard.flipped_at
        } else {
            shard.moments_at
        };
        let bytes = read_at(&shard.path, start + row * (per * 4) as u64, per * 4)?;
        let values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((values, self.labels[index]))
    }
}

fn read_at(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut bytes = vec![0u8; len];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| DataError::io(path, e))?;
    Ok(bytes)
}

struct TensorEntry {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    /// Absolute offset of the first byte in the file.
    start: u64,
    len: usize,
}

/// The tensors of a safetensors file with their absolute byte ranges.
fn read_layout(path: &Path) -> Result<Vec<TensorEntry>, DataError> {
    let bad = |why: String| DataError::layout(path, format!("not a readable shard: {why}"));
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| bad(e.to_string()))?;
    let header_len = u64::from_le_bytes(len);
    if 8 + header_len > file_len {
        return Err(bad("truncated header".into()));
    }
    let mut json = vec![0u8; header_len as usize];
    file.read_exact(&mut json).map_err(|e| bad(e.to_string()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
    let mut entries = Vec::new();
    for (name, entry) in header {
        if name == "__metadata__" {
            continue;
        }
        let parse = || -> Option<TensorEntry> {
            let offsets: [u64; 2] = serde_json::from_value(entry["data_offsets"].clone()).ok()?;
            Some(TensorEntry {
                dtype: entry["dtype"].as_str()?.to_string(),
                shape: serde_json::from_value(entry["shape"].clone()).ok()?,
                start: 8 + header_len + offsets[0],
                len: (offsets[1].checked_sub(offsets[0])?) as usize,
                name: name.clone(),
            })
        };
        let e = parse().ok_or_else(|| bad(format!("malformed entry '{name}'")))?;
        if e.start + e.len as u64 > file_len {
            return Err(bad(format!(
                "'{name}' extends past the end of the file (truncated?)"
            )));
        }
        entries.push(e);
    }
    Ok(entries)
}
