//! `dit serve` as a user starts it.

use crate::serve::server_support::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

fn dit_serve(cwd: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dit"));
    command
        .arg("serve")
        .args(args)
        .current_dir(cwd)
        .env_remove("DIT_API_KEY");
    command
}

#[test]
fn without_a_checkpoint_or_run_it_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dit_serve(dir.path(), &[]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no trained run under runs/"), "{err}");
    assert!(err.contains("dit train"), "{err}");
    assert!(err.contains("--ckpt"), "{err}");
}

#[test]
fn beyond_loopback_it_needs_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = write_run(&dir.path().join("runs"), "a", &tiny_config(), &CLASSES);
    let out = dit_serve(
        dir.path(),
        &["--ckpt", run.to_str().unwrap(), "--addr", "0.0.0.0:0"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --api-key"), "{err}");
}

/// Without --ckpt it serves the run whose checkpoint was written last.
#[test]
fn it_serves_the_newest_run() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let old = write_run(&runs, "old", &tiny_config(), &["a", "b", "c", "d", "e"]);
    let new = write_run(&runs, "new", &tiny_config(), &CLASSES);
    let stamp = |run: &std::path::Path, t: SystemTime| {
        let file = std::fs::File::options()
            .write(true)
            .open(dit::train::checkpoint::checkpoint_path(run, 1))
            .unwrap();
        file.set_modified(t).unwrap();
    };
    let now = SystemTime::now();
    stamp(&old, now - Duration::from_secs(60));
    stamp(&new, now - Duration::from_secs(30));

    let mut child = dit_serve(dir.path(), &["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") && !w.ends_with('/') && !w.ends_with(')'))
        .map(str::to_string);
    let models = url.as_ref().map(|url| get(&format!("{url}/v1/models")));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.contains("runs/new"), "{line}");
    let models = models
        .unwrap_or_else(|| panic!("no address in '{line}'"))
        .json();
    assert_eq!(models["data"][0]["classes"][3]["name"], "dress");
}
