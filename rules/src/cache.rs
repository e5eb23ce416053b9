//! `strata cache verify` and `strata cache gc`: the state folder checked
//! end to end, and the build-output store kept under a size.
//!
//! The state folder holds the database (`db/`), the build outputs by blake3
//! digest (`cas/`) with one manifest per build key in the `builds` tree,
//! and an OCI layout (`oci/`) of every image built or pulled. A blob whose
//! bytes do not match its name is discarded (the next build or deploy makes
//! it again); a build entry that names a missing blob is dropped (a miss,
//! never a broken restore).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use strata_engine::{Cas, ContentHash, EntryKind, TempName, Tree};

use crate::build::OutputFile;
use crate::error::{Error, Result};

/// The `builds-v2` tree: build key → manifest of outputs.
pub const BUILDS: &str = "builds-v2";
/// Trees of build entries made by earlier versions of strata, whose outputs
/// lack the `node_modules/` folders builds write inside output folders
/// (`builds`, before v2). They are never restored; `cache verify` reports
/// and removes them.
pub const LEGACY_BUILDS: &[&str] = &["builds"];
/// The `build-used` tree: build key → when it was last restored or made
/// (milliseconds since the epoch, big-endian).
pub const BUILD_USED: &str = "build-used";

/// Records that the build entry `key` was used now.
pub fn touch(used: &Tree, key: &ContentHash) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    used.insert(&key.0, &now.to_be_bytes())?;
    Ok(())
}

/// What `cache verify` found (and repaired).
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Build-output blobs read and checked.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs whose content did not match their digest (removed).
    pub corrupt: Vec<String>,
    /// Leftovers of interrupted writes (removed).
    pub temp_files: usize,
    /// Build entries checked.
    pub entries: usize,
    /// Entries that named a missing blob or could not be read (removed: the
    /// next build runs again).
    pub incomplete: Vec<String>,
    /// Build entries made by an earlier strata, whose outputs lack the
    /// `node_modules/` folders builds write inside output folders (removed:
    /// they were never restored, and those builds run again).
    pub outdated: usize,
    /// OCI layout blobs read and checked.
    pub layout_blobs: usize,
    /// Their bytes.
    pub layout_bytes: u64,
    /// Images in the layout's index whose manifest, config or layers are
    /// missing or corrupt.
    pub broken_images: Vec<String>,
}

impl VerifyReport {
    /// Whether anything was wrong.
    pub fn found_problems(&self) -> bool {
        !self.corrupt.is_empty() || !self.incomplete.is_empty() || !self.broken_images.is_empty()
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "build outputs: {} blobs ({}) checked, {} entries",
            self.blobs,
            human(self.bytes),
            self.entries
        )?;
        writeln!(
            f,
            "OCI layout: {} blobs ({}) checked",
            self.layout_blobs,
            human(self.layout_bytes)
        )?;
        for c in &self.corrupt {
            writeln!(f, "corrupt, discarded: {c}")?;
        }
        for i in &self.incomplete {
            writeln!(
                f,
                "incomplete build entry, dropped (it will build again): {i}"
            )?;
        }
        if self.outdated > 0 {
            writeln!(
                f,
                "{} build {} made by an earlier strata, without the node_modules/ folders builds write inside their outputs (an image from them would not start): removed; rebuild those stores (the next build or deploy runs them again)",
                self.outdated,
                if self.outdated == 1 {
                    "entry"
                } else {
                    "entries"
                }
            )?;
        }
        for b in &self.broken_images {
            writeln!(f, "broken image: {b}")?;
        }
        if self.temp_files > 0 {
            writeln!(
                f,
                "removed {} leftovers of interrupted writes",
                self.temp_files
            )?;
        }
        if self.found_problems() {
            writeln!(
                f,
                "problems were found; what was discarded is made again by the next build or deploy"
            )
        } else {
            writeln!(f, "everything is intact")
        }
    }
}

/// Every file of a store folder `<dir>/<2 hex>/<rest>` (or flat, for the
/// layout), with temporary leftovers removed and counted.
fn blob_files(dir: &Path, nested: bool, temp_files: &mut usize) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if TempName::is_temp(&name) {
            let _ = std::fs::remove_file(&path);
            *temp_files += 1;
            continue;
        }
        let is_dir = entry.file_type().map_err(|e| Error::io(&path, e))?.is_dir();
        if nested && is_dir {
            for inner in std::fs::read_dir(&path).map_err(|e| Error::io(&path, e))? {
                let inner = inner.map_err(|e| Error::io(&path, e))?;
                let rest = inner.file_name().to_string_lossy().into_owned();
                if TempName::is_temp(&rest) {
                    let _ = std::fs::remove_file(inner.path());
                    *temp_files += 1;
                    continue;
                }
                out.push((inner.path(), format!("{name}{rest}")));
            }
        } else if !nested && !is_dir {
            out.push((path, name));
        }
    }
    Ok(out)
}

