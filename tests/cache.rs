//! The cache is checked when read back: a corrupt build output is reported,
//! discarded and built again, never restored. `strata cache verify` checks
//! everything; `strata cache gc` evicts least recently used build entries
//! and leaves every kept entry whole.

use std::path::{Path, PathBuf};

use crate::fixtures::status;
use crate::util::{Repo, Server};

const MW: &str = "storefront-middleware";

/// Every blob file of the build-output store.
fn cas_blobs(repo: &Repo) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(repo.path().join(".strata/cas")).unwrap() {
        for blob in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            out.push(blob.unwrap().path());
        }
    }
    out.sort();
    out
}

/// Same length, other bytes (a disk fault nobody noticed).
fn rot(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len() as usize;
    std::fs::write(path, vec![b'X'; len.max(1)]).unwrap();
}

fn cache(repo: &Repo, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec!["cache"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = repo.strata(&all);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn corrupt_cached_outputs_are_reported_discarded_and_rebuilt() {
    let repo = Repo::buildable();
    repo.ok(&["store", "build"]);
    let before = repo.builds().len();
    for blob in cas_blobs(&repo) {
        rot(&blob);
    }
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    let (code, report, stderr) = repo.build_json(&[]);
    assert_eq!(code, 0, "{stderr}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("corrupt"), "{report}");
    assert!(repo.builds().len() > before, "the builds ran again");
    assert_eq!(status(&report, "solo", MW, "build"), "built");
    let web = Server::start(
        &repo
            .path()
            .join(".out/solo/storefront-unified-nextjs/.deploy"),
    );
    assert_eq!(web.get("/").trim(), "solo banner");
    // The cache is whole again: the next restore needs no script.
    let after = repo.builds().len();
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    let (code, report, stderr) = repo.build_json(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status(&report, "solo", MW, "build"), "restored");
    assert_eq!(repo.builds().len(), after);
}

#[test]
fn verify_reports_corrupt_and_incomplete_entries_and_repairs_them() {
    let repo = Repo::buildable();
    repo.ok(&["store", "build"]);
    let (code, report, stderr) = cache(&repo, &["verify"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(report["blobs"].as_u64().unwrap() > 0, "{report}");
    assert!(report["entries"].as_u64().unwrap() > 0, "{report}");

    let blobs = cas_blobs(&repo);
    rot(&blobs[0]);
    std::fs::write(blobs[1].with_file_name(".x.strata-tmp-1-2"), "half").unwrap();
    let (code, report, _) = cache(&repo, &["verify"]);
    assert_eq!(code, 1, "problems give exit code 1: {report}");
    assert_eq!(report["corrupt"].as_array().unwrap().len(), 1, "{report}");
    assert!(
        !report["incomplete"].as_array().unwrap().is_empty(),
        "the entries naming the corrupt blob were dropped: {report}"
    );
    assert_eq!(report["temp_files"], 1);
    assert!(!blobs[0].exists(), "the corrupt blob was discarded");

    // Repaired: clean now, and the next build makes what was dropped.
    let (code, report, _) = cache(&repo, &["verify"]);
    assert_eq!(code, 0, "{report}");
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    let (code, _, stderr) = repo.build_json(&[]);
    assert_eq!(code, 0, "{stderr}");
    let (code, report, _) = cache(&repo, &["verify"]);
    assert_eq!(code, 0, "{report}");
}

#[test]
fn gc_evicts_least_recently_used_entries_whole() {
    let repo = Repo::buildable();
    repo.ok(&["store", "build"]);
    // solo's entries are used again, later than the rest.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::remove_dir_all(repo.path().join(".out/solo")).unwrap();
    repo.ok(&["store", "build", "-s", "solo"]);

    let (code, report, stderr) = cache(&repo, &["gc", "--max-size", "10G"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["evicted_entries"], 0, "{report}");
    let total = report["before"].as_u64().unwrap();
    assert_eq!(report["after"].as_u64().unwrap(), total);

    // One byte under: the least recently used go, solo's stay.
    let limit = (total - 1).to_string();
    let (code, report, stderr) = cache(&repo, &["gc", "--max-size", &limit]);
    assert_eq!(code, 0, "{stderr}");
    assert!(report["evicted_entries"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["after"].as_u64().unwrap() < total, "{report}");
    let (code, report, _) = cache(&repo, &["verify"]);
    assert_eq!(code, 0, "every kept entry is whole: {report}");
    let scripts = repo.builds().len();
    std::fs::remove_dir_all(repo.path().join(".out")).unwrap();
    let (code, report, stderr) = repo.build_json(&["-s", "solo"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status(&report, "solo", MW, "build"), "restored");
    assert_eq!(repo.builds().len(), scripts, "solo was restored, not built");

    // Down to nothing: every entry goes, and builds run again.
    let (code, report, _) = cache(&repo, &["gc", "--max-size", "0"]);
    assert_eq!(code, 0);
    assert_eq!(report["after"], 0, "{report}");
    assert_eq!(report["kept_entries"], 0, "{report}");

    let out = repo.strata(&["cache", "gc", "--max-size", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-size \"lots\""));
}
