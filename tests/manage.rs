//! `strata store add`, `move`, `lint` and `start`, completions, `--help`,
//! `--version` and `-q`: on a copy of the example monorepo, a real git
//! repository, real node servers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Repo, example, free_port, git, http_get};

const CONFIG: &str = "alokai.config.json";

fn config(repo: &Repo) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(repo.path().join(CONFIG)).unwrap()).unwrap()
}

fn code(repo: &Repo, args: &[&str]) -> (Option<i32>, String, String) {
    let out = repo.strata(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_added_store_is_in_the_tree_and_deploys() {
    let repo = example();
    repo.git_init();
    let before = std::fs::read_to_string(repo.path().join(CONFIG)).unwrap();
    let out = repo.ok(&[
        "store",
        "add",
        "--store-id",
        "fashion-ca",
        "--parent",
        "fashion",
        "--cloud-region",
        "northamerica-northeast1",
    ]);
    assert!(
        out.contains("created apps/stores/fashion/stores/fashion-ca/"),
        "{out}"
    );
    let dir = repo.path().join("apps/stores/fashion/stores/fashion-ca");
    for app in [
        "storefront-middleware",
        "storefront-unified-nextjs",
        "playwright",
    ] {
        assert!(dir.join(app).is_dir(), "{app}");
    }
    assert!(dir.join("README.md").is_file());

    // The entry: free ports above every one in use, a local domain.
    let entry = &config(&repo)["stores"]["fashion-ca"];
    assert_eq!(entry["localPorts"]["middleware"], 4004, "{entry}");
    assert_eq!(entry["localPorts"]["nextjs"], 3004, "{entry}");
    assert_eq!(entry["localDomain"], "fashion-ca.local");
    assert_eq!(entry["deployment"]["framework"], "nextjs");
    assert_eq!(entry["deployment"]["projectName"], "fashion-ca");
    assert_eq!(
        entry["deployment"]["cloudRegion"],
        "northamerica-northeast1"
    );
    // Every line of the file as it was is still there, in order (the
    // example writes each store's settings on one line).
    let after = std::fs::read_to_string(repo.path().join(CONFIG)).unwrap();
    let mut lines = after.lines();
    for line in before.lines() {
        assert!(
            lines.any(|l| l == line),
            "line {line:?} was rewritten:\n{after}"
        );
    }

    // It inherits from fashion, and deploys.
    repo.write(
        "apps/stores/fashion/stores/fashion-ca/storefront-unified-nextjs/public/logo.txt",
        "canada logo\n",
    );
    repo.commit("fashion-ca");
    let graph: serde_json::Value =
        serde_json::from_str(&repo.ok(&["store", "graph", "--format", "json"])).unwrap();
    assert!(graph.to_string().contains("fashion-ca"), "{graph}");
    repo.ok(&["store", "deploy", "-s", "fashion-ca"]);
    let deploy = repo
        .path()
        .join(".out/fashion-ca/storefront-unified-nextjs/.deploy");
    let web = crate::util::Server::start(&deploy);
    assert!(web.get("/").contains("Fashion header"));
    assert_eq!(web.get("/logo.txt").trim(), "canada logo");
    let recorded: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.path().join(".out/fashion-ca/deployment.json")).unwrap(),
    )
    .unwrap();
    assert!(recorded.to_string().contains("fashion-ca"), "{recorded}");
}

