//! The scan: a parallel, gitignore-aware walk of a folder that yields every
//! input file with its digest.

use ignore::WalkBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::hash::{ContentHash, KeyHasher};
use crate::statcache::{DirHandle, Fingerprint, FolderCache, StatCache, file_digest};

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
    // walk of a typical layer), then stat and hash: each file through a
    // handle on its folder (no lookup of the whole path), the folders of a
    // large layer in parallel.
    let dir = &std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    let found = walk(dir)?;
    let count: usize = found.iter().map(|(_, files)| files.len()).sum();
    let folder = cache.map(|c| c.folder(key_prefix)).transpose()?;
    let read =
        |(parent, files): &(PathBuf, Vec<Found>)| read_folder(dir, parent, files, folder.as_ref());
    // A small layer is read in this thread, not handed to the pool.
    let read: Vec<Vec<(ScanEntry, Option<Fingerprint>)>> = if count < 256 {
        found.iter().map(read).collect::<Result<_>>()?
    } else {
        found.par_iter().map(read).collect::<Result<_>>()?
    };
    let read: Vec<(ScanEntry, Option<Fingerprint>)> = read.into_iter().flatten().collect();
    if let Some(folder) = &folder {
        folder.save(
            read.iter()
                .filter_map(|(e, fp)| fp.map(|fp| (e.path.as_str(), fp, e.digest))),
        )?;
    }
    let mut entries: Vec<ScanEntry> = read.into_iter().map(|(e, _)| e).collect();
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// A file or symlink a walk found: its name, and whether it is a symlink.
type Found = (std::ffi::OsString, bool);

/// The files and symlinks under `dir` that git does not ignore, by folder:
/// what [`walker`] yields, found with one read of each folder and each
/// `.gitignore` compiled once per process (and again when it changes).
fn walk(dir: &Path) -> Result<Vec<(PathBuf, Vec<Found>)>> {
    // The rules of the folders above: up to the repository's top inside
    // one (rules above it do not apply), every parent's outside one. As in
    // the watch's walker (the `ignore` crate's), a folder holding a `.git`
    // stops the rules from above only inside a repository.
    let top = git_root(dir);
    let in_git = top.is_some();
    let mut above = Vec::new();
    if top.as_deref() != Some(dir) {
        for ancestor in dir.ancestors().skip(1) {
            let has_git = in_git && ancestor.join(".git").exists();
            above.push(Level::read(ancestor, has_git, true)?);
            if has_git {
                break;
            }
        }
    }
    above.reverse();
    let mut out = Vec::new();
    // Folders to read, each with the rules of the folders above it.
    let mut pending: Vec<(PathBuf, Vec<Arc<Level>>)> =
        vec![(dir.to_path_buf(), above.into_iter().map(Arc::new).collect())];
    while let Some((folder, levels)) = pending.pop() {
        let read = match std::fs::read_dir(&folder) {
            Ok(r) => r,
            // Deleted while we walked: it is simply not there any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&folder, e)),
        };
        let mut names = Vec::new();
        for entry in read {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&folder, e)),
            };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            names.push((entry.file_name(), kind));
        }
        let has_git = in_git && names.iter().any(|(n, _)| n == ".git");
        let has_gitignore = names.iter().any(|(n, t)| n == ".gitignore" && !t.is_dir());
        let mut levels = levels;
        if has_git || has_gitignore {
            levels.push(Arc::new(Level::read(&folder, has_git, has_gitignore)?));
        }
        let mut files = Vec::new();
        for (name, kind) in names {
            if name == ".git" {
                continue;
            }
            let path = folder.join(&name);
            let is_dir = kind.is_dir();
            if ignored(&levels, &path, is_dir) {
                continue;
            }
            if is_dir {
                pending.push((path, levels.clone()));
            } else if kind.is_file() || kind.is_symlink() {
                files.push((name, kind.is_symlink()));
            }
        }
        if !files.is_empty() {
            out.push((folder, files));
        }
    }
    Ok(out)
}

/// The ignore rules of one folder: its `.gitignore`, and the repository's
/// `.git/info/exclude` when the folder is a repository's top.
struct Level {
    gitignore: Option<Arc<Gitignore>>,
    exclude: Option<Arc<Gitignore>>,
    has_git: bool,
}

impl Level {
    fn read(folder: &Path, has_git: bool, look: bool) -> Result<Level> {
        Ok(Level {
            gitignore: if look {
                compiled(folder, &folder.join(".gitignore"))?
            } else {
                None
            },
            exclude: match has_git.then(|| git_dir(folder)).flatten() {
                Some(dir) => compiled(folder, &dir.join("info/exclude"))?,
                None => None,
            },
            has_git,
        })
    }
}

