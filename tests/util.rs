//! Fixtures for the integration tests: monorepos built in temp dirs, the
//! strata binary, and an independent implementation of the inheritance
//! rules to compare `.out` against.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A file as the tests compare it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileState {
    /// A regular file: bytes and execute bit.
    File(Vec<u8>, bool),
    /// A symlink and its target.
    Link(PathBuf),
    /// A `package.json`, compared as JSON.
    Json(serde_json::Value),
}

/// A monorepo in a temp dir.
pub struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Repo {
    /// An empty folder.
    pub fn empty() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Repo { _dir: dir, root }
    }

    /// The monorepo at `root`, inside `holder` (kept until the repo drops).
    pub fn at(root: PathBuf, holder: tempfile::TempDir) -> Repo {
        Repo { _dir: holder, root }
    }

    /// A small multistore monorepo: three base apps, a template brand with
    /// two deployable regions, and a deployable top-level store.
    pub fn standard() -> Repo {
        let repo = Repo::empty();
        repo.write(".gitignore", "node_modules/\n.out/\n.strata/\n");
        for app in ["web", "api", "e2e"] {
            repo.write(
                &format!("apps/{app}/package.json"),
                &format!("{{\n  \"name\": \"{app}\",\n  \"version\": \"1.0.0\",\n  \"scripts\": {{ \"build\": \"node build.js\" }}\n}}\n"),
            );
            repo.write(&format!("apps/{app}/.gitignore"), ".next/\nlib/\n");
            for i in 0..5 {
                repo.write(
                    &format!("apps/{app}/src/file{i}.ts"),
                    &format!("{app} base {i}\n"),
                );
            }
            repo.write(&format!("apps/{app}/src/deep/nested/leaf.ts"), "leaf\n");
        }
        repo.write("apps/web/components/header.tsx", "base header\n");
        repo.write("apps/web/components/footer.tsx", "base footer\n");
        repo.write(
            "apps/stores/brand/web/components/header.tsx",
            "brand header\n",
        );
        repo.write(
            "apps/stores/brand/stores/us/web/components/footer.tsx",
            "us footer\n",
        );
        repo.write("apps/stores/brand/stores/eu/api/src/file1.ts", "eu api\n");
        repo.write("apps/stores/solo/web/src/extra.ts", "solo only\n");
        repo.config(&["us", "eu", "solo"]);
        repo
    }

    /// The root.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Writes a file, creating its folders.
    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Removes a file or folder.
    pub fn remove(&self, rel: &str) {
        let path = self.path().join(rel);
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }

    /// Writes `alokai.config.json` listing these deployable stores.
    pub fn config(&self, stores: &[&str]) {
        let entries: Vec<String> = stores
            .iter()
            .map(|s| format!("    \"{s}\": {{ \"deployment\": {{ \"framework\": \"nextjs\" }} }}"))
            .collect();
        self.write(
            "alokai.config.json",
            &format!("{{\n  \"stores\": {{\n{}\n  }}\n}}\n", entries.join(",\n")),
        );
    }

    /// Runs strata with `--root` set to this repo.
    pub fn strata(&self, args: &[&str]) -> Output {
        strata(self.path(), args)
    }

    /// Runs strata and panics with its output unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.strata(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({:?}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `strata store compose --json` and returns the report.
    pub fn compose_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["store", "compose", "--json"])).unwrap()
    }

    /// Runs `strata store deploy --json --base-image scratch` with extra
    /// arguments (no Next.js telemetry); the report, once it succeeded.
    pub fn deploy_ok(&self, extra: &[&str]) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(self.path())
            .args(["store", "deploy", "--json", "--base-image", "scratch"])
            .args(extra)
            .env("NEXT_TELEMETRY_DISABLED", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "deploy failed ({:?}):\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Every file under `.out`, except what tools own.
    pub fn out_tree(&self) -> BTreeMap<String, FileState> {
        tree(&self.path().join(".out"))
    }
}

