//! The page in headless Chromium: choose a class, generate, see the images.
//! Needs `scripts/install-browser-test.sh`; run with
//! `cargo test --test serve -- --ignored browser --nocapture`.
//! `SERVE_SCREENSHOT=docs/serve.png` keeps the screenshot; `SERVE_CKPT=<run
//! or file>` serves that checkpoint instead of a random-weight one.

use crate::serve::server_support::*;
use dit::serve::{ServedModel, Server};
use std::path::PathBuf;
use std::process::Command;

#[test]
#[ignore = "needs Chromium and playwright-core (scripts/install-browser-test.sh)"]
fn browser_generates_and_shows_images() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join(".cache/browser-test/node_modules/playwright-core")
            .is_dir(),
        "run scripts/install-browser-test.sh first"
    );
    let model = test_model(tiny_config());
    let (ckpt, class) = match std::env::var_os("SERVE_CKPT") {
        Some(path) => (
            PathBuf::from(path),
            std::env::var("SERVE_CLASS").unwrap_or("sneaker".into()),
        ),
        None => (model.run.clone(), "dress".to_string()),
    };
    let served =
        ServedModel::load(&ckpt, None, &Default::default(), &Default::default(), None).unwrap();
    let server = Server::start(served, loopback_config()).unwrap();
    let screenshot = match std::env::var_os("SERVE_SCREENSHOT") {
        Some(path) => root.join(path),
        None => model.dir.path().join("serve.png"),
    };
    let out = Command::new("node")
        .arg(root.join("scripts/browser-test.mjs"))
        .arg(format!("{}/", server.url()))
        .arg(&screenshot)
        .arg(&class)
        .arg("4")
        .output()
        .expect("node (scripts/install-browser-test.sh installs it)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(out.status.success(), "{log}");
    let (w, h, _) = decode_png(&std::fs::read(&screenshot).unwrap());
    assert!(w >= 800 && h >= 600, "screenshot {w}×{h}");
    let health = get(&format!("{}/health", server.url())).json();
    assert_eq!(health["jobs"]["succeeded"], 1, "{health}");
}
