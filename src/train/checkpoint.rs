//! Training checkpoints: one safetensors file holding the model, its EMA and
//! the optimizer moments, with everything else (configurations, step, data
//! position, class names, hyper-parameters) as JSON in the metadata. One file
//! is written atomically, so a crash or a full disk mid-save leaves the
//! previous checkpoint whole.
//!
//! `Dit::load` reads these files too (EMA weights by default).

use super::config::TrainConfig;
use crate::data::LoaderState;
use crate::formats::safetensors_file;
use crate::model::DitConfig;
use crate::transport::ObjectiveConfig;
use crate::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::model::checkpoint::{CONFIG_KEY, EMA_PREFIX, MODEL_PREFIX, TRAINING_FORMAT as FORMAT};

const OPTIMIZER_PREFIX: &str = "adamw.";
const STATE_KEY: &str = "train_state";
/// DDPM checkpoints record their diffusion here (as they always have).
const DIFFUSION_KEY: &str = "diffusion_config";
/// Every checkpoint records its objective here (`{"kind": "ddpm"|"sit", …}`).
const OBJECTIVE_KEY: &str = "objective";

/// What the data was, so a resume can check it is given the same data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// "fashion-mnist (embedded)" or the image folder's path.
    pub source: String,
    pub sample_shape: (usize, usize, usize),
    pub class_names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps completed.
    pub step: u64,
    pub loader: LoaderState,
    pub data: DataSpec,
    pub train: TrainConfig,
}

pub struct TrainCheckpoint {
    pub model_config: DitConfig,
    pub objective: ObjectiveConfig,
    pub state: TrainState,
    pub params: HashMap<String, Tensor>,
    pub ema: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
}

impl TrainCheckpoint {
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = HashMap::new();
        for (prefix, group) in [
            (MODEL_PREFIX, &self.params),
            (EMA_PREFIX, &self.ema),
            (OPTIMIZER_PREFIX, &self.optimizer),
        ] {
            for (name, t) in group {
                tensors.insert(format!("{prefix}{name}"), t.clone());
            }
        }
        let mut metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            (
                CONFIG_KEY.to_string(),
                serde_json::to_string(&self.model_config)?,
            ),
            (STATE_KEY.to_string(), serde_json::to_string(&self.state)?),
        ]);
        match &self.objective {
            // The layout every earlier `dit` wrote and reads.
            ObjectiveConfig::Ddpm(diffusion) => {
                metadata.insert(DIFFUSION_KEY.to_string(), serde_json::to_string(diffusion)?)
            }
            sit => metadata.insert(OBJECTIVE_KEY.to_string(), serde_json::to_string(sit)?),
        };
        crate::atomic_file::write_atomically(path, |tmp| {
            safetensors_file::write(tmp, &tensors, metadata)
        })
        .with_context(|| format!("saving checkpoint {}", path.display()))
    }

    /// The model, the objective and the run state a checkpoint records,
    /// read from its header alone.
    pub fn read_description(path: &Path) -> Result<(DitConfig, ObjectiveConfig, TrainState)> {
        let header = safetensors_file::read_header(path)?;
        let meta = |key: &str| -> Result<&String> {
            header.metadata.get(key).with_context(|| {
                format!(
                    "{} is not a `dit train` checkpoint (no '{key}' metadata)",
                    path.display()
                )
            })
        };
        if meta("format")? != FORMAT {
            bail!("{} is not a `dit train` checkpoint", path.display());
        }
        let model_config = serde_json::from_str(meta(CONFIG_KEY)?)?;
        let objective = stored_objective_in(&header.metadata)
            .transpose()?
            .with_context(|| {
                format!(
                    "{} records neither a diffusion nor an objective",
                    path.display()
                )
            })?;
        let state = serde_json::from_str(meta(STATE_KEY)?)?;
        Ok((model_config, objective, state))
    }

    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let (model_config, objective, state) = Self::read_description(path)?;
        let mut params = HashMap::new();
        let mut ema = HashMap::new();
        let mut optimizer = HashMap::new();
        for (name, t) in safetensors_file::read_tensors(path, device)? {
            let (group, rest) = if let Some(r) = name.strip_prefix(MODEL_PREFIX) {
                (&mut params, r)
            } else if let Some(r) = name.strip_prefix(EMA_PREFIX) {
                (&mut ema, r)
            } else if let Some(r) = name.strip_prefix(OPTIMIZER_PREFIX) {
                (&mut optimizer, r)
            } else {
                bail!("{}: unexpected tensor '{name}'", path.display());
            };
            group.insert(rest.to_string(), t);
        }
        Ok(Self {
            model_config,
            objective,
            state,
            params,
            ema,
            optimizer,
        })
    }
}

/// The objective a checkpoint records, if any (`None` for files that are not
/// `dit train` checkpoints, or not safetensors at all).
pub fn stored_objective(path: &Path) -> Option<ObjectiveConfig> {
    let header = safetensors_file::read_header(path).ok()?;
    stored_objective_in(&header.metadata)?.ok()
}

fn stored_objective_in(metadata: &HashMap<String, String>) -> Option<Result<ObjectiveConfig>> {
    if let Some(json) = metadata.get(OBJECTIVE_KEY) {
        return Some(serde_json::from_str(json).map_err(Into::into));
    }
    let diffusion = metadata.get(DIFFUSION_KEY)?;
    Some(
        serde_json::from_str(diffusion)
            .map(ObjectiveConfig::Ddpm)
            .map_err(Into::into),
    )
}

/// Reads the class names stored in a checkpoint, if any.
pub fn stored_class_names(path: &Path) -> Option<Vec<String>> {
    let header = safetensors_file::read_header(path).ok()?;
    let state: TrainState = serde_json::from_str(header.metadata.get(STATE_KEY)?).ok()?;
    Some(state.data.class_names)
}

/// `step-0001000.safetensors` in a run's `checkpoints/` folder.
pub fn checkpoint_path(run_dir: &Path, step: u64) -> PathBuf {
    run_dir
        .join("checkpoints")
        .join(format!("step-{step:07}.safetensors"))
}

/// The run folder a checkpoint belongs to: `<run>` for
/// `<run>/checkpoints/step-N.safetensors`, else the file's own folder. A
/// resumed run continues there unless told otherwise.
pub fn run_dir(checkpoint: &Path) -> PathBuf {
    let parent = match checkpoint.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match parent.file_name() {
        Some(name) if name == "checkpoints" => parent
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        _ => parent.to_path_buf(),
    }
}

/// The newest checkpoint of a run folder (or the file itself).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let dir = path.join("checkpoints");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "{} is neither a checkpoint file nor a run folder with checkpoints/",
                path.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-") && n.ends_with(".safetensors"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no checkpoints in {}", dir.display()))
}
