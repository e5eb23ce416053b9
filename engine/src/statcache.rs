//! The stat cache: a file whose size, times and inode are unchanged since it
//! was last hashed is not read again.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::db::Tree;
use crate::error::{IoContext, Result};
use crate::hash::ContentHash;

/// What `stat` says of a file: enough to tell that it changed without
/// reading it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, in nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// File type and permission bits.
    pub mode: u32,
}

impl Fingerprint {
    /// The fingerprint of `meta` (from `symlink_metadata`).
    pub fn of(meta: &Metadata) -> Self {
        Fingerprint {
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
            mode: meta.mode(),
        }
    }

    /// The fingerprint of the file at `path`, without following a symlink.
    pub fn at(path: &Path) -> io::Result<Self> {
        Ok(Self::of(&std::fs::symlink_metadata(path)?))
    }

    // The stat fields' integer types differ between platforms.
    #[allow(clippy::unnecessary_cast)]
    fn of_stat(st: &rustix::fs::Stat) -> Self {
        Fingerprint {
            size: st.st_size as u64,
            mtime_ns: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
            ctime_ns: st.st_ctime as i64 * 1_000_000_000 + st.st_ctime_nsec as i64,
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
        }
    }

    /// True when a change made now could leave this fingerprint unchanged:
    /// the file was modified so recently that a second write within the
    /// file system's timestamp granularity would keep its times. Such an
    /// entry is never trusted (git calls this "racy clean").
    pub fn is_racy(&self, now: SystemTime) -> bool {
        let now_ns = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos() as i64;
        self.mtime_ns.max(self.ctime_ns) > now_ns - RACY_WINDOW_NS
    }
}

/// How recent a change must be for its fingerprint to be distrusted. One
/// second covers every common file system's timestamp granularity.
const RACY_WINDOW_NS: i64 = 1_000_000_000;

/// An open folder, to stat many entries of it without resolving the whole
/// path each time (checking 55k files is mostly path lookups otherwise).
pub struct DirHandle {
    fd: std::os::fd::OwnedFd,
}

impl DirHandle {
    /// Opens the folder at `path` (not following a final symlink).
    pub fn open(path: &Path) -> io::Result<DirHandle> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(DirHandle { fd })
    }

    /// The folder's own fingerprint.
    pub fn fingerprint(&self) -> io::Result<Fingerprint> {
        Ok(Fingerprint::of_stat(&rustix::fs::fstat(&self.fd)?))
    }

    /// The fingerprint of the entry `name` in the folder (a name as
    /// [`crate::name_str`] gives it), not following a symlink.
    pub fn entry(&self, name: &str) -> io::Result<Fingerprint> {
        self.entry_os(crate::names::fs_path(name).as_os_str())
    }

    /// The fingerprint of the entry named `name` in the folder, not
    /// following a symlink.
    pub fn entry_os(&self, name: &std::ffi::OsStr) -> io::Result<Fingerprint> {
        let st = rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(Fingerprint::of_stat(&st))
    }
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    fingerprint: Fingerprint,
    digest: ContentHash,
}

/// Digests of files, keyed by a caller-chosen name (a path relative to the
/// repository, so that the cache does not depend on where the checkout is).
#[derive(Clone)]
pub struct StatCache {
    tree: Tree,
    started: SystemTime,
}

impl StatCache {
    /// A stat cache stored in `tree`.
    pub fn new(tree: Tree) -> Self {
        Self::as_of(tree, SystemTime::now())
    }

    /// A stat cache that judges racy entries as if the scan began at
    /// `started` (tests use this to age files without sleeping).
    pub fn as_of(tree: Tree, started: SystemTime) -> Self {
        StatCache { tree, started }
    }

    /// The blake3 digest of the regular file at `path`, whose metadata is
    /// `meta`, read only when the cache has no trusted entry for `key`.
    pub fn file_digest(&self, key: &str, path: &Path, meta: &Metadata) -> Result<ContentHash> {
        let fingerprint = Fingerprint::of(meta);
        if let Some(bytes) = self.tree.get(key.as_bytes())?
            && let Ok(entry) = postcard::from_bytes::<CacheEntry>(&bytes)
            && entry.fingerprint == fingerprint
            && !fingerprint.is_racy(self.started)
        {
            return Ok(entry.digest);
        }
        let digest = file_digest(path)?;
        if !fingerprint.is_racy(self.started) {
            let entry = CacheEntry {
                fingerprint,
                digest,
            };
            let bytes = postcard::to_stdvec(&entry).expect("a cache entry always encodes");
            self.tree.insert(key.as_bytes(), &bytes)?;
        }
        Ok(digest)
    }
}

/// The digests of one scanned folder's files, kept as one record: a scan
/// reads it once rather than asking the database about every file, and
/// writes it back only when a file's digest or stat changed, or the files
/// did.
pub struct FolderCache<'a> {
    cache: &'a StatCache,
    key: Vec<u8>,
    known: HashMap<String, CacheEntry>,
}

impl StatCache {
    /// The folder record of the files whose keys start with `prefix` (a
    /// folder's path relative to the repository, ending with `/`).
    pub fn folder(&self, prefix: &str) -> Result<FolderCache<'_>> {
        // Paths hold no NUL: no file's key is a folder record's.
        let key = [FOLDER, prefix.as_bytes()].concat();
        let known = match self.tree.get(&key)? {
            Some(bytes) => postcard::from_bytes::<Vec<(String, CacheEntry)>>(&bytes)
                .map(|entries| entries.into_iter().collect())
                .unwrap_or_default(),
            None => HashMap::new(),
        };
        Ok(FolderCache {
            cache: self,
            key,
            known,
        })
    }
}

