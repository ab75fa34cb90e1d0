//! Image sets to evaluate: a folder of PNG/JPEG files (what `dit sample`
//! writes) or a uint8 array in an `.npz` (ADM sample and reference batches,
//! `arr_0` shaped `(N, H, W, 3)`).

use crate::{bail, Context, Result};
use std::path::{Path, PathBuf};

use crate::formats::npz;

/// An 8-bit RGB image, interleaved `[height, width, 3]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// Wraps interleaved RGB pixels, checking the buffer size.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 || pixels.len() != width * height * 3 {
            bail!(
                "an RGB image of {width}x{height} needs {} bytes, got {}",
                width * height * 3,
                pixels.len()
            );
        }
        Ok(Self {
            width,
            height,
            pixels,
        })
    }

    /// Decodes a PNG or JPEG file; grey and RGBA images become RGB (alpha dropped).
    pub fn open(path: &Path) -> Result<Self> {
        let img = image::open(path)
            .with_context(|| format!("cannot decode image {}", path.display()))?
            .to_rgb8();
        let (w, h) = img.dimensions();
        Self::new(w as usize, h as usize, img.into_raw())
    }
}

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Where an image set's pixels come from.
#[derive(Debug, Clone)]
pub enum ImageSet {
    /// Image files found under a folder (recursively), sorted by path.
    Folder { root: PathBuf, files: Vec<PathBuf> },
    /// A uint8 array `(N, H, W, C)` with C = 3 (or 1, replicated to RGB) in an `.npz`.
    Npz {
        path: PathBuf,
        key: String,
        count: usize,
        height: usize,
        width: usize,
        channels: usize,
    },
}

impl ImageSet {
    /// Opens a folder of images or an `.npz` holding an image array.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            let mut files = Vec::new();
            collect_images(path, &mut files)?;
            files.sort();
            if files.is_empty() {
                bail!(
                    "{} contains no images (looked for {} files)",
                    path.display(),
                    IMAGE_EXTENSIONS.join("/")
                );
            }
            return Ok(ImageSet::Folder {
                root: path.to_path_buf(),
                files,
            });
        }
        if !path.exists() {
            bail!("{} does not exist", path.display());
        }
        match find_image_array(path)? {
            Some(set) => Ok(set),
            None => {
                let arrays = npz::list(path)?;
                let found: Vec<String> = arrays
                    .iter()
                    .map(|(n, h)| format!("{n} {}", h.describe()))
                    .collect();
                bail!(
                    "{} holds no image array: expected uint8 images shaped (N, H, W, 3) \
                     (e.g. arr_0); found: {}",
                    path.display(),
                    if found.is_empty() {
                        "nothing".to_string()
                    } else {
                        found.join(", ")
                    }
                )
            }
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        match self {
            ImageSet::Folder { files, .. } => files.len(),
            ImageSet::Npz { count, .. } => *count,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with consecutive batches of at most `batch_size` images, in order.
    pub fn for_each_batch(
        &self,
        batch_size: usize,
        f: impl FnMut(Vec<RgbImage>) -> Result<()>,
    ) -> Result<()> {
        self.for_each_batch_in(0..self.len(), batch_size, f)
    }

    /// [`ImageSet::for_each_batch`] over the images `range` only (one
    /// process's share of a set).
    pub fn for_each_batch_in(
        &self,
        range: std::ops::Range<usize>,
        batch_size: usize,
        mut f: impl FnMut(Vec<RgbImage>) -> Result<()>,
    ) -> Result<()> {
        let batch_size = batch_size.max(1);
        if range.end > self.len() || range.start > range.end {
            crate::bail!("images {range:?} of a set of {}", self.len());
        }
        match self {
            ImageSet::Folder { files, .. } => {
                for chunk in files[range].chunks(batch_size) {
                    let images = chunk
                        .iter()
                        .map(|p| RgbImage::open(p))
                        .collect::<Result<Vec<_>>>()?;
                    f(images)?;
                }
                Ok(())
            }
            ImageSet::Npz {
                path,
                key,
                height,
                width,
                channels,
                ..
            } => {
                let (h, w, c) = (*height, *width, *channels);
                // Rows stream in order: those outside the range are read and
                // passed over; the range's images are regrouped into batches.
                let mut row = 0;
                let mut pending: Vec<RgbImage> = Vec::new();
                npz::for_each_row_chunk(path, key, batch_size, |_, bytes| {
                    let rows = bytes.len() / (h * w * c);
                    let first = row;
                    row += rows;
                    let skip = range.start.saturating_sub(first).min(rows);
                    let take = range.end.saturating_sub(first + skip).min(rows - skip);
                    let images = bytes[skip * h * w * c..(skip + take) * h * w * c]
                        .chunks_exact(h * w * c)
                        .map(|px| {
                            let rgb = if c == 3 {
                                px.to_vec()
                            } else {
                                px.iter().flat_map(|&v| [v, v, v]).collect()
                            };
                            RgbImage::new(w, h, rgb)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    pending.extend(images);
                    while pending.len() >= batch_size {
                        let rest = pending.split_off(batch_size);
                        f(std::mem::replace(&mut pending, rest))?;
                    }
                    Ok(())
                })?;
                if !pending.is_empty() {
                    f(pending)?;
                }
                Ok(())
            }
        }
    }
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect_images(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Finds the image array of an `.npz`: `arr_0` if present, else the first
/// uint8 array. Errors when that array is not shaped like images; `Ok(None)`
/// when there is no uint8 array at all (e.g. a statistics file).
pub fn find_image_array(path: &Path) -> Result<Option<ImageSet>> {
    let arrays = npz::list(path)?;
    let chosen = arrays.iter().find(|(n, _)| n == "arr_0").or_else(|| {
        arrays
            .iter()
            .find(|(_, h)| h.element == Some(npz::Element::U8))
    });
    let Some((key, header)) = chosen else {
        return Ok(None);
    };
    let shape = &header.shape;
    let (count, height, width, channels) = match shape.as_slice() {
        [n, h, w, c] if *c == 3 || *c == 1 => (*n, *h, *w, *c),
        _ => (0, 0, 0, 0),
    };
    if header.element != Some(npz::Element::U8)
        || header.fortran_order
        || channels == 0
        || height == 0
        || width == 0
    {
        bail!(
            "array '{key}' of {} is {}; expected uint8 images shaped (N, H, W, 3)",
            path.display(),
            header.describe()
        );
    }
    Ok(Some(ImageSet::Npz {
        path: path.to_path_buf(),
        key: key.clone(),
        count,
        height,
        width,
        channels,
    }))
}
