//! Builds executed on a REAPI service (`--remote-executor`): each build of
//! an app is an `Action` whose input root holds what a local build reads
//! (the composed app folder at its place in `.out`, the root files builds
//! read, the root lockfile and the installed `node_modules/`), whose
//! command is the package manager's `build` script with the declared
//! environment, and whose outputs are the framework's output folders. The
//! outputs come back through the CAS into the local store and `.out`; the
//! rest of the run (prepare, images) is as after a local build.
//!
//! The installed `node_modules/` is read once per run, its folder digests
//! kept; the folders a server was found to hold in full are recorded, so a
//! second run sends nothing it sent before.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_engine::reapi::{self, Blob, Digest, Source, re};
use strata_engine::{ContentHash, EntryKind, Tree};

use crate::build::{
    BuildContext, BuildRecord, BuildSpec, OutputFile, Semaphore, never_output, take_entries,
};
use crate::error::{Error, Result};
use crate::prepare::AppKind;
use crate::prepare::MIDDLEWARE_APP;
use crate::toolchain::{GLOBAL_INPUTS, which};

impl std::fmt::Debug for ExecutorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorSettings")
            .field("url", &self.url)
            .field("instance", &self.instance)
            .field("headers", &reapi::Redacted(&self.headers))
            .field("jobs", &self.jobs)
            .field("ca", &self.ca)
            .finish()
    }
}

/// Where and how builds are executed remotely.
#[derive(Clone, Default)]
pub struct ExecutorSettings {
    /// `grpc(s)://host:port`.
    pub url: String,
    /// The REAPI instance name.
    pub instance: String,
    /// Headers for every call (values never shown).
    pub headers: Vec<(String, String)>,
    /// Actions executing at once.
    pub jobs: usize,
    /// A PEM file of certificates trusted for `grpcs://`.
    pub ca: Option<PathBuf>,
}

/// The root's inputs every build action shares, read once per run.
struct Shared {
    /// The installed `node_modules/` folder's digest, when there is one.
    node_modules: Option<Digest>,
}

/// A REAPI executor and what a run knows of it.
pub struct Executor {
    client: reapi::Client,
    hasher: reapi::inputs::Hasher,
    held: reapi::inputs::Held,
    slots: Semaphore,
    shared: Mutex<Option<Arc<Shared>>>,
    /// Actions this run executed (not answered from the server's cache).
    pub actions_run: AtomicUsize,
    /// Actions this run submitted.
    pub actions_submitted: AtomicUsize,
    /// The workers that ran them, as the server names them.
    pub workers: Mutex<std::collections::BTreeSet<String>>,
    /// Where the executed actions' time went, as the server reports it.
    pub timings: Mutex<Timings>,
}

/// Where executed actions' time went, summed over the actions, as the
/// server's `ExecutedActionMetadata` says (seconds).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timings {
    /// From queued to the worker's completion.
    pub server: f64,
    /// Waiting in the queue.
    pub queued: f64,
    /// Fetching inputs on the worker.
    pub fetch: f64,
    /// Running the command.
    pub run: f64,
    /// Uploading outputs from the worker.
    pub upload: f64,
}

/// The longest one build may run remotely.
const DEADLINE: Duration = Duration::from_secs(3 * 3600);

impl Executor {
    /// Connects to the executor at `settings.url`; it must execute actions
    /// with SHA-256 digests. `cache_token`: whether the token of the
    /// environment (`STRATA_REMOTE_CACHE_TOKEN`) may go to it (it is the
    /// cache too).
    pub fn connect(
        settings: &ExecutorSettings,
        memo: Tree,
        held: Tree,
        cache_token: bool,
    ) -> Result<Executor> {
        // The token of the environment, as the remote cache sends it,
        // unless a header says otherwise.
        let mut headers = settings.headers.clone();
        if cache_token
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            && let Some(value) = strata_engine::RemoteAuth::header(&crate::builder::remote_auth())
        {
            headers.push(("authorization".into(), value));
        }
        let client = reapi::Client::connect(
            &settings.url,
            reapi::Options {
                instance: settings.instance.clone(),
                headers,
                timeout: Duration::from_secs(60),
                retries: 4,
                ca_pem: crate::builder::read_ca(settings.ca.as_deref())?,
            },
        )
        .map_err(|e| match e {
            strata_engine::Error::Url { message } => Error::BadUrl {
                option: "--remote-executor",
                message,
            },
            e => Error::RemoteExecutor {
                message: e.to_string(),
            },
        })?;
        if !client.capabilities().exec_enabled {
            return Err(Error::RemoteExecutor {
                message: format!(
                    "{} does not execute actions (its capabilities say exec_enabled is false, or no SHA-256)",
                    client.url()
                ),
            });
        }
        let server = format!("{}/{}", client.url(), settings.instance);
        Ok(Executor {
            client,
            hasher: reapi::inputs::Hasher::new(memo),
            held: reapi::inputs::Held::new(held, &server),
            slots: Semaphore::new(settings.jobs.max(1)),
            shared: Mutex::new(None),
            actions_run: AtomicUsize::new(0),
            actions_submitted: AtomicUsize::new(0),
            workers: Mutex::new(Default::default()),
            timings: Mutex::new(Timings::default()),
        })
    }

