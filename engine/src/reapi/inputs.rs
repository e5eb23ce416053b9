//! An action's input files: folders read into REAPI entries (SHA-256 of
//! each file, kept by path with its `stat` so that an unchanged file is not
//! read again), and the folders a server is known to hold in full, so that
//! a second run sends nothing it sent before.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Digest;
use super::tree::Entry;
use crate::db::Tree;
use crate::error::{Error, Result};
use crate::statcache::Fingerprint;

#[derive(Serialize, Deserialize)]
struct Memo {
    fingerprint: Fingerprint,
    sha256: String,
}

/// Files read into entries, with where each blob is on disk.
#[derive(Default)]
pub struct Files {
    /// Entries by path (relative to the tree's top).
    pub entries: BTreeMap<String, Entry>,
    /// Each file blob's path on disk, by SHA-256.
    pub blobs: HashMap<String, PathBuf>,
    /// Blobs held in memory rather than on disk, by SHA-256.
    pub inline: HashMap<String, Vec<u8>>,
}

impl Files {
    /// Adds `other`'s entries.
    pub fn extend(&mut self, other: Files) {
        self.entries.extend(other.entries);
        self.blobs.extend(other.blobs);
        self.inline.extend(other.inline);
    }
}

/// SHA-256 digests of files, remembered with their `stat`.
pub struct Hasher {
    memo: Tree,
    started: SystemTime,
}

impl Hasher {
    /// A hasher remembering digests in `memo`.
    pub fn new(memo: Tree) -> Hasher {
        Hasher {
            memo,
            started: SystemTime::now(),
        }
    }

    /// The digest of the regular file at `path` (absolute), read only when
    /// its `stat` changed since it was last read.
    pub fn digest(&self, path: &Path, meta: &std::fs::Metadata) -> Result<Digest> {
        let fingerprint = Fingerprint::of(meta);
        let key = path.as_os_str().as_encoded_bytes();
        if let Some(bytes) = self.memo.get(key)?
            && let Ok(memo) = postcard::from_bytes::<Memo>(&bytes)
            && memo.fingerprint == fingerprint
            && !fingerprint.is_racy(self.started)
        {
            return Ok(Digest {
                hash: memo.sha256,
                size_bytes: fingerprint.size as i64,
            });
        }
        let sha256 = crate::remote::file_sha256(path)?;
        // Read again: a file written while it was hashed is not kept.
        let after = Fingerprint::at(path).map_err(|e| Error::io(path, e))?;
        if after != fingerprint {
            return Err(Error::Changed {
                what: path.display().to_string(),
            });
        }
        if !fingerprint.is_racy(self.started) {
            let memo = Memo {
                fingerprint,
                sha256: sha256.clone(),
            };
            self.memo.insert(
                key,
                &postcard::to_stdvec(&memo).expect("a memo always encodes"),
            )?;
        }
        Ok(Digest {
            hash: sha256,
            size_bytes: fingerprint.size as i64,
        })
    }

    /// Adds the regular file at `path`, whose metadata is `meta`, to
    /// `files` as `rel`.
    pub fn add_file(
        &self,
        files: &mut Files,
        rel: String,
        path: PathBuf,
        meta: &std::fs::Metadata,
    ) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let digest = self.digest(&path, meta)?;
        files.blobs.insert(digest.hash.clone(), path);
        files.entries.insert(
            rel,
            Entry::File {
                digest,
                executable: meta.permissions().mode() & 0o111 != 0,
            },
        );
        Ok(())
    }

    /// Every file and symlink under `dir` (links not followed; other kinds
    /// of file left out), with paths `prefix/…` (or relative to `dir` when
    /// `prefix` is empty), less those `skip` names (given the relative
    /// path under `dir`).
    pub fn folder(
        &self,
        dir: &Path,
        prefix: &str,
        skip: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Files> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            names.push(entry.file_name());
        }
        let parts: Vec<Result<Files>> = names
            .par_iter()
            .map(|name| {
                let name_str = name.to_str().ok_or_else(|| Error::Walk {
                    path: dir.join(name),
                    message: "a name that is not UTF-8 has no REAPI form".into(),
                })?;
                let rel = if prefix.is_empty() {
                    name_str.to_string()
                } else {
                    format!("{prefix}/{name_str}")
                };
                let mut files = Files::default();
                if skip(&rel) {
                    return Ok(files);
                }
                let path = dir.join(name);
                let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
                let kind = meta.file_type();
                if kind.is_symlink() {
                    let target = std::fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
                    let target = target.to_str().ok_or_else(|| Error::Walk {
                        path: path.clone(),
                        message: "a link target that is not UTF-8 has no REAPI form".into(),
                    })?;
                    files.entries.insert(
                        rel,
                        Entry::Symlink {
                            target: target.to_string(),
                        },
                    );
                } else if kind.is_dir() {
                    files.extend(self.folder(&path, &rel, skip)?);
                } else if kind.is_file() {
                    self.add_file(&mut files, rel, path, &meta)?;
                }
                Ok(files)
            })
            .collect();
        let mut all = Files::default();
        for part in parts {
            all.extend(part?);
        }
        Ok(all)
    }
}

/// Folders a server holds in full (every blob below them), by server and
/// digest: a folder found here is not asked about again.
pub struct Held {
    tree: Tree,
    server: String,
    /// Bumped by [`Held::forget`]: what was found before it is not
    /// recorded after it.
    generation: std::sync::atomic::AtomicU64,
}

impl Held {
    /// The record of `server` (its address and instance) in `tree`.
    pub fn new(tree: Tree, server: &str) -> Held {
        Held {
            tree,
            server: server.to_string(),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn key(&self, digest: &Digest) -> Vec<u8> {
        format!("{}\0{}", self.server, digest.hash).into_bytes()
    }

    /// Whether the server was found to hold all of the folder `digest`.
    pub fn holds(&self, digest: &Digest) -> Result<bool> {
        Ok(self.tree.get(&self.key(digest))?.is_some())
    }

    /// The generation of the record, to give back to [`Held::record`].
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records that the server holds all of the folder `digest`, found
    /// while the record was at `generation`: nothing is recorded when it
    /// was forgotten since (what was found held then may be gone).
    pub fn record(&self, digest: &Digest, generation: u64) -> Result<()> {
        if self.generation() == generation {
            self.tree.insert(&self.key(digest), &[])?;
        }
        Ok(())
    }

    /// Forgets what the server was found to hold (it lost blobs).
    pub fn forget(&self) -> Result<()> {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let prefix = format!("{}\0", self.server);
        for key in self.tree.keys_with_prefix(prefix.as_bytes())? {
            self.tree.remove(&key)?;
        }
        Ok(())
    }
}
