//! The batch loader: order fixed by the seed whatever the threading,
//! exact resume from a saved state, drop_last, flips, bad-image skipping.

use candle_core::{DType, Device};
use dit::data::{DataError, Dataset, Loader, LoaderConfig, LoaderState};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

/// Sample `i` is the pair [v, −v] with v = (i + 1) / (len + 1): the index is
/// readable back from the values, and a flip swaps the pair.
struct Numbered {
    len: usize,
    bad: BTreeSet<usize>,
    classes: Vec<String>,
}

impl Numbered {
    fn new(len: usize, bad: &[usize]) -> Arc<Self> {
        Arc::new(Numbered {
            len,
            bad: bad.iter().copied().collect(),
            classes: vec!["a".into(), "b".into(), "c".into()],
        })
    }
}

impl Dataset for Numbered {
    fn len(&self) -> usize {
        self.len
    }
    fn num_classes(&self) -> usize {
        3
    }
    fn class_names(&self) -> &[String] {
        &self.classes
    }
    fn sample_shape(&self) -> (usize, usize, usize) {
        (1, 1, 2)
    }
    fn get(&self, index: usize, flip: bool) -> Result<(Vec<f32>, u32), DataError> {
        if self.bad.contains(&index) {
            return Err(DataError::BadImage {
                path: PathBuf::from(format!("item{index}.png")),
                reason: "corrupt".into(),
            });
        }
        let v = (index + 1) as f32 / (self.len + 1) as f32;
        let x = if flip { vec![-v, v] } else { vec![v, -v] };
        Ok((x, (index % 3) as u32))
    }
}

/// What a batch holds, read back from its tensors.
#[derive(Debug, PartialEq)]
struct Seen {
    indices: Vec<usize>,
    flipped: Vec<bool>,
    labels: Vec<u32>,
    epoch: u64,
    state: LoaderState,
}

fn take(loader: &mut Loader, n: usize, len: usize) -> Vec<Seen> {
    (0..n)
        .map(|_| {
            let b = loader.next_batch().unwrap();
            assert_eq!(b.x.dtype(), DType::F32);
            assert_eq!(b.y.dtype(), DType::U32);
            let rows = b.x.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
            let labels = b.y.to_vec1::<u32>().unwrap();
            let mut indices = Vec::new();
            let mut flipped = Vec::new();
            for (row, label) in rows.iter().zip(&labels) {
                let flip = row[0] < 0.0;
                let index = (row[0].abs() * (len + 1) as f32).round() as usize - 1;
                assert_eq!(row[1], -row[0]);
                assert_eq!(*label, (index % 3) as u32);
                indices.push(index);
                flipped.push(flip);
            }
            // The metadata agrees with the pixels.
            assert_eq!(indices, b.indices);
            assert_eq!(flipped, b.flipped);
            Seen {
                indices,
                flipped,
                labels,
                epoch: b.epoch,
                state: b.state,
            }
        })
        .collect()
}

fn config(batch: usize, seed: u64, workers: usize) -> LoaderConfig {
    LoaderConfig {
        workers,
        ..LoaderConfig::new(batch, seed)
    }
}

fn run(ds: Arc<dyn Dataset>, cfg: LoaderConfig, start: LoaderState, n: usize) -> Vec<Seen> {
    let len = ds.len();
    let mut loader = Loader::new(ds, cfg, start, &Device::Cpu).unwrap();
    take(&mut loader, n, len)
}

#[test]
fn same_seed_same_batches_whatever_the_threads() {
    let ds = Numbered::new(50, &[]);
    let one = run(ds.clone(), config(7, 42, 1), LoaderState::default(), 20);
    let four = run(ds.clone(), config(7, 42, 4), LoaderState::default(), 20);
    assert_eq!(one, four);
    let shallow = LoaderConfig {
        prefetch_batches: 1,
        ..config(7, 42, 3)
    };
    assert_eq!(run(ds.clone(), shallow, LoaderState::default(), 20), one);
    let other_seed = run(ds, config(7, 43, 2), LoaderState::default(), 20);
    assert_ne!(one, other_seed);
}

