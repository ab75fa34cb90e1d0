//! Fashion-MNIST (Zalando, MIT licence): 28×28 grayscale clothing images in
//! ten classes. A balanced slice of the training set (600 per class) is
//! embedded in the binary so `dit train` works with no data on disk; see
//! `assets/fashion-mnist/README.md` for its origin.

use super::{DataError, Dataset, IdxFile, U8Image};
use std::path::Path;

/// Class names in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const EMBEDDED_IMAGES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/fashion-mnist/train-images-idx3-ubyte.gz"
));
const EMBEDDED_LABELS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/fashion-mnist/train-labels-idx1-ubyte.gz"
));

const SIDE: usize = 28;
/// Padded to 32 so the side divides by the patch sizes DiT uses (2, 4, 8).
pub const PADDED_SIDE: usize = 32;

/// Fashion-MNIST in pixel space: 1×32×32 samples (the 28×28 image centred
/// on background, which is pixel 0, i.e. −1), labels 0..9.
#[derive(Clone, Debug)]
pub struct FashionMnist {
    images: Vec<u8>,
    labels: Vec<u8>,
    class_names: Vec<String>,
}

impl FashionMnist {
    /// The slice embedded in the binary: 6,000 training images, 600 per class.
    pub fn embedded() -> Result<Self, DataError> {
        FashionMnist::from_idx(
            &IdxFile::parse(EMBEDDED_IMAGES, "embedded Fashion-MNIST images")?,
            &IdxFile::parse(EMBEDDED_LABELS, "embedded Fashion-MNIST labels")?,
        )
    }

    /// Reads image and label IDX files (gzipped or not), e.g. the full set.
    pub fn open(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Self, DataError> {
        FashionMnist::from_idx(&IdxFile::read(images)?, &IdxFile::read(labels)?)
    }

    /// Checks that the arrays are N×28×28 images and N labels below 10.
    pub fn from_idx(images: &IdxFile, labels: &IdxFile) -> Result<Self, DataError> {
        let problem = |p: String| DataError::Idx {
            source_name: "Fashion-MNIST".into(),
            problem: p,
        };
        if images.dims.len() != 3 || images.dims[1..] != [SIDE, SIDE] {
            return Err(problem(format!(
                "images have shape {:?}, expected N×28×28",
                images.dims
            )));
        }
        if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
            return Err(problem(format!(
                "labels have shape {:?} for {} images",
                labels.dims, images.dims[0]
            )));
        }
        if let Some(bad) = labels
            .data
            .iter()
            .find(|&&l| l as usize >= FASHION_MNIST_CLASSES.len())
        {
            return Err(problem(format!("label {bad} outside 0..9")));
        }
        Ok(FashionMnist {
            images: images.data.clone(),
            labels: labels.data.clone(),
            class_names: FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        })
    }

    /// Label of sample `index`.
    pub fn label(&self, index: usize) -> u32 {
        self.labels[index] as u32
    }

    /// Sample `index` padded to 32×32, as bytes.
    pub fn image_u8(&self, index: usize) -> U8Image {
        let pad = (PADDED_SIDE - SIDE) / 2;
        let src = &self.images[index * SIDE * SIDE..(index + 1) * SIDE * SIDE];
        let mut data = vec![0u8; PADDED_SIDE * PADDED_SIDE];
        for (y, row) in src.chunks_exact(SIDE).enumerate() {
            let start = (y + pad) * PADDED_SIDE + pad;
            data[start..start + SIDE].copy_from_slice(row);
        }
        U8Image::new(PADDED_SIDE, PADDED_SIDE, 1, data)
    }
}

impl Dataset for FashionMnist {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn num_classes(&self) -> usize {
        FASHION_MNIST_CLASSES.len()
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn sample_shape(&self) -> (usize, usize, usize) {
        (1, PADDED_SIDE, PADDED_SIDE)
    }

    fn get(&self, index: usize, flip: bool) -> Result<(Vec<f32>, u32), DataError> {
        if index >= self.len() {
            return Err(DataError::IndexOutOfRange {
                index,
                len: self.len(),
            });
        }
        Ok((self.image_u8(index).to_unit_chw(flip), self.label(index)))
    }
}
