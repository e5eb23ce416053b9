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

use crate::remote::run;
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
        Self::start_on(workers, None)
    }

    /// Starts BuildGrid on `port` (a free one when `None`).
    pub fn start_on(workers: usize, port: Option<u16>) -> BuildGrid {
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
            .args(
                port.map(|p| vec!["--port".to_string(), p.to_string()])
                    .unwrap_or_default(),
            )
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

    fn port(&self) -> u16 {
        self.values["REAPI_PORT"].parse().unwrap()
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

/// Installed dependencies: 1,500 files of 3 KB (more than one batch of
/// blobs) and a 6 MB binary (sent through ByteStream), the same in every
/// monorepo; and a 5 MB banner in r1 (a page fetched through ByteStream).
fn install(repo: &Repo) {
    let big: String = (0..6_000_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    repo.write("node_modules/dep-native/bin/tool.node", &big);
    let banner: String = (0..5_000_000)
        .map(|i| (b'A' + (i % 23) as u8) as char)
        .collect();
    repo.write(
        "apps/stores/brand/stores/r1/storefront-unified-nextjs/components/banner.html",
        &banner,
    );
    for i in 0..1500 {
        let line = format!("export const v{i} = {i}; // a line of an installed package\n");
        repo.write(
            &format!("node_modules/dep-{}/lib/file{i}.js", i % 15),
            &line.repeat(3000 / line.len()),
        );
    }
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
    install(&remote);
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
    install(&local);
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
    install(&other);
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

    // One store's banner changes: one action runs, and what is sent is
    // that file and the folders above it, not the 4.5 MB node_modules nor
    // the rest of the app.
    remote.write(
        "apps/stores/solo/storefront-unified-nextjs/components/banner.html",
        "solo banner, changed\n",
    );
    let (code, report, stderr) = run(
        &remote,
        &["store", "build", "--json", "--remote-executor", &grid.url()],
    );
    assert_eq!(code, 0, "{stderr}");
    let executor = &report["remote_executor"];
    assert_eq!(executor["executed"], 1, "{report:#}");
    let sent = executor["uploaded"].as_u64().unwrap();
    assert!(sent > 0 && sent < 16_000, "{sent} bytes sent: {report:#}");
    // The big page came back whole.
    assert_eq!(
        std::fs::metadata(
            remote
                .path()
                .join(".out/r1/storefront-unified-nextjs/.deploy/.next/server/page.html")
        )
        .unwrap()
        .len(),
        5_000_000
    );
    let page = remote
        .path()
        .join(".out/solo/storefront-unified-nextjs/.deploy/.next/server/page.html");
    assert_eq!(
        std::fs::read_to_string(page).unwrap(),
        "solo banner, changed\n"
    );
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

/// Builds the solo store on the executor at `url`, in the background.
fn solo_in_background(repo: &Repo, url: String) -> std::thread::JoinHandle<std::process::Output> {
    let root = repo.path().to_path_buf();
    std::thread::spawn(move || {
        bounded(
            &root,
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
    let mut child = Some(solo_in_background(&repo, url));
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
    assert!(
        report["remote_executor"]["resumed"].as_u64().unwrap() >= 1,
        "the execution was waited for again, not submitted again: {report:#}"
    );
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
    let mut child = Some(solo_in_background(&repo, url));
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

/// Reads every blob `result` names with `read`: its files, its trees
/// (decoded from what `read` gives) and their files.
fn each_blob(
    result: &strata_engine::reapi::re::ActionResult,
    read: &mut dyn FnMut(&strata_engine::reapi::Digest) -> Vec<u8>,
) {
    use prost::Message as _;
    for file in &result.output_files {
        read(file.digest.as_ref().unwrap());
    }
    for dir in &result.output_directories {
        let tree = strata_engine::reapi::re::Tree::decode(
            read(dir.tree_digest.as_ref().unwrap()).as_slice(),
        )
        .unwrap();
        for folder in tree.root.iter().chain(&tree.children) {
            for file in &folder.files {
                read(file.digest.as_ref().unwrap());
            }
        }
    }
}

/// A clone of `first` at another path, served by the cache at `url`
/// alone: it runs no script and gets `first`'s `.deploy` folders.
fn a_clone_builds_from_the_cache_alone(first: &Repo, url: &str) {
    let other = clone_of(first);
    let (code, report, stderr) = run(&other, &["store", "build", "--json", "--remote-cache", url]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["scripts_run"], 0, "{report:#}");
    assert!(other.builds().is_empty());
    assert_eq!(deploys(&other), deploys(first));
}

/// What bazel-remote checks of an `/ac/` entry before it stores it: an
/// `ActionResult` whose output files and trees are in the CAS, and whose
/// trees' files are too. Returns the digests of the entries' actions
/// (their `Action` blobs are in the CAS as well).
fn validate_http_cache(data: &Path) -> Vec<strata_engine::reapi::Digest> {
    use prost::Message as _;
    use strata_engine::reapi::{Digest, digest_of, re};
    let cas = |d: &Digest| -> Vec<u8> {
        let bytes = std::fs::read(data.join("cas").join(&d.hash))
            .unwrap_or_else(|_| panic!("blob {} is not in the cache", d.hash));
        assert_eq!(digest_of(&bytes), *d, "blob {} is whole", d.hash);
        bytes
    };
    let mut actions = Vec::new();
    let entries: Vec<_> = std::fs::read_dir(data.join("ac"))
        .unwrap()
        .flatten()
        .collect();
    assert!(!entries.is_empty());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(entry.path()).unwrap();
        let result = re::ActionResult::decode(bytes.as_slice())
            .unwrap_or_else(|e| panic!("ac/{name} is not an ActionResult: {e}"));
        assert_eq!(result.exit_code, 0);
        assert!(
            !result.output_directories.is_empty(),
            "ac/{name}: {result:?}"
        );
        each_blob(&result, &mut |d| cas(d));
        // The action the entry is kept under is in the CAS too.
        let action_bytes = std::fs::read(data.join("cas").join(&name))
            .unwrap_or_else(|_| panic!("the action of ac/{name} is not in the cache"));
        let action = re::Action::decode(action_bytes.as_slice()).unwrap();
        cas(action.command_digest.as_ref().unwrap());
        actions.push(digest_of(&action_bytes));
    }
    actions
}

#[test]
fn entries_written_over_http_are_valid_actionresults_a_grpc_clone_reads() {
    crate::registry::require("nginx", "nginx");
    let http = crate::remote::CacheServer::start();
    let grid = BuildGrid::start(0);
    let first = committed();
    let (code, _, stderr) = run(
        &first,
        &["store", "build", "--json", "--remote-cache", &http.url()],
    );
    assert_eq!(code, 0, "{stderr}");
    let actions = validate_http_cache(&http.data());
    assert_eq!(actions.len(), 5, "one entry per distinct build");

    // The same store served over gRPC, as bazel-remote serves one store
    // through both: every blob, then every entry under its action.
    let client = strata_engine::reapi::Client::connect(&grid.url(), Default::default()).unwrap();
    let blobs: Vec<_> = std::fs::read_dir(http.data().join("cas"))
        .unwrap()
        .flatten()
        .map(|e| strata_engine::reapi::Blob {
            digest: strata_engine::reapi::Digest {
                hash: e.file_name().to_string_lossy().into_owned(),
                size_bytes: e.metadata().unwrap().len() as i64,
            },
            source: strata_engine::reapi::Source::File(e.path()),
        })
        .collect();
    client.upload(blobs).unwrap();
    for action in &actions {
        use prost::Message as _;
        let bytes = std::fs::read(http.data().join("ac").join(&action.hash)).unwrap();
        let result = strata_engine::reapi::re::ActionResult::decode(bytes.as_slice()).unwrap();
        client.update_action_result(action, &result).unwrap();
    }

    a_clone_builds_from_the_cache_alone(&first, &grid.url());
}

#[test]
fn a_sandboxed_build_equals_a_plain_one_and_finds_an_undeclared_input() {
    let sandboxed = committed();
    let temp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(sandboxed.path())
        .args(["store", "build", "--json", "--sandbox"])
        .env("TMPDIR", temp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = committed();
    let (code, _, stderr) = run(&plain, &["store", "build", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(deploys(&sandboxed), deploys(&plain));
    // The builds ran in sandboxes in the temporary folder (their
    // `builds.log` was there), and those are gone.
    assert!(sandboxed.builds().is_empty(), "{:?}", sandboxed.builds());
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);

    // A build that reads a file no input declares: fine here, not there.
    let repo = committed();
    repo.write("notes/banner.txt", "read from outside the app\n");
    let base =
        std::fs::read_to_string(repo.path().join("apps/storefront-middleware/build.mjs")).unwrap();
    repo.write(
        "apps/stores/solo/storefront-middleware/build.mjs",
        &format!("{base}\nconsole.log(readFileSync(`${{root}}/notes/banner.txt`, \"utf8\"));\n")
            .replace(
                "import { appendFileSync,",
                "import { readFileSync, appendFileSync,",
            ),
    );
    let (code, _, stderr) = run(&repo, &["store", "build", "--json", "-s", "solo"]);
    assert_eq!(code, 0, "a plain build reads it: {stderr}");
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    std::fs::remove_dir_all(repo.path().join(".strata")).unwrap();
    let (code, _, stderr) = run(
        &repo,
        &["store", "build", "--json", "-s", "solo", "--sandbox"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("build of solo/storefront-middleware failed")
            && stderr.contains("in a sandbox holding only the input root")
            && stderr.contains("ENOENT"),
        "{stderr}"
    );
}

/// nginx terminating TLS in front of a REAPI server (gRPC over HTTP/2),
/// demanding a bearer token, with a self-signed certificate for
/// `localhost`.
struct TlsFront {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsFront {
    fn start(upstream: &str, token: &str) -> TlsFront {
        crate::registry::require("nginx", "nginx");
        crate::registry::require("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A private CA, and a certificate for localhost it signed.
        let openssl = |args: &[&str]| {
            let made = Command::new("openssl")
                .current_dir(d)
                .args(args)
                .output()
                .unwrap();
            assert!(
                made.status.success(),
                "{}",
                String::from_utf8_lossy(&made.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=strata test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
        ]);
        std::fs::write(
            d.join("leaf.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "cert.pem",
            "-extfile",
            "leaf.ext",
        ]);
        std::fs::create_dir_all(d.join("logs")).unwrap();
        let port = crate::util::free_port();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/logs/error.log;\npid {d}/nginx.pid;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{\n    listen 127.0.0.1:{port} ssl http2;\n    ssl_certificate {d}/cert.pem;\n    ssl_certificate_key {d}/key.pem;\n    client_max_body_size 0;\n    location / {{\n      if ($http_authorization != \"Bearer {token}\") {{ return 401; }}\n      grpc_pass grpc://{upstream};\n    }}\n  }}\n}}\n",
            d = d.display()
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsFront { child, port, dir }
    }

    fn url(&self) -> String {
        format!("grpcs://localhost:{}", self.port)
    }

    /// The CA that signed the server's certificate.
    fn cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_cache_behind_tls_and_a_token_is_used_and_the_token_is_never_shown() {
    let grid = BuildGrid::start(1);
    let token = "t0ken-that-must-not-show";
    let front = TlsFront::start(&grid.address(), token);
    let cert = front.cert();
    let first = committed();
    let header = format!("authorization=Bearer {token}");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = ["store", "build", "--json", "--remote-cache", &front.url()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let with_tls = {
        let mut a = args(&[]);
        a.extend(["--remote-ca".to_string(), cert.display().to_string()]);
        a.extend(["--remote-header".to_string(), header.clone()]);
        a
    };
    let with_tls: Vec<&str> = with_tls.iter().map(String::as_str).collect();
    let (code, report, stderr) = run(&first, &with_tls);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        report["warnings"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert!(
        report["remote_cache"]["uploaded"].as_u64().unwrap() > 0,
        "{report:#}"
    );

    let second = clone_of(&first);
    let (code, report, stderr) = run(&second, &with_tls);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["scripts_run"], 0, "{report:#}");
    assert_eq!(deploys(&second), deploys(&first));

    // A wrong token: a warning (the cache only saves time), never the
    // token itself.
    let third = clone_of(&first);
    let wrong = args(&["--remote-header", "authorization=Bearer wr0ng-t0ken"]);
    let mut wrong: Vec<String> = wrong;
    wrong.extend(["--remote-ca".to_string(), cert.display().to_string()]);
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let (code, report, stderr) = run(&third, &wrong);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(third.builds().len(), 5, "built here");
    let text = format!("{stderr}{report}");
    assert!(text.contains("going on without"), "{text}");
    assert!(
        !text.contains("wr0ng-t0ken") && !text.contains(token),
        "{text}"
    );

    // Without the certificate, the server is not trusted.
    let fourth = clone_of(&first);
    let untrusted = args(&[
        "--remote-header",
        "authorization=Bearer t0ken-that-must-not-show",
    ]);
    let untrusted: Vec<&str> = untrusted.iter().map(String::as_str).collect();
    let (code, report, stderr) = run(&fourth, &untrusted);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(fourth.builds().len(), 5, "built here: {report:#}");
    assert!(!format!("{stderr}{report}").contains(token));

    // The executor behind the same front, its token from the environment
    // (it is the cache's server too): the builds run there.
    let fifth = committed();
    fifth.write(
        "apps/stores/solo/storefront-unified-nextjs/components/banner.html",
        "solo banner, built behind TLS\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(fifth.path())
        .args([
            "store",
            "build",
            "--json",
            "-s",
            "solo",
            "--remote-executor",
            &front.url(),
        ])
        .arg("--remote-ca")
        .arg(&cert)
        .env("STRATA_REMOTE_CACHE_TOKEN", token)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["remote_executor"]["executed"], 1, "{report:#}");
    assert!(fifth.builds().is_empty());
    assert!(!format!("{stderr}{report}").contains(token));
}

#[test]
fn inputs_a_restarted_server_lost_are_sent_again() {
    let grid = BuildGrid::start(1);
    let port = grid.port();
    let repo = committed();
    install(&repo);
    let (code, _, stderr) = run(
        &repo,
        &[
            "store",
            "build",
            "--json",
            "-s",
            "solo",
            "--remote-executor",
            &grid.url(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    // The server starts again at the same address with empty storage:
    // what strata recorded as held there is gone.
    drop(grid);
    let grid = BuildGrid::start_on(1, Some(port));
    repo.write(
        "apps/stores/solo/storefront-unified-nextjs/components/banner.html",
        "solo banner, after the restart\n",
    );
    let (code, report, stderr) = run(
        &repo,
        &[
            "store",
            "build",
            "--json",
            "-s",
            "solo",
            "--remote-executor",
            &grid.url(),
        ],
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let executor = &report["remote_executor"];
    assert_eq!(executor["executed"], 1, "{report:#}");
    assert!(
        executor["uploaded"].as_u64().unwrap() > 6_000_000,
        "node_modules was sent again: {report:#}"
    );
    let page = repo
        .path()
        .join(".out/solo/storefront-unified-nextjs/.deploy/.next/server/page.html");
    assert_eq!(
        std::fs::read_to_string(page).unwrap(),
        "solo banner, after the restart\n"
    );
}

#[test]
fn entries_written_over_grpc_are_read_over_http_by_another_clone() {
    use prost::Message as _;
    use strata_engine::reapi::Digest;
    crate::registry::require("nginx", "nginx");
    let grid = BuildGrid::start(0);
    let http = crate::remote::CacheServer::start();
    let first = committed();
    let (code, report, stderr) = run(
        &first,
        &["store", "build", "--json", "--remote-cache", &grid.url()],
    );
    assert_eq!(code, 0, "{stderr}");
    // The actions the builds are kept under, as the report names them.
    let mut actions: Vec<Digest> = report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["apps"].as_array().unwrap())
        .filter_map(|a| a["remote_action"].as_str())
        .map(|text| {
            let (hash, size) = text.split_once('/').unwrap();
            Digest {
                hash: hash.to_string(),
                size_bytes: size.parse().unwrap(),
            }
        })
        .collect();
    actions.sort_by(|a, b| a.hash.cmp(&b.hash));
    actions.dedup();
    assert_eq!(actions.len(), 5, "{report:#}");

    // The same store served over HTTP, as bazel-remote serves one store
    // through both: each entry under its action, and every blob it names.
    let client = strata_engine::reapi::Client::connect(&grid.url(), Default::default()).unwrap();
    let data = http.data();
    std::fs::create_dir_all(data.join("ac")).unwrap();
    std::fs::create_dir_all(data.join("cas")).unwrap();
    let mut copy = |d: &Digest| {
        if d.size_bytes == 0 {
            return Vec::new();
        }
        let bytes = client.read_blob(d).unwrap().unwrap();
        std::fs::write(data.join("cas").join(&d.hash), &bytes).unwrap();
        bytes
    };
    for action in &actions {
        let result = client.get_action_result(action).unwrap().unwrap();
        std::fs::write(data.join("ac").join(&action.hash), result.encode_to_vec()).unwrap();
        each_blob(&result, &mut copy);
    }

    a_clone_builds_from_the_cache_alone(&first, &http.url());
}
