//! Errors of the engine, each with the path or node it concerns.

use std::io;
use std::path::PathBuf;

/// What went wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A folder walk failed (permissions, a vanished folder, a bad ignore file).
    #[error("scanning {path}: {message}")]
    Walk {
        /// The folder being scanned.
        path: PathBuf,
        /// What the walker reported.
        message: String,
    },
    /// The state database could not be opened or used.
    #[error("state database {path}: {message}")]
    Db {
        /// The database folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A recorded value could not be decoded (a state database from another
    /// version of strata); the caller treats the node as never computed.
    #[error("recorded value of node {node} is unreadable: {message}")]
    Decode {
        /// The node whose value is unreadable.
        node: String,
        /// The decoder's message.
        message: String,
    },
    /// The graph has a cycle through this node.
    #[error("the build graph has a cycle through {node}")]
    Cycle {
        /// A node on the cycle.
        node: String,
    },
    /// A node named a dependency that is not in the graph.
    #[error("node {node} depends on {dependency}, which is not in the graph")]
    MissingDependency {
        /// The depending node.
        node: String,
        /// The missing dependency.
        dependency: String,
    },
    /// A URL that cannot be used.
    #[error("{message}")]
    Url {
        /// What is wrong with it.
        message: String,
    },
    /// A node read a value that is not one of its declared inputs: its
    /// key would not cover what it read.
    #[error(
        "node {node} read {dependency}, which is not one of its inputs (declare it with Graph::depend)"
    )]
    UndeclaredInput {
        /// The reading node.
        node: String,
        /// What it read.
        dependency: String,
    },
    /// An input checked on demand had to be computed again, and failed
    /// (its own error is reported under its id).
    #[error("input {node} failed")]
    InputFailed {
        /// The failed input.
        node: String,
    },
    /// Two nodes were added with the same id.
    #[error("node {node} was added twice")]
    DuplicateNode {
        /// The duplicated id.
        node: String,
    },
    /// A stored blob's bytes do not match its digest (a disk fault, a
    /// truncated copy, a hand edit); it was removed.
    #[error(
        "cached blob {path} was corrupt (its content does not match its digest); it was discarded"
    )]
    Corrupt {
        /// The blob.
        path: PathBuf,
    },
    /// A blob an entry names is gone (another build found it corrupt and
    /// removed it, or someone deleted it) since the entry was read.
    #[error("cached blob {path} is gone")]
    Missing {
        /// The blob.
        path: PathBuf,
    },
    /// Another process holds the lock and the caller would not wait.
    #[error("{holder} is working on {path}; run again when it is done")]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote about itself.
        holder: String,
    },
    /// A REAPI server answered wrongly or not at all.
    #[error("REAPI server {server}: {message}")]
    Remote {
        /// The server's address (no credentials).
        server: String,
        /// What went wrong.
        message: String,
    },
    /// A REAPI server does not hold a blob it was asked for.
    #[error("REAPI server {server} does not hold blob {digest}")]
    RemoteMissing {
        /// The server's address (no credentials).
        server: String,
        /// The blob, as `<sha256>/<size>`.
        digest: String,
    },
    /// A REAPI server sent a blob whose bytes are not its digest's.
    #[error("REAPI server {server}: blob {digest} arrived with other content ({got})")]
    RemoteCorrupt {
        /// The server's address (no credentials).
        server: String,
        /// The blob asked for, as `<sha256>/<size>`.
        digest: String,
        /// What the bytes hash to.
        got: String,
    },
    /// A file changed while it was read.
    #[error("{what} changed while it was read")]
    Changed {
        /// What changed.
        what: String,
    },
}

impl Error {
    /// Whether a file or folder could not be read or written for lack of
    /// permission: the user's to fix (exit code 2), not a failure.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
    }

    /// An I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the path to an I/O result.
pub trait IoContext<T> {
    /// Wraps the error with `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
