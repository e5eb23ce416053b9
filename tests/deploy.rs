//! `strata store deploy` with real components: images read back by skopeo
//! and umoci, a real registry (open, with basic auth, two of them), `node`
//! running the unpacked server, and faults injected by a proxy.

use std::path::Path;
use std::process::Command;

use crate::proxy::{Console, Proxy};
use crate::registry::{RegistryServer, inspect, require, skopeo, unpack};
use crate::util::{Repo, Server, assert_trees_equal, example, git, tree};

const MW: &str = "storefront-middleware";
const FE: &str = "storefront-unified-nextjs";

/// The example, committed in a git repository of its own.
fn committed_example() -> Repo {
    let repo = example();
    repo.git_init();
    repo
}

fn head(repo: &Repo) -> String {
    git(repo.path(), &["rev-parse", "HEAD"])
}

fn deploy_json(
    repo: &Repo,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, serde_json::Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--root")
        .arg(repo.path())
        .args(["store", "deploy", "--json"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn image_of<'a>(report: &'a serde_json::Value, store: &str, app: &str) -> &'a serde_json::Value {
    report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == store)
        .and_then(|s| {
            s["images"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["app"] == app)
        })
        .unwrap_or_else(|| panic!("no image for {store}/{app} in {report}"))
}

fn stage<'a>(report: &'a serde_json::Value, store: &str, name: &str) -> &'a str {
    report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == store)
        .and_then(|s| s["stages"][name].as_str())
        .unwrap_or("")
}

/// A base image made with umoci (a file `/etc/base-release` in one layer),
/// copied into `registry` as `base/node:1` by skopeo.
fn push_base(registry: &str, into: &Path) -> String {
    push_base_with(registry, into, "strata test base 1\n")
}

/// [`push_base`], its file holding `release`.
fn push_base_with(registry: &str, into: &Path, release: &str) -> String {
    require("umoci", "umoci");
    let layout = into.join("base-layout");
    let run = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let l = layout.display().to_string();
    run(&["init", "--layout", &l]);
    run(&["new", "--image", &format!("{l}:1")]);
    let bundle = into.join("base-bundle");
    run(&[
        "unpack",
        "--image",
        &format!("{l}:1"),
        &bundle.display().to_string(),
    ]);
    std::fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
    std::fs::write(bundle.join("rootfs/etc/base-release"), release).unwrap();
    run(&[
        "repack",
        "--image",
        &format!("{l}:1"),
        &bundle.display().to_string(),
    ]);
    let name = format!("{registry}/base/node:1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{l}:1"),
        &format!("docker://{name}"),
    ]);
    name
}

