//! A lockfile change reaches only the apps whose dependency closure it
//! touches: builds, `store changed` and the reasons agree (on lockfiles
//! npm wrote, from `rules/testdata/lockfiles/npm`).

use crate::fixtures::status;
use crate::util::Repo;

const MW: &str = "storefront-middleware";
const FE: &str = "storefront-unified-nextjs";
const STORES: [&str; 3] = ["r1", "r2", "solo"];

fn testdata(state: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("rules/testdata/lockfiles/npm")
            .join(state)
            .join("package-lock.json"),
    )
    .unwrap()
}

fn changed(repo: &Repo) -> serde_json::Value {
    serde_json::from_str(&repo.ok(&["store", "changed", "--json"])).unwrap()
}

/// Each app's build status in every store.
fn built(report: &serde_json::Value, app: &str) -> Vec<String> {
    STORES
        .iter()
        .map(|s| status(report, s, app, "build").to_string())
        .collect()
}

fn ran(statuses: &[String]) -> bool {
    statuses
        .iter()
        .all(|s| s == "built" || s.starts_with("shared"))
}

#[test]
fn a_lockfile_change_rebuilds_only_the_apps_whose_closure_it_touches() {
    let repo = Repo::buildable();
    repo.git_init();
    repo.write("package-lock.json", &testdata("base"));
    repo.commit("a lockfile npm wrote");
    let (code, report, stderr) = repo.build_json(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(ran(&built(&report, MW)) && ran(&built(&report, FE)));

    // A root-only tool (in the root manifest and the lockfile): no app's
    // closure changes, so nothing builds and no store changed.
    repo.write("package-lock.json", &testdata("root-tool"));
    repo.write(
        "package.json",
        "{\"name\": \"demo\", \"private\": true, \"devDependencies\": {\"prettier\": \"3.3.3\"}}\n",
    );
    repo.commit("prettier at the root");
    let report = changed(&repo);
    assert_eq!(report["stores"], serde_json::json!([]), "{report}");
    let (code, report, _) = repo.build_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(report["scripts_run"], 0, "{report}");

    // express: the middleware's closure alone. Every store deploys the
    // middleware, so every store changed; only middleware builds run (the
    // frontends read the middleware's outputs, which are the same).
    repo.write("package-lock.json", &testdata("express-bump"));
    repo.commit("express 4.21.2");
    let report = changed(&repo);
    for store in STORES {
        let entry = report["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == store)
            .unwrap_or_else(|| panic!("{store} changed: {report}"));
        assert_eq!(entry["reasons"][0]["reason"], "PACKAGE_LOCK_CHANGED");
        let packages: Vec<&str> = entry["reasons"][0]["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(
            packages,
            [
                "express 4.21.1 -> 4.21.2 (storefront-middleware)",
                "path-to-regexp 0.1.10 -> 0.1.12 (storefront-middleware)"
            ]
        );
    }
    let plan: serde_json::Value =
        serde_json::from_str(&repo.ok(&["store", "deploy", "--dry-run", "--json", "-s", "solo"]))
            .unwrap();
    let message = plan["stores"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("lockfile/package-lock.json/storefront-middleware changed")
            && message.contains("express 4.21.1 -> 4.21.2"),
        "{message}"
    );
    let (code, report, _) = repo.build_json(&[]);
    assert_eq!(code, 0);
    assert!(ran(&built(&report, MW)), "{:?}", built(&report, MW));
    assert_eq!(built(&report, FE), ["cached"; 3]);

    // A package only the frontend installs: the frontends alone.
    let mut lock: serde_json::Value = serde_json::from_str(&testdata("express-bump")).unwrap();
    let entry = &mut lock["packages"]["node_modules/is-number"];
    assert_eq!(entry["version"], "7.0.0");
    entry["version"] = "7.0.1".into();
    repo.write(
        "package-lock.json",
        &serde_json::to_string_pretty(&lock).unwrap(),
    );
    repo.commit("is-number 7.0.1");
    let report = changed(&repo);
    let packages = &report["stores"][0]["reasons"][0]["packages"];
    assert_eq!(
        packages,
        &serde_json::json!(["is-number 7.0.0 -> 7.0.1 (storefront-unified-nextjs)"]),
        "{report}"
    );
    let (code, report, _) = repo.build_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(built(&report, MW), ["cached"; 3]);
    assert!(ran(&built(&report, FE)), "{:?}", built(&report, FE));
}

/// When in doubt, rebuild: a lockfile that does not parse, and a `file:`
/// dependency, make the whole lockfile count (every build, every store,
/// with a warning for the unparsable one); a patch-package patch counts
/// in the closures of the package it patches.
#[test]
fn doubtful_lockfiles_fall_back_to_every_app() {
    let repo = Repo::buildable();
    repo.git_init();
    repo.write("package-lock.json", &testdata("base"));
    repo.commit("a lockfile npm wrote");
    let (code, _, _) = repo.build_json(&[]);
    assert_eq!(code, 0);

    // Not JSON any more: every store, and a warning.
    repo.write("package-lock.json", "{ this is not json\n");
    repo.commit("a broken lockfile");
    let out = repo.strata(&["store", "changed", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: package-lock.json"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["stores"].as_array().unwrap().len(), 3, "{report}");
    let (code, report, _) = repo.build_json(&[]);
    assert_eq!(code, 0);
    assert!(ran(&built(&report, MW)) && ran(&built(&report, FE)));

    // A file: dependency of the frontend: its closure is the whole
    // lockfile, so any lockfile edit rebuilds it, even one elsewhere.
    let mut lock: serde_json::Value = serde_json::from_str(&testdata("base")).unwrap();
    lock["packages"]["apps/storefront-unified-nextjs"]["dependencies"]["local"] =
        "file:../../vendor/local".into();
    repo.write(
        "package-lock.json",
        &serde_json::to_string_pretty(&lock).unwrap(),
    );
    repo.commit("a file: dependency");
    let (code, _, _) = repo.build_json(&[]);
    assert_eq!(code, 0);
    lock["packages"]["node_modules/express/node_modules/ms"]["integrity"] = "sha512-other".into();
    repo.write(
        "package-lock.json",
        &serde_json::to_string_pretty(&lock).unwrap(),
    );
    repo.commit("an edit in the middleware's closure");
    let (code, report, _) = repo.build_json(&[]);
    assert_eq!(code, 0);
    assert!(ran(&built(&report, MW)), "{:?}", built(&report, MW));
    assert!(
        ran(&built(&report, FE)),
        "the frontend's closure is the whole lockfile: {:?}",
        built(&report, FE)
    );

    // A patch of left-pad (the frontend's): the frontends alone, and
    // `store changed` says so though no lockfile changed.
    repo.write("patches/left-pad+1.3.0.patch", "--- a\n+++ b\n");
    repo.commit("patch left-pad");
    let report = changed(&repo);
    assert_eq!(report["stores"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(
        report["stores"][0]["reasons"][0]["packages"],
        serde_json::json!(["patches changed (storefront-unified-nextjs)"]),
        "{report}"
    );
    let (code, report, _) = repo.build_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(built(&report, MW), ["cached"; 3]);
    assert!(ran(&built(&report, FE)), "{:?}", built(&report, FE));
}
