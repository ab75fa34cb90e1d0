//! Fréchet distance between two Gaussians (FID when fitted to Inception features):
//!
//! d² = |μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^½
//!
//! The reference tools take `scipy.linalg.sqrtm(Σ₁ Σ₂)`, a Schur-based square
//! root of a non-symmetric product that turns complex or non-finite when the
//! covariances are singular (fewer samples than dimensions) and then needs an
//! ad hoc ε·I offset. Here the trace comes from a symmetric problem instead:
//! with A = Σ₁^½ (from the eigendecomposition of Σ₁), Σ₁Σ₂ = A (A Σ₂ A) A⁻¹ is
//! similar to the positive semi-definite A Σ₂ A, so tr (Σ₁Σ₂)^½ = Σᵢ √λᵢ(A Σ₂ A).
//! Eigenvalues below the rounding level of their matrix (d·ε·λ_max) are set
//! to zero: for rank-deficient covariances (fewer samples than dimensions) the
//! null space otherwise comes out as ±1e-15-sized noise whose square roots add
//! up to a spurious ~1e-6, and no ε·I offset is needed.

use crate::{bail, Result};
use faer::{Accum, Mat, Par, Side};

use crate::eval::stats::Statistics;

/// Fréchet distance between two sets of statistics (same dimension).
pub fn frechet_distance(a: &Statistics, b: &Statistics) -> Result<f64> {
    if a.dim != b.dim {
        bail!(
            "statistics have different dimensions ({} and {})",
            a.dim,
            b.dim
        );
    }
    let mean_term: f64 = a.mu.iter().zip(&b.mu).map(|(x, y)| (x - y) * (x - y)).sum();
    let d = a.dim;
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    let cross = trace_sqrt_product(&a.sigma, &b.sigma, d)?;
    Ok(mean_term + trace(&a.sigma) + trace(&b.sigma) - 2.0 * cross)
}

/// tr (Σ₁ Σ₂)^½ for symmetric positive semi-definite row-major `d × d` matrices.
pub fn trace_sqrt_product(sigma1: &[f64], sigma2: &[f64], d: usize) -> Result<f64> {
    if sigma1.len() != d * d || sigma2.len() != d * d {
        bail!("covariances must be {d}x{d}");
    }
    if sigma1.iter().chain(sigma2).any(|v| !v.is_finite()) {
        bail!("covariance contains non-finite values");
    }
    let s1 = symmetric(sigma1, d);
    let s2 = symmetric(sigma2, d);
    let par = Par::rayon(0);

    let eig = s1
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| crate::err!("eigendecomposition of sigma1 failed: {e:?}"))?;
    let u = eig.U();
    let lambda = without_rounding_noise((0..d).map(|i| eig.S().column_vector()[i]).collect());
    // A = U diag(√λ) Uᵀ, formed as (U diag(λ^¼)) (U diag(λ^¼))ᵀ so it is symmetric by construction.
    let scaled = Mat::<f64>::from_fn(d, d, |i, j| u[(i, j)] * lambda[j].sqrt().sqrt());
    let mut root = Mat::<f64>::zeros(d, d);
    faer::linalg::matmul::matmul(
        root.as_mut(),
        Accum::Replace,
        scaled.as_ref(),
        scaled.transpose(),
        1.0,
        par,
    );
    let mut tmp = Mat::<f64>::zeros(d, d);
    faer::linalg::matmul::matmul(
        tmp.as_mut(),
        Accum::Replace,
        root.as_ref(),
        s2.as_ref(),
        1.0,
        par,
    );
    let mut m = Mat::<f64>::zeros(d, d);
    faer::linalg::matmul::matmul(
        m.as_mut(),
        Accum::Replace,
        tmp.as_ref(),
        root.as_ref(),
        1.0,
        par,
    );
    let m = Mat::<f64>::from_fn(d, d, |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
    let mu = m.self_adjoint_eigenvalues(Side::Lower).map_err(|e| {
        crate::err!("eigendecomposition of sigma1^1/2 sigma2 sigma1^1/2 failed: {e:?}")
    })?;
    Ok(without_rounding_noise(mu).iter().map(|v| v.sqrt()).sum())
}

/// Eigenvalues of a symmetric PSD matrix with those indistinguishable from
/// zero (negative, or below d·ε·λ_max, the backward error of the
/// decomposition) set to zero.
fn without_rounding_noise(mut eigenvalues: Vec<f64>) -> Vec<f64> {
    let largest = eigenvalues.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = largest * eigenvalues.len() as f64 * f64::EPSILON;
    for v in &mut eigenvalues {
        if *v <= floor {
            *v = 0.0;
        }
    }
    eigenvalues
}

fn symmetric(s: &[f64], d: usize) -> Mat<f64> {
    Mat::from_fn(d, d, |i, j| 0.5 * (s[i * d + j] + s[j * d + i]))
}
