//! `strata store build`: builds run in each composed app with the
//! repository's package manager, equal keys share one run, outputs come
//! back from the cache after `rm -rf .out`, failures stay isolated, and
//! each store's `.deploy` serves that store's content.

use std::time::{Duration, Instant};

use crate::fixtures::status;
use crate::util::{Repo, Server, example};

const MW: &str = "storefront-middleware";
const FE: &str = "storefront-unified-nextjs";

#[test]
fn the_example_builds_and_each_deploy_serves_its_store() {
    let repo = example();
    repo.ok(&["store", "build"]);
    let deploy = |store: &str, app: &str| repo.path().join(format!(".out/{store}/{app}/.deploy"));
    let cases = [
        (
            "fashion-us",
            "Fashion header",
            "Fashion US footer",
            "\"currency\":\"USD\"",
            "base logo",
        ),
        (
            "fashion-eu",
            "Fashion header",
            "Base footer",
            "\"currency\":\"EUR\"",
            "fashion eu logo",
        ),
        (
            "sports",
            "Sports header",
            "Base footer",
            "\"catalog\":\"base catalog\"",
            "base logo",
        ),
    ];
    for (store, header, footer, middleware, logo) in cases {
        let web = Server::start(&deploy(store, FE));
        let page = web.get("/");
        assert!(
            page.contains(header) && page.contains(footer),
            "{store}: {page}"
        );
        assert_eq!(web.get("/logo.txt").trim(), logo, "{store}");
        let api = Server::start(&deploy(store, MW));
        assert!(api.get("/").contains(middleware), "{store}");
    }
    // Only what production needs: no sources, no build scripts.
    let mw = deploy("fashion-us", MW);
    assert!(mw.join("lib/index.mjs").exists() && mw.join("package.json").exists());
    assert!(!mw.join("src").exists() && !mw.join("scripts").exists());
    let fe = deploy("fashion-us", FE);
    assert!(!fe.join("components").exists() && !fe.join("pages").exists());
}

#[test]
fn equal_keys_share_one_run_and_a_second_build_runs_nothing() {
    let repo = Repo::buildable();
    let (code, report, stderr) = repo.build_json(&[]);
    assert_eq!(code, 0, "{stderr}");
    // r1 and r2 compose the same middleware: one script for both.
    let builds = repo.builds();
    assert_eq!(
        builds
            .iter()
            .filter(|b| b.starts_with("middleware"))
            .count(),
        2,
        "{builds:?}"
    );
    assert_eq!(
        builds.iter().filter(|b| b.starts_with("frontend")).count(),
        3,
        "{builds:?}"
    );
    let shared = ["r1", "r2"]
        .iter()
        .filter(|s| status(&report, s, MW, "build") == "shared")
        .count();
    assert_eq!(shared, 1, "{report}");
    assert_eq!(status(&report, "r1", "playwright", "build"), "no-script");

    let (code, report, _) = repo.build_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(repo.builds().len(), 5, "a no-op build runs no script");
    assert_eq!(report["scripts_run"], 0);
    assert_eq!(status(&report, "solo", FE, "build"), "cached");
    assert_eq!(status(&report, "solo", FE, "deploy"), "cached");
}

