//! `strata store changed` on real git repositories: every reason, shielding
//! at every depth, deletes and renames, merges, the working tree, and the
//! shallow-clone error.

use crate::util::{Repo, git};

/// The affected store ids for a range.
fn ids(repo: &Repo, args: &[&str]) -> Vec<String> {
    let mut full = vec!["store", "changed", "--condensed"];
    full.extend_from_slice(args);
    serde_json::from_str(&repo.ok(&full)).unwrap()
}

fn report(repo: &Repo, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["store", "changed", "--json"];
    full.extend_from_slice(args);
    serde_json::from_str(&repo.ok(&full)).unwrap()
}

/// The reasons of one store in a report, as strings.
fn reasons(report: &serde_json::Value, id: &str) -> Vec<String> {
    report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .map(|s| {
            s["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["reason"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn repo() -> Repo {
    let repo = Repo::standard();
    // A third level: a store under `us`.
    repo.write(
        "apps/stores/brand/stores/us/stores/ny/web/src/ny.ts",
        "ny\n",
    );
    repo.config(&["us", "eu", "solo", "ny"]);
    repo.git_init();
    repo
}

#[test]
fn base_change_reaches_every_store_that_does_not_override_it() {
    let repo = repo();
    repo.write("apps/web/src/file0.ts", "changed\n");
    repo.commit("base edit");
    assert_eq!(ids(&repo, &[]), ["us", "eu", "solo", "ny"]);
    let r = report(&repo, &[]);
    assert_eq!(reasons(&r, "us"), ["ANCESTOR_CHANGED"]);
    assert_eq!(
        r["stores"][0]["reasons"][0]["files"],
        serde_json::json!(["apps/web/src/file0.ts"])
    );
}

#[test]
fn overrides_shield_at_every_depth() {
    let repo = repo();
    // Overridden by the brand: only `solo` sees the base header.
    repo.write("apps/web/components/header.tsx", "new base header\n");
    repo.commit("header");
    assert_eq!(ids(&repo, &[]), ["solo"]);

    // Overridden by `us`: its child `ny` inherits the shield.
    repo.write(
        "apps/stores/brand/web/components/footer.tsx",
        "brand footer\n",
    );
    repo.commit("brand footer");
    assert_eq!(ids(&repo, &[]), ["eu"]);

    // A change in `us` reaches `ny` (ancestor) and `us` (its own).
    repo.write(
        "apps/stores/brand/stores/us/web/components/footer.tsx",
        "us footer 2\n",
    );
    repo.commit("us footer");
    let r = report(&repo, &[]);
    assert_eq!(ids(&repo, &[]), ["us", "ny"]);
    assert_eq!(reasons(&r, "us"), ["STORE_CHANGED"]);
    assert_eq!(reasons(&r, "ny"), ["ANCESTOR_CHANGED"]);

    // `ny` overrides it too: a change in `us` no longer reaches it.
    repo.write(
        "apps/stores/brand/stores/us/stores/ny/web/components/footer.tsx",
        "ny footer\n",
    );
    repo.commit("ny footer");
    repo.write(
        "apps/stores/brand/stores/us/web/components/footer.tsx",
        "us footer 3\n",
    );
    repo.commit("us footer again");
    assert_eq!(ids(&repo, &[]), ["us"]);
}

#[test]
fn a_template_change_reports_its_deployable_descendants() {
    let repo = repo();
    repo.write("apps/stores/brand/api/src/new.ts", "brand api\n");
    repo.commit("brand api");
    assert_eq!(ids(&repo, &[]), ["us", "eu", "ny"]);
    // A file in a store folder outside any app is used by no store.
    repo.write("apps/stores/brand/README.md", "notes\n");
    repo.commit("notes");
    assert!(ids(&repo, &[]).is_empty());
}

#[test]
fn deleting_an_override_unshields_the_store() {
    let repo = repo();
    repo.remove("apps/stores/brand/stores/us/web/components/footer.tsx");
    repo.commit("drop us footer");
    let r = report(&repo, &[]);
    assert_eq!(ids(&repo, &[]), ["us", "ny"]);
    assert_eq!(reasons(&r, "us"), ["STORE_CHANGED"]);
    // Deleting a base file every store overrides changes nothing.
    repo.write(
        "apps/stores/solo/web/components/header.tsx",
        "solo header\n",
    );
    repo.commit("solo header");
    repo.remove("apps/web/components/header.tsx");
    repo.commit("drop base header");
    assert!(ids(&repo, &[]).is_empty());
}

#[test]
fn renames_count_on_both_sides() {
    let repo = repo();
    // `eu` overrides src/file1.ts of api; nobody overrides file2.
    git(
        repo.path(),
        &["mv", "apps/api/src/file1.ts", "apps/api/src/renamed.ts"],
    );
    repo.commit("rename");
    // Every store gains renamed.ts; eu keeps its own file1.ts, others lose it.
    assert_eq!(ids(&repo, &[]), ["us", "eu", "solo", "ny"]);

    // A store that overrides both paths of a rename is not affected.
    repo.write("apps/stores/solo/web/src/a.ts", "solo a\n");
    repo.write("apps/stores/solo/web/src/b.ts", "solo b\n");
    repo.write("apps/web/src/a.ts", "base a\n");
    repo.commit("setup");
    git(
        repo.path(),
        &["mv", "apps/web/src/a.ts", "apps/web/src/b.ts"],
    );
    repo.commit("rename a to b");
    assert_eq!(ids(&repo, &[]), ["us", "eu", "ny"]);
}

#[test]
fn lockfiles_globals_and_config() {
    let repo = repo();
    repo.write("yarn.lock", "# lock 1\n");
    repo.commit("lock");
    let r = report(&repo, &[]);
    assert_eq!(ids(&repo, &[]), ["us", "eu", "solo", "ny"]);
    assert_eq!(reasons(&r, "eu"), ["PACKAGE_LOCK_CHANGED"]);

    repo.write("apps/api/pnpm-lock.yaml", "lock: 1\n");
    repo.commit("app lock");
    let r = report(&repo, &[]);
    // A base app's lockfile is also one of its files.
    assert_eq!(
        reasons(&r, "solo"),
        ["ANCESTOR_CHANGED", "PACKAGE_LOCK_CHANGED"]
    );

    repo.write("packages/ui/button.ts", "button\n");
    repo.commit("shared package");
    assert!(ids(&repo, &[]).is_empty());
    let r = report(&repo, &["--global-dependencies", "packages/**"]);
    assert_eq!(reasons(&r, "ny"), ["GLOBAL_DEPENDENCIES_CHANGED"]);

    // Only the store whose own entry changed.
    let config = std::fs::read_to_string(repo.path().join("alokai.config.json")).unwrap();
    let config = config.replacen("\"eu\": { \"deployment\": { \"framework\": \"nextjs\" } }", "\"eu\": { \"deployment\": { \"framework\": \"nextjs\", \"cloudRegion\": \"europe-west3\" } }", 1);
    repo.write("alokai.config.json", &config);
    repo.commit("eu region");
    let r = report(&repo, &[]);
    assert_eq!(ids(&repo, &[]), ["eu"]);
    assert_eq!(reasons(&r, "eu"), ["CONFIG_CHANGED"]);
}

#[test]
fn a_new_store_and_a_removed_one() {
    let repo = repo();
    repo.write("apps/stores/brand/stores/de/web/src/de.ts", "de\n");
    repo.config(&["us", "eu", "solo", "ny", "de"]);
    repo.commit("add de");
    let r = report(&repo, &[]);
    assert_eq!(ids(&repo, &[]), ["de"]);
    assert_eq!(reasons(&r, "de"), ["STORE_CHANGED", "CONFIG_CHANGED"]);
    // A template turned deployable: new output, even with no file changed.
    repo.config(&["us", "eu", "solo", "ny", "de", "brand"]);
    repo.commit("brand deployable");
    assert_eq!(ids(&repo, &[]), ["brand"]);
    // Removed stores are not reported: there is nothing to deploy.
    repo.config(&["us", "eu", "solo", "ny"]);
    repo.commit("drop de and brand");
    assert!(ids(&repo, &[]).is_empty());
}

#[test]
fn ranges_use_the_merge_base() {
    let repo = repo();
    git(repo.path(), &["checkout", "-q", "-b", "feature"]);
    repo.write("apps/stores/solo/web/src/feature.ts", "feature\n");
    repo.commit("feature work");
    git(repo.path(), &["checkout", "-q", "main"]);
    repo.write("apps/stores/brand/stores/eu/web/src/main.ts", "main\n");
    repo.commit("main work");
    // What the feature branch brings, not what main did since.
    assert_eq!(
        ids(&repo, &["--since", "main", "--to", "feature"]),
        ["solo"]
    );
    // After a merge, a range over the merge sees both sides' changes.
    let before = git(repo.path(), &["rev-parse", "HEAD"]);
    git(repo.path(), &["merge", "-q", "--no-edit", "feature"]);
    assert_eq!(ids(&repo, &["--since", &before]), ["solo"]);
    assert_eq!(ids(&repo, &["--since", "HEAD~2"]), ["eu", "solo"]);
}

#[test]
fn working_tree_mode_sees_staged_unstaged_and_untracked_files() {
    let repo = repo();
    repo.write("apps/stores/solo/web/src/untracked.ts", "new\n");
    repo.write(
        "apps/stores/brand/stores/eu/api/src/file1.ts",
        "unstaged edit\n",
    );
    repo.write(
        "apps/stores/brand/stores/us/stores/ny/web/src/ny.ts",
        "staged edit\n",
    );
    git(
        repo.path(),
        &["add", "apps/stores/brand/stores/us/stores/ny/web/src/ny.ts"],
    );
    // Ignored files are not changes.
    repo.write(
        "apps/stores/brand/stores/us/web/node_modules/x.js",
        "ignored\n",
    );
    assert_eq!(
        ids(&repo, &["--since", "HEAD", "--uncommitted"]),
        ["eu", "solo", "ny"]
    );
    // Without --uncommitted, the working tree is not looked at.
    repo.commit("snapshot");
    assert_eq!(ids(&repo, &[]), ["eu", "solo", "ny"]);
}

#[test]
fn an_unresolvable_since_is_a_clear_error() {
    let repo = repo();
    let out = repo.strata(&["store", "changed", "--since", "no-such-branch"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"no-such-branch\""), "{stderr}");

    // A shallow clone has no HEAD~1: fail, never report every store.
    repo.write("apps/web/src/file0.ts", "second commit\n");
    repo.commit("second");
    let clone = Repo::empty();
    let url = format!("file://{}", repo.path().display());
    git(clone.path(), &["clone", "-q", "--depth", "1", &url, "c"]);
    let out = crate::util::strata(
        &clone.path().join("c"),
        &["store", "changed", "--condensed"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HEAD~1") && stderr.contains("shallow") && stderr.contains("fetch"),
        "{stderr}"
    );
}

#[test]
fn the_table_names_stores_reasons_and_files() {
    let repo = repo();
    for i in 0..5 {
        repo.write(&format!("apps/e2e/src/file{i}.ts"), "edited\n");
    }
    repo.commit("e2e");
    let table = repo.ok(&["store", "changed"]);
    assert!(table.starts_with("STORE"), "{table}");
    assert!(table.contains("ANCESTOR_CHANGED"), "{table}");
    assert!(table.contains("(+2 more)"), "{table}");
    repo.commit("nothing");
    assert!(
        repo.ok(&["store", "changed"])
            .contains("no store is affected")
    );
}
