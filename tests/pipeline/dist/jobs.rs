//! `dit train`, `sample` and `extract --distributed` as MPI jobs:
//! two ranks sharing each batch compute what one process does with the
//! whole batch, a checkpoint resumes on any number of ranks, ranks started
//! differently are refused, and a killed rank ends the job with the last
//! checkpoint intact.

use super::mpi_jobs::{alive, mpirun_or_skip, Job, END_OF_JOB_LIMIT, ONE_JOB_AT_A_TIME};
use crate::support::compare::checkpoint_difference;
use candle_core::Device;
use dit::train::checkpoint::checkpoint_path;
use dit::train::TrainCheckpoint;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tiny model on the embedded data with a global batch of 32.
// DDPM and f32 named: the figures in docs/distributed.md were measured with
// them (the embedded run's defaults are SiT, and bf16 on CPUs with AMX or
// AVX512-BF16).
const TINY: [&str; 16] = crate::cli::concat_flags(
    crate::cli::TINY_MODEL,
    [
        "--batch-size",
        "32",
        "--objective",
        "ddpm",
        "--precision",
        "f32",
    ],
);

/// `dit train` of [`TINY`] for `steps` steps into `out`, a checkpoint every
/// `every` steps.
fn train_args<'a>(out: &'a str, steps: &'a str, every: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--steps",
        steps,
        "--out",
        out,
        "--checkpoint-every",
        every,
    ];
    args.extend(TINY);
    args
}

fn single(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_dit"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn two_ranks(dir: &Path, args: &[&str]) -> super::mpi_jobs::Ended {
    let mut args = args.to_vec();
    args.push("--distributed");
    Job::start(Job::dit(2, &args), dir).wait(Duration::from_secs(600))
}

#[test]
fn two_ranks_sharing_the_batch_train_as_one_process_and_resume_on_one() {
    if !mpirun_or_skip("two_ranks_sharing_the_batch_train_as_one_process") {
        return;
    }
    let _one = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (one, two, resumed) = (path("one"), path("two"), path("resumed"));
    single(&train_args(one.to_str().unwrap(), "20", "10"));
    let ended = two_ranks(dir.path(), &train_args(two.to_str().unwrap(), "20", "10"));
    assert!(ended.status.success(), "{}", ended.describe());
    assert!(
        ended.stdout.contains("over 2 ranks"),
        "{}",
        ended.describe()
    );

    // 2 ranks × 16 samples against 1 × 32: only the order of the sums of
    // the loss and the gradients differs.
    for step in [10, 20] {
        let (worst, tensors) =
            checkpoint_difference(&checkpoint_path(&two, step), &checkpoint_path(&one, step));
        eprintln!("step {step}: worst rel-L2 over {tensors} tensors, 2 ranks vs 1: {worst:.2e}");
        assert!(
            crate::support::compare::within(worst, 1e-5),
            "step {step}: {worst}"
        );
    }

    // The 2-rank checkpoint at step 10, continued on one rank to 20.
    let mut args = train_args(resumed.to_str().unwrap(), "20", "10");
    let from = checkpoint_path(&two, 10);
    args.extend(["--resume", from.to_str().unwrap()]);
    single(&args);
    let (worst, _) =
        checkpoint_difference(&checkpoint_path(&resumed, 20), &checkpoint_path(&one, 20));
    eprintln!("2 ranks to step 10, then 1 rank to 20, vs 1 rank throughout: {worst:.2e}");
    assert!(crate::support::compare::within(worst, 1e-5), "{worst}");
}

#[test]
fn ranks_started_with_different_settings_are_refused() {
    if !mpirun_or_skip("ranks_started_with_different_settings_are_refused") {
        return;
    }
    let _one = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    let dit = env!("CARGO_BIN_EXE_dit");
    // mpirun's MPMD form: rank 0 with seed 0, rank 1 with seed 1.
    let mut command = Job::mpirun();
    command.args(["--oversubscribe", "-np", "1", dit]);
    command
        .args(train_args(out, "4", "10"))
        .args(["--distributed", "--seed", "0"]);
    command.args([":", "-np", "1", dit]);
    command
        .args(train_args(out, "4", "10"))
        .args(["--distributed", "--seed", "1"]);
    let ended = Job::start(command, dir.path()).wait(Duration::from_secs(300));
    assert!(!ended.status.success(), "{}", ended.describe());
    assert!(
        ended
            .stderr
            .contains("rank 1 was started with another configuration than rank 0"),
        "{}",
        ended.describe()
    );
    assert!(
        !dir.path()
            .join("run/checkpoints/step-0000004.safetensors")
            .exists(),
        "a refused job trained"
    );
}

