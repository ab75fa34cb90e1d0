//! The Diffusion Transformer: patchify, N adaLN-Zero blocks, final layer,
//! unpatchify (paper, Figure 3, left).

use super::block::AdaLnZeroBlock;
use super::config::DitConfig;
use super::embed::{sincos_pos_embed_2d, LabelEmbedder, PatchEmbed, TimestepEmbedder};
use super::final_layer::FinalLayer;
use super::params::check_shapes;
use super::weights::Weights;
use crate::compute::Precision;
use crate::diffusion::guidance::ClassifierFreeGuidance;
use crate::{bail, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

pub struct Dit {
    config: DitConfig,
    x_embedder: PatchEmbed,
    pos_embed: Tensor,
    t_embedder: TimestepEmbedder,
    y_embedder: LabelEmbedder,
    blocks: Vec<AdaLnZeroBlock>,
    final_layer: FinalLayer,
    precision: Precision,
}

impl Dit {
    /// Assembles a model from official-named tensors. Every parameter must be
    /// present with its expected shape; `pos_embed` may be absent (it is then
    /// computed). Tensors are used as given, so `Var`-backed tensors train.
    pub fn from_tensors(config: DitConfig, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        config.validate()?;
        let shapes = tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.dims().to_vec()))
            .collect();
        check_shapes(&config, &shapes)?;
        let w = Weights::new(tensors);
        let x_embedder = PatchEmbed::new(w)?;
        let weight = w.get("x_embedder.proj.weight")?;
        let pos_embed = match tensors.get("pos_embed") {
            Some(p) => p.clone(),
            None => sincos_pos_embed_2d(config.hidden_size, config.grid_size(), weight.device())?
                .to_dtype(weight.dtype())?,
        };
        let blocks = (0..config.depth)
            .map(|i| {
                let prefix = format!("blocks.{i}.");
                AdaLnZeroBlock::new(Weights::with_prefix(tensors, &prefix), config.num_heads)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            x_embedder,
            pos_embed,
            t_embedder: TimestepEmbedder::new(w)?,
            y_embedder: LabelEmbedder::new(w)?,
            blocks,
            final_layer: FinalLayer::new(w)?,
            config,
            precision: Precision::default(),
        })
    }

    /// The same model computing its matrix products in `precision` (the
    /// weights keep their dtype).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// A freshly initialised model (paper initialisation; outputs zeros).
    pub fn init(config: DitConfig, seed: u64, device: &Device, dtype: DType) -> Result<Self> {
        let tensors = super::params::initial_tensors(&config, seed, device, dtype)?;
        Self::from_tensors(config, &tensors)
    }

    pub fn config(&self) -> &DitConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        self.pos_embed.device()
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.pos_embed.dtype()
    }

    /// The dtype activations are stored in: the weights' own in both
    /// precisions (bf16 rounds inside the products; see
    /// [`Precision::activation_dtype`]).
    pub fn activation_dtype(&self) -> DType {
        self.dtype()
    }

    /// Refuses labels the label table has no row for (the null class is
    /// allowed when the model has one). Jobs call this once for all their
    /// labels; [`Dit::forward`] does not check, so that a step never reads
    /// labels back from the device.
    pub fn check_labels(&self, labels: &[u32]) -> Result<()> {
        let rows = self.config.label_table_rows();
        match labels.iter().find(|&&l| l as usize >= rows) {
            Some(bad) => bail!(
                "class {bad} out of range: the model has {} classes{}",
                self.config.num_classes,
                if self.config.has_null_class() {
                    format!(" and the null class {}", self.config.num_classes)
                } else {
                    String::new()
                }
            ),
            None => Ok(()),
        }
    }

    /// ε (and variance) prediction. `x`: `(N, C, H, W)`; `t`: `(N,)` float
    /// timesteps; `y`: `(N,)` u32 labels in range (see [`Dit::check_labels`];
    /// the null class allowed). The output has `x`'s dtype.
    pub fn forward(&self, x: &Tensor, t: &Tensor, y: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let cfg = &self.config;
        if c != cfg.in_channels || h != cfg.input_size || w != cfg.input_size {
            bail!(
                "input of shape ({n}, {c}, {h}, {w}) does not fit the model: expected (N, {}, {}, {})",
                cfg.in_channels,
                cfg.input_size,
                cfg.input_size
            );
        }
        if t.dims() != [n] || y.dims() != [n] {
            bail!(
                "t and y must have shape ({n},), got {:?} and {:?}",
                t.dims(),
                y.dims()
            );
        }
        let tokens = self
            .x_embedder
            .forward(&x.to_dtype(self.activation_dtype())?, self.precision)?
            .broadcast_add(&self.pos_embed)?;
        let c = (self.t_embedder.forward(t, self.precision)? + self.y_embedder.forward(y)?)?;
        // Every block (and the final layer) applies SiLU to c first; do it once.
        let c_silu = c.silu()?;
        let mut tokens = tokens;
        for block in &self.blocks {
            tokens = block.forward(&tokens, &c_silu, self.precision)?;
        }
        let out = self.final_layer.forward(&tokens, &c_silu, self.precision)?;
        let out = self.unpatchify(&out)?;
        Ok(out.to_dtype(x.dtype())?)
    }

    /// Forward on a guidance batch: rows `0..N` conditional, `N..2N` null
    /// class. As in the official release, the first half of `x` is used for
    /// both halves, and the guided ε replaces both halves of the output.
    pub fn forward_with_cfg(
        &self,
        x: &Tensor,
        t: &Tensor,
        y: &Tensor,
        guidance: &ClassifierFreeGuidance,
    ) -> Result<Tensor> {
        let n2 = x.dim(0)?;
        if n2 % 2 != 0 {
            bail!("guidance batch must have an even size (conditional then null class), got {n2}");
        }
        let half = x.narrow(0, 0, n2 / 2)?;
        let out = self.forward(&Tensor::cat(&[&half, &half], 0)?, t, y)?;
        guidance.combine(&out, self.config.in_channels)
    }

    /// `(N, T, p·p·C)` → `(N, C, H, W)`.
    fn unpatchify(&self, x: &Tensor) -> Result<Tensor> {
        let cfg = &self.config;
        let (p, g, c) = (cfg.patch_size, cfg.grid_size(), cfg.out_channels());
        let n = x.dim(0)?;
        let x = x.reshape(vec![n, g, g, p, p, c])?;
        // (n, h, w, p, q, c) → (n, c, h, p, w, q)
        Ok(x.permute(vec![0, 5, 1, 3, 2, 4])?
            .reshape((n, c, g * p, g * p))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The values cannot show whether the blocks hand their packings to the
    /// ops (packed once or per product, the products agree), so this checks
    /// the wiring: a bf16 forward of plain weights packs every block weight;
    /// f32, and weights that are Vars, pack none.
    #[test]
    fn a_bf16_sampling_forward_packs_every_block_weight() -> Result<()> {
        let config = DitConfig::preset("DiT-S/8", 32)?;
        let device = Device::Cpu;
        let plain = super::super::params::initial_tensors(&config, 3, &device, DType::F32)?;
        let vars = plain
            .iter()
            .map(|(k, t)| Ok((k.clone(), Var::from_tensor(t)?.as_tensor().clone())))
            .collect::<Result<HashMap<_, _>>>()?;
        let x = Tensor::zeros((2, 4, 32, 32), DType::F32, &device)?;
        let t = Tensor::new(&[10f32, 900.0], &device)?;
        let y = Tensor::new(&[1u32, 2], &device)?;
        let packed = |model: &Dit| -> Vec<bool> {
            let blocks = model.blocks.iter();
            blocks
                .flat_map(|b| b.linears().map(|l| l.packing().is_made()))
                .collect()
        };
        for (tensors, precision, expected) in [
            (&plain, Precision::F32, false),
            (&vars, Precision::Bf16, false),
            (&plain, Precision::Bf16, true),
        ] {
            let model = Dit::from_tensors(config.clone(), tensors)?.with_precision(precision);
            assert!(packed(&model).iter().all(|&p| !p));
            model.forward(&x, &t, &y)?;
            let made = packed(&model);
            assert_eq!(made.len(), 5 * config.depth);
            let var = tensors.values().next().is_some_and(|t| t.is_variable());
            assert!(
                made.iter().all(|&p| p == expected),
                "{precision:?}, Var weights {var}: packed {made:?}"
            );
        }
        Ok(())
    }
}
