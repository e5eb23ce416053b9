//! `strata store dev`: while it runs, scripted edits at every layer leave
//! `.out` equal to the rules' output after each settle; a storm of writes
//! settles right; Ctrl-C stops every dev server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Repo, assert_trees_equal, http_get, oracle, tree};

struct Dev(Child);

impl Dev {
    fn start(repo: &Repo, args: &[&str]) -> Dev {
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(repo.path())
            .args(["store", "dev"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let dev = Dev(child);
        // Ready once the first compose is out.
        settle(repo);
        dev
    }

    /// Starts the watch and waits until `file` is in `.out` (for a tree
    /// the oracle cannot read: one with extra ignore rules).
    fn start_until(repo: &Repo, file: &str) -> Dev {
        Self::start_with(repo, &[], file)
    }

    /// The same with extra arguments.
    fn start_with(repo: &Repo, extra: &[&str], file: &str) -> Dev {
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(repo.path())
            .args(["store", "dev", "--no-servers"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut dev = Dev(child);
        // The watch is up once it says so; the rest of stderr is drained.
        let mut lines = BufReader::new(dev.0.stderr.take().unwrap()).lines();
        for line in lines.by_ref() {
            if line.unwrap().contains("watching") {
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        wait_for(repo, file);
        dev
    }
}

/// Waits up to 15 s for `rel` to exist under the repo.
fn wait_for(repo: &Repo, rel: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !repo.path().join(rel).exists() {
        assert!(Instant::now() < deadline, "{rel} never arrived");
        std::thread::sleep(Duration::from_millis(40));
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `.out` equals what the rules say (up to 15 s), then checks it.
fn settle(repo: &Repo) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let want = oracle(repo.path());
        if repo.out_tree() == want {
            return;
        }
        if Instant::now() > deadline {
            assert_trees_equal(&repo.out_tree(), &want);
        }
        std::thread::sleep(Duration::from_millis(40));
    }
}

fn repo() -> Repo {
    let repo = Repo::standard();
    repo.write(
        "apps/stores/brand/stores/us/stores/ny/web/src/ny.ts",
        "ny\n",
    );
    repo.config(&["us", "eu", "solo", "ny"]);
    repo
}

#[test]
fn edits_at_every_layer_keep_out_exact() {
    let repo = repo();
    let _dev = Dev::start(&repo, &["--no-servers"]);

    // A base file.
    repo.write("apps/web/src/file0.ts", "edited base\n");
    settle(&repo);
    // Overrides added, then deleted, at each depth.
    for layer in [
        "apps/stores/brand",
        "apps/stores/brand/stores/us",
        "apps/stores/brand/stores/us/stores/ny",
        "apps/stores/solo",
    ] {
        repo.write(
            &format!("{layer}/web/src/file1.ts"),
            &format!("override in {layer}\n"),
        );
        settle(&repo);
    }
    for layer in [
        "apps/stores/brand/stores/us",
        "apps/stores/brand",
        "apps/stores/brand/stores/us/stores/ny",
    ] {
        repo.remove(&format!("{layer}/web/src/file1.ts"));
        settle(&repo);
    }
    // A folder of a base app renamed.
    std::fs::rename(
        repo.path().join("apps/api/src/deep"),
        repo.path().join("apps/api/src/moved"),
    )
    .unwrap();
    settle(&repo);
    // An editor's atomic save: a temporary file renamed over the original.
    repo.write("apps/web/components/.footer.tsx.swp", "saved atomically\n");
    std::fs::rename(
        repo.path().join("apps/web/components/.footer.tsx.swp"),
        repo.path().join("apps/web/components/footer.tsx"),
    )
    .unwrap();
    settle(&repo);
    // A new folder with files at once, in a template.
    std::fs::create_dir_all(repo.path().join("apps/stores/brand/api/new/deeper")).unwrap();
    repo.write("apps/stores/brand/api/new/deeper/x.ts", "x\n");
    settle(&repo);
    // A whole override folder removed.
    repo.remove("apps/stores/brand/api");
    settle(&repo);
    // A config change that adds a store, then one that removes it.
    repo.write("apps/stores/solo/stores/late/web/src/late.ts", "late\n");
    repo.config(&["us", "eu", "solo", "ny", "late"]);
    settle(&repo);
    repo.config(&["us", "eu", "solo", "ny"]);
    settle(&repo);
    assert!(!repo.path().join(".out/late").exists());
    // Ignored paths are ignored.
    repo.write("apps/web/node_modules/dep/index.js", "dep\n");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!repo.path().join(".out/us/web/node_modules/dep").exists());

    // The same as a fresh compose of the same sources.
    let copy = Repo::empty();
    crate::util::copy_tree(&repo.path().join("apps"), &copy.path().join("apps"));
    std::fs::copy(
        repo.path().join("alokai.config.json"),
        copy.path().join("alokai.config.json"),
    )
    .unwrap();
    copy.ok(&["store", "compose"]);
    assert_trees_equal(&repo.out_tree(), &tree(&copy.path().join(".out")));
}

#[test]
fn a_storm_of_writes_settles_to_the_right_state() {
    let repo = repo();
    let _dev = Dev::start(&repo, &["--no-servers"]);
    for i in 0..1000 {
        let layer = ["apps/web", "apps/stores/brand/web", "apps/stores/solo/web"][i % 3];
        repo.write(
            &format!("{layer}/src/storm{}.ts", i % 17),
            &format!("write {i}\n"),
        );
        if i % 97 == 0 {
            let _ = std::fs::remove_file(
                repo.path()
                    .join(format!("apps/stores/brand/web/src/storm{}.ts", i % 17)),
            );
        }
    }
    settle(&repo);
}

fn servers_repo() -> Repo {
    let repo = Repo::buildable();
    let server = "import http from 'node:http';\nhttp.createServer((q, s) => s.end(process.env.APP_NAME || 'up')).listen(Number(process.env.PORT));\n";
    repo.write("apps/storefront-middleware/dev.mjs", server);
    repo.write("apps/storefront-unified-nextjs/dev.mjs", server);
    for app in ["storefront-middleware", "storefront-unified-nextjs"] {
        repo.write(
            &format!("apps/{app}/package.json"),
            &format!("{{\n  \"name\": \"{app}\",\n  \"scripts\": {{ \"build\": \"node build.mjs\", \"dev\": \"node dev.mjs\" }}\n}}\n"),
        );
    }
    repo
}

fn config_with_ports(repo: &Repo, ports: &[(&str, u16, u16)]) {
    let entries: Vec<String> = ports
        .iter()
        .map(|(s, m, n)| {
            format!("\"{s}\": {{\"localPorts\": {{\"middleware\": {m}, \"nextjs\": {n}}}}}")
        })
        .collect();
    repo.write(
        "alokai.config.json",
        &format!("{{\"stores\": {{{}}}}}\n", entries.join(", ")),
    );
}

/// Processes whose working folder is under `dir`.
fn processes_in(dir: &std::path::Path) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            found.push(pid);
        }
    }
    found
}

#[test]
fn sigint_stops_every_server_and_exits_zero() {
    let repo = servers_repo();
    let ports: Vec<u16> = (0..4).map(|_| crate::util::free_port()).collect();
    config_with_ports(
        &repo,
        &[("r1", ports[0], ports[1]), ("solo", ports[2], ports[3])],
    );
    let mut dev = Dev::start(&repo, &[]);
    for port in &ports {
        assert_eq!(http_get(*port, "/"), "up");
    }
    let root = repo.path().canonicalize().unwrap();
    assert!(
        processes_in(&root).len() >= 4,
        "the servers run in the composed folders"
    );
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(dev.0.id() as i32, libc::SIGINT) };
    let status = dev.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_in(&root).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes outlived strata: {:?}",
            processes_in(&root)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for port in &ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "port {port} still answers"
        );
    }
}

