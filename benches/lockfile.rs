//! Lockfile closures: parsing a lockfile of 3,000 packages and computing
//! every app's dependency closure, for each format, beside a baseline
//! measured in the same run (reading the same text as plain JSON, or
//! splitting it into lines, which any reader does). Target: under 50 ms.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use strata_rules::lockfile::{App, closures};

const PACKAGES: usize = 3000;
const APPS: [&str; 3] = [
    "apps/storefront-middleware",
    "apps/storefront-unified-nextjs",
    "apps/playwright",
];

/// Package `i` depends on up to three packages after it (a DAG with a long
/// tail, as real ones have); every 10th package also exists in a second,
/// nested version.
fn deps_of(i: usize) -> Vec<usize> {
    [i * 2 + 1, i * 3 + 2, i + 7]
        .into_iter()
        .filter(|&d| d < PACKAGES && d != i)
        .collect()
}

fn name(i: usize) -> String {
    if i % 5 == 0 {
        format!("@scope{}/pkg{i}", i % 7)
    } else {
        format!("pkg{i}")
    }
}

/// The apps' direct dependencies: disjoint-ish starting points.
fn roots(app: usize) -> Vec<usize> {
    (0..40).map(|k| (app * 977 + k * 31) % PACKAGES).collect()
}

fn npm() -> String {
    let mut packages = serde_json::Map::new();
    packages.insert(
        String::new(),
        serde_json::json!({"name": "bench", "workspaces": ["apps/*"]}),
    );
    for (a, dir) in APPS.iter().enumerate() {
        let deps: serde_json::Map<String, serde_json::Value> = roots(a)
            .into_iter()
            .map(|i| (name(i), serde_json::Value::from("^1.0.0")))
            .collect();
        packages.insert(dir.to_string(), serde_json::json!({"dependencies": deps}));
        let short = dir.rsplit('/').next().unwrap();
        packages.insert(
            format!("node_modules/{short}"),
            serde_json::json!({"resolved": dir, "link": true}),
        );
    }
    for i in 0..PACKAGES {
        let deps: serde_json::Map<String, serde_json::Value> = deps_of(i)
            .into_iter()
            .map(|d| (name(d), serde_json::Value::from("^1.0.0")))
            .collect();
        packages.insert(
            format!("node_modules/{}", name(i)),
            serde_json::json!({"version": "1.0.0", "integrity": format!("sha512-{i}"), "dependencies": deps}),
        );
        if i % 10 == 0 && i > 0 {
            // A nested second version under the package before it.
            packages.insert(
                format!("node_modules/{}/node_modules/{}", name(i - 1), name(i)),
                serde_json::json!({"version": "2.0.0", "integrity": format!("sha512-{i}-2")}),
            );
        }
    }
    serde_json::to_string_pretty(&serde_json::json!({
        "name": "bench", "lockfileVersion": 3, "requires": true, "packages": packages
    }))
    .unwrap()
}

fn yarn1() -> String {
    let mut out = String::from("# yarn lockfile v1\n\n\n");
    for i in 0..PACKAGES {
        let n = name(i);
        writeln!(
            out,
            "\"{n}@^1.0.0\":\n  version \"1.0.0\"\n  resolved \"https://example.invalid/{n}-1.0.0.tgz\"\n  integrity sha512-{i}"
        )
        .unwrap();
        let deps = deps_of(i);
        if !deps.is_empty() {
            out.push_str("  dependencies:\n");
            for d in deps {
                writeln!(out, "    \"{}\" \"^1.0.0\"", name(d)).unwrap();
            }
        }
        out.push('\n');
    }
    out
}

fn pnpm() -> String {
    let mut out = String::from("lockfileVersion: '9.0'\n\nimporters:\n\n  .: {}\n\n");
    for (a, dir) in APPS.iter().enumerate() {
        writeln!(out, "  {dir}:\n    dependencies:").unwrap();
        for i in roots(a) {
            writeln!(
                out,
                "      '{}':\n        specifier: ^1.0.0\n        version: 1.0.0",
                name(i)
            )
            .unwrap();
        }
        out.push('\n');
    }
    out.push_str("packages:\n\n");
    for i in 0..PACKAGES {
        writeln!(
            out,
            "  '{}@1.0.0':\n    resolution: {{integrity: sha512-{i}}}\n",
            name(i)
        )
        .unwrap();
    }
    out.push_str("snapshots:\n\n");
    for i in 0..PACKAGES {
        let deps = deps_of(i);
        if deps.is_empty() {
            writeln!(out, "  '{}@1.0.0': {{}}\n", name(i)).unwrap();
            continue;
        }
        writeln!(out, "  '{}@1.0.0':\n    dependencies:", name(i)).unwrap();
        for d in deps {
            writeln!(out, "      '{}': 1.0.0", name(d)).unwrap();
        }
        out.push('\n');
    }
    out
}

fn apps() -> Vec<App> {
    APPS.iter()
        .enumerate()
        .map(|(a, dir)| {
            let deps: serde_json::Map<String, serde_json::Value> = roots(a)
                .into_iter()
                .map(|i| (name(i), serde_json::Value::from("^1.0.0")))
                .collect();
            App {
                dir: dir.to_string(),
                manifest: serde_json::json!({"name": dir.rsplit('/').next().unwrap(), "dependencies": deps}),
            }
        })
        .collect()
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let apps = apps();
    println!(
        "lockfile closures, {PACKAGES} packages, {} apps (medians of 15)",
        apps.len()
    );
    for (file, text) in [
        ("package-lock.json", npm()),
        ("yarn.lock", yarn1()),
        ("pnpm-lock.yaml", pnpm()),
    ] {
        let walked = closures(file, &text, &apps, &BTreeMap::new());
        assert!(walked.warning.is_none(), "{file}: {:?}", walked.warning);
        let sizes: Vec<usize> = walked.apps.values().map(|c| c.packages.len()).collect();
        assert!(sizes.iter().all(|&n| n > 100), "{file}: {sizes:?}");
        assert!(walked.apps.values().all(|c| c.whole.is_none()), "{file}");
        let ours = time(15, || {
            std::hint::black_box(closures(file, &text, &apps, &BTreeMap::new()));
        });
        // The baseline: what any reader of this file pays (JSON parsed
        // into a value; other formats split into lines and trimmed).
        let baseline = time(15, || {
            if file.ends_with(".json") {
                std::hint::black_box(serde_json::from_str::<serde_json::Value>(&text).unwrap());
            } else {
                std::hint::black_box(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .count(),
                );
            }
        });
        println!(
            "  {file:<18} {:>7.1} KB  closures {:>6.1} ms (target < 50 ms; sizes {sizes:?}), baseline {:>5.1} ms, ratio {:.1}",
            text.len() as f64 / 1e3,
            ours.as_secs_f64() * 1e3,
            baseline.as_secs_f64() * 1e3,
            ours.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}