#[test]
fn add_keeps_the_config_formatting_and_key_order() {
    let repo = example();
    // Tabs, a key order no serializer would pick, and settings on one line.
    let text = "{\n\t\"strata\": { \"baseImage\": \"scratch\" },\n\t\"stores\": {\n\t\t\"sports\": { \"localPorts\": { \"nextjs\": 3010, \"middleware\": 4010 }, \"deployment\": { \"framework\": \"nextjs\" } }\n\t}\n}\n";
    repo.write(CONFIG, text);
    repo.ok(&[
        "store",
        "add",
        "--store-id",
        "outdoor",
        "--parent",
        "sports",
    ]);
    let after = std::fs::read_to_string(repo.path().join(CONFIG)).unwrap();
    assert!(
        after.starts_with("{\n\t\"strata\": { \"baseImage\": \"scratch\" },\n\t\"stores\": {\n\t\t\"sports\": { \"localPorts\": { \"nextjs\": 3010, \"middleware\": 4010 }, \"deployment\": { \"framework\": \"nextjs\" } },"),
        "{after}"
    );
    let value = config(&repo);
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["strata", "stores"]);
    assert_eq!(value["stores"]["outdoor"]["localPorts"]["nextjs"], 3011);
    assert_eq!(value["stores"]["outdoor"]["localPorts"]["middleware"], 4011);
    assert!(
        repo.path()
            .join("apps/stores/sports/stores/outdoor/storefront-unified-nextjs")
            .is_dir()
    );
}

#[test]
fn add_refuses_what_exists_an_unknown_parent_and_a_bad_id() {
    let repo = example();
    let before = std::fs::read(repo.path().join(CONFIG)).unwrap();
    let tree = || crate::util::tree(&repo.path().join("apps"));
    let apps_before = tree();
    for (args, says) in [
        (vec!["--store-id", "fashion-us"], "exists already"),
        (vec!["--store-id", "fashion"], "exists already"),
        (
            vec!["--store-id", "new", "--parent", "nowhere"],
            "unknown parent store \"nowhere\"",
        ),
        (vec!["--store-id", "Bad_Id"], "Bad_Id"),
        (vec!["--store-id", "x", "--framework", "angular"], "angular"),
        (
            vec!["--store-id", "root"],
            "names the top of the store tree",
        ),
        (
            vec!["--store-id", "x", "--framework", "nuxt"],
            "no apps/storefront-unified-nuxt base app",
        ),
    ] {
        let mut full = vec!["store", "add"];
        full.extend(&args);
        let (status, _, stderr) = code(&repo, &full);
        assert_eq!(status, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(std::fs::read(repo.path().join(CONFIG)).unwrap(), before);
        assert_eq!(tree(), apps_before, "{args:?} changed the tree");
    }
    // A template: a folder, no config entry.
    repo.ok(&["store", "add", "--store-id", "outlet", "--template"]);
    assert!(repo.path().join("apps/stores/outlet").is_dir());
    assert_eq!(std::fs::read(repo.path().join(CONFIG)).unwrap(), before);
}

#[test]
fn move_reports_what_resolves_differently_and_history_follows() {
    let repo = example();
    repo.git_init();
    // Under its own descendant, and an unknown store: refused, nothing moved.
    let (status, _, stderr) = code(
        &repo,
        &[
            "store",
            "move",
            "--store-id",
            "fashion",
            "--parent",
            "fashion-us",
        ],
    );
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("descendants"), "{stderr}");
    let (status, _, stderr) = code(
        &repo,
        &["store", "move", "--store-id", "nope", "--parent", "root"],
    );
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("unknown store \"nope\""), "{stderr}");
    // A store and one below it: the second would go with the first.
    let (status, _, stderr) = code(
        &repo,
        &[
            "store",
            "move",
            "--store-id",
            "fashion,fashion-us",
            "--parent",
            "sports",
        ],
    );
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("fashion-us is below fashion"), "{stderr}");
    assert_eq!(git(repo.path(), &["status", "--porcelain"]), "");

    let out = repo.ok(&[
        "store",
        "move",
        "--store-id",
        "fashion-eu",
        "--parent",
        "root",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["with_git"], true, "{report}");
    // fashion-eu took fashion's header; now the base app's.
    let changes = report["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["store"] == "fashion-eu"
            && c["app"] == "storefront-unified-nextjs"
            && c["path"] == "components/header.html"
            && c["before"] == "fashion"
            && c["after"] == "base"),
        "{report}"
    );
    // Its own overrides moved along: they resolve as before.
    assert!(
        !changes.iter().any(|c| c["path"] == "public/logo.txt"),
        "{report}"
    );
    assert!(repo.path().join("apps/stores/fashion-eu").is_dir());
    assert!(
        !repo
            .path()
            .join("apps/stores/fashion/stores/fashion-eu")
            .exists()
    );
    // git mv: staged as renames, so history follows.
    let status = git(repo.path(), &["status", "--porcelain"]);
    assert!(
        status.contains("R  apps/stores/fashion/stores/fashion-eu/"),
        "{status}"
    );
    // The composition follows the new position.
    repo.ok(&["store", "compose", "-s", "fashion-eu"]);
    let header = std::fs::read_to_string(
        repo.path()
            .join(".out/fashion-eu/storefront-unified-nextjs/components/header.html"),
    )
    .unwrap();
    let base = std::fs::read_to_string(
        repo.path()
            .join("apps/storefront-unified-nextjs/components/header.html"),
    )
    .unwrap();
    assert_eq!(header, base);

    // The text report names the change.
    repo.commit("moved");
    let out = repo.ok(&[
        "store",
        "move",
        "--store-id",
        "fashion-eu",
        "--parent",
        "fashion",
    ]);
    assert!(
        out.contains(
            "fashion-eu/storefront-unified-nextjs/components/header.html: base -> fashion"
        ),
        "{out}"
    );
}