#[test]
fn a_crashed_server_restarts_and_shared_ports_are_refused() {
    let repo = servers_repo();
    let same = crate::util::free_port();
    config_with_ports(
        &repo,
        &[
            ("r1", same, crate::util::free_port()),
            ("solo", same, crate::util::free_port()),
        ],
    );
    let out = repo.strata(&["store", "dev"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("port {same}")) && stderr.contains("r1/storefront-middleware"),
        "{stderr}"
    );

    // The first start crashes (and leaves a mark); the restart serves.
    repo.write(
        "apps/storefront-middleware/dev.mjs",
        "import http from 'node:http';\nimport fs from 'node:fs';\nif (!fs.existsSync('../../../crashed')) { fs.writeFileSync('../../../crashed', ''); console.error('boom'); process.exit(3); }\nhttp.createServer((q, s) => s.end('up')).listen(Number(process.env.PORT));\n",
    );
    let port = crate::util::free_port();
    config_with_ports(&repo, &[("r1", port, crate::util::free_port())]);
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(repo.path())
        .args(["store", "dev", "--filter", "storefront-middleware"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(http_get(port, "/"), "up", "restarted after the crash");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[r1/storefront-middleware] boom"),
        "{stderr}"
    );
    assert!(stderr.contains("restarting in"), "{stderr}");
}

/// Regressions from review: a folder deleted and made again is watched
/// again; deleting an ignored folder in a source layer leaves the build
/// outputs in `.out` alone; a file can become a folder (and a symlink a
/// folder) without writing through it.
#[test]
fn recreated_folders_ignored_folders_and_type_switches() {
    let repo = repo();
    repo.write("apps/web/.gitignore", ".next/\n");
    repo.write("apps/web/.next/cache.bin", "source-side build output\n");
    std::os::unix::fs::symlink("../src", repo.path().join("apps/web/components/linked")).unwrap();
    let _dev = Dev::start(&repo, &["--no-servers"]);
    repo.write(".out/us/web/.next/server.js", "a build's output\n");

    // Deleted and made again: edits inside must still arrive.
    repo.remove("apps/web/src/deep");
    settle(&repo);
    repo.write("apps/web/src/deep/nested/leaf.ts", "back\n");
    settle(&repo);
    repo.write(
        "apps/web/src/deep/nested/leaf.ts",
        "edited after coming back\n",
    );
    settle(&repo);

    // An ignored folder deleted at the source.
    repo.remove("apps/web/.next");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        repo.path().join(".out/us/web/.next/server.js").exists(),
        "build outputs were wiped"
    );

    // A file becomes a folder; a symlink becomes a folder.
    repo.remove("apps/web/src/file2.ts");
    repo.write("apps/web/src/file2.ts/index.ts", "now a folder\n");
    settle(&repo);
    repo.remove("apps/web/components/linked");
    repo.write("apps/web/components/linked/own.ts", "a real folder\n");
    settle(&repo);
    assert!(
        !repo.path().join("apps/web/src/own.ts").exists(),
        "nothing was written through the old link"
    );
}

