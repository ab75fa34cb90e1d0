//! The latent-space pipeline end to end through the binary: `dit extract`,
//! `dit train --latents`, `dit sample --vae`.

use crate::support::model as common;

use std::path::Path;

/// Runs `dit`, which must succeed; its output.
fn dit(args: &[&str]) -> String {
    let (ok, text) = common::run_dit(args);
    assert!(ok, "dit {}: {text}", args.join(" "));
    text
}

fn write_folder(root: &Path) {
    for (c, class) in ["red", "blue"].iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..3u32 {
            let img = image::RgbImage::from_fn(16, 16, |x, y| {
                let v = (x * 8 + y * 4 + i * 20) as u8;
                if c == 0 {
                    image::Rgb([200, v, v / 2])
                } else {
                    image::Rgb([v / 2, v, 200])
                }
            });
            img.save(root.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
}

#[test]
fn extract_then_train_on_latents_then_sample_through_the_vae() {
    let dir = tempfile::tempdir().unwrap();
    let s = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let vae = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae/tiny");
    let vae = vae.to_str().unwrap();
    write_folder(&dir.path().join("images"));

    let (images, latents) = (s("images"), s("latents"));
    let extract = [
        "extract",
        "--data",
        &images,
        "--vae",
        vae,
        "--out",
        &latents,
        "--image-size",
        "16",
        "--shard-size",
        "4",
    ];
    let out = dit(&extract);
    assert!(
        out.contains("6 images, 2 classes, latents 4×8×8") && out.contains("2 shards written"),
        "{out}"
    );
    // The same command again: everything is already there.
    let out = dit(&extract);
    assert!(out.contains("0 shards written, 2 already done"), "{out}");

    let out = dit(&[
        "train",
        "--latents",
        &latents,
        "--out",
        &s("run"),
        "--depth",
        "1",
        "--hidden-size",
        "32",
        "--num-heads",
        "2",
        "--patch-size",
        "2",
        "--batch-size",
        "4",
        "--steps",
        "3",
        "--warmup-steps",
        "1",
    ]);
    assert!(out.contains("done: 3 steps"), "{out}");
    let ckpt = dir.path().join("run/checkpoints/step-0000003.safetensors");
    assert!(ckpt.exists(), "{out}");
    let (c, h, w) = (4, 8, 8);
    let info = dit(&["info", ckpt.to_str().unwrap()]);
    assert!(
        info.contains(&format!("input:        {c} × {h} × {w}")),
        "{info}"
    );

    // Class names stored by training resolve; the run folder finds its newest checkpoint.
    dit(&[
        "sample",
        "--ckpt",
        &s("run"),
        "--vae",
        vae,
        "--class",
        "blue,red",
        "-n",
        "4",
        "--steps",
        "10",
        "-o",
        &s("grid.png"),
        "--npz",
        &s("samples.npz"),
    ]);
    let grid = image::open(s("grid.png")).unwrap();
    assert_eq!(
        (grid.width(), grid.height()),
        (2 * 18 + 2, 2 * 18 + 2),
        "2×2 grid of 16-px images"
    );
    let npz = dit::formats::npz::read(Path::new(&s("samples.npz")), "arr_0").unwrap();
    assert_eq!(npz.shape(), [4, 16, 16, 3]);
}
