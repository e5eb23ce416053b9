//! Errors of the domain, each with what a user needs to fix it.

use std::path::PathBuf;

/// What went wrong, in the user's terms.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// There is no `alokai.config.json` at the root.
    #[error("{path}: not found; run strata from the monorepo's root or pass --root")]
    ConfigMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The config is not valid JSON, or a field has the wrong type.
    #[error("{path}:{line}:{column}: {message}")]
    ConfigSyntax {
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said, with the field's path when known.
        message: String,
    },
    /// A config value of the wrong kind (an array where an object belongs).
    #[error("{}: {field}: {message}", path.display())]
    ConfigShape {
        /// The config file.
        path: PathBuf,
        /// The value's place, such as `stores.sports.deployment`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A store listed in the config has no folder in the store tree.
    #[error(
        "store {id:?} is listed in {config} but has no folder in the store tree; looked for {}",
        list(looked)
    )]
    StoreNotFound {
        /// The store id.
        id: String,
        /// The config file.
        config: PathBuf,
        /// The folders looked at.
        looked: Vec<PathBuf>,
    },
    /// Two folders of the store tree have the same id.
    #[error("store id {id:?} is used twice: {} and {}", first.display(), second.display())]
    DuplicateStore {
        /// The id.
        id: String,
        /// The first folder.
        first: PathBuf,
        /// The second folder.
        second: PathBuf,
    },
    /// A store id cannot name an OCI repository.
    #[error(
        "store id {id:?} ({}) cannot be part of an image name: {reason}; use lowercase letters and digits separated by '.', '_', '__' or '-'",
        place.display()
    )]
    InvalidStoreId {
        /// The id.
        id: String,
        /// Where it was found.
        place: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A store tried to override `package.json`.
    #[error(
        "{}: a store cannot override package.json; it always comes from the base app (with its name set to <app>-<store-id>). Move the changes to the base app's package.json",
        path.display()
    )]
    PackageJsonOverride {
        /// The offending file.
        path: PathBuf,
    },
    /// A path is a file in one layer and a folder in another.
    #[error(
        "{} is a file (or a symlink) in one layer, but another layer has a folder there, holding {}: a path cannot be both across the layers of a store",
        file.display(),
        folder.display()
    )]
    FileFolderConflict {
        /// The file.
        file: PathBuf,
        /// A file inside the folder of the same path in another layer.
        folder: PathBuf,
    },
    /// A symlink points outside the repository.
    #[error(
        "{} is a symlink to {}, outside the repository; composed stores must be self-contained",
        link.display(),
        target.display()
    )]
    SymlinkEscapes {
        /// The link.
        link: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// A base app's package.json is not valid JSON.
    #[error("{}: {message}", path.display())]
    PackageJson {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The console answered a deployment with a refusal (a 4xx): it did
    /// not happen, and sending it again would be refused again.
    #[error("{message}")]
    ConsoleRefused {
        /// What the console said.
        message: String,
    },
    /// An option's value is wrong.
    #[error("{message}")]
    Usage {
        /// What to tell the user.
        message: String,
    },
    /// A store named on the command line does not exist or is not deployable.
    #[error("{message}")]
    UnknownStore {
        /// What to tell the user.
        message: String,
    },
    /// A glob pattern given to an option does not parse.
    #[error("{option} {pattern:?}: {message}")]
    BadPattern {
        /// The option (`--global-dependencies`).
        option: &'static str,
        /// The pattern as given.
        pattern: String,
        /// What the glob parser said.
        message: String,
    },
    /// `--shard` is not `I/N` with `1 <= I <= N`.
    #[error("--shard {spec}: expected I/N with 1 <= I <= N, such as 2/4")]
    BadShard {
        /// The value as given.
        spec: String,
    },
    /// `--filter` names an app that is not a base app.
    #[error("--filter {filter}: no base app {name:?}; base apps: {}", apps.join(", "))]
    UnknownApp {
        /// The filter as given (`!name` for an exclusion).
        filter: String,
        /// The app it names.
        name: String,
        /// The base apps there are.
        apps: Vec<String>,
    },
    /// A URL given to an option cannot be used.
    #[error("{option}: {message}")]
    BadUrl {
        /// The option (`--remote-cache`, `--registry`).
        option: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Two servers of `store dev`/`store start` would listen on one port.
    #[error("{first} and {second} both use port {port} (localPorts in {}): give each store its own ports", config.display())]
    PortClash {
        /// The port.
        port: u16,
        /// `store/app` that has it first.
        first: String,
        /// `store/app` that wants it too.
        second: String,
        /// The config file.
        config: PathBuf,
    },
    /// A store's tests failed, or could not run against its servers.
    #[error("{store}: {message}")]
    TestFailed {
        /// The store.
        store: String,
        /// What went wrong.
        message: String,
    },
    /// `store start` was asked to run an app that has no `.deploy` yet.
    #[error("{store}/{app} is not built ({} has no server.js): run strata store build -s {store}", dir.display())]
    NotBuilt {
        /// The store.
        store: String,
        /// The app.
        app: String,
        /// Its `.deploy` folder.
        dir: PathBuf,
    },
    /// Two stores would push to the same repository and tag.
    #[error(
        "stores {first} and {second} would both push {repository}:{tag}; give them different deployment.projectName values, or set \"strata\": {{\"repository\": \"{{projectName}}/{{store}}-{{app}}\"}}"
    )]
    RepositoryClash {
        /// The store that claimed it first.
        first: String,
        /// The other store.
        second: String,
        /// The repository.
        repository: String,
        /// The tag.
        tag: String,
    },
    /// The monorepo has no `apps/` folder.
    #[error("{}: no apps/ folder; is this an Alokai multistore monorepo?", root.display())]
    NoApps {
        /// The root looked at.
        root: PathBuf,
    },
    /// A tool a build needs is missing or broken.
    #[error("{message}")]
    Toolchain {
        /// What is missing and how to get it.
        message: String,
    },
    /// A build script failed.
    #[error("build of {store}/{app} failed ({status}); full output in {}{}", log.display(), tail_text(tail))]
    BuildFailed {
        /// The store.
        store: String,
        /// The app.
        app: String,
        /// How the script ended.
        status: String,
        /// The log with the whole output.
        log: PathBuf,
        /// Its last lines.
        tail: Vec<String>,
    },
    /// A REAPI executor could not run a build (unreachable, or it answered
    /// wrongly); a build script that failed there is a `BuildFailed`.
    #[error("remote executor: {message}")]
    RemoteExecutor {
        /// What went wrong.
        message: String,
    },
    /// Not started: `--fail-fast` and another build failed.
    #[error("not started: another build failed and --fail-fast is set")]
    Cancelled,
    /// `.deploy` cannot be prepared from what the build made.
    #[error("{store}/{app}: {message}")]
    Prepare {
        /// The store.
        store: String,
        /// The app.
        app: String,
        /// What is missing and how to fix it.
        message: String,
    },
    /// A registry refused or failed a request.
    #[error("{message}")]
    Registry {
        /// What was asked, of which host, and the answer.
        message: String,
    },
    /// An image could not be built or read.
    #[error("{message}")]
    Image {
        /// What went wrong, with the path or reference.
        message: String,
    },
    /// A git reference does not resolve.
    #[error("{message}")]
    GitRef {
        /// What to tell the user, with the ref and what to do.
        message: String,
    },
    /// Reading the git repository failed.
    #[error("git: {message}")]
    Git {
        /// What went wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] strata_engine::Error),
}

impl Error {
    /// Whether the error is the user's input being wrong (exit code 2),
    /// rather than a failure while working (exit code 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Engine(e) => {
                matches!(e, strata_engine::Error::Busy { .. }) || e.is_permission_denied()
            }
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::PermissionDenied,
            Error::Git { .. } | Error::ConsoleRefused { .. } | Error::RemoteExecutor { .. } => {
                false
            }
            _ => true,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut out = String::from("; last lines:");
    for line in tail {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

fn list(paths: &[PathBuf]) -> String {
    const SHOWN: usize = 6;
    let mut parts: Vec<String> = paths
        .iter()
        .take(SHOWN)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > SHOWN {
        parts.push(format!("and {} more", paths.len() - SHOWN));
    }
    parts.join(", ")
}

/// The domain's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
