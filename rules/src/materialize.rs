//! Materialization: making `.out/<store>/<app>` hold exactly a composition,
//! writing only what differs from what is recorded as already there.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use strata_engine::{
    ContentHash, DirHandle, EntryKind, Fingerprint, IoContext, TempName, copy_atomic, file_digest,
    symlink_atomic, write_atomic,
};

use crate::compose::{Composed, Composition, Source};
use crate::error::{Error, Result};
use crate::sources::{Content, SourceCache};

/// Names at the top of an app's output folder that belong to the tools
/// (builds, `.deploy` preparation, installs) and are never removed, ignored
/// by git or not; `.env*` files there are left alone too.
pub const TOOL_OWNED: &[&str] = &[".deploy", ".strata-build.log", "node_modules"];

/// What is recorded of a materialized app folder: every file written, with
/// its stat, and every folder, so that a later run can tell in one `stat`
/// per path whether someone else changed it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutRecord {
    /// The composition that is on disk.
    pub composition: ContentHash,
    /// Its digest with `package.json` as the base app has it.
    pub shared: ContentHash,
    /// The files, sorted by path.
    pub files: Vec<OutFile>,
    /// The folders (`""` is the app folder itself), sorted by path.
    pub dirs: Vec<OutDir>,
    /// What the run that made this record did.
    pub counts: Counts,
    /// A source changed while it was copied: what is written is not the
    /// composition, and the next run must look again.
    pub stale: bool,
}

/// A file in the output folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutFile {
    /// Relative to the app's output folder.
    pub path: String,
    /// File or symlink.
    pub kind: EntryKind,
    /// The digest of what was written.
    pub digest: ContentHash,
    /// Its stat after writing.
    pub fingerprint: Fingerprint,
}

/// A folder in the output folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutDir {
    /// Relative to the app's output folder.
    pub path: String,
    /// Modification time: it changes when an entry is added or removed.
    pub mtime_ns: i64,
    /// Inode number.
    pub ino: u64,
}

/// What a materialization did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Files in the composition.
    pub files: usize,
    /// Files written because the composition changed.
    pub written: usize,
    /// Files rewritten because something else had changed them.
    pub restored: usize,
    /// Files and folders removed.
    pub removed: usize,
}

/// Whether the folder still holds what `record` says: one `stat` per file
/// and folder, in parallel, each relative to its open folder.
///
/// A folder whose listing changed is read: entries that git ignores or
/// that tools own (a build's `.next/`) do not make the record stale, unless
/// `strays` says nothing but the composition may be there.
pub fn still_valid(root: &Path, out_dir: &Path, record: &OutRecord, strays: Strays) -> bool {
    if record.stale {
        return false;
    }
    let mut by_dir: HashMap<&str, Vec<&OutFile>> = HashMap::with_capacity(record.dirs.len());
    for f in &record.files {
        let dir = f.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        by_dir.entry(dir).or_default().push(f);
    }
    if by_dir.keys().any(|d| {
        record
            .dirs
            .binary_search_by(|r| r.path.as_str().cmp(d))
            .is_err()
    }) {
        return false;
    }
    record.dirs.par_iter().all(|d| {
        let Ok(handle) = DirHandle::open(&join(out_dir, &d.path)) else {
            return false;
        };
        let Ok(own) = handle.fingerprint() else {
            return false;
        };
        if own.ino != d.ino {
            return false;
        }
        if own.mtime_ns != d.mtime_ns && !only_ignored_added(root, out_dir, record, &d.path, strays)
        {
            return false;
        }
        by_dir.get(d.path.as_str()).is_none_or(|files| {
            files.iter().all(|f| {
                let name = f.path.rsplit('/').next().unwrap_or(&f.path);
                handle.entry(name).is_ok_and(|fp| fp == f.fingerprint)
            })
        })
    })
}

