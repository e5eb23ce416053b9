//! strata-engine: the generic part of strata. Content hashes, a
//! gitignore-aware scan with a persistent stat cache, a DAG of content-keyed
//! nodes with early cutoff, and atomic file writes. It knows nothing of
//! stores, apps or images.
#![deny(missing_docs)]

mod atomic;
mod cas;
mod db;
mod error;
mod graph;
mod hash;
mod lock;
mod names;
mod node;
pub mod process;
pub mod reapi;
mod remote;
mod run;
mod scan;
mod statcache;
mod watch;

pub use atomic::{TempName, copy_atomic, symlink_atomic, write_atomic, write_atomic_private};
pub use cas::Cas;
pub use db::{Db, Tree};
pub use error::{Error, IoContext, Result};
pub use graph::{Edge, Graph};
pub use hash::{ContentHash, KeyHasher};
pub use lock::Lock;
pub use names::{display, fs_path, name_str};
pub use node::{Computed, Node};
pub use remote::{RemoteAuth, RemoteCache, RemoteOptions, file_sha256};
pub use run::{Engine, Event, Inputs, OnFailure, Outcome, RunLog, RunOptions, Status, TraceEvent};
pub use scan::{
    EntryKind, ScanEntry, file_entry, git_root, read, relative, scan, symlink_digest, walker,
};
pub use statcache::{DirHandle, Fingerprint, StatCache, file_digest};
pub use watch::{IgnoreRules, Watcher};
