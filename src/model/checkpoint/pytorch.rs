//! PyTorch `torch.save` zip checkpoints: the released state dicts and the
//! official `train.py` dictionaries `{"model", "ema", "opt", "args"}`.

use super::infer::Shapes;
use crate::{bail, Result};
use candle_core::pickle::PthTensors;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Which weights to take from a training checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightSet {
    /// The exponential moving average, which the paper samples from.
    #[default]
    Ema,
    /// The raw optimised weights.
    Raw,
}

impl WeightSet {
    fn key(self) -> &'static str {
        match self {
            WeightSet::Ema => "ema",
            WeightSet::Raw => "model",
        }
    }
}

pub struct PickleCheckpoint {
    tensors: PthTensors,
    /// `module.` when the state dict was saved from a DistributedDataParallel wrapper.
    prefix: &'static str,
}

impl PickleCheckpoint {
    pub fn open(path: &Path, which: WeightSet) -> Result<Self> {
        let unreadable = |e: candle_core::Error| {
            crate::err!("{} is not a readable PyTorch checkpoint (truncated, corrupt, or not a torch.save zip file): {e}", path.display())
        };
        // A training dictionary has the weights under a key; a released
        // checkpoint is the state dict itself.
        let tensors = match PthTensors::new(path, Some(which.key())) {
            Ok(t) if !t.tensor_infos().is_empty() => t,
            Ok(_) | Err(_) => {
                let plain = PthTensors::new(path, None).map_err(unreadable)?;
                if plain.tensor_infos().is_empty() {
                    bail!(
                        "{} holds no tensors at the top level or under '{}': not a DiT checkpoint",
                        path.display(),
                        which.key()
                    );
                }
                plain
            }
        };
        let prefix = if tensors
            .tensor_infos()
            .keys()
            .all(|k| k.starts_with("module."))
        {
            "module."
        } else {
            ""
        };
        Ok(Self { tensors, prefix })
    }

    pub fn shapes(&self) -> Shapes {
        self.tensors
            .tensor_infos()
            .iter()
            .map(|(k, info)| {
                (
                    k[self.prefix.len()..].to_string(),
                    info.layout.dims().to_vec(),
                )
            })
            .collect()
    }

    pub fn read_tensors(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for name in self.tensors.tensor_infos().keys() {
            let t = self
                .tensors
                .get(name)
                .map_err(|e| crate::err!("reading tensor '{name}': {e} (truncated file?)"))?
                .ok_or_else(|| crate::err!("tensor '{name}' vanished while reading"))?;
            out.insert(name[self.prefix.len()..].to_string(), t.to_device(device)?);
        }
        Ok(out)
    }
}