/// Whether every entry of folder `dir` that `record` does not know is one
/// that materialization would leave alone.
fn only_ignored_added(
    root: &Path,
    out_dir: &Path,
    record: &OutRecord,
    dir: &str,
    strays: Strays,
) -> bool {
    if strays == Strays::RemoveAll {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(join(out_dir, dir)) else {
        return false;
    };
    let mut ignore: Option<OutIgnore> = None;
    for entry in entries.flatten() {
        let name = strata_engine::name_str(&entry.file_name()).into_owned();
        let rel = if dir.is_empty() {
            name.clone()
        } else {
            format!("{dir}/{name}")
        };
        let known = record
            .files
            .binary_search_by(|f| f.path.as_str().cmp(&rel))
            .is_ok()
            || record
                .dirs
                .binary_search_by(|d| d.path.as_str().cmp(&rel))
                .is_ok();
        if known
            || (dir.is_empty() && (TOOL_OWNED.contains(&name.as_str()) || name.starts_with(".env")))
        {
            continue;
        }
        if TempName::is_temp(&name) {
            return false;
        }
        let ignore = ignore.get_or_insert_with(|| {
            OutIgnore::new(
                root,
                out_dir,
                record
                    .files
                    .iter()
                    .map(|f| (f.path.clone(), join(out_dir, &f.path))),
            )
        });
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !ignore.is_ignored(&rel, is_dir) {
            return false;
        }
    }
    true
}

/// What a materialization does with files it did not write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strays {
    /// Leave what git ignores and what tools own (an app's `.out` folder,
    /// where builds write).
    KeepIgnored,
    /// Remove everything that is not in the composition (`.deploy`).
    RemoveAll,
}

/// Makes `out_dir` hold exactly `composition`, whose layer folders are
/// relative to `root`. `prior` is what the last run recorded.
pub fn materialize(
    root: &Path,
    out_dir: &Path,
    composition: &Composition,
    prior: Option<&OutRecord>,
    sources: &SourceCache,
    strays: Strays,
) -> Result<OutRecord> {
    let parent = out_dir.parent().expect("an app folder has a parent");
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    remove_interrupted_builds(out_dir)?;
    // The app folder must be a real folder: anything else in its place
    // (a symlink someone made) is removed, never written through.
    if std::fs::symlink_metadata(out_dir).is_ok_and(|m| !m.is_dir()) {
        remove(out_dir)?;
    }
    match std::fs::symlink_metadata(out_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fresh(root, out_dir, composition, sources)
        }
        Err(e) => Err(Error::io(out_dir, e)),
        Ok(_) => update(root, out_dir, composition, prior, sources, strays),
    }
}

/// Writes a whole app folder under a temporary name, then renames it into
/// place: one rename makes the folder appear complete, and no per-file
/// temporary is needed.
fn fresh(
    root: &Path,
    out_dir: &Path,
    composition: &Composition,
    sources: &SourceCache,
) -> Result<OutRecord> {
    let tmp = TempName::beside(out_dir);
    let dirs = folders(composition);
    for dir in &dirs {
        let path = join(&tmp, dir);
        std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
    }
    // Renaming the folder changes no file's stat, so what each write's
    // fstat says is what the record keeps.
    let written: Result<Vec<(Fingerprint, ContentHash)>> = composition
        .entries
        .par_iter()
        .map(|e| write_direct(root, composition, e, &join(&tmp, &e.path), sources))
        .collect();
    let fingerprints = match written {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out_dir).map_err(|e| Error::io(out_dir, e))?;
    let counts = Counts {
        files: composition.entries.len(),
        written: composition.entries.len(),
        ..Counts::default()
    };
    let stale = composition
        .entries
        .iter()
        .zip(&fingerprints)
        .any(|(e, (_, actual))| *actual != e.digest);
    let files = composition
        .entries
        .iter()
        .zip(fingerprints)
        .map(|(e, (fingerprint, digest))| OutFile {
            path: e.path.clone(),
            kind: e.kind,
            digest,
            fingerprint,
        })
        .collect();
    Ok(OutRecord {
        composition: composition.digest,
        shared: composition.shared,
        files,
        dirs: dir_records(out_dir, &dirs)?,
        counts,
        stale,
    })
}