    /// Executions resumed after a stream broke.
    pub fn resumed(&self) -> u64 {
        self.client.resumed.load(Ordering::Relaxed)
    }

    /// Records the worker and the timings of an executed action.
    fn record(&self, result: &re::ActionResult) {
        let Some(m) = &result.execution_metadata else {
            return;
        };
        if !m.worker.is_empty() {
            self.workers.lock().unwrap().insert(m.worker.clone());
        }
        let span = |a: &Option<reapi::Timestamp>, b: &Option<reapi::Timestamp>| match (a, b) {
            (Some(a), Some(b)) => {
                ((b.seconds - a.seconds) as f64 + (b.nanos - a.nanos) as f64 / 1e9).max(0.0)
            }
            _ => 0.0,
        };
        let mut t = self.timings.lock().unwrap();
        t.server += span(&m.queued_timestamp, &m.worker_completed_timestamp);
        t.queued += span(&m.queued_timestamp, &m.worker_start_timestamp);
        t.fetch += span(
            &m.input_fetch_start_timestamp,
            &m.input_fetch_completed_timestamp,
        );
        t.run += span(
            &m.execution_start_timestamp,
            &m.execution_completed_timestamp,
        );
        t.upload += span(
            &m.output_upload_start_timestamp,
            &m.output_upload_completed_timestamp,
        );
    }

    /// The server's address.
    pub fn url(&self) -> &str {
        self.client.url()
    }

    /// Bytes sent to and read from the server.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.client.uploaded.load(Ordering::Relaxed),
            self.client.downloaded.load(Ordering::Relaxed),
        )
    }

    /// Sends the blobs of `blobs` the server lacks.
    fn upload(&self, blobs: Vec<Blob>) -> Result<()> {
        self.client
            .upload_missing(blobs)
            .map(|_| ())
            .map_err(|e| Error::RemoteExecutor {
                message: e.to_string(),
            })
    }

    /// The shared root inputs, read (and the installed `node_modules/`
    /// sent) once per run.
    fn shared(&self, root: &Path) -> Result<Arc<Shared>> {
        let mut slot = self.shared.lock().unwrap();
        if let Some(shared) = &*slot {
            return Ok(shared.clone());
        }
        let installed = root.join("node_modules");
        let node_modules = if installed.is_dir() {
            // Caches tools write while building are not inputs.
            let skip = |rel: &str| rel == ".cache" || rel.starts_with(".cache/");
            let found = self.hasher.folder(&installed, "", &skip)?;
            let built = reapi::tree::build(found.entries.iter().map(|(p, e)| (p.as_str(), e)))
                .map_err(|message| Error::RemoteExecutor {
                    message: format!("{}: {message}", installed.display()),
                })?;
            // As an action's inputs: what the server holds in full is not
            // asked about (a changed package sends its folders alone).
            let generation = self.held.generation();
            let (blobs, folders) = unheld(&built, &found, &self.held)?;
            self.upload(blobs)?;
            for folder in &folders {
                self.held.record(folder, generation)?;
            }
            Some(built.root)
        } else {
            None
        };
        let shared = Arc::new(Shared { node_modules });
        *slot = Some(shared.clone());
        Ok(shared)
    }

    fn forget_shared(&self) -> Result<()> {
        self.held.forget()?;
        *self.shared.lock().unwrap() = None;
        Ok(())
    }
}

