//! DiT hyper-parameters: the 12 paper presets and fully custom shapes.

use crate::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Everything that fixes the shapes of a DiT's parameters, plus the two
/// training-time facts a checkpoint must carry (class dropout, learned σ).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DitConfig {
    /// Spatial size of the model input (latent size for latent models).
    pub input_size: usize,
    pub patch_size: usize,
    pub in_channels: usize,
    pub hidden_size: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
    /// Probability of replacing a label with the null class while training.
    /// Any value > 0 adds the null-class row to the label table.
    pub class_dropout_prob: f64,
    pub num_classes: usize,
    /// Predict the variance interpolation as well as ε (doubles the output).
    pub learn_sigma: bool,
}

/// Depth, width and heads of the paper's four model sizes (Table 1).
const SIZES: [(&str, usize, usize, usize); 4] = [
    ("S", 12, 384, 6),
    ("B", 12, 768, 12),
    ("L", 24, 1024, 16),
    ("XL", 28, 1152, 16),
];

/// The 12 preset names, `DiT-S/2` … `DiT-XL/8`.
pub fn preset_names() -> Vec<String> {
    SIZES
        .iter()
        .flat_map(|(size, ..)| [2, 4, 8].map(|p| format!("DiT-{size}/{p}")))
        .collect()
}

impl DitConfig {
    /// A paper preset (`DiT-XL/2`, also `XL/2`, case-insensitive) for ImageNet
    /// in the SD-VAE latent space: 4 channels, 1000 classes, learned σ.
    /// `input_size` is the latent size (image size / 8).
    pub fn preset(name: &str, input_size: usize) -> Result<Self> {
        let upper = name.trim().to_ascii_uppercase();
        let short = upper.strip_prefix("DIT-").unwrap_or(&upper);
        let (size, patch) = short.split_once('/').with_context(|| {
            format!("model name '{name}' is not of the form DiT-<S|B|L|XL>/<2|4|8>")
        })?;
        let patch: usize = patch
            .parse()
            .ok()
            .filter(|p| [2, 4, 8].contains(p))
            .with_context(|| format!("model '{name}': patch size must be 2, 4 or 8"))?;
        let &(_, depth, hidden_size, num_heads) =
            SIZES.iter().find(|(s, ..)| *s == size).with_context(|| {
                format!(
                    "unknown model '{name}'; presets are {}",
                    preset_names().join(", ")
                )
            })?;
        let config = Self {
            input_size,
            patch_size: patch,
            in_channels: 4,
            hidden_size,
            depth,
            num_heads,
            mlp_ratio: 4.0,
            class_dropout_prob: 0.1,
            num_classes: 1000,
            learn_sigma: true,
        };
        config.validate()?;
        Ok(config)
    }

    /// Heads for a width when a checkpoint does not say: the paper's presets,
    /// otherwise 64-dimensional heads as in S, B and L.
    pub fn default_heads(hidden_size: usize) -> Option<usize> {
        SIZES
            .iter()
            .find(|(.., d, _)| *d == hidden_size)
            .map(|(.., h)| *h)
            .or_else(|| hidden_size.is_multiple_of(64).then_some(hidden_size / 64))
    }

    pub fn validate(&self) -> Result<()> {
        let c = self;
        if c.patch_size == 0 || c.input_size == 0 || !c.input_size.is_multiple_of(c.patch_size) {
            bail!(
                "input size {} is not a multiple of patch size {}",
                c.input_size,
                c.patch_size
            );
        }
        if c.num_heads == 0 || !c.hidden_size.is_multiple_of(c.num_heads) {
            bail!(
                "hidden size {} is not divisible by {} heads",
                c.hidden_size,
                c.num_heads
            );
        }
        if !c.hidden_size.is_multiple_of(4) {
            bail!(
                "hidden size {} must be a multiple of 4 for the 2-D sin-cos table",
                c.hidden_size
            );
        }
        if c.depth == 0 || c.in_channels == 0 || c.num_classes == 0 {
            bail!("depth, in_channels and num_classes must be positive");
        }
        if c.mlp_ratio.is_nan() || c.mlp_ratio <= 0.0 || !(0.0..1.0).contains(&c.class_dropout_prob)
        {
            bail!("mlp_ratio must be > 0 and class_dropout_prob in [0, 1)");
        }
        Ok(())
    }

    pub fn out_channels(&self) -> usize {
        if self.learn_sigma {
            2 * self.in_channels
        } else {
            self.in_channels
        }
    }

    /// Tokens per side.
    pub fn grid_size(&self) -> usize {
        self.input_size / self.patch_size
    }

    pub fn num_tokens(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    pub fn mlp_hidden(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }

    /// The label id that means "no class" (used for guidance).
    pub fn null_class(&self) -> Option<u32> {
        self.has_null_class().then_some(self.num_classes as u32)
    }

    pub fn has_null_class(&self) -> bool {
        self.class_dropout_prob > 0.0
    }

    pub fn label_table_rows(&self) -> usize {
        self.num_classes + usize::from(self.has_null_class())
    }

    /// A short human name: the preset's when the shapes match one.
    pub fn describe(&self) -> String {
        let preset = SIZES.iter().find(|(_, depth, d, h)| {
            *depth == self.depth && *d == self.hidden_size && *h == self.num_heads
        });
        match preset {
            Some((size, ..)) if self.mlp_ratio == 4.0 => format!("DiT-{size}/{}", self.patch_size),
            _ => format!(
                "custom DiT (depth {}, hidden {}, {} heads, patch {})",
                self.depth, self.hidden_size, self.num_heads, self.patch_size
            ),
        }
    }
}
