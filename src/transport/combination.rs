//! Per-sample linear combinations `a_i·x + b_i·out`.
//!
//! Every quantity the transport derives from a model output (velocity,
//! score, noise, the data estimate, an SDE drift, a last step) is linear in
//! the state x and the output with coefficients that depend only on t. The
//! coefficients are computed in f64 per sample and applied in the tensors'
//! dtype, so each quantity costs one rounding of its coefficients.

use candle_core::{DType, Tensor};

use crate::Result;

/// `x_coef[i]·x_i + out_coef[i]·out_i` for each sample i.
#[derive(Clone, Debug, PartialEq)]
pub struct Combination {
    pub x_coef: Vec<f64>,
    pub out_coef: Vec<f64>,
}

impl Combination {
    /// The same coefficients for every sample of a batch of `n`.
    pub fn uniform(n: usize, x_coef: f64, out_coef: f64) -> Self {
        Self {
            x_coef: vec![x_coef; n],
            out_coef: vec![out_coef; n],
        }
    }

    /// Per-sample coefficients from `f(i) = (x_coef, out_coef)`.
    pub fn from_fn(n: usize, mut f: impl FnMut(usize) -> (f64, f64)) -> Self {
        let (x_coef, out_coef) = (0..n).map(&mut f).unzip();
        Self { x_coef, out_coef }
    }

    /// The first sample whose coefficients are not finite, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        (0..self.x_coef.len())
            .find(|&i| !(self.x_coef[i].is_finite() && self.out_coef[i].is_finite()))
    }

    /// `a·x + b·out`, with terms whose coefficients are all zero left out (so a
    /// pass-through such as "the velocity of a velocity model" returns `out`
    /// itself).
    pub fn apply(&self, x: &Tensor, out: &Tensor) -> Result<Tensor> {
        let x_term = scaled(x, &self.x_coef)?;
        let out_term = scaled(out, &self.out_coef)?;
        Ok(match (x_term, out_term) {
            (Some(a), Some(b)) => (a + b)?,
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => x.zeros_like()?,
        })
    }
}

/// `coef[i]·x_i`, or `None` when every coefficient is 0; `x` itself when all are 1.
fn scaled(x: &Tensor, coef: &[f64]) -> Result<Option<Tensor>> {
    if coef.iter().all(|&c| c == 0.0) {
        return Ok(None);
    }
    if coef.iter().all(|&c| c == 1.0) {
        return Ok(Some(x.clone()));
    }
    Ok(Some(x.broadcast_mul(&per_sample(coef, x)?)?))
}

/// `values` as a `(N, 1, …, 1)` tensor that broadcasts against `like`, in its
/// dtype and on its device.
pub fn per_sample(values: &[f64], like: &Tensor) -> Result<Tensor> {
    let mut shape = vec![1usize; like.rank()];
    shape[0] = values.len();
    Ok(Tensor::from_slice(values, shape, like.device())?.to_dtype(like.dtype())?)
}

/// The per-sample times of a `(N,)` tensor, as f64.
pub fn times(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}