#[test]
fn the_local_layout_is_read_by_skopeo_and_umoci_and_its_server_runs() {
    let repo = committed_example();
    let (code, report, stderr) = deploy_json(&repo, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    let sha = head(&repo);
    assert_eq!(report["tag"], sha.as_str());
    require("umoci", "umoci");
    for store in ["fashion-us", "fashion-eu", "sports"] {
        for app in [FE, MW] {
            let reference = format!("{store}-{app}:{sha}");
            let layout = repo.path().join(".strata/oci");
            let info: serde_json::Value = serde_json::from_str(&skopeo(&[
                "inspect",
                &format!("oci:{}:{reference}", layout.display()),
            ]))
            .unwrap();
            assert!(
                info["Labels"]
                    .get("org.opencontainers.image.revision")
                    .is_none(),
                "the commit is in the tag, never in the image: {info}"
            );
            assert_eq!(info["Labels"]["dev.strata.store"], store);
            let digest = image_of(&report, store, app)["digest"].as_str().unwrap();
            assert_eq!(info["Digest"], digest);
            let dir = tempfile::tempdir().unwrap();
            let www = crate::registry::unpack_layout(&layout, &reference, dir.path())
                .join("rootfs/var/www");
            let deploy = repo.path().join(format!(".out/{store}/{app}/.deploy"));
            assert_trees_equal(&tree(&www), &tree(&deploy));
            if app == FE {
                let server = Server::start(&www);
                assert!(server.get("/").contains(if store == "sports" {
                    "Sports header"
                } else {
                    "Fashion header"
                }));
            }
        }
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(repo.path().join(format!(".out/{store}/deployment.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["commit"], sha.as_str());
    }
}

/// Uncommitted work leaves the machine only with --allow-dirty; into the
/// local layout it goes tagged `<sha>-dirty`, with a warning.
#[test]
fn uncommitted_changes_are_refused_unless_allowed() {
    let repo = committed_example();
    repo.write(
        "apps/storefront-middleware/src/config.json",
        "{\"currency\": \"GBP\"}\n",
    );
    let nobody = format!("127.0.0.1:{}", crate::util::free_port());
    let console = format!("http://{nobody}/deploy");
    for target in [
        vec!["--registry", nobody.as_str(), "--insecure-registry"],
        vec!["--console-url", console.as_str()],
    ] {
        let (code, _, stderr) = deploy_json(&repo, &target, &[]);
        assert_eq!(code, 2, "{target:?}: {stderr}");
        assert!(
            stderr.contains("uncommitted") && stderr.contains("--allow-dirty"),
            "{stderr}"
        );
    }
    assert!(
        !repo.path().join(".strata/oci/index.json").exists()
            || !std::fs::read_to_string(repo.path().join(".strata/oci/index.json"))
                .unwrap()
                .contains("fashion")
    );
    let (code, report, stderr) = deploy_json(&repo, &["-s", "sports"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["tag"], format!("{}-dirty", head(&repo)));
    assert!(
        stderr
            .contains("warning: uncommitted changes (apps/storefront-middleware/src/config.json)"),
        "{stderr}"
    );
    let (code, report, stderr) = deploy_json(&repo, &["--allow-dirty", "-s", "sports"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["tag"], format!("{}-dirty", head(&repo)));
    assert!(!stderr.contains("warning: uncommitted"), "{stderr}");
}

/// The revision node: a deploy with nothing changed does not read the
/// working tree again (it is cached); what counts as uncommitted is what
/// the selected stores' images are made of, and the root files builds
/// read; a dry run refuses uncommitted work as the deploy would.
#[test]
fn the_tag_answers_for_the_selected_stores_and_is_read_again_only_after_a_change() {
    let repo = committed_example();
    let trace = repo.path().join("trace.json");
    let revision_status = || -> String {
        let trace: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
        trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "revision/HEAD")
            .map(|e| e["args"]["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no revision node in {trace}"))
    };
    let profile = ["--profile", trace.to_str().unwrap()];
    let (code, report, stderr) = deploy_json(&repo, &profile, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["tag"], head(&repo));
    assert_eq!(revision_status(), "changed");
    let (code, report, stderr) = deploy_json(&repo, &profile, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["tag"], head(&repo));
    assert_eq!(
        revision_status(),
        "cached",
        "nothing changed: git is not asked"
    );

    // Work in progress in fashion-eu's own folder: a deploy of sports is
    // not about it; one of every store is refused, in a dry run too.
    let nobody = format!("127.0.0.1:{}", crate::util::free_port());
    let to_registry = [
        "--registry",
        nobody.as_str(),
        "--insecure-registry",
        "--dry-run",
    ];
    let wip = "apps/stores/fashion/stores/fashion-eu/storefront-unified-nextjs/wip.html";
    repo.write(wip, "<p>not yet</p>\n");
    let mut sports = to_registry.to_vec();
    sports.extend(["-s", "sports"]);
    let (code, report, stderr) = deploy_json(&repo, &sports, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["tag"], head(&repo));
    let (code, _, stderr) = deploy_json(&repo, &to_registry, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(wip) && stderr.contains("--allow-dirty"),
        "{stderr}"
    );
    // A refused --force forgets nothing and runs nothing.
    let forced = [
        "--registry",
        nobody.as_str(),
        "--insecure-registry",
        "--force",
    ];
    let (code, _, stderr) = deploy_json(&repo, &forced, &[]);
    assert_eq!(code, 2, "{stderr}");
    // Into the local layout it goes as `-dirty`, and that is recorded;
    // sports, not about it, is not triggered again.
    let (code, report, stderr) = deploy_json(&repo, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["tag"], format!("{}-dirty", head(&repo)));
    assert_eq!(stage(&report, "sports", "trigger"), "unchanged");
    // Gone again: the tree is clean, although a dirty tree was recorded.
    std::fs::remove_file(repo.path().join(wip)).unwrap();
    let (code, report, stderr) = deploy_json(&repo, &to_registry, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["tag"], head(&repo));

    // An edit that is committed is clean under the new commit; the same
    // file edited again is not.
    let header = "apps/stores/sports/storefront-unified-nextjs/components/header.html";
    repo.write(header, "<header>Sports, new season</header>\n");
    repo.commit("new sports header");
    let (code, report, stderr) = deploy_json(&repo, &to_registry, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["tag"], head(&repo));
    repo.write(header, "<header>Sports, later</header>\n");
    let (code, _, stderr) = deploy_json(&repo, &to_registry, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(header), "{stderr}");
    repo.write(header, "<header>Sports, new season</header>\n");

    // A root file builds read counts for every store.
    let lock = std::fs::read_to_string(repo.path().join("package-lock.json")).unwrap();
    repo.write("package-lock.json", &lock.replacen('{', "{\n", 1));
    let (code, _, stderr) = deploy_json(&repo, &sports, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("package-lock.json"), "{stderr}");
    repo.write("package-lock.json", &lock);
    let (code, report, stderr) = deploy_json(&repo, &sports, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["tag"], head(&repo));
}

/// A base is resolved once and kept as its node's value: without `--pull`
/// a deploy stays on it although its tag moved (nothing is rebuilt or
/// triggered); `--pull` looks the tag up again and the images move onto
/// the new base.
#[test]
fn a_base_is_kept_until_pull_looks_its_tag_up_again() {
    let registry = RegistryServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let base = push_base_with(&registry.host(), &tmp.path().join("one"), "base one\n");
    let first_layers = inspect(&base)["Layers"].as_array().unwrap().clone();
    let repo = committed_example();
    let url = format!("http://{}", registry.host());
    let args = [
        "--registry",
        url.as_str(),
        "--base-image",
        base.as_str(),
        "-s",
        "sports",
    ];
    let (code, first, stderr) = deploy_json(&repo, &args, &[]);
    assert_eq!(code, 0, "{stderr}");
    let moved = push_base_with(&registry.host(), &tmp.path().join("two"), "base two\n");
    assert_eq!(moved, base);
    let moved_layers = inspect(&base)["Layers"].as_array().unwrap().clone();
    assert_ne!(moved_layers[0], first_layers[0]);
    let (code, kept, stderr) = deploy_json(&repo, &args, &[]);
    assert_eq!(code, 0, "{stderr}");
    for app in [FE, MW] {
        assert_eq!(
            image_of(&kept, "sports", app)["digest"],
            image_of(&first, "sports", app)["digest"]
        );
    }
    assert_eq!(stage(&kept, "sports", "trigger"), "unchanged");
    let mut pull = args.to_vec();
    pull.push("--pull");
    let (code, pulled, stderr) = deploy_json(&repo, &pull, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stage(&pulled, "sports", "trigger"), "run");
    let sha = head(&repo);
    for app in [FE, MW] {
        assert_ne!(
            image_of(&pulled, "sports", app)["digest"],
            image_of(&first, "sports", app)["digest"]
        );
        let info = inspect(&format!("{}/demo-sports/{app}:{sha}", registry.host()));
        assert_eq!(info["Layers"][0], moved_layers[0], "on the new base");
    }
}

#[test]
fn pushes_to_a_real_registry_on_a_base_image_it_holds() {
    let registry = RegistryServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let base = push_base(&registry.host(), tmp.path());
    let repo = committed_example();
    let url = format!("http://{}", registry.host());
    let console = Console::start(Vec::new());
    let (code, report, stderr) = deploy_json(
        &repo,
        &[
            "--registry",
            &url,
            "--base-image",
            &base,
            "--console-url",
            &console.url(),
        ],
        &[
            ("CLI_CLOUD_USERNAME", "deployer"),
            ("CLI_CLOUD_PASSWORD", "console-secret"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("console-secret") && !report.to_string().contains("console-secret"));
    let sha = head(&repo);
    let base_layers = inspect(&base)["Layers"].as_array().unwrap().clone();
    for store in ["fashion-us", "sports"] {
        for app in [FE, MW] {
            let name = format!("{}/demo-{store}/{app}:{sha}", registry.host());
            let info = inspect(&name);
            let layers = info["Layers"].as_array().unwrap();
            assert_eq!(layers[0], base_layers[0], "the base's layer comes first");
            assert_eq!(info["Digest"], image_of(&report, store, app)["digest"]);
        }
    }
    // umoci unpacks a pushed image: the base's files, and /var/www equal
    // to .deploy byte for byte; node serves the store from there.
    let image = format!("{}/demo-fashion-eu/{MW}:{sha}", registry.host());
    let bundle = unpack(&image, tmp.path());
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/base-release")).unwrap(),
        "strata test base 1\n"
    );
    let www = bundle.join("rootfs/var/www");
    assert_trees_equal(
        &tree(&www),
        &tree(&repo.path().join(format!(".out/fashion-eu/{MW}/.deploy"))),
    );
    let server = Server::start(&www);
    assert!(server.get("/").contains("\"currency\":\"EUR\""));

    // The console got one request per store, with basic auth and a key.
    let seen = console.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["commit"], sha.as_str());
    assert!(body["images"][MW].as_str().unwrap().contains("@sha256:"));
    assert!(
        seen[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    );
    assert!(seen[0].header("idempotency-key").is_some());

    // A no-op redeploy pushes nothing and triggers nothing.
    let (code, report, _) = deploy_json(
        &repo,
        &[
            "--registry",
            &url,
            "--base-image",
            &base,
            "--console-url",
            &console.url(),
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(console.seen.lock().unwrap().len(), 3);
    for store in report["stores"].as_array().unwrap() {
        assert_eq!(store["bytes_uploaded"], 0);
        assert_eq!(store["stages"]["push"], "unchanged");
    }
    // --force does both again, and the registry already has every blob.
    let (code, report, _) = deploy_json(
        &repo,
        &[
            "--registry",
            &url,
            "--base-image",
            &base,
            "--console-url",
            &console.url(),
            "--force",
            "-s",
            "sports",
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(console.seen.lock().unwrap().len(), 4);
    assert_eq!(report["stores"][0]["bytes_uploaded"], 0);
}

#[test]
fn two_clones_at_different_paths_and_times_give_identical_digests() {
    let origin = committed_example();
    let registry = RegistryServer::start();
    let url = format!("http://{}", registry.host());
    let mut digests = Vec::new();
    for n in 0..2 {
        let parent = tempfile::tempdir().unwrap();
        let url_origin = format!("file://{}", origin.path().display());
        git(
            parent.path(),
            &["clone", "-q", &url_origin, &format!("clone-{n}")],
        );
        let clone = Repo::at(parent.path().join(format!("clone-{n}")), parent);
        if n == 1 {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        let (code, report, stderr) = deploy_json(
            &clone,
            &["--registry", &url, "--base-image", "scratch"],
            &[],
        );
        assert_eq!(code, 0, "{stderr}");
        let mut all = Vec::new();
        for store in ["fashion-us", "fashion-eu", "sports"] {
            for app in [FE, MW] {
                all.push(
                    image_of(&report, store, app)["digest"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
        }
        digests.push(all);
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn a_base_in_another_registry_is_copied() {
    let source = RegistryServer::start();
    let target = RegistryServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let base = push_base(&source.host(), tmp.path());
    let repo = committed_example();
    let url = format!("http://{}", target.host());
    let (code, _, stderr) = deploy_json(
        &repo,
        &[
            "--registry",
            &url,
            "--base-image",
            &base,
            "-s",
            "sports",
            "--insecure-registry",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let image = format!("{}/demo-sports/{MW}:{}", target.host(), head(&repo));
    let bundle = unpack(&image, tmp.path());
    assert!(bundle.join("rootfs/etc/base-release").exists());
}

#[test]
fn basic_auth_against_the_real_registry() {
    let hash = bcrypt::hash("pushpw", 5).unwrap();
    let registry = RegistryServer::start_with_htpasswd(&format!("pusher:{hash}\n"));
    let repo = committed_example();
    let url = format!("http://{}", registry.host());
    let args = [
        "--registry",
        url.as_str(),
        "--base-image",
        "scratch",
        "-s",
        "sports",
    ];
    let (code, _, stderr) = deploy_json(&repo, &args, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("requires credentials"), "{stderr}");
    let (code, _, stderr) = deploy_json(
        &repo,
        &args,
        &[
            ("CLI_CLOUD_USERNAME", "pusher"),
            ("CLI_CLOUD_PASSWORD", "wrong-pw"),
        ],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(!stderr.contains("wrong-pw"));
    let (code, _, stderr) = deploy_json(
        &repo,
        &args,
        &[
            ("CLI_CLOUD_USERNAME", "pusher"),
            ("CLI_CLOUD_PASSWORD", "pushpw"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "pusher:pushpw",
        &format!(
            "docker://{}/demo-sports/{MW}:{}",
            registry.host(),
            head(&repo)
        ),
    ]);
    assert!(out.contains("dev.strata.store"));
}

/// A middleware with a 12 MB file of noise: its layer is pushed in chunks.
fn with_large_layer(repo: &Repo) {
    let mut noise = Vec::with_capacity(12 << 20);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    while noise.len() < 12 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(
        repo.path().join("apps/storefront-middleware/src/noise.bin"),
        noise,
    )
    .unwrap();
    repo.commit("noise");
}

/// A finished upload whose answer is lost: retrying the finish fails (the
/// session is spent), but the blob is there, and the push goes on.
#[test]
fn an_upload_whose_answer_was_lost_counts_as_done() {
    let registry = RegistryServer::start();
    let proxy = Proxy::start(&registry.host());
    let repo = committed_example();
    proxy
        .faults
        .lost_answers
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let url = format!("http://{}", proxy.host());
    let (code, report, stderr) = deploy_json(
        &repo,
        &[
            "--registry",
            &url,
            "--base-image",
            "scratch",
            "-s",
            "sports",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        proxy
            .faults
            .lost_answers
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "both answers were lost"
    );
    let name = format!("{}/demo-sports/{MW}:{}", registry.host(), head(&repo));
    assert_eq!(
        inspect(&name)["Digest"],
        image_of(&report, "sports", MW)["digest"]
    );
}

#[test]
fn server_errors_cut_connections_and_token_refreshes_are_survived() {
    let registry = RegistryServer::start();
    let proxy = Proxy::start(&registry.host());
    let repo = committed_example();
    with_large_layer(&repo);
    proxy
        .faults
        .server_errors
        .store(3, std::sync::atomic::Ordering::SeqCst);
    proxy
        .faults
        .cuts
        .store(2, std::sync::atomic::Ordering::SeqCst);
    proxy
        .faults
        .bearer_every
        .store(25, std::sync::atomic::Ordering::SeqCst);
    let url = format!("http://{}", proxy.host());
    let (code, report, stderr) = deploy_json(
        &repo,
        &[
            "--registry",
            &url,
            "--base-image",
            "scratch",
            "-s",
            "sports",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|s| s.method == "PATCH"),
        "the large layer went up in chunks"
    );
    assert!(
        seen.iter().filter(|s| s.path.starts_with("/token")).count() >= 2,
        "tokens were refreshed"
    );
    assert_eq!(
        proxy.faults.cuts.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "both cuts happened"
    );
    let name = format!("{}/demo-sports/{MW}:{}", registry.host(), head(&repo));
    assert_eq!(
        inspect(&name)["Digest"],
        image_of(&report, "sports", MW)["digest"]
    );
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack(&name, tmp.path());
    assert_eq!(
        std::fs::metadata(bundle.join("rootfs/var/www/lib/noise.bin"))
            .unwrap()
            .len(),
        12 << 20
    );
}

#[test]
fn a_push_that_cannot_finish_leaves_no_tag() {
    let registry = RegistryServer::start();
    let proxy = Proxy::start(&registry.host());
    proxy
        .faults
        .fail_uploads
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let repo = committed_example();
    let url = format!("http://{}", proxy.host());
    let (code, report, stderr) = deploy_json(
        &repo,
        &[
            "--registry",
            &url,
            "--base-image",
            "scratch",
            "-s",
            "sports",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("500") && stderr.contains("injected"),
        "{stderr}"
    );
    assert_eq!(stage(&report, "sports", "push"), "failed");
    assert!(
        !repo.path().join(".out/sports/deployment.json").exists(),
        "nothing is triggered"
    );
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!(
            "docker://{}/demo-sports/{MW}:{}",
            registry.host(),
            head(&repo)
        ))
        .output()
        .unwrap();
    assert!(!out.status.success(), "no tag may point at missing blobs");
}

#[test]
fn the_console_message_is_shown_and_server_errors_are_retried() {
    let repo = committed_example();
    let console = Console::start(vec![
        (503, "busy"),
        (422, "{\"message\": \"project demo-sports is suspended\"}"),
    ]);
    let (code, _, stderr) = deploy_json(
        &repo,
        &["-s", "sports", "--console-url", &console.url()],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("project demo-sports is suspended"),
        "{stderr}"
    );
    assert_eq!(
        console.seen.lock().unwrap().len(),
        2,
        "503 retried, 422 not"
    );
    let (code, _, stderr) = deploy_json(
        &repo,
        &["-s", "sports", "--console-url", &console.url()],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let keys: Vec<String> = console
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0], keys[1], "a retry within a run keeps the key");
    assert_ne!(keys[1], keys[2], "a later run is a new deployment");
}

#[test]
fn dry_run_plans_and_changes_nothing() {
    let repo = committed_example();
    let out = repo.strata(&["store", "deploy", "--dry-run"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("plan for") && text.contains("planned"),
        "{text}"
    );
    assert!(
        !repo.path().join(".out").exists(),
        "a dry run writes nothing"
    );
    repo.ok(&["store", "deploy"]);
    let (code, report, _) = deploy_json(&repo, &["--dry-run"], &[]);
    assert_eq!(code, 0);
    assert_eq!(stage(&report, "sports", "push"), "unchanged");
    assert_eq!(stage(&report, "sports", "trigger"), "unchanged");
    repo.write(
        "apps/stores/sports/storefront-unified-nextjs/components/header.html",
        "<header>New</header>\n",
    );
    repo.commit("new header");
    let (_, report, _) = deploy_json(&repo, &["--dry-run"], &[]);
    assert_eq!(stage(&report, "sports", "build"), "planned");
    assert_eq!(stage(&report, "fashion-us", "build"), "cached");
    assert_eq!(stage(&report, "sports", "push"), "planned");
    assert_eq!(stage(&report, "sports", "trigger"), "planned");
    let sports = report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "sports")
        .unwrap();
    let why = sports["message"].as_str().unwrap();
    assert!(
        why.contains("image/sports/storefront-unified-nextjs")
            && why.contains("apps/stores/sports/storefront-unified-nextjs"),
        "{why}"
    );
    // Another store's images do not change: under the new commit it is
    // only re-tagged, never triggered.
    assert_eq!(stage(&report, "fashion-us", "push"), "planned");
    assert_eq!(stage(&report, "fashion-us", "trigger"), "unchanged");
}

#[test]
fn basic_auth_over_tls_with_a_ca_from_ssl_cert_file() {
    let hash = bcrypt::hash("tlspw", 4).unwrap();
    let (registry, ca) = RegistryServer::start_tls(&format!("pusher:{hash}\n"));
    let repo = committed_example();
    let url = format!("https://{}", registry.host());
    let creds = [
        ("CLI_CLOUD_USERNAME", "pusher"),
        ("CLI_CLOUD_PASSWORD", "tlspw"),
    ];
    let args = [
        "--registry",
        url.as_str(),
        "--base-image",
        "scratch",
        "-s",
        "sports",
    ];
    // Without the CA, the certificate is not trusted.
    let (code, _, stderr) = deploy_json(&repo, &args, &creds);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("unreachable") && !stderr.contains("tlspw"),
        "{stderr}"
    );
    let ca_text = ca.to_str().unwrap();
    let mut env = creds.to_vec();
    env.push(("SSL_CERT_FILE", ca_text));
    let (code, _, stderr) = deploy_json(&repo, &args, &env);
    assert_eq!(code, 0, "{stderr}");
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(&ca, certs.path().join("ca.crt")).unwrap();
    let out = skopeo(&[
        "inspect",
        "--cert-dir",
        certs.path().to_str().unwrap(),
        "--creds",
        "pusher:tlspw",
        &format!(
            "docker://{}/demo-sports/{MW}:{}",
            registry.host(),
            head(&repo)
        ),
    ]);
    assert!(out.contains("dev.strata.store"));
}

#[test]
fn a_base_in_the_target_registry_is_mounted_not_uploaded() {
    let registry = RegistryServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let base = push_base(&registry.host(), tmp.path());
    let base_layer = inspect(&base)["Layers"][0].as_str().unwrap().to_string();
    let proxy = Proxy::start(&registry.host());
    let repo = committed_example();
    let url = format!("http://{}", proxy.host());
    let base_via_proxy = base.replace(&registry.host(), &proxy.host());
    let (code, _, stderr) = deploy_json(
        &repo,
        &[
            "--registry",
            &url,
            "--base-image",
            &base_via_proxy,
            "-s",
            "sports",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let seen = proxy.seen.lock().unwrap().clone();
    let digest = base_layer.replace(':', "%3A");
    assert!(
        seen.iter().any(|s| s.method == "POST"
            && s.path.contains("mount=")
            && (s.path.contains(&base_layer) || s.path.contains(&digest))),
        "the base layer was mounted"
    );
    assert!(
        !seen.iter().any(|s| s.method != "POST"
            && s.path.contains("/blobs/uploads/")
            && (s.path.contains(&base_layer) || s.path.contains(&digest))),
        "the base layer was never uploaded"
    );
}

/// Regression (issue 13): the image carried the commit (a label, and its
/// time on every file), so every commit gave every store new digests,
/// re-uploaded every layer and re-triggered every store. Now a commit that
/// changes one store re-tags the others (no blob sent) and triggers that
/// store alone.
#[test]
fn a_new_commit_retags_every_store_and_triggers_only_the_changed_one() {
    let registry = RegistryServer::start();
    let repo = committed_example();
    let url = format!("http://{}", registry.host());
    let console = Console::start(Vec::new());
    let args = [
        "--registry",
        url.as_str(),
        "--base-image",
        "scratch",
        "--console-url",
        &console.url(),
    ];
    let (code, first, stderr) = deploy_json(&repo, &args, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(console.seen.lock().unwrap().len(), 3);
    let old_sha = head(&repo);

    repo.write(
        "apps/stores/fashion/stores/fashion-us/storefront-unified-nextjs/components/footer.html",
        "Fashion US footer, new season\n",
    );
    let new_sha = repo.commit("a new footer for fashion-us");
    let (code, second, stderr) = deploy_json(&repo, &args, &[]);
    assert_eq!(code, 0, "{stderr}");
    let seen = console.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "one store changed: one trigger");
    let body: serde_json::Value = serde_json::from_slice(&seen[3].body).unwrap();
    assert_eq!(body["store"], "fashion-us");
    assert_eq!(body["commit"], new_sha.as_str());

    for store in ["fashion-eu", "sports"] {
        for app in [FE, MW] {
            let digest = &image_of(&second, store, app)["digest"];
            assert_eq!(
                digest,
                &image_of(&first, store, app)["digest"],
                "{store}/{app}"
            );
            // Tagged with the new commit, pointing at the same image.
            let info = inspect(&format!("{}/demo-{store}/{app}:{new_sha}", registry.host()));
            assert_eq!(&info["Digest"], digest);
        }
        assert_eq!(stage(&second, store, "trigger"), "unchanged");
        let entry = second["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == store)
            .unwrap();
        assert_eq!(entry["bytes_uploaded"], 0, "{store}: no blob is sent again");
        let message = entry["message"].as_str().unwrap();
        assert!(message.contains(&old_sha[..12]), "{message}");
    }
    assert_eq!(stage(&second, "fashion-us", "trigger"), "run");
    assert_ne!(
        image_of(&second, "fashion-us", FE)["digest"],
        image_of(&first, "fashion-us", FE)["digest"]
    );
    assert_eq!(
        image_of(&second, "fashion-us", MW)["digest"],
        image_of(&first, "fashion-us", MW)["digest"],
        "the middleware did not change"
    );

    // Run again at the same commit: nothing is sent at all; --force
    // triggers every store.
    let (_, third, _) = deploy_json(&repo, &args, &[]);
    assert_eq!(console.seen.lock().unwrap().len(), 4);
    for store in third["stores"].as_array().unwrap() {
        assert_eq!(store["stages"]["push"], "unchanged", "{store}");
    }

    // Someone moves a tag to another image: the push's check sees the
    // registry's digest and pushes it again; the trigger stays put.
    let host = registry.host();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{host}/demo-fashion-eu/{FE}:{new_sha}"),
        &format!("docker://{host}/demo-sports/{FE}:{new_sha}"),
    ]);
    let moved = inspect(&format!("{host}/demo-sports/{FE}:{new_sha}"));
    assert_ne!(moved["Digest"], image_of(&second, "sports", FE)["digest"]);
    let (code, fourth, stderr) = deploy_json(&repo, &args, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stage(&fourth, "sports", "push"), "run");
    assert_eq!(stage(&fourth, "fashion-eu", "push"), "unchanged");
    let back = inspect(&format!("{host}/demo-sports/{FE}:{new_sha}"));
    assert_eq!(back["Digest"], image_of(&second, "sports", FE)["digest"]);
    assert_eq!(console.seen.lock().unwrap().len(), 4, "nothing triggered");
    let mut forced = args.to_vec();
    forced.push("--force");
    let (code, _, _) = deploy_json(&repo, &forced, &[]);
    assert_eq!(code, 0);
    assert_eq!(console.seen.lock().unwrap().len(), 7);
}

/// `store graph --nodes`: the deploy's node graph, with image, push and
/// trigger nodes above each store's builds, each naming its inputs.
#[test]
fn the_node_graph_shows_the_rollout_above_the_builds() {
    let repo = committed_example();
    let out = repo.ok(&[
        "store", "graph", "--nodes", "--format", "json", "-s", "sports",
    ]);
    let graph: serde_json::Value = serde_json::from_str(&out).unwrap();
    let nodes = graph["nodes"].as_array().unwrap();
    let node = |id: &str| {
        nodes
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("no node {id} in {graph}"))
    };
    let inputs = |id: &str| -> Vec<String> {
        node(id)["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        nodes
            .iter()
            .all(|n| !n["id"].as_str().unwrap().contains("fashion")),
        "only the selected store"
    );
    assert_eq!(
        node("build/sports/storefront-unified-nextjs")["kind"],
        "build"
    );
    assert_eq!(node(&format!("image/sports/{FE}"))["kind"], "image");
    assert!(inputs(&format!("image/sports/{FE}")).contains(&format!("deploy/sports/{FE}")));
    // An image is made of its layers, each keyed by what it packs.
    for part in ["app", "dependencies"] {
        let layer = format!("layer/sports/{FE}/{part}");
        assert_eq!(node(&layer)["kind"], "layer");
        assert!(inputs(&format!("image/sports/{FE}")).contains(&layer));
        assert_eq!(inputs(&layer), [format!("deploy/sports/{FE}")]);
    }
    assert!(inputs(&format!("deploy/sports/{FE}")).contains(&format!("build/sports/{FE}")));
    assert_eq!(
        inputs(&format!("push/sports/{MW}"))[1],
        format!("image/sports/{MW}")
    );
    let trigger = node("trigger/sports");
    assert_eq!(trigger["kind"], "trigger");
    // The trigger reads the images (its key), and only runs after the
    // pushes: a new tag is no new deployment.
    assert_eq!(
        inputs("trigger/sports"),
        [format!("image/sports/{MW}"), format!("image/sports/{FE}")]
    );
    assert_eq!(
        trigger["after"],
        serde_json::json!([format!("push/sports/{MW}"), format!("push/sports/{FE}")])
    );
    let kinds: std::collections::BTreeSet<&str> =
        nodes.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    for kind in [
        "scan",
        "compose",
        "materialize",
        "setting",
        "build",
        "prepare",
        "base",
        "layer",
        "image",
        "push",
        "trigger",
    ] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    let dot = repo.ok(&["store", "graph", "--nodes", "-s", "sports"]);
    assert!(
        dot.contains("\"push/sports/storefront-middleware\" -> \"trigger/sports\" [style=dashed]"),
        "{dot}"
    );
    let mermaid = repo.ok(&["store", "graph", "--nodes", "--format", "mermaid"]);
    assert!(
        mermaid.starts_with("flowchart LR") && mermaid.contains("trigger: trigger/fashion-us"),
        "{mermaid}"
    );
    let out = repo.strata(&["store", "graph", "-s", "sports"]);
    assert_eq!(out.status.code(), Some(2), "-s without --nodes is refused");
}

/// `store explain ID --deploy`: the dry run of one store in words, down to
/// the file that changed; another store says it would not be triggered.
#[test]
fn explain_deploy_says_what_would_run_and_why() {
    let repo = committed_example();
    repo.ok(&["store", "deploy"]);
    repo.write(
        "apps/stores/sports/storefront-unified-nextjs/components/header.html",
        "<header>Sports, new season</header>\n",
    );
    repo.commit("new sports header");
    let text = repo.ok(&["store", "explain", "sports", "--deploy"]);
    assert!(
        text.contains("trigger  would run")
            && text.contains("image/sports/storefront-unified-nextjs would run")
            && text.contains("apps/stores/sports/storefront-unified-nextjs/components/header.html"),
        "{text}"
    );
    let text = repo.ok(&["store", "explain", "fashion-us", "--deploy"]);
    assert!(
        text.contains("build    nothing to do")
            && text.contains("trigger  not triggered")
            && !text.contains("image/fashion-us"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&repo.ok(&["store", "explain", "sports", "--deploy", "--json"]))
            .unwrap();
    assert_eq!(json["stages"]["trigger"], "planned");
    // Explaining changed nothing: a deploy now still has the work to do.
    let (_, report, _) = deploy_json(&repo, &[], &[]);
    assert_eq!(stage(&report, "sports", "build"), "run");
}

/// The settings builds read are inputs with names: a dry run after a
/// lockfile edit or a new public environment variable says which.
#[test]
fn a_dry_run_names_the_lockfile_or_variable_that_changed() {
    let repo = committed_example();
    repo.ok(&["store", "deploy"]);
    // The frontend now installs left-pad: its closure changed.
    let lock = std::fs::read_to_string(repo.path().join("package-lock.json")).unwrap();
    let mut lock: serde_json::Value = serde_json::from_str(&lock).unwrap();
    lock["packages"]["apps/storefront-unified-nextjs"] =
        serde_json::json!({"name": FE, "dependencies": {"left-pad": "^1.3.0"}});
    lock["packages"]["node_modules/left-pad"] =
        serde_json::json!({"version": "1.3.0", "integrity": "sha512-left-pad"});
    repo.write(
        "package-lock.json",
        &serde_json::to_string_pretty(&lock).unwrap(),
    );
    repo.commit("lockfile edit");
    let (_, report, _) = deploy_json(&repo, &["--dry-run"], &[]);
    let message = report["stores"][0]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("lockfile/package-lock.json/storefront-unified-nextjs changed")
            && message.contains("+ left-pad 1.3.0"),
        "{message}"
    );
    repo.ok(&["store", "deploy"]);
    let (_, report, _) = deploy_json(&repo, &["--dry-run"], &[("NEXT_PUBLIC_SHOP", "1")]);
    let message = report["stores"][0]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("env/NEXT_PUBLIC_SHOP changed"),
        "{message}"
    );
    assert!(!message.contains("=1"), "values are never shown: {message}");
}

/// Alokai's flag names work as they do with its CLI: `store deploy
/// --docker-registry-url --cloud-username --cloud-password`, `store add -s
/// -p`.
#[test]
fn alokai_flag_names_are_accepted() {
    let registry = RegistryServer::start();
    let repo = committed_example();
    let url = format!("http://{}", registry.host());
    let (code, report, stderr) = deploy_json(
        &repo,
        &[
            "-s",
            "sports",
            "--docker-registry-url",
            &url,
            "--cloud-username",
            "deployer",
            "--cloud-password",
            "s3cret-value",
            "--base-image",
            "scratch",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("s3cret-value") && !report.to_string().contains("s3cret-value"));
    let info = inspect(&format!(
        "{}/demo-sports/{FE}:{}",
        registry.host(),
        head(&repo)
    ));
    assert_eq!(info["Digest"], image_of(&report, "sports", FE)["digest"]);
    repo.ok(&["store", "add", "-s", "fashion-ca", "-p", "fashion"]);
    assert!(
        repo.path()
            .join("apps/stores/fashion/stores/fashion-ca")
            .is_dir()
    );
    // `--verbose` takes no value, before or after the command.
    let out = repo.strata(&["store", "compose", "--verbose", "-s", "sports"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = repo.strata(&["--verbose", "store", "explain", "sports"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
