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
use std::process::Command;

use measure::{git, run_strata};

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

    let server = |r: &serde_json::Value, k: &str| {
        r["remote_executor"]["server_time"][k]
            .as_f64()
            .unwrap_or(0.0)
    };
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
    let wall = remote.wall.as_secs_f64();
    let per = |x: f64| x * 1e3 / actions as f64;
    println!(
        "  remote, one at a time: {:.2} s for {} actions ({:.0} ms each); {:.1} MB sent (node_modules once), {:.1} KB read",
        wall,
        actions,
        per(wall),
        executor["uploaded"].as_f64().unwrap_or(0.0) / 1e6,
        executor["downloaded"].as_f64().unwrap_or(0.0) / 1e3
    );
    println!(
        "    per action: script {:.0} ms; beside it {:.0} ms (goal < 150 ms), of which strata's side {:.0} ms (inputs hashed and sent, Execute, outputs fetched and put in place) and the server's {:.0} ms (queue {:.0}, worker fetching inputs {:.0}, sending outputs {:.0})",
        per(server(&remote_report, "run")),
        per(wall - server(&remote_report, "run")),
        per(wall - server(&remote_report, "server")),
        per(server(&remote_report, "server") - server(&remote_report, "run")),
        per(server(&remote_report, "queued")),
        per(server(&remote_report, "fetch")),
        per(server(&remote_report, "upload")),
    );
    println!(
        "  after one file of one store changed: {:.2} s, {} action(s) run, {} bytes sent (the file: {} bytes); the action {:.0} ms on the server, its script {:.0} ms",
        again.wall.as_secs_f64(),
        again_report["remote_executor"]["executed"],
        again_report["remote_executor"]["uploaded"],
        std::fs::metadata(&changed).unwrap().len(),
        server(&again_report, "server") * 1e3,
        server(&again_report, "run") * 1e3,
    );
}
