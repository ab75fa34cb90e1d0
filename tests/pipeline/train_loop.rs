//! The training loop: exact resume, atomic checkpoints, divergence, refusals.

use crate::support::compare::{checkpoint_difference, within};
use candle_core::{DType, Device};
use dit::compute::{Compute, Precision};
use dit::data::{DataError, Dataset, FashionMnist};
use dit::model::{Dit, DitConfig};
use dit::train::{TrainCheckpoint, TrainConfig, TrainJob, TrainOutcome};
use dit::transport::{ObjectiveConfig, TransportConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn tiny_model() -> DitConfig {
    DitConfig {
        input_size: 32,
        patch_size: 8,
        in_channels: 1,
        hidden_size: 32,
        depth: 2,
        num_heads: 2,
        mlp_ratio: 2.0,
        class_dropout_prob: 0.1,
        num_classes: 10,
        learn_sigma: true,
    }
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 8,
        lr: 1e-3,
        warmup_steps: 3,
        grad_clip: Some(1.0),
        ema_decay: 0.99,
        ema_warmup: true,
        seed: 5,
        checkpoint_every: 10,
        sample_every: 0,
        ..Default::default()
    }
}

fn job(dataset: Arc<dyn Dataset>, out: &Path, steps: u64, resume: Option<PathBuf>) -> TrainJob {
    job_in(Precision::F32, dataset, out, steps, resume)
}

fn job_in(
    precision: Precision,
    dataset: Arc<dyn Dataset>,
    out: &Path,
    steps: u64,
    resume: Option<PathBuf>,
) -> TrainJob {
    TrainJob {
        model: tiny_model(),
        objective: Default::default(),
        train: config(steps),
        dataset,
        data_source: "fashion-mnist (embedded)".into(),
        out_dir: out.to_path_buf(),
        resume,
        compute: Compute {
            precision,
            ..Compute::cpu()
        },
        skip_bad_images: false,
        latent_scale: None,
        batch_parts: 1,
    }
}

fn train(job: TrainJob) -> dit::Result<TrainOutcome> {
    dit::train::train(job, &mut dit::train::Quiet)
}

fn fashion() -> Arc<dyn Dataset> {
    Arc::new(FashionMnist::embedded().unwrap())
}

fn bits(ckpt: &TrainCheckpoint) -> Vec<(String, Vec<u32>)> {
    let mut out = Vec::new();
    for (group, tensors) in [
        ("model", &ckpt.params),
        ("ema", &ckpt.ema),
        ("adamw", &ckpt.optimizer),
    ] {
        for (name, t) in tensors {
            let v: Vec<u32> = match t.dtype() {
                DType::F64 => t
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits() as u32 ^ (x.to_bits() >> 32) as u32)
                    .collect(),
                _ => t
                    .to_dtype(DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect(),
            };
            out.push((format!("{group}.{name}"), v));
        }
    }
    out.sort();
    out
}

/// 20 steps straight, against 10 steps, a resume and 10 more, with
/// `objective`, the products in `precision` and each batch in `parts`.
fn check_resume_is_bit_identical(objective: ObjectiveConfig, precision: Precision, parts: usize) {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let split = dir.path().join("split");
    let with = |out: &Path, steps, resume| TrainJob {
        objective: objective.clone(),
        batch_parts: parts,
        ..job_in(precision, fashion(), out, steps, resume)
    };
    let full = train(with(&straight, 20, None)).unwrap();
    let half = train(with(&split, 10, None)).unwrap();
    let resumed = train(with(&split, 20, Some(half.last_checkpoint))).unwrap();
    assert_eq!(
        TrainCheckpoint::read_description(&resumed.last_checkpoint)
            .unwrap()
            .1,
        objective
    );

    let a = TrainCheckpoint::load(&full.last_checkpoint, &Device::Cpu).unwrap();
    let b = TrainCheckpoint::load(&resumed.last_checkpoint, &Device::Cpu).unwrap();
    assert_eq!(a.state, b.state, "step, loader position and settings");
    let (a, b) = (bits(&a), bits(&b));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "{name} differs between 20 steps and 10 + resume + 10"
        );
    }
    // The run really trained: weights moved away from initialisation.
    let first = TrainCheckpoint::load(
        &dit::train::checkpoint::checkpoint_path(&split, 10),
        &Device::Cpu,
    )
    .unwrap();
    assert_ne!(bits(&first), a);
}

