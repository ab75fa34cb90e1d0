//! Image folders: layout, formats, preprocessing, and every refusal.

use candle_core::Device;
use dit::data::{
    CenterCrop, DataError, Dataset, ImageFolder, Loader, LoaderConfig, LoaderState, U8Image,
};
use image::{ImageFormat, RgbImage};
use std::fs;
use std::path::Path;
use std::sync::Arc;

/// A deterministic 40×30 picture, different for each `seed`.
fn picture(seed: u32) -> RgbImage {
    RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([
            ((x * 6 + seed * 40) % 256) as u8,
            ((y * 8 + seed * 17) % 256) as u8,
            ((x * y + seed) % 256) as u8,
        ])
    })
}

fn save(path: &Path, seed: u32, format: ImageFormat) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    picture(seed).save_with_format(path, format).unwrap();
}

fn u8_of(img: RgbImage) -> U8Image {
    U8Image::from_dynamic(image::DynamicImage::ImageRgb8(img), 3)
}

/// root/{Dog,bird,cat}: mixed formats and extension cases, a nested folder,
/// a hidden folder and non-image files that must be ignored.
fn make_folder(root: &Path) {
    save(&root.join("cat/b.png"), 1, ImageFormat::Png);
    save(&root.join("cat/A.PNG"), 2, ImageFormat::Png);
    save(&root.join("cat/sub/c.bmp"), 3, ImageFormat::Bmp);
    save(&root.join("bird/x.WebP"), 4, ImageFormat::WebP);
    save(&root.join("bird/y.JpEg"), 5, ImageFormat::Jpeg);
    // Content decides the format, as in PIL: a PNG named .jpg still loads.
    save(&root.join("Dog/z.jpg"), 6, ImageFormat::Png);
    fs::write(root.join("cat/notes.txt"), "not an image").unwrap();
    fs::write(root.join("README"), "top-level files are not classes").unwrap();
    save(&root.join(".hidden/h.png"), 7, ImageFormat::Png);
}

#[test]
fn layout_follows_torchvision() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let ds = ImageFolder::open(dir.path(), 16, 3).unwrap();
    // Sorted by name, byte order: upper case first, hidden folders skipped.
    assert_eq!(ds.class_names(), ["Dog", "bird", "cat"]);
    assert_eq!(ds.num_classes(), 3);
    assert_eq!(ds.class_to_index()["cat"], 2);
    let files: Vec<(String, u32)> = ds
        .samples()
        .iter()
        .map(|(p, l)| {
            let rel = p.strip_prefix(dir.path()).unwrap();
            (rel.to_string_lossy().into_owned(), *l)
        })
        .collect();
    let expected = [
        ("Dog/z.jpg", 0),
        ("bird/x.WebP", 1),
        ("bird/y.JpEg", 1),
        ("cat/A.PNG", 2),
        ("cat/b.png", 2),
        ("cat/sub/c.bmp", 2),
    ];
    let expected: Vec<(String, u32)> = expected.iter().map(|(p, l)| (p.to_string(), *l)).collect();
    assert_eq!(files, expected);
    assert_eq!(ds.len(), 6);
    assert_eq!(ds.sample_shape(), (3, 16, 16));
}

#[test]
fn every_format_decodes_and_is_center_cropped() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let ds = ImageFolder::open(dir.path(), 16, 3).unwrap();
    let seeds = [6, 4, 5, 2, 1, 3];
    let crop = CenterCrop::new(16);
    for (i, &seed) in seeds.iter().enumerate() {
        let expected = crop.apply(&u8_of(picture(seed)));
        let got = ds.load_u8(i).unwrap();
        let path = ds.samples()[i].0.display().to_string();
        if path.ends_with("JpEg") {
            // Lossy: close, not equal.
            let mean = got
                .data
                .iter()
                .zip(&expected.data)
                .map(|(a, b)| a.abs_diff(*b) as f64)
                .sum::<f64>()
                / got.data.len() as f64;
            assert!(mean < 8.0, "{path}: mean |d| {mean}");
        } else {
            assert_eq!(got, expected, "{path}");
        }
        let (x, label) = ds.get(i, false).unwrap();
        assert_eq!(x, got.to_unit_chw(false));
        assert_eq!(label, ds.samples()[i].1);
        assert_eq!(ds.get(i, true).unwrap().0, got.to_unit_chw(true));
    }
}

#[test]
fn grayscale_folders_have_one_channel() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let ds = ImageFolder::open(dir.path(), 8, 1).unwrap();
    assert_eq!(ds.sample_shape(), (1, 8, 8));
    let expected = CenterCrop::new(8).apply(&u8_of(picture(1)).to_gray());
    let index = ds
        .samples()
        .iter()
        .position(|(p, _)| p.ends_with("cat/b.png"))
        .unwrap();
    assert_eq!(ds.load_u8(index).unwrap(), expected);
    let (x, _) = ds.get(index, false).unwrap();
    assert_eq!(x.len(), 64);
    assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
}

