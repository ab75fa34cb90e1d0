use super::DataError;

/// A source of training samples, indexed `0..len()`.
///
/// Implementations must be deterministic: the same `(index, flip)` always
/// gives the same sample, whichever thread asks. That is what lets the
/// [`Loader`](super::Loader) decode in parallel and still resume exactly.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of classes; labels are `0..num_classes()`.
    fn num_classes(&self) -> usize;

    /// Class names in label order (label `i` is `class_names()[i]`).
    fn class_names(&self) -> &[String];

    /// Shape `(C, H, W)` of every sample.
    fn sample_shape(&self) -> (usize, usize, usize);

    /// Sample `index` as C×H×W values in [−1, 1] (channel-major), mirrored
    /// left-right when `flip`, with its label.
    fn get(&self, index: usize, flip: bool) -> Result<(Vec<f32>, u32), DataError>;
}
