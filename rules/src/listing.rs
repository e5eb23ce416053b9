//! A layer's listing: the input files of one folder, checked for the rules
//! that concern a single layer (symlinks must stay inside the repository).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_engine::{ContentHash, EntryKind, KeyHasher, ScanEntry, StatCache, file_entry, scan};

use crate::error::{Error, Result};

/// The input files of one layer folder, sorted by path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The files.
    pub entries: Vec<ScanEntry>,
}

impl Listing {
    /// Scans the layer folder `dir` (relative to `root`): the files git
    /// does not ignore, and the `.env` files at its top, ignored or not
    /// (Alokai's local settings: see [`is_dotenv`]).
    pub fn scan(root: &Path, dir: &str, cache: Option<&StatCache>) -> Result<Listing> {
        Self::scan_with(root, dir, cache, true)
    }

    /// The layer folder as git sees it: without the `.env` files git
    /// ignores (what `store changed` compares with a commit).
    pub fn scan_as_git(root: &Path, dir: &str) -> Result<Listing> {
        Self::scan_with(root, dir, None, false)
    }

    fn scan_with(
        root: &Path,
        dir: &str,
        cache: Option<&StatCache>,
        dotenv: bool,
    ) -> Result<Listing> {
        let prefix = format!("{dir}/");
        let mut entries = scan(&root.join(dir), cache, &prefix)?;
        for entry in &entries {
            if let Some(target) = &entry.link_target {
                check_symlink(root, dir, &entry.path, target)?;
            }
        }
        if dotenv {
            let ignored = ignored_dotenv(&root.join(dir), &entries, cache, &prefix)?;
            if !ignored.is_empty() {
                entries.extend(ignored);
                entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
            }
        }
        Ok(Listing { entries })
    }

    /// The hash of every (path, kind, digest): equal listings, equal hashes.
    pub fn digest(&self) -> ContentHash {
        let mut hasher = KeyHasher::new("listing/v1");
        for e in &self.entries {
            hasher.str(&e.path);
            hasher.u64(kind_tag(e.kind));
            hasher.hash(&e.digest);
        }
        hasher.finish()
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&ScanEntry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// Whether a file at the top of an app folder is a `.env` file, composed
/// even when git ignores it: Alokai's guides keep local settings in
/// git-ignored `.env` files (`apps/storefront-middleware/.env` for every
/// store, `apps/stores/<id>/storefront-middleware/.env` for one), and
/// frameworks read them from the app's folder (`.env`, `.env.local`,
/// `.env.development`, `.env.production.local`…). They never go into
/// `.deploy` or an image.
pub fn is_dotenv(name: &str) -> bool {
    name == ".env" || name.starts_with(".env.")
}

/// The names of the regular `.env` files at the top of `dir`.
pub(crate) fn dotenv_files(dir: &Path) -> Result<Vec<String>> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut names = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(name) = entry.file_name().to_str()
            && is_dotenv(name)
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The regular `.env` files at the top of `dir` that the walk left out
/// (git ignores them), with their digests.
fn ignored_dotenv(
    dir: &Path,
    found: &[ScanEntry],
    cache: Option<&StatCache>,
    prefix: &str,
) -> Result<Vec<ScanEntry>> {
    let mut out = Vec::new();
    for name in dotenv_files(dir)? {
        if found
            .binary_search_by(|e| e.path.as_str().cmp(name.as_str()))
            .is_ok()
        {
            continue;
        }
        // Regular files only (gone meanwhile: not there).
        if let Some(entry) = file_entry(dir, &dir.join(&name), cache, prefix)?
            && matches!(entry.kind, EntryKind::File { .. })
        {
            out.push(entry);
        }
    }
    Ok(out)
}

/// A number for each kind of entry, for hashing.
pub fn kind_tag(kind: EntryKind) -> u64 {
    match kind {
        EntryKind::File { executable: false } => 0,
        EntryKind::File { executable: true } => 1,
        EntryKind::Symlink => 2,
    }
}

pub(crate) fn check_symlink(root: &Path, dir: &str, path: &str, target: &Path) -> Result<()> {
    let link = Path::new(dir).join(strata_engine::fs_path(path));
    let resolved = if target.is_absolute() {
        match target.strip_prefix(root) {
            Ok(inside) => normalize(inside),
            // An absolute link may name the root through another spelling
            // (a symlinked temp folder): compare canonical forms too.
            Err(_) => match (root.canonicalize(), target.canonicalize()) {
                (Ok(r), Ok(t)) => t.strip_prefix(&r).ok().and_then(normalize),
                _ => None,
            },
        }
    } else {
        normalize(&link.parent().unwrap_or(Path::new("")).join(target))
    };
    // The text may stay inside while the path it names leaves through
    // another link on the way (`up -> ../..`, then `up/../../etc/passwd`):
    // where it really lands is checked too. A link that resolves nowhere
    // (dangling, a loop) is copied as it is.
    let escapes_for_real = || {
        let (Ok(root), Some(dir)) = (
            root.canonicalize(),
            root.join(&link).parent().map(Path::to_path_buf),
        ) else {
            return false;
        };
        let Ok(dir) = dir.canonicalize() else {
            return false;
        };
        real_path(&dir, target).is_some_and(|real| !real.starts_with(root))
    };
    if resolved.is_none() || escapes_for_real() {
        return Err(Error::SymlinkEscapes {
            link,
            target: target.to_path_buf(),
        });
    }
    Ok(())
}

/// Where `target`, read from the real folder `dir`, lands: links along the
/// way are followed (a part that does not exist is taken as it is), `..`
/// goes up from where a link led. `None` for a loop (40 links deep).
fn real_path(dir: &Path, target: &Path) -> Option<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = Vec::new();
    let mut cur = if target.is_absolute() {
        PathBuf::from("/")
    } else {
        dir.to_path_buf()
    };
    let push_parts = |pending: &mut Vec<std::ffi::OsString>, path: &Path| {
        for part in path.components().rev() {
            match part {
                Component::Normal(p) => pending.push(p.to_os_string()),
                Component::ParentDir => pending.push("..".into()),
                _ => {}
            }
        }
    };
    push_parts(&mut pending, target);
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            cur.pop();
            continue;
        }
        cur.push(&part);
        if let Ok(next) = std::fs::read_link(&cur) {
            hops += 1;
            if hops > 40 {
                return None;
            }
            cur.pop();
            if next.is_absolute() {
                cur = PathBuf::from("/");
            }
            push_parts(&mut pending, &next);
        }
    }
    Some(cur)
}

