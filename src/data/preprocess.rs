use super::resample::{resize, Filter};
use super::U8Image;
use std::borrow::Cow;

/// ADM's `center_crop_arr`, the preprocessing DiT trains with: halve with a
/// box filter while the short side is at least twice the target (cheap and
/// alias-free), resize with bicubic so the short side equals the target,
/// then cut the central `size`×`size` square.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CenterCrop {
    /// Side of the square output, in pixels.
    pub size: usize,
}

impl CenterCrop {
    pub fn new(size: usize) -> Self {
        assert!(size > 0, "crop size must be positive");
        CenterCrop { size }
    }

    /// The output size of the bicubic step for an input of `width`×`height`
    /// (after halving): the short side becomes `size`, the other scales with
    /// it, rounded half to even as Python's `round` does.
    pub fn scaled_size(&self, width: usize, height: usize) -> (usize, usize) {
        let scale = self.size as f64 / width.min(height) as f64;
        let w = (width as f64 * scale).round_ties_even() as usize;
        let h = (height as f64 * scale).round_ties_even() as usize;
        (w, h)
    }

    /// Applies the crop; the result is `size`×`size` with the input's channels.
    pub fn apply(&self, img: &U8Image) -> U8Image {
        let mut current = Cow::Borrowed(img);
        while current.width.min(current.height) >= 2 * self.size {
            let half = resize(&current, current.width / 2, current.height / 2, Filter::Box);
            current = Cow::Owned(half);
        }
        let (w, h) = self.scaled_size(current.width, current.height);
        let scaled = resize(&current, w, h, Filter::Bicubic);
        scaled.crop(
            (scaled.width - self.size) / 2,
            (scaled.height - self.size) / 2,
            self.size,
            self.size,
        )
    }
}
