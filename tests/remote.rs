//! CI at scale: a portable `--cache-dir`, and a remote cache shared by
//! checkouts at different paths, served by a real nginx with WebDAV (the
//! Bazel HTTP cache layout), including a corrupt blob and a server that
//! stops mid-run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures::status;
use crate::registry::require;
use crate::util::{Repo, Server, free_port, git};

/// nginx with WebDAV PUT on a free loopback port, storing under a temp dir.
pub struct CacheServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl CacheServer {
    pub fn start() -> CacheServer {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "nginx is not installed: install the Debian package nginx (scripts/test does)"
                )
            });
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/logs/error.log;\npid {d}/nginx.pid;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{\n    listen 127.0.0.1:{port};\n    root {d}/data;\n    client_max_body_size 0;\n    location / {{\n      dav_methods PUT DELETE;\n      create_full_put_path on;\n      dav_access user:rw group:r all:r;\n    }}\n  }}\n}}\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = CacheServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The cache's URL, with credentials the server ignores (they must
    /// never be printed).
    pub fn url(&self) -> String {
        format!("http://ci-user:cache-s3cret@127.0.0.1:{}", self.port)
    }

    /// The folder the server stores `ac/` and `cas/` in.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The blobs stored.
    pub fn blobs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("data/cas"))
            .map(|e| e.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CacheServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The buildable fixture, committed, and a clone of it at another path.
fn checkouts() -> (Repo, Repo) {
    let first = Repo::buildable();
    first.git_init();
    let holder = tempfile::tempdir().unwrap();
    let url = format!("file://{}", first.path().display());
    git(holder.path(), &["clone", "-q", &url, "deeper/second"]);
    let second = Repo::at(holder.path().join("deeper/second"), holder);
    (first, second)
}

/// Runs strata on `repo`: (exit code, the JSON report, stderr).
pub fn run(repo: &Repo, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = repo.strata(args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn digests(report: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for store in report["stores"].as_array().unwrap() {
        for image in store["images"].as_array().unwrap() {
            out.push(format!(
                "{} {}",
                image["image"].as_str().unwrap().rsplit('/').next().unwrap(),
                image["digest"]
            ));
        }
    }
    out
}

#[test]
fn a_second_checkout_builds_and_deploys_from_the_remote_cache_alone() {
    require("nginx", "nginx");
    let cache = CacheServer::start();
    let (first, second) = checkouts();
    let url = cache.url();
    let (code, one, stderr) = run(
        &first,
        &[
            "store",
            "deploy",
            "--json",
            "--remote-cache",
            &url,
            "--base-image",
            "scratch",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !cache.blobs().is_empty(),
        "the first checkout uploaded its outputs"
    );
    assert_eq!(first.builds().len(), 5);

    let summary_file = second.path().join("summary.json");
    let (code, two, stderr) = run(
        &second,
        &[
            "store",
            "deploy",
            "--json",
            "--remote-cache",
            &url,
            "--base-image",
            "scratch",
            "--summary",
            summary_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        second.builds().is_empty(),
        "no build script may run: {:?}",
        second.builds()
    );
    assert_eq!(two["build"]["scripts_run"], 0);
    assert_eq!(
        digests(&one),
        digests(&two),
        "identical images from both checkouts"
    );
    for out in [&stderr, &two.to_string()] {
        assert!(!out.contains("cache-s3cret"), "credentials leaked: {out}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_file).unwrap()).unwrap();
    let solo = summary["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["store"] == "solo")
        .unwrap();
    assert_eq!(
        solo["stages"]["build"]["storefront-middleware"]["source"],
        "remote"
    );
    assert!(!summary.to_string().contains("cache-s3cret"));
    let web = Server::start(
        &second
            .path()
            .join(".out/solo/storefront-unified-nextjs/.deploy"),
    );
    assert_eq!(web.get("/").trim(), "solo banner");
}

#[test]
fn a_corrupt_blob_is_rejected_and_rebuilt() {
    require("nginx", "nginx");
    let cache = CacheServer::start();
    let (first, second) = checkouts();
    let url = cache.url();
    let (code, _, stderr) = run(
        &first,
        &[
            "store",
            "build",
            "--json",
            "--remote-cache",
            &url,
            "-s",
            "solo",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    // Every blob on the server is damaged.
    for blob in cache.blobs() {
        let mut bytes = std::fs::read(&blob).unwrap();
        bytes.extend_from_slice(b"tampered");
        std::fs::write(&blob, bytes).unwrap();
    }
    let (code, report, stderr) = run(
        &second,
        &[
            "store",
            "build",
            "--json",
            "--remote-cache",
            &url,
            "-s",
            "solo",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("corrupt"), "{stderr}");
    assert_eq!(
        status(&report, "solo", "storefront-middleware", "build"),
        "built"
    );
    assert!(!second.builds().is_empty());
    let web = Server::start(
        &second
            .path()
            .join(".out/solo/storefront-unified-nextjs/.deploy"),
    );
    assert_eq!(web.get("/").trim(), "solo banner");
}

#[test]
fn a_cache_server_stopped_mid_run_gives_a_warning_and_a_correct_result() {
    require("nginx", "nginx");
    let mut cache = CacheServer::start();
    let (_first, second) = checkouts();
    let url = cache.url();
    second.write("slow-frontend", "1500");
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(second.path())
        .args([
            "store",
            "build",
            "--json",
            "--remote-cache",
            &url,
            "-s",
            "solo",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = second.path().join("frontend-started");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "the frontend build never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The middleware has been uploaded; the frontend is building: stop the
    // cache now.
    cache.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("going on without it"), "{stderr}");
    assert!(!stderr.contains("cache-s3cret"));
    let web = Server::start(
        &second
            .path()
            .join(".out/solo/storefront-unified-nextjs/.deploy"),
    );
    assert_eq!(web.get("/").trim(), "solo banner");
}

#[test]
fn a_cache_dir_restored_at_another_path_gives_hits() {
    let (first, second) = checkouts();
    let cache = tempfile::tempdir().unwrap();
    let one = cache.path().join("one");
    let (code, _, stderr) = run(
        &first,
        &[
            "--cache-dir",
            one.to_str().unwrap(),
            "store",
            "build",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    // As a CI cache action restores it: a copy, somewhere else.
    let two = cache.path().join("elsewhere/two");
    std::fs::create_dir_all(two.parent().unwrap()).unwrap();
    crate::util::copy_tree(&one, &two);
    let (code, report, stderr) = run(
        &second,
        &[
            "--cache-dir",
            two.to_str().unwrap(),
            "store",
            "build",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(second.builds().is_empty(), "{:?}", second.builds());
    assert_eq!(report["scripts_run"], 0);
    assert_eq!(
        status(&report, "r2", "storefront-unified-nextjs", "build"),
        "restored"
    );
    assert!(
        !second.path().join(".strata").exists(),
        "all state went to --cache-dir"
    );
}

#[test]
fn shards_split_the_stores_and_profiles_and_summaries_are_written() {
    let repo = Repo::buildable();
    let trace_file = repo.path().join("trace.json");
    let summary_file = repo.path().join("summary.json");
    let mut seen = Vec::new();
    for i in 1..=2 {
        let (code, report, stderr) = run(
            &repo,
            &[
                "store",
                "build",
                "--json",
                "--shard",
                &format!("{i}/2"),
                "--profile",
                trace_file.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        for s in report["stores"].as_array().unwrap() {
            seen.push(s["id"].as_str().unwrap().to_string());
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        ["r1", "r2", "solo"],
        "every store in exactly one shard"
    );
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace_file).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["name"].as_str().unwrap().starts_with("build/") && e["ph"] == "X")
    );
    assert!(
        events
            .iter()
            .all(|e| e["dur"].as_u64().is_some() && e["tid"].as_u64().is_some())
    );

    repo.write(
        "apps/stores/solo/storefront-middleware/src/config.json",
        "{\"currency\": \"CHF\"}\n",
    );
    let (code, _, _) = run(
        &repo,
        &[
            "store",
            "build",
            "--json",
            "--summary",
            summary_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_file).unwrap()).unwrap();
    let solo = summary["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["store"] == "solo")
        .unwrap();
    let mw = &solo["stages"]["build"]["storefront-middleware"];
    assert_eq!(mw["status"], "run");
    assert_eq!(mw["reason"], "out/solo/storefront-middleware changed");
    assert!(mw["bytes"].as_u64().unwrap() > 0);
    let r1 = summary["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["store"] == "r1")
        .unwrap();
    assert_eq!(
        r1["stages"]["build"]["storefront-middleware"]["status"],
        "cached"
    );
}

/// A local cache hit fills an empty remote cache: a CI machine whose
/// `--cache-dir` was carried over restores its builds and uploads them, so
/// a third machine with the remote cache alone runs no build script.
#[test]
fn a_local_hit_fills_an_empty_remote_cache() {
    require("nginx", "nginx");
    let cache = CacheServer::start();
    let (first, second) = checkouts();
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("state");
    let (code, _, stderr) = run(
        &first,
        &[
            "--cache-dir",
            dir.to_str().unwrap(),
            "store",
            "build",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(cache.blobs().is_empty());
    std::fs::remove_dir_all(first.path().join(".out")).unwrap();
    let (code, report, stderr) = run(
        &first,
        &[
            "--cache-dir",
            dir.to_str().unwrap(),
            "store",
            "build",
            "--json",
            "--remote-cache",
            &cache.url(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["scripts_run"], 0);
    assert_eq!(
        status(&report, "solo", "storefront-middleware", "build"),
        "restored"
    );
    assert!(!cache.blobs().is_empty(), "the local hits went up");
    let (code, report, stderr) = run(
        &second,
        &["store", "build", "--json", "--remote-cache", &cache.url()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["scripts_run"], 0, "{report}");
    assert!(second.builds().is_empty(), "{:?}", second.builds());
    assert_eq!(
        status(&report, "solo", "storefront-middleware", "build"),
        "remote"
    );
}