/// What a folder record's key starts with.
const FOLDER: &[u8] = b"\0folder\0";

impl FolderCache<'_> {
    /// The digest of the file `rel` (relative to the folder) at `path`,
    /// whose stat is `fingerprint`: read only when the record has no
    /// trusted entry for it.
    pub fn digest(&self, rel: &str, path: &Path, fingerprint: &Fingerprint) -> Result<ContentHash> {
        match self.known.get(rel) {
            Some(entry)
                if entry.fingerprint == *fingerprint
                    && !fingerprint.is_racy(self.cache.started) =>
            {
                Ok(entry.digest)
            }
            _ => file_digest(path),
        }
    }

    /// Keeps `files` (relative path, stat, digest) as the folder's record,
    /// leaving out those modified too recently to be trusted; nothing is
    /// written when that is what the record holds.
    pub fn save<'f>(
        &self,
        files: impl Iterator<Item = (&'f str, Fingerprint, ContentHash)>,
    ) -> Result<()> {
        let now: Vec<(String, CacheEntry)> = files
            .filter(|(_, fingerprint, _)| !fingerprint.is_racy(self.cache.started))
            .map(|(rel, fingerprint, digest)| {
                (
                    rel.to_string(),
                    CacheEntry {
                        fingerprint,
                        digest,
                    },
                )
            })
            .collect();
        let same = now.len() == self.known.len()
            && now.iter().all(|(rel, entry)| {
                self.known.get(rel).is_some_and(|known| {
                    known.fingerprint == entry.fingerprint && known.digest == entry.digest
                })
            });
        if !same {
            let bytes = postcard::to_stdvec(&now).expect("a cache entry always encodes");
            self.cache.tree.insert(&self.key, &bytes)?;
        }
        Ok(())
    }
}

/// The blake3 digest of a file's bytes, read now.
pub fn file_digest(path: &Path) -> Result<ContentHash> {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).at(path)?;
    hasher.update_reader(file).at(path)?;
    Ok(ContentHash(*hasher.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn unchanged_file_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "one").unwrap();
        let later = SystemTime::now() + Duration::from_secs(10);
        let cache = StatCache::as_of(db.tree("stat").unwrap(), later);
        let meta = std::fs::symlink_metadata(&file).unwrap();
        let first = cache.file_digest("f", &file, &meta).unwrap();
        assert_eq!(first, ContentHash::of(b"one"));
        // With the file unreadable, only a cache hit can answer.
        std::fs::remove_file(&file).unwrap();
        let again = cache.file_digest("f", &file, &meta).unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn dir_handle_agrees_with_stat() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        let handle = DirHandle::open(dir.path()).unwrap();
        assert_eq!(
            handle.entry("f").unwrap(),
            Fingerprint::at(&dir.path().join("f")).unwrap()
        );
        assert_eq!(
            handle.entry("l").unwrap(),
            Fingerprint::at(&dir.path().join("l")).unwrap()
        );
        assert_eq!(
            handle.fingerprint().unwrap(),
            Fingerprint::at(dir.path()).unwrap()
        );
        assert!(handle.entry("missing").is_err());
    }

    /// A folder record: what a scan saves is what the next one finds,
    /// without the files gone since, and without files too recent to trust.
    #[test]
    fn a_folder_record_keeps_what_is_there_and_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let later = SystemTime::now() + Duration::from_secs(10);
        let cache = StatCache::as_of(db.tree("stat").unwrap(), later);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "one").unwrap();
        std::fs::write(&b, "two").unwrap();
        let fp = |p: &Path| Fingerprint::at(p).unwrap();
        let folder = cache.folder("apps/x/").unwrap();
        let da = folder.digest("a", &a, &fp(&a)).unwrap();
        let db_ = folder.digest("b", &b, &fp(&b)).unwrap();
        folder
            .save([("a", fp(&a), da), ("b", fp(&b), db_)].into_iter())
            .unwrap();
        // Both kept: with the files unreadable, only the record answers.
        let (fa, fb) = (fp(&a), fp(&b));
        std::fs::remove_file(&a).unwrap();
        let folder = cache.folder("apps/x/").unwrap();
        assert_eq!(
            folder.digest("a", &a, &fa).unwrap(),
            ContentHash::of(b"one")
        );
        // `a` is gone: the next record holds `b` only.
        folder.save([("b", fb, db_)].into_iter()).unwrap();
        let folder = cache.folder("apps/x/").unwrap();
        assert_eq!(folder.known.len(), 1);
        assert!(folder.known.contains_key("b"));
        // Judged as of now, a file just written is not kept.
        let now = StatCache::new(db.tree("stat").unwrap());
        let folder = now.folder("apps/y/").unwrap();
        folder.save([("b", fp(&b), db_)].into_iter()).unwrap();
        assert!(now.folder("apps/y/").unwrap().known.is_empty());
    }

    #[test]
    fn racy_file_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "fresh").unwrap();
        let cache = StatCache::new(db.tree("stat").unwrap());
        let meta = std::fs::symlink_metadata(&file).unwrap();
        cache.file_digest("f", &file, &meta).unwrap();
        assert!(cache.tree.get(b"f").unwrap().is_none());
    }

    #[test]
    fn changed_fingerprint_rehashes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let file = dir.path().join("f");
        let later = SystemTime::now() + Duration::from_secs(10);
        let cache = StatCache::as_of(db.tree("stat").unwrap(), later);
        for content in ["one", "two!"] {
            std::fs::write(&file, content).unwrap();
            let meta = std::fs::symlink_metadata(&file).unwrap();
            assert_eq!(
                cache.file_digest("f", &file, &meta).unwrap(),
                ContentHash::of(content.as_bytes())
            );
        }
    }
}
