//! Feature statistics (mean and covariance) and their `.npz` files.
//!
//! The file layout is the one both reference tools use: arrays `mu` `(d,)`
//! and `sigma` `(d, d)`. ADM reference batches (`VIRTUAL_imagenet256_labeled.npz`)
//! and pytorch-fid's `--save-stats` output (compressed) load as they are; files
//! written here are plain `np.savez` archives in float64.

use crate::{bail, Context, Result};
use faer::{Accum, Mat, Par};
use std::path::Path;

use crate::eval::features::Features;
use crate::formats::npz;

/// Rows per chunk when accumulating the covariance.
const COV_CHUNK_ROWS: usize = 1024;

/// Mean and covariance of a feature set, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Statistics {
    /// Mean, length `dim`.
    pub mu: Vec<f64>,
    /// Covariance, row-major `dim × dim`.
    pub sigma: Vec<f64>,
    pub dim: usize,
}

impl Statistics {
    /// Wraps a mean and covariance, checking their sizes.
    pub fn new(mu: Vec<f64>, sigma: Vec<f64>) -> Result<Self> {
        let dim = mu.len();
        if sigma.len() != dim * dim {
            bail!(
                "sigma must be {dim}x{dim} to match mu of length {dim}, got {} values",
                sigma.len()
            );
        }
        Ok(Self { mu, sigma, dim })
    }

    /// Sample mean and unbiased covariance (divisor N − 1, as `np.cov`).
    pub fn from_features(features: &Features) -> Result<Self> {
        let (n, d) = (features.rows, features.dim);
        if n < 2 {
            bail!("statistics need at least 2 feature vectors, got {n}");
        }
        let mut mu = vec![0.0f64; d];
        for i in 0..n {
            for (m, &v) in mu.iter_mut().zip(features.row(i)) {
                *m += v as f64;
            }
        }
        mu.iter_mut().for_each(|m| *m /= n as f64);

        // Two-pass (centre, then accumulate XᵀX chunk by chunk) to avoid the
        // cancellation of E[xxᵀ] − μμᵀ.
        let mut acc = Mat::<f64>::zeros(d, d);
        let mut start = 0;
        while start < n {
            let rows = COV_CHUNK_ROWS.min(n - start);
            let centred =
                Mat::<f64>::from_fn(rows, d, |i, j| features.row(start + i)[j] as f64 - mu[j]);
            faer::linalg::matmul::matmul(
                acc.as_mut(),
                Accum::Add,
                centred.transpose(),
                centred.as_ref(),
                1.0,
                Par::rayon(0),
            );
            start += rows;
        }
        let scale = 1.0 / (n - 1) as f64;
        let mut sigma = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                // Exact symmetry, whatever order the matmul summed in.
                sigma[i * d + j] = 0.5 * (acc[(i, j)] + acc[(j, i)]) * scale;
            }
        }
        Self::new(mu, sigma)
    }

    /// Reads `mu` and `sigma` from an `.npz`; the error names the file and
    /// what it holds instead.
    pub fn load(path: &Path) -> Result<Self> {
        let arrays = npz::list(path)?;
        let has = |k: &str| arrays.iter().any(|(n, _)| n == k);
        if !has("mu") || !has("sigma") {
            let found: Vec<String> = arrays
                .iter()
                .map(|(n, h)| format!("{n} {}", h.describe()))
                .collect();
            bail!(
                "{} is not a statistics file: expected arrays 'mu' (d,) and 'sigma' (d, d), found: {}",
                path.display(),
                found.join(", ")
            );
        }
        let mu = npz::read(path, "mu")?;
        let sigma = npz::read(path, "sigma")?;
        let d = mu.shape().iter().product::<usize>();
        if mu.shape().len() != 1 || sigma.shape() != [d, d] {
            bail!(
                "{}: 'mu' is {:?} and 'sigma' is {:?}; expected (d,) and (d, d)",
                path.display(),
                mu.shape(),
                sigma.shape()
            );
        }
        Self::new(mu.to_f64(), sigma.to_f64()).with_context(|| format!("{}", path.display()))
    }

    /// Writes `mu` and `sigma` (float64) to an `.npz`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mu = npz::Array::F64 {
            shape: vec![self.dim],
            data: self.mu.clone(),
        };
        let sigma = npz::Array::F64 {
            shape: vec![self.dim, self.dim],
            data: self.sigma.clone(),
        };
        npz::write(path, &[("mu", &mu), ("sigma", &sigma)])
    }
}

/// Whether an `.npz` holds `mu` and `sigma` arrays.
pub fn has_statistics(path: &Path) -> bool {
    npz::list(path).is_ok_and(|arrays| {
        arrays.iter().any(|(n, _)| n == "mu") && arrays.iter().any(|(n, _)| n == "sigma")
    })
}
