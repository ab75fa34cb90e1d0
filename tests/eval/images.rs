//! Image sets and preprocessing: folders and `.npz` batches, the two bilinear
//! resizes against PyTorch, and errors for malformed inputs.

use crate::support::eval as eval_support;

use dit::eval::images::{ImageSet, RgbImage};
use dit::eval::preprocess::{resize_bilinear, Preprocess, ResizeMode};
use dit::formats::npz;
use eval_support::*;

#[test]
fn resizes_match_pytorch() {
    let src = npz::read(&fixture("resize.npz"), "src").unwrap();
    let npz::Array::U8 { data, shape } = src else {
        panic!("src is not uint8")
    };
    let (h, w) = (shape[0], shape[1]);
    for (mode, tag) in [
        (ResizeMode::TfLegacy, "tf"),
        (ResizeMode::HalfPixel, "half"),
    ] {
        for dir in ["up", "down"] {
            let key = format!("{tag}_{dir}");
            let expected = npz::read(&fixture("resize.npz"), &key).unwrap();
            let (oh, ow) = (expected.shape()[1], expected.shape()[2]);
            let ours = resize_bilinear(&data, h, w, 3, oh, ow, mode);
            let err = max_abs_diff(&ours, &expected.to_f64());
            println!("{key}: {h}x{w} -> {oh}x{ow}, max |Δ| {err:.2e} (of 255)");
            assert!(err < 1e-3, "{key}: max |Δ| {err}");
        }
    }
}

#[test]
fn inputs_of_network_size_are_only_rescaled() {
    let pixels: Vec<u8> = (0..299 * 299 * 3).map(|i| (i * 7 % 256) as u8).collect();
    let image = RgbImage::new(299, 299, pixels.clone()).unwrap();
    let input = Preprocess::Adm.to_input(&image);
    // Planar output: channel 1 of pixel (2, 5).
    let (y, x, c) = (2, 5, 1);
    let v = pixels[(y * 299 + x) * 3 + c] as f32;
    assert_eq!(input[c * 299 * 299 + y * 299 + x], v / 128.0 - 1.0);
    let input = Preprocess::PytorchFid.to_input(&image);
    assert!((input[c * 299 * 299 + y * 299 + x] - (v / 127.5 - 1.0)).abs() < 1e-6);
    assert_eq!(
        "pytorch-fid".parse::<Preprocess>().unwrap(),
        Preprocess::PytorchFid
    );
    assert!("bicubic".parse::<Preprocess>().is_err());
}

#[test]
fn folder_lists_images_sorted_and_decodes_grey_to_rgb() {
    let set = ImageSet::open(&fixture("images")).unwrap();
    assert_eq!(set.len(), 8);
    let mut seen = Vec::new();
    set.for_each_batch(3, |batch| {
        seen.push(batch.len());
        for img in &batch {
            assert_eq!(img.pixels.len(), img.width * img.height * 3);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, [3, 3, 2]);
    let grey = RgbImage::open(&fixture("images/grey_48x48.png")).unwrap();
    assert!(grey.pixels.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    let coffee = RgbImage::open(&fixture("images/coffee_96x64.png")).unwrap();
    assert_eq!((coffee.width, coffee.height), (96, 64));
}

#[test]
fn npz_batches_stream_in_order() {
    let path = fixture("image_batch.npz");
    let set = ImageSet::open(&path).unwrap();
    assert_eq!(set.len(), 5);
    let npz::Array::U8 { data, .. } = npz::read(&path, "arr_0").unwrap() else {
        panic!()
    };
    let mut streamed = Vec::new();
    let mut sizes = Vec::new();
    set.for_each_batch(2, |batch| {
        sizes.push(batch.len());
        for img in batch {
            assert_eq!((img.width, img.height), (24, 20));
            streamed.extend(img.pixels);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(streamed, data);
}

#[test]
fn grey_npz_batches_are_replicated_to_rgb() {
    let dir = scratch_dir("grey-npz");
    let path = dir.join("grey.npz");
    let arr = npz::Array::U8 {
        shape: vec![2, 3, 4, 1],
        data: (0..24).collect(),
    };
    npz::write(&path, &[("arr_0", &arr)]).unwrap();
    let set = ImageSet::open(&path).unwrap();
    set.for_each_batch(8, |batch| {
        assert_eq!(batch.len(), 2);
        assert_eq!(&batch[1].pixels[..6], &[12, 12, 12, 13, 13, 13]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn malformed_inputs_are_reported_with_the_path_and_expectation() {
    let dir = scratch_dir("bad-images");
    let two_channels = dir.join("two_channels.npz");
    let arr = npz::Array::U8 {
        shape: vec![2, 4, 4, 2],
        data: vec![0; 64],
    };
    npz::write(&two_channels, &[("arr_0", &arr)]).unwrap();
    let err = format!("{:#}", ImageSet::open(&two_channels).unwrap_err());
    assert!(
        err.contains("two_channels.npz")
            && err.contains("(N, H, W, 3)")
            && err.contains("(2, 4, 4, 2)"),
        "{err}"
    );

    let floats = dir.join("floats.npz");
    let arr = npz::Array::F32 {
        shape: vec![2, 4, 4, 3],
        data: vec![0.0; 96],
    };
    npz::write(&floats, &[("arr_0", &arr)]).unwrap();
    let err = format!("{:#}", ImageSet::open(&floats).unwrap_err());
    assert!(
        err.contains("floats.npz") && err.contains("<f4") && err.contains("uint8"),
        "{err}"
    );

    let stats_only = fixture("stats.npz");
    let err = format!("{:#}", ImageSet::open(&stats_only).unwrap_err());
    assert!(
        err.contains("stats.npz") && err.contains("no image array") && err.contains("mu"),
        "{err}"
    );

    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = format!("{:#}", ImageSet::open(&empty).unwrap_err());
    assert!(err.contains("empty") && err.contains("no images"), "{err}");

    let missing = dir.join("missing");
    let err = format!("{:#}", ImageSet::open(&missing).unwrap_err());
    assert!(
        err.contains("missing") && err.contains("does not exist"),
        "{err}"
    );

    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"not a png").unwrap();
    let err = format!("{:#}", RgbImage::open(&broken).unwrap_err());
    assert!(err.contains("broken.png"), "{err}");
    assert!(RgbImage::new(2, 2, vec![0; 11]).is_err());
}
