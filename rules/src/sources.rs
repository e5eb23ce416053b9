//! Source bytes shared by a run: a file that twenty stores compose is read
//! once, and each copy is one create, write and close.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use strata_engine::ContentHash;

use crate::error::{Error, Result};

/// Files larger than this are copied in the kernel instead of cached.
const LARGEST_CACHED: u64 = 1 << 20;
/// The most bytes the cache holds; past it, files are read for each copy.
const BUDGET: usize = 256 << 20;

/// The bytes to write for one file.
pub enum Content {
    /// In memory, with the digest of these bytes (which differs from the
    /// scan's when the file changed since).
    Bytes(Arc<[u8]>, ContentHash),
    /// Too large to hold: copy this file.
    Copy,
}

/// Source bytes by digest, for the length of one run.
#[derive(Default)]
pub struct SourceCache {
    map: Mutex<HashMap<ContentHash, Arc<[u8]>>>,
    used: AtomicUsize,
}

impl SourceCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The content of `path`, which the scan found to have `digest`.
    pub fn content(&self, path: &Path, digest: ContentHash) -> Result<Content> {
        if let Some(bytes) = self.map.lock().unwrap().get(&digest) {
            return Ok(Content::Bytes(bytes.clone(), digest));
        }
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.len() > LARGEST_CACHED {
            return Ok(Content::Copy);
        }
        let bytes: Arc<[u8]> = std::fs::read(path).map_err(|e| Error::io(path, e))?.into();
        // A file edited since it was scanned is written as it is now, but
        // not shared under the old digest; the next run sees the edit.
        let actual = ContentHash::of(&bytes);
        if actual == digest
            && self.used.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len() <= BUDGET
        {
            self.map.lock().unwrap().insert(digest, bytes.clone());
        }
        Ok(Content::Bytes(bytes, actual))
    }
}
