//! One strata process at a time per repository and per state folder: an
//! advisory lock (`flock`) on a file, released by the kernel when the
//! process ends, however it ends (a SIGKILL leaves no stale lock).
//!
//! The holder writes who it is into the file, so a second process can say
//! what it waits for.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock on the file at `path` (created if missing). When
    /// another process holds it: with `wait`, calls `waiting` with what the
    /// holder wrote, then blocks until it is free; without, fails with
    /// [`Error::Busy`]. `me` is written into the file once it is held.
    pub fn acquire(path: &Path, me: &str, wait: bool, waiting: &dyn Fn(&str)) -> Result<Lock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Self::take(file, path, Some(me), wait, waiting)
    }

    /// Takes the lock on the folder `dir` itself (nothing is written in
    /// it); a holder cannot say who it is, so waiters are told "another
    /// strata process".
    pub fn acquire_dir(dir: &Path, wait: bool, waiting: &dyn Fn(&str)) -> Result<Lock> {
        let file = File::open(dir).map_err(|e| Error::io(dir, e))?;
        Self::take(file, dir, None, wait, waiting)
    }

    fn take(
        mut file: File,
        path: &Path,
        me: Option<&str>,
        wait: bool,
        waiting: &dyn Fn(&str),
    ) -> Result<Lock> {
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = holder(&mut file);
                if !wait {
                    return Err(Error::Busy {
                        path: path.to_path_buf(),
                        holder,
                    });
                }
                waiting(&holder);
                file.lock().map_err(|e| Error::io(path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
        // Who holds it, for the next process's message. Not critical: a
        // failed write only makes that message vaguer.
        if let Some(me) = me {
            let _ = file
                .set_len(0)
                .and_then(|_| file.seek(SeekFrom::Start(0)))
                .and_then(|_| file.write_all(me.as_bytes()));
        }
        Ok(Lock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What the holder wrote about itself, or a placeholder.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    // (A folder reads as an error, hence empty.)
    if text.is_empty() {
        "another strata process".to_string()
    } else {
        text.chars().take(200).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_or_waits_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/lock");
        let first = Lock::acquire(&path, "pid 1: strata store build", false, &|_| {}).unwrap();
        let refused = Lock::acquire(&path, "pid 2", false, &|_| {}).unwrap_err();
        match &refused {
            Error::Busy { holder, .. } => assert_eq!(holder, "pid 1: strata store build"),
            other => panic!("unexpected {other}"),
        }
        assert!(refused.to_string().contains("pid 1: strata store build"));

        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let lock = Lock::acquire(&p, "pid 2", true, &|h| tx.send(h.to_string()).unwrap());
            lock.map(|_| ())
        });
        assert_eq!(rx.recv().unwrap(), "pid 1: strata store build");
        drop(first);
        waiter.join().unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "pid 2");
    }

    #[test]
    fn a_folder_can_be_locked_without_writing_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire_dir(dir.path(), false, &|_| {}).unwrap();
        match Lock::acquire_dir(dir.path(), false, &|_| {}).unwrap_err() {
            Error::Busy { holder, .. } => assert_eq!(holder, "another strata process"),
            other => panic!("unexpected {other}"),
        }
        drop(first);
        Lock::acquire_dir(dir.path(), false, &|_| {}).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
