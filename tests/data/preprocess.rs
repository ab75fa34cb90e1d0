//! ADM/DiT center-crop preprocessing against Pillow 13 (fixtures from
//! scripts/data_fixtures.py), plus the shape and value conventions after it.

use dit::data::{resize, CenterCrop, Filter, U8Image};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

fn load_png(name: &str, channels: usize) -> U8Image {
    let img = image::open(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    U8Image::from_dynamic(img, channels)
}

/// Same formula as `synthetic` in scripts/data_fixtures.py.
fn synthetic(width: usize, height: usize) -> U8Image {
    let mut data = Vec::with_capacity(width * height * 3);
    for y in 0..height as i64 {
        for x in 0..width as i64 {
            for c in 0..3i64 {
                data.push((((x * 7 + y * 13 + c * 50) ^ ((x * y * 3) >> 4)) & 255) as u8);
            }
        }
    }
    U8Image::new(width, height, 3, data)
}

fn input(source: &str, channels: usize) -> U8Image {
    let img = match source.strip_prefix("synthetic:") {
        Some(size) => {
            let (w, h) = size.split_once('x').unwrap();
            synthetic(w.parse().unwrap(), h.parse().unwrap())
        }
        None => load_png(source, 3),
    };
    if channels == 1 {
        img.to_gray()
    } else {
        img
    }
}

/// (max |Δ|, mean |Δ|) in uint8 levels.
fn abs_diff(a: &U8Image, b: &U8Image) -> (u8, f64) {
    assert_eq!(
        (a.width, a.height, a.channels),
        (b.width, b.height, b.channels)
    );
    let diffs: Vec<u8> = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| x.abs_diff(*y))
        .collect();
    let max = diffs.iter().copied().max().unwrap_or(0);
    let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
    (max, mean)
}

#[test]
fn center_crop_matches_pillow() {
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture("center_crop_cases.json")).expect("fixture manifest"),
    )
    .unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 10, "fixture manifest lost its cases");
    let mut worst = (0u8, 0f64);
    for case in cases {
        let source = case["input"].as_str().unwrap();
        let channels = match case["mode"].as_str().unwrap() {
            "RGB" => 3,
            "L" => 1,
            other => panic!("mode {other}"),
        };
        let target = case["target"].as_u64().unwrap() as usize;
        let expected = load_png(case["expected"].as_str().unwrap(), channels);
        let got = CenterCrop::new(target).apply(&input(source, channels));
        assert_eq!((got.width, got.height), (target, target));
        let (max, mean) = abs_diff(&got, &expected);
        println!("{source} {channels}ch -> {target}: max |d| {max}, mean |d| {mean:.5}");
        // The resampling restates Pillow's integer arithmetic and pass
        // order, so outputs must be identical, not merely close.
        assert_eq!(max, 0, "{source} at {target}: max |d| {max} (mean {mean})");
        worst = (worst.0.max(max), worst.1.max(mean));
    }
    println!(
        "worst over all cases: max |d| {}, mean |d| {:.5}",
        worst.0, worst.1
    );
}

#[test]
fn scaled_size_rounds_half_to_even_like_python() {
    // 6 × (3/4) = 4.5 rounds to 4 in Python; 10 × 0.75 = 7.5 rounds to 8.
    assert_eq!(CenterCrop::new(3).scaled_size(6, 4), (4, 3));
    assert_eq!(CenterCrop::new(3).scaled_size(10, 4), (8, 3));
    assert_eq!(CenterCrop::new(256).scaled_size(500, 375), (341, 256));
}

#[test]
fn output_shapes_for_any_aspect() {
    for (w, h) in [(517, 389), (389, 517), (33, 90), (32, 32), (20, 7)] {
        for size in [8, 32] {
            for channels in [1, 3] {
                let img = input(&format!("synthetic:{w}x{h}"), channels);
                let out = CenterCrop::new(size).apply(&img);
                assert_eq!(
                    (out.width, out.height, out.channels, out.data.len()),
                    (size, size, channels, size * size * channels),
                    "{w}x{h} -> {size}"
                );
            }
        }
    }
}

#[test]
fn resize_to_same_size_is_identity_and_box_halving_averages() {
    let img = synthetic(40, 30);
    assert_eq!(resize(&img, 40, 30, Filter::Bicubic), img);
    // A flat image stays flat under any filter (weights sum to one).
    let flat = U8Image::new(50, 20, 1, vec![77; 1000]);
    for filter in [Filter::Box, Filter::Bicubic] {
        for (w, h) in [(25, 10), (13, 7), (111, 33)] {
            let out = resize(&flat, w, h, filter);
            assert!(out.data.iter().all(|&v| v == 77), "{filter:?} {w}x{h}");
        }
    }
    // Box halving of a 2×2 checker of 0 and 255 averages each cell: 127.5 rounds up.
    let checker: Vec<u8> = (0..16)
        .map(|i| if (i % 4 + i / 4) % 2 == 0 { 0 } else { 255 })
        .collect();
    let halved = resize(&U8Image::new(4, 4, 1, checker), 2, 2, Filter::Box);
    assert_eq!(halved.data, vec![128; 4]);
}

#[test]
fn flip_and_unit_scaling() {
    let img = synthetic(5, 3);
    let (w, h) = (5, 3);
    let plain = img.to_unit_chw(false);
    let flipped = img.to_unit_chw(true);
    assert_eq!(plain.len(), 3 * w * h);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let v = img.data[(y * w + x) * 3 + c];
                let at = |xx: usize| (c * h + y) * w + xx;
                assert_eq!(plain[at(x)], v as f32 / 127.5 - 1.0);
                assert_eq!(flipped[at(w - 1 - x)], plain[at(x)]);
            }
        }
    }
    assert_eq!(img.flip_horizontal().to_unit_chw(false), flipped);
    assert_eq!(img.flip_horizontal().flip_horizontal(), img);
    // The extremes map onto the ends of [−1, 1].
    let ends = U8Image::new(2, 1, 1, vec![0, 255]).to_unit_chw(false);
    assert_eq!(ends, vec![-1.0, 1.0]);
}

#[test]
fn grayscale_uses_pillow_luma_weights() {
    let rgb = U8Image::new(4, 1, 3, vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 200, 30]);
    // PIL: L = (19595 R + 38470 G + 7471 B + 32768) >> 16.
    let expected: Vec<u8> = rgb
        .data
        .chunks(3)
        .map(|p| {
            ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 32768) >> 16) as u8
        })
        .collect();
    assert_eq!(expected, vec![76, 150, 29, 124]);
    assert_eq!(rgb.to_gray().data, expected);
    // Decoded RGB images become 1 channel; gray ones pass through unchanged.
    let gray =
        image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(2, 1, vec![3, 250]).unwrap());
    assert_eq!(U8Image::from_dynamic(gray.clone(), 1).data, vec![3, 250]);
    assert_eq!(
        U8Image::from_dynamic(gray, 3).data,
        vec![3, 3, 3, 250, 250, 250]
    );
}
