//! Finding, checking and reading diffusers AutoencoderKL weights.

use super::config::VaeConfig;
use super::params::param_specs;
use crate::formats::safetensors_file::{read_header, read_tensors};
use crate::model::params::unexpected_names;
use crate::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// diffusers' weight file name inside a model folder.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// Where the weights are and which configuration describes them.
#[derive(Clone, Debug)]
pub struct Located {
    pub weights: PathBuf,
    /// `None`: no config.json beside the weights, use the SD default.
    pub config: Option<PathBuf>,
}

/// Accepts a pipeline folder (with `vae/`), a VAE folder (`config.json` +
/// weights) or a weights file; a file uses the `config.json` beside it when
/// that describes an AutoencoderKL.
pub fn locate(path: &Path) -> Result<Located> {
    if path.is_dir() {
        let weights = path.join(WEIGHTS_FILE);
        let config = path.join("config.json");
        if weights.is_file() && config.is_file() {
            return Ok(Located {
                weights,
                config: Some(config),
            });
        }
        if path.join("vae").is_dir() {
            return locate(&path.join("vae"));
        }
        bail!(
            "{} holds neither config.json + {WEIGHTS_FILE} nor a vae/ folder",
            path.display()
        );
    }
    if !path.is_file() {
        bail!("{}: no such file or folder", path.display());
    }
    let sibling = path.with_file_name("config.json");
    let config = is_autoencoder_config(&sibling).then_some(sibling);
    Ok(Located {
        weights: path.to_path_buf(),
        config,
    })
}

fn is_autoencoder_config(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    json.get("_class_name").and_then(|v| v.as_str()) == Some("AutoencoderKL")
        || json.get("latent_channels").is_some()
}

/// The current diffusers name of a parameter stored under the pre-0.14
/// attention names (`query`, `key`, `value`, `proj_attn`).
pub fn canonical_name(name: &str) -> String {
    if name.contains(".attentions.") {
        for (old, new) in [
            (".query.", ".to_q."),
            (".key.", ".to_k."),
            (".value.", ".to_v."),
            (".proj_attn.", ".to_out.0."),
        ] {
            if let Some(pos) = name.rfind(old) {
                return format!("{}{new}{}", &name[..pos], &name[pos + old.len()..]);
            }
        }
    }
    name.to_string()
}

/// Whether a stored shape fits the expected one; attention projections saved
/// as 1×1 convs (`[C, C, 1, 1]`) count as the `[C, C]` linear they are.
fn shape_fits(expected: &[usize], found: &[usize]) -> bool {
    expected == found
        || (expected.len() == 2
            && found.len() == 4
            && found[..2] == *expected
            && found[2..] == [1, 1])
}

/// Checks names and shapes against `config`, naming the first offending key.
pub fn check_shapes(
    config: &VaeConfig,
    shapes: &HashMap<String, Vec<usize>>,
    source: &str,
) -> Result<()> {
    let specs = param_specs(config);
    for spec in &specs {
        match shapes.get(&spec.name) {
            None => bail!(
                "{source}: VAE parameter '{}' is missing (expected shape {:?}); \
                 is this an AutoencoderKL state dict with diffusers names?",
                spec.name,
                spec.shape
            ),
            Some(found) if !shape_fits(&spec.shape, found) => bail!(
                "{source}: VAE parameter '{}' has shape {:?}, expected {:?} for block_out_channels {:?}, \
                 layers_per_block {}, latent_channels {} (wrong config.json?)",
                spec.name,
                found,
                spec.shape,
                config.block_out_channels,
                config.layers_per_block,
                config.latent_channels
            ),
            Some(_) => {}
        }
    }
    if let Some(names) = unexpected_names(shapes, specs.iter().map(|s| s.name.as_str())) {
        bail!("{source}: unexpected parameter(s), not part of this VAE config: {names}");
    }
    Ok(())
}

/// Renames legacy keys, refusing files that hold both spellings of one key.
fn canonical_keys<T>(entries: HashMap<String, T>, source: &str) -> Result<HashMap<String, T>> {
    let mut out = HashMap::with_capacity(entries.len());
    for (name, value) in entries {
        let canonical = canonical_name(&name);
        if out.insert(canonical.clone(), value).is_some() {
            bail!(
                "{source}: parameter '{canonical}' is stored twice (old and new attention names)"
            );
        }
    }
    Ok(out)
}

/// Canonical names, checked shapes, f32 on `device`: ready for the network.
pub fn prepare(
    config: &VaeConfig,
    tensors: HashMap<String, Tensor>,
    device: &Device,
    source: &str,
) -> Result<HashMap<String, Tensor>> {
    let tensors = canonical_keys(tensors, source)?;
    let shapes = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec()))
        .collect();
    check_shapes(config, &shapes, source)?;
    let specs = param_specs(config);
    let mut out = HashMap::with_capacity(tensors.len());
    for spec in specs {
        let t = &tensors[&spec.name];
        let t = t
            .reshape(spec.shape.as_slice())?
            .to_dtype(DType::F32)?
            .to_device(device)?;
        out.insert(spec.name, t);
    }
    Ok(out)
}

/// Reads a safetensors weight file, checking it against `config` from the
/// header before any data is loaded.
pub fn read(path: &Path, config: &VaeConfig, device: &Device) -> Result<HashMap<String, Tensor>> {
    let source = path.display().to_string();
    let header = read_header(path)?;
    check_shapes(config, &canonical_keys(header.shapes, &source)?, &source)?;
    let tensors = read_tensors(path, &Device::Cpu)
        .with_context(|| format!("reading VAE weights {source}"))?;
    prepare(config, tensors, device, &source)
}