/// Brings an existing app folder to the composition.
fn update(
    root: &Path,
    out_dir: &Path,
    composition: &Composition,
    prior: Option<&OutRecord>,
    sources: &SourceCache,
    strays: Strays,
) -> Result<OutRecord> {
    let empty = OutRecord::default();
    let prior = prior.unwrap_or(&empty);
    let prior_files: HashMap<&str, &OutFile> =
        prior.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let wanted_files: HashSet<&str> = composition
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    let dirs = folders(composition);
    let wanted_dirs: HashSet<&str> = dirs.iter().map(String::as_str).collect();
    let mut counts = Counts {
        files: composition.entries.len(),
        ..Counts::default()
    };

    // A wanted folder must be a real folder: a symlink or a file in its
    // place goes first, so that nothing is read or written through it.
    for d in dirs.iter().filter(|d| !d.is_empty()) {
        let path = join(out_dir, d);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) && remove(&path)? {
            counts.removed += 1;
        }
    }

    let ignore = match strays {
        Strays::KeepIgnored => Some(OutIgnore::new(
            root,
            out_dir,
            composition.entries.iter().filter_map(|e| {
                composition
                    .source_path(root, e)
                    .map(|src| (e.path.clone(), src))
            }),
        )),
        Strays::RemoveAll => None,
    };

    // Files that left the composition, then folders left empty.
    for f in &prior.files {
        if !wanted_files.contains(f.path.as_str()) && remove(&join(out_dir, &f.path))? {
            counts.removed += 1;
        }
    }
    for d in prior.dirs.iter().rev() {
        if !wanted_dirs.contains(d.path.as_str()) {
            // Strays there go; what is left is ignored (build outputs) and
            // keeps the folder.
            counts.removed += remove_strays(
                out_dir,
                &d.path,
                &wanted_files,
                &wanted_dirs,
                ignore.as_ref(),
            )?;
            let _ = std::fs::remove_dir(join(out_dir, &d.path));
        }
    }

    // Entries nobody recorded in folders whose listing changed: leftovers
    // of an interrupted run, or files someone else put there.
    let prior_dirs: HashMap<&str, &OutDir> =
        prior.dirs.iter().map(|d| (d.path.as_str(), d)).collect();
    let changed_dirs: Vec<&String> = dirs
        .iter()
        .filter(|d| {
            let unchanged = prior_dirs.get(d.as_str()).is_some_and(|rec| {
                std::fs::symlink_metadata(join(out_dir, d))
                    .map(|m| dir_matches(rec, &m))
                    .unwrap_or(false)
            });
            !unchanged
        })
        .collect();
    if !changed_dirs.is_empty() {
        for dir in changed_dirs {
            counts.removed +=
                remove_strays(out_dir, dir, &wanted_files, &wanted_dirs, ignore.as_ref())?;
        }
    }

    // Write what differs; keep the stat of what is in place.
    #[derive(Clone, Copy)]
    enum Done {
        InPlace,
        Restored,
        Written,
    }
    let outcomes: Vec<Result<(Done, Fingerprint, ContentHash)>> = composition
        .entries
        .par_iter()
        .map(|e| {
            let path = join(out_dir, &e.path);
            let prior = prior_files.get(e.path.as_str()).copied();
            let on_disk = Fingerprint::at(&path).ok();
            let in_place = match (prior, on_disk) {
                (Some(p), Some(fp)) if p.fingerprint == fp => {
                    p.digest == e.digest && p.kind == e.kind && mode_ok(&fp, e)
                }
                (_, Some(fp)) => holds(&path, &fp, e),
                (_, None) => false,
            };
            if let (true, Some(fp)) = (in_place, on_disk) {
                return Ok((Done::InPlace, fp, e.digest));
            }
            let actual = write_replacing(root, composition, e, &path, sources)?;
            let done = if prior.is_some_and(|p| p.digest == e.digest && p.kind == e.kind) {
                Done::Restored
            } else {
                Done::Written
            };
            Ok((done, Fingerprint::at(&path).at(&path)?, actual))
        })
        .collect();
    let mut files = Vec::with_capacity(composition.entries.len());
    let mut stale = false;
    for (e, outcome) in composition.entries.iter().zip(outcomes) {
        let (done, fingerprint, digest) = outcome?;
        match done {
            Done::InPlace => {}
            Done::Restored => counts.restored += 1,
            Done::Written => counts.written += 1,
        }
        stale |= digest != e.digest;
        files.push(OutFile {
            path: e.path.clone(),
            kind: e.kind,
            digest,
            fingerprint,
        });
    }
    Ok(OutRecord {
        composition: composition.digest,
        shared: composition.shared,
        files,
        dirs: dir_records(out_dir, &dirs)?,
        counts,
        stale,
    })
}

fn dir_records(out_dir: &Path, dirs: &[String]) -> Result<Vec<OutDir>> {
    dirs.par_iter()
        .map(|d| {
            let path = join(out_dir, d);
            let meta = std::fs::symlink_metadata(&path).at(&path)?;
            Ok(OutDir {
                path: d.clone(),
                mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                ino: meta.ino(),
            })
        })
        .collect()
}

