//! Local development as Alokai's guides describe it: git-ignored `.env`
//! files composed by inheritance (and kept out of everything deployed),
//! `ignorePaths` in a store's config entry, per-store `tsconfig.json` files
//! checked with the TypeScript compiler, and `store test`.

use std::path::Path;

use crate::util::Repo;

/// Files under `dir` whose bytes hold `needle`.
fn holding(dir: &Path, needle: &str, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            holding(&path, needle, found);
        } else if meta.is_file()
            && crate::util::holds_bytes(&crate::util::searchable_texts(&path), needle)
        {
            found.push(path.display().to_string());
        }
    }
}

fn read(repo: &Repo, rel: &str) -> Option<String> {
    std::fs::read_to_string(repo.path().join(rel)).ok()
}

const R1_ENV: &str = "apps/stores/brand/stores/r1/storefront-middleware/.env";

#[test]
fn env_files_compose_by_inheritance_rebuild_their_app_and_never_deploy() {
    let repo = Repo::buildable();
    repo.write(
        ".gitignore",
        "node_modules/\n.out/\n.strata/\nbuilds.log\nslow.pids\n.env\n.env.*\n",
    );
    repo.write(
        "apps/storefront-middleware/.env",
        "API_KEY=base-value-7c1f\n",
    );
    repo.write(R1_ENV, "API_KEY=r1-value-e29a\n");
    repo.write(
        "apps/storefront-unified-nextjs/.env.local",
        "NEXT_FLAG=frontend-value-44d0\n",
    );
    // A committed one is a file like any other, and stays out of images too.
    repo.write("apps/storefront-middleware/.env.example", "API_KEY=\n");
    repo.git_init();
    repo.commit("monorepo");
    let status = crate::util::git(repo.path(), &["status", "--porcelain", "--ignored"]);
    assert!(
        status.contains("!! apps/storefront-middleware/.env\n"),
        "{status}"
    );

    let (code, _, stderr) = repo.build_json(&[]);
    assert_eq!(code, 0, "{stderr}");
    let env = |store: &str| read(&repo, &format!(".out/{store}/storefront-middleware/.env"));
    assert_eq!(env("r1").as_deref(), Some("API_KEY=r1-value-e29a\n"));
    assert_eq!(env("r2").as_deref(), Some("API_KEY=base-value-7c1f\n"));
    assert_eq!(env("solo").as_deref(), Some("API_KEY=base-value-7c1f\n"));
    // For its owner's eyes only, whatever the source's mode.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(repo.path().join(".out/r1/storefront-middleware/.env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert_eq!(
        read(&repo, ".out/solo/storefront-unified-nextjs/.env.local").as_deref(),
        Some("NEXT_FLAG=frontend-value-44d0\n")
    );
    // Nowhere else: not in the middleware's `.env` of the frontend.
    assert!(read(&repo, ".out/r1/storefront-unified-nextjs/.env").is_none());

    let explained = repo.ok(&[
        "store",
        "explain",
        "r1",
        "--file",
        "storefront-middleware/.env",
    ]);
    assert!(
        explained.contains(".env: from apps/stores/brand/stores/r1/storefront-middleware")
            && explained.contains("shadows apps/storefront-middleware/.env"),
        "{explained}"
    );
    assert!(!explained.contains("r1-value"), "{explained}");

    // An edit rebuilds that store's app alone.
    let before = repo.builds().len();
    repo.write(R1_ENV, "API_KEY=r1-value-changed-5b3e\n");
    let (code, _, stderr) = repo.build_json(&[]);
    assert_eq!(code, 0, "{stderr}");
    let new: Vec<String> = repo.builds()[before..].to_vec();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(
        new[0].starts_with("middleware ") && new[0].ends_with(".out/r1/storefront-middleware"),
        "{new:?}"
    );
    // `store changed` reads git: it cannot see them.
    let changed = repo.ok(&[
        "store",
        "changed",
        "--condensed",
        "--since",
        "HEAD",
        "--uncommitted",
    ]);
    assert_eq!(changed.trim(), "[]", "{changed}");

    // Deployed: no `.deploy`, layer or cache entry holds a value.
    let report = repo.deploy_ok(&[]);
    assert!(report["stores"].as_array().is_some_and(|s| s.len() == 3));
    let mut found = Vec::new();
    for value in [
        "base-value-7c1f",
        "r1-value-changed-5b3e",
        "frontend-value-44d0",
    ] {
        holding(&repo.path().join(".strata"), value, &mut found);
        for store in ["r1", "r2", "solo"] {
            for app in ["storefront-middleware", "storefront-unified-nextjs"] {
                let deploy = repo.path().join(format!(".out/{store}/{app}/.deploy"));
                assert!(deploy.is_dir(), "{} was prepared", deploy.display());
                holding(&deploy, value, &mut found);
            }
        }
    }
    assert!(found.is_empty(), "values of .env files found in {found:?}");
    // The search finds what is there: the composed file, and the copy the
    // build put among its outputs (as Next.js does), which the cache,
    // `.deploy` and the image left out.
    let mut control = Vec::new();
    holding(
        &repo.path().join(".out"),
        "r1-value-changed-5b3e",
        &mut control,
    );
    control.sort();
    let at = |rel: &str| repo.path().join(rel).display().to_string();
    assert_eq!(
        control,
        [
            at(".out/r1/storefront-middleware/.env"),
            at(".out/r1/storefront-middleware/lib/.env"),
        ]
    );
    let mut frontend = Vec::new();
    holding(
        &repo.path().join(".out/r2/storefront-unified-nextjs/.next"),
        "frontend-value-44d0",
        &mut frontend,
    );
    assert_eq!(
        frontend.len(),
        1,
        "copied into .next/standalone: {frontend:?}"
    );
    for store in ["r1", "r2", "solo"] {
        let deploy = repo
            .path()
            .join(format!(".out/{store}/storefront-middleware/.deploy"));
        for entry in walk_names(&deploy) {
            assert!(!entry.contains(".env"), "{entry} was deployed");
        }
    }

    // Gone from the store: the base app's shows through again.
    repo.remove(R1_ENV);
    repo.ok(&["store", "compose"]);
    assert_eq!(env("r1").as_deref(), Some("API_KEY=base-value-7c1f\n"));
    // Gone everywhere: gone from `.out`.
    repo.remove("apps/storefront-middleware/.env");
    repo.ok(&["store", "compose"]);
    assert_eq!(env("r1"), None);
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        out.push(path.display().to_string());
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk_names(&path));
        }
    }
    out
}

