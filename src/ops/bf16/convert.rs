//! Rounding f32 to bf16 (round to nearest, ties to even; NaN stays NaN),
//! the one rounding every bf16 kernel and every bf16 tensor uses.

use crate::ops::matmul::Operand;
use crate::ops::vmath::dispatch;
use half::bf16;

/// The bf16 bit pattern nearest to `x` (ties to even), quiet NaN for NaN.
#[inline(always)]
pub fn to_bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        ((b >> 16) as u16) | 0x40
    } else {
        rounded
    }
}

/// `x` rounded to the nearest bf16, as an f32.
#[inline(always)]
pub fn round_to_bf16(x: f32) -> f32 {
    f32::from_bits((to_bf16_bits(x) as u32) << 16)
}

dispatch! {
    /// `dst[i] ← bf16 bits of src[i]`.
    pub fn f32_to_bf16_bits(src: &[f32], dst: &mut [u16]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = to_bf16_bits(s);
        }
    }
}

/// An element type a bf16 product reads: rounded to bf16 while packing.
pub trait Bf16Input: Copy + Send + Sync + 'static {
    fn bf16_bits(self) -> u16;
    /// `dst[i] ← bf16 bits of src[i]` for a contiguous run.
    fn convert(src: &[Self], dst: &mut [u16]);
    /// The operand as f32, if it is (for the vectorised packing).
    fn as_f32(op: Operand<Self>) -> Option<Operand<f32>>;
}

impl Bf16Input for f32 {
    #[inline(always)]
    fn bf16_bits(self) -> u16 {
        to_bf16_bits(self)
    }
    fn convert(src: &[Self], dst: &mut [u16]) {
        f32_to_bf16_bits(src, dst)
    }
    fn as_f32(op: Operand<Self>) -> Option<Operand<f32>> {
        Some(op)
    }
}

impl Bf16Input for bf16 {
    #[inline(always)]
    fn bf16_bits(self) -> u16 {
        self.to_bits()
    }
    fn convert(src: &[Self], dst: &mut [u16]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_bits();
        }
    }
    fn as_f32(_: Operand<Self>) -> Option<Operand<f32>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_the_half_crate() {
        // half's from_f32 rounds to nearest even as well.
        let mut state = 0x1234_5678u32;
        for _ in 0..100_000 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let x = f32::from_bits(state);
            let want = bf16::from_f32(x);
            if x.is_nan() {
                assert!(f32::from_bits((to_bf16_bits(x) as u32) << 16).is_nan());
            } else {
                assert_eq!(to_bf16_bits(x), want.to_bits(), "{x:e}");
            }
        }
        // Ties go to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
        assert_eq!(round_to_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_to_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round_to_bf16(f32::INFINITY), f32::INFINITY);
        assert!(round_to_bf16(f32::NAN).is_nan());
    }

    #[test]
    fn slices_round_like_scalars() {
        let src: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.731).sin() * 1e3).collect();
        let mut bits = vec![0u16; src.len()];
        f32_to_bf16_bits(&src, &mut bits);
        for i in 0..src.len() {
            assert_eq!(bits[i], to_bf16_bits(src[i]));
        }
    }
}
