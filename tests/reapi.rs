//! Builds on a real REAPI service: BuildGrid from PyPI (its scheduler on a
//! private PostgreSQL), with test workers that run actions on this host
//! (`tests/fixtures/reapi/`, set up by `scripts/test`). A TCP proxy in front
//! of the server cuts connections (fault injection only).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{Repo, full_tree, git};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reapi")
}

/// A BuildGrid server with its workers, stopped on drop.
pub struct BuildGrid {
    dir: tempfile::TempDir,
    values: BTreeMap<String, String>,
}

impl BuildGrid {
    /// Starts BuildGrid with `workers` workers (a dead worker's lease goes
    /// back to the queue after 4 s without news from it).
    pub fn start(workers: usize) -> BuildGrid {
        let venv = std::env::var("STRATA_REAPI_VENV")
            .unwrap_or_else(|_| "/opt/strata-reapi/venv".to_string());
        assert!(
            Path::new(&venv).join("bin/bgd").exists(),
            "BuildGrid is not installed in {venv}: run tests/fixtures/reapi/setup (scripts/test does; it installs the pinned buildgrid from PyPI and the Debian package postgresql)"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(fixture().join("start"))
            .arg(dir.path())
            .args(["--workers", &workers.to_string(), "--bot-keepalive", "4"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "BuildGrid did not start:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let values = stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        BuildGrid { dir, values }
    }

    /// `grpc://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.values["REAPI_ENDPOINT"].clone()
    }

    fn address(&self) -> String {
        self.values["REAPI_ADDRESS"].clone()
    }

    fn workers(&self) -> Vec<u32> {
        self.values["WORKER_PIDS"]
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        let _ = Command::new(fixture().join("stop"))
            .arg(self.dir.path())
            .output();
    }
}

/// A TCP proxy to `upstream` whose connections can be cut at once.
struct Cutter {
    port: u16,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Cutter {
    fn start(upstream: String) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let kept = live.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                kept.lock().unwrap().push(client.try_clone().unwrap());
                kept.lock().unwrap().push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 1 << 14];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Cutter { port, live }
    }

    fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    /// Cuts every open connection (the proxy goes on accepting).
    fn cut(&self) {
        for stream in self.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn run(repo: &Repo, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = repo.strata(args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every store's `.deploy` folders, file by file (bytes, mode, links).
fn deploys(repo: &Repo) -> BTreeMap<String, crate::util::FileState> {
    let mut all = BTreeMap::new();
    for store in ["r1", "r2", "solo"] {
        for app in ["storefront-middleware", "storefront-unified-nextjs"] {
            let dir = repo.path().join(format!(".out/{store}/{app}/.deploy"));
            assert!(dir.is_dir(), "{} was not prepared", dir.display());
            for (path, state) in full_tree(&dir) {
                all.insert(format!("{store}/{app}/{path}"), state);
            }
        }
    }
    all
}

fn committed() -> Repo {
    let repo = Repo::buildable();
    repo.git_init();
    repo
}

/// A clone of `repo` at another, deeper path.
fn clone_of(repo: &Repo) -> Repo {
    let holder = tempfile::tempdir().unwrap();
    let url = format!("file://{}", repo.path().display());
    git(holder.path(), &["clone", "-q", &url, "elsewhere/clone"]);
    Repo::at(holder.path().join("elsewhere/clone"), holder)
}

#[test]
fn builds_run_as_actions_on_workers_equal_local_builds_and_warm_a_cache_another_clone_reads() {
    let grid = BuildGrid::start(2);
    let remote = committed();
    let (code, report, stderr) = run(
        &remote,
        &["store", "build", "--json", "--remote-executor", &grid.url()],
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(report["scripts_run"], 0, "no script ran here: {report:#}");
    assert!(remote.builds().is_empty(), "{:?}", remote.builds());
    let executor = &report["remote_executor"];
    // Five distinct builds (r1 and r2 share their middleware's).
    assert_eq!(executor["actions"], 5, "{report:#}");
    assert_eq!(executor["executed"], 5, "{report:#}");
    for store in report["stores"].as_array().unwrap() {
        for app in store["apps"].as_array().unwrap() {
            let how = app["build"].as_str().unwrap();
            assert!(matches!(how, "executed" | "shared" | "no-script"), "{app}");
        }
    }

    let local = committed();
    let (code, _, stderr) = run(&local, &["store", "build", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(local.builds().len(), 5);
    assert_eq!(
        deploys(&remote),
        deploys(&local),
        "a remote build's .deploy is a local build's, byte for byte"
    );

    // Another clone, at another path, with only the cache: no action, no
    // script, the same .deploy.
    let other = clone_of(&local);
    let (code, report, stderr) = run(
        &other,
        &["store", "build", "--json", "--remote-cache", &grid.url()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["scripts_run"], 0, "{report:#}");
    assert!(report["remote_executor"].is_null());
    for store in report["stores"].as_array().unwrap() {
        for app in store["apps"].as_array().unwrap() {
            let how = app["build"].as_str().unwrap();
            assert!(matches!(how, "remote" | "shared" | "no-script"), "{app}");
        }
    }
    assert_eq!(deploys(&other), deploys(&local));

    // Run again with the executor after a clean: the server's cache
    // answers, nothing is sent again.
    std::fs::remove_dir_all(remote.path().join(".out")).unwrap();
    let (code, report, stderr) = run(
        &remote,
        &["store", "build", "--json", "--remote-executor", &grid.url()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["remote_executor"]["executed"], 0, "{report:#}");
    assert_eq!(report["remote_executor"]["uploaded"], 0, "{report:#}");
    assert_eq!(deploys(&remote), deploys(&local));
}

#[test]
fn a_build_that_fails_remotely_shows_its_output_and_fails_the_run() {
    let grid = BuildGrid::start(1);
    let repo = committed();
    repo.write("apps/stores/solo/storefront-middleware/src/fail", "");
    let (code, report, stderr) = run(
        &repo,
        &["store", "build", "--json", "--remote-executor", &grid.url()],
    );
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    assert!(
        stderr.contains("build of solo/storefront-middleware failed")
            && stderr.contains("error: src/fail asks this build to fail"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(
        repo.path()
            .join(".out/solo/storefront-middleware/.strata-build.log"),
    )
    .unwrap();
    assert!(log.contains("compiling the middleware"), "{log}");
    assert!(repo.builds().is_empty(), "it did not run here");
}

/// A build script for the solo store's middleware that tells the test it
/// started (a line in `dir/started`, and its pid) and waits for `dir/go`.
fn gated_middleware(repo: &Repo, dir: &Path) {
    let gate = format!(
        r#"
import * as gate from "node:fs";
gate.appendFileSync("{dir}/started", `${{process.pid}}\n`);
while (!gate.existsSync("{dir}/go")) await new Promise((done) => setTimeout(done, 50));
"#,
        dir = dir.display()
    );
    let base =
        std::fs::read_to_string(repo.path().join("apps/storefront-middleware/build.mjs")).unwrap();
    // Imports first, as ES modules want them.
    let (imports, rest) = base.split_once("\nconst root").unwrap();
    repo.write(
        "apps/stores/solo/storefront-middleware/build.mjs",
        &format!("{imports}\n{gate}\nconst root{rest}"),
    );
}

/// Runs strata on `root`, killed after five minutes (a hang fails the test
/// rather than the whole run).
fn bounded(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .args(["-s", "KILL", "300", env!("CARGO_BIN_EXE_strata"), "--root"])
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// Waits until `path` has `n` lines, or the strata run ended (shown).
fn wait_for_lines(
    path: &Path,
    n: usize,
    run: &mut Option<std::thread::JoinHandle<std::process::Output>>,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if run.as_ref().is_some_and(|r| r.is_finished()) {
            let out = run.take().unwrap().join().unwrap();
            panic!(
                "strata ended before {} had {n} lines:\n{}\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} never had {n} lines",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stream_cut_mid_execution_is_resumed_and_the_action_runs_once() {
    let grid = BuildGrid::start(1);
    let cutter = Cutter::start(grid.address());
    let gate = tempfile::tempdir().unwrap();
    let repo = committed();
    gated_middleware(&repo, gate.path());
    let url = cutter.url();
    let mut child = Some({
        let repo_path = repo.path().to_path_buf();
        std::thread::spawn(move || {
            bounded(
                &repo_path,
                &[
                    "store",
                    "build",
                    "-s",
                    "solo",
                    "--json",
                    "--remote-executor",
                    &url,
                ],
            )
        })
    });
    wait_for_lines(&gate.path().join("started"), 1, &mut child);
    cutter.cut();
    std::fs::write(gate.path().join("go"), "").unwrap();
    let out = child.take().unwrap().join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        wait_for_lines(&gate.path().join("started"), 1, &mut None).len(),
        1,
        "the action ran once"
    );
    assert_eq!(report["remote_executor"]["actions"], 2, "{report:#}");
    let lib = repo.path().join(".out/solo/storefront-middleware/.deploy");
    assert!(lib.is_dir());
}

#[test]
fn a_worker_killed_mid_action_is_replaced_and_the_build_gets_one_result() {
    let grid = BuildGrid::start(2);
    let gate = tempfile::tempdir().unwrap();
    let repo = committed();
    gated_middleware(&repo, gate.path());
    let url = grid.url();
    let mut child = Some({
        let repo_path = repo.path().to_path_buf();
        std::thread::spawn(move || {
            bounded(
                &repo_path,
                &[
                    "store",
                    "build",
                    "-s",
                    "solo",
                    "--json",
                    "--remote-executor",
                    &url,
                ],
            )
        })
    });
    let started = wait_for_lines(&gate.path().join("started"), 1, &mut child);
    let script: u32 = started[0].parse().unwrap();
    // The worker whose action this is: an ancestor of the script.
    let workers = grid.workers();
    let mut pid = script;
    let worker = loop {
        if workers.contains(&pid) {
            break pid;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        pid = after.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(pid > 1, "no worker runs the script {script}");
    };
    unsafe {
        libc::kill(worker as i32, libc::SIGKILL);
        // Its action goes with it, as with a machine that died.
        libc::kill(-(script as i32), libc::SIGKILL);
        libc::kill(script as i32, libc::SIGKILL);
    }
    std::fs::write(gate.path().join("go"), "").unwrap();
    let out = child.take().unwrap().join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        std::fs::read_to_string(gate.path().join("started"))
            .unwrap()
            .lines()
            .count(),
        2,
        "the server gave the action to the other worker"
    );
    assert_eq!(report["remote_executor"]["actions"], 2, "{report:#}");
    let server = repo.path().join(".out/solo/storefront-middleware/.deploy");
    assert!(server.is_dir());
}
