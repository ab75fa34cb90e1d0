//! Writing sampled images: a grid PNG, one PNG per image, an `.npz` batch.

use super::images::{grid_u8, save_png};
use super::job::SampledImages;
use super::sheet::{contact_sheet, SheetRow};
use super::ClassNames;
use crate::formats::npz::{self, Array};
use crate::{Context, Result};
use image::{DynamicImage, GrayImage, RgbImage};
use std::path::{Path, PathBuf};

impl SampledImages {
    /// (N, H, W, 3) uint8, grayscale repeated to 3 channels: the layout of
    /// the ADM evaluator's sample batches.
    pub fn to_rgb_array(&self) -> Result<Array> {
        let mut data = Vec::with_capacity(self.pixels.len() * self.height * self.width * 3);
        for image in &self.pixels {
            if self.channels == 1 {
                data.extend(image.iter().flat_map(|&v| [v; 3]));
            } else {
                data.extend_from_slice(image);
            }
        }
        Array::u8(vec![self.pixels.len(), self.height, self.width, 3], data)
    }

    /// The images as `arr_0` (what the ADM evaluator reads) and their class
    /// labels as `labels` (uint32, one per image), written atomically.
    pub fn save_npz(&self, path: &Path) -> Result<()> {
        let labels = Array::U32 {
            shape: vec![self.labels.len()],
            data: self.labels.clone(),
        };
        npz::write(
            path,
            &[(npz::IMAGES, &self.to_rgb_array()?), (npz::LABELS, &labels)],
        )
    }

    /// All images in one PNG, `nrow` per row.
    pub fn save_grid(&self, path: &Path, nrow: usize) -> Result<()> {
        let grid = grid_u8(&self.pixels, (self.channels, self.height, self.width), nrow);
        save_png(path, &DynamicImage::ImageRgb8(grid))
    }

    /// A contact sheet of all images, `nrow` per row, under `title`: each row
    /// labelled with its class (its name when `names` has one; "mixed" for a
    /// row of several classes), images enlarged `scale` times.
    pub fn save_sheet(
        &self,
        path: &Path,
        title: &str,
        names: Option<&ClassNames>,
        nrow: usize,
        scale: u32,
    ) -> Result<()> {
        let nrow = nrow.max(1);
        let rows: Vec<SheetRow> = self
            .pixels
            .chunks(nrow)
            .zip(self.labels.chunks(nrow))
            .map(|(images, labels)| {
                let label = match labels {
                    [first, rest @ ..] if rest.iter().all(|l| l == first) => names
                        .and_then(|n| n.name(*first))
                        .map_or_else(|| format!("class {first}"), str::to_string),
                    _ => "mixed".to_string(),
                };
                SheetRow {
                    label,
                    images: images.iter().map(Vec::as_slice).collect(),
                }
            })
            .collect();
        let sheet = contact_sheet(
            title,
            &rows,
            (self.channels, self.height, self.width),
            scale.max(1),
        );
        save_png(path, &DynamicImage::ImageRgb8(sheet))
    }

    /// Image `i` of this batch (grayscale stays one channel).
    pub fn image(&self, i: usize) -> Result<DynamicImage> {
        let (w, h) = (self.width as u32, self.height as u32);
        let bytes = self
            .pixels
            .get(i)
            .context("image index out of range")?
            .clone();
        Ok(if self.channels == 1 {
            DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, bytes).context("image size")?)
        } else {
            DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, bytes).context("image size")?)
        })
    }

    /// `dir/<global index, 6 digits>.png`, so shards never collide. Returns the paths.
    pub fn save_each(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut paths = Vec::with_capacity(self.pixels.len());
        for i in 0..self.pixels.len() {
            let path = dir.join(format!("{:06}.png", self.first_index + i as u64));
            save_png(&path, &self.image(i)?)?;
            paths.push(path);
        }
        Ok(paths)
    }
}

impl SampledImages {
    /// The images as bytes, to send to another process
    /// ([`SampledImages::from_bytes`] reads them back).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [
            self.first_index,
            self.channels as u64,
            self.height as u64,
            self.width as u64,
            self.pixels.len() as u64,
        ] {
            out.extend(v.to_le_bytes());
        }
        for label in &self.labels {
            out.extend(label.to_le_bytes());
        }
        for image in &self.pixels {
            out.extend(image);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let word = |i: usize| -> Result<u64> {
            let at = bytes
                .get(8 * i..8 * i + 8)
                .context("truncated image batch")?;
            Ok(u64::from_le_bytes(at.try_into().expect("8 bytes")))
        };
        let (first_index, channels, height, width, count) = (
            word(0)?,
            word(1)? as usize,
            word(2)? as usize,
            word(3)? as usize,
            word(4)? as usize,
        );
        let image = channels * height * width;
        let (labels, pixels) = bytes[40..]
            .split_at_checked(4 * count)
            .context("truncated image batch")?;
        if pixels.len() != count * image {
            crate::bail!(
                "an image batch of {count} images of {image} bytes holds {} bytes",
                pixels.len()
            );
        }
        Ok(Self {
            first_index,
            labels: labels
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
            channels,
            height,
            width,
            pixels: pixels.chunks(image.max(1)).map(<[u8]>::to_vec).collect(),
        })
    }

    /// Consecutive shards of one job joined, in order: image k of the
    /// result is the job's image `first_index + k`.
    pub fn join(parts: Vec<SampledImages>) -> Result<Self> {
        let mut parts = parts.into_iter().filter(|p| !p.pixels.is_empty());
        let Some(mut joined) = parts.next() else {
            crate::bail!("no images to join");
        };
        for part in parts {
            let next = joined.first_index + joined.pixels.len() as u64;
            if part.first_index != next
                || (part.channels, part.height, part.width)
                    != (joined.channels, joined.height, joined.width)
            {
                crate::bail!(
                    "shards do not follow each other: images from {} after {next}",
                    part.first_index
                );
            }
            joined.labels.extend(part.labels);
            joined.pixels.extend(part.pixels);
        }
        Ok(joined)
    }
}
