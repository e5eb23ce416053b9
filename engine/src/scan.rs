//! The scan: a parallel, gitignore-aware walk of a folder that yields every
//! input file with its digest.

use ignore::WalkBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::hash::{ContentHash, KeyHasher};
use crate::statcache::{StatCache, file_digest};

/// What an input path is. Folders are not entries: as in git, a folder
/// exists when a file inside it does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file; `executable` when any execute bit is set.
    File {
        /// Whether the file is executable.
        executable: bool,
    },
    /// A symbolic link, kept as a link.
    Symlink,
}

/// One input file found by a scan.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ScanEntry {
    /// The path relative to the scanned folder, with `/` separators.
    pub path: String,
    /// File or symlink.
    pub kind: EntryKind,
    /// The blake3 digest of the file's bytes, or of a symlink's target.
    pub digest: ContentHash,
    /// Where a symlink points, as written in the link.
    pub link_target: Option<PathBuf>,
}

/// The digest that names a symlink: its target text, in a domain of its own.
pub fn symlink_digest(target: &Path) -> ContentHash {
    KeyHasher::new("symlink")
        .field(target.as_os_str().as_encoded_bytes())
        .finish()
}

/// Every input file under `dir`, sorted by path. Files git would ignore
/// (`.gitignore` files in `dir` and its parents, `.git/info/exclude`) are
/// left out, as are `.git` folders and special files. A missing `dir` gives
/// no entries. With a `cache`, a file is looked up under `key_prefix` plus its
/// relative path and read only when its stat changed.
pub fn scan(dir: &Path, cache: Option<&StatCache>, key_prefix: &str) -> Result<Vec<ScanEntry>> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    }
    // Walk in this thread (a parallel walker's threads cost more than the
    // walk of a typical layer), then stat and hash in parallel.
    let mut found = Vec::new();
    for result in walker(dir).build() {
        let entry = match result {
            Ok(e) => e,
            // Deleted while we walked: it is simply not there any more.
            Err(e)
                if e.io_error()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) =>
            {
                continue;
            }
            // A folder strata may not read: the user's to fix.
            Err(e)
                if e.io_error()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied) =>
            {
                return Err(Error::Io {
                    path: dir.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        e.to_string(),
                    ),
                });
            }
            Err(e) => {
                return Err(Error::Walk {
                    path: dir.to_path_buf(),
                    message: e.to_string(),
                });
            }
        };
        if entry.file_type().is_some_and(|t| !t.is_dir()) {
            found.push(entry);
        }
    }
    let mut entries = found
        .par_iter()
        .filter_map(|entry| scan_entry(dir, entry, cache, key_prefix).transpose())
        .collect::<Result<Vec<_>>>()?;
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// The walker every scan uses: git's ignore rules only, hidden files
/// included, symlinks not followed. Inside a git repository, `.gitignore`
/// files above the repository's root do not apply (a `~/.gitignore` of a
/// home folder under version control must not empty a monorepo); outside
/// one, every parent's rules do.
pub fn walker(dir: &Path) -> WalkBuilder {
    let mut builder = WalkBuilder::new(dir);
    builder
        .standard_filters(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .parents(true)
        .require_git(git_root(dir).is_some())
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git");
    builder
}

/// The root of the git repository holding `dir` (the first folder upwards
/// with a `.git`), if any.
pub fn git_root(dir: &Path) -> Option<std::path::PathBuf> {
    let absolute = std::path::absolute(dir).ok()?;
    absolute
        .ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

fn scan_entry(
    root: &Path,
    entry: &ignore::DirEntry,
    cache: Option<&StatCache>,
    key_prefix: &str,
) -> Result<Option<ScanEntry>> {
    let Some(file_type) = entry.file_type() else {
        return Ok(None);
    };
    if file_type.is_dir() || !(file_type.is_file() || file_type.is_symlink()) {
        return Ok(None);
    }
    entry_at(
        root,
        entry.path(),
        file_type.is_symlink(),
        cache,
        key_prefix,
    )
}

/// The entry for the file or symlink at `path` under `root`, as a scan
/// finds it whether git ignores it or not; `None` when nothing is there
/// (or a folder, or a special file).
pub fn file_entry(
    root: &Path,
    path: &Path,
    cache: Option<&StatCache>,
    key_prefix: &str,
) -> Result<Option<ScanEntry>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() || m.file_type().is_symlink() => {
            entry_at(root, path, m.file_type().is_symlink(), cache, key_prefix)
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn entry_at(
    root: &Path,
    path: &Path,
    symlink: bool,
    cache: Option<&StatCache>,
    key_prefix: &str,
) -> Result<Option<ScanEntry>> {
    let rel = relative(root, path);
    if symlink {
        let target = match std::fs::read_link(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        return Ok(Some(ScanEntry {
            path: rel,
            kind: EntryKind::Symlink,
            digest: symlink_digest(&target),
            link_target: Some(target),
        }));
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // Deleted while we walked: it is simply not there any more.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let digest = match cache {
        Some(cache) => {
            let key = format!("{key_prefix}{rel}");
            cache.file_digest(&key, path, &meta)
        }
        None => file_digest(path),
    };
    let digest = match digest {
        Ok(d) => d,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok(Some(ScanEntry {
        path: rel,
        kind: EntryKind::File {
            executable: meta.permissions().mode() & 0o111 != 0,
        },
        digest,
        link_target: None,
    }))
}

/// `path` relative to `root`, with `/` separators; a name that is not
/// UTF-8 is carried losslessly ([`crate::name_str`]).
pub fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let mut out = String::new();
    for (i, part) in rel.components().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(&crate::names::name_str(part.as_os_str()));
    }
    out
}

/// Reads a whole file, naming the path on failure.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).at(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn scan_respects_gitignore_and_keeps_dotfiles() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("app/src")).unwrap();
        std::fs::create_dir_all(root.join("app/node_modules/x")).unwrap();
        std::fs::write(root.join(".gitignore"), "node_modules\n").unwrap();
        std::fs::write(root.join("app/.gitignore"), "*.log\n").unwrap();
        std::fs::write(root.join("app/src/a.ts"), "a").unwrap();
        std::fs::write(root.join("app/.env.example"), "X=1").unwrap();
        std::fs::write(root.join("app/debug.log"), "no").unwrap();
        std::fs::write(root.join("app/node_modules/x/i.js"), "no").unwrap();
        symlink("src/a.ts", root.join("app/link")).unwrap();
        let entries = scan(&root.join("app"), None, "").unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, [".env.example", ".gitignore", "link", "src/a.ts"]);
        assert_eq!(entries[2].kind, EntryKind::Symlink);
        assert_eq!(entries[3].digest, ContentHash::of(b"a"));
    }

    #[test]
    fn missing_folder_scans_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scan(&dir.path().join("nope"), None, "").unwrap().is_empty());
    }
}