#[test]
fn epochs_are_fresh_permutations_and_drop_the_last_partial_batch() {
    let len = 23;
    let batch = 5;
    let seen = run(
        Numbered::new(len, &[]),
        config(batch, 7, 2),
        LoaderState::default(),
        12,
    );
    let per_epoch = len / batch; // 4 batches, 3 samples dropped
    let mut orders = Vec::new();
    for (e, epoch) in seen.chunks(per_epoch).enumerate() {
        let order: Vec<usize> = epoch.iter().flat_map(|b| b.indices.clone()).collect();
        assert!(epoch.iter().all(|b| b.epoch == e as u64));
        assert!(epoch.iter().all(|b| b.indices.len() == batch));
        let distinct: BTreeSet<usize> = order.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            per_epoch * batch,
            "no repeats within an epoch"
        );
        // The state after an epoch's last batch points at the next epoch.
        assert_eq!(
            epoch.last().unwrap().state,
            LoaderState {
                epoch: e as u64 + 1,
                position: 0
            }
        );
        assert_eq!(
            epoch[0].state,
            LoaderState {
                epoch: e as u64,
                position: batch
            }
        );
        orders.push(order);
    }
    assert_ne!(orders[0], orders[1]);
    assert_ne!(orders[1], orders[2]);
}

#[test]
fn resuming_from_a_saved_state_continues_the_same_stream() {
    let ds = Numbered::new(30, &[]);
    let full = run(ds.clone(), config(4, 9, 3), LoaderState::default(), 24);
    for k in [1, 3, 6, 7, 8, 15] {
        // What a checkpoint stores, through serde.
        let saved = serde_json::to_string(&full[k - 1].state).unwrap();
        let state: LoaderState = serde_json::from_str(&saved).unwrap();
        let resumed = run(ds.clone(), config(4, 9, 1), state, 24 - k);
        assert_eq!(resumed, full[k..], "resumed after {k} batches");
    }
    // Loader::state() follows the consumer, not the threads running ahead.
    let mut loader =
        Loader::new(ds, config(4, 9, 2), LoaderState::default(), &Device::Cpu).unwrap();
    assert_eq!(loader.state(), LoaderState::default());
    take(&mut loader, 5, 30);
    assert_eq!(loader.state(), full[4].state);
    assert_eq!(loader.batches_per_epoch(), 7);
}

#[test]
fn flips_on_and_off() {
    let ds = Numbered::new(40, &[]);
    let off = LoaderConfig {
        flip: false,
        ..config(8, 1, 2)
    };
    let seen = run(ds.clone(), off, LoaderState::default(), 20);
    assert!(seen.iter().all(|b| b.flipped.iter().all(|&f| !f)));
    let on = run(ds, config(8, 1, 2), LoaderState::default(), 20);
    let flips = on.iter().flat_map(|b| &b.flipped).filter(|&&f| f).count();
    // 160 fair coins: 50 < heads < 110 fails with probability about 1e-6.
    assert!((50..110).contains(&flips), "{flips} of 160 flipped");
    // Same order either way: flipping changes pixels, not which samples.
    let off_order: Vec<_> = seen.iter().map(|b| b.indices.clone()).collect();
    let on_order: Vec<_> = on.iter().map(|b| b.indices.clone()).collect();
    assert_eq!(off_order, on_order);
}

#[test]
fn bad_images_stop_the_loader_naming_the_file() {
    let ds = Numbered::new(12, &[0, 1, 2, 3, 4, 5]);
    let mut loader =
        Loader::new(ds, config(4, 3, 2), LoaderState::default(), &Device::Cpu).unwrap();
    // Six of twelve are bad, so the first batch of four must meet one.
    let err = loader.next_batch().unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("cannot load image item") && text.contains(".png"),
        "{text}"
    );
    assert!(loader.next_batch().is_err(), "a failed loader stays failed");
}

