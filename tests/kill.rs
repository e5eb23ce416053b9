//! A compose killed at any instant (SIGKILL) leaves a state from which the
//! next compose is exact.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Repo, assert_out_exact};

fn big_repo() -> Repo {
    let repo = Repo::empty();
    for app in ["web", "api", "e2e"] {
        repo.write(
            &format!("apps/{app}/package.json"),
            &format!("{{\"name\": \"{app}\"}}\n"),
        );
        for i in 0..400 {
            repo.write(
                &format!("apps/{app}/src/d{}/f{i}.ts", i % 20),
                &format!("{app} {i}\n"),
            );
        }
    }
    let mut stores = Vec::new();
    for brand in ["b1", "b2"] {
        repo.write(&format!("apps/stores/{brand}/web/src/d1/f1.ts"), "brand\n");
        for region in ["r1", "r2", "r3"] {
            let id = format!("{brand}-{region}");
            repo.write(
                &format!("apps/stores/{brand}/stores/{id}/web/src/d2/f2.ts"),
                &format!("{id}\n"),
            );
            stores.push(id);
        }
    }
    let ids: Vec<&str> = stores.iter().map(String::as_str).collect();
    repo.config(&ids);
    repo
}

fn kill_after(repo: &Repo, delay: Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(repo.path())
        .args(["store", "compose"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    // SIGKILL: no cleanup code runs.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn rerun_after_sigkill_is_exact() {
    let repo = big_repo();
    for (round, ms) in [3u64, 10, 25, 50, 90, 150].into_iter().enumerate() {
        // Change a spread of files so the killed run has real work to do.
        for i in (round..400).step_by(7) {
            repo.write(
                &format!("apps/web/src/d{}/f{i}.ts", i % 20),
                &format!("round {round}\n"),
            );
        }
        if round % 2 == 1 {
            repo.remove(&format!("apps/api/src/d{round}"));
        }
        kill_after(&repo, Duration::from_millis(ms));
        repo.ok(&["store", "compose"]);
        assert_out_exact(&repo);
    }
    // A cold run killed part way.
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    std::fs::remove_dir_all(repo.path().join(".strata")).unwrap();
    kill_after(&repo, Duration::from_millis(40));
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
}