/// Runs the strata binary on `root`.
pub fn strata(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// The recomputed node ids in a `--json` report.
pub fn recomputed(report: &serde_json::Value) -> Vec<String> {
    report["recomputed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Every file under `dir`, keyed by relative path (`package.json` at an
/// app's top parsed as JSON), skipping build outputs the tests make.
pub fn tree(dir: &Path) -> BTreeMap<String, FileState> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out, true);
    out
}

/// Every file and symlink under `dir` (bytes, execute bit, link target),
/// nothing skipped: how a restored `.deploy` is compared with a fresh one.
pub fn full_tree(dir: &Path) -> BTreeMap<String, FileState> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out, false);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, FileState>, skip_outputs: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // A temporary file of an atomic write in progress is not content.
        if name.contains(".strata-tmp-") {
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // Something may vanish while a watcher is at work: it is simply not
        // there (the caller polls again).
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if skip_outputs && matches!(name.as_str(), ".next" | "lib" | "node_modules") {
                continue;
            }
            walk(root, &path, out, skip_outputs);
        } else if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(&path) {
                out.insert(rel, FileState::Link(target));
            }
        } else if let Some(state) = file_state(&rel, &path) {
            out.insert(rel, state);
        }
    }
}

fn file_state(rel: &str, path: &Path) -> Option<FileState> {
    let bytes = std::fs::read(path).ok()?;
    if rel.split('/').count() == 3 && rel.ends_with("/package.json") {
        return Some(FileState::Json(serde_json::from_slice(&bytes).unwrap()));
    }
    let exec = std::fs::metadata(path).ok()?.permissions().mode() & 0o111 != 0;
    Some(FileState::File(bytes, exec))
}

/// What `.out` must hold, by a direct reading of the inheritance rules,
/// written independently of strata's code: for each deployable store and
/// base app, copy the base app, then each ancestor's overrides from the
/// farthest to the closest, then the store's own; `package.json` from the
/// base with `name` = `<app>-<store>`. (Fixtures hold no git-ignored inputs.)
pub fn oracle(root: &Path) -> BTreeMap<String, FileState> {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("alokai.config.json")).unwrap())
            .unwrap();
    let mut store_dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    find_stores(&root.join("apps/stores"), &mut store_dirs);
    let mut apps: Vec<String> = std::fs::read_dir(root.join("apps"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir() && e.file_name() != "stores")
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    apps.sort();
    let mut out = BTreeMap::new();
    for store in config["stores"].as_object().unwrap().keys() {
        // The chain of store folders, farthest ancestor first.
        let own = &store_dirs[store];
        let mut chain = Vec::new();
        let mut dir = own.clone();
        loop {
            chain.push(dir.clone());
            let parent = dir.parent().unwrap();
            if parent.file_name().unwrap() == "stores"
                && parent.parent().unwrap() != root.join("apps")
            {
                dir = parent.parent().unwrap().to_path_buf();
            } else {
                break;
            }
        }
        chain.reverse();
        for app in &apps {
            let mut files: BTreeMap<String, FileState> = BTreeMap::new();
            let mut layers = vec![root.join("apps").join(app)];
            layers.extend(chain.iter().map(|d| d.join(app)));
            for layer in layers {
                for (rel, state) in tree(&layer) {
                    files.insert(rel, state);
                }
            }
            if let Some(FileState::File(bytes, _)) = files.get("package.json").cloned() {
                let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                json["name"] = serde_json::Value::String(format!("{app}-{store}"));
                files.insert("package.json".into(), FileState::Json(json));
            }
            for (rel, state) in files {
                out.insert(format!("{store}/{app}/{rel}"), state);
            }
        }
    }
    out
}

fn find_stores(dir: &Path, found: &mut BTreeMap<String, PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            found.insert(
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            );
            find_stores(&entry.path().join("stores"), found);
        }
    }
}

/// Panics with the differing paths unless `.out` equals the oracle.
pub fn assert_out_exact(repo: &Repo) {
    assert_trees_equal(&repo.out_tree(), &oracle(repo.path()));
}

