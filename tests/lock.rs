//! Two strata processes on one repository or one state folder: the second
//! waits for the first and says so, or with `--no-wait` fails at once with
//! exit code 2; neither corrupts anything.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{Repo, assert_out_exact, strata};

fn spawn(repo: &Repo, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(repo.path())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A watch holding the locks, once it says it is watching.
fn holder(repo: &Repo) -> Child {
    let mut dev = spawn(repo, &["store", "dev", "--no-servers"]);
    let mut lines = BufReader::new(dev.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("watching") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    dev
}

#[test]
fn a_second_process_waits_or_with_no_wait_fails_with_2() {
    let repo = Repo::standard();
    repo.config(&["us", "eu"]);
    let mut dev = holder(&repo);

    let refused = strata(repo.path(), &["--no-wait", "store", "compose"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("strata store dev (pid"), "{stderr}");
    assert!(stderr.contains(".strata/lock"), "{stderr}");
    assert!(stderr.contains("without --no-wait to wait"), "{stderr}");
    assert!(!stderr.contains("sled"), "{stderr}");

    let mut waiting = spawn(&repo, &["store", "compose"]);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "it did not wait for the watch"
    );
    dev.kill().unwrap();
    dev.wait().unwrap();
    let status = waiting.wait().unwrap();
    let mut stderr = String::new();
    waiting
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("waiting for strata store dev (pid"),
        "{stderr}"
    );
    assert_out_exact(&repo);
}

#[test]
fn concurrent_runs_on_one_repo_and_one_shared_cache_are_all_correct() {
    let a = Repo::standard();
    a.config(&["us", "eu", "solo"]);
    let b = Repo::standard();
    b.config(&["us", "solo"]);
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().to_str().unwrap().to_string();
    let runs: Vec<(Child, &Repo)> = [&a, &a, &b, &b, &a]
        .into_iter()
        .map(|repo| {
            (
                spawn(repo, &["--cache-dir", &cache, "store", "compose"]),
                repo,
            )
        })
        .collect();
    for (mut child, _) in runs {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(status.success(), "{stderr}");
        assert!(!stderr.contains("sled"), "{stderr}");
    }
    assert_out_exact(&a);
    assert_out_exact(&b);
}
