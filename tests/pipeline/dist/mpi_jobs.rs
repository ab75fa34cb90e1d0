//! MPI jobs of 1–3 ranks on this machine (`mpirun --oversubscribe`: the test
//! machines have 2 cores): the collectives, and the end of a job when one rank
//! fails or is killed.
//!
//! Without `mpirun` the tests say so and pass, except on CI (`CI` set), where
//! scripts/test.sh installs OpenMPI and a missing `mpirun` is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Jobs oversubscribe the cores: one at a time keeps the time bounds honest.
pub(super) static ONE_JOB_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long the surviving ranks may take to be stopped once one failed: Open
/// MPI's mpirun notices within a second here (figures in the report); the
/// slack is for a loaded CI machine.
pub(super) const END_OF_JOB_LIMIT: Duration = Duration::from_secs(60);

pub(super) fn mpirun_or_skip(test: &str) -> bool {
    let found = Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: mpirun not found on CI (scripts/install-mpi.sh installs OpenMPI)"
        );
        eprintln!("skipping {test}: mpirun not found (scripts/install-mpi.sh installs OpenMPI)");
    }
    found
}

/// A running `mpirun -np N dit comm-check ARGS`, its output going to files.
pub(super) struct Job {
    pub(super) child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

pub(super) struct Ended {
    pub(super) status: ExitStatus,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Ended {
    pub(super) fn describe(&self) -> String {
        format!(
            "status {}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Job {
    /// `mpirun -np N --oversubscribe dit comm-check ARGS`.
    fn command(np: usize, args: &[&str]) -> Command {
        let mut command = Self::dit(np, &["comm-check"]);
        command.args(args);
        command
    }

    /// `mpirun -np N --oversubscribe dit ARGS`.
    pub(super) fn dit(np: usize, args: &[&str]) -> Command {
        let mut command = Self::mpirun();
        command
            .args(["-np", &np.to_string(), "--oversubscribe"])
            .arg(env!("CARGO_BIN_EXE_dit"))
            .args(args);
        command
    }

    /// `mpirun`, allowed to run as root (CI and sessions run as root).
    pub(super) fn mpirun() -> Command {
        let mut command = Command::new("mpirun");
        command
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        command
    }

    pub(super) fn start(mut command: Command, dir: &Path) -> Job {
        let stdout = dir.join("stdout");
        let stderr = dir.join("stderr");
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("starting mpirun");
        Job {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for the job to end; past `limit` it is stopped and the test fails.
    pub(super) fn wait(mut self, limit: Duration) -> Ended {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Ended {
                    status,
                    stdout: std::fs::read_to_string(&self.stdout).unwrap(),
                    stderr: std::fs::read_to_string(&self.stderr).unwrap(),
                };
            }
            if start.elapsed() > limit {
                // SIGTERM lets mpirun stop its ranks; SIGKILL would orphan them.
                unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
                std::thread::sleep(Duration::from_secs(5));
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the job did not end within {limit:?}\n--- stdout\n{}--- stderr\n{}",
                    std::fs::read_to_string(&self.stdout).unwrap_or_default(),
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn collectives_on_one_two_and_three_ranks() {
    if !mpirun_or_skip("collectives_on_one_two_and_three_ranks") {
        return;
    }
    let _one = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The last job all-reduces through a send buffer instead of in place;
    // the one before passes every collective through the watchdog.
    for (np, in_place, watched) in [
        (1, true, false),
        (2, true, false),
        (3, true, false),
        (3, true, true),
        (3, false, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["collectives", "--sizes", "1,3,1000003"];
        if watched {
            args.extend(["--collective-timeout", "300"]);
        }
        let mut job = Job::command(np, &args);
        if !in_place {
            job.env(dit::dist::NO_IN_PLACE_VARIABLE, "1");
        }
        let ended = Job::start(job, dir.path()).wait(Duration::from_secs(600));
        let path = if in_place {
            "in place"
        } else {
            "through a send buffer"
        };
        let limit = if watched {
            ", collectives limited to 300.0 s"
        } else {
            "\n"
        };
        assert!(
            ended.stdout.contains(&format!("all-reduce {path}{limit}")),
            "{}",
            ended.describe()
        );
        assert!(ended.status.success(), "{np} ranks: {}", ended.describe());
        // World 1 skips the mismatched-lengths check.
        let checks = if np == 1 { 22 } else { 23 };
        assert!(
            ended.stdout.contains(&format!(
                "comm-check: {checks} checks passed on {np} rank(s)"
            )),
            "{np} ranks: {}",
            ended.describe()
        );
        eprintln!("--- {np} rank(s)\n{}", ended.stdout);
    }
}

/// The process id rank `rank` of `job` wrote to `dir`.
fn pid_of(job: &mut Job, dir: &Path, rank: usize, limit: Duration) -> i32 {
    let path = dir.join(format!("rank-{rank}.pid"));
    let start = Instant::now();
    loop {
        if let Ok(pid) = std::fs::read_to_string(&path) {
            return pid.trim().parse().unwrap();
        }
        if let Some(status) = job.child.try_wait().unwrap() {
            panic!(
                "the job ended ({status}) before rank {rank} wrote its pid:\n{}",
                std::fs::read_to_string(&job.stderr).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < limit,
            "rank {rank} wrote no pid in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process that ended is gone or a zombie waiting for its parent to reap it.
pub(super) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The state follows the parenthesised command name.
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

#[test]
fn a_rank_killed_mid_run_ends_the_job() {
    if !mpirun_or_skip("a_rank_killed_mid_run_ends_the_job") {
        return;
    }
    let _one = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let pid_dir = dir.path().to_str().unwrap();
    // Far more steps than can run before the kill: only the kill ends it.
    let args = [
        "steps",
        "--steps",
        "100000000",
        "--len",
        "100000",
        "--pid-dir",
        pid_dir,
    ];
    let mut job = Job::start(Job::command(3, &args), dir.path());
    let pids: Vec<i32> = (0..3)
        .map(|r| pid_of(&mut job, dir.path(), r, Duration::from_secs(120)))
        .collect();
    // Let the ranks get into the loop of all-reduces.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        pids.iter().all(|&p| alive(p)),
        "a rank ended before the kill"
    );
    let killed = Instant::now();
    assert_eq!(unsafe { libc::kill(pids[1], libc::SIGKILL) }, 0);
    let ended = job.wait(END_OF_JOB_LIMIT);
    let took = killed.elapsed();
    assert!(!ended.status.success(), "{}", ended.describe());
    assert!(
        !alive(pids[0]) && !alive(pids[2]),
        "ranks 0 and 2 outlived the job"
    );
    eprintln!(
        "killed rank 1: mpirun ended {} after {took:.2?}\n{}",
        ended.status, ended.stderr
    );
}

#[test]
fn a_failing_rank_ends_the_job_and_says_where() {
    if !mpirun_or_skip("a_failing_rank_ends_the_job_and_says_where") {
        return;
    }
    let _one = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // How rank 1 fails at step 5, and what the job's stderr must then say.
    let cases: [(&str, &[&str]); 4] = [
        ("abort", &["rank 1 of 3: step 5: injected failure (Abort)"]),
        (
            "panic",
            &[
                "step 5: injected panic",
                "rank 1 of 3: panicked; ending the job",
            ],
        ),
        ("return", &["rank 1 of 3: stopped before finish()"]),
        // No MPI shutdown: mpirun names the process, as `[[job,1],1]`.
        ("exit", &["exited with non-zero status", "],1]"]),
    ];
    for (how, fragments) in cases {
        let dir = tempfile::tempdir().unwrap();
        let args = [
            "steps",
            "--steps",
            "100000000",
            "--len",
            "100000",
            "--fail-rank",
            "1",
            "--fail-at-step",
            "5",
            "--fail-how",
            how,
        ];
        let started = Instant::now();
        let ended = Job::start(Job::command(3, &args), dir.path()).wait(END_OF_JOB_LIMIT);
        let took = started.elapsed();
        assert!(!ended.status.success(), "{how}: {}", ended.describe());
        for fragment in fragments {
            assert!(
                ended.stderr.contains(fragment),
                "{how}: no {fragment:?} in\n{}",
                ended.describe()
            );
        }
        if how != "exit" {
            // MPI_Abort's error code (dit::dist::ABORT_EXIT_CODE) is mpirun's status.
            assert_eq!(ended.status.code(), Some(3), "{how}: {}", ended.describe());
        }
        eprintln!(
            "{how}: mpirun ended {} after {took:.2?} (start included)\n{}",
            ended.status, ended.stderr
        );
    }
}

#[test]
fn a_hung_rank_ends_the_job_after_the_collective_timeout() {
    if !mpirun_or_skip("a_hung_rank_ends_the_job_after_the_collective_timeout") {
        return;
    }
    let _one = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Rank 1 sleeps at step 5; ranks 0 and 2 wait in that step's all-reduce.
    let args = [
        "steps",
        "--steps",
        "100000000",
        "--len",
        "100000",
        "--fail-rank",
        "1",
        "--fail-at-step",
        "5",
        "--fail-how",
        "hang",
        "--collective-timeout",
        "2",
    ];
    let started = Instant::now();
    let ended = Job::start(Job::command(3, &args), dir.path()).wait(END_OF_JOB_LIMIT);
    let took = started.elapsed();
    assert!(!ended.status.success(), "{}", ended.describe());
    assert!(
        ended
            .stderr
            .contains("of 3: step 5: all_reduce_sum has waited"),
        "{}",
        ended.describe()
    );
    assert!(
        took > Duration::from_secs(2),
        "ended after {took:?}, before the limit"
    );
    eprintln!(
        "hang: mpirun ended {} after {took:.2?} (start included)\n{}",
        ended.status, ended.stderr
    );
}