/// Every folder that holds a composed file, `""` (the app folder) first,
/// sorted so that parents come before children.
fn folders(composition: &Composition) -> Vec<String> {
    let mut set: HashSet<&str> = HashSet::new();
    set.insert("");
    for e in &composition.entries {
        let mut p = e.path.as_str();
        while let Some(slash) = p.rfind('/') {
            p = &p[..slash];
            if !set.insert(p) {
                break;
            }
        }
    }
    let mut dirs: Vec<String> = set.into_iter().map(str::to_string).collect();
    dirs.sort();
    dirs
}

fn dir_matches(rec: &OutDir, meta: &std::fs::Metadata) -> bool {
    meta.mtime() * 1_000_000_000 + meta.mtime_nsec() == rec.mtime_ns && meta.ino() == rec.ino
}

fn join(base: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(strata_engine::fs_path(rel))
    }
}

/// Whether the file at `path` (whose stat is `fp`) already holds `entry`.
pub(crate) fn holds(path: &Path, fp: &Fingerprint, entry: &Composed) -> bool {
    let file_type = fp.mode & libc_s_ifmt();
    match entry.kind {
        EntryKind::Symlink => {
            file_type == S_IFLNK
                && std::fs::read_link(path).ok().as_deref() == entry.link_target.as_deref()
        }
        EntryKind::File { executable } => {
            file_type == S_IFREG
                && ((fp.mode & 0o111 != 0) == executable)
                && mode_ok(fp, entry)
                && file_digest(path).is_ok_and(|d| d == entry.digest)
        }
    }
}

/// A `.env` file others can read is rewritten for its owner alone.
fn mode_ok(fp: &Fingerprint, entry: &Composed) -> bool {
    !private(entry) || fp.mode & 0o077 == 0
}

const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const fn libc_s_ifmt() -> u32 {
    0o170000
}

/// Writes an entry into a folder being built (no one else sees it yet) and
/// returns its stat.
fn write_direct(
    root: &Path,
    composition: &Composition,
    entry: &Composed,
    path: &Path,
    sources: &SourceCache,
) -> Result<(Fingerprint, ContentHash)> {
    let EntryKind::File { executable } = entry.kind else {
        let target = entry.link_target.as_deref().unwrap_or(Path::new(""));
        std::os::unix::fs::symlink(target, path).at(path)?;
        return Ok((Fingerprint::at(path).at(path)?, entry.digest));
    };
    let mut file = create(path, executable, private(entry))?;
    let actual = match composition.source_path(root, entry) {
        None => {
            if let Source::Generated(bytes) = &entry.source {
                file.write_all(bytes).at(path)?;
            }
            entry.digest
        }
        Some(src) => match sources.content(&src, entry.digest)? {
            Content::Bytes(bytes, actual) => {
                file.write_all(&bytes).at(path)?;
                actual
            }
            Content::Copy => {
                let mut from = std::fs::File::open(&src).at(&src)?;
                std::io::copy(&mut from, &mut file).at(path)?;
                file_digest(path)?
            }
        },
    };
    Ok((Fingerprint::of(&file.metadata().at(path)?), actual))
}

/// Whether an entry is a `.env` file at the top of the app: written for
/// its owner's eyes only, as it may hold secrets.
fn private(entry: &Composed) -> bool {
    crate::listing::is_dotenv(&entry.path)
}

fn create(path: &Path, executable: bool, private: bool) -> Result<std::fs::File> {
    let mode = match (private, executable) {
        (true, true) => 0o700,
        (true, false) => 0o600,
        (false, true) => 0o777,
        (false, false) => 0o666,
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Replaces whatever is at `path` with the entry, atomically. Returns the
/// digest of what was written (the source may have changed since it was
/// scanned).
pub(crate) fn write_replacing(
    root: &Path,
    composition: &Composition,
    entry: &Composed,
    path: &Path,
    sources: &SourceCache,
) -> Result<ContentHash> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.is_dir() {
            std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e))?;
        }
    } else if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    Ok(match (&entry.kind, &entry.source) {
        (EntryKind::Symlink, _) => {
            let target = entry.link_target.as_deref().unwrap_or(Path::new(""));
            symlink_atomic(target, path)?;
            entry.digest
        }
        (EntryKind::File { executable }, Source::Generated(bytes)) => {
            write_atomic(path, bytes, *executable)?;
            entry.digest
        }
        (EntryKind::File { executable }, _) if private(entry) => {
            let src = composition
                .source_path(root, entry)
                .expect("a file entry that is not generated has a source");
            let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
            strata_engine::write_atomic_private(path, &bytes, *executable)?;
            ContentHash::of(&bytes)
        }
        (EntryKind::File { executable }, _) => {
            let src = composition
                .source_path(root, entry)
                .expect("a file entry that is not generated has a source");
            match sources.content(&src, entry.digest)? {
                Content::Bytes(bytes, actual) => {
                    write_atomic(path, &bytes, *executable)?;
                    actual
                }
                Content::Copy => {
                    copy_atomic(&src, path, *executable)?;
                    file_digest(path)?
                }
            }
        }
    })
}

