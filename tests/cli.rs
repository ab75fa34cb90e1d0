//! The `dit` binary as a user runs it.

mod common;

use std::process::Command;

fn dit(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dit"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn info_on_a_preset_needs_no_file() {
    let (ok, stdout, _) = dit(&["info", "--model", "DiT-XL/2", "--image-size", "256"]);
    assert!(ok);
    assert!(
        stdout.lines().any(|l| l == "parameters: 675129632"),
        "{stdout}"
    );
    let (ok, stdout, _) = dit(&["info", "DiT-S/2"]);
    assert!(ok && stdout.contains("parameters: 32963360"), "{stdout}");
    let (ok, _, stderr) = dit(&["info", "--model", "DiT-Q/2"]);
    assert!(
        !ok && stderr.contains("DiT-Q/2") && stderr.contains("DiT-XL/8"),
        "{stderr}"
    );
}

#[test]
fn convert_then_info_and_load() {
    let dir = std::env::temp_dir().join(format!("dit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("tiny.safetensors");
    let out_s = out.to_str().unwrap();
    let pt = common::fixture("tiny_train.pt");
    let (ok, stdout, stderr) = dit(&["convert", pt.to_str().unwrap(), out_s, "--num-heads", "2"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("wrote"), "{stdout}");
    // The converted file records its configuration: heads are no longer guessed.
    let (ok, stdout, _) = dit(&["info", out_s]);
    assert!(
        ok && stdout.contains("heads:        2 (head dim 32)") && !stdout.contains("inferred"),
        "{stdout}"
    );
    let (ok, stdout, _) = dit(&["info", pt.to_str().unwrap()]);
    assert!(ok && stdout.contains("inferred"), "{stdout}");

    // A failed conversion leaves the existing output untouched.
    let before = std::fs::read(&out).unwrap();
    let bad = dir.join("bad.pt");
    std::fs::write(&bad, "nope").unwrap();
    let (ok, _, stderr) = dit(&["convert", bad.to_str().unwrap(), out_s]);
    assert!(!ok && stderr.contains("bad.pt"), "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let (ok, _, stderr) = dit(&[
        "convert",
        pt.to_str().unwrap(),
        dir.join("x.bin").to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains(".safetensors"), "{stderr}");
}