/// The repository folder of the working tree at `folder`: its `.git`
/// folder, or, when `.git` is a file (a linked worktree's, a submodule's),
/// the folder it names, or that folder's common one (where a worktree's
/// `info/exclude` lives).
fn git_dir(folder: &Path) -> Option<PathBuf> {
    let dot_git = folder.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let named = text.lines().next()?.strip_prefix("gitdir:")?.trim();
    let dir = folder.join(named);
    match std::fs::read_to_string(dir.join("commondir")) {
        Ok(common) => Some(dir.join(common.trim())),
        Err(_) => Some(dir),
    }
}

/// Whether git ignores `path`: the deepest folder's rule that matches it
/// decides, `.gitignore` files before the repository's exclude file, and
/// no rule above the top of the repository holding it counts.
fn ignored(levels: &[Arc<Level>], path: &Path, is_dir: bool) -> bool {
    let mut exclude = ignore::Match::None;
    for level in levels.iter().rev() {
        if let Some(g) = &level.gitignore {
            match g.matched(path, is_dir) {
                ignore::Match::Ignore(_) => return true,
                ignore::Match::Whitelist(_) => return false,
                ignore::Match::None => {}
            }
        }
        if exclude.is_none()
            && let Some(g) = &level.exclude
        {
            exclude = g.matched(path, is_dir).map(|_| ());
        }
        if level.has_git {
            break;
        }
    }
    exclude.is_ignore()
}

/// The rules of the ignore file at `file` (for paths under `folder`; a
/// symlink is followed, as the watch's walker does), compiled once per
/// process while the file's stat is unchanged; none when there is no such
/// file. A file that cannot be read is an error naming it: its rules
/// would be missing from the scan.
fn compiled(folder: &Path, file: &Path) -> Result<Option<Arc<Gitignore>>> {
    /// Compiled rules by file, with the file's stat when compiled.
    type Compiled = HashMap<PathBuf, (Fingerprint, Arc<Gitignore>)>;
    static COMPILED: LazyLock<Mutex<Compiled>> = LazyLock::new(Mutex::default);
    let fingerprint = match std::fs::metadata(file) {
        Ok(meta) if meta.is_file() => Fingerprint::of(&meta),
        Ok(_) => return Ok(None),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(Error::io(file, e)),
    };
    if let Some((fp, g)) = COMPILED.lock().unwrap().get(file)
        && *fp == fingerprint
    {
        return Ok(Some(g.clone()));
    }
    // Readable, or the error that says why not.
    std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let mut builder = GitignoreBuilder::new(folder);
    let walk_error = |message: String| Error::Walk {
        path: file.to_path_buf(),
        message,
    };
    if let Some(e) = builder.add(file) {
        return Err(walk_error(e.to_string()));
    }
    let gitignore = Arc::new(builder.build().map_err(|e| walk_error(e.to_string()))?);
    // A file changed within the last second may change again unseen.
    if !fingerprint.is_racy(std::time::SystemTime::now()) {
        COMPILED
            .lock()
            .unwrap()
            .insert(file.to_path_buf(), (fingerprint, gitignore.clone()));
    }
    Ok(Some(gitignore))
}

