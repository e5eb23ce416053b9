//! Atomic writes: every file is written under a temporary name in its final
//! folder, then renamed into place, so a reader (or a rerun after a kill)
//! never sees half a file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{IoContext, Result};

/// The marker in the names of temporary files. A file whose name contains
/// it is a leftover of an interrupted write and may be removed.
pub struct TempName;

impl TempName {
    /// The marker itself.
    pub const MARKER: &'static str = ".strata-tmp-";

    /// Whether a file name is one of ours.
    pub fn is_temp(name: &str) -> bool {
        name.contains(Self::MARKER)
    }

    /// A fresh temporary path beside `path`.
    pub fn beside(path: &Path) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Names near the file system's limit (255 bytes) have no room for
        // the marker: a short digest of the name stands in.
        if name.len() > 100 {
            name = crate::hash::ContentHash::of(name.as_bytes()).short();
        }
        path.with_file_name(format!(".{name}{}{}-{n}", Self::MARKER, std::process::id()))
    }
}

fn mode_bits(executable: bool) -> u32 {
    if executable { 0o777 } else { 0o666 }
}

/// Writes `bytes` to `path` atomically, with the execute bits set when
/// `executable` (the umask applies, as it does for any new file).
pub fn write_atomic(path: &Path, bytes: &[u8], executable: bool) -> Result<()> {
    write_with_mode(path, bytes, mode_bits(executable))
}

/// Writes `bytes` to `path` atomically, the new file created with `mode`
/// (less the umask).
fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = TempName::beside(path);
    let result = (|| {
        let mut file = create(&tmp, mode)?;
        file.write_all(bytes).at(&tmp)?;
        drop(file);
        std::fs::rename(&tmp, path).at(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically, for its owner alone from the start
/// (settings that may hold secrets), executable by the owner when
/// `executable`.
pub fn write_atomic_private(path: &Path, bytes: &[u8], executable: bool) -> Result<()> {
    write_with_mode(path, bytes, if executable { 0o700 } else { 0o600 })
}

/// Copies the file `from` to `to` atomically (in the kernel where it can).
pub fn copy_atomic(from: &Path, to: &Path, executable: bool) -> Result<()> {
    let tmp = TempName::beside(to);
    let result = (|| {
        let mut src = File::open(from).at(from)?;
        let mut dst = create(&tmp, mode_bits(executable))?;
        std::io::copy(&mut src, &mut dst).at(&tmp)?;
        drop(dst);
        std::fs::rename(&tmp, to).at(to)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Copies `from` to `to` like [`copy_atomic`], hashing the bytes on the
/// way; they are put in place only when their blake3 digest is `want`.
/// Returns whether they were (`to` is untouched when not).
pub fn copy_atomic_checked(
    from: &Path,
    to: &Path,
    executable: bool,
    want: &crate::ContentHash,
) -> Result<bool> {
    struct Tee<'a> {
        file: File,
        hasher: &'a mut blake3::Hasher,
    }
    impl Write for Tee<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.file.write(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.file.flush()
        }
    }
    let tmp = TempName::beside(to);
    let result = (|| {
        let mut src = File::open(from).at(from)?;
        let mut hasher = blake3::Hasher::new();
        let mut tee = Tee {
            file: create(&tmp, mode_bits(executable))?,
            hasher: &mut hasher,
        };
        std::io::copy(&mut src, &mut tee).at(&tmp)?;
        drop(tee);
        if crate::ContentHash(*hasher.finalize().as_bytes()) != *want {
            let _ = std::fs::remove_file(&tmp);
            return Ok(false);
        }
        std::fs::rename(&tmp, to).at(to)?;
        Ok(true)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates (or replaces) the symlink `path` pointing at `target`, atomically.
pub fn symlink_atomic(target: &Path, path: &Path) -> Result<()> {
    let tmp = TempName::beside(path);
    std::os::unix::fs::symlink(target, &tmp).at(&tmp)?;
    std::fs::rename(&tmp, path).at(path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn create(path: &Path, mode: u32) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .at(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_replace_and_keep_exec_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.sh");
        write_atomic(&path, b"one", true).unwrap();
        write_atomic(&path, b"two", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_ne!(mode & 0o100, 0);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn copy_and_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a");
        std::fs::write(&src, "data").unwrap();
        copy_atomic(&src, &dir.path().join("b"), false).unwrap();
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"data");
        symlink_atomic(Path::new("a"), &dir.path().join("l")).unwrap();
        symlink_atomic(Path::new("b"), &dir.path().join("l")).unwrap();
        assert_eq!(
            std::fs::read_link(dir.path().join("l")).unwrap(),
            Path::new("b")
        );
        assert!(TempName::is_temp(&TempName::beside(&src).to_string_lossy()));
    }
}
