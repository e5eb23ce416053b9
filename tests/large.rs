//! Big inputs: a file of several GiB is streamed (strata's memory stays
//! far below the file's size), and an app of 100,000 files composes.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::Repo;

/// A monorepo of one base app and one store.
fn one_store() -> Repo {
    let repo = Repo::empty();
    repo.write(".gitignore", "node_modules/\n.out/\n.strata/\n");
    repo.write("apps/web/package.json", "{\"name\": \"web\"}\n");
    repo.write("apps/stores/solo/web/src/own.ts", "solo\n");
    repo.config(&["solo"]);
    repo
}

/// Runs strata to the end; returns whether it succeeded, its stderr and
/// its peak resident memory (VmHWM, read while it runs) in KiB.
fn run_watching_memory(repo: &Repo, args: &[&str]) -> (bool, String, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(repo.path())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        peak,
    )
}

#[test]
fn a_file_of_several_gib_is_streamed() {
    let repo = one_store();
    let size: u64 = 5 << 29; // 2.5 GiB
    let big = repo.path().join("apps/web/public/video.bin");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    // Sparse, with data at both ends so a copy that drops a part shows.
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(size).unwrap();
    drop(file);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(size - 4)).unwrap();
        f.write_all(b"tail").unwrap();
    }
    let (ok, stderr, peak) = run_watching_memory(&repo, &["store", "compose"]);
    assert!(ok, "{stderr}");
    eprintln!("peak resident memory composing a {size}-byte file: {peak} KiB");
    let copy = repo.path().join(".out/solo/web/public/video.bin");
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), size);
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&copy).unwrap();
        let mut four = [0u8; 4];
        f.read_exact(&mut four).unwrap();
        assert_eq!(&four, b"head");
        f.seek(SeekFrom::Start(size - 4)).unwrap();
        f.read_exact(&mut four).unwrap();
        assert_eq!(&four, b"tail");
    }
    assert!(
        peak > 0 && peak < 256 * 1024,
        "peak memory {peak} KiB for a {size}-byte file: it was read whole"
    );
    // An edit elsewhere does not copy it again (nor read it whole).
    repo.write("apps/web/src/other.ts", "x\n");
    let (ok, stderr, peak) = run_watching_memory(&repo, &["store", "compose"]);
    assert!(ok, "{stderr}");
    assert!(peak < 256 * 1024, "{peak} KiB");
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    std::fs::remove_file(&big).unwrap();
}

#[test]
fn an_app_of_100_000_files_composes() {
    let repo = one_store();
    let src = repo.path().join("apps/web/src");
    for d in 0..100 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            std::fs::write(dir.join(format!("f{f}.ts")), format!("{d}/{f}\n")).unwrap();
        }
    }
    let (ok, stderr, peak) = run_watching_memory(&repo, &["store", "compose"]);
    assert!(ok, "{stderr}");
    let out = repo.path().join(".out/solo/web/src");
    let mut count = 0;
    for d in std::fs::read_dir(&out).unwrap() {
        let d = d.unwrap();
        if d.file_type().unwrap().is_dir() {
            count += std::fs::read_dir(d.path()).unwrap().count();
        }
    }
    assert_eq!(count, 100_000);
    assert_eq!(
        std::fs::read_to_string(out.join("d42/f777.ts")).unwrap(),
        "42/777\n"
    );
    eprintln!("peak resident memory composing an app of 100,000 files: {peak} KiB");
    assert!(peak < 512 * 1024, "peak memory {peak} KiB");
}
