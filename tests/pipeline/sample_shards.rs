//! `dit sample` as a user runs it: sharded jobs, npz output, refusals.

use crate::support::model as common;

use candle_core::DType;
use dit::formats::npz;
use dit::model::DitConfig;

/// The images of a sample batch.
#[derive(Debug, PartialEq)]
struct Images {
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn read_npz(path: &Path) -> Images {
    match npz::read(path, npz::IMAGES).unwrap() {
        npz::Array::U8 { shape, data } => Images { shape, data },
        other => panic!("{} holds {:?} images", path.display(), other.element()),
    }
}
use std::path::{Path, PathBuf};

use common::run_dit as dit;

fn tiny_config(in_channels: usize) -> DitConfig {
    DitConfig {
        input_size: 8,
        patch_size: 2,
        in_channels,
        hidden_size: 32,
        depth: 1,
        num_heads: 2,
        mlp_ratio: 4.0,
        class_dropout_prob: 0.1,
        num_classes: 5,
        learn_sigma: true,
    }
}

/// A small pixel-space model with the fixture generator's (non-zero) weights.
fn save_model(dir: &Path, in_channels: usize) -> PathBuf {
    let config = tiny_config(in_channels);
    let path = dir.join(format!("tiny-{in_channels}.safetensors"));
    dit::model::checkpoint::save(&path, &config, &common::det_tensors(&config, DType::F32))
        .unwrap();
    path
}

#[test]
fn two_shards_equal_the_unsharded_run_image_for_image() {
    let dir = tempfile::tempdir().unwrap();
    let model = save_model(dir.path(), 3);
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let common_args = [
        "sample",
        "--ckpt",
        model.to_str().unwrap(),
        "--steps",
        "10",
        "--seed",
        "7",
        "--num-samples",
        "8",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = common_args
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect();
        let (ok, out) = dit(&args);
        assert!(ok, "{out}");
    };
    // Random classes (no --class), different batch sizes on purpose; whole
    // batches whatever this machine's thread count, compared bit for bit.
    run(&[
        "--batch-split",
        "1",
        "--batch-size",
        "8",
        "--npz",
        &p("all.npz"),
        "-o",
        &p("all.png"),
    ]);
    run(&[
        "--batch-split",
        "1",
        "--batch-size",
        "3",
        "--shard",
        "0/2",
        "--npz",
        &p("s0.npz"),
    ]);
    run(&[
        "--batch-split",
        "1",
        "--batch-size",
        "4",
        "--shard",
        "1/2",
        "--npz",
        &p("s1.npz"),
        "--out-dir",
        &p("each"),
    ]);
    // The same batch in three parts on their own workers.
    run(&[
        "--batch-size",
        "8",
        "--batch-split",
        "3",
        "--npz",
        &p("split3.npz"),
    ]);
    let (ok, out) = dit(&[
        "merge-npz",
        &p("s0.npz"),
        &p("s1.npz"),
        "-o",
        &p("merged.npz"),
    ]);
    assert!(ok, "{out}");

    let all = read_npz(Path::new(&p("all.npz")));
    let s0 = read_npz(Path::new(&p("s0.npz")));
    assert_eq!(all.shape, [8, 8, 8, 3]);
    assert_eq!(s0.shape, [4, 8, 8, 3]);
    // gemm's f32 kernels for few rows add in another order than for many,
    // so parts of 3 rows round differently from 8: a pixel may move by one
    // level (measured: 1 of 1,536 values), no more.
    let split = read_npz(Path::new(&p("split3.npz")));
    assert_eq!(split.shape, all.shape);
    let moved: Vec<u8> = split
        .data
        .iter()
        .zip(&all.data)
        .map(|(a, b)| a.abs_diff(*b))
        .filter(|&d| d > 0)
        .collect();
    assert!(
        moved.iter().all(|&d| d <= 1) && moved.len() * 100 <= all.data.len(),
        "a batch split moved {} of {} values, by up to {:?} levels",
        moved.len(),
        all.data.len(),
        moved.iter().max()
    );
    let merged = read_npz(Path::new(&p("merged.npz")));
    assert_eq!(
        merged, all,
        "shards concatenated differ from the unsharded run"
    );
    let per_image = 8 * 8 * 3;
    assert_ne!(
        all.data[..per_image],
        all.data[per_image..2 * per_image],
        "images should differ"
    );

    // Per-image PNGs are named by global index and hold the npz's pixels.
    let png = image::open(dir.path().join("each/000005.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(
        png.as_raw().as_slice(),
        &all.data[5 * per_image..6 * per_image]
    );
    assert!(
        !dir.path().join("each/000003.png").exists(),
        "shard 1 holds images 4..8 only"
    );
    let grid = image::open(p("all.png")).unwrap();
    assert_eq!(
        (grid.width(), grid.height()),
        (3 * 10 + 2, 3 * 10 + 2),
        "8 images, 3 per row, 2-px borders"
    );
}

#[test]
fn fixed_classes_cycle_and_guidance_changes_the_images() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_str(&save_model(dir.path(), 3));
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let base = [
        "sample",
        "--ckpt",
        &model,
        "--steps",
        "5",
        "-n",
        "4",
        "--sampler",
        "dpm++",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let (ok, out) = dit(&args);
        assert!(ok, "{out}");
    };
    run(&["--class", "1,3", "--npz", &p("a.npz")]);
    run(&[
        "--class",
        "1",
        "--class",
        "3",
        "--cfg-scale",
        "1",
        "--npz",
        &p("b.npz"),
    ]);
    let (a, b) = (
        read_npz(Path::new(&p("a.npz"))),
        read_npz(Path::new(&p("b.npz"))),
    );
    assert_eq!(a.shape, b.shape);
    assert_ne!(a.data, b.data, "cfg 4 and cfg 1 gave the same images");
    let (ok, out) = dit(&[
        "sample",
        "--ckpt",
        &model,
        "--class",
        "tabby",
        "--steps",
        "2",
        "--npz",
        &p("c.npz"),
    ]);
    assert!(
        !ok && out.contains("have no names"),
        "5-class model without names: {out}"
    );
}

fn model_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn missing_weights_and_missing_vae_are_explained() {
    let (ok, out) = dit(&["sample"]);
    assert!(!ok);
    for needle in [
        "DiT-XL-2-256x256.pt",
        "DiT-XL-2-512x512.pt",
        "sd-vae-ft-mse",
        "--ckpt",
        "--vae",
    ] {
        assert!(out.contains(needle), "missing '{needle}' in: {out}");
    }
    let (ok, out) = dit(&["sample", "--ckpt", "/nonexistent/DiT-XL-2-256x256.pt"]);
    assert!(
        !ok && out.contains("does not exist") && out.contains("sd-vae-ft-mse"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let latent_model = save_model(dir.path(), 4);
    let (ok, out) = dit(&[
        "sample",
        "--ckpt",
        latent_model.to_str().unwrap(),
        "--steps",
        "2",
    ]);
    assert!(
        !ok && out.contains("latent space") && out.contains("--vae"),
        "{out}"
    );
}

#[test]
fn bad_shards_are_refused() {
    for bad in ["2/2", "1", "a/3", "0/0"] {
        let (ok, out) = dit(&["sample", "--ckpt", "x", "--shard", bad]);
        assert!(!ok && out.contains("shard"), "--shard {bad}: {out}");
    }
}
