//! `--class` resolution: ImageNet names with synonyms, stored names, ids.

use dit::sample::class_names::edit_distance;
use dit::sample::{resolve_classes, ClassChoice, ClassNames};

#[test]
fn imagenet_names_and_synonyms_resolve_case_insensitively() {
    let names = ClassNames::imagenet();
    assert_eq!(names.len(), 1000);
    assert_eq!(names.lookup("golden retriever").unwrap(), 207);
    assert_eq!(names.lookup("Golden  Retriever ").unwrap(), 207);
    assert_eq!(names.lookup("tabby").unwrap(), 281);
    assert_eq!(names.lookup("TABBY CAT").unwrap(), 281);
    // The classes of the official sample.py grid.
    assert_eq!(names.lookup("macaw").unwrap(), 88);
    assert_eq!(names.lookup("giant panda").unwrap(), 388);
    assert_eq!(names.lookup("geyser").unwrap(), 974);
    assert_eq!(names.lookup("orca").unwrap(), 148);
    assert_eq!(names.name(0), Some("tench"));
    assert_eq!(names.name(999), Some("toilet tissue"));
}

#[test]
fn unknown_names_list_the_closest_classes() {
    let err = ClassNames::imagenet()
        .lookup("golden retreiver")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown class 'golden retreiver'"), "{err}");
    assert!(err.contains("207 (golden retriever)"), "{err}");
    let first = err.split("closest: ").nth(1).unwrap();
    assert!(
        first.starts_with("207 "),
        "the nearest name comes first: {err}"
    );
}

#[test]
fn names_shared_by_two_classes_ask_for_an_id() {
    // "crane" is both the bird (134) and the machine (517).
    let err = ClassNames::imagenet()
        .lookup("crane")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ambiguous") && err.contains("134") && err.contains("517"),
        "{err}"
    );
}

#[test]
fn ids_and_stored_names_resolve_and_range_is_checked() {
    let stored = ClassNames::from_names(&["cats".to_string(), "golden_retriever".to_string()]);
    let args: Vec<String> = ["1", "Cats", "golden retriever"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        resolve_classes(&args, Some(&stored), 2).unwrap(),
        vec![1, 0, 1]
    );
    // Stored names replace ImageNet's: "tabby" is not among them.
    let err = resolve_classes(&["tabby".into()], Some(&stored), 2)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown class") && err.contains("cats"),
        "{err}"
    );
    let err = resolve_classes(&["2".into()], Some(&stored), 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("out of range"), "{err}");
    let err = resolve_classes(&["cats".into()], None, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no names"), "{err}");
}

#[test]
fn edit_distance_counts_insertions_deletions_substitutions() {
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("tabby", "tabby"), 0);
}

#[test]
fn random_labels_depend_only_on_seed_and_index() {
    let choice = ClassChoice::Uniform { num_classes: 10 };
    let all = choice.labels(3, 0..64);
    assert_eq!(choice.labels(3, 32..64), all[32..]);
    assert!(all.iter().all(|&l| l < 10));
    let distinct: std::collections::BTreeSet<_> = all.iter().collect();
    assert!(distinct.len() >= 6, "64 draws over 10 classes: {all:?}");
    assert_ne!(choice.labels(4, 0..64), all, "another seed, other labels");
    assert_eq!(
        ClassChoice::Cycle(vec![5, 7]).labels(0, 1..4),
        vec![7, 5, 7]
    );
}
