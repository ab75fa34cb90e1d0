//! What a checkpoint implies for sampling it, beyond its weights: which file
//! a run folder means, the diffusion it was trained with, its class names.
//! `dit sample` and `dit serve` both read a checkpoint through these, so the
//! same checkpoint samples the same way in both.

use super::ClassNames;
use crate::diffusion::{DiffusionConfig, VarianceType};
use crate::model::Dit;
use crate::train::checkpoint::{resolve, stored_class_names, stored_diffusion_config};
use std::path::{Path, PathBuf};

/// A `dit train` run folder means its newest checkpoint; any other path
/// (a file, a diffusers folder) is the checkpoint itself.
pub fn checkpoint_file(path: &Path) -> PathBuf {
    match resolve(path) {
        Ok(file) if path.is_dir() && path.join("checkpoints").is_dir() => file,
        _ => path.to_path_buf(),
    }
}

/// The diffusion a checkpoint was trained with, else DiT's.
pub fn sampling_diffusion(ckpt: &Path, model: &Dit) -> DiffusionConfig {
    stored_diffusion_config(ckpt).unwrap_or_else(|| {
        let default = DiffusionConfig::default();
        if model.config().learn_sigma {
            default
        } else {
            // ADM's choice for models without a learned variance.
            DiffusionConfig {
                variance: VarianceType::FixedLarge,
                ..default
            }
        }
    })
}

/// Names for classes: a dit train checkpoint's own, else ImageNet's for
/// 1000-class models.
pub fn checkpoint_class_names(ckpt: &Path, num_classes: usize) -> Option<ClassNames> {
    match stored_class_names(ckpt) {
        Some(names) if names.len() == num_classes => Some(ClassNames::from_names(&names)),
        _ if num_classes == 1000 => Some(ClassNames::imagenet()),
        _ => None,
    }
}
