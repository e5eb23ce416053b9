//! `strata store compose`: exact output, incrementality, drift repair, and
//! clear errors on bad input.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use crate::util::{Repo, assert_out_exact, recomputed};

#[test]
fn compose_matches_the_inheritance_rules() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
    // Spot checks of the rules themselves, beside the oracle.
    let out = repo.path().join(".out");
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    assert_eq!(read("us/web/components/header.tsx"), "brand header\n");
    assert_eq!(read("us/web/components/footer.tsx"), "us footer\n");
    assert_eq!(read("eu/web/components/footer.tsx"), "base footer\n");
    assert_eq!(read("eu/api/src/file1.ts"), "eu api\n");
    assert_eq!(read("us/api/src/file1.ts"), "api base 1\n");
    assert!(read("us/web/package.json").contains("\"name\": \"web-us\""));
    assert!(
        !out.join("brand").exists(),
        "template stores are never written"
    );
}

#[test]
fn noop_compose_writes_nothing_and_keeps_mtimes() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose"]);
    let file = repo.path().join(".out/us/web/src/file0.ts");
    let before = std::fs::metadata(&file).unwrap();
    let report = repo.compose_json();
    assert_eq!(report["totals"]["written"], 0);
    assert!(recomputed(&report).is_empty(), "{report}");
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(before.mtime_nsec(), after.mtime_nsec());
    assert_eq!(before.ino(), after.ino());
}

#[test]
fn one_file_edit_recomputes_exactly_the_affected_nodes() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose"]);
    let untouched = repo.path().join(".out/us/web/src/file1.ts");
    let mtime = std::fs::metadata(&untouched).unwrap().mtime_nsec();

    // A base file nobody overrides: every store's copy.
    repo.write("apps/web/src/file0.ts", "edited\n");
    let report = repo.compose_json();
    assert_eq!(
        recomputed(&report),
        [
            "compose/eu/web",
            "compose/solo/web",
            "compose/us/web",
            "out/eu/web",
            "out/solo/web",
            "out/us/web",
            "scan/apps/web",
        ]
    );
    assert_eq!(report["totals"]["written"], 3);
    assert_eq!(std::fs::metadata(&untouched).unwrap().mtime_nsec(), mtime);
    assert_out_exact(&repo);

    // A base file the brand overrides: the compositions of its stores are
    // recomputed, find nothing changed, and cut off their materialization.
    repo.write("apps/web/components/header.tsx", "new base header\n");
    let report = repo.compose_json();
    assert_eq!(
        recomputed(&report),
        [
            "compose/eu/web",
            "compose/solo/web",
            "compose/us/web",
            "out/solo/web",
            "scan/apps/web",
        ]
    );
    assert_eq!(report["totals"]["written"], 1);
    assert_out_exact(&repo);
}

#[test]
fn drift_in_out_is_repaired_and_build_outputs_are_left_alone() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose"]);
    let out = repo.path().join(".out/us/web");
    std::fs::write(out.join("src/file2.ts"), "edited by hand").unwrap();
    std::fs::remove_file(out.join("src/file3.ts")).unwrap();
    std::fs::write(out.join("src/stray.ts"), "not in the composition").unwrap();
    std::fs::create_dir_all(out.join("stray-dir/x")).unwrap();
    std::fs::write(out.join("stray-dir/x/y"), "y").unwrap();
    std::fs::create_dir_all(out.join(".next/cache")).unwrap();
    std::fs::write(out.join(".next/cache/build"), "build output").unwrap();
    std::fs::create_dir_all(out.join("node_modules/x")).unwrap();
    std::fs::write(out.join("node_modules/x/index.js"), "dep").unwrap();

    let report = repo.compose_json();
    assert_eq!(report["totals"]["restored"], 2, "{report}");
    assert_eq!(report["totals"]["removed"], 2, "{report}");
    assert_out_exact(&repo);
    assert!(out.join(".next/cache/build").exists());
    assert!(out.join("node_modules/x/index.js").exists());
}

#[test]
fn rm_rf_out_recomposes_everything() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose"]);
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
    std::fs::remove_dir_all(repo.path().join(".strata")).unwrap();
    std::fs::write(repo.path().join(".out/us/web/src/file0.ts"), "junk").unwrap();
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
}

