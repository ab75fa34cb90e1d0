//! The element types the fused CPU kernels are written for (f32 for speed,
//! f64 for finite-difference gradient checks).

use candle_core::cpu_backend::CpuStorage;
use candle_core::{Layout, Result, WithDType};

pub trait Float: WithDType + num_traits::Float + Send + Sync + std::iter::Sum {
    fn slice(s: &CpuStorage) -> Result<&[Self]>;
    fn slice_mut(s: &mut CpuStorage) -> Result<&mut [Self]>;
}

macro_rules! impl_float {
    ($t:ty, $variant:ident) => {
        impl Float for $t {
            fn slice(s: &CpuStorage) -> Result<&[Self]> {
                s.as_slice::<$t>()
            }
            fn slice_mut(s: &mut CpuStorage) -> Result<&mut [Self]> {
                match s {
                    CpuStorage::$variant(v) => Ok(v.as_mut_slice()),
                    _ => candle_core::bail!("expected {} storage", stringify!($t)),
                }
            }
        }
    };
}
impl_float!(f32, F32);
impl_float!(f64, F64);

/// The contiguous range of a layout, or an error naming the op.
pub fn contiguous(layout: &Layout, op: &str) -> Result<(usize, usize)> {
    layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input must be contiguous")))
}