/// Where the blob `hash` of `files` is.
fn source_of(files: &reapi::inputs::Files, hash: &str) -> Option<Source> {
    files
        .blobs
        .get(hash)
        .map(|p| Source::File(p.clone()))
        .or_else(|| files.inline.get(hash).map(|b| Source::Bytes(b.clone())))
}

/// The folders (relative to the app) a build of `app` writes, which the
/// action returns: the app's `outputs` setting, else its framework's.
pub fn output_paths(ctx: &BuildContext, app: &str) -> Vec<String> {
    let named = ctx
        .settings
        .apps
        .get(app)
        .map(|a| a.outputs.clone())
        .unwrap_or_default();
    if !named.is_empty() {
        // Plain relative paths, once each, as REAPI wants them.
        let mut paths: Vec<String> = named
            .iter()
            .map(|p| p.trim_start_matches("./").trim_end_matches('/').to_string())
            .filter(|p| {
                !p.is_empty()
                    && !p.starts_with('/')
                    && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
            })
            .collect();
        paths.sort();
        paths.dedup();
        return paths;
    }
    match AppKind::of(app) {
        AppKind::Next => vec![".next".into()],
        AppKind::Nuxt => vec![".nuxt".into(), ".output".into()],
        AppKind::Node => vec!["build".into(), "dist".into(), "lib".into()],
    }
}

/// What a build's input root holds beside the composed app folder, and
/// what of that folder it leaves out: one definition for remote actions
/// and `--sandbox`.
pub(crate) struct InputParts {
    /// Files by their path in the root, with where they are: the root files
    /// builds read, the root lockfile, and the outputs the build builds on.
    pub files: Vec<(String, PathBuf)>,
    /// Files by their path in the root, with their content: root settings
    /// less their credentials.
    pub contents: Vec<(String, Vec<u8>)>,
    /// Symlinks by their path in the root, with their targets.
    pub links: Vec<(String, PathBuf)>,
    /// The installed `node_modules/`, when there is one.
    pub node_modules: Option<PathBuf>,
    /// The app's output paths, relative to the app.
    pub outputs: Vec<String>,
    /// What the app folder holds that is not an input (given a path
    /// relative to the app): tool files, installed dependencies, outputs
    /// of an earlier build.
    pub skip_in_app: Box<dyn Fn(&str) -> bool + Sync>,
}

/// The input root of the build of `spec`, whose upstream build (the
/// middleware, for a frontend) is `upstream`.
pub(crate) fn input_parts(
    ctx: &BuildContext,
    spec: &BuildSpec,
    upstream: Option<&BuildRecord>,
) -> InputParts {
    let mut files = Vec::new();
    let mut contents = Vec::new();
    let mut links = Vec::new();
    for name in GLOBAL_INPUTS.iter().copied().chain(ctx.lockfile.as_deref()) {
        let path = ctx.root.join(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            match std::fs::read(&path)
                .ok()
                .and_then(|text| without_credentials(name, &text))
            {
                Some(clean) => contents.push((name.to_string(), clean)),
                None => files.push((name.to_string(), path)),
            }
        }
    }
    if let Some(record) = upstream {
        let above = spec.out.rsplit_once('/').map_or("", |(a, _)| a);
        let up_out = if above.is_empty() {
            MIDDLEWARE_APP.to_string()
        } else {
            format!("{above}/{MIDDLEWARE_APP}")
        };
        for o in &record.outputs {
            let rel = format!("{up_out}/{}", o.path);
            match o.kind {
                EntryKind::Symlink => {
                    links.push((rel, o.link_target.clone().unwrap_or_default()));
                }
                EntryKind::File { .. } => {
                    let path = ctx.root.join(strata_engine::fs_path(&rel));
                    files.push((rel, path));
                }
            }
        }
    }
    let installed = ctx.root.join("node_modules");
    let outputs = output_paths(ctx, &spec.app);
    let skipped = outputs.clone();
    let dotenv = build_dotenv(AppKind::of(&spec.app));
    InputParts {
        files,
        contents,
        links,
        node_modules: installed.is_dir().then_some(installed),
        outputs,
        skip_in_app: Box::new(move |inner: &str| {
            let first = inner.split('/').next().unwrap_or(inner);
            // Only the `.env*` files a production build reads: the others
            // (development, test settings) do not leave this machine.
            (first == inner && first.starts_with(".env") && !dotenv.contains(&first))
                || crate::materialize::TOOL_OWNED.contains(&first)
                || skipped.iter().any(|o| {
                    inner == o
                        || inner
                            .strip_prefix(o.as_str())
                            .is_some_and(|r| r.starts_with('/'))
                })
        }),
    }
}

