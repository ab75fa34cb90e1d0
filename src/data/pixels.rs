use image::DynamicImage;

/// An 8-bit image as decoded: `height` rows of `width` pixels, each pixel
/// `channels` interleaved bytes (HWC). Resampling works at this precision,
/// as PIL does for uint8 images, so results match PIL level for level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct U8Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

impl U8Image {
    /// Wraps interleaved pixel bytes; panics if `data` has the wrong length,
    /// which is a programming error rather than bad input.
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<u8>) -> Self {
        assert_eq!(
            data.len(),
            width * height * channels,
            "{width}x{height}x{channels} image needs {} bytes",
            width * height * channels
        );
        U8Image {
            width,
            height,
            channels,
            data,
        }
    }

    /// Converts a decoded image to RGB (`channels` = 3) or grayscale (1) the
    /// way PIL's `convert("RGB")` / `convert("L")` do: alpha is dropped, not
    /// composited, and gray is PIL's fixed-point ITU-R 601 luma.
    pub fn from_dynamic(image: DynamicImage, channels: usize) -> Self {
        let (width, height) = (image.width() as usize, image.height() as usize);
        match channels {
            3 => U8Image::new(width, height, 3, image.into_rgb8().into_raw()),
            1 => match image {
                DynamicImage::ImageLuma8(gray) => U8Image::new(width, height, 1, gray.into_raw()),
                DynamicImage::ImageLumaA8(_) => {
                    U8Image::new(width, height, 1, image.into_luma8().into_raw())
                }
                other => U8Image::new(width, height, 3, other.into_rgb8().into_raw()).to_gray(),
            },
            _ => panic!("channels must be 1 or 3, got {channels}"),
        }
    }

    /// PIL's RGB → L conversion (`L = (19595 R + 38470 G + 7471 B + 2^15) >> 16`);
    /// the `image` crate's luma uses other weights, hence our own.
    pub fn to_gray(&self) -> U8Image {
        if self.channels == 1 {
            return self.clone();
        }
        assert_eq!(self.channels, 3, "to_gray expects RGB");
        let data = self
            .data
            .chunks_exact(3)
            .map(|p| {
                let l = p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000;
                (l >> 16) as u8
            })
            .collect();
        U8Image::new(self.width, self.height, 1, data)
    }

    /// The `width`×`height` window whose top-left corner is (`x`, `y`).
    pub fn crop(&self, x: usize, y: usize, width: usize, height: usize) -> U8Image {
        assert!(
            x + width <= self.width && y + height <= self.height,
            "crop {width}x{height}+{x}+{y} outside a {}x{} image",
            self.width,
            self.height
        );
        let row = self.width * self.channels;
        let mut data = Vec::with_capacity(width * height * self.channels);
        for yy in y..y + height {
            let start = yy * row + x * self.channels;
            data.extend_from_slice(&self.data[start..start + width * self.channels]);
        }
        U8Image::new(width, height, self.channels, data)
    }

    /// The image mirrored left-right.
    pub fn flip_horizontal(&self) -> U8Image {
        let c = self.channels;
        let mut data = Vec::with_capacity(self.data.len());
        for row in self.data.chunks_exact(self.width * c) {
            for px in row.chunks_exact(c).rev() {
                data.extend_from_slice(px);
            }
        }
        U8Image::new(self.width, self.height, c, data)
    }

    /// Channel-major (C×H×W) floats scaled to [−1, 1] by `x / 127.5 − 1`
    /// (DiT's ToTensor + Normalize(0.5, 0.5)), mirrored when `flip`.
    pub fn to_unit_chw(&self, flip: bool) -> Vec<f32> {
        let (w, h, c) = (self.width, self.height, self.channels);
        let mut out = vec![0f32; w * h * c];
        for y in 0..h {
            for x in 0..w {
                let src_x = if flip { w - 1 - x } else { x };
                let px = &self.data[(y * w + src_x) * c..][..c];
                for (ch, &v) in px.iter().enumerate() {
                    out[(ch * h + y) * w + x] = v as f32 / 127.5 - 1.0;
                }
            }
        }
        out
    }
}
