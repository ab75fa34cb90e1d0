//! Options shared by every command that reads a DiT checkpoint.

use clap::Args;
use dit::model::{LoadOptions, WeightSet};

#[derive(Args, Debug, Clone, Default)]
pub struct CheckpointArgs {
    /// Use the raw optimised weights of a training checkpoint instead of its EMA
    /// weights (the EMA is what the paper samples from).
    #[arg(long)]
    pub raw_weights: bool,
    /// Attention heads, for custom-width checkpoints that do not record them
    /// (the presets' widths, and 64-wide heads, are recognised).
    #[arg(long, value_name = "N")]
    pub num_heads: Option<usize>,
}

impl CheckpointArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            weights: if self.raw_weights {
                WeightSet::Raw
            } else {
                WeightSet::Ema
            },
            num_heads: self.num_heads,
            ..Default::default()
        }
    }
}
