//! Batches for training: decoded on worker threads ahead of the consumer, in
//! an order that depends only on the seed, and resumable from a saved state.
//!
//! A batch takes consecutive positions of the epoch's [`EpochOrder`]; flips
//! are drawn per position. With `skip_bad_images` an unreadable image is left
//! out and the batch takes the next positions instead; since decoding is
//! deterministic, so is which positions fill each batch. A batch the epoch
//! cannot fill is dropped (DiT's `drop_last=True`) and the next epoch begins.

use super::{DataError, Dataset, EpochOrder};
use crate::dist::BatchShare;
use crate::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Where the sample stream stands: the next sample is at `position` of
/// epoch `epoch`'s order. Store it with a checkpoint to resume exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LoaderState {
    pub epoch: u64,
    pub position: usize,
}

/// How batches are drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Fixes the order of every epoch and every flip.
    pub seed: u64,
    /// Mirror samples at random (a fair coin per position); DiT does.
    pub flip: bool,
    /// Threads decoding samples in parallel. The output does not depend on it.
    pub workers: usize,
    /// Finished batches kept ready ahead of the consumer.
    pub prefetch_batches: usize,
    /// Leave out images that fail to decode (counted in
    /// [`Loader::skipped_images`]) instead of stopping with an error.
    pub skip_bad_images: bool,
    /// One process's share of every batch in a multi-process run; `None`
    /// for the whole batch. The stream of batches (and its [`LoaderState`])
    /// is the same in every process; each decodes only its slots (all of them
    /// under `skip_bad_images`, which must know every outcome to fill a batch).
    pub share: Option<BatchShare>,
}

impl LoaderConfig {
    /// Flips on, bad images an error, one worker per CPU, two batches ahead.
    pub fn new(batch_size: usize, seed: u64) -> Self {
        LoaderConfig {
            batch_size,
            seed,
            flip: true,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            prefetch_batches: 2,
            skip_bad_images: false,
            share: None,
        }
    }
}

/// One training batch.
#[derive(Debug)]
pub struct Batch {
    /// Samples, (B, C, H, W) f32 in [−1, 1].
    pub x: Tensor,
    /// Labels, (B,) u32.
    pub y: Tensor,
    /// The same labels on the host (read without a device round trip).
    pub labels: Vec<u32>,
    /// Dataset index of each sample.
    pub indices: Vec<usize>,
    /// Whether each sample was mirrored.
    pub flipped: Vec<bool>,
    /// The epoch the batch was drawn from.
    pub epoch: u64,
    /// The state just after this batch: resuming from it yields the next one.
    pub state: LoaderState,
}

/// An image the loader left out under `skip_bad_images`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedImage {
    pub index: usize,
    /// The decode error, which names the file.
    pub message: String,
}

/// A batch as the producer thread builds it, before it becomes tensors.
struct HostBatch {
    x: Vec<f32>,
    y: Vec<u32>,
    indices: Vec<usize>,
    flipped: Vec<bool>,
    epoch: u64,
    state: LoaderState,
}

type SkipLog = Arc<Mutex<BTreeMap<usize, String>>>;

/// Yields [`Batch`]es of a [`Dataset`] without end, epoch after epoch.
pub struct Loader {
    receiver: Option<Receiver<Result<HostBatch, DataError>>>,
    producer: Option<JoinHandle<()>>,
    state: LoaderState,
    shape: (usize, usize, usize),
    batch_size: usize,
    dataset_len: usize,
    device: Device,
    skipped: SkipLog,
}