fn layout_error(root: &Path) -> String {
    match ImageFolder::open(root, 8, 3) {
        Err(e @ DataError::Layout { .. }) => e.to_string(),
        other => panic!(
            "expected a layout error for {}, got {other:?}",
            root.display()
        ),
    }
}

#[test]
fn unusable_folders_are_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    let empty = root.join("empty");
    fs::create_dir(&empty).unwrap();
    let msg = layout_error(&empty);
    assert!(
        msg.contains(&*empty.to_string_lossy()) && msg.contains("empty"),
        "{msg}"
    );

    let flat = root.join("flat");
    save(&flat.join("a.png"), 1, ImageFormat::Png);
    let msg = layout_error(&flat);
    assert!(
        msg.contains(&*flat.to_string_lossy()) && msg.contains("no class sub-folders"),
        "{msg}"
    );

    let hollow = root.join("hollow");
    save(&hollow.join("full/a.png"), 1, ImageFormat::Png);
    fs::create_dir_all(hollow.join("nothing")).unwrap();
    fs::write(hollow.join("nothing/readme.txt"), "x").unwrap();
    let msg = layout_error(&hollow);
    let class_dir = hollow.join("nothing");
    assert!(
        msg.contains(&*class_dir.to_string_lossy()) && msg.contains("no images"),
        "{msg}"
    );

    let missing = root.join("missing");
    let msg = layout_error(&missing);
    assert!(
        msg.contains(&*missing.to_string_lossy()) && msg.contains("not a folder"),
        "{msg}"
    );

    assert!(
        ImageFolder::open(root.join("flat"), 8, 2).is_err(),
        "channels 2"
    );
}

/// root/good/{0..6}.png plus a truncated PNG and a text file named .png.
fn folder_with_bad_images(root: &Path) -> (String, String) {
    for i in 0..6 {
        save(&root.join(format!("good/{i}.png")), i, ImageFormat::Png);
    }
    let mut png = Vec::new();
    picture(9)
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    let truncated = root.join("good/truncated.png");
    fs::write(&truncated, &png[..png.len() / 2]).unwrap();
    let text = root.join("good/x.png");
    fs::write(&text, "this is not a picture").unwrap();
    (truncated.display().to_string(), text.display().to_string())
}

#[test]
fn corrupt_images_fail_at_load_time_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (truncated, text) = folder_with_bad_images(dir.path());
    // Opening only checks names and existence, so it succeeds.
    let ds = ImageFolder::open(dir.path(), 8, 3).unwrap();
    assert_eq!(ds.len(), 8);
    for path in [&truncated, &text] {
        let index = ds
            .samples()
            .iter()
            .position(|(p, _)| p.display().to_string() == *path)
            .unwrap();
        match ds.get(index, false) {
            Err(e @ DataError::BadImage { .. }) => {
                assert!(e.to_string().contains(path.as_str()), "{e}")
            }
            other => panic!("{path}: expected a bad-image error, got {other:?}"),
        }
    }
}

#[test]
fn loader_skips_and_counts_corrupt_images() {
    let dir = tempfile::tempdir().unwrap();
    let (truncated, text) = folder_with_bad_images(dir.path());
    let ds: Arc<dyn Dataset> = Arc::new(ImageFolder::open(dir.path(), 8, 3).unwrap());
    let cfg = LoaderConfig {
        workers: 2,
        ..LoaderConfig::new(3, 11)
    };

    let mut strict = Loader::new(
        ds.clone(),
        cfg.clone(),
        LoaderState::default(),
        &Device::Cpu,
    )
    .unwrap();
    let mut failure = None;
    for _ in 0..4 {
        if let Err(e) = strict.next_batch() {
            failure = Some(format!("{e:#}"));
            break;
        }
    }
    let failure = failure.expect("two epochs of batches met no bad image");
    assert!(
        failure.contains(&truncated) || failure.contains(&text),
        "{failure}"
    );

    let skipping = LoaderConfig {
        skip_bad_images: true,
        ..cfg
    };
    let mut loader = Loader::new(ds, skipping, LoaderState::default(), &Device::Cpu).unwrap();
    for _ in 0..4 {
        // Six readable images: two full batches of three every epoch.
        let batch = loader.next_batch().unwrap();
        assert_eq!(batch.x.dims(), &[3, 3, 8, 8]);
        assert!(batch.indices.iter().all(|&i| i < 6));
    }
    let skipped = loader.skipped_images();
    assert_eq!(skipped.len(), 2);
    assert!(skipped.iter().any(|s| s.message.contains(&truncated)));
    assert!(skipped.iter().any(|s| s.message.contains(&text)));
}
