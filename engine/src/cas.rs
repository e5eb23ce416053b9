//! The content-addressed store: immutable blobs named by their blake3
//! digest, in `<dir>/<2 hex>/<62 hex>`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::atomic::{TempName, copy_atomic_checked, write_atomic};
use crate::error::{IoContext, Result};
use crate::hash::ContentHash;
use crate::statcache::file_digest;

/// A folder of blobs named by digest. Writers never overwrite a blob and
/// readers never see half of one (temp file + rename).
#[derive(Clone, Debug)]
pub struct Cas {
    dir: PathBuf,
}

impl Cas {
    /// The store in `dir`, created on first write.
    pub fn new(dir: impl Into<PathBuf>) -> Cas {
        Cas { dir: dir.into() }
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &ContentHash) -> PathBuf {
        let hex = digest.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    /// Whether the blob is stored.
    pub fn contains(&self, digest: &ContentHash) -> bool {
        self.path(digest).is_file()
    }

    /// Stores the file at `path`, whose digest is `digest` when known.
    /// Returns the digest of what was stored.
    pub fn put_file(&self, path: &Path, digest: Option<ContentHash>) -> Result<ContentHash> {
        let digest = match digest {
            Some(d) => d,
            None => file_digest(path)?,
        };
        let dest = self.path(&digest);
        // A blob already there is checked before it is trusted (an entry
        // about to name it must not name a rotted copy); a bad one is
        // replaced.
        let size = std::fs::metadata(path).at(path)?.len();
        if std::fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == size)
            && file_digest(&dest).is_ok_and(|d| d == digest)
        {
            return Ok(digest);
        }
        let parent = dest.parent().expect("a blob has a folder");
        std::fs::create_dir_all(parent).at(parent)?;
        // Copy under a temporary name, check the bytes are what was named
        // (the file may have changed since it was hashed), then publish.
        let tmp = TempName::beside(&dest);
        std::fs::copy(path, &tmp).at(path)?;
        let copied = file_digest(&tmp)?;
        if copied != digest {
            let _ = std::fs::remove_file(&tmp);
            return self.put_file(path, None);
        }
        std::fs::rename(&tmp, &dest).at(&dest)?;
        Ok(digest)
    }

    /// Stores `bytes`; returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<ContentHash> {
        let digest = ContentHash::of(bytes);
        let dest = self.path(&digest);
        if !dest.is_file() {
            let parent = dest.parent().expect("a blob has a folder");
            std::fs::create_dir_all(parent).at(parent)?;
            write_atomic(&dest, bytes, false)?;
        }
        Ok(digest)
    }

    /// The bytes of a blob, checked against its digest; `None` when absent
    /// or corrupt (a corrupt blob is removed).
    pub fn get(&self, digest: &ContentHash) -> Result<Option<Vec<u8>>> {
        let path = self.path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::Error::io(path, e)),
        };
        if ContentHash::of(&bytes) != *digest {
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Copies the blob to `dest` atomically, checking its bytes against its
    /// digest on the way: a corrupt blob is removed, `dest` is left as it
    /// was, and the error is [`Error::Corrupt`](crate::Error::Corrupt).
    pub fn restore(&self, digest: &ContentHash, dest: &Path, executable: bool) -> Result<()> {
        let blob = self.path(digest);
        let copied = match copy_atomic_checked(&blob, dest, executable, digest) {
            Ok(copied) => copied,
            Err(crate::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && !blob.exists() =>
            {
                return Err(crate::Error::Missing { path: blob });
            }
            Err(e) => return Err(e),
        };
        if !copied {
            let _ = std::fs::remove_file(&blob);
            return Err(crate::Error::Corrupt { path: blob });
        }
        Ok(())
    }

    /// Whether the blob's bytes match its name; a corrupt blob is removed.
    /// `Ok(None)` when it is absent.
    pub fn check(&self, digest: &ContentHash) -> Result<Option<bool>> {
        let path = self.path(digest);
        match file_digest(&path) {
            Ok(d) if d == *digest => Ok(Some(true)),
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
                Ok(Some(false))
            }
            Err(crate::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Stores bytes written by `write` (for blobs made on the fly); returns
    /// their digest.
    pub fn put_with(
        &self,
        write: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<ContentHash> {
        std::fs::create_dir_all(&self.dir).at(&self.dir)?;
        let tmp = TempName::beside(&self.dir.join("blob"));
        let mut file = File::create(&tmp).at(&tmp)?;
        write(&mut file).at(&tmp)?;
        file.flush().at(&tmp)?;
        drop(file);
        let digest = file_digest(&tmp)?;
        let dest = self.path(&digest);
        let parent = dest.parent().expect("a blob has a folder");
        std::fs::create_dir_all(parent).at(parent)?;
        std::fs::rename(&tmp, &dest).at(&dest)?;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_corruption_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        let d = cas.put_bytes(b"hello").unwrap();
        assert_eq!(cas.get(&d).unwrap().as_deref(), Some(&b"hello"[..]));
        let src = dir.path().join("f");
        std::fs::write(&src, "file body").unwrap();
        let f = cas.put_file(&src, None).unwrap();
        assert!(cas.contains(&f));
        cas.restore(&f, &dir.path().join("out"), false).unwrap();
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"file body");
        std::fs::write(cas.path(&d), "tampered").unwrap();
        assert_eq!(cas.get(&d).unwrap(), None);
        assert!(!cas.contains(&d));
        let w = cas.put_with(|f| f.write_all(b"streamed")).unwrap();
        assert_eq!(w, ContentHash::of(b"streamed"));
    }

    #[test]
    fn a_rotted_blob_is_never_restored_nor_kept_by_a_new_put() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        let src = dir.path().join("f");
        std::fs::write(&src, "file body").unwrap();
        let f = cas.put_file(&src, None).unwrap();
        // Same size, other bytes.
        std::fs::write(cas.path(&f), "file BODY").unwrap();
        let dest = dir.path().join("out");
        std::fs::write(&dest, "what was there").unwrap();
        match cas.restore(&f, &dest, false) {
            Err(crate::Error::Corrupt { path }) => assert_eq!(path, cas.path(&f)),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(std::fs::read(&dest).unwrap(), b"what was there");
        assert!(!cas.contains(&f), "the rotted blob was removed");

        std::fs::create_dir_all(cas.path(&f).parent().unwrap()).unwrap();
        std::fs::write(cas.path(&f), "file BODY").unwrap();
        assert_eq!(cas.put_file(&src, None).unwrap(), f);
        assert_eq!(
            cas.check(&f).unwrap(),
            Some(true),
            "the new put replaced it"
        );
        let leftovers = std::fs::read_dir(cas.path(&f).parent().unwrap())
            .unwrap()
            .count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }
}
