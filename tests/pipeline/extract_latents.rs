//! `dit extract`'s latent cache: contents, resuming, refusals.

use candle_core::{Device, Tensor};
use dit::data::latent_extract::{extract_latents, ExtractJob};
use dit::data::{Dataset, ImageFolder, LatentCache};
use dit::vae::Vae;
use std::path::{Path, PathBuf};

fn tiny_vae() -> Vae {
    Vae::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae/tiny"),
        &Device::Cpu,
    )
    .unwrap()
}

/// `root/cats` (3 images) and `root/dogs` (2), 20×16 so the crop matters.
fn write_folder(root: &Path) {
    for (class, count) in [("cats", 3u32), ("dogs", 2)] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..count {
            let img = image::RgbImage::from_fn(20, 16, |x, y| {
                image::Rgb([
                    (x * 12 + i * 40) as u8,
                    (y * 15) as u8,
                    ((x * y + i * 7) % 256) as u8,
                ])
            });
            img.save(root.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
}

fn job(data: &Path, out: &Path) -> ExtractJob {
    ExtractJob {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        image_size: 16,
        batch_size: 2,
        shard_size: 2,
        max_new_shards: None,
        vae_source: "tiny".into(),
    }
}

fn shard_files(out: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    (0..3)
        .map(|s| {
            let p = dit::data::latent_cache::shard_path(out, s);
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn cache_holds_the_moments_of_each_image_and_its_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("images"), dir.path().join("latents"));
    write_folder(&data);
    let vae = tiny_vae();
    let outcome = extract_latents(&vae, &job(&data, &out), &mut |_, _| {}).unwrap();
    assert_eq!(
        (outcome.written, outcome.skipped, outcome.complete),
        (vec![0, 1, 2], vec![], true)
    );

    let cache = LatentCache::open(&out).unwrap();
    assert_eq!(cache.len(), 5);
    assert_eq!(cache.class_names(), ["cats", "dogs"]);
    assert_eq!(
        cache.sample_shape(),
        (8, 8, 8),
        "4 latent channels × (mean, logvar), 16 px / 2"
    );
    assert_eq!(cache.labels(), [0, 0, 0, 1, 1]);
    assert_eq!(cache.scaling_factor(), 0.18215);

    // Image 3 (shard 1, row 1) as the VAE encodes it alone, both ways round.
    let folder = ImageFolder::open(&data, 16, 3).unwrap();
    for flip in [false, true] {
        let (pixels, label) = folder.get(3, flip).unwrap();
        let posterior = vae
            .encode(&Tensor::from_vec(pixels, (1, 3, 16, 16), &Device::Cpu).unwrap())
            .unwrap();
        let expected: Vec<f32> = Tensor::cat(&[&posterior.mean, &posterior.logvar], 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let (stored, stored_label) = cache.get(3, flip).unwrap();
        assert_eq!(stored_label, label);
        let max_diff = crate::support::compare::nan_max(
            stored
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs() as f64),
        );
        assert!(
            max_diff < 1e-4,
            "flip {flip}: stored moments differ by {max_diff}"
        );
    }
    assert_ne!(
        cache.get(3, false).unwrap().0,
        cache.get(3, true).unwrap().0
    );
    assert!(cache.get(5, false).is_err());
}

#[test]
fn an_interrupted_extraction_resumes_and_gives_identical_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("images"), dir.path().join("latents"));
    write_folder(&data);
    let vae = tiny_vae();
    extract_latents(&vae, &job(&data, &out), &mut |_, _| {}).unwrap();
    let before = shard_files(&out);

    // Interrupted after the first shard: the cache is not usable yet.
    let partial = dir.path().join("partial");
    let first = ExtractJob {
        max_new_shards: Some(1),
        ..job(&data, &partial)
    };
    let outcome = extract_latents(&vae, &first, &mut |_, _| {}).unwrap();
    assert_eq!((outcome.written, outcome.complete), (vec![0], false));
    let err = LatentCache::open(&partial).unwrap_err().to_string();
    assert!(
        err.contains("shard-00001") && err.contains("rerun"),
        "{err}"
    );
    let outcome = extract_latents(&vae, &job(&data, &partial), &mut |_, _| {}).unwrap();
    assert_eq!((outcome.written, outcome.skipped), (vec![1, 2], vec![0]));
    for ((_, a), (_, b)) in before.iter().zip(shard_files(&partial)) {
        assert_eq!(a, &b, "a resumed extraction must write the same bytes");
    }

    // A lost last shard is redone alone.
    std::fs::remove_file(&before[2].0).unwrap();
    let mut seen = Vec::new();
    let outcome = extract_latents(&vae, &job(&data, &out), &mut |done, total| {
        seen.push((done, total))
    })
    .unwrap();
    assert_eq!((outcome.written, outcome.skipped), (vec![2], vec![0, 1]));
    assert_eq!(seen.last(), Some(&(5, 5)));
    assert_eq!(shard_files(&out)[2].1, before[2].1);
    LatentCache::open(&out).unwrap();
}

#[test]
fn a_cache_of_other_settings_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("images"), dir.path().join("latents"));
    write_folder(&data);
    let vae = tiny_vae();
    extract_latents(
        &vae,
        &ExtractJob {
            max_new_shards: Some(1),
            ..job(&data, &out)
        },
        &mut |_, _| {},
    )
    .unwrap();
    let other = ExtractJob {
        image_size: 8,
        ..job(&data, &out)
    };
    let err = extract_latents(&vae, &other, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("different data or settings"), "{err}");
    let odd = ExtractJob {
        image_size: 15,
        ..job(&data, &dir.path().join("odd"))
    };
    let err = extract_latents(&vae, &odd, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("multiple"), "{err}");
}

#[test]
fn an_unreadable_image_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("images"), dir.path().join("latents"));
    write_folder(&data);
    std::fs::write(data.join("dogs/broken.png"), b"not a png").unwrap();
    let err = extract_latents(&tiny_vae(), &job(&data, &out), &mut |_, _| {}).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("broken.png"), "{text}");
    // The shards before the bad image are kept for the rerun.
    assert!(dit::data::latent_cache::shard_path(&out, 0).exists());
}