#[test]
fn after_rm_rf_out_outputs_are_restored_without_running_scripts() {
    let repo = Repo::buildable();
    repo.ok(&["store", "build"]);
    let before = repo.builds().len();
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    let (code, report, stderr) = repo.build_json(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(repo.builds().len(), before, "no build script may run");
    assert_eq!(status(&report, "solo", MW, "build"), "restored");
    let web = Server::start(
        &repo
            .path()
            .join(".out/solo/storefront-unified-nextjs/.deploy"),
    );
    assert_eq!(web.get("/").trim(), "solo banner");
    assert_eq!(web.get("/robots.txt").trim(), "User-agent: *");
    // Deleted outputs are noticed too.
    std::fs::remove_dir_all(repo.path().join(".out/r1/storefront-middleware/lib")).unwrap();
    let (_, report, _) = repo.build_json(&[]);
    assert_eq!(status(&report, "r1", MW, "build"), "restored");
    assert_eq!(repo.builds().len(), before);
}

#[test]
fn an_edit_rebuilds_only_what_it_reaches() {
    let repo = Repo::buildable();
    repo.ok(&["store", "build"]);
    let before = repo.builds().len();
    repo.write(
        "apps/stores/brand/stores/r2/storefront-unified-nextjs/components/banner.html",
        "r2 banner v2\n",
    );
    let (code, report, _) = repo.build_json(&[]);
    assert_eq!(code, 0);
    let after = repo.builds();
    assert_eq!(after.len(), before + 1, "{after:?}");
    assert!(
        after
            .last()
            .unwrap()
            .ends_with("/.out/r2/storefront-unified-nextjs")
    );
    assert_eq!(status(&report, "r2", FE, "build"), "built");
    assert_eq!(status(&report, "r1", FE, "build"), "cached");
    let web = Server::start(
        &repo
            .path()
            .join(".out/r2/storefront-unified-nextjs/.deploy"),
    );
    assert_eq!(web.get("/").trim(), "r2 banner v2");
}

#[test]
fn a_failed_build_is_isolated_reported_and_never_cached() {
    let repo = Repo::buildable();
    repo.write("apps/stores/solo/storefront-middleware/src/fail", "");
    let (code, report, stderr) = repo.build_json(&[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("solo/storefront-middleware"), "{stderr}");
    assert!(
        stderr.contains("error: src/fail asks this build to fail"),
        "the log's last lines: {stderr}"
    );
    let log = std::fs::read_to_string(
        repo.path()
            .join(".out/solo/storefront-middleware/.strata-build.log"),
    )
    .unwrap();
    assert!(log.contains("compiling the middleware") && log.contains("asks this build to fail"));
    assert_eq!(status(&report, "solo", MW, "build"), "failed");
    assert_eq!(status(&report, "solo", FE, "build"), "skipped");
    assert_eq!(status(&report, "r1", FE, "build"), "built");
    assert_eq!(status(&report, "r2", FE, "deploy"), "prepared");

    let runs = repo.builds().len();
    let (code, _, _) = repo.build_json(&[]);
    assert_eq!(code, 1);
    assert_eq!(repo.builds().len(), runs + 1, "the failed build runs again");
    std::fs::remove_file(
        repo.path()
            .join("apps/stores/solo/storefront-middleware/src/fail"),
    )
    .unwrap();
    let (code, report, _) = repo.build_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(status(&report, "solo", FE, "deploy"), "prepared");
}

#[test]
fn fail_fast_starts_nothing_after_a_failure() {
    let repo = Repo::buildable();
    repo.write("apps/storefront-middleware/src/fail", "");
    let (code, _, _) = repo.build_json(&["-j", "1", "--fail-fast"]);
    assert_eq!(code, 1);
    assert_eq!(repo.builds().len(), 1, "{:?}", repo.builds());
    std::fs::remove_file(repo.path().join("builds.log")).unwrap();
    let (code, _, _) = repo.build_json(&["-j", "1"]);
    assert_eq!(code, 1);
    // Without it, every middleware build is tried (r1 and r2 share a key,
    // but a failed build is not shared: r2 tries again).
    assert_eq!(repo.builds().len(), 3, "{:?}", repo.builds());
}

#[test]
fn filter_selects_apps() {
    let repo = Repo::buildable();
    let (code, report, _) = repo.build_json(&["--filter", MW]);
    assert_eq!(code, 0);
    assert!(repo.builds().iter().all(|b| b.starts_with("middleware")));
    assert_eq!(status(&report, "solo", MW, "deploy"), "prepared");
    assert!(
        !repo
            .path()
            .join(".out/solo/storefront-unified-nextjs/.deploy")
            .exists()
    );
    let (code, _, _) = repo.build_json(&["--filter", "!storefront-unified-nextjs", "-s", "solo"]);
    assert_eq!(code, 0);
    assert!(repo.builds().iter().all(|b| b.starts_with("middleware")));
    let (code, _, stderr) = repo.build_json(&["--filter", "nope"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no base app \"nope\""), "{stderr}");
}

#[test]
fn a_next_app_without_standalone_output_names_next_config() {
    let repo = Repo::buildable();
    repo.write(
        "apps/storefront-unified-nextjs/build.mjs",
        "import { mkdirSync } from 'node:fs'; mkdirSync('.next/server', { recursive: true });\n",
    );
    let (code, report, stderr) = repo.build_json(&["-s", "solo"]);
    assert_eq!(code, 1);
    assert_eq!(status(&report, "solo", FE, "deploy"), "failed");
    assert!(
        stderr.contains("next.config") && stderr.contains("standalone"),
        "{stderr}"
    );
}

/// A build of `solo` whose middleware script hangs (with a child of its
/// own), once both processes run: the repo, strata, and their pids.
fn slow_build() -> (Repo, std::process::Child, Vec<i32>) {
    let repo = Repo::buildable();
    repo.write("apps/stores/solo/storefront-middleware/src/slow", "");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(repo.path())
        .args(["store", "build", "-s", "solo"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pids_file = repo.path().join("slow.pids");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pids_file.exists() {
        assert!(Instant::now() < deadline, "the slow build never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let pids: Vec<i32> = std::fs::read_to_string(&pids_file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    (repo, child, pids)
}

#[test]
fn sigint_stops_every_build_process_and_records_nothing() {
    let (repo, mut child, pids) = slow_build();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130));
    let gone = |pid: i32| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if !alive(pid) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for pid in pids {
        assert!(gone(pid), "process {pid} outlived strata");
    }
    // Nothing half-done was recorded: the build runs again.
    std::fs::remove_file(
        repo.path()
            .join("apps/stores/solo/storefront-middleware/src/slow"),
    )
    .unwrap();
    let before = repo.builds().len();
    let (code, report, _) = repo.build_json(&["-s", "solo"]);
    assert_eq!(code, 0);
    assert_eq!(status(&report, "solo", MW, "build"), "built");
    assert!(repo.builds().len() > before);
}

/// Whether `pid` is a live process (a zombie has no cmdline; a live
/// process does).
fn alive(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

#[test]
fn builds_a_sigkilled_run_left_going_are_stopped_by_the_next_run() {
    sigkilled_run_left_going(false);
}

/// The same when the group's leader (the package manager) died too and
/// only the processes under it go on.
#[test]
fn builds_left_going_without_their_leader_are_stopped_too() {
    sigkilled_run_left_going(true);
}

/// The process group of `pid`, from `/proc`.
fn group_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn sigkilled_run_left_going(kill_leader: bool) {
    let (repo, mut child, pids) = slow_build();
    // SIGKILL: no handler runs, and the build goes on without strata.
    child.kill().unwrap();
    child.wait().unwrap();
    if kill_leader {
        let leader = group_of(pids[0]);
        assert!(!pids.contains(&leader), "the script is not the leader");
        // SAFETY: a signal to one process this test's run started.
        unsafe { libc::kill(leader, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(leader) {
            assert!(Instant::now() < deadline, "the leader did not die");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for &pid in &pids {
        assert!(
            alive(pid),
            "process {pid} died with strata: the premise is gone"
        );
    }
    std::fs::remove_file(
        repo.path()
            .join("apps/stores/solo/storefront-middleware/src/slow"),
    )
    .unwrap();
    let (code, report, stderr) = repo.build_json(&["-s", "solo"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("stopped 1 process group"), "{stderr}");
    // Gone before the next run built anything in the folder it wrote in.
    for &pid in &pids {
        assert!(!alive(pid), "process {pid} outlived the next run");
    }
    assert_eq!(status(&report, "solo", MW, "build"), "built");
    assert!(
        repo.path()
            .join(".out/solo/storefront-middleware/lib/index.mjs")
            .is_file()
    );
    // The ledger lists nothing once the run is over: a third run stops
    // nothing.
    let (code, _, stderr) = repo.build_json(&["-s", "solo"]);
    assert_eq!(code, 0);
    assert!(!stderr.contains("stopped"), "{stderr}");
}

#[test]
fn env_files_are_build_inputs_but_never_cached_or_deployed() {
    let repo = Repo::buildable();
    repo.ok(&["store", "compose"]);
    let secret = "API_TOKEN=hunter2-very-secret";
    repo.write(
        ".out/solo/storefront-middleware/.env.local",
        &format!("{secret}\n"),
    );
    let (code, _, stderr) = repo.build_json(&["-s", "solo"]);
    assert_eq!(code, 0, "{stderr}");
    let runs = repo.builds().len();
    // A changed .env file is a changed input: the build runs again.
    repo.write(
        ".out/solo/storefront-middleware/.env.local",
        "API_TOKEN=rotated\n",
    );
    let (_, report, _) = repo.build_json(&["-s", "solo"]);
    assert_eq!(status(&report, "solo", MW, "build"), "built");
    // The frontend builds on the middleware's outputs, which came out the
    // same: it is cut off.
    assert_eq!(repo.builds().len(), runs + 1);
    assert_eq!(status(&report, "solo", FE, "build"), "cached");
    // Neither the cache nor .deploy holds the file or its value.
    let grep = std::process::Command::new("grep")
        .args([
            "-rl",
            "hunter2",
            ".strata",
            ".out/solo/storefront-middleware/.deploy",
        ])
        .current_dir(repo.path())
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );
    assert!(
        !repo
            .path()
            .join(".out/solo/storefront-middleware/.deploy/.env.local")
            .exists()
    );
}

/// Regression (review of the one key scheme): a committed `.env*` file is
/// part of the composition and of the build key as materialize writes it,
/// so a build from a fresh `.out` and the next run agree on the key: the
/// second runs no script, and after `rm -rf .out` the build is restored.
#[test]
fn a_committed_env_file_gives_one_key_from_a_fresh_out_and_after() {
    let repo = Repo::buildable();
    repo.write(
        "apps/storefront-middleware/.env.production",
        "PUBLIC_API=https://api.example.invalid\n",
    );
    let (code, _, stderr) = repo.build_json(&["-s", "solo"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        repo.path()
            .join(".out/solo/storefront-middleware/.env.production")
            .is_file()
    );
    let runs = repo.builds().len();
    let (_, report, _) = repo.build_json(&["-s", "solo"]);
    assert_eq!(report["scripts_run"], 0, "{report}");
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    let (_, report, _) = repo.build_json(&["-s", "solo"]);
    assert_eq!(report["scripts_run"], 0, "{report}");
    assert_eq!(status(&report, "solo", MW, "build"), "restored");
    assert_eq!(repo.builds().len(), runs);
}
