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
        progress: impl FnMut(usize),
    ) -> Result<Features> {
        self.extract_range(set, 0..set.len(), batch_size, progress)
    }

    /// [`FeatureExtractor::extract`] of the images `range` of the set.
    pub fn extract_range(
        &self,
        set: &ImageSet,
        range: std::ops::Range<usize>,
        batch_size: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Features> {
        let mut data = Vec::with_capacity(range.len() * FEATURE_DIM);
        let mut done = 0;
        set.for_each_batch_in(range, batch_size, |images| {
            data.extend(self.features(&images)?);
            done += images.len();
            progress(done);
            Ok(())
        })?;
        Features::new(done, FEATURE_DIM, data)
    }
}

/// Features of a whole image set computed by every rank of `comm` on its
/// share of the images, gathered in order on rank 0 (`None` elsewhere).
pub fn extract_shared(
    extractor: &FeatureExtractor,
    set: &ImageSet,
    batch_size: usize,
    comm: &dyn crate::dist::Communicator,
    progress: impl FnMut(usize),
) -> Result<Option<Features>> {
    let (rank, world) = (comm.rank(), comm.world_size());
    let at = |r: usize| set.len() * r / world;
    let mine = extractor.extract_range(set, at(rank)..at(rank + 1), batch_size, progress)?;
    if world == 1 {
        return Ok(Some(mine));
    }
    let bytes: Vec<u8> = mine.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let Some(parts) = comm.gather_bytes(&bytes, 0)? else {
        return Ok(None);
    };
    let data: Vec<f32> = parts
        .iter()
        .flat_map(|p| p.chunks_exact(4))
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Features::new(set.len(), FEATURE_DIM, data).map(Some)
}
