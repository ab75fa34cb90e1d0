//! Reading and writing DiT weights in every format users bring:
//! our safetensors (configuration in the metadata), official PyTorch `.pt`
//! files (released state dicts and `train.py` dictionaries), and diffusers
//! folders. All are mapped to the official parameter names.

pub mod diffusers;
pub mod infer;
pub mod pytorch;

use super::config::DitConfig;
use super::params::check_shapes;
use crate::formats::safetensors_file;
use crate::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use infer::{infer_config, Shapes};
pub use pytorch::WeightSet;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// EMA (default) or raw weights from a training checkpoint.
    pub weights: WeightSet,
    /// Heads, for custom widths in files that do not record them.
    pub num_heads: Option<usize>,
    pub dtype: DType,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            weights: WeightSet::Ema,
            num_heads: None,
            dtype: DType::F32,
        }
    }
}

/// `format` metadata of `dit train` checkpoints, whose tensors are the raw
/// weights under [`MODEL_PREFIX`], the EMA under [`EMA_PREFIX`] and the
/// optimizer state.
/// Metadata key under which the model configuration is stored as JSON.
pub const CONFIG_KEY: &str = "dit_config";

pub const TRAINING_FORMAT: &str = "dit-train";
pub const MODEL_PREFIX: &str = "model.";
pub const EMA_PREFIX: &str = "ema.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A `dit train` checkpoint (EMA and raw weights, optimizer state).
    Training,
    /// Our safetensors with the configuration in its metadata.
    Safetensors,
    /// A PyTorch zip pickle (`.pt`, `.pth`, `.bin`).
    PyTorch,
    /// A diffusers folder or weight file.
    Diffusers,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Training => "dit train checkpoint",
            Format::Safetensors => "safetensors",
            Format::PyTorch => "PyTorch pickle",
            Format::Diffusers => "diffusers",
        })
    }
}

/// What a checkpoint holds, found without reading the weights.
#[derive(Clone, Debug)]
pub struct CheckpointInfo {
    pub format: Format,
    pub config: DitConfig,
    /// True when the file records no configuration and it was inferred from
    /// tensor shapes (heads then follow the presets or 64-wide heads).
    pub inferred: bool,
    /// Where the tensors are (the weight file inside a diffusers folder).
    weights_path: PathBuf,
}

/// Identifies the format and configuration of `path` and checks every
/// parameter's shape.
pub fn inspect(path: &Path, opts: &LoadOptions) -> Result<CheckpointInfo> {
    let info =
        inspect_unchecked(path, opts).with_context(|| format!("cannot load {}", path.display()))?;
    Ok(info)
}

fn inspect_unchecked(path: &Path, opts: &LoadOptions) -> Result<CheckpointInfo> {
    if !path.exists() {
        bail!("no such file or folder");
    }
    if path.is_dir() {
        let Some(dir) = diffusers::transformer_dir(path) else {
            bail!("a folder must be a diffusers pipeline or transformer folder (with config.json)");
        };
        let config = diffusers::read_config(&dir)?;
        let weights_path = diffusers::weights_file(&dir)?;
        let shapes = diffusers::official_shapes(&raw_shapes(&weights_path, opts)?)?;
        check_shapes(&config, &shapes)?;
        return Ok(CheckpointInfo {
            format: Format::Diffusers,
            config,
            inferred: false,
            weights_path,
        });
    }
    let (format, shapes, stored_config) = if is_safetensors(path)? {
        let header = safetensors_file::read_header(path)?;
        if diffusers::is_diffusers_layout(&header.shapes) {
            bail!(
                "this is a diffusers weight file: pass the folder holding it and its config.json"
            );
        }
        let stored = match header.metadata.get(CONFIG_KEY) {
            Some(json) => Some(
                serde_json::from_str::<DitConfig>(json)
                    .context("the stored configuration is invalid")?,
            ),
            None => None,
        };
        if header
            .metadata
            .get("format")
            .is_some_and(|f| f == TRAINING_FORMAT)
        {
            let prefix = weight_prefix(opts.weights);
            let shapes = header
                .shapes
                .into_iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v)))
                .collect();
            (Format::Training, shapes, stored)
        } else {
            (Format::Safetensors, header.shapes, stored)
        }
    } else {
        (Format::PyTorch, raw_shapes(path, opts)?, None)
    };
    let inferred = stored_config.is_none();
    let config = match stored_config {
        Some(c) => c,
        None => infer_config(&shapes, opts.num_heads)?,
    };
    check_shapes(&config, &shapes)?;
    Ok(CheckpointInfo {
        format,
        config,
        inferred,
        weights_path: path.to_path_buf(),
    })
}

fn weight_prefix(weights: WeightSet) -> &'static str {
    match weights {
        WeightSet::Ema => EMA_PREFIX,
        WeightSet::Raw => MODEL_PREFIX,
    }
}

fn is_safetensors(path: &Path) -> Result<bool> {
    use std::io::Read;
    if path.extension().is_some_and(|e| e == "safetensors") {
        return Ok(true);
    }
    // Otherwise sniff: zip files (torch.save) start with "PK".
    let mut magic = [0u8; 2];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut magic)?;
    Ok(n == 2
        && magic != *b"PK"
        && path
            .extension()
            .is_none_or(|e| e != "pt" && e != "pth" && e != "bin"))
}

fn raw_shapes(path: &Path, opts: &LoadOptions) -> Result<Shapes> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        Ok(safetensors_file::read_header(path)?.shapes)
    } else {
        Ok(pytorch::PickleCheckpoint::open(path, opts.weights)?.shapes())
    }
}

/// Reads the configuration and all weights, under official names, in `opts.dtype`.
pub fn read(
    path: &Path,
    device: &Device,
    opts: &LoadOptions,
) -> Result<(DitConfig, HashMap<String, Tensor>)> {
    let info = inspect(path, opts)?;
    let p = &info.weights_path;
    let tensors = match info.format {
        Format::Safetensors => safetensors_file::read_tensors(p, device),
        Format::Training => safetensors_file::read_tensors(p, device).map(|all| {
            let prefix = weight_prefix(opts.weights);
            all.into_iter()
                .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t)))
                .collect()
        }),
        Format::PyTorch => pytorch::PickleCheckpoint::open(p, opts.weights)?.read_tensors(device),
        Format::Diffusers => diffusers::read_tensors(p, device),
    }
    .with_context(|| format!("cannot load {}", path.display()))?;
    let tensors = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_dtype(opts.dtype)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    Ok((info.config, tensors))
}

/// Writes our native format atomically: official names, the configuration
/// as JSON in the metadata.
pub fn save(path: &Path, config: &DitConfig, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let metadata = HashMap::from([
        ("format".to_string(), "dit".to_string()),
        (CONFIG_KEY.to_string(), serde_json::to_string(config)?),
    ]);
    crate::atomic_file::write_atomically(path, |tmp| {
        safetensors_file::write(tmp, tensors, metadata)
    })
}
