//! Precision/recall against a brute-force numpy reference
//! (scripts/eval_fixtures.py: full pairwise distances, sorted neighbours).

use crate::support::eval as eval_support;

use dit::eval::precision_recall::{knn_radii, manifold_coverage};
use dit::eval::{precision_recall, Features};
use dit::formats::npz;
use eval_support::*;

fn features(key: &str) -> Features {
    let a = npz::read(&fixture("precision_recall.npz"), key).unwrap();
    Features::new(a.shape()[0], a.shape()[1], a.to_f32()).unwrap()
}

#[test]
fn radii_match_numpy() {
    let (real, fake) = (features("real"), features("fake"));
    for k in [3, 5] {
        for (set, name) in [(&real, "real"), (&fake, "fake")] {
            let ours = knn_radii(set, k).unwrap();
            let numpy = read_f64("precision_recall.npz", &format!("k{k}_{name}_radii"));
            let err = rel_l2(&ours, &numpy);
            println!("k={k} {name} radii rel-L2 {err:.2e}");
            assert!(err < 1e-10, "k={k} {name}: {err}");
        }
    }
}

#[test]
fn precision_and_recall_match_numpy() {
    let (real, fake) = (features("real"), features("fake"));
    for k in [3, 5] {
        let pr = precision_recall(&real, &fake, k).unwrap();
        let p = read_scalar("precision_recall.npz", &format!("k{k}_precision"));
        let r = read_scalar("precision_recall.npz", &format!("k{k}_recall"));
        println!(
            "k={k}: precision {} (numpy {p}), recall {} (numpy {r})",
            pr.precision, pr.recall
        );
        // Both are counts over a few hundred samples: they must agree exactly.
        assert_eq!(pr.precision, p, "k={k} precision");
        assert_eq!(pr.recall, r, "k={k} recall");
    }
}

#[test]
fn a_set_covers_itself_and_far_sets_cover_nothing() {
    let real = features("real");
    let pr = precision_recall(&real, &real, 3).unwrap();
    assert_eq!((pr.precision, pr.recall), (1.0, 1.0));
    let far = Features::new(
        real.rows,
        real.dim,
        real.data.iter().map(|v| v + 100.0).collect(),
    )
    .unwrap();
    let pr = precision_recall(&real, &far, 3).unwrap();
    assert_eq!((pr.precision, pr.recall), (0.0, 0.0));
    let radii = knn_radii(&real, 3).unwrap();
    assert_eq!(manifold_coverage(&far, &real, &radii).unwrap(), 0.0);
}

#[test]
fn k_must_be_below_the_set_size() {
    let small = Features::new(3, 2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0]).unwrap();
    let err = precision_recall(&small, &small, 3).unwrap_err().to_string();
    assert!(err.contains("k = 3") && err.contains("N = 3"), "{err}");
}
