//! Gathering per-timestep table entries for a batch and shaping them to
//! broadcast against `(N, ...)` tensors.

use candle_core::{DType, Result, Tensor};

/// Reads a `(N,)` timestep tensor of any dtype as table indices, checking that
/// each is a whole number below `len`.
pub fn timestep_indices(t: &Tensor, len: usize) -> Result<Vec<usize>> {
    if t.rank() != 1 {
        candle_core::bail!("timesteps must have shape (N,), got {:?}", t.dims());
    }
    t.to_dtype(DType::F64)?
        .to_vec1::<f64>()?
        .into_iter()
        .map(|v| {
            if v < 0.0 || v.fract() != 0.0 || v as usize >= len {
                candle_core::bail!("timestep {v} is not an index in 0..{len}")
            }
            Ok(v as usize)
        })
        .collect()
}

/// `table[t_i]` for each sample, as an `(N, 1, …, 1)` tensor with the rank,
/// dtype and device of `like`. The value is rounded once from f64 to the
/// target dtype, so f32 runs see the same coefficients the reference does.
pub fn gather(table: &[f64], indices: &[usize], like: &Tensor) -> Result<Tensor> {
    let values: Vec<f64> = indices.iter().map(|&i| table[i]).collect();
    let mut shape = vec![1usize; like.rank().max(1)];
    shape[0] = indices.len();
    Tensor::from_vec(values, shape, like.device())?.to_dtype(like.dtype())
}
