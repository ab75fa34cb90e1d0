//! Reading the parameters of a TorchScript archive (`torch.jit.save`) without
//! PyTorch.
//!
//! A TorchScript file is a zip holding `<name>/data.pkl` (the module tree,
//! pickled: each module is an object whose state dict maps attribute names to
//! sub-modules, tensors and plain values), `<name>/code/` (the TorchScript
//! source of every module) and `<name>/data/<N>` (raw tensor storages). A plain
//! `torch.save` checkpoint has no `code/`, which is how the two are told apart.
//! candle's pickle reader parses `data.pkl`; walking the module tree is done here.

use crate::{bail, Context, Result};
use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// A plain (non-tensor) module attribute, as far as evaluation needs them.
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    Int(i64),
    Ints(Vec<i64>),
}

/// The tensors and integer attributes of a TorchScript module tree, keyed by
/// dotted path (`net.layers.mixed_4.tower.conv_1.weight`).
pub struct TorchScriptArchive {
    path: PathBuf,
    tensors: BTreeMap<String, TensorInfo>,
    attributes: BTreeMap<String, Attribute>,
    /// The class of the root module, e.g. `__torch__.wrap_net.WrapNet`.
    pub root_class: String,
}

impl TorchScriptArchive {
    /// Opens a TorchScript file and indexes its module tree (tensor data is
    /// read lazily by [`Self::load_all`]).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut zip = zip::ZipArchive::new(BufReader::new(file)).with_context(|| {
            format!(
                "{} is not a TorchScript archive (not a zip file; expected the output of torch.jit.save)",
                path.display()
            )
        })?;
        let names: Vec<String> = zip.file_names().map(str::to_string).collect();
        let pickle_name = names
            .iter()
            .find(|n| n.ends_with("/data.pkl") || n.as_str() == "data.pkl")
            .ok_or_else(|| {
                crate::err!(
                    "{} is not a TorchScript archive: no data.pkl in the zip",
                    path.display()
                )
            })?
            .clone();
        let prefix = pickle_name
            .strip_suffix("data.pkl")
            .unwrap_or("")
            .to_string();
        if !names
            .iter()
            .any(|n| n.starts_with(&format!("{prefix}code/")))
        {
            bail!(
                "{} is not a TorchScript archive: it has {pickle_name} but no {prefix}code/ \
                 (a torch.save checkpoint rather than torch.jit.save output?)",
                path.display()
            );
        }

        let mut stack = Stack::empty();
        {
            let entry = zip.by_name(&pickle_name)?;
            stack
                .read_loop(&mut BufReader::new(entry))
                .with_context(|| format!("parsing {pickle_name} in {}", path.display()))?;
        }
        let root = stack.finalize()?;
        let Some((root_class, state)) = as_module(root) else {
            bail!(
                "{}: the root of {pickle_name} is not a TorchScript module object",
                path.display()
            );
        };
        let mut archive = Self {
            path: path.to_path_buf(),
            tensors: BTreeMap::new(),
            attributes: BTreeMap::new(),
            root_class,
        };
        let data_dir = PathBuf::from(format!("{prefix}data"));
        archive.walk("", state, &data_dir)?;
        Ok(archive)
    }

    fn walk(&mut self, prefix: &str, state: Vec<(Object, Object)>, data_dir: &Path) -> Result<()> {
        for (key, value) in state {
            let Object::Unicode(key) = key else { continue };
            let name = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                Object::Int(v) => {
                    self.attributes.insert(name, Attribute::Int(v as i64));
                }
                Object::Long(v) => {
                    self.attributes.insert(name, Attribute::Int(v));
                }
                Object::List(items) | Object::Tuple(items) => {
                    if let Some(ints) = ints_of(&items) {
                        self.attributes.insert(name, Attribute::Ints(ints));
                    }
                }
                value @ Object::Build { .. } => {
                    if let Some((_class, state)) = as_module(value) {
                        self.walk(&name, state, data_dir)?;
                    }
                }
                value @ Object::Reduce { .. } => {
                    if let Some(ints) = as_int_list(&value) {
                        self.attributes.insert(name, Attribute::Ints(ints));
                    } else if let Some(info) = value
                        .into_tensor_info(Object::Unicode(name.clone()), data_dir)
                        .with_context(|| format!("decoding tensor {name}"))?
                    {
                        self.tensors.insert(name, info);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Dotted names of all tensors, sorted.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Shape of a tensor, if present.
    pub fn tensor_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.layout.dims().to_vec())
    }

    /// An integer (or integer-list) attribute, e.g. a convolution's `stride`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.get(name)
    }

    /// Reads every tensor in one pass over the archive.
    pub fn load_all(&self, device: &Device) -> Result<BTreeMap<String, Tensor>> {
        let file = File::open(&self.path)?;
        let mut zip = zip::ZipArchive::new(BufReader::new(file))?;
        let mut out = BTreeMap::new();
        for (name, info) in &self.tensors {
            let layout = &info.layout;
            if !layout.is_contiguous() {
                bail!(
                    "{}: tensor {name} is stored non-contiguously, which is not supported",
                    self.path.display()
                );
            }
            let mut entry = zip.by_name(&info.path).with_context(|| {
                format!(
                    "{}: storage {} of {name} is missing",
                    self.path.display(),
                    info.path
                )
            })?;
            let elem = info.dtype.size_in_bytes();
            let start = layout.start_offset();
            let len = layout.shape().elem_count() * elem;
            let mut bytes = vec![0u8; start + len];
            entry.read_exact(&mut bytes).with_context(|| {
                format!("{}: storage of {name} is truncated", self.path.display())
            })?;
            let tensor =
                Tensor::from_raw_buffer(&bytes[start..], info.dtype, layout.dims(), device)?;
            out.insert(name.clone(), tensor);
        }
        Ok(out)
    }
}

fn ints_of(items: &[Object]) -> Option<Vec<i64>> {
    items
        .iter()
        .map(|o| match o {
            Object::Int(v) => Some(*v as i64),
            Object::Long(v) => Some(*v),
            _ => None,
        })
        .collect()
}

/// TorchScript pickles `List[int]` attributes as
/// `torch.jit._pickle.build_intlist([...])`.
fn as_int_list(obj: &Object) -> Option<Vec<i64>> {
    let Object::Reduce { callable, args } = obj else {
        return None;
    };
    match (callable.as_ref(), args.as_ref()) {
        (
            Object::Class {
                module_name,
                class_name,
            },
            Object::Tuple(args),
        ) if module_name == "torch.jit._pickle" && class_name == "build_intlist" => {
            match args.as_slice() {
                [Object::List(items)] => ints_of(items),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A pickled TorchScript module: `NEWOBJ` of a `__torch__.*` class followed by
/// `BUILD` with its state dict. Returns the class and the state.
fn as_module(obj: Object) -> Option<(String, Vec<(Object, Object)>)> {
    let Object::Build { callable, args } = obj else {
        return None;
    };
    let Object::Reduce {
        callable: class, ..
    } = *callable
    else {
        return None;
    };
    let Object::Class {
        module_name,
        class_name,
    } = *class
    else {
        return None;
    };
    if !module_name.starts_with("__torch__") {
        return None;
    }
    let Object::Dict(state) = *args else {
        return None;
    };
    Some((format!("{module_name}.{class_name}"), state))
}
