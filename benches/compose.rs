//! Compose benchmark: cold, no-op and one-file-edit composes of the
//! generated 20-store monorepo, beside a naive `cp -a` baseline measured in
//! the same run. Prints figures and ratios; asserts no timing.

mod generate;
mod measure;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use measure::{Run, median, run_strata};

fn naive_compose(root: &Path, out: &Path, stores: &[String]) -> Duration {
    // The naive baseline: for each store and app, `cp -a` the base app, then
    // each layer of the chain on top.
    let mut script = String::from("set -e\n");
    for id in stores {
        let brand = id.split('-').next().unwrap();
        for (app, _) in generate::APPS {
            let dest = out.join(id).join(app);
            script.push_str(&format!(
                "mkdir -p {0}\ncp -a {1}/apps/{app}/. {0}/\n",
                dest.display(),
                root.display()
            ));
            for layer in [
                format!("apps/stores/{brand}/{app}"),
                format!("apps/stores/{brand}/stores/{id}/{app}"),
            ] {
                if root.join(&layer).exists() {
                    script.push_str(&format!(
                        "cp -a {}/{layer}/. {}/\n",
                        root.display(),
                        dest.display()
                    ));
                }
            }
        }
    }
    let start = std::time::Instant::now();
    let status = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

fn settle() {
    // Let writeback of the previous run finish so runs do not pay for each
    // other's I/O.
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(2));
}

fn main() {
    // STRATA_BENCH_DIR picks the file system (a tmpfs such as /dev/shm takes
    // the disk out of the comparison); the default is cargo's target dir.
    let base = std::env::var_os("STRATA_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_TARGET_TMPDIR").into());
    let tmp = tempfile::tempdir_in(&base).unwrap();
    println!("benchmarking in {}", base.display());
    let root = tmp.path().join("repo");
    if let Some(keep) = std::env::var_os("STRATA_BENCH_KEEP") {
        // Leave a generated monorepo behind for profiling.
        generate::monorepo(Path::new(&keep));
        return;
    }
    let stores = generate::monorepo(&root);
    let root_str = root.to_str().unwrap();

    // Cold composes and the naive baseline, interleaved, each into a fresh
    // folder (outputs are moved aside, not deleted, until the end: deleting
    // 55k files costs the disk more than writing them).
    let rounds = 3;
    let mut naive = Vec::new();
    let mut cold = Vec::new();
    for round in 0..rounds {
        settle();
        naive.push(naive_compose(
            &root,
            &tmp.path().join(format!("naive-{round}")),
            &stores,
        ));
        settle();
        let cache = tmp.path().join(format!("cache-{round}"));
        let cache = cache.to_str().unwrap();
        cold.push(run_strata(
            &root,
            &["--cache-dir", cache, "store", "compose"],
        ));
        if round + 1 < rounds {
            std::fs::rename(root.join(".out"), tmp.path().join(format!("out-{round}"))).unwrap();
        }
    }
    let files = walk_count(&tmp.path().join("naive-0"));
    naive.sort();
    let naive = naive[rounds / 2];
    let cold = median(&cold);
    let last_cache = tmp.path().join(format!("cache-{}", rounds - 1));
    let last_cache = last_cache.to_str().unwrap();

    settle();
    let noops: Vec<Run> = (0..7)
        .map(|_| run_strata(&root, &["--cache-dir", last_cache, "store", "compose"]))
        .collect();
    let noop = median(&noops);

    // A one-file edit of a base file that some stores override.
    let edited = root
        .join("apps/storefront-unified-nextjs")
        .join(generate::file_path(7));
    std::fs::write(&edited, "export const edited = true;\n").unwrap();
    let edit = run_strata(
        &root,
        &["--cache-dir", last_cache, "store", "compose", "--json"],
    );
    let report: serde_json::Value = serde_json::from_str(&edit.stdout).unwrap();
    let written = report["totals"]["written"].as_u64().unwrap();
    let overriding = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ls -d {root_str}/apps/stores/*/stores/*/storefront-unified-nextjs/{} 2>/dev/null | wc -l",
            generate::file_path(7)
        ))
        .output()
        .unwrap();
    let overriding: u64 = String::from_utf8_lossy(&overriding.stdout)
        .trim()
        .parse()
        .unwrap();

    let peak = [&cold, &noop, &edit]
        .iter()
        .map(|r| r.max_rss_kb)
        .max()
        .unwrap();
    println!(
        "compose benchmark: {} stores, {files} output files, medians of {rounds} cold runs",
        stores.len()
    );
    println!("  naive cp -a baseline   {:>9.1} ms", ms(naive));
    println!(
        "  cold compose           {:>9.1} ms   ratio to baseline {:.2} (target <= 0.50)",
        ms(cold.wall),
        cold.wall.as_secs_f64() / naive.as_secs_f64()
    );
    println!(
        "  no-op compose (median) {:>9.1} ms   (target <= 150 ms)",
        ms(noop.wall)
    );
    println!(
        "  one-file edit          {:>9.1} ms   {written} files written = {} stores not overriding it",
        ms(edit.wall),
        stores.len() as u64 - overriding
    );
    println!(
        "  peak memory            {:>9.1} MB   (target < 200 MB)",
        peak as f64 / 1024.0
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn walk_count(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += walk_count(&e.path());
        } else {
            n += 1;
        }
    }
    n
}
