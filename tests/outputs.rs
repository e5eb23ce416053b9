//! A build's outputs are what the build made, `node_modules/` inside output
//! folders and symlinks included, and a restored build is the fresh one:
//! a Nuxt-style `.output/` whose server loads packages from
//! `.output/server/node_modules/`, with a link inside it, a link out of the
//! app into the monorepo and a dangling link, deployed fresh and restored,
//! each image run from a copy of its `/var/www` with nothing above it.

use std::collections::BTreeMap;

use crate::fixtures::status;
use crate::registry::unpack_layout;
use crate::util::{FileState, Repo, Server, full_tree, git};

const NUXT: &str = "storefront-unified-nuxt";

const NUXT_BUILD: &str = r#"
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
rmSync(".output", { recursive: true, force: true });
mkdirSync(".output/server/node_modules/greeter", { recursive: true });
mkdirSync(".output/public", { recursive: true });
writeFileSync(
  ".output/server/node_modules/greeter/package.json",
  JSON.stringify({ name: "greeter", type: "module", exports: "./index.js" }),
);
writeFileSync(".output/server/node_modules/greeter/index.js", "export const greet = (s) => `hello from ${s}`;\n");
// A link inside the output (as pnpm and npm workspaces make), a link out
// of the output to another thing the build made, and a link to nothing.
symlinkSync("greeter", ".output/server/node_modules/greeter-alias");
rmSync("assets", { recursive: true, force: true });
mkdirSync("assets/theme", { recursive: true });
writeFileSync("assets/theme/colors.css", readFileSync("theme.css"));
symlinkSync("../../assets/theme", ".output/server/theme");
symlinkSync("nowhere", ".output/server/dangling");
writeFileSync(".output/public/banner.txt", readFileSync("banner.txt"));
writeFileSync(".output/server/index.mjs", `
import http from "node:http";
import fs from "node:fs";
import { greet } from "greeter";
import { greet as again } from "greeter-alias";
const banner = fs.readFileSync(new URL("../public/banner.txt", import.meta.url), "utf8").trim();
const theme = fs.readFileSync(new URL("./theme/colors.css", import.meta.url), "utf8").trim();
http.createServer((req, res) => res.end(greet(banner) + " | " + again("alias") + " | " + theme))
  .listen(Number(process.env.PORT));
`);
"#;

fn nuxt_monorepo() -> Repo {
    let repo = Repo::empty();
    repo.write(".gitignore", "node_modules/\n.out/\n.strata/\n");
    repo.write("package.json", "{\"name\": \"demo\", \"private\": true}\n");
    repo.write(
        "package-lock.json",
        "{\"name\": \"demo\", \"lockfileVersion\": 3, \"packages\": {}}\n",
    );
    let app = format!("apps/{NUXT}");
    repo.write(
        &format!("{app}/package.json"),
        "{\n  \"name\": \"storefront-unified-nuxt\",\n  \"type\": \"module\",\n  \"scripts\": { \"build\": \"node build.mjs\" }\n}\n",
    );
    repo.write(&format!("{app}/.gitignore"), ".output/\nassets/\n");
    repo.write(&format!("{app}/theme.css"), "body { color: teal; }\n");
    repo.write(&format!("{app}/build.mjs"), NUXT_BUILD);
    repo.write(&format!("{app}/banner.txt"), "the base\n");
    for store in ["eu", "us"] {
        repo.write(
            &format!("apps/stores/{store}/{NUXT}/banner.txt"),
            &format!("the {store} store\n"),
        );
    }
    repo.write(
        "alokai.config.json",
        "{\"stores\": {\"eu\": {\"deployment\": {\"framework\": \"nuxt\"}}, \"us\": {\"deployment\": {\"framework\": \"nuxt\"}}}}\n",
    );
    git(repo.path(), &["init", "-q"]);
    repo.commit("a nuxt monorepo");
    repo
}

fn digests(report: &serde_json::Value) -> BTreeMap<String, String> {
    report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["images"][0]["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn trees(repo: &Repo, under: &str) -> BTreeMap<String, BTreeMap<String, FileState>> {
    ["eu", "us"]
        .iter()
        .map(|s| {
            let tree = full_tree(&repo.path().join(format!(".out/{s}/{NUXT}/{under}")));
            assert!(!tree.is_empty(), "{s}: {under} is empty");
            (s.to_string(), tree)
        })
        .collect()
}

fn each_image_runs(repo: &Repo, tag: &str) {
    let layout = repo.path().join(".strata/oci");
    for (store, banner) in [("eu", "the eu store"), ("us", "the us store")] {
        let reference = format!("{store}-{NUXT}:{tag}");
        let server = Server::from_image(&layout, &reference);
        assert_eq!(
            server.get("/"),
            format!("hello from {banner} | hello from alias | body {{ color: teal; }}")
        );
        let dir = tempfile::tempdir().unwrap();
        let www = unpack_layout(&layout, &reference, dir.path()).join("rootfs/var/www");
        let server_dir = www.join(".output/server");
        assert_eq!(
            std::fs::read_link(server_dir.join("node_modules/greeter-alias")).unwrap(),
            std::path::Path::new("greeter"),
            "a link that lands inside stays a link"
        );
        let theme = std::fs::symlink_metadata(server_dir.join("theme")).unwrap();
        assert!(
            theme.is_dir(),
            "a link out of .deploy is replaced by what it points to"
        );
        assert!(
            std::fs::symlink_metadata(server_dir.join("dangling")).is_err(),
            "a link to nothing never reaches the image"
        );
    }
}

#[test]
fn output_node_modules_and_links_are_kept_and_a_restored_build_is_the_fresh_one() {
    let repo = nuxt_monorepo();
    let tag = git(repo.path(), &["rev-parse", "HEAD"]);
    let fresh = repo.deploy_ok(&[]);
    assert_eq!(fresh["build"]["scripts_run"], 2, "{}", fresh["build"]);
    each_image_runs(&repo, &tag);
    let outputs = trees(&repo, ".output");
    assert!(
        outputs["eu"].contains_key("server/node_modules/greeter/index.js"),
        "{:?}",
        outputs["eu"].keys().collect::<Vec<_>>()
    );
    let deploys = trees(&repo, ".deploy");

    // Its images cached, a deploy does not read `.out`: nothing is made
    // again for a deploy that has nothing to do.
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    let again = repo.deploy_ok(&[]);
    assert_eq!(again["build"]["scripts_run"], 0, "{}", again["build"]);
    assert_eq!(digests(&again), digests(&fresh));
    assert!(
        !repo.path().join(format!(".out/eu/{NUXT}")).exists(),
        "a deploy whose images are cached left .out alone"
    );
    // Without the images, they are made again from restored builds.
    std::fs::remove_dir_all(repo.path().join(".strata/oci")).unwrap();
    let restored = repo.deploy_ok(&[]);
    assert_eq!(restored["build"]["scripts_run"], 0, "{}", restored["build"]);
    assert_eq!(status(&restored["build"], "eu", NUXT, "build"), "restored");
    assert_eq!(digests(&restored), digests(&fresh));
    assert_eq!(
        trees(&repo, ".output"),
        outputs,
        "the restored outputs are the fresh ones: files, modes, link targets"
    );
    assert_eq!(trees(&repo, ".deploy"), deploys);
    each_image_runs(&repo, &tag);
}
