//! The Fashion-MNIST slice embedded in the binary.

use dit::data::{Dataset, FashionMnist, IdxFile, FASHION_MNIST_CLASSES};

#[test]
fn embedded_slice_is_balanced_and_scaled() {
    let ds = FashionMnist::embedded().unwrap();
    assert_eq!(ds.len(), 6000);
    assert_eq!(ds.num_classes(), 10);
    assert_eq!(ds.sample_shape(), (1, 32, 32));
    assert_eq!(ds.class_names()[0], "T-shirt/top");
    assert_eq!(ds.class_names()[9], "Ankle boot");
    assert_eq!(ds.class_names(), FASHION_MNIST_CLASSES.map(String::from));
    let mut per_class = [0usize; 10];
    let (mut min, mut max) = (f32::MAX, f32::MIN);
    for i in 0..ds.len() {
        let (x, y) = ds.get(i, false).unwrap();
        assert_eq!(x.len(), 32 * 32);
        per_class[y as usize] += 1;
        for &v in &x {
            assert!(v.is_finite(), "sample {i} holds {v}");
            min = min.min(v);
            max = max.max(v);
        }
        // The 2-pixel border is padding: background, pixel 0, i.e. −1.
        for r in 0..32 {
            for c in 0..32 {
                if !(2..30).contains(&r) || !(2..30).contains(&c) {
                    assert_eq!(x[r * 32 + c], -1.0, "image {i} border at ({r}, {c})");
                }
            }
        }
    }
    assert_eq!(per_class, [600; 10]);
    assert!(min >= -1.0 && max <= 1.0, "values in [{min}, {max}]");
    // Real images reach both ends of the range.
    assert_eq!((min, max), (-1.0, 1.0));
}

#[test]
fn padding_centres_the_original_pixels_and_flip_mirrors() {
    let ds = FashionMnist::embedded().unwrap();
    let images = IdxFile::parse(
        include_bytes!("../../assets/fashion-mnist/train-images-idx3-ubyte.gz"),
        "images",
    )
    .unwrap();
    for i in [0, 1234, 5999] {
        let (x, _) = ds.get(i, false).unwrap();
        let (flipped, _) = ds.get(i, true).unwrap();
        let raw = images.item(i);
        for r in 0..28 {
            for c in 0..28 {
                let v = raw[r * 28 + c] as f32 / 127.5 - 1.0;
                assert_eq!(x[(r + 2) * 32 + c + 2], v);
                assert_eq!(flipped[(r + 2) * 32 + (31 - (c + 2))], v);
            }
        }
    }
    assert!(ds.get(6000, false).is_err());
}

#[test]
fn from_idx_checks_shapes_and_labels() {
    let images = IdxFile::new(vec![2, 28, 28], vec![0; 2 * 784]).unwrap();
    let labels = IdxFile::new(vec![2], vec![3, 9]).unwrap();
    let ds = FashionMnist::from_idx(&images, &labels).unwrap();
    assert_eq!((ds.len(), ds.label(1)), (2, 9));
    let bad_label = IdxFile::new(vec![2], vec![3, 10]).unwrap();
    let err = FashionMnist::from_idx(&images, &bad_label).unwrap_err();
    assert!(err.to_string().contains("label 10"), "{err}");
    let short = IdxFile::new(vec![1], vec![3]).unwrap();
    assert!(FashionMnist::from_idx(&images, &short).is_err());
    let wrong_side = IdxFile::new(vec![2, 32, 32], vec![0; 2 * 1024]).unwrap();
    assert!(FashionMnist::from_idx(&wrong_side, &labels).is_err());
}
