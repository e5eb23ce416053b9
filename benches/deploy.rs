//! Deploy benchmarks, each beside a baseline measured in the same run:
//! - image build of a 45 MB `.deploy` of about 3,200 files against
//!   `tar -cf - . | gzip -6` (time) and `gzip -1` (size);
//! - a cold push against `skopeo copy oci:… docker://…` of the same image to
//!   the same kind of registry (skopeo's blob-info cache cleared first);
//! - a no-op `store deploy --all` of the generated 20 stores;
//! - bytes uploaded for 20 stores whose middleware shares its dependencies;
//! - a one-file commit in one store: stores triggered, bytes uploaded, and
//!   the engine's time beside that store's own work.
//!
//! Needs Debian's docker-registry and skopeo (scripts/test installs them).

mod generate;
mod measure;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use measure::{Run, median, run_strata};
use strata_engine::{ContentHash, Db, EntryKind, Fingerprint, file_digest};
use strata_rules::OutFile;
use strata_rules::oci::image::{BaseImage, ImageMeta, build_image};
use strata_rules::oci::layer::Compression;
use strata_rules::oci::layout::Layout;
use strata_rules::oci::push::{BlobHomes, push_image};
use strata_rules::oci::registry::{ClientOptions, Registry};

/// A registry process, its port, and its storage (kept until the drop).
struct Server(Child, u16, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn registry() -> Server {
    assert!(
        Path::new("/usr/bin/docker-registry").exists(),
        "docker-registry is not installed: install the Debian package docker-registry"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Server(child, port, dir)
}

/// A `.deploy`-like folder: 3,000 dependency files of source text and 200
/// build files, half of them binary-like, about 45 MB.
fn deploy_folder(dir: &Path) -> Vec<OutFile> {
    let mut seed: u64 = 7;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let words = [
        "const", "function", "return", "export", "import", "value", "props", "render", "state",
        "=>", "{", "}", "(", ")", ";", "\n",
    ];
    for i in 0..3000 {
        let len = 4000 + (next() % 16000) as usize;
        let mut text = String::with_capacity(len);
        while text.len() < len {
            text.push_str(words[(next() % words.len() as u64) as usize]);
            text.push(' ');
            if next() % 7 == 0 {
                text.push_str(&format!("v{} ", next() % 5000));
            }
        }
        let path = dir.join(format!("node_modules/pkg{:03}/lib/f{i}.js", i / 20));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    for i in 0..200 {
        let len = 20_000 + (next() % 50_000) as usize;
        let bytes: Vec<u8> = if i % 2 == 0 {
            (0..len).map(|_| (next() & 0xff) as u8).collect()
        } else {
            (0..len).map(|j| b"chunk-data "[j % 11]).collect()
        };
        let path = dir.join(format!(".next/server/chunks/c{i}.bin"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    std::fs::write(
        dir.join("server.js"),
        "require('./.next/server/chunks/c1.bin');\n",
    )
    .unwrap();
    let mut files = Vec::new();
    let mut walk = vec![dir.to_path_buf()];
    while let Some(d) = walk.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk.push(p);
            } else {
                files.push(OutFile {
                    path: p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
                    kind: EntryKind::File { executable: false },
                    digest: file_digest(&p).unwrap(),
                    fingerprint: Fingerprint::at(&p).unwrap(),
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn shell_time(script: &str, dir: &Path) -> (Duration, u64) {
    let start = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(out.status.success(), "{script}");
    (
        elapsed,
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();

    // 1. Image build beside tar | gzip.
    let deploy = tmp.path().join("deploy");
    let files = deploy_folder(&deploy);
    let total: u64 = files.iter().map(|f| f.fingerprint.size).sum();
    let (gzip6, size6) = shell_time("tar -cf - . | gzip -6 | wc -c", &deploy);
    let (_, size1) = shell_time("tar -cf - . | gzip -1 | wc -c", &deploy);
    let db = Db::open(&tmp.path().join("db")).unwrap();
    let layout = Layout::open(&tmp.path().join("oci")).unwrap();
    let meta = ImageMeta {
        store: "bench".into(),
        app: "app".into(),
        composition: ContentHash::of(b"bench").to_hex(),
        source: None,
        epoch: 1_700_000_000,
    };
    let base = BaseImage::scratch("linux/amd64");
    let start = Instant::now();
    let image = build_image(
        &layout,
        &db.tree("layers").unwrap(),
        &base,
        &deploy,
        &files,
        &meta,
        Compression::Gzip,
    )
    .unwrap();
    let build = start.elapsed();
    let ours: u64 = image.layers.iter().map(|l| l.size).sum();
    let start = Instant::now();
    build_image(
        &layout,
        &db.tree("layers").unwrap(),
        &base,
        &deploy,
        &files,
        &meta,
        Compression::Gzip,
    )
    .unwrap();
    let rebuild = start.elapsed();
    println!("deploy benchmarks");
    println!(
        "  .deploy: {} files, {:.1} MB",
        files.len(),
        total as f64 / 1e6
    );
    println!(
        "  tar | gzip -6            {:>8.1} ms, {:.1} MB",
        ms(gzip6),
        size6 as f64 / 1e6
    );
    println!(
        "  tar | gzip -1 size                   {:.1} MB",
        size1 as f64 / 1e6
    );
    println!(
        "  image build (gzip)       {:>8.1} ms, {:.1} MB   time ratio {:.2} (target <= 0.5), size / gzip -1 {:.3} (target <= 1)",
        ms(build),
        ours as f64 / 1e6,
        build.as_secs_f64() / gzip6.as_secs_f64(),
        ours as f64 / size1 as f64
    );
    println!("  same image again (cached layers) {:>6.1} ms", ms(rebuild));

    // 2. Cold push beside skopeo copy, each to a fresh registry.
    let reference = "bench-app:1";
    layout
        .tag(reference, &image.manifest, Some(&image.platform))
        .unwrap();
    let ours_registry = registry();
    let client = Registry::new(
        &format!("127.0.0.1:{}", ours_registry.1),
        ClientOptions {
            insecure: true,
            ..Default::default()
        },
    )
    .unwrap();
    let homes = BlobHomes::new(db.tree("homes").unwrap());
    let start = Instant::now();
    let stats = push_image(&client, &layout, &homes, &base, &image, "bench/app", "1").unwrap();
    let push = start.elapsed();
    let skopeo_registry = registry();
    let _ = std::fs::remove_file("/var/lib/containers/cache/blob-info-cache-v1.boltdb");
    if let Some(home) = std::env::var_os("HOME") {
        let _ = std::fs::remove_file(
            PathBuf::from(home).join(".local/share/containers/cache/blob-info-cache-v1.boltdb"),
        );
    }
    let (skopeo, _) = shell_time(
        &format!(
            "skopeo copy -q --dest-tls-verify=false oci:{}:{reference} docker://127.0.0.1:{}/bench/app:1",
            layout.dir().display(),
            skopeo_registry.1
        ),
        tmp.path(),
    );
    println!(
        "  cold push: strata {:.1} ms ({} blobs, {:.1} MB), skopeo copy {:.1} ms   ratio {:.2} (target <= 1.0)",
        ms(push),
        stats.uploaded,
        stats.bytes as f64 / 1e6,
        ms(skopeo),
        push.as_secs_f64() / skopeo.as_secs_f64()
    );

    // 3. and 4. The generated 20 stores, their middleware sharing
    // dependencies, deployed to a registry, then again with nothing changed.
    let root = tmp.path().join("repo");
    let stores = generate::monorepo(&root);
    generate::dependencies(&root, 40, 25);
    let git = |args: &[&str]| measure::git(&root, args);
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "bench"]);
    let target = registry();
    let url = format!("http://127.0.0.1:{}", target.1);
    let args = [
        "store",
        "deploy",
        "--all",
        "--json",
        "--registry",
        &url,
        "--base-image",
        "scratch",
    ];
    let cold = run_strata(&root, &args);
    let report: serde_json::Value = serde_json::from_str(&cold.stdout).unwrap();
    let uploaded: u64 = report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["bytes_uploaded"].as_u64().unwrap())
        .sum();
    let deps_layer = Layout::open(&root.join(".strata/oci")).unwrap();
    let mw = report["stores"][0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["app"] == "storefront-middleware")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&deps_layer.read_blob(&mw).unwrap()).unwrap();
    let deps_size = manifest["layers"][0]["size"].as_u64().unwrap();
    let noops: Vec<Run> = (0..5).map(|_| run_strata(&root, &args)).collect();
    let noop = median(&noops);
    let again: serde_json::Value = serde_json::from_str(&noop.stdout).unwrap();
    let uploaded_again: u64 = again["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["bytes_uploaded"].as_u64().unwrap())
        .sum();
    println!(
        "  20 stores, cold deploy to a registry: {:.1} s, {:.1} MB uploaded; the shared dependency layer is {:.1} MB: {:.1} MB if sent 20 times",
        cold.wall.as_secs_f64(),
        uploaded as f64 / 1e6,
        deps_size as f64 / 1e6,
        20.0 * deps_size as f64 / 1e6
    );
    println!(
        "  no-op deploy of {} stores (median of 5): {:.1} ms, {} bytes uploaded   (target <= 150 ms)",
        stores.len(),
        ms(noop.wall),
        uploaded_again
    );
    println!(
        "  peak memory of a deploy: {:.1} MB",
        cold.max_rss_kb.max(noop.max_rss_kb) as f64 / 1024.0
    );

    // 5. A one-file commit in one store: what rolls out, what is sent, and
    // the engine's own time beside that store's build scripts, images,
    // pushes and trigger (the rest of the wall time); five such commits,
    // each a new module in the store's own folder (the stand-in build's
    // output, a list of src/'s entries, changes, so the store's image does).
    let edited = &stores[0];
    let brand = edited.split('-').next().unwrap();
    let mut beside = Vec::new();
    for round in 0..5 {
        let module = root.join(format!(
            "apps/stores/{brand}/stores/{edited}/storefront-unified-nextjs/src/bench-edit-{round}.ts"
        ));
        std::fs::create_dir_all(module.parent().unwrap()).unwrap();
        std::fs::write(&module, format!("export const edited = {round};\n")).unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "one file in one store"]);
        // The engine's trace of the run, kept for a look (STRATA_BENCH_KEEP).
        let trace = tmp.path().join(format!("edit-{round}.json"));
        let trace = trace.display().to_string();
        let mut traced = args.to_vec();
        traced.extend(["--profile", trace.as_str()]);
        let edit = run_strata(&root, &traced);
        let report: serde_json::Value = serde_json::from_str(&edit.stdout).unwrap();
        let stores_report = report["stores"].as_array().unwrap();
        let triggered: Vec<&str> = stores_report
            .iter()
            .filter(|s| s["stages"]["trigger"] == "run")
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            triggered,
            [edited.as_str()],
            "only the edited store rolls out"
        );
        let sent: u64 = stores_report
            .iter()
            .map(|s| s["bytes_uploaded"].as_u64().unwrap())
            .sum();
        // The edited store's own work: its build scripts, images, pushes
        // and trigger. The other stores' re-tags (a manifest PUT per app)
        // run beside it and count as the engine's time here.
        let work: f64 = stores_report
            .iter()
            .filter(|s| s["id"] == edited.as_str())
            .map(|s| s["seconds"].as_f64().unwrap())
            .sum();
        let engine = (edit.wall.as_secs_f64() - work).max(0.0) * 1e3;
        println!(
            "  one file edited in {edited}, new commit: {:.1} ms wall, {:.1} ms beside its own work, triggered {:?}, {:.1} KB uploaded (the other {} stores only re-tagged)",
            ms(edit.wall),
            engine,
            triggered,
            sent as f64 / 1e3,
            stores.len() - triggered.len()
        );
        beside.push(engine);
    }
    beside.sort_by(f64::total_cmp);
    println!(
        "    time beside that store's scripts, images, pushes and trigger (the engine, and the other stores' re-tags), median of 5: {:.1} ms (from {:.1} to {:.1})   (target <= 100 ms)",
        beside[2], beside[0], beside[4]
    );
    // STRATA_BENCH_KEEP=1 keeps the generated monorepo to look into.
    if std::env::var_os("STRATA_BENCH_KEEP").is_some() {
        println!("  kept {}", tmp.keep().display());
    }
}
