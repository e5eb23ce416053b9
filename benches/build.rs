//! `store build` benchmark on the generated 20-store monorepo: a no-op
//! `store build --all` with everything cached, and the engine's own
//! overhead after a one-file edit in one store (wall time minus that
//! store's build script time). Prints figures; asserts no timing.

mod generate;
mod measure;

use std::time::Duration;

use measure::{Run, median, run_strata};

fn main() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = tmp.path().join("repo");
    let stores = generate::monorepo(&root);
    std::thread::sleep(Duration::from_millis(1100));
    let cold = run_strata(&root, &["store", "build", "--all", "--json"]);
    let cold_report: serde_json::Value = serde_json::from_str(&cold.stdout).unwrap();

    let noops: Vec<Run> = (0..7)
        .map(|_| run_strata(&root, &["store", "build", "--all", "--json"]))
        .collect();
    let noop = median(&noops);
    let report: serde_json::Value = serde_json::from_str(&noop.stdout).unwrap();
    assert_eq!(report["scripts_run"], 0, "a no-op build runs no script");

    // One file of one store's frontend.
    let store = &stores[7];
    let brand = store.split('-').next().unwrap();
    let file = root
        .join(format!(
            "apps/stores/{brand}/stores/{store}/storefront-unified-nextjs"
        ))
        .join(generate::file_path(3));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "export const edited = 1;\n").unwrap();
    let edit = run_strata(&root, &["store", "build", "--all", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&edit.stdout).unwrap();
    assert_eq!(
        report["scripts_run"], 1,
        "only the edited store's frontend builds"
    );
    let script: f64 = report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["apps"].as_array().unwrap())
        .filter_map(|a| a["seconds"].as_f64())
        .sum();
    let overhead = edit.wall.as_secs_f64() - script;

    println!(
        "build benchmark: {} stores, cold build ran {} scripts in {:.1} s",
        stores.len(),
        cold_report["scripts_run"],
        cold.wall.as_secs_f64()
    );
    println!(
        "  no-op build --all (median of 7) {:>7.1} ms   (target <= 300 ms)",
        noop.wall.as_secs_f64() * 1000.0
    );
    println!(
        "  one-file edit: wall {:.1} ms, build script {:.1} ms, engine overhead {:.1} ms   (target <= 100 ms)",
        edit.wall.as_secs_f64() * 1000.0,
        script * 1000.0,
        overhead * 1000.0
    );
    println!(
        "  peak memory {:.1} MB",
        [&cold, &noop, &edit]
            .iter()
            .map(|r| r.max_rss_kb)
            .max()
            .unwrap() as f64
            / 1024.0
    );
}
