//! Inception pool features of image sets.

use crate::{bail, Result};
use candle_core::Tensor;

use crate::eval::images::{ImageSet, RgbImage};
use crate::eval::inception::{InceptionV3, FEATURE_DIM, INPUT_SIZE};
use crate::eval::preprocess::Preprocess;

/// A row-major `[rows, dim]` matrix of f32 features.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Features {
    /// Wraps a row-major buffer, checking its size.
    pub fn new(rows: usize, dim: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != rows * dim {
            bail!(
                "a {rows}x{dim} feature matrix needs {} values, got {}",
                rows * dim,
                data.len()
            );
        }
        Ok(Self { rows, dim, data })
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// The Inception network with the input convention it is fed with.
pub struct FeatureExtractor {
    pub net: InceptionV3,
    pub preprocess: Preprocess,
}

impl FeatureExtractor {
    pub fn new(net: InceptionV3, preprocess: Preprocess) -> Self {
        Self { net, preprocess }
    }

    /// Resized and scaled network input `[N, 3, 299, 299]` for a batch of images.
    pub fn input_batch(&self, images: &[RgbImage]) -> Result<Tensor> {
        let plane = 3 * INPUT_SIZE * INPUT_SIZE;
        let mut data = Vec::with_capacity(images.len() * plane);
        for image in images {
            data.extend(self.preprocess.to_input(image));
        }
        Ok(Tensor::from_vec(
            data,
            (images.len(), 3, INPUT_SIZE, INPUT_SIZE),
            self.net.device(),
        )?)
    }

    /// Pool features of a batch of images, row-major `[N, 2048]`.
    pub fn features(&self, images: &[RgbImage]) -> Result<Vec<f32>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let x = self.input_batch(images)?;
        Ok(self.net.forward(&x)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Features of a whole image set, `batch_size` images at a time;
    /// `progress` is told how many images are done after each batch.
    pub fn extract(
        &self,
        set: &ImageSet,
        batch_size: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Features> {
        let mut data = Vec::with_capacity(set.len() * FEATURE_DIM);
        let mut done = 0;
        set.for_each_batch(batch_size, |images| {
            data.extend(self.features(&images)?);
            done += images.len();
            progress(done);
            Ok(())
        })?;
        Features::new(done, FEATURE_DIM, data)
    }
}