#[test]
fn lint_finds_dead_orphan_drifted_and_package_json_overrides() {
    let repo = example();
    repo.git_init();
    let (status, out, stderr) = code(&repo, &["store", "lint"]);
    assert_eq!(status, Some(0), "the example is clean: {out}{stderr}");

    let base = "apps/storefront-unified-nextjs";
    // Dead: a copy of what it shadows.
    let footer =
        std::fs::read_to_string(repo.path().join(format!("{base}/components/footer.html")))
            .unwrap();
    repo.write(
        "apps/stores/sports/storefront-unified-nextjs/components/footer.html",
        &footer,
    );
    // Orphan: the base file it overrode is deleted later.
    repo.write(&format!("{base}/components/promo.html"), "base promo\n");
    repo.write(
        "apps/stores/sports/storefront-unified-nextjs/components/promo.html",
        "sports promo\n",
    );
    // Drift: the base file changes after the override's last edit.
    repo.write(&format!("{base}/components/cart.html"), "base cart\n");
    repo.write(
        "apps/stores/fashion/storefront-unified-nextjs/components/cart.html",
        "fashion cart\n",
    );
    // A package.json override.
    repo.write(
        "apps/stores/sports/storefront-middleware/package.json",
        "{\"name\": \"sports\"}\n",
    );
    repo.commit("overrides");
    repo.remove(&format!("{base}/components/promo.html"));
    repo.write(
        &format!("{base}/components/cart.html"),
        "base cart, fixed\n",
    );
    repo.commit("base changes");

    let (status, out, stderr) = code(&repo, &["store", "lint", "--json"]);
    assert_eq!(status, Some(1), "{out}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let paths = |kind: &str| -> Vec<String> {
        report[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        paths("dead"),
        ["apps/stores/sports/storefront-unified-nextjs/components/footer.html"]
    );
    assert_eq!(
        paths("orphans"),
        ["apps/stores/sports/storefront-unified-nextjs/components/promo.html"]
    );
    assert_eq!(
        paths("drift"),
        ["apps/stores/fashion/storefront-unified-nextjs/components/cart.html"]
    );
    assert_eq!(
        paths("package_json"),
        ["apps/stores/sports/storefront-middleware/package.json"]
    );
    assert_eq!(
        report["drift"][0]["shadows"],
        format!("{base}/components/cart.html")
    );

    // Text, and once the override is edited again, no drift.
    let (status, out, _) = code(&repo, &["store", "lint"]);
    assert_eq!(status, Some(1));
    assert!(out.contains("dead") && out.contains("footer.html"), "{out}");
    repo.write(
        "apps/stores/fashion/storefront-unified-nextjs/components/cart.html",
        "fashion cart, with the fix\n",
    );
    repo.commit("catch up");
    let (_, out, _) = code(&repo, &["store", "lint", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["drift"], serde_json::json!([]), "{report}");
}

/// Whether anything listens on `port`.
fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn start_runs_the_built_store_and_stops_on_sigint() {
    let repo = example();
    let (web, api) = (free_port(), free_port());
    repo.write(
        CONFIG,
        &format!(
            "{{\"stores\": {{\"fashion-us\": {{\"deployment\": {{\"framework\": \"nextjs\"}}, \"localPorts\": {{\"middleware\": {api}, \"nextjs\": {web}}}}}, \"sports\": {{\"deployment\": {{\"framework\": \"nextjs\"}}}}}}, \"strata\": {{\"baseImage\": \"scratch\"}}}}\n"
        ),
    );
    // Not built: refused before anything starts.
    let (status, _, stderr) = code(&repo, &["store", "start", "-s", "sports"]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("not built"), "{stderr}");

    repo.ok(&["store", "build", "-s", "fashion-us"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(repo.path())
        .args(["store", "start", "-s", "fashion-us"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let page = http_get(web, "/");
    assert!(page.contains("Fashion header"), "{page}");
    assert!(http_get(api, "/").contains("\"currency\":\"USD\""));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "strata store start did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Each server's output, prefixed with its store and app, uncolored
    // off a terminal.
    assert!(
        stdout.contains("[fashion-us/storefront-middleware] "),
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "{stdout}");
    assert!(
        !listening(web) && !listening(api),
        "a server outlived strata"
    );
}

#[test]
fn completions_help_version_and_quiet() {
    let repo = example();
    for (shell, mark) in [
        ("bash", "_strata()"),
        ("zsh", "#compdef strata"),
        ("fish", "complete -c strata"),
    ] {
        let out = repo.ok(&["completions", shell]);
        assert!(out.contains(mark), "{shell}");
        assert!(
            out.contains("deploy") && out.contains("store-id"),
            "{shell}"
        );
    }
    let (status, _, stderr) = code(&repo, &["completions", "tcsh"]);
    assert_eq!(status, Some(2), "{stderr}");

    // An example in every command's help.
    for group in [
        vec!["--help"],
        vec!["store", "--help"],
        vec!["cache", "--help"],
    ] {
        let out = repo.ok(&group);
        assert!(out.contains("Example"), "{group:?}:\n{out}");
    }
    for command in ["verify", "gc"] {
        let out = repo.ok(&["cache", command, "--help"]);
        assert!(out.contains("Example"), "cache {command} --help:\n{out}");
    }
    for command in [
        "compose", "build", "graph", "explain", "changed", "deploy", "dev", "add", "move", "start",
        "lint", "tsconfig", "test",
    ] {
        let out = repo.ok(&["store", command, "--help"]);
        assert!(out.contains("Example"), "store {command} --help:\n{out}");
    }

    // The version names the commit it was built from.
    let version = repo.ok(&["--version"]);
    let head = git(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &["rev-parse", "--short=12", "HEAD"],
    );
    assert!(version.contains(&format!("(commit {head})")), "{version}");

    // -q: nothing but what was asked for.
    let out = repo.strata(&["-q", "store", "compose"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let out = repo.strata(&["-q", "store", "compose", "--json"]);
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok());
    let loud = repo.ok(&["store", "compose"]);
    assert!(loud.contains("fashion-us"), "{loud}");
}

#[test]
fn lint_reads_history_when_the_monorepo_is_a_folder_of_the_repository() {
    let holder = example();
    // The git repository is one level up from the monorepo.
    let top = tempfile::tempdir().unwrap();
    crate::util::copy_tree(holder.path(), &top.path().join("shop"));
    let repo = Repo::at(top.path().join("shop"), top);
    let outer = repo.path().parent().unwrap().to_path_buf();
    git(&outer, &["init", "-q"]);
    let commit = |message: &str| {
        git(&outer, &["add", "-A"]);
        git(&outer, &["commit", "-q", "-m", message]);
    };
    repo.write(
        "apps/stores/sports/storefront-unified-nextjs/components/footer.html",
        "sports footer\n",
    );
    commit("sports footer");
    repo.write(
        "apps/storefront-unified-nextjs/components/footer.html",
        "base footer, fixed\n",
    );
    commit("base footer fix");
    let (status, out, stderr) = code(&repo, &["store", "lint", "--json"]);
    assert_eq!(status, Some(1), "{out}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    // fashion-us overrides the footer too: both may miss the fix.
    let mut drift: Vec<&str> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    drift.sort();
    assert_eq!(
        drift,
        [
            "apps/stores/fashion/stores/fashion-us/storefront-unified-nextjs/components/footer.html",
            "apps/stores/sports/storefront-unified-nextjs/components/footer.html",
        ],
        "{report}"
    );
}

#[test]
fn drift_follows_ancestry_across_merged_branches() {
    let repo = example();
    repo.git_init();
    let footer = "apps/storefront-unified-nextjs/components/footer.html";
    let sports = "apps/stores/sports/storefront-unified-nextjs/components/footer.html";
    let us =
        "apps/stores/fashion/stores/fashion-us/storefront-unified-nextjs/components/footer.html";
    repo.write(sports, "sports footer\n");
    repo.commit("sports footer");
    let main = git(repo.path(), &["rev-parse", "--abbrev-ref", "HEAD"]);
    // On a branch: the base footer gets a fix after sports' override.
    git(repo.path(), &["checkout", "-q", "-b", "side"]);
    repo.write(footer, "base footer, fixed\n");
    repo.commit("fix the base footer");
    // Meanwhile on the main line: fashion-us edits its own footer, on top
    // of a history that has not seen the fix.
    git(repo.path(), &["checkout", "-q", &main]);
    repo.write(us, "us footer, reworded\n");
    repo.commit("reword the us footer");
    git(
        repo.path(),
        &["merge", "-q", "--no-ff", "-m", "merge side", "side"],
    );
    let (status, out, stderr) = code(&repo, &["store", "lint", "--json"]);
    assert_eq!(status, Some(1), "{out}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let drift: Vec<&str> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    // sports' override predates the fix; fashion-us' edit is concurrent
    // with it (neither descends from the other): not drift.
    assert_eq!(drift, [sports], "{report}");
}

#[test]
fn drift_survives_a_store_move_and_a_shallow_clone_is_said() {
    let repo = example();
    repo.git_init();
    let sports = "apps/stores/sports/storefront-unified-nextjs/components/footer.html";
    repo.write(sports, "sports footer\n");
    repo.commit("sports footer");
    repo.write(
        "apps/storefront-unified-nextjs/components/footer.html",
        "base footer, fixed\n",
    );
    repo.commit("fix the base footer");
    repo.ok(&[
        "store",
        "move",
        "--store-id",
        "sports",
        "--parent",
        "fashion",
    ]);
    repo.commit("move sports under fashion");
    let (status, out, stderr) = code(&repo, &["store", "lint", "--json"]);
    assert_eq!(status, Some(1), "{out}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let moved =
        "apps/stores/fashion/stores/sports/storefront-unified-nextjs/components/footer.html";
    // The move is no edit: the override still predates the fix.
    assert!(
        report["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == moved),
        "{report}"
    );
    assert_eq!(report["warnings"], serde_json::json!([]), "{report}");

    // A shallow clone has no history to judge by: said, not hidden.
    let shallow = tempfile::tempdir().unwrap();
    let clone = shallow.path().join("repo");
    git(
        shallow.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &format!("file://{}", repo.path().display()),
            clone.to_str().unwrap(),
        ],
    );
    let out = crate::util::strata(&clone, &["store", "lint"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: this is a shallow clone"),
        "{stderr}"
    );
}