#[test]
fn overrides_deleted_and_files_removed_at_every_layer() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose"]);
    // Deleting an override falls back to the ancestor's file.
    repo.remove("apps/stores/brand/stores/us/web/components/footer.tsx");
    // A new file in the template reaches both regions.
    repo.write("apps/stores/brand/web/src/brand-only.ts", "brand\n");
    // A base delete removes every copy.
    repo.remove("apps/api/src/file4.ts");
    // A whole folder goes.
    repo.remove("apps/e2e/src/deep");
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
    assert!(!repo.path().join(".out/us/e2e/src/deep").exists());
    assert_eq!(
        std::fs::read_to_string(repo.path().join(".out/us/web/components/footer.tsx")).unwrap(),
        "base footer\n"
    );
}

#[test]
fn a_path_can_switch_between_file_and_folder() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose"]);
    repo.remove("apps/web/src/file0.ts");
    repo.write("apps/web/src/file0.ts/inner.ts", "now a folder\n");
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
    repo.remove("apps/web/src/file0.ts");
    repo.write("apps/web/src/file0.ts", "a file again\n");
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
}

#[test]
fn symlinks_and_exec_bits_are_kept() {
    let repo = Repo::standard();
    repo.write("apps/api/bin/run.sh", "#!/bin/sh\necho hi\n");
    let script = repo.path().join("apps/api/bin/run.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink("../src/file0.ts", repo.path().join("apps/api/bin/link.ts")).unwrap();
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
    let out = repo.path().join(".out/eu/api/bin");
    assert_ne!(
        std::fs::metadata(out.join("run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        0
    );
    assert_eq!(
        std::fs::read_link(out.join("link.ts")).unwrap().to_str(),
        Some("../src/file0.ts")
    );

    // Making a file executable is a change like any other.
    std::fs::set_permissions(
        repo.path().join("apps/api/src/file0.ts"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
}

#[test]
fn git_ignored_inputs_are_not_composed() {
    let repo = Repo::standard();
    repo.write("apps/web/.next/cache.bin", "ignored by the app");
    repo.write("apps/web/node_modules/x/index.js", "ignored by the root");
    repo.write(
        "apps/stores/solo/web/node_modules/y/index.js",
        "ignored in a store too",
    );
    // As in git, the base app's .gitignore does not reach a store's folder:
    // this one is an input.
    repo.write("apps/stores/solo/web/lib/kept.js", "tracked by git");
    repo.ok(&["store", "compose"]);
    let out = repo.path().join(".out/solo/web");
    assert!(!out.join(".next").exists());
    assert!(!out.join("node_modules").exists());
    assert!(out.join("lib/kept.js").exists());
}

#[test]
fn selection_composes_only_the_named_stores() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose", "-s", "us,solo"]);
    assert!(repo.path().join(".out/us/web").exists());
    assert!(repo.path().join(".out/solo/web").exists());
    assert!(!repo.path().join(".out/eu").exists());
    repo.ok(&["store", "build", "--compose-only", "-s", "eu"]);
    assert!(repo.path().join(".out/eu/web").exists());

    let out = repo.strata(&["store", "compose", "-s", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("deployable stores: us, eu, solo"));
    let out = repo.strata(&["store", "compose", "-s", "brand"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("template"));
}

#[test]
fn a_store_removed_from_the_config_is_removed_from_out() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose"]);
    repo.config(&["us", "solo"]);
    let stdout = repo.ok(&["store", "compose"]);
    assert!(stdout.contains("removed .out/eu"), "{stdout}");
    assert!(!repo.path().join(".out/eu").exists());
    assert_out_exact(&repo);
}

/// Each bad input: what to break, and what the error must say. Exit code 2,
/// and `.out` is not written.
#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    type Break = fn(&Repo);
    let cases: Vec<(&str, Break, &[&str])> = vec![
        (
            "invalid JSON",
            |r| {
                r.write(
                    "alokai.config.json",
                    "{\n  \"stores\": {\n    \"us\": {},\n  }\n}\n",
                )
            },
            &["alokai.config.json:4:3"],
        ),
        (
            "a configured store with no folder",
            |r| r.config(&["us", "ghost"]),
            &[
                "\"ghost\"",
                "apps/stores/ghost",
                "apps/stores/brand/stores/ghost",
            ],
        ),
        (
            "two stores with one id",
            |r| r.write("apps/stores/solo/stores/us/web/x.ts", "x"),
            &["apps/stores/brand/stores/us", "apps/stores/solo/stores/us"],
        ),
        (
            "an id that cannot name an image",
            |r| {
                r.write("apps/stores/Bad_Id/web/x.ts", "x");
                r.config(&["us", "Bad_Id"]);
            },
            &["\"Bad_Id\"", "uppercase"],
        ),
        (
            "an overridden package.json",
            |r| r.write("apps/stores/brand/web/package.json", "{}"),
            &[
                "apps/stores/brand/web/package.json",
                "cannot override package.json",
            ],
        ),
        (
            "a file in one layer, a folder in another",
            |r| r.write("apps/stores/solo/web/components/header.tsx/x.ts", "x"),
            &[
                "apps/web/components/header.tsx",
                "apps/stores/solo/web/components/header.tsx/x.ts",
            ],
        ),
        (
            "a symlink out of the repository",
            |r| symlink("/etc/hostname", r.path().join("apps/web/src/host")).unwrap(),
            &[
                "apps/web/src/host",
                "/etc/hostname",
                "outside the repository",
            ],
        ),
    ];
    for (what, breaks, needles) in cases {
        let repo = Repo::standard();
        breaks(&repo);
        let out = repo.strata(&["store", "compose"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{what}: {stderr:?} should mention {needle:?}"
            );
        }
        assert!(
            !repo.path().join(".out").exists(),
            "{what}: nothing may be written"
        );
    }
}

#[test]
fn bad_input_after_a_good_compose_leaves_out_as_it_was() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose"]);
    let before = repo.out_tree();
    repo.write("apps/web/src/file0.ts", "changed\n");
    repo.write("apps/stores/brand/web/package.json", "{}");
    assert_eq!(repo.strata(&["store", "compose"]).status.code(), Some(2));
    assert_eq!(repo.out_tree(), before);
}

/// Configs that parse as JSON but are not the config's shape, and configs
/// cut short: exit code 2 naming the place, and `.out` (with its build
/// outputs) untouched. An array must never pass for "no stores".
#[test]
fn broken_configs_after_a_good_compose_lose_nothing() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose"]);
    repo.write(".out/us/web/.next/build-output.js", "a build's output\n");
    let before = repo.out_tree();
    let good = std::fs::read_to_string(repo.path().join("alokai.config.json")).unwrap();
    let cut = good[..good.len() / 2].to_string();
    let cases: Vec<(String, &str)> = vec![
        (
            "[]".into(),
            "(the top level): expected an object, found an array",
        ),
        ("[{\"us\": {}}]".into(), "(the top level)"),
        (
            "{\"stores\": []}".into(),
            "stores: expected an object, found an array",
        ),
        (
            "{\"stores\": {\"us\": []}}".into(),
            "stores.us: expected an object",
        ),
        (
            "{\"stores\": {\"us\": \"x\"}}".into(),
            "stores.us: expected an object, found a string",
        ),
        (cut, "alokai.config.json:"),
        ("".into(), "it is empty"),
        ("null".into(), "found null"),
        (
            "{\"stores\": {\"us\": {}, \"eu\": {}, \"us\": {\"localDomain\": \"x\"}}}".into(),
            "alokai.config.json:1:36: stores: the key \"us\" appears twice",
        ),
        (
            "{\"stores\": {\"us\": {\"deployment\": {\"framework\": \"angular\"}}}}".into(),
            "stores.us.deployment.framework: \"angular\" is not a frontend strata deploys",
        ),
    ];
    for (text, needle) in cases {
        repo.write("alokai.config.json", &text);
        let out = repo.strata(&["store", "compose"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(stderr.contains(needle), "{text:?}: {stderr}");
        assert!(
            !stderr.contains("at line"),
            "the position is said once: {stderr}"
        );
        assert_eq!(repo.out_tree(), before, "{text:?} changed .out");
        assert!(
            repo.path()
                .join(".out/us/web/.next/build-output.js")
                .exists()
        );
    }
    // Not text, and not a file.
    let config = repo.path().join("alokai.config.json");
    std::fs::write(&config, b"{\"stores\": {\"us\xff\": {}}}").unwrap();
    let out = repo.strata(&["store", "compose"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not UTF-8 text (byte 15"), "{stderr}");
    std::fs::remove_file(&config).unwrap();
    std::fs::create_dir(&config).unwrap();
    let out = repo.strata(&["store", "compose"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("it is a folder"), "{stderr}");
    assert_eq!(repo.out_tree(), before);
    // A byte order mark before good JSON is fine.
    std::fs::remove_dir(&config).unwrap();
    std::fs::write(&config, format!("\u{feff}{good}")).unwrap();
    repo.ok(&["store", "compose"]);
}

#[test]
fn unknown_config_keys_are_warned_about_and_ignored() {
    let repo = Repo::standard();
    repo.write(
        "alokai.config.json",
        r#"{"stores": {"us": {"deployment": {"projectname": "typo"}}, "eu": {}, "solo": {}}, "extra": true}"#,
    );
    let out = repo.strata(&["store", "compose"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("unknown key stores.us.deployment.projectname"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown key extra"), "{stderr}");
}

#[test]
fn graph_and_explain() {
    let repo = Repo::standard();
    let dot = repo.ok(&["store", "graph"]);
    assert!(dot.starts_with("digraph"));
    assert!(dot.contains("\"brand\" -> \"us\""));
    assert!(dot.contains("template"));
    let json: serde_json::Value =
        serde_json::from_str(&repo.ok(&["store", "graph", "--format", "json"])).unwrap();
    assert_eq!(json["base_apps"], serde_json::json!(["api", "e2e", "web"]));
    let brand = json["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "brand")
        .unwrap();
    assert_eq!(brand["kind"], "template");
    let mermaid = repo.ok(&["store", "graph", "--format", "mermaid"]);
    assert!(mermaid.contains("store_brand --> store_us"));

    repo.ok(&["store", "compose"]);
    repo.write("apps/web/components/header.tsx", "changed base header\n");
    repo.write("apps/web/src/file0.ts", "changed\n");
    let text = repo.ok(&[
        "store",
        "explain",
        "us",
        "--file",
        "web/components/header.tsx",
    ]);
    assert!(
        text.contains("components/header.tsx: from apps/stores/brand/web"),
        "{text}"
    );
    assert!(
        text.contains("shadows apps/web/components/header.tsx"),
        "{text}"
    );
    assert!(
        text.contains("overridden by apps/stores/brand/web"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&repo.ok(&["store", "explain", "us", "--json"])).unwrap();
    let web = json["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == "web")
        .unwrap();
    assert_eq!(web["state"], "stale");
    let api = json["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == "api")
        .unwrap();
    assert_eq!(api["state"], "up-to-date");
}

/// Regressions from review: a symlink someone put in `.out` where the
/// composition wants a folder is removed, never written through; a file
/// name near the length limit composes incrementally.
#[test]
fn symlinks_in_out_are_not_followed_and_long_names_work() {
    let repo = Repo::standard();
    repo.ok(&["store", "compose"]);
    let victim = repo.path().join("elsewhere");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("keep.txt"), "not ours").unwrap();
    let src = repo.path().join(".out/us/web/src");
    std::fs::remove_dir_all(&src).unwrap();
    symlink(&victim, &src).unwrap();
    repo.write("apps/web/src/file0.ts", "changed\n");
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        1,
        "the link's target was left alone"
    );
    assert!(victim.join("keep.txt").exists());

    let long = format!("apps/web/src/{}.ts", "n".repeat(240));
    repo.write(&long, "long name\n");
    repo.ok(&["store", "compose"]);
    repo.write(&long, "long name, edited\n");
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
}

/// A file name that is not UTF-8 (Latin-1 from an old archive) is
/// composed as it is, byte for byte: written, updated, removed, reported by
/// `store changed`, and carried into `.deploy` and the image; an argument
/// that is not UTF-8 is no panic.
#[test]
fn names_that_are_not_utf8_are_composed_as_they_are() {
    use std::os::unix::ffi::OsStrExt;
    let repo = Repo::standard();
    repo.git_init();
    repo.ok(&["store", "compose"]);
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.html");
    let own = repo.path().join("apps/stores/solo/web").join(name);
    std::fs::write(&own, "solo caf\u{e9}\n").unwrap();
    let base_dir = repo.path().join("apps/web/src").join(name);
    std::fs::create_dir_all(&base_dir).unwrap();
    std::fs::write(base_dir.join("x.ts"), "in a Latin-1 folder\n").unwrap();
    repo.ok(&["store", "compose"]);
    assert_out_exact(&repo);
    let copy = repo.path().join(".out/solo/web").join(name);
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "solo caf\u{e9}\n");
    for store in ["us", "eu", "solo"] {
        let nested = repo
            .path()
            .join(format!(".out/{store}/web/src"))
            .join(name)
            .join("x.ts");
        assert!(nested.is_file(), "{}", nested.display());
    }
    // A second run writes nothing; an edit and a removal are followed.
    let report = repo.compose_json();
    assert_eq!(report["totals"]["written"], 0, "{report}");
    // ...and finds `.out` up to date from its records, reading nothing.
    let report = repo.compose_json();
    assert_eq!(report["recomputed"], serde_json::json!([]), "{report}");
    std::fs::write(&own, "edited\n").unwrap();
    repo.ok(&["store", "compose"]);
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "edited\n");
    std::fs::remove_file(&own).unwrap();
    repo.ok(&["store", "compose"]);
    assert!(!copy.exists());
    assert_out_exact(&repo);

    std::fs::write(&own, "again\n").unwrap();
    repo.commit("a latin-1 name");
    let out = repo.strata(&["store", "changed", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.to_string().contains("solo"), "{report}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(repo.path())
        .args(["store", "explain", "solo", "--file"])
        .arg(std::ffi::OsStr::from_bytes(b"web/caf\xe9.html"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no panic");
}

/// The same through a build, `.deploy` and an image that umoci unpacks.
#[test]
fn a_name_that_is_not_utf8_reaches_the_image() {
    use std::os::unix::ffi::OsStrExt;
    let repo = crate::util::example();
    let name = std::ffi::OsStr::from_bytes(b"men\xfa.txt");
    std::fs::write(
        repo.path()
            .join("apps/storefront-unified-nextjs/public")
            .join(name),
        "menu\n",
    )
    .unwrap();
    repo.git_init();
    repo.ok(&["store", "deploy", "-s", "sports"]);
    let deployed = repo
        .path()
        .join(".out/sports/storefront-unified-nextjs/.deploy/public")
        .join(name);
    assert_eq!(std::fs::read_to_string(&deployed).unwrap(), "menu\n");
    let sha = crate::util::git(repo.path(), &["rev-parse", "HEAD"]);
    let dir = tempfile::tempdir().unwrap();
    let bundle = crate::registry::unpack_layout(
        &repo.path().join(".strata/oci"),
        &format!("sports-storefront-unified-nextjs:{sha}"),
        dir.path(),
    );
    let unpacked = bundle.join("rootfs/var/www/public").join(name);
    assert_eq!(std::fs::read_to_string(&unpacked).unwrap(), "menu\n");
}

/// A file or folder strata may not read is exit code 2, naming it, and
/// `.out` is left as it was. As root everything is readable, so then the
/// runs drop to the user nobody (setpriv, from util-linux).
#[test]
fn an_unreadable_file_or_folder_is_a_clear_error_that_loses_nothing() {
    use std::process::Command;
    let repo = Repo::standard();
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    if root_user {
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(repo.path())
            .status()
            .expect("chown (Debian package coreutils)");
        assert!(status.success());
    }
    let run = |args: &[&str]| {
        let mut command = if root_user {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_strata"));
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_strata"))
        };
        command
            .arg("--root")
            .arg(repo.path())
            .args(args)
            .output()
            .expect("setpriv (Debian package util-linux)")
    };
    let out = run(&["store", "compose"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = repo.out_tree();

    let file = repo.path().join("apps/web/src/file1.ts");
    repo.write("apps/web/src/file1.ts", "changed\n");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = run(&["store", "compose"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("apps/web/src/file1.ts") && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert_eq!(repo.out_tree(), before, ".out changed");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let dir = repo.path().join("apps/web/src/deep");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = run(&["store", "compose"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("apps/web/src/deep"), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert_eq!(repo.out_tree(), before, ".out changed");

    // An ignore file strata may not read: its rules would be missing.
    let rules = repo.path().join("apps/web/src/.gitignore");
    repo.write("apps/web/src/.gitignore", "*.log\n");
    std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = run(&["store", "compose"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::remove_file(&rules).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("apps/web/src/.gitignore") && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert_eq!(repo.out_tree(), before, ".out changed");
}
