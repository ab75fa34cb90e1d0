//! Adding a bias `(D,)` to every row of `(..., D)`, with a backward that sums
//! the gradient's rows in a row-major sweep. candle's own reduction over the
//! leading dims walks each column with stride D, which showed up in the
//! training profile; its broadcast add also goes through the generic
//! strided binary kernel.

use super::float::{contiguous, storage, Float};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `x + bias` over the last dim; fused on the CPU for f32/f64.
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let d = x.dims().last().copied().unwrap_or(0);
    if bias.dims() != [d] {
        candle_core::bail!(
            "add_bias: bias {:?} does not fit x {:?}",
            bias.dims(),
            x.dims()
        );
    }
    match (x.device(), x.dtype()) {
        (Device::Cpu, DType::F32 | DType::F64) => {
            x.contiguous()?.apply_op2(&bias.contiguous()?, AddBias)
        }
        _ => x.broadcast_add(bias),
    }
}

/// Rows per parallel task: large enough to amortise the partial sums.
const ROWS_PER_TASK: usize = 256;

struct AddBias;

fn forward<T: Float>(x: &[T], b: &[T]) -> Vec<T> {
    let d = b.len();
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(ROWS_PER_TASK * d)
        .zip(x.par_chunks(ROWS_PER_TASK * d))
        .for_each(|(y, x)| {
            for (yr, xr) in y.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                for i in 0..d {
                    yr[i] = xr[i] + b[i];
                }
            }
        });
    y
}

/// Column sums of a row-major `(rows, d)` buffer.
fn column_sums<T: Float>(g: &[T], d: usize) -> Vec<T> {
    let add = |mut acc: Vec<T>, rows: &[T]| {
        for r in rows.chunks_exact(d) {
            for i in 0..d {
                acc[i] = acc[i] + r[i];
            }
        }
        acc
    };
    g.par_chunks(ROWS_PER_TASK * d)
        .map(|rows| add(vec![T::zero(); d], rows))
        .reduce(|| vec![T::zero(); d], |a, b| add(a, &b))
}

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = contiguous(l1, "add_bias")?;
        let (c, d) = contiguous(l2, "add_bias")?;
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(v)) => storage(forward(&x[a..b], &v[c..d])),
            (CpuStorage::F64(x), CpuStorage::F64(v)) => storage(forward(&x[a..b], &v[c..d])),
            _ => candle_core::bail!("add_bias: f32 or f64, same dtypes"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = dy
            .contiguous()?
            .apply_op1_no_bwd(&ColumnSums { d: bias.dim(0)? })?;
        Ok((Some(dy.clone()), Some(db)))
    }
}

struct ColumnSums {
    d: usize,
}

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "column-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = contiguous(l, "column sums")?;
        let out = match s {
            CpuStorage::F32(g) => storage(column_sums(&g[a..b], self.d)),
            CpuStorage::F64(g) => storage(column_sums(&g[a..b], self.d)),
            _ => candle_core::bail!("add_bias: f32 or f64 only"),
        };
        Ok((out, Shape::from(self.d)))
    }
}