#[test]
fn resume_is_bit_identical_to_an_uninterrupted_run() {
    check_resume_is_bit_identical(ObjectiveConfig::default(), Precision::F32, 1);
}

#[test]
fn bf16_resume_is_bit_identical_to_an_uninterrupted_run() {
    check_resume_is_bit_identical(ObjectiveConfig::default(), Precision::Bf16, 1);
}

/// Each batch in three uneven parts (3 + 3 + 2 samples) on their own
/// workers: the same bits however the threads are scheduled.
#[test]
fn a_batch_split_run_resumes_bit_identically() {
    check_resume_is_bit_identical(ObjectiveConfig::default(), Precision::Bf16, 3);
}

/// A batch computed in parts trains the same model as the whole batch, up
/// to the order of float additions: after 10 steps every tensor of the
/// checkpoint (weights, EMA, AdamW moments) within rel-L2 1e-4 of the
/// unsplit run's, and the logged losses within 1e-5 relative.
#[test]
fn a_batch_split_trains_what_the_whole_batch_trains() {
    let dir = tempfile::tempdir().unwrap();
    let run = |parts: usize| {
        train(TrainJob {
            batch_parts: parts,
            ..job(
                fashion(),
                &dir.path().join(format!("parts{parts}")),
                10,
                None,
            )
        })
        .unwrap()
    };
    let (whole, split) = (run(1), run(3));
    let (loss_whole, loss_split) = (whole.final_loss, split.final_loss);
    assert!(
        within(((loss_split - loss_whole) / loss_whole).abs(), 1e-5),
        "final loss {loss_split} in parts vs {loss_whole} whole"
    );
    let (worst, compared) = checkpoint_difference(&whole.last_checkpoint, &split.last_checkpoint);
    eprintln!("3 parts vs whole, 10 steps: worst rel-L2 {worst:.2e} over {compared} tensors; final loss {loss_split} vs {loss_whole}");
    assert!(
        within(worst, 1e-4),
        "worst rel-L2 {worst:.2e} between whole and split"
    );
    assert!(compared > 20, "{compared} tensors compared");
}

#[test]
fn sit_training_resumes_bit_identically() {
    check_resume_is_bit_identical(
        ObjectiveConfig::Sit(TransportConfig::default()),
        Precision::F32,
        1,
    );
}

#[test]
fn a_training_checkpoint_loads_as_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = train(job(fashion(), dir.path(), 3, None)).unwrap();
    let ema = Dit::load(&out.last_checkpoint, &Device::Cpu).unwrap();
    assert_eq!(ema.config(), &tiny_model());
    let raw = Dit::load_with(
        &out.last_checkpoint,
        &Device::Cpu,
        &dit::model::LoadOptions {
            weights: dit::model::WeightSet::Raw,
            ..Default::default()
        },
    )
    .unwrap();
    let x = candle_core::Tensor::ones((1, 1, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let t = candle_core::Tensor::new(&[500f32], &Device::Cpu).unwrap();
    let y = candle_core::Tensor::new(&[2u32], &Device::Cpu).unwrap();
    let (e, r) = (
        ema.forward(&x, &t, &y).unwrap(),
        raw.forward(&x, &t, &y).unwrap(),
    );
    let diff = (e - r)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        diff > 0.0,
        "EMA and raw weights should differ after training"
    );
}

