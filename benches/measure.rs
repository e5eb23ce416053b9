//! Running the strata binary for benchmarks: wall time and peak memory of
//! the child process (from wait4's rusage).
// Each benchmark binary uses a part of this shared module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One run of the binary.
#[derive(Clone, Debug)]
pub struct Run {
    pub wall: Duration,
    pub max_rss_kb: i64,
    pub stdout: String,
}

/// Runs `strata --root root args…` and measures it.
pub fn run_strata(root: &Path, args: &[&str]) -> Run {
    run_strata_exiting(root, args, &[0])
}

/// Like [`run_strata`], for a command whose exit code may be any of `codes`
/// (`store lint` says 1 when it finds something).
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reads its rusage"
)]
pub fn run_strata_exiting(root: &Path, args: &[&str], codes: &[i32]) -> Run {
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; pid is our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && codes.contains(&libc::WEXITSTATUS(status)),
        "strata {args:?} failed"
    );
    Run {
        wall,
        max_rss_kb: usage.ru_maxrss,
        stdout: out,
    }
}

/// The run with the median wall time.
pub fn median(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by_key(|r| r.wall);
    sorted[sorted.len() / 2].clone()
}

/// Runs `git` in `dir` as the benchmarks' own user, on branch `main`.
pub fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@strata.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}
