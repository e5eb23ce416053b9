//! Snapshots of a monorepo as git sees it: a commit's tree, or the working
//! tree. Files are named by their git blob id and mode, so the two compare.

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Tree};

use crate::config::{CONFIG_FILE, Config};
use crate::error::{Error, Result};
use crate::workspace::{Folders, Workspace};

/// A file as git records it: blob id and mode (`0o100644`, `0o100755`,
/// `0o120000` for a symlink).
pub type GitEntry = (Oid, u32);

/// One side of a comparison.
pub trait Snapshot: Folders {
    /// The file at `path` (relative to the monorepo's root), if there is one.
    fn entry(&self, path: &str) -> Result<Option<GitEntry>>;
    /// The bytes of the file at `path`.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>>;
    /// Every file under `dir`, with paths relative to `dir`.
    fn list(&self, dir: &str) -> Result<Vec<(String, GitEntry)>>;
    /// How to name this side in messages.
    fn describe(&self) -> String;
}

/// The workspace model of a snapshot.
pub fn workspace(root: &Path, snapshot: &dyn Snapshot) -> Result<Workspace> {
    let path = root.join(CONFIG_FILE);
    let Some(bytes) = snapshot.read(CONFIG_FILE)? else {
        return Err(Error::ConfigMissing { path });
    };
    let text = String::from_utf8_lossy(&bytes);
    let config = Config::parse(
        &PathBuf::from(format!("{CONFIG_FILE} at {}", snapshot.describe())),
        &text,
    )?;
    Workspace::from_folders(root, config, snapshot)
}

fn git_error(what: &str, e: git2::Error) -> Error {
    Error::Git {
        message: format!("{what}: {}", e.message()),
    }
}

/// A commit's tree, seen from the monorepo's root (which may be a folder
/// inside the repository).
pub struct CommitSnapshot<'r> {
    repo: &'r Repository,
    tree: Tree<'r>,
    prefix: String,
    name: String,
}

impl<'r> CommitSnapshot<'r> {
    /// The tree of `commit`; `prefix` is the monorepo's root relative to the
    /// repository's (empty, or ending in `/`).
    pub fn new(repo: &'r Repository, commit: &git2::Commit<'r>, prefix: &str) -> Result<Self> {
        let tree = commit
            .tree()
            .map_err(|e| git_error("reading a commit's tree", e))?;
        Ok(CommitSnapshot {
            repo,
            tree,
            prefix: prefix.to_string(),
            name: commit.id().to_string()[..12].to_string(),
        })
    }

    fn object(&self, path: &str) -> Option<git2::TreeEntry<'static>> {
        let full = format!("{}{path}", self.prefix);
        let full = full.trim_end_matches('/');
        if full.is_empty() {
            return None;
        }
        self.tree.get_path(&strata_engine::fs_path(full)).ok()
    }
}

/// The UTF-8 (or escaped, as compose escapes it) name of a tree entry.
fn entry_name(e: &git2::TreeEntry<'_>) -> String {
    use std::os::unix::ffi::OsStrExt;
    strata_engine::name_str(std::ffi::OsStr::from_bytes(e.name_bytes())).into_owned()
}

/// Every blob under `tree`, as `prefix` + its path.
fn blobs(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    prefix: &str,
    out: &mut Vec<(String, GitEntry)>,
) -> Result<()> {
    for e in tree.iter() {
        let name = entry_name(&e);
        match e.kind() {
            Some(ObjectType::Blob) => {
                out.push((format!("{prefix}{name}"), (e.id(), e.filemode() as u32)));
            }
            Some(ObjectType::Tree) => {
                let sub = repo
                    .find_tree(e.id())
                    .map_err(|err| git_error(&format!("{prefix}{name}"), err))?;
                blobs(repo, &sub, &format!("{prefix}{name}/"), out)?;
            }
            _ => {}
        }
    }
    Ok(())
}

impl Folders for CommitSnapshot<'_> {
    fn subfolders(&self, dir: &str) -> Result<Option<Vec<String>>> {
        let Some(entry) = self.object(dir) else {
            return Ok(None);
        };
        if entry.kind() != Some(ObjectType::Tree) {
            return Ok(None);
        }
        let tree = self
            .repo
            .find_tree(entry.id())
            .map_err(|e| git_error(dir, e))?;
        let mut names: Vec<String> = tree
            .iter()
            .filter(|e| e.kind() == Some(ObjectType::Tree))
            .map(|e| entry_name(&e))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(Some(names))
    }
}

impl Snapshot for CommitSnapshot<'_> {
    fn entry(&self, path: &str) -> Result<Option<GitEntry>> {
        Ok(self
            .object(path)
            .filter(|e| e.kind() == Some(ObjectType::Blob))
            .map(|e| (e.id(), e.filemode() as u32)))
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let Some((id, _)) = self.entry(path)? else {
            return Ok(None);
        };
        let blob = self.repo.find_blob(id).map_err(|e| git_error(path, e))?;
        Ok(Some(blob.content().to_vec()))
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, GitEntry)>> {
        let Some(entry) = self.object(dir) else {
            return Ok(Vec::new());
        };
        if entry.kind() != Some(ObjectType::Tree) {
            return Ok(Vec::new());
        }
        let tree = self
            .repo
            .find_tree(entry.id())
            .map_err(|e| git_error(dir, e))?;
        // Not `Tree::walk`: it stops at a folder whose name is not UTF-8.
        let mut out = Vec::new();
        blobs(self.repo, &tree, "", &mut out)?;
        Ok(out)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// The working tree: files on disk that git does not ignore.
pub struct WorkSnapshot {
    root: PathBuf,
}

impl WorkSnapshot {
    /// The working tree under the monorepo's root.
    pub fn new(root: &Path) -> Self {
        WorkSnapshot {
            root: root.to_path_buf(),
        }
    }
}

impl Folders for WorkSnapshot {
    fn subfolders(&self, dir: &str) -> Result<Option<Vec<String>>> {
        crate::workspace::FileSystem(&self.root).subfolders(dir)
    }
}

/// The git entry of a file on disk.
fn disk_entry(path: &Path) -> Result<Option<GitEntry>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).map_err(|e| Error::io(path, e))?;
        let id = Oid::hash_object(ObjectType::Blob, target.as_os_str().as_encoded_bytes())
            .map_err(|e| git_error("hashing a link", e))?;
        return Ok(Some((id, 0o120000)));
    }
    if !meta.is_file() {
        return Ok(None);
    }
    let id = Oid::hash_file(ObjectType::Blob, path).map_err(|e| git_error("hashing a file", e))?;
    let mode = if meta.permissions().mode() & 0o111 != 0 {
        0o100755
    } else {
        0o100644
    };
    Ok(Some((id, mode)))
}

impl Snapshot for WorkSnapshot {
    fn entry(&self, path: &str) -> Result<Option<GitEntry>> {
        disk_entry(&self.root.join(strata_engine::fs_path(path)))
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let full = self.root.join(strata_engine::fs_path(path));
        match std::fs::read(&full) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&full, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, GitEntry)>> {
        let listing = crate::listing::Listing::scan_as_git(&self.root, dir)?;
        let mut out = Vec::new();
        for e in listing.entries {
            if let Some(entry) =
                disk_entry(&self.root.join(dir).join(strata_engine::fs_path(&e.path)))?
            {
                out.push((e.path, entry));
            }
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        "the working tree".into()
    }
}
