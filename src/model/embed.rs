//! Inputs of the transformer: patch tokens with fixed positions, and the
//! conditioning vector c = timestep embedding + label embedding.

use super::linear::Linear;
use super::weights::Weights;
use crate::compute::Precision;
use crate::ops::bf16::round_operand;
use crate::Result;
use candle_core::{DType, Device, Tensor};

/// Frequencies fed to the timestep MLP.
pub const TIMESTEP_FREQUENCIES: usize = 256;

/// Non-overlapping p×p patches, each projected to D (a stride-p convolution).
///
/// Computed as one matmul over flattened patches, which is the same sum as
/// the convolution and lets the patch weights keep their `(D, C, p, p)` shape.
pub struct PatchEmbed {
    weight: Tensor,
    bias: Tensor,
    patch: usize,
}

impl PatchEmbed {
    pub fn new(w: Weights) -> Result<Self> {
        let weight = w.get("x_embedder.proj.weight")?;
        let patch = weight.dim(2)?;
        let weight = weight.flatten_from(1)?;
        Ok(Self {
            weight,
            bias: w.get("x_embedder.proj.bias")?,
            patch,
        })
    }

    /// `(N, C, H, W)` → `(N, T, D)`, tokens in row-major order; for bf16
    /// the product's operands are rounded (as autocast runs the conv).
    pub fn forward(&self, x: &Tensor, precision: Precision) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        let patches = x
            .reshape((n, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((n, gh * gw, c * p * p))?;
        let (patches, weight) = match precision {
            Precision::F32 => (patches, self.weight.clone()),
            Precision::Bf16 => (round_operand(&patches)?, round_operand(&self.weight)?),
        };
        Ok(patches
            .broadcast_matmul(&weight.t()?)?
            .broadcast_add(&self.bias)?)
    }
}

/// The fixed `(1, T, D)` 2-D sin-cos position table, computed in float64.
///
/// The first D/2 channels encode the column index and the next D/2 the row
/// index; each half is `[sin(pos·ω), cos(pos·ω)]`, ω_i = 10000^(−i/(D/4)).
pub fn sincos_pos_embed_2d(dim: usize, grid: usize, device: &Device) -> Result<Tensor> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|i| 1.0 / 10000f64.powf(i as f64 / quarter as f64))
        .collect();
    let mut table = Vec::with_capacity(grid * grid * dim);
    for row in 0..grid {
        for col in 0..grid {
            for pos in [col as f64, row as f64] {
                table.extend(omega.iter().map(|w| (pos * w).sin() as f32));
                table.extend(omega.iter().map(|w| (pos * w).cos() as f32));
            }
        }
    }
    Ok(Tensor::from_vec(table, (1, grid * grid, dim), device)?)
}

/// Sinusoidal features of a (possibly fractional) timestep, then a 2-layer MLP.
pub struct TimestepEmbedder {
    freqs: Tensor,
    fc1: Linear,
    fc2: Linear,
}

impl TimestepEmbedder {
    pub fn new(w: Weights) -> Result<Self> {
        let fc1 = w.linear("t_embedder.mlp.0")?;
        let device = fc1.weight().device().clone();
        Ok(Self {
            freqs: timestep_frequencies(&device)?,
            fc1,
            fc2: w.linear("t_embedder.mlp.2")?,
        })
    }

    /// `(N,)` timesteps → `(N, D)`, the MLP's products in `precision`.
    pub fn forward(&self, t: &Tensor, precision: Precision) -> Result<Tensor> {
        let dtype = self.fc1.weight().dtype();
        let args = t
            .to_dtype(DType::F32)?
            .unsqueeze(1)?
            .broadcast_mul(&self.freqs.unsqueeze(0)?)?;
        let features = Tensor::cat(&[args.cos()?, args.sin()?], 1)?.to_dtype(dtype)?;
        // candle's unfused products, as `nn.Linear`: a (N, 256) input is too
        // small for the fused kernel to gain anything.
        let hidden = self.fc1.forward_unfused(&features, precision)?.silu()?;
        self.fc2.forward_unfused(&hidden, precision)
    }
}

/// `exp(−ln(10000)·i/128)` for i < 128, rounded the way the reference's
/// float32 arithmetic rounds it (f32 product, then exp), so that timestep
/// features agree with PyTorch to the last bit wherever possible.
fn timestep_frequencies(device: &Device) -> Result<Tensor> {
    let half = TIMESTEP_FREQUENCIES / 2;
    let neg_log = -(10000f64.ln() as f32);
    let freqs: Vec<f32> = (0..half)
        .map(|i| (((neg_log * i as f32) / half as f32) as f64).exp() as f32)
        .collect();
    Ok(Tensor::from_vec(freqs, half, device)?)
}

/// Class labels → vectors; the extra last row (when present) is the null
/// class that classifier-free guidance trains with and samples against.
pub struct LabelEmbedder {
    table: Tensor,
}

impl LabelEmbedder {
    pub fn new(w: Weights) -> Result<Self> {
        Ok(Self {
            table: w.get("y_embedder.embedding_table.weight")?,
        })
    }

    /// Classifier-free guidance training (the official `token_drop`):
    /// labels whose `drop` flag is set become the null class. Labels are
    /// returned unchanged when the table has no null-class row.
    pub fn token_drop(labels: &[u32], drop: &[bool], null_class: Option<u32>) -> Vec<u32> {
        labels
            .iter()
            .zip(drop)
            .map(|(&label, &dropped)| match null_class {
                Some(null) if dropped => null,
                _ => label,
            })
            .collect()
    }

    /// `(N,)` u32 labels → `(N, D)`. Labels must be below the table's row
    /// count: jobs check them once at their entry ([`super::Dit::check_labels`]),
    /// not per forward, which on a GPU would read them back every step.
    pub fn forward(&self, y: &Tensor) -> Result<Tensor> {
        Ok(self.table.index_select(y, 0)?)
    }
}