/// Checks every blob and entry of the state folder `state_dir` whose build
/// entries are in `builds`; removes what is corrupt or incomplete, and the
/// entries of earlier versions in `legacy` (the trees of [`LEGACY_BUILDS`]).
pub fn verify(
    state_dir: &Path,
    builds: &Tree,
    used: &Tree,
    legacy: &[Tree],
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for tree in legacy {
        for (key, _) in tree.entries()? {
            tree.remove(&key)?;
            used.remove(&key)?;
            report.outdated += 1;
        }
    }
    let cas = Cas::new(state_dir.join("cas"));
    let files = blob_files(cas.dir(), true, &mut report.temp_files)?;
    let checked: Vec<(String, u64, bool)> = files
        .par_iter()
        .map(|(path, hex)| {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let good = match hex.parse::<ContentHash>() {
                Ok(digest) => cas.check(&digest)?.unwrap_or(true),
                Err(_) => {
                    // Not a blob name at all: not ours to keep.
                    let _ = std::fs::remove_file(path);
                    false
                }
            };
            Ok((path.display().to_string(), size, good))
        })
        .collect::<Result<_>>()?;
    for (path, size, good) in checked {
        report.blobs += 1;
        report.bytes += size;
        if !good {
            report.corrupt.push(path);
        }
    }
    for (key, value) in builds.entries()? {
        report.entries += 1;
        let complete = postcard::from_bytes::<Vec<OutputFile>>(&value).is_ok_and(|outputs| {
            outputs
                .iter()
                .all(|o| o.kind == EntryKind::Symlink || cas.contains(&o.digest))
        });
        if !complete {
            builds.remove(&key)?;
            used.remove(&key)?;
            report.incomplete.push(hex(&key));
        }
    }
    verify_layout(&state_dir.join("oci"), &mut report)?;
    Ok(report)
}

fn verify_layout(dir: &Path, report: &mut VerifyReport) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    let files = blob_files(&blobs, false, &mut report.temp_files)?;
    let checked: Vec<(String, u64, bool)> = files
        .par_iter()
        .map(|(path, name)| {
            let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let mut hasher = Sha256::new();
            std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
            let good = format!("{:x}", hasher.finalize()) == *name;
            if !good {
                let _ = std::fs::remove_file(path);
            }
            Ok((path.display().to_string(), size, good))
        })
        .collect::<Result<_>>()?;
    for (path, size, good) in checked {
        report.layout_blobs += 1;
        report.layout_bytes += size;
        if !good {
            report.corrupt.push(path);
        }
    }
    // Every image the index names must be whole.
    let index = dir.join("index.json");
    let Ok(bytes) = std::fs::read(&index) else {
        return Ok(());
    };
    let Ok(index) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        report
            .broken_images
            .push(format!("{}: not valid JSON", index.display()));
        return Ok(());
    };
    let present = |digest: &str| {
        digest
            .strip_prefix("sha256:")
            .is_some_and(|hex| blobs.join(hex).is_file())
    };
    for entry in index["manifests"].as_array().into_iter().flatten() {
        let name = entry["annotations"][crate::oci::layout::REF_NAME]
            .as_str()
            .unwrap_or("(untagged)");
        let digest = entry["digest"].as_str().unwrap_or("");
        let manifest = digest
            .strip_prefix("sha256:")
            .and_then(|hex| std::fs::read(blobs.join(hex)).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let Some(manifest) = manifest else {
            report
                .broken_images
                .push(format!("{name}: manifest {digest} is missing"));
            continue;
        };
        let mut missing: Vec<String> = Vec::new();
        let config = manifest["config"]["digest"].as_str();
        for d in config.into_iter().chain(
            manifest["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["digest"].as_str()),
        ) {
            if !present(d) {
                missing.push(d.to_string());
            }
        }
        if !missing.is_empty() {
            report.broken_images.push(format!(
                "{name}: blobs missing: {} (deploy it again to rebuild them)",
                missing.join(", ")
            ));
        }
    }
    Ok(())
}

/// What `cache gc` did.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Build-output bytes before.
    pub before: u64,
    /// And after.
    pub after: u64,
    /// The limit asked for.
    pub max_size: u64,
    /// Build entries evicted, least recently used first.
    pub evicted_entries: usize,
    /// Build entries kept.
    pub kept_entries: usize,
    /// Blobs removed (evicted entries' and orphans').
    pub removed_blobs: usize,
    /// The OCI layout's size (not collected: it is the local registry).
    pub layout_bytes: u64,
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "build outputs: {} -> {} (limit {}): evicted {} least recently used entries, kept {}, removed {} blobs",
            human(self.before),
            human(self.after),
            human(self.max_size),
            self.evicted_entries,
            self.kept_entries,
            self.removed_blobs
        )?;
        writeln!(
            f,
            "OCI layout: {} (images are not collected; delete tags from it to free them)",
            human(self.layout_bytes)
        )
    }
}

