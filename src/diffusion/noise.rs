//! Seeded Gaussian noise whose values depend only on (seed, global sample
//! index), never on how samples are batched.
//!
//! Each sample owns a ChaCha8 stream: key from the seed, stream number the
//! sample's global index. Every draw takes the next values from each sample's
//! own stream, so images 0..8 sampled in one batch equal images 0..4 and 4..8
//! sampled in two batches with the same seed. candle's `Tensor::randn` is not
//! used: it draws from an unseeded thread RNG.

use crate::Result;
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Per-sample deterministic N(0, 1) noise for a batch.
#[derive(Clone, Debug)]
pub struct NoiseSource {
    streams: Vec<ChaCha8Rng>,
}

impl NoiseSource {
    /// Noise for the `batch_size` samples with global indices
    /// `first_index .. first_index + batch_size`.
    pub fn new(seed: u64, first_index: u64, batch_size: usize) -> Self {
        let streams = (0..batch_size as u64)
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(first_index + i);
                rng
            })
            .collect();
        Self { streams }
    }

    /// The samples of several sources side by side, in order: one batch
    /// holding several jobs' samples draws exactly what each job alone would.
    pub fn concat(parts: impl IntoIterator<Item = NoiseSource>) -> Self {
        Self {
            streams: parts.into_iter().flat_map(|p| p.streams).collect(),
        }
    }

    pub fn batch_size(&self) -> usize {
        self.streams.len()
    }

    /// Standard normal noise of `shape` `(N, ...)`, N the batch size.
    pub fn draw(&mut self, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        if shape.first() != Some(&self.streams.len()) {
            crate::bail!(
                "noise shape {shape:?} does not start with the batch size {}",
                self.streams.len()
            );
        }
        let per_sample: usize = shape[1..].iter().product();
        let mut values = Vec::with_capacity(per_sample * self.streams.len());
        for rng in &mut self.streams {
            values.extend(standard_normals(rng, per_sample));
        }
        Ok(Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)
    }
}

/// `count` N(0, 1) values by the Box–Muller transform, computed in f64.
fn standard_normals(rng: &mut ChaCha8Rng, count: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(count + 1);
    while out.len() < count {
        // 1 − U ∈ (0, 1] keeps ln away from 0.
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen::<f64>();
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        out.push(radius * angle.cos());
        out.push(radius * angle.sin());
    }
    out.truncate(count);
    out
}
