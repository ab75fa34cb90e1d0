//! The parameter table of a DiT: official state_dict names, shapes, and how
//! the paper initialises each. Counting, initialising and validating a
//! checkpoint all read this one list.

use super::config::DitConfig;
use super::embed::{sincos_pos_embed_2d, TIMESTEP_FREQUENCIES};
use crate::{bail, Result};
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::collections::{HashMap, HashSet};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Xavier/Glorot uniform on the weight viewed as (out, in).
    XavierUniform,
    Normal {
        std: f64,
    },
    Zeros,
    /// The fixed 2-D sin-cos table (not trained).
    SinCosTable,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub trainable: bool,
    pub init: Init,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

fn linear(specs: &mut Vec<ParamSpec>, prefix: &str, inp: usize, out: usize, weight_init: Init) {
    specs.push(ParamSpec {
        name: format!("{prefix}.weight"),
        shape: vec![out, inp],
        trainable: true,
        init: weight_init,
    });
    let bias_init = Init::Zeros;
    specs.push(ParamSpec {
        name: format!("{prefix}.bias"),
        shape: vec![out],
        trainable: true,
        init: bias_init,
    });
}

/// Every parameter of the model, in the official state_dict's order.
pub fn param_specs(cfg: &DitConfig) -> Vec<ParamSpec> {
    let d = cfg.hidden_size;
    let p = cfg.patch_size;
    let mut s = Vec::new();
    s.push(ParamSpec {
        name: "x_embedder.proj.weight".into(),
        shape: vec![d, cfg.in_channels, p, p],
        trainable: true,
        init: Init::XavierUniform,
    });
    s.push(ParamSpec {
        name: "x_embedder.proj.bias".into(),
        shape: vec![d],
        trainable: true,
        init: Init::Zeros,
    });
    let t_init = Init::Normal { std: 0.02 };
    linear(&mut s, "t_embedder.mlp.0", TIMESTEP_FREQUENCIES, d, t_init);
    linear(&mut s, "t_embedder.mlp.2", d, d, t_init);
    s.push(ParamSpec {
        name: "y_embedder.embedding_table.weight".into(),
        shape: vec![cfg.label_table_rows(), d],
        trainable: true,
        init: Init::Normal { std: 0.02 },
    });
    s.push(ParamSpec {
        name: "pos_embed".into(),
        shape: vec![1, cfg.num_tokens(), d],
        trainable: false,
        init: Init::SinCosTable,
    });
    for i in 0..cfg.depth {
        let b = format!("blocks.{i}");
        linear(
            &mut s,
            &format!("{b}.attn.qkv"),
            d,
            3 * d,
            Init::XavierUniform,
        );
        linear(&mut s, &format!("{b}.attn.proj"), d, d, Init::XavierUniform);
        linear(
            &mut s,
            &format!("{b}.mlp.fc1"),
            d,
            cfg.mlp_hidden(),
            Init::XavierUniform,
        );
        linear(
            &mut s,
            &format!("{b}.mlp.fc2"),
            cfg.mlp_hidden(),
            d,
            Init::XavierUniform,
        );
        // adaLN-Zero: the modulation starts at zero so every block is the identity.
        linear(
            &mut s,
            &format!("{b}.adaLN_modulation.1"),
            d,
            6 * d,
            Init::Zeros,
        );
    }
    let out = p * p * cfg.out_channels();
    linear(&mut s, "final_layer.linear", d, out, Init::Zeros);
    linear(
        &mut s,
        "final_layer.adaLN_modulation.1",
        d,
        2 * d,
        Init::Zeros,
    );
    s
}

/// (all parameters, trainable parameters).
pub fn parameter_counts(cfg: &DitConfig) -> (usize, usize) {
    let specs = param_specs(cfg);
    let total = specs.iter().map(ParamSpec::numel).sum();
    let trainable = specs
        .iter()
        .filter(|s| s.trainable)
        .map(ParamSpec::numel)
        .sum();
    (total, trainable)
}

/// Fresh weights initialised as the paper's `initialize_weights`, from `seed`.
pub fn initial_tensors(
    cfg: &DitConfig,
    seed: u64,
    device: &Device,
    dtype: DType,
) -> Result<HashMap<String, Tensor>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = HashMap::new();
    for spec in param_specs(cfg) {
        let n = spec.numel();
        let tensor = match spec.init {
            Init::Zeros => Tensor::zeros(spec.shape.as_slice(), dtype, device)?,
            Init::SinCosTable => {
                sincos_pos_embed_2d(cfg.hidden_size, cfg.grid_size(), device)?.to_dtype(dtype)?
            }
            Init::XavierUniform => {
                let fan_out = spec.shape[0];
                let fan_in = n / fan_out;
                let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
                let v: Vec<f32> = (0..n)
                    .map(|_| rng.gen_range(-bound..bound) as f32)
                    .collect();
                Tensor::from_vec(v, spec.shape.as_slice(), device)?.to_dtype(dtype)?
            }
            Init::Normal { std } => {
                let normal = Normal::new(0.0, std)
                    .map_err(|e| crate::err!("{}: init std {std}: {e}", spec.name))?;
                let v: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng) as f32).collect();
                Tensor::from_vec(v, spec.shape.as_slice(), device)?.to_dtype(dtype)?
            }
        };
        out.insert(spec.name, tensor);
    }
    Ok(out)
}

/// Refuses shapes that do not match the configuration, naming the first
/// offending key. `pos_embed` may be absent (it is computed).
pub fn check_shapes(config: &DitConfig, shapes: &HashMap<String, Vec<usize>>) -> Result<()> {
    let specs = param_specs(config);
    for spec in &specs {
        match shapes.get(&spec.name) {
            None if spec.name == "pos_embed" => {}
            None => bail!(
                "missing parameter '{}' (expected shape {:?})",
                spec.name,
                spec.shape
            ),
            Some(found) if *found != spec.shape => bail!(
                "parameter '{}' has shape {:?}, expected {:?} for {}",
                spec.name,
                found,
                spec.shape,
                config.describe()
            ),
            Some(_) => {}
        }
    }
    if let Some(names) = unexpected_names(shapes, specs.iter().map(|s| s.name.as_str())) {
        bail!("unexpected parameter(s), not part of this DiT: {names}");
    }
    Ok(())
}

/// The names in a weight file that a parameter table lacks: up to five,
/// sorted, comma-separated (enough to recognise a foreign or newer file);
/// `None` when every name is known.
pub fn unexpected_names<'a, V>(
    found: &HashMap<String, V>,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let known: HashSet<&str> = known.into_iter().collect();
    let mut unexpected: Vec<&str> = found
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if unexpected.is_empty() {
        return None;
    }
    unexpected.sort_unstable();
    unexpected.truncate(5);
    Some(unexpected.join(", "))
}
