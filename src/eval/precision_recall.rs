//! Improved precision and recall (Kynkäänniemi et al., 2019) on Inception
//! pool features.
//!
//! Each set approximates its manifold by the union of balls centred on its
//! samples, each ball's radius being the distance to the sample's k-th nearest
//! neighbour within the same set (the sample itself excluded). Precision is
//! the fraction of generated samples inside the real manifold; recall is the
//! fraction of real samples inside the generated one. Distances are computed
//! in f64 blockwise as |x|² + |y|² − 2 x·y.

use crate::{bail, Result};
use faer::{Accum, Mat, Par};

use crate::eval::features::Features;

/// Neighbourhood size used by the paper and by the ADM evaluator.
pub const DEFAULT_K: usize = 3;

/// Query rows per block of the distance matrix.
const ROW_BLOCK: usize = 512;
/// Reference rows per block of the distance matrix.
const COL_BLOCK: usize = 4096;

/// Precision and recall, each in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecisionRecall {
    pub precision: f64,
    pub recall: f64,
}

/// Precision and recall of `generated` against `real` with neighbourhood size `k`.
pub fn precision_recall(
    real: &Features,
    generated: &Features,
    k: usize,
) -> Result<PrecisionRecall> {
    if real.dim != generated.dim {
        bail!(
            "feature dimensions differ ({} and {})",
            real.dim,
            generated.dim
        );
    }
    let real_m = to_mat(real);
    let gen_m = to_mat(generated);
    let real_radii = knn_sq_radii(&real_m, k)?;
    let gen_radii = knn_sq_radii(&gen_m, k)?;
    Ok(PrecisionRecall {
        precision: covered_fraction(&gen_m, &real_m, &real_radii),
        recall: covered_fraction(&real_m, &gen_m, &gen_radii),
    })
}

/// Distance from each row to its k-th nearest other row.
pub fn knn_radii(features: &Features, k: usize) -> Result<Vec<f64>> {
    Ok(knn_sq_radii(&to_mat(features), k)?
        .into_iter()
        .map(f64::sqrt)
        .collect())
}

/// Fraction of `queries` rows within distance `radii[j]` of some `refs` row j.
pub fn manifold_coverage(queries: &Features, refs: &Features, radii: &[f64]) -> Result<f64> {
    if queries.dim != refs.dim || radii.len() != refs.rows {
        bail!("manifold_coverage: mismatched dimensions or radii");
    }
    let sq: Vec<f64> = radii.iter().map(|r| r * r).collect();
    Ok(covered_fraction(&to_mat(queries), &to_mat(refs), &sq))
}

fn to_mat(f: &Features) -> Mat<f64> {
    Mat::from_fn(f.rows, f.dim, |i, j| f.data[i * f.dim + j] as f64)
}

fn sq_norms(m: &Mat<f64>) -> Vec<f64> {
    (0..m.nrows())
        .map(|i| (0..m.ncols()).map(|j| m[(i, j)] * m[(i, j)]).sum())
        .collect()
}

/// Calls `f(row, col, squared_distance)` for every pair, block by block.
fn for_each_sq_distance(a: &Mat<f64>, b: &Mat<f64>, mut f: impl FnMut(usize, usize, f64)) {
    let (na, nb) = (sq_norms(a), sq_norms(b));
    let mut gram = Mat::<f64>::zeros(ROW_BLOCK, COL_BLOCK);
    for r0 in (0..a.nrows()).step_by(ROW_BLOCK) {
        let rows = ROW_BLOCK.min(a.nrows() - r0);
        for c0 in (0..b.nrows()).step_by(COL_BLOCK) {
            let cols = COL_BLOCK.min(b.nrows() - c0);
            faer::linalg::matmul::matmul(
                gram.as_mut().submatrix_mut(0, 0, rows, cols),
                Accum::Replace,
                a.as_ref().subrows(r0, rows),
                b.as_ref().subrows(c0, cols).transpose(),
                1.0,
                Par::rayon(0),
            );
            for i in 0..rows {
                for j in 0..cols {
                    let d2 = (na[r0 + i] + nb[c0 + j] - 2.0 * gram[(i, j)]).max(0.0);
                    f(r0 + i, c0 + j, d2);
                }
            }
        }
    }
}

fn knn_sq_radii(m: &Mat<f64>, k: usize) -> Result<Vec<f64>> {
    let n = m.nrows();
    if k == 0 || k >= n {
        bail!("k-nearest-neighbour radii need 0 < k < N (k = {k}, N = {n})");
    }
    // Per row, the k smallest squared distances seen so far, ascending.
    let mut nearest = vec![f64::INFINITY; n * k];
    for_each_sq_distance(m, m, |i, j, d2| {
        if i == j {
            return;
        }
        let best = &mut nearest[i * k..(i + 1) * k];
        if d2 < best[k - 1] {
            let mut pos = k - 1;
            while pos > 0 && best[pos - 1] > d2 {
                best[pos] = best[pos - 1];
                pos -= 1;
            }
            best[pos] = d2;
        }
    });
    Ok((0..n).map(|i| nearest[i * k + k - 1]).collect())
}

fn covered_fraction(queries: &Mat<f64>, refs: &Mat<f64>, sq_radii: &[f64]) -> f64 {
    let mut covered = vec![false; queries.nrows()];
    for_each_sq_distance(queries, refs, |i, j, d2| {
        if d2 <= sq_radii[j] {
            covered[i] = true;
        }
    });
    covered.iter().filter(|&&c| c).count() as f64 / queries.nrows() as f64
}