/// The process of rank `rank` of the job whose environment holds `marker`
/// (`mpirun -x` hands it on to every rank).
fn rank_pid(job: &mut Job, marker: &str, rank: usize, limit: Duration) -> i32 {
    let start = Instant::now();
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    loop {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let has = |var: &str| environ.split(|&b| b == 0).any(|v| v == var.as_bytes());
            if has(marker) && has(&wanted) {
                return pid;
            }
        }
        assert!(
            start.elapsed() < limit,
            "no rank {rank} of the job {marker}"
        );
        if let Some(status) = job.child.try_wait().unwrap() {
            panic!("the job ended ({status}) before its ranks were seen");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_rank_ends_training_and_the_last_checkpoint_stays_whole() {
    if !mpirun_or_skip("a_killed_rank_ends_training") {
        return;
    }
    let _one = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut args = train_args(run.to_str().unwrap(), "100000", "2");
    args.push("--distributed");
    let marker = format!("DIT_TEST_JOB={}", dir.path().display());
    // `-x` hands the marker on to the ranks, where it tells them apart
    // from other jobs' ranks.
    let mut command = Job::mpirun();
    command
        .env("DIT_TEST_JOB", dir.path())
        .args(["-x", "DIT_TEST_JOB", "-np", "2", "--oversubscribe"])
        .arg(env!("CARGO_BIN_EXE_dit"))
        .args(&args);
    let mut job = Job::start(command, dir.path());
    let victim = rank_pid(&mut job, &marker, 1, Duration::from_secs(120));
    let first = checkpoint_path(&run, 2);
    let waited = Instant::now();
    while !first.exists() {
        assert!(
            waited.elapsed() < Duration::from_secs(300),
            "no checkpoint in 300 s"
        );
        assert!(
            job.child.try_wait().unwrap().is_none(),
            "the job ended early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(alive(victim));
    let killed = Instant::now();
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let ended = job.wait(END_OF_JOB_LIMIT);
    eprintln!(
        "killed rank 1 after step 2's checkpoint: the job ended ({}) {:.2?} later",
        ended.status,
        killed.elapsed()
    );
    assert!(!ended.status.success(), "{}", ended.describe());
    // Whatever checkpoints were written are whole.
    let newest = dit::train::checkpoint::resolve(&run).unwrap();
    let ckpt = TrainCheckpoint::load(&newest, &Device::Cpu).unwrap();
    assert!(ckpt.state.step >= 2, "{}", newest.display());
}

#[test]
fn two_ranks_sample_the_bytes_one_process_writes() {
    if !mpirun_or_skip("two_ranks_sample_the_bytes_one_process_writes") {
        return;
    }
    let _one = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    single(&train_args(run.to_str().unwrap(), "2", "2"));
    let files = |tag: &str| ["npz", "png"].map(|ext| dir.path().join(format!("{tag}.{ext}")));
    let sample = |[npz, png]: &[std::path::PathBuf; 2]| -> Vec<String> {
        [
            "sample",
            "--ckpt",
            run.to_str().unwrap(),
            "-n",
            "7",
            "--steps",
            "6",
            "--batch-size",
            "2",
            "--cfg-scale",
            "2",
            "--npz",
            npz.to_str().unwrap(),
            "-o",
            png.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let one = files("one");
    let args = sample(&one);
    single(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let two = files("two");
    let args = sample(&two);
    let ended = two_ranks(
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(ended.status.success(), "{}", ended.describe());
    for (a, b) in one.iter().zip(&two) {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{} and {} differ",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn two_ranks_extract_the_latent_files_one_process_writes() {
    if !mpirun_or_skip("two_ranks_extract_the_latent_files_one_process_writes") {
        return;
    }
    let _one = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("images");
    for (class, count) in [("cats", 3u32), ("dogs", 4)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..count {
            let img = image::RgbImage::from_fn(16, 16, |x, y| {
                image::Rgb([(x * 15 + i * 30) as u8, (y * 15) as u8, (x * y % 256) as u8])
            });
            img.save(data.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let vae = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae/tiny");
    let extract = |out: &Path| -> Vec<String> {
        [
            "extract",
            "--data",
            data.to_str().unwrap(),
            "--vae",
            vae.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--image-size",
            "16",
            "--batch-size",
            "2",
            "--shard-size",
            "2",
        ]
        .map(String::from)
        .to_vec()
    };
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let args = extract(&one);
    single(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let args = extract(&two);
    let ended = two_ranks(
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(ended.status.success(), "{}", ended.describe());
    assert!(
        ended.stdout.contains("complete: true"),
        "{}",
        ended.describe()
    );
    // Four shards of 2, 2, 2 and 1 images, and the manifest.
    let manifest = dit::data::latent_cache::MANIFEST_FILE;
    assert!(
        std::fs::read(one.join(manifest)).unwrap() == std::fs::read(two.join(manifest)).unwrap()
    );
    for s in 0..4 {
        let (a, b) = (
            dit::data::latent_cache::shard_path(&one, s),
            dit::data::latent_cache::shard_path(&two, s),
        );
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "shard {s} differs"
        );
    }
}

#[test]
fn two_ranks_share_the_inception_features_of_eval() {
    if !mpirun_or_skip("two_ranks_share_the_inception_features_of_eval") {
        return;
    }
    let Some(weights) = crate::support::eval::torchscript_weights() else {
        return;
    };
    let _one = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval");
    // The fixture batch's images without its (toy) statistics.
    let reference = dir.path().join("reference.npz");
    let images = dit::formats::npz::read(&fixtures.join("image_batch.npz"), "arr_0").unwrap();
    dit::formats::npz::write(&reference, &[("arr_0", &images)]).unwrap();
    let eval = |json: &Path| -> Vec<String> {
        [
            "eval",
            "--samples",
            fixtures.join("images").to_str().unwrap(),
            "--ref",
            reference.to_str().unwrap(),
            "--inception",
            weights.to_str().unwrap(),
            "--batch-size",
            "3",
            "--k",
            "2",
            "--no-progress",
            "--json",
            json.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let (one, two) = (dir.path().join("one.json"), dir.path().join("two.json"));
    let args = eval(&one);
    single(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let args = eval(&two);
    let ended = two_ranks(
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(ended.status.success(), "{}", ended.describe());
    let metrics = |path: &Path| {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        report["metrics"].clone()
    };
    let (a, b) = (metrics(&one), metrics(&two));
    eprintln!("1 rank {a}\n2 ranks {b}");
    for name in ["fid", "precision", "recall"] {
        let (x, y) = (a[name].as_f64().unwrap(), b[name].as_f64().unwrap());
        assert!(
            crate::support::compare::within((x - y).abs(), 1e-9 * x.abs().max(1.0)),
            "{name}: 1 rank {x}, 2 ranks {y}"
        );
    }
}
