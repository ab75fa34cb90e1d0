//! Model-space tensors in [−1, 1] → 8-bit images, grids and files.

use crate::{bail, Context, Result};
use candle_core::{DType, Tensor};
use image::{GrayImage, Rgb, RgbImage};
use std::path::Path;

/// `(N, C, H, W)` in [−1, 1] → N images as `H·W·C` bytes, mapped as the ADM
/// evaluator's reference batches: `clamp(127.5·x + 128, 0, 255)` truncated.
pub fn to_u8(samples: &Tensor) -> Result<Vec<Vec<u8>>> {
    let (n, c, h, w) = samples.dims4()?;
    if c != 1 && c != 3 {
        bail!("images need 1 or 3 channels, got {c}");
    }
    let hwc = samples
        .to_dtype(DType::F32)?
        .permute((0, 2, 3, 1))?
        .contiguous()?;
    let v = hwc.flatten_all()?.to_vec1::<f32>()?;
    let per = h * w * c;
    Ok((0..n)
        .map(|i| {
            v[i * per..(i + 1) * per]
                .iter()
                .map(|x| (127.5 * x + 128.0).clamp(0.0, 255.0) as u8)
                .collect()
        })
        .collect())
}

/// Lays images out `nrow` per row with a 2-pixel black border, as
/// torchvision's `save_image` does. Grayscale images are repeated to RGB.
pub fn grid(samples: &Tensor, nrow: usize) -> Result<RgbImage> {
    let (_, c, h, w) = samples.dims4()?;
    Ok(grid_u8(&to_u8(samples)?, (c, h, w), nrow))
}

/// [`grid`] of images already in bytes (`H·W·C` each, C = 1 or 3).
pub fn grid_u8(images: &[Vec<u8>], (c, h, w): (usize, usize, usize), nrow: usize) -> RgbImage {
    let n = images.len();
    let nrow = nrow.clamp(1, n.max(1));
    let rows = n.div_ceil(nrow);
    let pad = 2;
    let mut out = RgbImage::new(
        (nrow * (w + pad) + pad) as u32,
        (rows * (h + pad) + pad) as u32,
    );
    for (i, img) in images.iter().enumerate() {
        let (x0, y0) = (pad + (i % nrow) * (w + pad), pad + (i / nrow) * (h + pad));
        for y in 0..h {
            for x in 0..w {
                let p = &img[(y * w + x) * c..(y * w + x + 1) * c];
                let rgb = if c == 1 {
                    [p[0]; 3]
                } else {
                    [p[0], p[1], p[2]]
                };
                out.put_pixel((x0 + x) as u32, (y0 + y) as u32, Rgb(rgb));
            }
        }
    }
    out
}

/// One image of a `(1, C, H, W)` or `(C, H, W)` tensor as a PNG-ready buffer.
pub fn single(sample: &Tensor) -> Result<image::DynamicImage> {
    let s = if sample.rank() == 3 {
        sample.unsqueeze(0)?
    } else {
        sample.clone()
    };
    let (_, c, h, w) = s.dims4()?;
    let bytes = to_u8(&s)?.remove(0);
    Ok(if c == 1 {
        image::DynamicImage::ImageLuma8(
            GrayImage::from_raw(w as u32, h as u32, bytes).context("image size")?,
        )
    } else {
        image::DynamicImage::ImageRgb8(
            RgbImage::from_raw(w as u32, h as u32, bytes).context("image size")?,
        )
    })
}

/// An image as PNG file bytes: what [`save_png`] writes and `dit serve`
/// sends, so both give the same bytes for the same pixels.
pub fn png_bytes(img: &image::DynamicImage) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// Saves a PNG atomically (never a half-written file at `path`).
pub fn save_png(path: &Path, img: &image::DynamicImage) -> Result<()> {
    let bytes = png_bytes(img)?;
    crate::atomic_file::write_atomically(path, |tmp| {
        std::fs::write(tmp, &bytes).with_context(|| format!("writing {}", path.display()))
    })
}
