//! The `dit` binary as a user runs it.

use crate::support::model as common;

use std::process::Command;

/// `dit` run in the test's working directory: (success, stdout, stderr).
fn dit(args: &[&str]) -> (bool, String, String) {
    dit_in(std::path::Path::new("."), args)
}

#[test]
fn info_on_a_preset_needs_no_file() {
    let (ok, stdout, _) = dit(&["info", "--model", "DiT-XL/2", "--image-size", "256"]);
    assert!(ok);
    assert!(
        stdout.lines().any(|l| l == "parameters: 675129632"),
        "{stdout}"
    );
    let (ok, stdout, _) = dit(&["info", "DiT-S/2"]);
    assert!(ok && stdout.contains("parameters: 32963360"), "{stdout}");
    let (ok, _, stderr) = dit(&["info", "--model", "DiT-Q/2"]);
    assert!(
        !ok && stderr.contains("DiT-Q/2") && stderr.contains("DiT-XL/8"),
        "{stderr}"
    );
}

#[test]
fn convert_then_info_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.safetensors");
    let out_s = out.to_str().unwrap();
    let pt = common::fixture("tiny_train.pt");
    let (ok, stdout, stderr) = dit(&["convert", pt.to_str().unwrap(), out_s, "--num-heads", "2"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("wrote"), "{stdout}");
    // The converted file records its configuration: heads are no longer guessed.
    let (ok, stdout, _) = dit(&["info", out_s]);
    assert!(
        ok && stdout.contains("heads:        2 (head dim 32)") && !stdout.contains("inferred"),
        "{stdout}"
    );
    let (ok, stdout, _) = dit(&["info", pt.to_str().unwrap()]);
    assert!(ok && stdout.contains("inferred"), "{stdout}");

    // A failed conversion leaves the existing output untouched.
    let before = std::fs::read(&out).unwrap();
    let bad = dir.path().join("bad.pt");
    std::fs::write(&bad, "nope").unwrap();
    let (ok, _, stderr) = dit(&["convert", bad.to_str().unwrap(), out_s]);
    assert!(!ok && stderr.contains("bad.pt"), "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let (ok, _, stderr) = dit(&[
        "convert",
        pt.to_str().unwrap(),
        dir.path().join("x.bin").to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains(".safetensors"), "{stderr}");
}

fn write_png(path: &std::path::Path, shade: u8) {
    let img = image::GrayImage::from_fn(12, 12, |x, y| {
        image::Luma([shade.wrapping_add((x * 7 + y * 3) as u8)])
    });
    img.save(path).unwrap();
}

