//! A real Next.js 16 monorepo (npm workspaces, `output: 'standalone'`, the
//! nested-monorepo layout), with a middleware that has a production
//! dependency and a pair of equal stores, deployed with every way of
//! obtaining a build: fresh, shared with the equal store, restored from
//! `.strata` after `rm -rf .out`, and fetched from the remote cache by a
//! clone at another path. Each image is unpacked and run as production runs
//! it (a copy of `/var/www` with nothing above it), and every way gives the
//! same `.deploy` tree and the same manifest digests.
//!
//! Regression (issue 12): builds never kept `.next/standalone/node_modules`,
//! so a restored or shared frontend image failed with `Cannot find module
//! 'next'`; the old tests ran `.deploy` in place, where the monorepo's own
//! `node_modules/` hid it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::fixtures::status;
use crate::registry::require;
use crate::remote::CacheServer;
use crate::util::{FileState, Repo, Server, copy_tree, full_tree, git};

const FE: &str = "storefront-unified-nextjs";
const MW: &str = "storefront-middleware";
const STORES: [&str; 3] = ["store-a", "store-a2", "store-b"];

fn npm_install(dir: &Path) {
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .env("NEXT_TELEMETRY_DISABLED", "1")
        .output()
        .expect("npm is installed (Debian package: npm)");
    assert!(
        out.status.success(),
        "npm install failed (the npm registry must be reachable):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The monorepo: a Next.js 16 frontend and a middleware using `ms`, npm
/// workspaces, `store-a` and `store-a2` with equal overrides, `store-b`
/// with its own banner and currency.
fn next_monorepo() -> Repo {
    let repo = Repo::empty();
    repo.write(".gitignore", "node_modules/\n.out/\n.strata/\n");
    repo.write(
        "package.json",
        "{\n  \"name\": \"demo\",\n  \"private\": true,\n  \"workspaces\": [\"apps/storefront-unified-nextjs\", \"apps/storefront-middleware\"]\n}\n",
    );
    let fe = format!("apps/{FE}");
    repo.write(
        &format!("{fe}/package.json"),
        "{\n  \"name\": \"storefront-unified-nextjs\",\n  \"private\": true,\n  \"scripts\": {\n    \"build\": \"next build\"\n  },\n  \"dependencies\": {\n    \"next\": \"16\",\n    \"react\": \"19\",\n    \"react-dom\": \"19\"\n  }\n}\n",
    );
    repo.write(&format!("{fe}/.gitignore"), ".next/\nnext-env.d.ts\n");
    repo.write(
        &format!("{fe}/next.config.mjs"),
        "const nextConfig = { output: 'standalone' };\nexport default nextConfig;\n",
    );
    repo.write(
        &format!("{fe}/pages/index.js"),
        "import Banner from '../components/banner';\n\nexport async function getServerSideProps() {\n  return { props: { at: Date.now() } };\n}\n\nexport default function Home({ at }) {\n  return <main><Banner /><p>{at}</p></main>;\n}\n",
    );
    repo.write(
        &format!("{fe}/components/banner.js"),
        "export default function Banner() {\n  return <h1>Base banner</h1>;\n}\n",
    );
    repo.write(&format!("{fe}/public/hello.txt"), "hello from the base\n");

    let mw = format!("apps/{MW}");
    repo.write(
        &format!("{mw}/package.json"),
        "{\n  \"name\": \"storefront-middleware\",\n  \"private\": true,\n  \"type\": \"module\",\n  \"main\": \"lib/index.js\",\n  \"scripts\": {\n    \"build\": \"node build.mjs\"\n  },\n  \"dependencies\": {\n    \"ms\": \"2.1.3\"\n  }\n}\n",
    );
    repo.write(&format!("{mw}/.gitignore"), "lib/\n");
    repo.write(
        &format!("{mw}/build.mjs"),
        "import { cpSync, rmSync } from 'node:fs';\nrmSync('lib', { recursive: true, force: true });\ncpSync('src', 'lib', { recursive: true });\n",
    );
    repo.write(
        &format!("{mw}/src/index.js"),
        "import { createServer } from 'node:http';\nimport { readFileSync } from 'node:fs';\nimport ms from 'ms';\nconst config = JSON.parse(readFileSync(new URL('./config.json', import.meta.url), 'utf8'));\ncreateServer((req, res) => res.end(JSON.stringify({ ...config, ttl: ms('1h') }))).listen(Number(process.env.PORT));\n",
    );
    repo.write(
        &format!("{mw}/src/config.json"),
        "{\"currency\": \"USD\"}\n",
    );

    for store in ["store-a", "store-a2"] {
        repo.write(
            &format!("apps/stores/{store}/{FE}/components/banner.js"),
            "export default function Banner() {\n  return <h1>Welcome to brand A</h1>;\n}\n",
        );
    }
    repo.write(
        &format!("apps/stores/store-b/{FE}/components/banner.js"),
        "export default function Banner() {\n  return <h1>Welcome to store-b</h1>;\n}\n",
    );
    repo.write(
        &format!("apps/stores/store-b/{FE}/public/hello.txt"),
        "hello from store-b\n",
    );
    repo.write(
        &format!("apps/stores/store-b/{MW}/src/config.json"),
        "{\"currency\": \"EUR\"}\n",
    );
    repo.config(&STORES);
    // Next finds the monorepo's root by its lockfile and stops at the git
    // repository: both must be there.
    git(repo.path(), &["init", "-q"]);
    npm_install(repo.path());
    repo.commit("a Next.js monorepo");
    repo
}

/// `store/app` → manifest digest.
fn digests(report: &serde_json::Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for store in report["stores"].as_array().unwrap() {
        for image in store["images"].as_array().unwrap() {
            out.insert(
                format!(
                    "{}/{}",
                    store["id"].as_str().unwrap(),
                    image["app"].as_str().unwrap()
                ),
                image["digest"].as_str().unwrap().to_string(),
            );
        }
    }
    assert_eq!(out.len(), STORES.len() * 2, "{report}");
    out
}

/// Every `.deploy` of the repo, whole.
fn deploy_trees(repo: &Repo) -> BTreeMap<String, BTreeMap<String, FileState>> {
    let mut out = BTreeMap::new();
    for store in STORES {
        for app in [FE, MW] {
            let dir = repo.path().join(format!(".out/{store}/{app}/.deploy"));
            let tree = full_tree(&dir);
            assert!(!tree.is_empty(), "{} is empty", dir.display());
            out.insert(format!("{store}/{app}"), tree);
        }
    }
    out
}

/// Unpacks every store's images from the repo's OCI layout and runs each
/// from a copy of its `/var/www` with nothing above it.
fn every_image_serves_its_store(repo: &Repo, tag: &str) {
    let layout = repo.path().join(".strata/oci");
    for store in STORES {
        let web = Server::from_image(&layout, &format!("{store}-{FE}:{tag}"));
        let page = web.get("/");
        let banner = if store == "store-b" {
            "Welcome to store-b"
        } else {
            "Welcome to brand A"
        };
        assert!(page.contains(banner), "{store}: {page}");
        let hello = if store == "store-b" {
            "hello from store-b"
        } else {
            "hello from the base"
        };
        assert_eq!(web.get("/hello.txt").trim(), hello, "{store}");
        let api = Server::from_image(&layout, &format!("{store}-{MW}:{tag}"));
        let answer = api.get("/");
        let currency = if store == "store-b" { "EUR" } else { "USD" };
        assert!(
            answer.contains(currency) && answer.contains("\"ttl\":3600000"),
            "{store}: {answer}"
        );
    }
}

fn assert_same_trees(
    got: &BTreeMap<String, BTreeMap<String, FileState>>,
    want: &BTreeMap<String, BTreeMap<String, FileState>>,
    how: &str,
) {
    for (app, tree) in want {
        let other = &got[app];
        let missing: Vec<&String> = tree
            .keys()
            .filter(|k| !other.contains_key(*k))
            .take(5)
            .collect();
        let extra: Vec<&String> = other
            .keys()
            .filter(|k| !tree.contains_key(*k))
            .take(5)
            .collect();
        let differ: Vec<&String> = tree
            .iter()
            .filter(|(k, v)| other.get(*k).is_some_and(|o| o != *v))
            .map(|(k, _)| k)
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty() && differ.is_empty(),
            "{how}: {app}/.deploy differs from the fresh one: missing {missing:?}, extra {extra:?}, different {differ:?}"
        );
    }
}

#[test]
fn a_real_next_app_deploys_the_same_runnable_images_fresh_shared_restored_and_remote() {
    require("nginx", "nginx");
    require("umoci", "umoci");
    let repo = next_monorepo();
    let cache = CacheServer::start();
    let url = cache.url();
    let tag = git(repo.path(), &["rev-parse", "HEAD"]);

    // Fresh, and shared: store-a2 composes what store-a does.
    let fresh = repo.deploy_ok(&["--remote-cache", &url]);
    let build = &fresh["build"];
    assert_eq!(
        build["scripts_run"], 4,
        "a next build and a middleware build for store-a and store-b each: {build}"
    );
    let shared: Vec<&str> = ["store-a", "store-a2"]
        .into_iter()
        .filter(|s| status(build, s, FE, "build").starts_with("shared"))
        .collect();
    assert_eq!(shared.len(), 1, "{build}");
    let standalone_modules = repo.path().join(format!(
        ".out/{}/{FE}/.deploy/node_modules/next/package.json",
        shared[0]
    ));
    assert!(
        standalone_modules.is_file(),
        "the shared build kept .next/standalone/node_modules"
    );
    every_image_serves_its_store(&repo, &tag);
    let want_digests = digests(&fresh);
    let want_trees = deploy_trees(&repo);

    // Restored from .strata after rm -rf .out: no script, same everything.
    // (The images too: a deploy whose images are cached reads no `.out`.)
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    std::fs::remove_dir_all(repo.path().join(".strata/oci")).unwrap();
    let restored = repo.deploy_ok(&["--remote-cache", &url]);
    assert_eq!(restored["build"]["scripts_run"], 0, "{}", restored["build"]);
    assert_eq!(
        status(&restored["build"], "store-b", FE, "build"),
        "restored"
    );
    assert_eq!(digests(&restored), want_digests);
    assert_same_trees(&deploy_trees(&repo), &want_trees, "restored");
    every_image_serves_its_store(&repo, &tag);

    // A clone at another path, with the remote cache alone.
    let holder = tempfile::tempdir().unwrap();
    let clone_dir = holder.path().join("elsewhere/clone");
    std::fs::create_dir_all(clone_dir.parent().unwrap()).unwrap();
    git(
        holder.path(),
        &[
            "clone",
            "-q",
            &format!("file://{}", repo.path().display()),
            "elsewhere/clone",
        ],
    );
    // What an install leaves, without asking the npm registry again.
    copy_tree(
        &repo.path().join("node_modules"),
        &clone_dir.join("node_modules"),
    );
    let clone = Repo::at(clone_dir, holder);
    let remote = clone.deploy_ok(&["--remote-cache", &url]);
    assert_eq!(remote["build"]["scripts_run"], 0, "{}", remote["build"]);
    assert_eq!(status(&remote["build"], "store-b", FE, "build"), "remote");
    assert_eq!(digests(&remote), want_digests);
    assert_same_trees(&deploy_trees(&clone), &want_trees, "remote");
    every_image_serves_its_store(&clone, &tag);

    // Built on a REAPI service (BuildGrid, two workers, an empty cache):
    // every build an action there, none here; each image starts as
    // production runs it. (`next build` writes a new build id each time,
    // so these trees are not the local build's byte for byte.)
    let grid = crate::reapi::BuildGrid::start(2);
    let holder = tempfile::tempdir().unwrap();
    git(
        holder.path(),
        &[
            "clone",
            "-q",
            &format!("file://{}", repo.path().display()),
            "farmed",
        ],
    );
    copy_tree(
        &repo.path().join("node_modules"),
        &holder.path().join("farmed/node_modules"),
    );
    let farmed = Repo::at(holder.path().join("farmed"), holder);
    let report = farmed.deploy_ok(&["--remote-executor", &grid.url()]);
    let build = &report["build"];
    assert_eq!(build["scripts_run"], 0, "{build}");
    assert_eq!(build["executor"]["executed"], 4, "{build}");
    every_image_serves_its_store(&farmed, &tag);
    drop(grid);

    // A one-line commit in store-b: its frontend alone is rebuilt and
    // triggered, the others keep their digests under the new tag, and the
    // new image differs from the old by its app layer only (the traced
    // node_modules layer is the same blob): under 2 MB.
    repo.write(
        &format!("apps/stores/store-b/{FE}/components/banner.js"),
        "export default function Banner() {\n  return <h1>Welcome to store-b, new season</h1>;\n}\n",
    );
    repo.commit("a new banner for store-b");
    let next = repo.deploy_ok(&[]);
    assert_eq!(next["build"]["scripts_run"], 1, "{}", next["build"]);
    let got = digests(&next);
    for (name, digest) in &want_digests {
        if name == &format!("store-b/{FE}") {
            assert_ne!(&got[name], digest);
        } else {
            assert_eq!(&got[name], digest, "{name}");
        }
    }
    for store in next["stores"].as_array().unwrap() {
        let want = if store["id"] == "store-b" {
            "run"
        } else {
            "unchanged"
        };
        assert_eq!(store["stages"]["trigger"], want, "{store}");
    }
    let layers = |digest: &str| -> Vec<(String, u64)> {
        let blob = repo
            .path()
            .join(".strata/oci/blobs/sha256")
            .join(&digest[7..]);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap();
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["digest"].as_str().unwrap().to_string(),
                    l["size"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let before = layers(&want_digests[&format!("store-b/{FE}")]);
    let after = layers(&got[&format!("store-b/{FE}")]);
    let new: Vec<&(String, u64)> = after.iter().filter(|l| !before.contains(l)).collect();
    let new_bytes: u64 = new.iter().map(|(_, size)| size).sum();
    assert_eq!(new.len(), 1, "only the app layer changed: {new:?}");
    assert!(
        new_bytes < 2_000_000,
        "the changed layer is {new_bytes} bytes"
    );
    eprintln!("a one-line change in store-b: one new layer of {new_bytes} bytes");
}

/// The guard: a `.deploy` whose server cannot find `next` never becomes an
/// image, and the store fails naming the package and the folder.
#[test]
fn a_deploy_folder_missing_next_fails_before_any_image() {
    let repo = Repo::buildable();
    // A build that forgets the traced runtime.
    let build = "apps/storefront-unified-nextjs/build.mjs";
    let text = std::fs::read_to_string(repo.path().join(build)).unwrap();
    repo.write(
        build,
        &format!("{text}\nrmSync('.next/standalone/node_modules/next', {{ recursive: true }});\n"),
    );
    repo.git_init();
    let out = repo.strata(&["store", "deploy", "-s", "solo", "--base-image", "scratch"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("next (loaded by server.js)")
            && stderr.contains(".out/solo/storefront-unified-nextjs/.deploy")
            && stderr.contains("/var/www"),
        "{stderr}"
    );
    let index =
        std::fs::read_to_string(repo.path().join(".strata/oci/index.json")).unwrap_or_default();
    assert!(
        !index.contains("solo-storefront-unified-nextjs"),
        "a broken image was published: {index}"
    );
}
