//! `store changed` and `store lint` benchmark: a generated monorepo (20
//! stores) with 1,000 commits; `strata store changed --since HEAD~100`
//! beside `git diff --name-only HEAD~100`, and `strata store lint` (which
//! reads the whole history) beside `git log --name-only -- apps`, in the
//! same run. Prints medians and the ratios; asserts no timing.

mod generate;
mod measure;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use measure::{Run, git, median, run_strata, run_strata_exiting};

/// Appends 999 commits, each changing one to three files across layers.
fn history(root: &Path, stores: &[String]) {
    let mut stream = Vec::new();
    let mut seed: u64 = 42;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for n in 1..1000 {
        write!(
            stream,
            "commit refs/heads/main\nmark :{n}\ncommitter bench <bench@strata.invalid> {} +0000\n",
            1_700_000_000 + n
        )
        .unwrap();
        let message = format!("change {n}");
        write!(stream, "data {}\n{message}\n", message.len()).unwrap();
        if n == 1 {
            stream.extend_from_slice(b"from refs/heads/main^0\n");
        } else {
            writeln!(stream, "from :{}", n - 1).unwrap();
        }
        for _ in 0..1 + next() % 3 {
            let file = generate::file_path(next() % 2000);
            let path = match next() % 4 {
                0 => {
                    let id = &stores[next() % stores.len()];
                    let brand = id.split('-').next().unwrap();
                    format!("apps/stores/{brand}/stores/{id}/storefront-unified-nextjs/{file}")
                }
                1 => format!(
                    "apps/stores/brand{}/storefront-unified-nextjs/{file}",
                    next() % 4
                ),
                _ => format!("apps/storefront-unified-nextjs/{file}"),
            };
            let content = format!("export const commit{n} = {};\n", next());
            write!(
                stream,
                "M 100644 inline {path}\ndata {}\n{content}\n",
                content.len()
            )
            .unwrap();
        }
    }
    let mut child = Command::new("git")
        .current_dir(root)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success());
    git(root, &["checkout", "-q", "-f", "main"]);
}

fn main() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = tmp.path().join("repo");
    let stores = generate::monorepo(&root);
    git(&root, &["init", "-q"]);
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "initial"]);
    history(&root, &stores);

    let runs = 15;
    let mut git_times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let out = Command::new("git")
            .current_dir(&root)
            .args(["diff", "--name-only", "HEAD~100"])
            .output()
            .unwrap();
        git_times.push(start.elapsed());
        assert!(out.status.success());
    }
    let strata: Vec<Run> = (0..runs)
        .map(|_| {
            run_strata(
                &root,
                &["store", "changed", "--since", "HEAD~100", "--condensed"],
            )
        })
        .collect();
    git_times.sort();
    let git_median: Duration = git_times[runs / 2];
    let strata_median = median(&strata);
    let affected: Vec<String> = serde_json::from_str(&strata_median.stdout).unwrap();
    println!(
        "store changed benchmark: 20 stores, 1,000 commits, range HEAD~100..HEAD, medians of {runs}"
    );
    println!(
        "  git diff --name-only   {:>7.1} ms",
        git_median.as_secs_f64() * 1000.0
    );
    println!(
        "  strata store changed   {:>7.1} ms   ratio {:.2} (target <= 3.0), {} stores affected",
        strata_median.wall.as_secs_f64() * 1000.0,
        strata_median.wall.as_secs_f64() / git_median.as_secs_f64(),
        affected.len()
    );
    println!(
        "  peak memory            {:>7.1} MB",
        strata_median.max_rss_kb as f64 / 1024.0
    );

    let runs = 7;
    let mut log_times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let out = Command::new("git")
            .current_dir(&root)
            .args([
                "log",
                "--no-merges",
                "--format=%H",
                "--name-only",
                "--",
                "apps",
            ])
            .output()
            .unwrap();
        log_times.push(start.elapsed());
        assert!(out.status.success());
    }
    log_times.sort();
    let log_median = log_times[runs / 2];
    let lint: Vec<Run> = (0..runs)
        .map(|_| run_strata_exiting(&root, &["store", "lint", "--json"], &[0, 1]))
        .collect();
    let lint_median = median(&lint);
    let report: serde_json::Value = serde_json::from_str(&lint_median.stdout).unwrap();
    let found = |k: &str| report[k].as_array().map_or(0, Vec::len);
    println!("store lint benchmark: the same repository, whole history, medians of {runs}");
    println!(
        "  git log --name-only    {:>7.1} ms",
        log_median.as_secs_f64() * 1000.0
    );
    println!(
        "  strata store lint      {:>7.1} ms   ratio {:.2}, found {} dead, {} orphans, {} drifted; peak {:.1} MB",
        lint_median.wall.as_secs_f64() * 1000.0,
        lint_median.wall.as_secs_f64() / log_median.as_secs_f64(),
        found("dead"),
        found("orphans"),
        found("drift"),
        lint_median.max_rss_kb as f64 / 1024.0
    );
}
