//! `strata store deploy` killed (SIGKILL) at random instants until 50 kills
//! have landed mid-run (compose, build, image, push or trigger),
//! against a real registry and a console, each time rerun to the end; then
//! audited: `.out` equals a fresh compose, every cached build entry has its
//! outputs, every tag in the registry names a manifest whose blobs are all
//! there, and no deployment was triggered twice (a retry after a crash
//! reuses the idempotency key of the request it may have sent).
//!
//! The instants come from a seeded generator; `STRATA_CRASH_SEED` replays a
//! failing run (the seed is printed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::proxy::Console;
use crate::registry::RegistryServer;
use crate::util::{FileState, Repo, example, tree};

const ROUNDS: usize = 50;

fn deploy_args<'a>(registry: &'a str, console: &'a str) -> Vec<&'a str> {
    vec![
        "store",
        "deploy",
        "--registry",
        registry,
        "--base-image",
        "scratch",
        "--console-url",
        console,
    ]
}

fn strata(repo: &Repo, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--root").arg(repo.path()).args(args);
    cmd
}

/// `.out` without build outputs and deployment records: what compose owns.
fn composed(dir: &Path) -> BTreeMap<String, FileState> {
    tree(dir)
        .into_iter()
        .filter(|(path, _)| {
            !path.contains("/.deploy/")
                && !path.ends_with("/deployment.json")
                && !path.ends_with("/.strata-build.log")
                && !path.contains("/.next/")
                && !path.contains("/lib/")
        })
        .collect()
}