/// Panics with the differing paths unless the two trees are equal.
pub fn assert_trees_equal(got: &BTreeMap<String, FileState>, want: &BTreeMap<String, FileState>) {
    if got == want {
        return;
    }
    let mut diffs = Vec::new();
    for (path, state) in want {
        match got.get(path) {
            None => diffs.push(format!("missing {path}")),
            Some(s) if s != state => {
                diffs.push(format!("differs {path}: got {s:?}, want {state:?}"))
            }
            _ => {}
        }
    }
    for path in got.keys() {
        if !want.contains_key(path) {
            diffs.push(format!("extra {path}"));
        }
    }
    panic!("trees differ:\n{}", diffs.join("\n"));
}

/// Runs git in `dir` with a fixed identity; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=strata-test",
            "-c",
            "user.email=test@strata.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git is installed (Debian package: git)");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Repo {
    /// Makes the folder a git repository with everything committed.
    pub fn git_init(&self) {
        git(self.path(), &["init", "-q"]);
        self.commit("initial");
    }

    /// Commits every change; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(self.path(), &["add", "-A"]);
        git(
            self.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(self.path(), &["rev-parse", "HEAD"])
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `node server.js` started as production runs it, on a free port,
/// stopped on drop.
pub struct Server {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
    /// The copy it runs in.
    _copy: tempfile::TempDir,
}

impl Server {
    /// Starts `node server.js` with `PORT` set in a copy of `dir` (a
    /// `.deploy` folder, or an image's unpacked `/var/www`) placed where no
    /// folder above it has a `node_modules/` and with no `NODE_PATH`, as in
    /// the image, where nothing is above `/var/www`. Never in place: inside
    /// `.out`, Node would find the monorepo's own `node_modules/` and hide
    /// what the image lacks.
    pub fn start(dir: &Path) -> Server {
        let copy = tempfile::tempdir().unwrap();
        let www = copy.path().join("www");
        copy_tree(dir, &www);
        for above in www.ancestors().skip(1) {
            assert!(
                !above.join("node_modules").exists(),
                "{} has a node_modules/ above it: the server would not run as in production",
                www.display()
            );
        }
        let port = free_port();
        let child = Command::new("node")
            .arg("server.js")
            .current_dir(&www)
            .env("PORT", port.to_string())
            .env_remove("NODE_PATH")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("node is installed (Debian package: nodejs)");
        Server {
            child,
            port,
            _copy: copy,
        }
    }

    /// Unpacks `reference` of the OCI layout at `layout` (umoci) and starts
    /// its `/var/www` as [`Server::start`] does.
    pub fn from_image(layout: &Path, reference: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let bundle = crate::registry::unpack_layout(layout, reference, dir.path());
        Server::start(&bundle.join("rootfs/var/www"))
    }

    /// GET `path`; the body, once the server answers (waits up to 10 s).
    pub fn get(&self, path: &str) -> String {
        http_get(self.port, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET on loopback; the body. Retries while nothing listens.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut stream) => {
                write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).unwrap();
                return response
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_string())
                    .unwrap_or_default();
            }
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("nothing answers on port {port}: {e}"),
        }
    }
}

/// Copies a folder tree (`cp -a`).
pub fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The example monorepo of this repository, copied into a temp dir (its
/// `.out` and `.strata` left behind).
pub fn example() -> Repo {
    let repo = Repo::empty();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/multistore");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name != ".out" && name != ".strata" {
            copy_tree(&entry.path(), &repo.path().join(&name));
        }
    }
    repo
}

/// The bytes of the file at `path` as a search for planted values reads
/// them: as they are, and inflated too when they are gzip (image layers).
pub fn searchable_texts(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut texts = vec![bytes.clone()];
    if bytes.starts_with(&[0x1f, 0x8b]) {
        use std::io::Read;
        let mut inflated = Vec::new();
        if flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut inflated)
            .is_ok()
        {
            texts.push(inflated);
        }
    }
    texts
}

/// Whether any of `texts` holds `needle`.
pub fn holds_bytes(texts: &[Vec<u8>], needle: &str) -> bool {
    texts
        .iter()
        .any(|t| t.windows(needle.len()).any(|w| w == needle.as_bytes()))
}
