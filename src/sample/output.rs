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