/// Problems with the registry's tags: a manifest or blob that is missing.
fn audit_registry(host: &str) -> Vec<String> {
    let http = reqwest::blocking::Client::new();
    let base = format!("http://{host}/v2");
    let get = |url: &str| -> serde_json::Value {
        http.get(url)
            .header(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .unwrap_or(serde_json::Value::Null)
    };
    let mut problems = Vec::new();
    let catalog = get(&format!("{base}/_catalog?n=1000"));
    for repo in catalog["repositories"].as_array().into_iter().flatten() {
        let repo = repo.as_str().unwrap();
        let tags = get(&format!("{base}/{repo}/tags/list"));
        for tag in tags["tags"].as_array().into_iter().flatten() {
            let tag = tag.as_str().unwrap();
            let manifest = get(&format!("{base}/{repo}/manifests/{tag}"));
            if manifest.is_null() {
                problems.push(format!("{repo}:{tag} names no readable manifest"));
                continue;
            }
            let mut blobs: Vec<&str> = manifest["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["digest"].as_str())
                .collect();
            blobs.extend(manifest["config"]["digest"].as_str());
            if blobs.is_empty() {
                problems.push(format!("{repo}:{tag}: a manifest with no blobs"));
            }
            for blob in blobs {
                let status = http
                    .head(format!("{base}/{repo}/blobs/{blob}"))
                    .send()
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                if status != 200 {
                    problems.push(format!("{repo}:{tag}: blob {blob} is missing ({status})"));
                }
            }
        }
    }
    problems
}

/// xorshift64*: reproducible instants from a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[test]
fn deploys_killed_at_random_instants_leave_nothing_broken() {
    let registry = RegistryServer::start();
    let console = Console::start(Vec::new());
    let url = format!("http://{}", registry.host());
    let console_url = console.url();
    let args = deploy_args(&url, &console_url);
    let repo = example();
    repo.git_init();

    // A cold deploy, then one after an edit, to the end: how long a
    // round's deploy takes.
    let out = strata(&repo, &args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo.write(
        "apps/storefront-middleware/src/round.ts",
        "export const round = -1;\n",
    );
    repo.commit("warm-up");
    let started = Instant::now();
    let out = strata(&repo, &args).output().unwrap();
    assert!(out.status.success());
    // Per kind of round (below): a change to every store's middleware, or
    // to one store's frontend, which is much less work.
    let measured = started.elapsed().as_millis() as u64;
    let mut whole = [measured, measured];

    let seed = std::env::var("STRATA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash harness seed: STRATA_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let mut killed_mid_run = 0;
    let mut round = 0;
    // Until ROUNDS kills have landed while the deploy ran.
    while killed_mid_run < ROUNDS {
        assert!(
            round < ROUNDS * 3,
            "only {killed_mid_run} of {round} kills landed mid-run"
        );
        round += 1;
        // Work for every stage: a change that reaches every store's
        // middleware, or only one store's frontend.
        if round % 2 == 0 {
            repo.write(
                "apps/storefront-middleware/src/round.ts",
                &format!("export const round = {round};\n"),
            );
        } else {
            repo.write(
                "apps/stores/sports/storefront-unified-nextjs/public/round.txt",
                &format!("round {round}\n"),
            );
        }
        repo.commit(&format!("round {round}"));

        let kind = round % 2;
        let delay = Duration::from_millis(rng.below(whole[kind]));
        let mut child = strata(&repo, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let finished = loop {
            if child.try_wait().unwrap().is_some() {
                break Some(started.elapsed());
            }
            if started.elapsed() >= delay {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        match finished {
            None => killed_mid_run += 1,
            // It ran to the end before the kill: deploys are quicker now
            // than when `whole` was measured (a less loaded machine), and
            // later kills are drawn from a shorter span.
            Some(took) => {
                whole[kind] = ((whole[kind] + took.as_millis() as u64) / 2).max(10);
            }
        }
        // SIGKILL: no cleanup code runs.
        let _ = child.kill();
        child.wait().unwrap();

        let out = strata(&repo, &args).output().unwrap();
        assert!(
            out.status.success(),
            "round {round} (killed after {delay:?}, seed {seed}): the rerun failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // `.out` equals a fresh compose of the same tree elsewhere.
    let fresh = tempfile::tempdir().unwrap();
    let status = Command::new("git")
        .args(["clone", "-q"])
        .arg(repo.path())
        .arg(fresh.path().join("repo"))
        .status()
        .unwrap();
    assert!(status.success());
    let clone = fresh.path().join("repo");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(&clone)
        .args(["store", "compose"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let want = composed(&clone.join(".out"));
    let got = composed(&repo.path().join(".out"));
    crate::util::assert_trees_equal(&got, &want);

    // Every cached build entry has its outputs, intact.
    let out = strata(&repo, &["cache", "verify", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "cache verify: {report}");

    // Every tag names a whole image.
    let problems = audit_registry(&registry.host());
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // No deployment was triggered twice: each request (store and images)
    // was sent under one idempotency key, however often it was sent.
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for seen in console.seen.lock().unwrap().iter() {
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        let what = format!("{} {}", body["store"], body["images"]);
        let key = seen
            .header("idempotency-key")
            .expect("every trigger has an idempotency key")
            .to_string();
        keys.entry(what).or_default().insert(key);
    }
    assert!(!keys.is_empty());
    for (what, keys) in &keys {
        assert_eq!(keys.len(), 1, "{what} was deployed {} times", keys.len());
    }
}

/// Killed while the console holds the trigger (received, not answered):
/// the rerun sends the same deployment under the same key.
#[test]
fn a_trigger_cut_short_is_resent_under_the_same_key() {
    let registry = RegistryServer::start();
    let console = Console::start(Vec::new());
    let url = format!("http://{}", registry.host());
    let console_url = console.url();
    let mut args = deploy_args(&url, &console_url);
    args.extend(["-s", "sports"]);
    let repo = example();
    repo.git_init();
    console
        .delay_ms
        .store(60_000, std::sync::atomic::Ordering::SeqCst);
    let mut child = strata(&repo, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while console.seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the trigger never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    console
        .delay_ms
        .store(0, std::sync::atomic::Ordering::SeqCst);
    // The next run is for the next commit, which leaves sports' images as
    // they were: what the crash may have deployed is sent again as it was
    // (its commit too), under its key, never as a second deployment.
    repo.write(
        "apps/stores/fashion/stores/fashion-us/storefront-unified-nextjs/components/footer.html",
        "another store's change\n",
    );
    repo.commit("a change elsewhere");

    let out = strata(&repo, &args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = console.seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "sent again after the crash");
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(
        seen[0].header("idempotency-key"),
        seen[1].header("idempotency-key"),
        "the same deployment, the same key"
    );
    drop(seen);
    // Done now: a third run sends nothing; --force is a new deployment.
    let out = strata(&repo, &args).output().unwrap();
    assert!(out.status.success());
    assert_eq!(console.seen.lock().unwrap().len(), 2);
    let mut forced = args.clone();
    forced.push("--force");
    let out = strata(&repo, &forced).output().unwrap();
    assert!(out.status.success());
    let seen = console.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_ne!(
        seen[2].header("idempotency-key"),
        seen[0].header("idempotency-key")
    );
}