/// Evicts build entries, least recently used first, until the build-output
/// store holds at most `max_size` bytes. An entry goes with the blobs only
/// it used; no kept entry loses a blob. Blobs no entry names go first.
pub fn gc(state_dir: &Path, builds: &Tree, used: &Tree, max_size: u64) -> Result<GcReport> {
    let cas = Cas::new(state_dir.join("cas"));
    let mut temp_files = 0;
    let files = blob_files(cas.dir(), true, &mut temp_files)?;
    let mut sizes: HashMap<ContentHash, u64> = HashMap::new();
    for (path, hex) in &files {
        let Ok(digest) = hex.parse::<ContentHash>() else {
            continue;
        };
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        sizes.insert(digest, size);
    }
    let mut report = GcReport {
        before: sizes.values().sum(),
        max_size,
        ..GcReport::default()
    };
    // Each entry's blobs, and how many entries hold each blob.
    let mut entries: Vec<(u64, Vec<u8>, HashSet<ContentHash>)> = Vec::new();
    let mut holders: HashMap<ContentHash, usize> = HashMap::new();
    for (key, value) in builds.entries()? {
        let Ok(outputs) = postcard::from_bytes::<Vec<OutputFile>>(&value) else {
            builds.remove(&key)?;
            continue;
        };
        let blobs: HashSet<ContentHash> = outputs
            .iter()
            .filter(|o| o.kind != EntryKind::Symlink)
            .map(|o| o.digest)
            .collect();
        for b in &blobs {
            *holders.entry(*b).or_default() += 1;
        }
        let last = used
            .get(&key)?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        entries.push((last, key, blobs));
    }
    let mut total = report.before;
    let orphans: Vec<ContentHash> = sizes
        .keys()
        .filter(|d| !holders.contains_key(d))
        .copied()
        .collect();
    let mut removed = 0;
    let mut remove = |digest: &ContentHash, total: &mut u64| {
        if let Some(size) = sizes.remove(digest) {
            let _ = std::fs::remove_file(cas.path(digest));
            *total -= size;
            removed += 1;
        }
    };
    for d in &orphans {
        remove(d, &mut total);
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut evicted = 0;
    for (_, key, blobs) in &entries {
        if total <= max_size {
            break;
        }
        // The entry goes first: a crash from here on leaves blobs no entry
        // names (removed by the next gc), never an entry missing a blob.
        builds.remove(key)?;
        used.remove(key)?;
        evicted += 1;
        for b in blobs {
            let n = holders.get_mut(b).expect("counted above");
            *n -= 1;
            if *n == 0 {
                remove(b, &mut total);
            }
        }
    }
    report.removed_blobs = removed;
    report.evicted_entries = evicted;
    report.kept_entries = entries.len() - evicted;
    report.after = total;
    report.layout_bytes = dir_size(&state_dir.join("oci"));
    Ok(report)
}

fn dir_size(dir: &Path) -> u64 {
    walkdir_size(dir).unwrap_or(0)
}

fn walkdir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            walkdir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `12.3 MB`-style sizes.
pub fn human(bytes: u64) -> String {
    bytesize::ByteSize(bytes).to_string()
}

/// Parses a size such as `500M`, `10GiB` or `1073741824`.
pub fn parse_size(text: &str) -> Result<u64> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| Error::Usage {
            message: format!("--max-size {text:?}: {e} (say e.g. 500M, 10G or 2GiB)"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_engine::Db;

    /// Regression (issue 12): entries of the first key scheme lack the
    /// `node_modules/` inside build outputs; verify reports and removes
    /// them, and keeps the current ones.
    #[test]
    fn verify_reports_and_removes_entries_of_earlier_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open(&tmp.path().join("db")).unwrap();
        let builds = db.tree(BUILDS).unwrap();
        let used = db.tree(BUILD_USED).unwrap();
        let legacy = db.tree(LEGACY_BUILDS[0]).unwrap();
        let empty = postcard::to_stdvec(&Vec::<OutputFile>::new()).unwrap();
        legacy.insert(b"old-key-1", &empty).unwrap();
        legacy.insert(b"old-key-2", &empty).unwrap();
        used.insert(b"old-key-1", &1u64.to_be_bytes()).unwrap();
        builds.insert(b"new-key", &empty).unwrap();
        let report = verify(tmp.path(), &builds, &used, std::slice::from_ref(&legacy)).unwrap();
        assert_eq!(report.outdated, 2);
        assert_eq!(report.entries, 1);
        // Entries of an earlier version are not damage: no failure.
        assert!(!report.found_problems());
        let text = report.to_string();
        assert!(
            text.contains("2 build entries made by an earlier strata") && text.contains("rebuild"),
            "{text}"
        );
        assert!(legacy.entries().unwrap().is_empty());
        assert!(used.get(b"old-key-1").unwrap().is_none());
        assert!(builds.get(b"new-key").unwrap().is_some());
        let again = verify(tmp.path(), &builds, &used, &[legacy]).unwrap();
        assert_eq!(again.outdated, 0);
    }
}