/// `path` with `.` and `..` resolved lexically, or `None` when it climbs
/// above its start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_inside_pass_and_outside_fail() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("apps/a/src")).unwrap();
        std::fs::write(root.join("apps/a/src/x"), "x").unwrap();
        symlink("x", root.join("apps/a/src/ok")).unwrap();
        symlink("../../../README.md", root.join("apps/a/src/up")).unwrap();
        assert_eq!(
            Listing::scan(root, "apps/a", None).unwrap().entries.len(),
            3
        );
        symlink("../../../../etc/passwd", root.join("apps/a/src/bad")).unwrap();
        let err = Listing::scan(root, "apps/a", None).unwrap_err();
        assert!(matches!(err, Error::SymlinkEscapes { .. }), "{err}");
        assert!(err.to_string().contains("apps/a/src/bad"));
        std::fs::remove_file(root.join("apps/a/src/bad")).unwrap();
        symlink("/etc/passwd", root.join("apps/a/src/abs")).unwrap();
        assert!(Listing::scan(root, "apps/a", None).is_err());
        std::fs::remove_file(root.join("apps/a/src/abs")).unwrap();
        // Out through another link: the text stays inside, the path leaves.
        symlink("../..", root.join("apps/a/src/upup")).unwrap();
        symlink("upup/../../../etc/passwd", root.join("apps/a/src/through")).unwrap();
        let err = Listing::scan(root, "apps/a", None).unwrap_err();
        assert!(err.to_string().contains("apps/a/src/through"), "{err}");
        std::fs::remove_file(root.join("apps/a/src/through")).unwrap();
        // Loops and dangling links resolve nowhere: copied as they are.
        symlink("loop2", root.join("apps/a/src/loop1")).unwrap();
        symlink("loop1", root.join("apps/a/src/loop2")).unwrap();
        symlink("missing", root.join("apps/a/src/dangling")).unwrap();
        assert!(Listing::scan(root, "apps/a", None).is_ok());
    }
}