/// The `.env*` files at an app's top that its build reads (a production
/// build): Next.js these four, Nuxt `.env`; other apps (the middleware,
/// whose `.env` holds the commerce API's secrets) none: their compilers do
/// not read them.
fn build_dotenv(kind: AppKind) -> &'static [&'static str] {
    match kind {
        AppKind::Nuxt => &[".env"],
        AppKind::Next => &[
            ".env",
            ".env.local",
            ".env.production",
            ".env.production.local",
        ],
        AppKind::Node => &[],
    }
}

/// The root package manager settings with their credentials left out
/// (`_auth`, `_authToken`, `_password`, `npmAuthToken`, `npmAuthIdent`
/// lines): `npm run build` needs none of them, and they would be stored on
/// the server. `None` when the file holds none.
fn without_credentials(name: &str, text: &[u8]) -> Option<Vec<u8>> {
    if !matches!(name, ".npmrc" | ".yarnrc" | ".yarnrc.yml") {
        return None;
    }
    let text = String::from_utf8_lossy(text);
    let secret = |line: &str| {
        let l = line.to_ascii_lowercase();
        l.contains("_auth") || l.contains("_password") || l.contains("npmauth")
    };
    if !text.lines().any(secret) {
        return None;
    }
    let kept: Vec<&str> = text.lines().filter(|l| !secret(l)).collect();
    Some(format!("{}\n", kept.join("\n")).into_bytes())
}

/// `PATH` on the worker: the monorepo's `node_modules/.bin` (relative to
/// the working directory `out`), then the setting, or this machine's
/// folders of `node` and the package manager and the usual ones.
pub(crate) fn worker_path(ctx: &BuildContext, out: &str) -> String {
    let up = "../".repeat(out.split('/').filter(|p| !p.is_empty()).count());
    let rest = ctx.settings.remote.path.clone().unwrap_or_else(|| {
        let mut dirs: Vec<String> = Vec::new();
        for program in ["node", ctx.pm.program()] {
            if let Some(dir) = which(program)
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .and_then(|d| d.to_str().map(str::to_string))
                && !dirs.contains(&dir)
            {
                dirs.push(dir);
            }
        }
        for dir in ["/usr/local/bin", "/usr/bin", "/bin"] {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_string());
            }
        }
        dirs.join(":")
    });
    format!("{up}node_modules/.bin:{rest}")
}

/// The action of one build, and the blobs it needs beside the shared ones.
struct Prepared {
    action: Digest,
    blobs: Vec<Blob>,
    /// The folders sent (or found held), held in full once the blobs are
    /// up.
    folders: Vec<Digest>,
}