impl Loader {
    /// Starts decoding from `start` (use `LoaderState::default()` for a new
    /// run, or the state saved with a checkpoint). Batches are placed on
    /// `device`.
    pub fn new(
        dataset: Arc<dyn Dataset>,
        config: LoaderConfig,
        start: LoaderState,
        device: &Device,
    ) -> Result<Self> {
        let len = dataset.len();
        if config.batch_size == 0 {
            bail!("batch size must be positive");
        }
        if len < config.batch_size {
            bail!(
                "the dataset has {len} samples, fewer than one batch of {}",
                config.batch_size
            );
        }
        if let Some(share) = config.share {
            if share.global != config.batch_size || share.first + share.count > share.global {
                bail!(
                    "samples {:?} are not a share of a batch of {}",
                    share.range(),
                    config.batch_size
                );
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.workers.max(1))
            .thread_name(|i| format!("dit-data-{i}"))
            .build()
            .map_err(|e| crate::err!("starting the data loader's worker threads: {e}"))?;
        let (sender, receiver) = sync_channel(config.prefetch_batches.max(1));
        let skipped = SkipLog::default();
        let shape = dataset.sample_shape();
        let batch_size = config.batch_size;
        let producer = Producer {
            dataset,
            config,
            pool,
            skipped: skipped.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("dit-data-batches".into())
            .spawn(move || producer.run(start, sender))
            .context("starting the data loader thread")?;
        Ok(Loader {
            receiver: Some(receiver),
            producer: Some(handle),
            state: start,
            shape,
            batch_size,
            dataset_len: len,
            device: device.clone(),
            skipped,
        })
    }

    /// The next batch. After an error the loader is finished.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let receiver = self
            .receiver
            .as_ref()
            .ok_or_else(|| crate::err!("the data loader stopped after an earlier error"))?;
        let host = match receiver.recv() {
            Ok(Ok(host)) => host,
            Ok(Err(e)) => {
                self.receiver = None;
                return Err(e.into());
            }
            Err(_) => {
                self.receiver = None;
                let panic = self.producer.take().map(|h| h.join());
                bail!("the data loader thread stopped unexpectedly ({panic:?})");
            }
        };
        let (c, h, w) = self.shape;
        let b = host.y.len();
        let x = Tensor::from_vec(host.x, (b, c, h, w), &self.device)?;
        let y = Tensor::new(host.y.as_slice(), &self.device)?;
        self.state = host.state;
        Ok(Batch {
            x,
            y,
            labels: host.y,
            indices: host.indices,
            flipped: host.flipped,
            epoch: host.epoch,
            state: host.state,
        })
    }

    /// The state after the last batch returned (the start state before any):
    /// what a checkpoint saved now should store.
    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// Full batches in an epoch when no image is skipped.
    pub fn batches_per_epoch(&self) -> usize {
        self.dataset_len / self.batch_size
    }

    /// Images left out so far under `skip_bad_images`, each once, by index.
    /// Decoding runs ahead, so this may include images of batches not yet
    /// returned.
    pub fn skipped_images(&self) -> Vec<SkippedImage> {
        self.skipped
            .lock()
            .expect("skip log poisoned")
            .iter()
            .map(|(&index, message)| SkippedImage {
                index,
                message: message.clone(),
            })
            .collect()
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    /// Never `None`: the stream runs epoch after epoch.
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_batch())
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channel makes the producer's next send fail, ending it.
        self.receiver = None;
        if let Some(handle) = self.producer.take() {
            let _ = handle.join();
        }
    }
}

enum Outcome {
    Sample(Vec<f32>, u32),
    /// A readable sample of another process's part, not decoded here.
    Elsewhere,
    Skipped,
    Failed(DataError),
}

struct Producer {
    dataset: Arc<dyn Dataset>,
    config: LoaderConfig,
    pool: rayon::ThreadPool,
    skipped: SkipLog,
}

