//! All-reduce of many tensors (a model's gradients) in a few large messages.
//!
//! One collective per parameter tensor pays the launch latency hundreds of
//! times a step (DiT-XL/2 has ~250 tensors, many of a few KB). Concatenating
//! them into buckets of a few MB pays it a handful of times and sends the same
//! data; each element is still the sum of the same values over ranks.

use super::Communicator;
use crate::{bail, Result};
use candle_core::{DType, Tensor};
use std::ops::Range;

/// PyTorch DDP's default bucket size (`bucket_cap_mb=25`).
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// What an all-reduce leaves in each element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// The sum over ranks.
    Sum,
    /// The sum over ranks divided by the world size (averaged gradients).
    Mean,
}

/// Reduces a list of f32 tensors across ranks through buckets of at most
/// `bucket_bytes` (a tensor larger than that is a bucket of its own).
#[derive(Clone, Copy, Debug)]
pub struct BucketedAllReduce {
    bucket_bytes: usize,
}

impl Default for BucketedAllReduce {
    fn default() -> Self {
        BucketedAllReduce {
            bucket_bytes: DEFAULT_BUCKET_BYTES,
        }
    }
}

impl BucketedAllReduce {
    pub fn new(bucket_bytes: usize) -> Result<Self> {
        if bucket_bytes < std::mem::size_of::<f32>() {
            bail!("bucket size must hold at least one f32 (4 bytes), got {bucket_bytes}");
        }
        Ok(BucketedAllReduce { bucket_bytes })
    }

    pub fn bucket_bytes(&self) -> usize {
        self.bucket_bytes
    }

    /// The buckets as ranges of indices into `tensors`, in order: a bucket
    /// closes before the tensor that would take it past `bucket_bytes`.
    pub fn buckets(&self, tensors: &[Tensor]) -> Vec<Range<usize>> {
        let mut buckets = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, t) in tensors.iter().enumerate() {
            let size = t.elem_count() * std::mem::size_of::<f32>();
            if i > start && bytes + size > self.bucket_bytes {
                buckets.push(start..i);
                (start, bytes) = (i, 0);
            }
            bytes += size;
        }
        if start < tensors.len() {
            buckets.push(start..tensors.len());
        }
        buckets
    }

    /// Replaces every tensor by its [`Reduction`] over ranks, keeping shapes
    /// and device. All ranks must pass the same shapes in the same order.
    pub fn run<C>(&self, comm: &C, tensors: &mut [Tensor], reduction: Reduction) -> Result<()>
    where
        C: Communicator + ?Sized,
    {
        let Some(first) = tensors.first() else {
            return Ok(());
        };
        let device = first.device().clone();
        for (i, t) in tensors.iter().enumerate() {
            if t.dtype() != DType::F32 {
                bail!(
                    "bucketed all-reduce: tensor {i} of shape {:?} is {:?}, expected f32",
                    t.dims(),
                    t.dtype()
                );
            }
            if !t.device().same_device(&device) {
                bail!(
                    "bucketed all-reduce: tensor {i} is on {:?}, tensor 0 on {:?}",
                    t.device().location(),
                    device.location()
                );
            }
        }
        for bucket in self.buckets(tensors) {
            let members = &mut tensors[bucket];
            // Empty tensors have nothing to send (and every rank skips them alike).
            let parts = members
                .iter()
                .filter(|t| t.elem_count() > 0)
                .map(|t| t.flatten_all())
                .collect::<candle_core::Result<Vec<_>>>()?;
            let flat = match parts.len() {
                0 => continue,
                1 => parts[0].clone(),
                _ => Tensor::cat(&parts, 0)?,
            };
            let reduced = match reduction {
                Reduction::Sum => comm.all_reduce_sum_tensor(&flat)?,
                Reduction::Mean => comm.all_reduce_mean_tensor(&flat)?,
            };
            let mut offset = 0;
            for t in members.iter_mut().filter(|t| t.elem_count() > 0) {
                let n = t.elem_count();
                *t = reduced.narrow(0, offset, n)?.reshape(t.shape())?;
                offset += n;
            }
        }
        Ok(())
    }
}