fn prepare(
    ctx: &BuildContext,
    exec: &Executor,
    spec: &BuildSpec,
    shared: &Shared,
    upstream: Option<&BuildRecord>,
) -> Result<Prepared> {
    let dir = ctx.root.join(&spec.out);
    let parts = input_parts(ctx, spec, upstream);
    let prefix = format!("{}/", spec.out);
    let skip = |rel: &str| (parts.skip_in_app)(rel.strip_prefix(prefix.as_str()).unwrap_or(rel));
    let mut files = exec.hasher.folder(&dir, &spec.out, &skip)?;
    for (rel, path) in &parts.files {
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
        exec.hasher
            .add_file(&mut files, rel.clone(), path.clone(), &meta)?;
    }
    for (rel, bytes) in &parts.contents {
        let digest = reapi::digest_of(bytes);
        files.inline.insert(digest.hash.clone(), bytes.clone());
        files.entries.insert(
            rel.clone(),
            reapi::tree::Entry::File {
                digest,
                executable: false,
            },
        );
    }
    for (rel, target) in &parts.links {
        let target = target.to_str().ok_or_else(|| Error::RemoteExecutor {
            message: format!("{rel}: a link target that is not UTF-8 has no REAPI form"),
        })?;
        files.entries.insert(
            rel.clone(),
            reapi::tree::Entry::Symlink {
                target: target.to_string(),
            },
        );
    }
    let outputs = parts.outputs.clone();
    let mounts: Vec<(&str, &Digest)> = shared
        .node_modules
        .as_ref()
        .map(|d| ("node_modules", d))
        .into_iter()
        .collect();
    let built =
        reapi::tree::build_with(files.entries.iter().map(|(p, e)| (p.as_str(), e)), &mounts)
            .map_err(|message| Error::RemoteExecutor {
                message: format!("the input root of {}/{}: {message}", spec.store, spec.app),
            })?;
    let mut env: BTreeMap<String, String> = ctx.env.iter().cloned().collect();
    env.insert("PATH".into(), worker_path(ctx, &spec.out));
    let mut output_paths = outputs;
    output_paths.sort();
    let platform = (!ctx.settings.remote.platform.is_empty()).then(|| re::Platform {
        properties: ctx
            .settings
            .remote
            .platform
            .iter()
            .map(|(name, value)| re::platform::Property {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    });
    // Servers before REAPI v2.2 read the platform from the command.
    #[allow(deprecated)]
    let command = re::Command {
        arguments: ctx.pm.run_script("build"),
        environment_variables: env
            .into_iter()
            .map(|(name, value)| re::command::EnvironmentVariable { name, value })
            .collect(),
        output_paths,
        working_directory: spec.out.clone(),
        platform: platform.clone(),
        ..Default::default()
    };
    let (command_digest, command_bytes) = reapi::message_digest(&command);
    let action = re::Action {
        command_digest: Some(command_digest.clone()),
        input_root_digest: Some(built.root.clone()),
        platform,
        ..Default::default()
    };
    let (action_digest, action_bytes) = reapi::message_digest(&action);
    let (mut all, folders) = unheld(&built, &files, &exec.held)?;
    all.push(Blob {
        digest: command_digest,
        source: Source::Bytes(command_bytes),
    });
    all.push(Blob {
        digest: action_digest.clone(),
        source: Source::Bytes(action_bytes),
    });
    Ok(Prepared {
        action: action_digest,
        blobs: all,
        folders,
    })
}

/// The blobs of `built` under no folder the server holds in full (those
/// are not asked about again: a second build of an app with a few changed
/// files sends and asks about those and the folders above them), and the
/// folders they make up.
fn unheld(
    built: &reapi::tree::Built,
    files: &reapi::inputs::Files,
    held: &reapi::inputs::Held,
) -> Result<(Vec<Blob>, Vec<Digest>)> {
    use prost::Message as _;
    let messages: std::collections::HashMap<&str, &re::Directory> = built
        .directories
        .iter()
        .map(|(d, m)| (d.hash.as_str(), m))
        .collect();
    let mut blobs = Vec::new();
    let mut folders = Vec::new();
    let mut seen = HashSet::new();
    let mut sent = HashSet::new();
    let mut stack = vec![built.root.clone()];
    while let Some(digest) = stack.pop() {
        if !seen.insert(digest.hash.clone()) || held.holds(&digest)? {
            continue;
        }
        // A folder built elsewhere (a mount) is held, or sent with its
        // own blobs.
        let Some(message) = messages.get(digest.hash.as_str()) else {
            continue;
        };
        blobs.push(Blob {
            digest: digest.clone(),
            source: Source::Bytes(message.encode_to_vec()),
        });
        for file in &message.files {
            if let Some(d) = &file.digest
                && sent.insert(d.hash.clone())
                && let Some(source) = source_of(files, &d.hash)
            {
                blobs.push(Blob {
                    digest: d.clone(),
                    source,
                });
            }
        }
        stack.extend(message.directories.iter().filter_map(|c| c.digest.clone()));
        folders.push(digest);
    }
    Ok((blobs, folders))
}

/// Runs the build of `spec` on the executor; its outputs are in the local
/// store and recorded under `key` when it returns (with their REAPI
/// entries, whose digests the remote cache's record reuses). The action runs again,
/// once, without the server's cache when the result the cache gave cannot
/// be used (a failure it kept, outputs it lost), and its inputs are sent
/// again, once, when the server says it lacks them.
pub fn execute(
    ctx: &BuildContext,
    exec: &Executor,
    spec: &BuildSpec,
    key: &ContentHash,
    upstream: Option<&BuildRecord>,
) -> Result<Outputs> {
    let _permit = exec.slots.acquire();
    if ctx.fail_fast && ctx.failed() {
        return Err(Error::Cancelled);
    }
    let failed = |message: String| {
        ctx.mark_failed();
        Error::RemoteExecutor {
            message: format!("{}/{}: {message}", spec.store, spec.app),
        }
    };
    let mut resent = false;
    let mut fresh = false;
    loop {
        let shared = exec.shared(&ctx.root)?;
        let generation = exec.held.generation();
        let prepared = prepare(ctx, exec, spec, &shared, upstream)?;
        exec.upload(prepared.blobs).map_err(|e| match e {
            Error::RemoteExecutor { message } => failed(format!("sending inputs: {message}")),
            e => {
                ctx.mark_failed();
                e
            }
        })?;
        for folder in &prepared.folders {
            exec.held.record(folder, generation)?;
        }
        exec.actions_submitted.fetch_add(1, Ordering::Relaxed);
        let response = exec
            .client
            .execute(&prepared.action, fresh, DEADLINE)
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status.clone().filter(|s| s.code != 0);
        if let Some(status) = &status
            && reapi::lacks_inputs(status)
            && !resent
        {
            // The server lost inputs it was found to hold.
            exec.forget_shared()?;
            resent = true;
            continue;
        }
        let result = response.result.clone().unwrap_or_default();
        if !response.cached_result {
            exec.actions_run.fetch_add(1, Ordering::Relaxed);
            exec.record(&result);
        }
        let log = write_log(ctx, exec, spec, &response)?;
        if let Some(status) = status {
            return Err(failed(format!(
                "{} could not run the build: {}; its output is in {}",
                exec.url(),
                reapi::Client::status_text(&status),
                PathBuf::from(&spec.out).join(".strata-build.log").display()
            )));
        }
        if result.exit_code != 0 {
            if response.cached_result && !fresh {
                // A failure the server kept: run it for real.
                fresh = true;
                continue;
            }
            ctx.mark_failed();
            return Err(Error::BuildFailed {
                store: spec.store.clone(),
                app: spec.app.clone(),
                status: format!("exit status: {} (on {})", result.exit_code, exec.url()),
                log: PathBuf::from(&spec.out).join(".strata-build.log"),
                tail: String::from_utf8_lossy(&log)
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .map(str::to_string)
                    .collect(),
            });
        }
        match take(ctx, exec, &result) {
            Ok((outputs, entries)) => {
                let bytes = postcard::to_stdvec(&outputs).expect("a manifest encodes");
                ctx.manifests.insert(&key.0, &bytes)?;
                return Ok((outputs, entries));
            }
            // Outputs the server's cache named but no longer holds.
            Err(Taken::Missing(_)) if response.cached_result && !fresh => fresh = true,
            Err(Taken::Missing(message)) | Err(Taken::Bad(message)) => {
                return Err(failed(format!("the action's outputs: {message}")));
            }
            Err(Taken::Failed(e)) => return Err(e),
        }
    }
}

/// An action's outputs as they are kept here, and as the result named
/// them (less what outputs never hold).
pub(crate) type Outputs = (Vec<OutputFile>, BTreeMap<String, reapi::tree::Entry>);

/// Why an action's outputs could not be taken.
enum Taken {
    /// A blob the result names is not on the server.
    Missing(String),
    /// The result is not usable (a path outside the app, a bad tree).
    Bad(String),
    /// Writing them here failed.
    Failed(Error),
}

/// The outputs `result` names, fetched into the local store.
fn take(
    ctx: &BuildContext,
    exec: &Executor,
    result: &re::ActionResult,
) -> std::result::Result<Outputs, Taken> {
    let missing = Mutex::new(None::<String>);
    let entries = reapi::tree::result_entries(result, |digest| {
        use prost::Message as _;
        let bytes = match exec.client.read_blob(digest) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                let text = format!("tree {} is not on the server", reapi::show(digest));
                *missing.lock().unwrap() = Some(text.clone());
                return Err(text);
            }
            Err(e) => return Err(e.to_string()),
        };
        re::Tree::decode(bytes.as_slice()).map_err(|e| e.to_string())
    });
    let entries = match entries {
        Ok(entries) => entries,
        Err(message) => {
            return Err(match missing.into_inner().unwrap() {
                Some(m) => Taken::Missing(m),
                None => Taken::Bad(message),
            });
        }
    };
    // The Next.js cache and the like are not outputs.
    let entries: BTreeMap<String, reapi::tree::Entry> = entries
        .into_iter()
        .filter(|(path, _)| !never_output(path))
        .collect();
    let errors = Mutex::new(Vec::new());
    let lost = Mutex::new(None::<String>);
    let outputs = take_entries(
        ctx,
        &entries,
        &|wanted| match exec.client.download_many(wanted) {
            Ok(()) => true,
            Err(strata_engine::Error::RemoteMissing { digest, .. }) => {
                *lost.lock().unwrap() = Some(format!("blob {digest} is not on the server"));
                false
            }
            Err(e) => {
                errors.lock().unwrap().push(e.to_string());
                false
            }
        },
    )
    .map_err(Taken::Failed)?;
    match outputs {
        Some(outputs) => Ok((outputs, entries)),
        None => {
            if let Some(e) = errors.into_inner().unwrap().into_iter().next() {
                Err(Taken::Bad(e))
            } else if let Some(m) = lost.into_inner().unwrap() {
                Err(Taken::Missing(m))
            } else {
                Err(Taken::Bad("a path outside the app folder".into()))
            }
        }
    }
}