impl Producer {
    /// Position `position`'s outcome; `mine` is false when it falls in
    /// another process's part of the batch (known without skipping only).
    fn decode(&self, order: &EpochOrder, position: usize, mine: bool) -> Outcome {
        let index = order.index(position);
        let skip = self.config.skip_bad_images;
        if !mine && !skip {
            return Outcome::Elsewhere;
        }
        if skip {
            // Known bad: skip without decoding again (same outcome, less work).
            if self
                .skipped
                .lock()
                .expect("skip log poisoned")
                .contains_key(&index)
            {
                return Outcome::Skipped;
            }
        }
        let flip = self.config.flip && order.flip(position);
        match self.dataset.get(index, flip) {
            Ok((x, y)) => Outcome::Sample(x, y),
            Err(e @ DataError::BadImage { .. }) if skip => {
                let message = e.to_string();
                self.skipped
                    .lock()
                    .expect("skip log poisoned")
                    .insert(index, message);
                Outcome::Skipped
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    /// The start of the epoch after `state`'s, and that epoch's order.
    fn next_epoch(&self, state: LoaderState) -> (LoaderState, EpochOrder) {
        let next = LoaderState {
            epoch: state.epoch + 1,
            position: 0,
        };
        let order = EpochOrder::new(self.dataset.len(), self.config.seed, next.epoch);
        (next, order)
    }

    fn run(self, start: LoaderState, sender: SyncSender<Result<HostBatch, DataError>>) {
        let len = self.dataset.len();
        let batch = self.config.batch_size;
        let (c, h, w) = self.dataset.sample_shape();
        let sample_len = c * h * w;
        let slots = self.config.share.map_or(0..batch, |s| s.range());
        let mut state = start;
        let mut order = EpochOrder::new(len, self.config.seed, state.epoch);
        // Whether this epoch was walked from its start, and its batches so far:
        // a whole epoch without a batch means too few readable images.
        let mut whole_epoch = state.position == 0;
        let mut batches_in_epoch = 0usize;
        loop {
            let mut host = HostBatch {
                x: Vec::with_capacity(batch * sample_len),
                y: Vec::with_capacity(batch),
                indices: Vec::with_capacity(batch),
                flipped: Vec::with_capacity(batch),
                epoch: state.epoch,
                state,
            };
            // Batch slots filled so far (this process's and the others').
            let mut filled = 0;
            while filled < batch {
                let need = batch - filled;
                if state.position + need > len {
                    if whole_epoch && batches_in_epoch == 0 {
                        let skipped = self.skipped.lock().expect("skip log poisoned").len();
                        let _ = sender.send(Err(DataError::TooFewReadable {
                            epoch: state.epoch,
                            batch_size: batch,
                            skipped,
                            len,
                        }));
                        return;
                    }
                    // drop_last: discard the partial batch and start the next epoch.
                    (state, order) = self.next_epoch(state);
                    whole_epoch = true;
                    batches_in_epoch = 0;
                    host.x.clear();
                    host.y.clear();
                    host.indices.clear();
                    host.flipped.clear();
                    host.epoch = state.epoch;
                    filled = 0;
                    continue;
                }
                let positions = state.position..state.position + need;
                // Without skipping, position p fills slot `filled + (p − start)`.
                let start = state.position;
                let outcomes: Vec<Outcome> = self.pool.install(|| {
                    positions
                        .clone()
                        .into_par_iter()
                        .map(|p| self.decode(&order, p, slots.contains(&(filled + p - start))))
                        .collect()
                });
                for (p, outcome) in positions.zip(outcomes) {
                    let slot = filled;
                    match outcome {
                        Outcome::Elsewhere => filled += 1,
                        Outcome::Sample(..) if !slots.contains(&slot) => filled += 1,
                        Outcome::Sample(x, y) => {
                            filled += 1;
                            assert_eq!(x.len(), sample_len, "dataset sample of the wrong size");
                            host.x.extend_from_slice(&x);
                            host.y.push(y);
                            host.indices.push(order.index(p));
                            host.flipped.push(self.config.flip && order.flip(p));
                        }
                        Outcome::Skipped => {}
                        Outcome::Failed(e) => {
                            let _ = sender.send(Err(e));
                            return;
                        }
                    }
                }
                state.position += need;
            }
            batches_in_epoch += 1;
            if len - state.position < batch {
                // Nothing full is left in this epoch; saving the next epoch's
                // start keeps `state.epoch` an honest epoch count.
                (state, order) = self.next_epoch(state);
                whole_epoch = true;
                batches_in_epoch = 0;
            }
            host.state = state;
            if sender.send(Ok(host)).is_err() {
                return;
            }
        }
    }
}
