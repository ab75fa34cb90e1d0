//! What a checkpoint implies for sampling it, beyond its weights: which file
//! a run folder means, the objective it was trained with, its class names.
//! `dit sample` and `dit serve` both read a checkpoint through these, so the
//! same checkpoint samples the same way in both.

use super::ClassNames;
use crate::diffusion::{DiffusionConfig, VarianceType};
use crate::model::Dit;
use crate::train::checkpoint::{resolve, stored_class_names, stored_objective};
use crate::transport::ObjectiveConfig;
use crate::{bail, Result};
use std::path::{Path, PathBuf};

/// A `dit train` run folder means its newest checkpoint; any other path
/// (a file, a diffusers folder) is the checkpoint itself.
pub fn checkpoint_file(path: &Path) -> PathBuf {
    match resolve(path) {
        Ok(file) if path.is_dir() && path.join("checkpoints").is_dir() => file,
        _ => path.to_path_buf(),
    }
}

/// What a checkpoint was trained with: what it records, else `named` (an
/// official SiT .pt is told so by its user, since its tensors look like a
/// DiT's), else DiT's diffusion. A `named` objective that contradicts the
/// recorded one is refused.
pub fn sampling_objective(
    ckpt: &Path,
    model: &Dit,
    named: Option<ObjectiveConfig>,
) -> Result<ObjectiveConfig> {
    let stored = stored_objective(ckpt);
    match (stored, named) {
        (Some(stored), Some(named)) if stored != named => bail!(
            "{} records its objective ({}); drop --objective and its options",
            ckpt.display(),
            stored.describe()
        ),
        (Some(objective), _) | (None, Some(objective)) => Ok(objective),
        (None, None) => {
            let default = DiffusionConfig::default();
            Ok(ObjectiveConfig::Ddpm(if model.config().learn_sigma {
                default
            } else {
                // ADM's choice for models without a learned variance.
                DiffusionConfig {
                    variance: VarianceType::FixedLarge,
                    ..default
                }
            }))
        }
    }
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