/// The standard monorepo with legal pages in the base web app, a
/// deployable child `kids` of `us`, and `ignorePaths` on `us` (drops the
/// legal pages), `kids` (re-includes one) and `solo` (a pattern that
/// matches nothing).
fn ignoring_repo(us_rules: &str) -> Repo {
    let repo = Repo::standard();
    repo.write("apps/web/public/legal/terms.html", "terms\n");
    repo.write("apps/web/public/legal/imprint.html", "imprint\n");
    repo.write("apps/web/public/robots.txt", "robots\n");
    repo.write(
        "apps/stores/brand/stores/us/stores/kids/web/components/header.tsx",
        "kids header\n",
    );
    repo.write(
        "alokai.config.json",
        &format!(
            r#"{{
  "stores": {{
    "us": {{ "ignorePaths": {us_rules} }},
    "kids": {{ "ignorePaths": ["!web/public/legal/imprint.html"] }},
    "eu": {{}},
    "solo": {{ "ignorePaths": ["web/public/nothing-here/*"] }}
  }}
}}
"#
        ),
    );
    repo
}

#[test]
fn ignore_paths_drop_inherited_files_for_a_store_and_its_children() {
    let repo = ignoring_repo(r#"["web/public/legal/*"]"#);
    repo.git_init();
    repo.commit("stores");
    repo.ok(&["store", "compose"]);
    let has = |rel: &str| repo.path().join(".out").join(rel).exists();
    assert!(!has("us/web/public/legal/terms.html"));
    assert!(!has("us/web/public/legal/imprint.html"));
    assert!(has("us/web/public/robots.txt"));
    // The child: its parent's rules first, then its own `!`.
    assert!(!has("kids/web/public/legal/terms.html"));
    assert!(has("kids/web/public/legal/imprint.html"));
    assert!(has("kids/web/components/header.tsx"));
    // Other stores keep them.
    assert!(has("eu/web/public/legal/terms.html"));
    assert!(has("solo/web/public/legal/imprint.html"));

    let explained = repo.ok(&[
        "store",
        "explain",
        "kids",
        "--file",
        "web/public/legal/terms.html",
    ]);
    assert!(
        explained.contains("removed by \"web/public/legal/*\" in the ignorePaths of us"),
        "{explained}"
    );
    let explained = repo.ok(&[
        "store",
        "explain",
        "kids",
        "--file",
        "web/public/legal/imprint.html",
    ]);
    assert!(
        explained.contains("imprint.html: from apps/web"),
        "{explained}"
    );

    let lint = repo.strata(&["store", "lint"]);
    let lint =
        String::from_utf8_lossy(&lint.stderr).into_owned() + &String::from_utf8_lossy(&lint.stdout);
    assert!(
        lint.contains("stores.solo.ignorePaths: \"web/public/nothing-here/*\" matches no file"),
        "{lint}"
    );
    assert!(!lint.contains("stores.us.ignorePaths"), "{lint}");
    assert!(!lint.contains("stores.kids.ignorePaths"), "{lint}");

    // `store changed` and the builds agree: an ignored file is no input.
    let changed = |repo: &Repo| -> Vec<String> {
        let out = repo.ok(&["store", "changed", "--condensed"]);
        serde_json::from_str(&out).unwrap()
    };
    repo.write("apps/web/public/legal/terms.html", "terms, amended\n");
    repo.commit("terms");
    assert_eq!(changed(&repo), ["eu", "solo"]);
    repo.write("apps/web/public/legal/imprint.html", "imprint, amended\n");
    repo.commit("imprint");
    assert_eq!(changed(&repo), ["kids", "eu", "solo"]);
    let report = repo.compose_json();
    let recomposed = crate::util::recomputed(&report);
    assert!(
        recomposed.iter().any(|id| id == "out/kids/web")
            && !recomposed.iter().any(|id| id.starts_with("out/us/")),
        "us writes nothing new: {recomposed:?}"
    );

    // A rule changed in the config: the store's files changed.
    repo.write(
        "alokai.config.json",
        &std::fs::read_to_string(repo.path().join("alokai.config.json"))
            .unwrap()
            .replace(
                r#""web/public/legal/*""#,
                r#""web/public/legal/terms.html""#,
            ),
    );
    repo.commit("us keeps its imprint");
    // `kids` composes the same files as before (its imprint was back
    // already, its terms are still gone): not named.
    assert_eq!(changed(&repo), ["us"]);
    repo.ok(&["store", "compose"]);
    assert!(has("us/web/public/legal/imprint.html"));
    assert!(!has("us/web/public/legal/terms.html"));
}

#[test]
fn a_bad_ignore_pattern_is_refused_with_its_place() {
    let repo = ignoring_repo(r#"["web/public/[z-a"]"#);
    let out = repo.strata(&["store", "compose"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stores.us.ignorePaths[0]") && stderr.contains("gitignore pattern"),
        "{stderr}"
    );
    assert!(!repo.path().join(".out").exists());
    let repo = ignoring_repo(r#""web/public""#);
    let out = repo.strata(&["store", "compose"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ignorePaths"), "{stderr}");
}

const BASE_TSCONFIG: &str = r#"{
  // As Next.js writes it, with an alias of our own.
  "compilerOptions": {
    "target": "es2017",
    "module": "esnext",
    "moduleResolution": "node",
    "strict": true,
    "noEmit": true,
    "baseUrl": ".",
    "paths": { "@/*": ["./*"], "~lib/*": ["./lib/*"] },
  },
  "include": ["**/*.ts"],
  "exclude": ["node_modules"]
}
"#;

fn tsc(repo: &Repo, project: &str) -> (bool, String) {
    crate::registry::require("tsc", "node-typescript");
    let out = std::process::Command::new("tsc")
        .args(["--noEmit", "-p", project])
        .current_dir(repo.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn store_tsconfigs_resolve_through_the_ancestors_for_editors_only() {
    let repo = Repo::empty();
    let fe = "apps/storefront-unified-nextjs";
    repo.write(".gitignore", ".out/\n.strata/\n");
    repo.write(
        &format!("{fe}/package.json"),
        "{\"name\": \"storefront-unified-nextjs\"}\n",
    );
    repo.write(&format!("{fe}/tsconfig.json"), BASE_TSCONFIG);
    repo.write(
        &format!("{fe}/components/only-base.ts"),
        "export const onlyBase = 1;\n",
    );
    repo.write(&format!("{fe}/lib/util.ts"), "export const util = 2;\n");
    repo.write(
        &format!("{fe}/components/who.ts"),
        "export const who: \"base\" = \"base\";\n",
    );
    repo.write(
        "apps/stores/brand/storefront-unified-nextjs/components/who.ts",
        "export const who: \"brand\" = \"brand\";\n",
    );
    repo.write("alokai.config.json", "{\"stores\": {}}\n");

    let added = repo.ok(&["store", "add", "-s", "kid", "-p", "brand"]);
    let kid = "apps/stores/brand/stores/kid/storefront-unified-nextjs";
    assert!(
        added.contains(&format!("wrote {kid}/tsconfig.json")),
        "{added}"
    );
    let generated = std::fs::read_to_string(repo.path().join(kid).join("tsconfig.json")).unwrap();
    assert!(
        generated.contains(
            "\"@/*\": [\n        \"./*\",\n        \"../../../storefront-unified-nextjs/*\",\n        \"../../../../../storefront-unified-nextjs/*\"\n      ]"
        ),
        "{generated}"
    );
    // A file of the store imports what only the base app has, through
    // both aliases, and what its parent overrides (typed: the parent's
    // must win).
    repo.write(
        &format!("{kid}/page.ts"),
        "import { onlyBase } from \"@/components/only-base\";\nimport { util } from \"~lib/util\";\nimport { who } from \"@/components/who\";\nconst mine: \"brand\" = who;\nexport default onlyBase + util + mine.length;\n",
    );
    let (ok, output) = tsc(&repo, kid);
    assert!(ok, "tsc failed in the store folder:\n{output}\n{generated}");
    // The check can fail: an import nobody provides.
    repo.write(
        &format!("{kid}/broken.ts"),
        "import { nothing } from \"@/components/nowhere\";\nexport default nothing;\n",
    );
    let (ok, output) = tsc(&repo, kid);
    assert!(!ok && output.contains("components/nowhere"), "{output}");
    repo.remove(&format!("{kid}/broken.ts"));

    // Builds are unaffected: the composed app has the base app's config.
    repo.ok(&["store", "compose"]);
    assert_eq!(
        std::fs::read_to_string(
            repo.path()
                .join(".out/kid/storefront-unified-nextjs/tsconfig.json")
        )
        .unwrap(),
        BASE_TSCONFIG
    );

    // CI's check: the template's folder was made by hand (none there
    // yet), then all current, then stale after an edit, then rewritten.
    let out = repo.strata(&["store", "tsconfig", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "stale: apps/stores/brand/storefront-unified-nextjs/tsconfig.json\n"
    );
    repo.ok(&["store", "tsconfig"]);
    assert!(repo.ok(&["store", "tsconfig", "--check"]).is_empty());
    repo.write(&format!("{kid}/tsconfig.json"), "{}\n");
    let out = repo.strata(&["store", "tsconfig", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("stale: {kid}/tsconfig.json\n")
    );
    repo.ok(&["store", "tsconfig"]);
    assert_eq!(
        std::fs::read_to_string(repo.path().join(kid).join("tsconfig.json")).unwrap(),
        generated
    );
    let (ok, output) = tsc(&repo, kid);
    assert!(ok, "{output}");

    // The base app's tsconfig.json is what stores build with: an edit of
    // it reaches every store in `store changed`, generated ones or not.
    repo.git_init();
    repo.commit("stores");
    repo.write(
        &format!("{fe}/tsconfig.json"),
        &BASE_TSCONFIG.replace("es2017", "es2020"),
    );
    repo.commit("a newer target");
    let changed = repo.ok(&["store", "changed", "--condensed"]);
    assert_eq!(changed.trim(), "[\"kid\"]", "{changed}");
    repo.ok(&["store", "tsconfig"]);

    // Moved to the top: its config now skips the old parent, and the
    // parent's typed file no longer resolves.
    let moved = repo.ok(&["store", "move", "-s", "kid", "-p", "root"]);
    let kid = "apps/stores/kid/storefront-unified-nextjs";
    assert!(
        moved.contains(&format!("rewrote {kid}/tsconfig.json")),
        "{moved}"
    );
    let generated = std::fs::read_to_string(repo.path().join(kid).join("tsconfig.json")).unwrap();
    assert!(
        generated.contains("\"@/*\": [\n        \"./*\",\n        \"../../../storefront-unified-nextjs/*\"\n      ]"),
        "{generated}"
    );
    let (ok, output) = tsc(&repo, kid);
    assert!(!ok && output.contains("\"brand\""), "{output}");
}

const TEST_SCRIPT: &str = r#"
import { appendFileSync } from "node:fs";
import { resolve } from "node:path";
const root = resolve("../../..");
const store = process.env.STORE_ID;
const page = await (await fetch(`${process.env.BASE_URL}/`)).text();
const middleware = await (await fetch(`${process.env.MIDDLEWARE_URL}/`)).text();
appendFileSync(`${root}/tests.log`, `${store} ${JSON.stringify(page.trim())} ${middleware} [${process.argv.slice(2)}]\n`);
if (!page.includes(`${store} banner`)) {
  console.error(`expected the ${store} banner, got ${page.trim()}`);
  process.exit(1);
}
console.log(`${store}: ok`);
"#;

fn tested(repo: &Repo, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut full = vec!["store", "test", "--json"];
    full.extend_from_slice(args);
    let out = repo.strata(&full);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn statuses(report: &serde_json::Value) -> Vec<(String, String)> {
    report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["test"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn test_log(repo: &Repo) -> Vec<String> {
    std::fs::read_to_string(repo.path().join("tests.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn ports_config(repo: &Repo, r2_ports: (u16, u16)) {
    let (r1, solo) = (crate::util::free_port(), crate::util::free_port());
    let (r1m, solom) = (crate::util::free_port(), crate::util::free_port());
    repo.write(
        "alokai.config.json",
        &format!(
            r#"{{"stores": {{
  "r1": {{"deployment": {{"framework": "nextjs"}}, "localPorts": {{"middleware": {r1m}, "nextjs": {r1}}}}},
  "r2": {{"deployment": {{"framework": "nextjs"}}, "localPorts": {{"middleware": {}, "nextjs": {}}}}},
  "solo": {{"deployment": {{"framework": "nextjs"}}, "localPorts": {{"middleware": {solom}, "nextjs": {solo}}}}}
}}}}"#,
            r2_ports.0, r2_ports.1
        ),
    );
}

#[test]
fn store_test_runs_each_store_against_its_servers_and_caches_passes() {
    let repo = Repo::buildable();
    repo.write(
        ".gitignore",
        "node_modules/\n.out/\n.strata/\nbuilds.log\nslow.pids\ntests.log\n.env\n",
    );
    repo.write(
        "apps/playwright/package.json",
        "{\"name\": \"playwright\", \"type\": \"module\", \"scripts\": {\"test\": \"node test.mjs\"}}\n",
    );
    repo.write("apps/playwright/test.mjs", TEST_SCRIPT);
    // The middleware answers with its settings and what .env gave it.
    repo.write(
        "apps/storefront-middleware/src/index.mjs",
        r#"
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
const config = JSON.parse(readFileSync(new URL("./config.json", import.meta.url), "utf8"));
createServer((req, res) => res.end(JSON.stringify({ ...config, greeting: process.env.GREETING ?? null })))
  .listen(Number(process.env.PORT));
"#,
    );
    ports_config(&repo, (crate::util::free_port(), crate::util::free_port()));
    repo.git_init();
    repo.commit("monorepo with tests");

    let (code, report, stderr) = tested(&repo, &[]);
    assert_eq!(code, 0, "{stderr}\n{report}");
    let all = |status: &str| {
        ["r1", "r2", "solo"]
            .iter()
            .map(|s| (s.to_string(), status.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses(&report), all("passed"));
    let log = test_log(&repo);
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log.iter().any(|l| l.starts_with("r1 \"r1 banner\""))
            && log.iter().any(|l| l.contains("\"EUR\"")),
        "{log:?}"
    );
    // The servers were stopped: nothing listens on the stores' ports.
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.path().join("alokai.config.json")).unwrap(),
    )
    .unwrap();
    for store in ["r1", "r2", "solo"] {
        for (_, port) in config["stores"][store]["localPorts"].as_object().unwrap() {
            let port = port.as_u64().unwrap() as u16;
            assert!(
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
                "{store}'s server on {port} was left running"
            );
        }
    }

    // Nothing changed: cached, nothing ran.
    let (code, report, stderr) = tested(&repo, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(statuses(&report), all("cached"));
    assert_eq!(test_log(&repo).len(), 3);

    // --force runs again.
    let (code, report, _) = tested(&repo, &["-s", "r1", "--force"]);
    assert_eq!(code, 0);
    assert_eq!(
        statuses(&report),
        [("r1".to_string(), "passed".to_string())]
    );
    assert_eq!(test_log(&repo).len(), 4);

    // A store whose page breaks fails, alone; the others stay cached.
    repo.write(
        "apps/stores/brand/stores/r2/storefront-unified-nextjs/components/banner.html",
        "broken\n",
    );
    let (code, report, stderr) = tested(&repo, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        statuses(&report),
        [
            ("r1".to_string(), "cached".to_string()),
            ("r2".to_string(), "failed".to_string()),
            ("solo".to_string(), "cached".to_string()),
        ]
    );
    assert!(
        stderr.contains("expected the r2 banner") && stderr.contains("r2: the tests failed"),
        "{stderr}"
    );
    // A failure is not recorded: fixed, it runs again and passes; put
    // back as it was before, it runs again too (the last passing run is
    // the one remembered).
    repo.write(
        "apps/stores/brand/stores/r2/storefront-unified-nextjs/components/banner.html",
        "r2 banner, fixed\n",
    );
    let (code, report, stderr) = tested(&repo, &["-s", "r2"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        statuses(&report),
        [("r2".to_string(), "passed".to_string())]
    );
    repo.write(
        "apps/stores/brand/stores/r2/storefront-unified-nextjs/components/banner.html",
        "r2 banner\n",
    );
    let (code, report, stderr) = tested(&repo, &["-s", "r2"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        statuses(&report),
        [("r2".to_string(), "passed".to_string())]
    );

    // A `.env` of one store's middleware: that store runs again, and its
    // production server read it.
    repo.write(
        "apps/stores/brand/stores/r1/storefront-middleware/.env",
        // What strata sets for the server wins over a `.env`.
        "GREETING=\"hello from .env\"\nPORT=1\nNODE_ENV=development\n",
    );
    let before = test_log(&repo).len();
    let (code, report, stderr) = tested(&repo, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        statuses(&report),
        [
            ("r1".to_string(), "passed".to_string()),
            ("r2".to_string(), "cached".to_string()),
            ("solo".to_string(), "cached".to_string()),
        ]
    );
    let log = test_log(&repo);
    assert_eq!(log.len(), before + 1);
    assert!(
        log.last()
            .unwrap()
            .contains("\"greeting\":\"hello from .env\""),
        "{log:?}"
    );

    // --since: the stores `store changed` names.
    repo.write(
        "apps/stores/solo/storefront-unified-nextjs/components/banner.html",
        "solo banner, new\n",
    );
    repo.commit("solo's banner");
    let (code, report, stderr) = tested(&repo, &["--since", "HEAD~1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        statuses(&report),
        [("solo".to_string(), "passed".to_string())]
    );
}

#[test]
fn store_test_serializes_stores_that_share_ports_and_refuses_a_busy_port() {
    let repo = Repo::buildable();
    repo.write(
        ".gitignore",
        "node_modules/\n.out/\n.strata/\nbuilds.log\nslow.pids\ntests.log\n",
    );
    repo.write(
        "apps/playwright/package.json",
        "{\"name\": \"playwright\", \"type\": \"module\", \"scripts\": {\"test\": \"node test.mjs\"}}\n",
    );
    repo.write("apps/playwright/test.mjs", TEST_SCRIPT);
    ports_config(&repo, (crate::util::free_port(), crate::util::free_port()));
    // r2 on r1's ports: with -j 3 they still run one after the other (at
    // once, the second would find the ports busy and fail).
    let config = std::fs::read_to_string(repo.path().join("alokai.config.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&config).unwrap();
    let r1 = value["stores"]["r1"]["localPorts"].clone();
    let mut value = value;
    value["stores"]["r2"]["localPorts"] = r1.clone();
    repo.write("alokai.config.json", &value.to_string());
    let (code, report, stderr) = tested(&repo, &["-j", "3"]);
    assert_eq!(code, 0, "{stderr}\n{report}");
    assert_eq!(test_log(&repo).len(), 3);

    // Something else on r1's frontend port: refused, named.
    let port = r1["nextjs"].as_u64().unwrap() as u16;
    let _busy = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (code, report, stderr) = tested(&repo, &["-s", "r1", "--force"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        stderr.contains(&format!(
            "port {port} of storefront-unified-nextjs is in use already"
        )),
        "{stderr}"
    );
    assert_eq!(
        statuses(&report),
        [("r1".to_string(), "failed".to_string())]
    );

    // Alokai's --ui reaches the script (Playwright's UI mode), uncached.
    let (code, report, stderr) = tested(&repo, &["-s", "solo", "--ui"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        statuses(&report),
        [("solo".to_string(), "passed".to_string())]
    );
    let log = test_log(&repo);
    assert!(
        log.last().unwrap().starts_with("solo ") && log.last().unwrap().ends_with(" [--ui]"),
        "{log:?}"
    );

    // No test app: bad input, exit 2.
    repo.remove("apps/playwright/package.json");
    repo.write(
        "apps/playwright/package.json",
        "{\"name\": \"playwright\"}\n",
    );
    let out = repo.strata(&["store", "test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no \"test\" script"));
}

/// A base app whose `baseUrl` (from a config package it extends) and
/// `paths` point into `src/`, with a `rootDir`: the store's generated config still
/// resolves `@/*` through the store first, and tsc accepts its files (the
/// base's `rootDir` would refuse them). An alias outside the app names the
/// same place from the store.
#[test]
fn store_tsconfigs_follow_base_url_root_dir_and_extends() {
    let repo = Repo::empty();
    repo.write(".gitignore", ".out/\n.strata/\n");
    // A shared config package sets `baseUrl` for whoever uses it.
    repo.write(
        "node_modules/@repo/tsconfig/base.json",
        r#"{"compilerOptions": {"strict": true, "module": "commonjs", "moduleResolution": "node", "target": "es2019", "noEmit": true, "baseUrl": "${configDir}/src"}}"#,
    );
    let api = "apps/storefront-middleware";
    repo.write(
        &format!("{api}/package.json"),
        "{\"name\": \"storefront-middleware\"}\n",
    );
    repo.write(
        &format!("{api}/tsconfig.json"),
        r#"{
  "extends": "@repo/tsconfig/base.json",
  "compilerOptions": { "rootDir": "./src", "paths": { "@/*": ["*"], "@shared/*": ["../../../packages/shared/*"] } },
  "include": ["src/**/*.ts"]
}"#,
    );
    repo.write(
        &format!("{api}/src/only-base.ts"),
        "export const base = 1;\n",
    );
    repo.write(
        &format!("{api}/src/who.ts"),
        "export const who: \"base\" = \"base\";\n",
    );
    repo.write("packages/shared/util.ts", "export const shared = 3;\n");
    repo.write(
        "apps/stores/eu/storefront-middleware/src/who.ts",
        "export const who: \"eu\" = \"eu\";\n",
    );
    repo.write(
        "apps/stores/eu/storefront-middleware/src/index.ts",
        "import { base } from \"@/only-base\";\nimport { who } from \"@/who\";\nconst mine: \"eu\" = who;\nexport default base + mine.length;\n",
    );
    repo.write("alokai.config.json", "{\"stores\": {\"eu\": {}}}\n");
    repo.ok(&["store", "tsconfig"]);
    let store = "apps/stores/eu/storefront-middleware";
    let generated = std::fs::read_to_string(repo.path().join(store).join("tsconfig.json")).unwrap();
    let (ok, output) = tsc(&repo, store);
    assert!(ok, "tsc failed in the store folder:\n{output}\n{generated}");
    assert!(
        generated.contains("\"./src/*\"")
            && generated.contains("\"../../../storefront-middleware/src/*\""),
        "{generated}"
    );
    assert!(
        generated.contains("\"@shared/*\": [\n        \"../../../../packages/shared/*\"\n      ]"),
        "{generated}"
    );
}
