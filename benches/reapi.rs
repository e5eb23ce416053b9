//! Remote execution benchmark: the generated 20-store monorepo (with a
//! `node_modules` of 30 packages) built on a real BuildGrid with two test
//! workers (`tests/fixtures/reapi`, set up by `scripts/test`), against the
//! same builds run locally in this run.
//!
//! - per-action overhead: (remote build wall − local build wall) / actions,
//!   both with one build at a time (`-j 1`, `--remote-jobs 1`), so that the
//!   difference is what remote execution adds to each build;
//! - bytes sent: the cold remote run, then a second run after one file of
//!   one store changed (goal: only what changed is sent).

mod generate;
mod measure;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use measure::run_strata;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reapi")
}

struct Grid(tempfile::TempDir, String);

impl Drop for Grid {
    fn drop(&mut self) {
        let _ = Command::new(fixture().join("stop"))
            .arg(self.0.path())
            .output();
    }
}

fn grid(workers: usize) -> Grid {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(fixture().join("start"))
        .arg(dir.path())
        .args(["--workers", &workers.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "BuildGrid did not start (run tests/fixtures/reapi/setup): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("REAPI_ENDPOINT="))
        .unwrap()
        .to_string();
    Grid(dir, url)
}

fn git(dir: &Path, args: &[&str]) {
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
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

fn report(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap()
}

fn main() {
    let grid = grid(2);
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let first = tmp.path().join("first");
    let stores = generate::monorepo(&first);
    generate::dependencies(&first, 30, 100);
    git(&first, &["init", "-q"]);
    git(&first, &["add", "-A"]);
    git(&first, &["commit", "-q", "-m", "bench"]);
    let second = tmp.path().join("second");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            &format!("file://{}", first.display()),
            "second",
        ],
    );
    // The clone's node_modules is the same install.
    let copied = Command::new("cp")
        .arg("-a")
        .arg(first.join("node_modules"))
        .arg(second.join("node_modules"))
        .status()
        .unwrap()
        .success();
    assert!(copied);
    std::thread::sleep(std::time::Duration::from_millis(1100));

    run_strata(&first, &["store", "compose", "--all"]);
    let local = run_strata(&first, &["store", "build", "--all", "--json", "-j", "1"]);
    let local_report = report(&local.stdout);
    let builds = local_report["scripts_run"].as_u64().unwrap();

    run_strata(&second, &["store", "compose", "--all"]);
    let remote = run_strata(
        &second,
        &[
            "store",
            "build",
            "--all",
            "--json",
            "--remote-executor",
            &grid.1,
            "--remote-jobs",
            "1",
        ],
    );
    let remote_report = report(&remote.stdout);
    let executor = &remote_report["remote_executor"];
    let actions = executor["executed"].as_u64().unwrap();
    assert_eq!(actions, builds, "every build ran as an action");
    assert_eq!(remote_report["scripts_run"], 0);
    let overhead = (remote.wall.as_secs_f64() - local.wall.as_secs_f64()) / actions as f64;

    // One file of one store changes.
    let changed = second.join(format!(
        "apps/stores/brand0/stores/{}/storefront-unified-nextjs/{}",
        stores[0],
        generate::file_path(7)
    ));
    std::fs::create_dir_all(changed.parent().unwrap()).unwrap();
    std::fs::write(&changed, b"export const changed = 1;\n").unwrap();
    run_strata(&second, &["store", "compose", "--all"]);
    let again = run_strata(
        &second,
        &[
            "store",
            "build",
            "--all",
            "--json",
            "--remote-executor",
            &grid.1,
            "--remote-jobs",
            "1",
        ],
    );
    let again_report = report(&again.stdout);

    println!(
        "remote execution benchmark: {} stores, {} builds, BuildGrid with 2 workers on loopback",
        stores.len(),
        builds
    );
    println!(
        "  local, one at a time: {:.2} s ({:.0} ms per build)",
        local.wall.as_secs_f64(),
        local.wall.as_secs_f64() * 1e3 / builds as f64
    );
    println!(
        "  remote, one at a time: {:.2} s, {} actions: overhead {:.0} ms per action (goal < 150 ms); {:.1} MB sent, {:.1} KB read",
        remote.wall.as_secs_f64(),
        actions,
        overhead * 1e3,
        executor["uploaded"].as_f64().unwrap_or(0.0) / 1e6,
        executor["downloaded"].as_f64().unwrap_or(0.0) / 1e3
    );
    println!(
        "  after one file of one store changed: {:.2} s, {} action(s) run, {} bytes sent (the file: {} bytes)",
        again.wall.as_secs_f64(),
        again_report["remote_executor"]["executed"],
        again_report["remote_executor"]["uploaded"],
        std::fs::metadata(&changed).unwrap().len()
    );
}
