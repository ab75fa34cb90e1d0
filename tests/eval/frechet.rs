//! Fréchet distance against the scipy.linalg.sqrtm formula of pytorch-fid and
//! the ADM evaluator (fixtures from scripts/eval_fixtures.py, stored with
//! np.savez_compressed like pytorch-fid's statistics files).

use crate::support::eval as eval_support;

use dit::eval::frechet::trace_sqrt_product;
use dit::eval::{frechet_distance, Statistics};
use eval_support::*;

fn stats(case: &str, which: u8) -> Statistics {
    Statistics::new(
        read_f64("frechet.npz", &format!("{case}_mu{which}")),
        read_f64("frechet.npz", &format!("{case}_sigma{which}")),
    )
    .unwrap()
}

fn check_against_scipy(case: &str) {
    let (a, b) = (stats(case, 1), stats(case, 2));
    let ours = frechet_distance(&a, &b).unwrap();
    let scipy = read_scalar("frechet.npz", &format!("{case}_fid"));
    // Square-root-free reference: nuclear norm of B1 B2ᵀ where Σk = BkᵀBk.
    let factor = read_scalar("frechet.npz", &format!("{case}_fid_factor"));
    println!(
        "{case}: ours {ours:.12} scipy {scipy:.12} (rel {:.2e}) factor {factor:.12} (rel {:.2e})",
        rel(ours, scipy),
        rel(ours, factor)
    );
    assert!(rel(ours, scipy) < 1e-6, "{case}: {ours} vs scipy {scipy}");
    assert!(
        rel(ours, factor) < 1e-9,
        "{case}: {ours} vs factor reference {factor}"
    );
    // The distance is symmetric even though sqrtm(Σ1 Σ2) is not computed symmetrically.
    let swapped = frechet_distance(&b, &a).unwrap();
    assert!(
        rel(swapped, ours) < 1e-9,
        "{case}: swapped {swapped} vs {ours}"
    );
}

#[test]
fn matches_scipy_on_full_rank_covariances() {
    check_against_scipy("random");
}

#[test]
fn matches_scipy_on_rank_deficient_covariances() {
    // 40 samples in 96 dimensions: both covariances have rank 39.
    check_against_scipy("rank_deficient");
}

#[test]
fn distance_of_a_distribution_to_itself_vanishes() {
    for case in ["random", "rank_deficient"] {
        let a = stats(case, 1);
        let ours = frechet_distance(&a, &a).unwrap();
        let trace: f64 = (0..a.dim).map(|i| a.sigma[i * a.dim + i]).sum();
        let scipy = read_scalar("frechet.npz", &format!("{case}_self_fid"));
        println!("{case}: self-distance ours {ours:.3e}, scipy {scipy:.3e}, tr Σ {trace:.3}");
        assert!(ours.abs() < 1e-9 * trace, "{case}: self-distance {ours}");
    }
}

#[test]
fn trace_of_sqrt_of_commuting_product_is_exact() {
    // Diagonal covariances commute: tr (Σ1 Σ2)^½ = Σ √(a_i b_i).
    let d = 5;
    let (a, b) = ([4.0, 1.0, 0.0, 9.0, 2.0], [1.0, 16.0, 3.0, 0.25, 8.0]);
    let diag = |v: &[f64]| {
        let mut m = vec![0.0; d * d];
        (0..d).for_each(|i| m[i * d + i] = v[i]);
        m
    };
    let got = trace_sqrt_product(&diag(&a), &diag(&b), d).unwrap();
    let expected: f64 = a.iter().zip(&b).map(|(x, y)| (x * y).sqrt()).sum();
    assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
}

#[test]
fn rejects_mismatched_dimensions() {
    let a = Statistics::new(vec![0.0; 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
    let b = Statistics::new(vec![0.0; 3], vec![0.0; 9]).unwrap();
    let err = frechet_distance(&a, &b).unwrap_err().to_string();
    assert!(err.contains("different dimensions"), "{err}");
    assert!(Statistics::new(vec![0.0; 3], vec![0.0; 4]).is_err());
}
