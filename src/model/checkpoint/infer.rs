//! Recovering a [`DitConfig`] from parameter shapes alone, for files that
//! carry no configuration (official `.pt` checkpoints).

use crate::model::config::DitConfig;
use crate::{bail, Context, Result};

pub use crate::formats::safetensors_file::Shapes;

fn shape<'a>(shapes: &'a Shapes, key: &str) -> Result<&'a [usize]> {
    shapes.get(key).map(Vec::as_slice).with_context(|| {
        format!("missing parameter '{key}': not a DiT checkpoint, or a different architecture")
    })
}

/// Infers the configuration. The label table is taken to include the null
/// class (class dropout 0.1, as every official run); heads come from
/// `num_heads`, else the paper's preset for that width, else 64-wide heads.
pub fn infer_config(shapes: &Shapes, num_heads: Option<usize>) -> Result<DitConfig> {
    let patch_w = shape(shapes, "x_embedder.proj.weight")?;
    let [hidden_size, in_channels, patch_size, _] = *patch_w else {
        bail!("'x_embedder.proj.weight' has shape {patch_w:?}, expected (hidden, channels, patch, patch)");
    };
    let depth = (0..)
        .take_while(|i| shapes.contains_key(&format!("blocks.{i}.attn.qkv.weight")))
        .count();
    if depth == 0 {
        bail!("no transformer blocks found (missing 'blocks.0.attn.qkv.weight')");
    }
    let fc1 = shape(shapes, "blocks.0.mlp.fc1.weight")?;
    let mlp_ratio = fc1[0] as f64 / hidden_size as f64;
    let table = shape(shapes, "y_embedder.embedding_table.weight")?;
    let rows = table[0];
    let final_w = shape(shapes, "final_layer.linear.weight")?;
    let out_channels = final_w[0] / (patch_size * patch_size);
    let learn_sigma = if out_channels == 2 * in_channels {
        true
    } else if out_channels == in_channels {
        false
    } else {
        bail!(
            "'final_layer.linear.weight' has {} outputs: expected p²·C = {} or p²·2C = {}",
            final_w[0],
            patch_size * patch_size * in_channels,
            2 * patch_size * patch_size * in_channels
        );
    };
    let pos = shape(shapes, "pos_embed").context("cannot tell the input size")?;
    let tokens = pos.get(1).copied().unwrap_or(0);
    let grid = (tokens as f64).sqrt().round() as usize;
    if grid * grid != tokens {
        bail!("'pos_embed' has {tokens} tokens, which is not a square grid");
    }
    let num_heads = match num_heads.or_else(|| DitConfig::default_heads(hidden_size)) {
        Some(h) => h,
        None => bail!(
            "cannot infer the number of heads for hidden size {hidden_size}; pass it explicitly"
        ),
    };
    let config = DitConfig {
        input_size: grid * patch_size,
        patch_size,
        in_channels,
        hidden_size,
        depth,
        num_heads,
        mlp_ratio,
        class_dropout_prob: if rows > 1 { 0.1 } else { 0.0 },
        num_classes: rows.saturating_sub(1).max(1),
        learn_sigma,
    };
    config.validate()?;
    Ok(config)
}