/// A `.gitignore` edited while the watch runs changes what `.out` holds:
/// files the root's or a layer's own rules stop ignoring arrive. (Files
/// that become ignored stay, as build outputs do.)
#[test]
fn gitignore_edits_are_followed() {
    let repo = repo();
    repo.write(".gitignore", "node_modules/\n.out/\n.strata/\n*.log\n");
    repo.write("apps/web/src/notes.log", "a log\n");
    repo.write("apps/stores/brand/web/.gitignore", "*.tmp\n");
    repo.write(
        "apps/stores/brand/web/src/draft.tmp",
        "a store's scratch file\n",
    );
    let _dev = Dev::start_until(&repo, ".out/us/web/package.json");
    assert!(!repo.path().join(".out/us/web/src/notes.log").exists());
    assert!(!repo.path().join(".out/us/web/src/draft.tmp").exists());

    repo.write(".gitignore", "node_modules/\n.out/\n.strata/\n");
    wait_for(&repo, ".out/eu/web/src/notes.log");
    wait_for(&repo, ".out/us/web/src/notes.log");

    repo.write("apps/stores/brand/web/.gitignore", "");
    wait_for(&repo, ".out/us/web/src/draft.tmp");
    settle(&repo);
}

/// Waits up to 15 s until `rel` holds `want` (`None`: is absent).
fn wait_for_content(repo: &Repo, rel: &str, want: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = std::fs::read_to_string(repo.path().join(rel)).ok();
        if now.as_deref() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{rel} holds {now:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(40));
    }
}

