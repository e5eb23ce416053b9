//! The persistent state: an embedded sled database of named trees.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The engine's state database. Deleting it loses time, never correctness:
/// every record in it is checked against the world before it is trusted.
#[derive(Clone)]
pub struct Db {
    db: sled::Db,
    path: PathBuf,
    recovered: Option<String>,
}

/// One named tree of the database.
#[derive(Clone)]
pub struct Tree {
    tree: sled::Tree,
    path: PathBuf,
}

impl Db {
    /// Opens (or creates) the database in the folder `path`. A database
    /// that a crash left unreadable is set aside (as `<path>.corrupt`) and
    /// started afresh: it only ever saves time. [`Db::recovered`] says so.
    pub fn open(path: &Path) -> Result<Db> {
        Self::open_with(path, &|| {
            sled::Config::new()
                .path(path)
                .cache_capacity(64 << 20)
                .mode(sled::Mode::HighThroughput)
                .open()
        })
    }

    fn open_with(path: &Path, open: &dyn Fn() -> sled::Result<sled::Db>) -> Result<Db> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        // The caller holds the state folder's lock, so a process holding
        // sled's own lock on the files is one that is exiting: its state
        // lock was released before its database files were closed. It is
        // given a few seconds to finish.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let opened = loop {
            match open() {
                Err(e) if is_locked(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other,
            }
        };
        let (db, recovered) = match opened {
            Ok(db) => (db, None),
            Err(e @ sled::Error::Corruption { .. }) => {
                let aside = path.with_extension("corrupt");
                let _ = std::fs::remove_dir_all(&aside);
                std::fs::rename(path, &aside).map_err(|e| Error::io(path, e))?;
                std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
                let db = open().map_err(|e| db_error(path, e))?;
                let note = format!(
                    "the state database {} was unreadable ({e}); it was moved to {} and started afresh (this costs time, not correctness)",
                    path.display(),
                    aside.display()
                );
                (db, Some(note))
            }
            Err(e) => return Err(db_error(path, e)),
        };
        Ok(Db {
            db,
            path: path.to_path_buf(),
            recovered,
        })
    }

    /// When the database had to be started afresh, why.
    pub fn recovered(&self) -> Option<&str> {
        self.recovered.as_deref()
    }

    /// The tree called `name`, created on first use.
    pub fn tree(&self, name: &str) -> Result<Tree> {
        let tree = self
            .db
            .open_tree(name)
            .map_err(|e| db_error(&self.path, e))?;
        Ok(Tree {
            tree,
            path: self.path.clone(),
        })
    }

    /// Writes everything to disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    /// The database folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Tree {
    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let value = self.tree.get(key).map_err(|e| db_error(&self.path, e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// Stores `value` under `key`.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree
            .insert(key, value)
            .map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    /// Removes `key`.
    pub fn remove(&self, key: &[u8]) -> Result<()> {
        self.tree.remove(key).map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree
            .iter()
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| db_error(&self.path, e))
            })
            .collect()
    }

    /// Every key that starts with `prefix`.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.tree
            .scan_prefix(prefix)
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(|e| db_error(&self.path, e)))
            .collect()
    }
}

/// Whether sled could not take the lock on its files.
fn is_locked(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io)
        if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock"))
}

fn db_error(path: &Path, e: sled::Error) -> Error {
    let message = match &e {
        e if is_locked(e) => {
            "another strata process is using it; wait for that one to finish".to_string()
        }
        sled::Error::Corruption { .. } => {
            format!("{e}; it only caches work, so removing the folder is safe")
        }
        _ => e.to_string(),
    };
    Error::Db {
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_an_exiting_process_still_holds_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let first = Db::open(&path).unwrap();
        first.tree("t").unwrap().insert(b"k", b"v").unwrap();
        first.flush().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(first);
        });
        let second = Db::open(&path).unwrap();
        closer.join().unwrap();
        assert_eq!(
            second.tree("t").unwrap().get(b"k").unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn a_corrupt_database_is_set_aside_and_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = Db::open(&path).unwrap();
            db.tree("t").unwrap().insert(b"k", b"v").unwrap();
            db.flush().unwrap();
            assert!(db.recovered().is_none());
        }
        // sled reports what a crash mid-write left as corruption (seen after
        // SIGKILL); the first open here fails that way.
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let open = || {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                return Err(sled::Error::Corruption { at: None, bt: () });
            }
            sled::Config::new().path(&path).open()
        };
        let db = Db::open_with(&path, &open).unwrap();
        assert!(
            db.recovered()
                .is_some_and(|note| note.contains("started afresh"))
        );
        assert_eq!(db.tree("t").unwrap().get(b"k").unwrap(), None);
        assert!(path.with_extension("corrupt").join("db").exists());
    }
}