#[test]
fn train_reports_bad_images_and_bad_folders() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (class, shade) in [("cats", 10u8), ("dogs", 200u8)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..3 {
            write_png(&data.join(class).join(format!("{i}.png")), shade + i as u8);
        }
    }
    std::fs::write(
        data.join("dogs/broken.png"),
        b"\x89PNG\r\n\x1a\n not really",
    )
    .unwrap();
    let base = |out: &str| -> Vec<String> {
        let out = dir.path().join(out);
        [
            "train",
            "--data",
            data.to_str().unwrap(),
            "--image-size",
            "8",
            "--channels",
            "1",
            "--steps",
            "2",
            "--batch-size",
            "3",
            "--depth",
            "1",
            "--hidden-size",
            "32",
            "--num-heads",
            "1",
            "--patch-size",
            "4",
            "--sample-every",
            "0",
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // Two steps of 3 cover the whole epoch of 7, so the broken file is met.
    let args = base("strict");
    let (ok, _, stderr) = dit(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && stderr.contains("broken.png"), "{stderr}");

    let mut args = base("lenient");
    args.push("--skip-bad-images".into());
    let (ok, stdout, stderr) = dit(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    assert!(stderr.contains("skipped 1 unreadable image"), "{stderr}");
    assert!(stdout.contains("done: 2 steps"), "{stdout}");

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, stderr) = dit(&["train", "--data", empty.to_str().unwrap(), "--steps", "1"]);
    assert!(!ok && stderr.contains("empty"), "{stderr}");
}

/// `dit` run in `cwd`: (success, stdout, stderr).
fn dit_in(cwd: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dit"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `dit train`'s flags for a tiny model (the embedded data's 32×32 in
/// sixteen 8×8 patches), without previews.
pub const TINY_MODEL: [&str; 10] = [
    "--depth",
    "1",
    "--hidden-size",
    "32",
    "--num-heads",
    "2",
    "--patch-size",
    "8",
    "--sample-every",
    "0",
];

/// [`TINY_MODEL`] with 4 images a step.
const TINY_EMBEDDED: [&str; 12] = concat_flags(TINY_MODEL, ["--batch-size", "4"]);

/// `a` then `b`, as one array of flags.
pub const fn concat_flags<const A: usize, const B: usize, const C: usize>(
    a: [&'static str; A],
    b: [&'static str; B],
) -> [&'static str; C] {
    let mut out = [""; C];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < C {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

#[test]
fn a_resumed_run_continues_in_its_own_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("elsewhere/run-a");
    let run_s = run.to_str().unwrap();
    let mut first = vec!["train", "--steps", "2", "--out", run_s];
    first.extend(TINY_EMBEDDED);
    let (ok, _, stderr) = dit_in(dir.path(), &first);
    assert!(ok, "{stderr}");
    // Resumed from another working directory, without --out.
    let cwd = dir.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut resumed = vec!["train", "--resume", run_s, "--steps", "4"];
    resumed.extend(TINY_EMBEDDED);
    let (ok, stdout, stderr) = dit_in(&cwd, &resumed);
    assert!(ok, "{stderr}");
    assert!(
        run.join("checkpoints/step-0000004.safetensors").is_file(),
        "{stdout}"
    );
    assert!(
        !cwd.join("runs").exists(),
        "the continuation went to ./runs"
    );
}

#[test]
fn bad_numbers_and_devices_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut train = vec!["train", "--steps", "1", "--out", run.to_str().unwrap()];
    train.extend(TINY_EMBEDDED);
    train.extend(["--objective", "ddpm"]);
    let (ok, _, stderr) = dit(&train);
    assert!(ok, "{stderr}");
    let ckpt = run.to_str().unwrap();
    for scale in ["nan", "inf", "-inf"] {
        let flag = format!("--cfg-scale={scale}");
        let (ok, _, stderr) = dit_in(
            dir.path(),
            &["sample", "--ckpt", ckpt, "--class", "0", &flag],
        );
        assert!(
            !ok && stderr.contains("guidance scale must be a finite number"),
            "--cfg-scale {scale}: {stderr}"
        );
        assert!(
            !dir.path().join("samples.png").exists(),
            "an image was written"
        );
    }
    // A pixel-space DDPM model samples with DPM-Solver++ at 25 steps unless
    // told; naming the paper's sampler brings the paper's 250 steps.
    for (extra, expected) in [
        (None, "(25 steps, dpm++, guidance 4)"),
        (Some("ddpm"), "(250 steps, ddpm, guidance 4)"),
    ] {
        let npz = dir.path().join("defaults.npz");
        let mut args = vec!["sample", "--ckpt", ckpt, "--class", "0", "--npz"];
        args.push(npz.to_str().unwrap());
        if let Some(sampler) = extra {
            args.extend(["--sampler", sampler]);
        }
        let (ok, _, stderr) = dit(&args);
        assert!(ok && stderr.contains(expected), "{args:?}: {stderr}");
    }
    let (ok, _, stderr) = dit(&["train", "--device", "tpu", "--steps", "1"]);
    assert!(!ok && stderr.contains("unknown device 'tpu'"), "{stderr}");
    let (ok, _, stderr) = dit(&["sample", "--ckpt", ckpt, "--precision", "f8"]);
    assert!(!ok && stderr.contains("unknown precision 'f8'"), "{stderr}");
    let zero_parts = "--batch-split must be at least 1";
    let (ok, _, stderr) = dit(&["train", "--steps", "1", "--batch-split", "0"]);
    assert!(!ok && stderr.contains(zero_parts), "{stderr}");
    let (ok, _, stderr) = dit(&["sample", "--ckpt", ckpt, "--batch-split", "0"]);
    assert!(!ok && stderr.contains(zero_parts), "{stderr}");
    if !candle_core::utils::cuda_is_available() {
        let (ok, _, stderr) = dit(&["sample", "--ckpt", ckpt, "--device", "cuda:0"]);
        assert!(
            !ok && stderr.contains("built without CUDA support"),
            "{stderr}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_checkpoint_bytes() {
    // Two processes: the metadata of a checkpoint is a hash map whose
    // iteration order is seeded per process, so this also checks that the
    // header is written in a fixed order.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for run in ["a", "b"] {
        let out = dir.path().join(run);
        let mut args = vec!["train", "--steps", "3", "--out", out.to_str().unwrap()];
        args.extend(TINY_EMBEDDED);
        let (ok, _, stderr) = dit(&args);
        assert!(ok, "{stderr}");
        bytes.push(std::fs::read(out.join("checkpoints/step-0000003.safetensors")).unwrap());
    }
    assert!(
        bytes[0] == bytes[1],
        "two runs with seed 0 wrote different checkpoints"
    );
}

#[test]
fn an_official_sit_checkpoint_is_told_and_sampled() {
    // scripts/sit_fixtures.py: the release's state-dict layout, random weights.
    let pt = common::fixture("tiny_sit.pt");
    let pt = pt.to_str().unwrap();
    let (ok, stdout, stderr) = dit(&["info", pt, "--num-heads", "2", "--objective", "sit"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("model:        custom SiT"), "{stdout}");
    assert!(
        stdout.contains("objective:    SiT transport (linear path, velocity prediction"),
        "{stdout}"
    );
    // Its tensors alone look like a DiT's.
    let (ok, stdout, _) = dit(&["info", pt, "--num-heads", "2"]);
    assert!(ok && stdout.contains("custom DiT"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let vae = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae/tiny");
    let npz = dir.path().join("sit.npz");
    let sample = |extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--ckpt",
            pt,
            "--num-heads",
            "2",
            "--vae",
            vae.to_str().unwrap(),
            "--class",
            "3,7",
            "--cfg-scale",
            "1.5",
            "--npz",
            npz.to_str().unwrap(),
        ];
        args.extend(extra);
        dit(&args)
    };
    let (ok, _, stderr) = sample(&[
        "--objective",
        "sit",
        "--sampler",
        "ode-heun",
        "--steps",
        "4",
    ]);
    assert!(ok, "{stderr}");
    let images = dit::formats::npz::read(&npz, "arr_0").unwrap();
    assert_eq!(images.shape(), [2, 16, 16, 3]);
    // A DDPM sampler on a SiT model, and a SiT sampler on a DiT, are refused.
    let (ok, _, stderr) = sample(&["--objective", "sit", "--sampler", "ddpm"]);
    assert!(
        !ok && stderr.contains("SiT's transport objective"),
        "{stderr}"
    );
    let (ok, _, stderr) = sample(&["--sampler", "ode-heun", "--steps", "4"]);
    assert!(!ok && stderr.contains("DDPM's diffusion"), "{stderr}");
}

#[test]
fn the_embedded_run_is_sit_by_default_and_samples_with_its_own_sampler() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("sit");
    let run_s = run.to_str().unwrap();
    // No --objective: the embedded data's default.
    let mut args = vec!["train", "--steps", "2", "--out", run_s];
    args.extend(&TINY_MODEL[..8]);
    args.extend(["--batch-size", "4", "--sample-every", "2"]);
    let (ok, stdout, stderr) = dit(&args);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("training custom SiT"), "{stdout}");
    // No --precision: bf16 where this CPU multiplies bf16 in hardware; no
    // --batch-split: a part per thread (rayon's count: the CPUs this process
    // may use, unless RAYON_NUM_THREADS says otherwise).
    let precision = dit::compute::Precision::fastest_on_cpu();
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let parts = match threads.min(4) {
        1 => String::new(),
        n => format!(", each batch as {n} parts at once"),
    };
    assert!(
        stdout.contains(&format!("steps of batch 4 on cpu, {precision}{parts};")),
        "{stdout}"
    );
    assert!(run.join("samples/latest.png").is_file());
    // Sampled without naming a sampler: the checkpoint says SiT and the
    // model is a pixel-space one, so the fast Heun ODE at 25 grid points.
    let grid = dir.path().join("grid.png");
    let (ok, _, stderr) = dit(&[
        "sample",
        "--ckpt",
        run_s,
        "--class",
        "Sneaker",
        "-o",
        grid.to_str().unwrap(),
    ]);
    assert!(
        ok && stderr.contains("(25 steps, ode-heun, guidance 4)"),
        "{stderr}"
    );
    assert!(grid.is_file());

    // --per-class: every class (or every listed one) that many times, in order.
    let npz = dir.path().join("per-class.npz");
    let sample_per_class = |extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--ckpt",
            run_s,
            "--per-class",
            "2",
            "--steps",
            "2",
        ];
        args.extend(extra);
        args.extend(["--npz", npz.to_str().unwrap()]);
        let (ok, _, stderr) = dit(&args);
        assert!(ok, "{stderr}");
        match dit::formats::npz::read(&npz, dit::formats::npz::LABELS).unwrap() {
            dit::formats::npz::Array::U32 { data, .. } => data,
            other => panic!("labels stored as {:?}", other.element()),
        }
    };
    let every: Vec<u32> = (0..10).flat_map(|c| [c, c]).collect();
    assert_eq!(sample_per_class(&[]), every);
    assert_eq!(
        sample_per_class(&["--class", "Bag,trouser"]),
        vec![8, 8, 1, 1]
    );
    let (ok, _, stderr) = dit(&["sample", "--ckpt", run_s, "--per-class", "0"]);
    assert!(!ok && stderr.contains("--per-class"), "{stderr}");
}
