//! Running the hidden `dit comm-check` subcommand.

use std::process::{Command, Output};

pub fn dit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dit"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

#[test]
fn comm_check_runs_alone_as_a_world_of_one() {
    let out = dit()
        .args(["comm-check", "collectives", "--sizes", "1,3,1000"])
        .env_remove("OMPI_COMM_WORLD_SIZE")
        .env_remove("PMI_SIZE")
        .env_remove("PMIX_RANK")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("comm-check: 22 checks passed on 1 rank(s)"),
        "{stdout}"
    );
}

#[test]
fn comm_check_is_hidden_from_help() {
    let out = dit().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("merge-npz") && !help.contains("comm-check"),
        "{help}"
    );
}

#[cfg(not(feature = "mpi"))]
#[test]
fn a_launch_of_several_ranks_needs_the_mpi_feature() {
    let out = dit()
        .args(["comm-check", "collectives", "--sizes", "3"])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("OMPI_COMM_WORLD_SIZE")
            && stderr.contains("--features mpi"),
        "{}",
        describe(&out)
    );
}