/// Removes a file, symlink or folder; false when nothing was there.
pub(crate) fn remove(path: &Path) -> Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(path, e)),
    };
    let result = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Removes the temporary folders of fresh writes that were interrupted.
fn remove_interrupted_builds(out_dir: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (out_dir.parent(), out_dir.file_name()) else {
        return Ok(());
    };
    let prefix = format!(".{}{}", name.to_string_lossy(), TempName::MARKER);
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

fn remove_strays(
    out_dir: &Path,
    dir: &str,
    files: &HashSet<&str>,
    dirs: &HashSet<&str>,
    ignore: Option<&OutIgnore>,
) -> Result<usize> {
    let path = join(out_dir, dir);
    let entries = match std::fs::read_dir(&path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&path, e))?;
        let name = strata_engine::name_str(&entry.file_name()).into_owned();
        let rel = if dir.is_empty() {
            name.clone()
        } else {
            format!("{dir}/{name}")
        };
        if TempName::is_temp(&name) {
            removed += usize::from(remove(&entry.path())?);
            continue;
        }
        if files.contains(rel.as_str()) || dirs.contains(rel.as_str()) {
            continue;
        }
        let Some(ignore) = ignore else {
            removed += usize::from(remove(&entry.path())?);
            continue;
        };
        // Tools' folders, and `.env*` files someone put beside the app (a
        // CI's secrets): not ours to remove.
        if dir.is_empty() && (TOOL_OWNED.contains(&name.as_str()) || name.starts_with(".env")) {
            continue;
        }
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !ignore.is_ignored(&rel, is_dir) {
            removed += usize::from(remove(&entry.path())?);
        }
    }
    Ok(removed)
}

/// Git's ignore rules as they apply inside an app's output folder: the
/// composed `.gitignore` files, plus the repository root's rules.
struct OutIgnore {
    /// (folder relative to the app, its rules), deepest folders first.
    rules: Vec<(String, Gitignore)>,
}

impl OutIgnore {
    /// The rules of the `.gitignore` files among `files` (each its path
    /// relative to the app's output folder, and where its text is read:
    /// the composition's source, so that the new rules apply) and of the
    /// repository's root.
    fn new(
        root: &Path,
        out_dir: &Path,
        files: impl Iterator<Item = (String, PathBuf)>,
    ) -> OutIgnore {
        let mut rules = Vec::new();
        for (path, text) in files {
            let name = path.rsplit('/').next().unwrap_or(&path);
            if name == ".gitignore" {
                let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                let mut builder = GitignoreBuilder::new(join(out_dir, dir));
                builder.add(text);
                if let Ok(gi) = builder.build() {
                    rules.push((dir.to_string(), gi));
                }
            }
        }
        let mut builder = GitignoreBuilder::new(out_dir);
        builder.add(root.join(".gitignore"));
        builder.add(root.join(".git/info/exclude"));
        // When the monorepo is a folder of a larger repository, its root's
        // rules count too.
        if let Some(git_root) = strata_engine::git_root(root).filter(|g| g != root) {
            builder.add(git_root.join(".gitignore"));
            builder.add(git_root.join(".git/info/exclude"));
        }
        if let Ok(gi) = builder.build() {
            rules.push((String::new(), gi));
        }
        rules.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        OutIgnore { rules }
    }

    fn is_ignored(&self, rel: &str, is_dir: bool) -> bool {
        for (dir, gi) in &self.rules {
            let inside = dir.is_empty() || rel.starts_with(&format!("{dir}/"));
            if !inside {
                continue;
            }
            let sub = if dir.is_empty() {
                rel
            } else {
                &rel[dir.len() + 1..]
            };
            match gi.matched(sub, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }
}