#[test]
fn a_failed_save_leaves_the_previous_checkpoint_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    std::fs::write(&path, b"previous checkpoint").unwrap();
    // Fail between writing the temporary file and renaming it into place.
    let err = dit::atomic_file::write_atomically(&path, |tmp| {
        std::fs::write(tmp, b"half of a new check")?;
        dit::bail!("No space left on device (simulated)")
    })
    .unwrap_err();
    assert!(err.to_string().contains("No space left"));
    assert_eq!(std::fs::read(&path).unwrap(), b"previous checkpoint");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary file left behind: {leftovers:?}"
    );

    // The rename itself failing (the destination is a non-empty folder) is
    // reported, and the checkpoint before it stays.
    let out = dir.path().join("run");
    let first = train(job(fashion(), &out, 2, None)).unwrap();
    let before = std::fs::read(&first.last_checkpoint).unwrap();
    let blocked = dit::train::checkpoint::checkpoint_path(&out, 4);
    std::fs::create_dir_all(blocked.join("occupied")).unwrap();
    let err = train(job(fashion(), &out, 4, Some(first.last_checkpoint.clone())))
        .err()
        .expect("saving into a folder must fail");
    assert!(
        format!("{err:#}").contains("step-0000004.safetensors"),
        "{err:#}"
    );
    assert_eq!(std::fs::read(&first.last_checkpoint).unwrap(), before);
    let names: Vec<_> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "only the good checkpoint and the blocking folder may remain: {names:?}"
    );
}

/// Fashion-MNIST with every pixel NaN: the loss diverges at once.
struct Poisoned(FashionMnist);

impl Dataset for Poisoned {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn num_classes(&self) -> usize {
        self.0.num_classes()
    }
    fn class_names(&self) -> &[String] {
        self.0.class_names()
    }
    fn sample_shape(&self) -> (usize, usize, usize) {
        self.0.sample_shape()
    }
    fn get(&self, index: usize, flip: bool) -> Result<(Vec<f32>, u32), DataError> {
        let (x, y) = self.0.get(index, flip)?;
        Ok((vec![f32::NAN; x.len()], y))
    }
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let good = train(job(fashion(), dir.path(), 2, None)).unwrap();
    let before = std::fs::read(&good.last_checkpoint).unwrap();
    let poisoned = Arc::new(Poisoned(FashionMnist::embedded().unwrap()));
    let err = train(job(
        poisoned,
        dir.path(),
        4,
        Some(good.last_checkpoint.clone()),
    ))
    .err()
    .expect("must stop");
    let msg = format!("{err:#}");
    assert!(msg.contains("step 3") && msg.contains("diverged"), "{msg}");
    assert!(
        msg.contains("step-0000002.safetensors"),
        "should name the last good checkpoint: {msg}"
    );
    assert_eq!(std::fs::read(&good.last_checkpoint).unwrap(), before);
    assert!(!dit::train::checkpoint::checkpoint_path(dir.path(), 4).exists());
}

#[test]
fn resume_refuses_other_models_and_other_classes() {
    let dir = tempfile::tempdir().unwrap();
    let first = train(job(fashion(), dir.path(), 2, None)).unwrap();

    let mut other_model = job(
        fashion(),
        dir.path(),
        4,
        Some(first.last_checkpoint.clone()),
    );
    other_model.model.depth = 3;
    let msg = format!("{:#}", train(other_model).err().unwrap());
    assert!(msg.contains("different model"), "{msg}");

    struct Renamed(FashionMnist, Vec<String>);
    impl Dataset for Renamed {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn num_classes(&self) -> usize {
            10
        }
        fn class_names(&self) -> &[String] {
            &self.1
        }
        fn sample_shape(&self) -> (usize, usize, usize) {
            self.0.sample_shape()
        }
        fn get(&self, index: usize, flip: bool) -> Result<(Vec<f32>, u32), DataError> {
            self.0.get(index, flip)
        }
    }
    let names = (0..10).map(|i| format!("digit {i}")).collect();
    let renamed = Arc::new(Renamed(FashionMnist::embedded().unwrap(), names));
    let msg = format!(
        "{:#}",
        train(job(
            renamed,
            dir.path(),
            4,
            Some(first.last_checkpoint.clone())
        ))
        .err()
        .unwrap()
    );
    assert!(
        msg.contains("classes") && msg.contains("digit 0") && msg.contains("Trouser"),
        "{msg}"
    );

    // Starting afresh in a folder that holds a run is refused too.
    let msg = format!(
        "{:#}",
        train(job(fashion(), dir.path(), 2, None)).err().unwrap()
    );
    assert!(msg.contains("--resume"), "{msg}");
}