/// The entries of one folder `parent` of the scan of `root`, each file
/// with its stat; those gone since the walk are left out.
fn read_folder(
    root: &Path,
    parent: &Path,
    files: &[Found],
    folder: Option<&FolderCache<'_>>,
) -> Result<Vec<(ScanEntry, Option<Fingerprint>)>> {
    let handle = match DirHandle::open(parent) {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(parent, e)),
    };
    let mut out = Vec::with_capacity(files.len());
    for (name, symlink) in files {
        let path = &parent.join(name);
        if *symlink {
            if let Some(e) = entry_at(root, path, true, None, "")? {
                out.push((e, None));
            }
            continue;
        }
        let fingerprint = match handle.entry_os(name) {
            Ok(fp) => fp,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        // Something else took its place since the walk.
        if fingerprint.mode & 0o170000 != 0o100000 {
            continue;
        }
        let rel = relative(root, path);
        let digest = match folder {
            Some(folder) => folder.digest(&rel, path, &fingerprint),
            None => file_digest(path),
        };
        let digest = match digest {
            Ok(d) => d,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                continue;
            }
            Err(e) => return Err(e),
        };
        out.push((
            ScanEntry {
                path: rel,
                kind: EntryKind::File {
                    executable: fingerprint.mode & 0o111 != 0,
                },
                digest,
                link_target: None,
            },
            Some(fingerprint),
        ));
    }
    Ok(out)
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

    /// What `walker` yields under `dir` (files and symlinks, relative).
    fn walked_by_ignore(dir: &Path) -> std::collections::BTreeSet<String> {
        walker(dir)
            .build()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_some_and(|t| !t.is_dir()))
            .map(|e| relative(dir, e.path()))
            .collect()
    }

    fn walked(dir: &Path) -> std::collections::BTreeSet<String> {
        let dir = std::path::absolute(dir).unwrap();
        walk(&dir)
            .unwrap()
            .into_iter()
            .flat_map(|(folder, files)| {
                files
                    .into_iter()
                    .map(|(name, _)| relative(&dir, &folder.join(name)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    use proptest::prelude::*;

    /// Ignore rules of every shape the scans meet: globs, anchors,
    /// folders only, negations, double stars, comments.
    const PATTERNS: &[&str] = &[
        "*.log",
        "!keep.log",
        "build/",
        "/a",
        "node_modules",
        "b/*.txt",
        "!b/",
        ".h*",
        "**/deep",
        "x.log",
        "a/",
        "# a comment",
        "",
        "!a",
        "*",
        "!*.txt",
        "/b/",
        "a/**/c",
        "\\!bang",
        "c",
        "!c/",
        "deep/",
        "**/b",
        "?.txt",
    ];
    const NAMES: &[&str] = &[
        "a",
        "b",
        "c",
        "deep",
        "build",
        "node_modules",
        ".h",
        ".hidden",
        "x.log",
        "keep.log",
        "k.txt",
        "!bang",
        ".env",
    ];

    /// A tree: folders (paths of names), files in them, `.gitignore`
    /// contents by folder, whether its top is a repository (with an exclude
    /// file), rules in the folder above its top, a folder that is a
    /// repository of its own, and whether the top is a linked worktree (its
    /// `.git` a file naming the repository folder, the exclude file in the
    /// common one) with a symlinked `.gitignore`.
    #[allow(clippy::type_complexity)]
    fn trees() -> impl Strategy<
        Value = (
            Vec<Vec<usize>>,
            Vec<(usize, usize)>,
            Vec<(usize, Vec<usize>)>,
            Option<Vec<usize>>,
            Vec<usize>,
            Option<usize>,
            bool,
        ),
    > {
        (
            prop::collection::vec(prop::collection::vec(0..NAMES.len(), 1..4), 1..8),
            prop::collection::vec((0..9usize, 0..NAMES.len()), 0..20),
            prop::collection::vec(
                (0..9usize, prop::collection::vec(0..PATTERNS.len(), 0..5)),
                0..5,
            ),
            prop::option::of(prop::collection::vec(0..PATTERNS.len(), 0..3)),
            prop::collection::vec(0..PATTERNS.len(), 0..3),
            prop::option::of(1..9usize),
            any::<bool>(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// The scan's own walk finds exactly what the `ignore` crate's
        /// walker (the watch's) finds, for the top and a folder inside.
        #[test]
        fn the_walk_agrees_with_the_ignore_walker(
            (dirs, files, ignores, repo, outer, nested, worktree) in trees()
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let top = tmp.path().join("top");
            std::fs::create_dir_all(&top).unwrap();
            let mut folders = vec![top.clone()];
            for d in &dirs {
                let mut path = top.clone();
                for n in d {
                    path.push(NAMES[*n]);
                }
                // A name taken by a file stays a file.
                if std::fs::create_dir_all(&path).is_ok() {
                    folders.push(path);
                }
            }
            for (f, n) in &files {
                let folder = &folders[f % folders.len()];
                let _ = std::fs::write(folder.join(NAMES[*n]), "x");
            }
            for (f, lines) in &ignores {
                let folder = &folders[f % folders.len()];
                let text: Vec<&str> = lines.iter().map(|l| PATTERNS[*l]).collect();
                let _ = std::fs::write(folder.join(".gitignore"), text.join("\n"));
            }
            if let Some(lines) = &repo {
                let text: Vec<&str> = lines.iter().map(|l| PATTERNS[*l]).collect();
                if worktree {
                    let common = tmp.path().join("main.git");
                    let own = common.join("worktrees/top");
                    std::fs::create_dir_all(common.join("info")).unwrap();
                    std::fs::create_dir_all(&own).unwrap();
                    std::fs::write(common.join("info/exclude"), text.join("\n")).unwrap();
                    std::fs::write(own.join("commondir"), "../..\n").unwrap();
                    // As git writes it: an absolute path.
                    std::fs::write(top.join(".git"), format!("gitdir: {}\n", own.display()))
                        .unwrap();
                } else {
                    std::fs::create_dir_all(top.join(".git/info")).unwrap();
                    std::fs::write(top.join(".git/info/exclude"), text.join("\n")).unwrap();
                }
            }
            if worktree && !top.join(".gitignore").exists() {
                std::fs::write(tmp.path().join("rules"), "k.txt\n").unwrap();
                std::os::unix::fs::symlink("../rules", top.join(".gitignore")).unwrap();
            }
            let text: Vec<&str> = outer.iter().map(|l| PATTERNS[*l]).collect();
            std::fs::write(tmp.path().join(".gitignore"), text.join("\n")).unwrap();
            if let Some(f) = nested {
                let _ = std::fs::create_dir_all(folders[f % folders.len()].join(".git"));
            }
            for dir in [top.clone(), top.join("a"), top.join("b").join("c")] {
                if dir.is_dir() {
                    prop_assert_eq!(walked(&dir), walked_by_ignore(&dir), "{}", dir.display());
                }
            }
        }
    }

    #[test]
    fn missing_folder_scans_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scan(&dir.path().join("nope"), None, "").unwrap().is_empty());
    }
}
