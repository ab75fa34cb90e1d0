//! The sample order of each epoch, derived from (seed, epoch) alone so that
//! it never depends on threads, on batch size, or on where a run resumed.
//! We use our own SplitMix64 rather than `rand`'s `StdRng`, whose algorithm
//! `rand` does not promise to keep across versions: a checkpoint's loader
//! state must mean the same order forever.

const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4531; // distinct streams for
const FLIP_STREAM: u64 = 0x464c_4950_5331_5f31; //    shuffle and flips

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes the words in order; each step runs the mixer so nearby inputs
/// (epoch 3 vs 4, position 10 vs 11) give unrelated outputs.
fn hash(words: &[u64]) -> u64 {
    let mut state = 0;
    for &w in words {
        state ^= w;
        state = splitmix64(&mut state);
    }
    state
}

/// Which dataset index sits at each position of one epoch, and whether the
/// sample at that position is flipped.
#[derive(Clone, Debug)]
pub struct EpochOrder {
    seed: u64,
    epoch: u64,
    permutation: Vec<u32>,
}

impl EpochOrder {
    /// The seeded permutation of `0..len` for `epoch` (Fisher–Yates).
    pub fn new(len: usize, seed: u64, epoch: u64) -> Self {
        assert!(
            len <= u32::MAX as usize,
            "dataset of {len} samples too large"
        );
        let mut permutation: Vec<u32> = (0..len as u32).collect();
        let mut state = hash(&[seed, epoch, SHUFFLE_STREAM]);
        for i in (1..len).rev() {
            // Multiply-shift maps 64 random bits onto 0..=i; the bias is
            // below i / 2^64, far under anything measurable.
            let j = ((splitmix64(&mut state) as u128 * (i as u128 + 1)) >> 64) as usize;
            permutation.swap(i, j);
        }
        EpochOrder {
            seed,
            epoch,
            permutation,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn len(&self) -> usize {
        self.permutation.len()
    }

    pub fn is_empty(&self) -> bool {
        self.permutation.is_empty()
    }

    /// Dataset index at `position` of this epoch.
    pub fn index(&self, position: usize) -> usize {
        self.permutation[position] as usize
    }

    /// Whether the sample at `position` is mirrored (a fair coin per position).
    pub fn flip(&self, position: usize) -> bool {
        hash(&[self.seed, self.epoch, FLIP_STREAM, position as u64]) >> 63 == 1
    }
}
