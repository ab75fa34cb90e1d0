//! Per-timestep tables as f64 tensors on the device the samples live on,
//! gathered for a batch of timesteps with `index_select` — no host round trip
//! per step — and shaped to broadcast against `(N, ...)` tensors.

use crate::{bail, Result};
use candle_core::{DType, Device, Tensor};

/// One per-timestep quantity, `(T,)` f64 on a device.
#[derive(Clone, Debug)]
pub struct Table(Tensor);

impl Table {
    pub fn new(values: &[f64], device: &Device) -> Result<Self> {
        Ok(Self(Tensor::new(values, device)?))
    }

    /// `table[t_i]` for each sample, as an `(N, 1, …, 1)` tensor with the
    /// rank, dtype and device of `like`. The value is rounded once from f64
    /// to the target dtype, so f32 runs see the coefficients the reference does.
    pub fn gather(&self, t: &Tensor, like: &Tensor) -> Result<Tensor> {
        let mut shape = vec![1usize; like.rank().max(1)];
        shape[0] = t.dim(0)?;
        Ok(self
            .0
            .to_device(like.device())?
            .index_select(t, 0)?
            .to_dtype(like.dtype())?
            .reshape(shape)?)
    }
}

/// A `(N,)` timestep tensor of any numeric dtype as `index_select` indices
/// (u32) into a table of `len` entries. On the CPU the values are checked to
/// be whole numbers below `len`; on a GPU that check would cost a device
/// sync per step, so there the caller's timesteps (drawn or stepped in
/// range by the trainer and samplers) are trusted.
pub fn timestep_indices(t: &Tensor, len: usize) -> Result<Tensor> {
    if t.rank() != 1 {
        bail!("timesteps must have shape (N,), got {:?}", t.dims());
    }
    if t.device().is_cpu() {
        for v in t.to_dtype(DType::F64)?.to_vec1::<f64>()? {
            if !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < len) {
                bail!("timestep {v} is not an index in 0..{len}");
            }
        }
    }
    Ok(match t.dtype() {
        DType::U32 => t.clone(),
        _ => t.to_dtype(DType::U32)?,
    })
}
