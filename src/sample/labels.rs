//! Which class each image of a sampling job shows, as a function of the
//! seed and the image's global index only, so that shards of a job draw
//! exactly the labels the unsharded job draws.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Keeps label draws apart from the noise streams, which are keyed by the
/// same (seed, index).
const LABEL_SALT: u64 = 0x6c61_6265_6c5f_7631;

#[derive(Clone, Debug, PartialEq)]
pub enum ClassChoice {
    /// Image k shows `classes[k % len]` (the list repeats).
    Cycle(Vec<u32>),
    /// Image k shows a class drawn uniformly from `0..num_classes` with its
    /// own RNG stream.
    Uniform { num_classes: usize },
}

impl ClassChoice {
    pub fn label(&self, seed: u64, index: u64) -> u32 {
        match self {
            ClassChoice::Cycle(classes) => classes[(index % classes.len() as u64) as usize],
            ClassChoice::Uniform { num_classes } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ LABEL_SALT);
                rng.set_stream(index);
                rng.gen_range(0..*num_classes as u32)
            }
        }
    }

    pub fn labels(&self, seed: u64, indices: std::ops::Range<u64>) -> Vec<u32> {
        indices.map(|k| self.label(seed, k)).collect()
    }
}
