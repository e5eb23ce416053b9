//! Watch-mode latency on the generated 20-store monorepo: from a file's
//! write to all of its affected `.out` copies updated (p50 and p99 over
//! many edits), and the CPU time `store dev` uses over 10 idle seconds.
//! Prints figures; asserts no timing.

mod generate;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name: utime is the 14th field, stime the 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn wait_for(copies: &[PathBuf], content: &str, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if copies
            .iter()
            .all(|c| std::fs::read_to_string(c).is_ok_and(|t| t == content))
        {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = tmp.path().join("repo");
    let stores = generate::monorepo(&root);
    let mut dev = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(&root)
        .args(["store", "dev", "--no-servers"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(dev.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("watching") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});

    // Edits: a base file every store composes (20 copies), a brand's file
    // (its 5 regions), and one store's own file (1 copy).
    let base = root.join("apps/storefront-unified-nextjs/src/bench/edited.ts");
    let brand = root.join("apps/stores/brand2/storefront-unified-nextjs/src/bench/brand.ts");
    let own = root.join(
        "apps/stores/brand1/stores/brand1-region3/storefront-unified-nextjs/src/bench/own.ts",
    );
    let copies = |rel: &str, which: &dyn Fn(&str) -> bool| -> Vec<PathBuf> {
        stores
            .iter()
            .filter(|s| which(s))
            .map(|s| {
                root.join(".out")
                    .join(s)
                    .join("storefront-unified-nextjs")
                    .join(rel)
            })
            .collect()
    };
    let targets: Vec<(&Path, Vec<PathBuf>)> = vec![
        (&base, copies("src/bench/edited.ts", &|_| true)),
        (
            &brand,
            copies("src/bench/brand.ts", &|s| s.starts_with("brand2-")),
        ),
        (&own, copies("src/bench/own.ts", &|s| s == "brand1-region3")),
    ];
    for (file, _) in &targets {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut latencies = Vec::new();
    let mut missed = 0;
    for i in 0..90 {
        let (file, copies) = &targets[i % targets.len()];
        let content = format!("export const edit = {i};\n");
        std::fs::write(file, &content).unwrap();
        match wait_for(copies, &content, Duration::from_secs(5)) {
            Some(d) => latencies.push(d),
            None => missed += 1,
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    latencies.sort();

    let before = cpu_ticks(dev.id());
    std::thread::sleep(Duration::from_secs(10));
    let idle = cpu_ticks(dev.id()) - before;
    let ticks = 100.0; // USER_HZ on Linux
    let _ = dev.kill();
    let _ = dev.wait();

    println!(
        "store dev benchmark: {} stores, {} edits (20, 5 and 1 affected copies)",
        stores.len(),
        latencies.len() + missed
    );
    println!(
        "  write -> every affected copy updated: p50 {:.1} ms (target <= 30 ms), p99 {:.1} ms (target <= 200 ms), max {:.1} ms, {} never updated",
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0,
        missed
    );
    println!(
        "  CPU time over 10 idle seconds: {:.2} s",
        idle as f64 / ticks
    );
}