/// Writes the action's stdout, stderr and the server's message to the
/// app's `.strata-build.log`; returns them.
fn write_log(
    ctx: &BuildContext,
    exec: &Executor,
    spec: &BuildSpec,
    response: &re::ExecuteResponse,
) -> Result<Vec<u8>> {
    let mut log = Vec::new();
    if let Some(result) = &response.result {
        for (raw, digest) in [
            (&result.stdout_raw, &result.stdout_digest),
            (&result.stderr_raw, &result.stderr_digest),
        ] {
            if !raw.is_empty() {
                log.extend_from_slice(raw);
            } else if let Some(d) = digest
                && let Ok(Some(bytes)) = exec.client.read_blob(d)
            {
                log.extend_from_slice(&bytes);
            }
        }
    }
    if !response.message.is_empty() {
        log.extend_from_slice(format!("\n{}\n", response.message).as_bytes());
    }
    if let Some(status) = response.status.as_ref().filter(|s| s.code != 0) {
        log.extend_from_slice(format!("\n{}\n", reapi::Client::status_text(status)).as_bytes());
    }
    let path = ctx.root.join(&spec.out).join(".strata-build.log");
    strata_engine::write_atomic(&path, &log, false)?;
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_package_manager_settings() {
        let npmrc = b"registry=https://npm.example/\n//npm.example/:_authToken=s3cret\n_auth=dXNlcjpwYXNz\nalways-auth=true\n";
        let clean = String::from_utf8(without_credentials(".npmrc", npmrc).unwrap()).unwrap();
        assert!(clean.contains("registry=https://npm.example/"));
        assert!(clean.contains("always-auth=true"));
        assert!(
            !clean.contains("s3cret") && !clean.contains("dXNlcjpwYXNz"),
            "{clean}"
        );
        let yarnrc = b"npmRegistryServer: \"https://npm.example\"\nnpmAuthToken: t0ken\n";
        let clean = String::from_utf8(without_credentials(".yarnrc.yml", yarnrc).unwrap()).unwrap();
        assert!(
            !clean.contains("t0ken") && clean.contains("npmRegistryServer"),
            "{clean}"
        );
        // Nothing to leave out: the file itself goes.
        assert!(without_credentials(".npmrc", b"save-exact=true\n").is_none());
        assert!(without_credentials("package.json", b"{\"_auth\": 1}").is_none());
    }

    #[test]
    fn only_a_frontend_build_gets_its_dotenv_files() {
        assert!(build_dotenv(AppKind::Node).is_empty());
        assert_eq!(build_dotenv(AppKind::Nuxt), [".env"]);
        assert!(build_dotenv(AppKind::Next).contains(&".env.production"));
        assert!(!build_dotenv(AppKind::Next).contains(&".env.development"));
    }
}