#[test]
fn skipping_bad_images_fills_batches_deterministically() {
    let bad = [2, 7, 11];
    let ds = Numbered::new(20, &bad);
    let skip = |workers| LoaderConfig {
        skip_bad_images: true,
        ..config(4, 5, workers)
    };
    let mut loader =
        Loader::new(ds.clone(), skip(1), LoaderState::default(), &Device::Cpu).unwrap();
    let seen = take(&mut loader, 16, 20);
    for b in &seen {
        assert_eq!(b.indices.len(), 4, "batches stay full");
        assert!(b.indices.iter().all(|i| !bad.contains(i)));
    }
    // 17 good samples make 4 batches an epoch; one readable sample is dropped.
    for e in 0..4 {
        let epoch: BTreeSet<usize> = seen[e * 4..e * 4 + 4]
            .iter()
            .flat_map(|b| b.indices.clone())
            .collect();
        assert_eq!(epoch.len(), 16);
        assert!(seen[e * 4..e * 4 + 4].iter().all(|b| b.epoch == e as u64));
    }
    let skipped = loader.skipped_images();
    assert_eq!(skipped.iter().map(|s| s.index).collect::<Vec<_>>(), bad);
    assert!(skipped[0].message.contains("item2.png"));
    // Threads and resumption do not change which samples fill a batch.
    assert_eq!(run(ds.clone(), skip(3), LoaderState::default(), 16), seen);
    for k in [1, 2, 5] {
        assert_eq!(
            run(ds.clone(), skip(2), seen[k - 1].state, 16 - k),
            seen[k..]
        );
    }
}

#[test]
fn refuses_what_cannot_make_a_batch() {
    let err = Loader::new(
        Numbered::new(3, &[]),
        config(4, 0, 1),
        LoaderState::default(),
        &Device::Cpu,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("fewer than one batch"), "{err}");
    let zero = Loader::new(
        Numbered::new(3, &[]),
        config(0, 0, 1),
        LoaderState::default(),
        &Device::Cpu,
    );
    assert!(zero.is_err());
    // Under skip_bad_images, an epoch with fewer readable samples than a batch.
    let cfg = LoaderConfig {
        skip_bad_images: true,
        ..config(4, 0, 2)
    };
    let mut loader = Loader::new(
        Numbered::new(6, &[0, 1, 2]),
        cfg,
        LoaderState::default(),
        &Device::Cpu,
    )
    .unwrap();
    let err = loader.next_batch().unwrap_err();
    assert!(err.to_string().contains("no full batch"), "{err}");
}

#[test]
fn tensors_have_the_batch_shape() {
    let mut loader = Loader::new(
        Numbered::new(10, &[]),
        config(3, 0, 1),
        LoaderState::default(),
        &Device::Cpu,
    )
    .unwrap();
    let b = loader.next().unwrap().unwrap();
    assert_eq!(b.x.dims(), &[3, 1, 1, 2]);
    assert_eq!(b.y.dims(), &[3]);
}

/// Records the name of every thread that decodes a sample.
struct ThreadLog {
    inner: Arc<Numbered>,
    names: std::sync::Mutex<BTreeSet<String>>,
}

impl Dataset for ThreadLog {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn class_names(&self) -> &[String] {
        self.inner.class_names()
    }
    fn sample_shape(&self) -> (usize, usize, usize) {
        self.inner.sample_shape()
    }
    fn get(&self, index: usize, flip: bool) -> Result<(Vec<f32>, u32), DataError> {
        let name = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        self.names.lock().unwrap().insert(name);
        self.inner.get(index, flip)
    }
}

#[test]
fn decoding_runs_on_the_loader_workers_not_the_consumer() {
    let log = Arc::new(ThreadLog {
        inner: Numbered::new(64, &[]),
        names: Default::default(),
    });
    let mut loader = Loader::new(
        log.clone(),
        config(16, 0, 3),
        LoaderState::default(),
        &Device::Cpu,
    )
    .unwrap();
    take(&mut loader, 8, 64);
    drop(loader);
    let names = log.names.lock().unwrap().clone();
    assert!(!names.is_empty());
    for name in &names {
        let worker: usize = name
            .strip_prefix("dit-data-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("sample decoded on thread {name:?}"));
        assert!(worker < 3, "{name}");
    }
}
