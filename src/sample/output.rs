//! Writing sampled images: a grid PNG, one PNG per image, an `.npz` batch.

use super::images::{grid_u8, save_png};
use super::job::SampledImages;
use super::npz::{write_npz, U8Array};
use anyhow::{Context, Result};
use image::{DynamicImage, GrayImage, RgbImage};
use std::path::{Path, PathBuf};

impl SampledImages {
    /// (N, H, W, 3) uint8, grayscale repeated to 3 channels: the layout of
    /// the ADM evaluator's sample batches.
    pub fn to_rgb_array(&self) -> Result<U8Array> {
        let mut data = Vec::with_capacity(self.pixels.len() * self.height * self.width * 3);
        for image in &self.pixels {
            if self.channels == 1 {
                data.extend(image.iter().flat_map(|&v| [v; 3]));
            } else {
                data.extend_from_slice(image);
            }
        }
        U8Array::new(vec![self.pixels.len(), self.height, self.width, 3], data)
    }

    pub fn save_npz(&self, path: &Path) -> Result<()> {
        write_npz(path, &self.to_rgb_array()?)
    }

    /// All images in one PNG, `nrow` per row.
    pub fn save_grid(&self, path: &Path, nrow: usize) -> Result<()> {
        let grid = grid_u8(&self.pixels, (self.channels, self.height, self.width), nrow);
        save_png(path, &DynamicImage::ImageRgb8(grid))
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
