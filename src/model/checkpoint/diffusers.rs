//! diffusers `DiTTransformer2DModel` folders (`transformer/config.json` +
//! `diffusion_pytorch_model.safetensors`).
//!
//! diffusers splits the fused qkv projection into `to_q`/`to_k`/`to_v`, renames
//! every layer, and keeps a copy of the timestep and label embedders inside
//! every block; block 0's copy is taken.

use super::infer::Shapes;
use crate::model::config::DitConfig;
use crate::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const WEIGHT_FILES: [&str; 3] = [
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
];

/// The `transformer/` folder of a pipeline, or the folder itself.
pub fn transformer_dir(dir: &Path) -> Option<PathBuf> {
    [dir.join("transformer"), dir.to_path_buf()]
        .into_iter()
        .find(|d| d.join("config.json").is_file())
}

pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    WEIGHT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{} has a config.json but none of {}",
                dir.display(),
                WEIGHT_FILES.join(", ")
            )
        })
}

#[derive(Deserialize)]
struct TransformerConfig {
    num_attention_heads: usize,
    attention_head_dim: usize,
    in_channels: usize,
    out_channels: Option<usize>,
    num_layers: usize,
    sample_size: usize,
    patch_size: usize,
    num_embeds_ada_norm: Option<usize>,
}

pub fn read_config(dir: &Path) -> Result<DitConfig> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let c: TransformerConfig = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a DiT transformer config", path.display()))?;
    let out = c.out_channels.unwrap_or(c.in_channels);
    let config = DitConfig {
        input_size: c.sample_size,
        patch_size: c.patch_size,
        in_channels: c.in_channels,
        hidden_size: c.num_attention_heads * c.attention_head_dim,
        depth: c.num_layers,
        num_heads: c.num_attention_heads,
        mlp_ratio: 4.0,
        class_dropout_prob: 0.1,
        num_classes: c.num_embeds_ada_norm.unwrap_or(1000),
        learn_sigma: out == 2 * c.in_channels,
    };
    config.validate()?;
    Ok(config)
}

/// The official name a diffusers key maps to, if any (q/k/v handled apart).
fn official_name(key: &str) -> Option<String> {
    const SHARED: [(&str, &str); 7] = [
        ("pos_embed.proj.", "x_embedder.proj."),
        (
            "transformer_blocks.0.norm1.emb.timestep_embedder.linear_1.",
            "t_embedder.mlp.0.",
        ),
        (
            "transformer_blocks.0.norm1.emb.timestep_embedder.linear_2.",
            "t_embedder.mlp.2.",
        ),
        (
            "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.",
            "y_embedder.embedding_table.",
        ),
        ("proj_out_1.", "final_layer.adaLN_modulation.1."),
        ("proj_out_2.", "final_layer.linear."),
        ("pos_embed.pos_embed", "pos_embed"),
    ];
    for (from, to) in SHARED {
        if let Some(rest) = key.strip_prefix(from) {
            return Some(format!("{to}{rest}"));
        }
    }
    let rest = key.strip_prefix("transformer_blocks.")?;
    let (index, layer) = rest.split_once('.')?;
    const BLOCK: [(&str, &str); 4] = [
        ("norm1.linear.", "adaLN_modulation.1."),
        ("attn1.to_out.0.", "attn.proj."),
        ("ff.net.0.proj.", "mlp.fc1."),
        ("ff.net.2.", "mlp.fc2."),
    ];
    BLOCK.iter().find_map(|(from, to)| {
        layer
            .strip_prefix(from)
            .map(|param| format!("blocks.{index}.{to}{param}"))
    })
}

/// `transformer_blocks.{i}.attn1.to_{q,k,v}.{param}` → (i, which, param).
fn split_qkv(key: &str) -> Option<(&str, usize, &str)> {
    let rest = key.strip_prefix("transformer_blocks.")?;
    let (index, layer) = rest.split_once(".attn1.to_")?;
    let (which, param) = layer.split_once('.')?;
    let which = ["q", "k", "v"].iter().position(|w| *w == which)?;
    Some((index, which, param))
}

/// Renames a diffusers state (shapes or tensors) to official names, fusing
/// q, k and v along the output dimension.
fn to_official<T: Clone>(
    input: &HashMap<String, T>,
    fuse: impl Fn(&[T; 3]) -> Result<T>,
) -> Result<HashMap<String, T>> {
    let mut out = HashMap::new();
    let mut qkv: HashMap<String, [Option<T>; 3]> = HashMap::new();
    for (key, value) in input {
        if let Some((index, which, param)) = split_qkv(key) {
            qkv.entry(format!("blocks.{index}.attn.qkv.{param}"))
                .or_default()[which] = Some(value.clone());
        } else if let Some(name) = official_name(key) {
            out.insert(name, value.clone());
        }
        // Other blocks' embedder copies are duplicates of block 0's.
    }
    for (name, parts) in qkv {
        let [Some(q), Some(k), Some(v)] = parts else {
            bail!("diffusers weights lack one of to_q/to_k/to_v for '{name}'");
        };
        out.insert(name, fuse(&[q, k, v])?);
    }
    Ok(out)
}

pub fn official_shapes(shapes: &Shapes) -> Result<Shapes> {
    to_official(shapes, |[q, k, v]| {
        let mut s = q.clone();
        s[0] = q[0] + k[0] + v[0];
        Ok(s)
    })
}

pub fn official_tensors(tensors: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    to_official(tensors, |[q, k, v]| Ok(Tensor::cat(&[q, k, v], 0)?))
}

/// Whether a flat weight file uses diffusers' names.
pub fn is_diffusers_layout(shapes: &Shapes) -> bool {
    shapes.keys().any(|k| k.starts_with("transformer_blocks."))
}

pub fn read_tensors(weights: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let raw = if weights.extension().is_some_and(|e| e == "bin") {
        super::pytorch::PickleCheckpoint::open(weights, Default::default())?.read_tensors(device)?
    } else {
        crate::formats::safetensors_file::read_tensors(weights, device)?
    };
    official_tensors(&raw)
}
