//! Statistics files: numpy parity of mean/covariance and `.npz` compatibility.

use crate::support::eval as eval_support;

use dit::eval::stats::has_statistics;
use dit::eval::{Features, Statistics};
use dit::formats::npz;
use eval_support::*;

#[test]
fn mean_and_covariance_match_numpy() {
    let f = npz::read(&fixture("stats.npz"), "features").unwrap();
    let (rows, dim) = (f.shape()[0], f.shape()[1]);
    let features = Features::new(rows, dim, f.to_f32()).unwrap();
    let ours = Statistics::from_features(&features).unwrap();
    let numpy = Statistics::load(&fixture("stats.npz")).unwrap();
    let (mu_err, sigma_err) = (
        rel_l2(&ours.mu, &numpy.mu),
        rel_l2(&ours.sigma, &numpy.sigma),
    );
    println!("vs numpy: mu rel-L2 {mu_err:.2e}, sigma rel-L2 {sigma_err:.2e}");
    assert!(mu_err < 1e-12 && sigma_err < 1e-12);
}

#[test]
fn save_then_load_round_trips_and_numpy_layout_is_kept() {
    let stats = Statistics::load(&fixture("stats.npz")).unwrap();
    let dir = scratch_dir("stats-roundtrip");
    let out = dir.join("ref_stats.npz");
    stats.save(&out).unwrap();
    assert_eq!(Statistics::load(&out).unwrap(), stats);
    let arrays = npz::list(&out).unwrap();
    let describe: Vec<(String, String)> = arrays
        .iter()
        .map(|(n, h)| (n.clone(), h.describe()))
        .collect();
    assert_eq!(
        describe,
        [
            ("mu".to_string(), "(48) <f8".to_string()),
            ("sigma".to_string(), "(48, 48) <f8".to_string())
        ]
    );
}

#[test]
fn reads_compressed_statistics_and_float32_arrays() {
    // frechet.npz is written with np.savez_compressed, as pytorch-fid does.
    let mu = npz::read(&fixture("frechet.npz"), "random_mu1").unwrap();
    assert_eq!(mu.shape(), [128]);
    // image_batch.npz (ADM reference-batch layout) stores float32 mu/sigma next to arr_0.
    let stats = Statistics::load(&fixture("image_batch.npz")).unwrap();
    assert_eq!(stats.dim, 4);
    assert_eq!(stats.sigma[5], 1.0);
    assert!(has_statistics(&fixture("image_batch.npz")));
    assert!(!has_statistics(&fixture("precision_recall.npz")));
}

#[test]
fn missing_mu_or_sigma_is_reported_with_the_file_and_its_keys() {
    let err = format!(
        "{:#}",
        Statistics::load(&fixture("resize.npz")).unwrap_err()
    );
    assert!(
        err.contains("resize.npz")
            && err.contains("'mu'")
            && err.contains("'sigma'")
            && err.contains("src"),
        "{err}"
    );
    let err = format!("{:#}", Statistics::load(&fixture("nope.npz")).unwrap_err());
    assert!(err.contains("nope.npz"), "{err}");
    let dir = scratch_dir("stats-bad");
    let bad = dir.join("bad.npz");
    let mu = npz::Array::F64 {
        shape: vec![3],
        data: vec![0.0; 3],
    };
    let sigma = npz::Array::F64 {
        shape: vec![2, 2],
        data: vec![0.0; 4],
    };
    npz::write(&bad, &[("mu", &mu), ("sigma", &sigma)]).unwrap();
    let err = format!("{:#}", Statistics::load(&bad).unwrap_err());
    assert!(err.contains("bad.npz") && err.contains("(d, d)"), "{err}");
}

#[test]
fn statistics_need_two_samples() {
    let one = Features::new(1, 3, vec![1.0, 2.0, 3.0]).unwrap();
    assert!(Statistics::from_features(&one).is_err());
}