/// Git-ignored `.env` files are composed by the watch as by a compose:
/// added, overridden, removed; `ignorePaths` hold while it runs.
#[test]
fn env_files_and_ignore_paths_are_followed() {
    let repo = repo();
    repo.write(".gitignore", "node_modules/\n.out/\n.strata/\n.env\n");
    repo.write("apps/api/.env", "BASE=1\n");
    repo.write(
        "alokai.config.json",
        r#"{"stores": {"us": {"ignorePaths": ["web/public/*"]}, "eu": {}, "solo": {}, "ny": {}}}"#,
    );
    let _dev = Dev::start_until(&repo, ".out/ny/api/.env");
    assert_eq!(
        std::fs::read_to_string(repo.path().join(".out/us/api/.env")).unwrap(),
        "BASE=1\n"
    );
    // A store's own, then its removal: the base app's shows through.
    repo.write("apps/stores/brand/stores/us/api/.env", "US=1\n");
    wait_for_content(&repo, ".out/us/api/.env", Some("US=1\n"));
    wait_for_content(&repo, ".out/ny/api/.env", Some("US=1\n"));
    wait_for_content(&repo, ".out/eu/api/.env", Some("BASE=1\n"));
    repo.remove("apps/stores/brand/stores/us/api/.env");
    wait_for_content(&repo, ".out/us/api/.env", Some("BASE=1\n"));
    repo.write("apps/api/.env", "BASE=2\n");
    wait_for_content(&repo, ".out/solo/api/.env", Some("BASE=2\n"));
    wait_for_content(&repo, ".out/us/api/.env", Some("BASE=2\n"));
    repo.remove("apps/api/.env");
    wait_for_content(&repo, ".out/us/api/.env", None);

    // A file `us` ignores arrives in `eu` (the sentinel), never in `us`
    // or its child.
    repo.write("apps/web/public/new.txt", "new\n");
    wait_for_content(&repo, ".out/eu/web/public/new.txt", Some("new\n"));
    wait_for_content(&repo, ".out/solo/web/public/new.txt", Some("new\n"));
    assert!(!repo.path().join(".out/us/web/public/new.txt").exists());
    assert!(!repo.path().join(".out/ny/web/public/new.txt").exists());
    // The rule dropped from the config: the files arrive.
    repo.write(
        "alokai.config.json",
        r#"{"stores": {"us": {}, "eu": {}, "solo": {}, "ny": {}}}"#,
    );
    wait_for_content(&repo, ".out/us/web/public/new.txt", Some("new\n"));
    wait_for_content(&repo, ".out/ny/web/public/new.txt", Some("new\n"));
}

/// `--with-local-domains` writes `.out/Caddyfile`, which Caddy accepts:
/// each store's domain to its frontend, `/api/` to its middleware (the
/// prefix stripped); a store without a domain is left out with a warning.
/// A config edit rewrites it.
#[test]
fn local_domains_make_a_caddyfile_caddy_accepts() {
    crate::registry::require("caddy", "caddy");
    let repo = Repo::buildable();
    let config = |us_domain: &str| {
        format!(
            r#"{{"stores": {{
  "r1": {{"localDomain": "{us_domain}", "localPorts": {{"middleware": 4101, "nextjs": 3101}}}},
  "r2": {{"localDomain": "r2.local", "localPorts": {{"middleware": 4102, "nextjs": 3102}}}},
  "solo": {{"localPorts": {{"middleware": 4103, "nextjs": 3103}}}}
}}}}"#
        )
    };
    repo.write("alokai.config.json", &config("r1.local"));
    let _dev = Dev::start_with(&repo, &["--with-local-domains"], ".out/Caddyfile");
    let adapt = |repo: &Repo| -> serde_json::Value {
        let out = Command::new("caddy")
            .args(["adapt", "--adapter", "caddyfile", "--config"])
            .arg(repo.path().join(".out/Caddyfile"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "caddy adapt refused it:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(repo.path().join(".out/Caddyfile")).unwrap()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let json = adapt(&repo);
    let text = json.to_string();
    for needle in [
        "\"r1.local\"",
        "\"r2.local\"",
        "\"localhost:3101\"",
        "\"localhost:4101\"",
        "\"localhost:3102\"",
        "\"localhost:4102\"",
        "\"/api/*\"",
        "\"strip_path_prefix\":\"/api\"",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    assert!(!text.contains("3103"), "solo has no domain: {text}");
    // The routes of r1: its host, then the middleware before the frontend.
    let routes = json["apps"]["http"]["servers"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|s| s["routes"].as_array().unwrap().clone())
        .find(|r| r["match"][0]["host"][0] == "r1.local")
        .unwrap()
        .to_string();
    let (api, front) = (
        routes.find("localhost:4101").unwrap(),
        routes.find("localhost:3101").unwrap(),
    );
    assert!(api < front, "{routes}");

    // A new domain in the config: the file follows.
    let before = std::fs::read_to_string(repo.path().join(".out/Caddyfile")).unwrap();
    repo.write("alokai.config.json", &config("shop-r1.local"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = std::fs::read_to_string(repo.path().join(".out/Caddyfile")).unwrap();
        if now != before {
            assert!(now.contains("shop-r1.local {"), "{now}");
            break;
        }
        assert!(Instant::now() < deadline, "the Caddyfile was not rewritten");
        std::thread::sleep(Duration::from_millis(40));
    }
    assert!(adapt(&repo).to_string().contains("\"shop-r1.local\""));
}
