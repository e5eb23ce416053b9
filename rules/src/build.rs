//! Builds: running an app's `build` script in its composed folder, and
//! keeping what it made in the content-addressed store, so that an equal
//! build (same key: here, in another store, or after `rm -rf .out`) is
//! restored instead of run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use strata_engine::{
    Cas, ContentHash, EntryKind, Fingerprint, KeyHasher, RemoteCache, Tree, process, reapi,
    symlink_atomic, symlink_digest, walker,
};

use crate::config::StrataSettings;
use crate::error::{Error, Result};
use crate::toolchain::{PackageManager, which};

/// Files and folders a build's outputs never include: the app's installed
/// dependencies (its top-level `node_modules/`, as an install left it), tool
/// files, the Next.js build cache (a cache, not an output), and `.env*`
/// files (inputs that may hold secrets). A `node_modules/` *inside* an
/// output folder is an output: Next.js writes the traced production
/// dependencies of a standalone build to `.next/standalone/node_modules/`,
/// Nuxt to `.output/server/node_modules/`, and an image without them does
/// not start.
pub(crate) fn never_output(rel: &str) -> bool {
    let first = rel.split('/').next().unwrap_or(rel);
    matches!(first, "node_modules" | ".deploy" | ".git" | ".strata-build.log")
        || rel == ".next/cache"
        || rel.starts_with(".next/cache/")
        // Anywhere: Next.js copies `.env*` files into its standalone output.
        || rel.split('/').any(|part| part.starts_with(".env"))
}

/// Whether a path from a remote cache entry is safe to write under an app
/// folder: relative, no `.` or `..` parts, and not a path outputs never have.
fn safe_output_path(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with('/')
        && rel
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
        && !never_output(rel)
}

/// Whether a symlink at `rel` pointing at `target` stays inside the app
/// folder.
fn safe_link(rel: &str, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = rel.matches('/').count() as i64;
    for part in target.components() {
        match part {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// A counting semaphore: at most `-j` build processes at once.
pub struct Semaphore {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Semaphore {
    /// A semaphore with `n` permits.
    pub fn new(n: usize) -> Self {
        Semaphore {
            free: Mutex::new(n.max(1)),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap();
        while *free == 0 {
            free = self.cv.wait(free).unwrap();
        }
        *free -= 1;
        Permit(self)
    }
}

/// A permit of a [`Semaphore`], given back when dropped.
pub(crate) struct Permit<'a>(&'a Semaphore);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap() += 1;
        self.0.cv.notify_one();
    }
}

/// What every build of a run shares.
pub struct BuildContext {
    /// The monorepo's root.
    pub root: PathBuf,
    /// The package manager that runs scripts.
    pub pm: PackageManager,
    /// `node --version`.
    pub node_version: String,
    /// The declared environment (names and values; only hashed).
    pub env: Vec<(String, String)>,
    /// The root lockfile's digest.
    pub lock: ContentHash,
    /// The digest of each app's dependency closure in the root lockfile
    /// (by base app); an app without one depends on the whole lockfile.
    /// With each digest, the closure itself (what its setting node records).
    pub closures: BTreeMap<String, (ContentHash, Arc<crate::lockfile::Closure>)>,
    /// The root lockfile's name, when there is one.
    pub lockfile: Option<String>,
    /// The digest of the root files builds read (`package.json`, `.npmrc`,
    /// `.yarnrc.yml`, `tsconfig.json`…).
    pub globals: ContentHash,
    /// Build outputs by digest.
    pub cas: Cas,
    /// Output manifests by build key.
    pub manifests: Tree,
    /// strata's settings from the config.
    pub settings: StrataSettings,
    pub(crate) slots: Semaphore,
    keys: Mutex<HashMap<ContentHash, Arc<Mutex<Option<String>>>>>,
    /// How many build scripts this run started.
    pub scripts_run: AtomicUsize,
    /// Start no script after a failure.
    pub fail_fast: bool,
    /// The cache shared with other machines.
    pub remote: Option<Arc<RemoteCache>>,
    /// What went wrong without failing a build (a corrupt cached output).
    pub warnings: Mutex<Vec<String>>,
    /// When each build entry was last used (for `cache gc`).
    pub used: Option<Tree>,
    /// The REAPI executor builds run on, when they run remotely.
    pub executor: Option<Arc<crate::remote_build::Executor>>,
    /// Run local builds in a sandbox holding only their input root.
    pub sandbox: bool,
    /// Build keys whose remote entry this run checked (or made).
    remote_checked: Mutex<HashSet<ContentHash>>,
    failed: std::sync::atomic::AtomicBool,
}

impl BuildContext {
    /// A context for builds at `root`, running at most `jobs` scripts at once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        root: &Path,
        pm: PackageManager,
        node_version: String,
        env: Vec<(String, String)>,
        lock: ContentHash,
        cas: Cas,
        manifests: Tree,
        settings: StrataSettings,
        jobs: usize,
        fail_fast: bool,
    ) -> Self {
        BuildContext {
            root: root.to_path_buf(),
            pm,
            node_version,
            env,
            lock,
            closures: BTreeMap::new(),
            lockfile: None,
            globals: ContentHash::default(),
            cas,
            manifests,
            settings,
            slots: Semaphore::new(jobs),
            keys: Mutex::new(HashMap::new()),
            scripts_run: AtomicUsize::new(0),
            fail_fast,
            failed: std::sync::atomic::AtomicBool::new(false),
            remote: None,
            warnings: Mutex::new(Vec::new()),
            used: None,
            remote_checked: Mutex::new(HashSet::new()),
            executor: None,
            sandbox: false,
        }
    }

    /// Whether a build of this run failed.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Records that a build failed (with `--fail-fast`, no other starts).
    pub(crate) fn mark_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// The settings every build reads, each with a name (for the graph's
    /// setting nodes) and a digest. Environment values are hashed, never
    /// stored.
    pub fn settings_digests(&self) -> Vec<(String, ContentHash)> {
        let mut out = vec![("root/files".to_string(), self.globals)];
        // One lockfile setting per app: its dependency closure.
        for (app, (digest, _)) in &self.closures {
            out.push((self.lockfile_setting(app), *digest));
        }
        out.extend([
            (
                "toolchain/node".to_string(),
                ContentHash::of(self.node_version.as_bytes()),
            ),
            (
                format!("toolchain/{}", self.pm.program()),
                ContentHash::of(self.pm.program().as_bytes()),
            ),
        ]);
        for (k, v) in &self.env {
            let mut h = KeyHasher::new("env");
            h.str(k).str(v);
            out.push((format!("env/{k}"), h.finish()));
        }
        out
    }

    /// The name of `app`'s lockfile setting: `lockfile/yarn.lock/<app>`.
    pub fn lockfile_setting(&self, app: &str) -> String {
        format!(
            "lockfile/{}/{app}",
            self.lockfile.as_deref().unwrap_or("none")
        )
    }

    /// The digest of `app`'s dependency closure (the whole lockfile for an
    /// app the closures do not know).
    pub fn closure(&self, app: &str) -> ContentHash {
        self.closures
            .get(app)
            .map_or(self.lock, |(digest, _)| *digest)
    }

    /// The part of every build key that the run shares: tools and
    /// environment. Environment values are hashed, never stored. (The
    /// lockfile is not: each build holds its app's closure.)
    pub fn salt(&self) -> ContentHash {
        // v2: outputs keep the `node_modules/` folders inside output folders;
        // entries of v1 lack them and must never be restored. v3: the
        // lockfile counts by app closure.
        let mut h = KeyHasher::new("build-env/v3");
        h.str(self.pm.program())
            .str(&self.node_version)
            .hash(&self.globals);
        for (k, v) in &self.env {
            h.str(k).str(v);
        }
        h.finish()
    }
}

/// One file a build made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative to the app folder.
    pub path: String,
    /// File or symlink.
    pub kind: EntryKind,
    /// Digest of the bytes (or of a symlink's target).
    pub digest: ContentHash,
    /// A symlink's target.
    pub link_target: Option<PathBuf>,
}

/// How a build's outputs got into place.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// The script ran.
    #[default]
    Ran,
    /// Restored from the cache (an earlier run, or another checkout).
    Restored,
    /// Another store with the same key built it in this run.
    Shared {
        /// `store/app` that ran the script.
        with: String,
    },
    /// Fetched from the remote cache.
    Remote,
    /// The script ran on a REAPI executor (`--remote-executor`).
    Executed,
}

/// What is recorded of a build.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// The build key.
    pub key: ContentHash,
    /// The outputs, sorted by path.
    pub outputs: Vec<OutputFile>,
    /// Their stat on disk, in the same order.
    pub fingerprints: Vec<Fingerprint>,
    /// How they got there.
    pub how: How,
    /// Seconds the script took (or the restore).
    pub seconds: f64,
}

impl BuildRecord {
    /// The hash of the outputs: what depends on the build sees this.
    pub fn digest(&self) -> ContentHash {
        let mut h = KeyHasher::new("build-outputs/v1");
        for o in &self.outputs {
            h.str(&o.path).hash(&o.digest);
        }
        h.finish()
    }
}

/// One build to do.
#[derive(Clone, Debug)]
pub struct BuildSpec {
    /// The store.
    pub store: String,
    /// The app.
    pub app: String,
    /// The `build` script's text (from package.json).
    pub script: String,
    /// `.out/<store>/<app>`, relative to the root.
    pub out: String,
}

impl BuildSpec {
    fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.out)
    }
}

/// The key of a build: the store-independent composition digest, the
/// tools, the declared environment, the app's `.env*` files and what it
/// builds on (`upstream`: the middleware's outputs, for a frontend). It is
/// both the build node's key in the graph and the action key of the local
/// and remote caches: one key scheme.
pub fn build_key(
    ctx: &BuildContext,
    spec: &BuildSpec,
    shared: ContentHash,
    upstream: Option<ContentHash>,
    dotenv: &[(String, ContentHash)],
) -> ContentHash {
    let mut h = KeyHasher::new("build/v2");
    h.str(&spec.app)
        .str(&spec.script)
        .hash(&shared)
        .hash(&ctx.salt())
        .hash(&ctx.closure(&spec.app));
    // The app's settings change what counts as its outputs.
    if let Some(settings) = ctx.settings.apps.get(&spec.app) {
        for o in &settings.outputs {
            h.str(o);
        }
        h.str(settings.entry.as_deref().unwrap_or(""));
    }
    for (name, digest) in dotenv {
        h.str(name).hash(digest);
    }
    if let Some(up) = upstream {
        h.hash(&up);
    }
    h.finish()
}

/// Whether the outputs recorded are still on disk as written.
pub fn outputs_valid(root: &Path, spec: &BuildSpec, record: &BuildRecord) -> bool {
    let dir = spec.dir(root);
    record
        .outputs
        .par_iter()
        .zip(record.fingerprints.par_iter())
        .all(|(o, fp)| {
            Fingerprint::at(&dir.join(strata_engine::fs_path(&o.path))).is_ok_and(|now| now == *fp)
        })
}

/// Brings the build's outputs into place: restored when their key is known,
/// built otherwise.
pub fn build(
    ctx: &BuildContext,
    spec: &BuildSpec,
    key: ContentHash,
    prior: Option<&BuildRecord>,
    upstream: Option<&BuildRecord>,
) -> Result<BuildRecord> {
    let lock = ctx
        .keys
        .lock()
        .unwrap()
        .entry(key)
        .or_insert_with(|| Arc::new(Mutex::new(None)))
        .clone();
    // Builds with equal keys wait for each other: the first runs, the
    // others restore what it made.
    let mut built_by = lock.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    if let Some(used) = &ctx.used {
        // Before the entry is read: a gc that runs later sees it as fresh.
        crate::cache::touch(used, &key)?;
    }
    if let Some(outputs) = manifest(ctx, &key)? {
        match restore(ctx, spec, &outputs, prior) {
            Ok(fingerprints) => {
                let how = match built_by.as_ref() {
                    Some(with) => How::Shared { with: with.clone() },
                    None => How::Restored,
                };
                // A local hit fills a remote cache that lacks it (a CI
                // machine whose --cache-dir was carried over): one HEAD
                // for the entry, then one per blob only when it is
                // missing; once per key and run. What another store of
                // this run shared went up when it was made.
                if how == How::Restored
                    && let Some(remote) = &ctx.remote
                    && !remote.read_only()
                    && ctx.remote_checked.lock().unwrap().insert(key)
                    && remote.has_action_result(&cache_action(ctx, &key).0) == Some(false)
                {
                    upload_remote(ctx, &key, &outputs)?;
                }
                return Ok(BuildRecord {
                    key,
                    outputs,
                    fingerprints,
                    how,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            // A cached output that rotted is never used: the entry goes,
            // and the build runs (or is fetched) again.
            Err(Error::Engine(
                e @ (strata_engine::Error::Corrupt { .. } | strata_engine::Error::Missing { .. }),
            )) => {
                ctx.manifests.remove(&key.0)?;
                // Its other blobs may have rotted too: the build stores
                // them again, and must not find a bad copy in the way.
                outputs
                    .par_iter()
                    .filter(|o| o.kind != EntryKind::Symlink)
                    .try_for_each(|o| ctx.cas.check(&o.digest).map(|_| ()))?;
                ctx.warnings.lock().unwrap().push(format!(
                    "{}/{}: {e}; building it again",
                    spec.store, spec.app
                ));
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(outputs) = fetch_remote(ctx, &key)? {
        let fingerprints = restore(ctx, spec, &outputs, prior)?;
        *built_by = Some(format!("{}/{}", spec.store, spec.app));
        return Ok(BuildRecord {
            key,
            outputs,
            fingerprints,
            how: How::Remote,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let record = match &ctx.executor {
        Some(executor) => {
            // As a local build, from a clean slate.
            if let Some(prior) = prior {
                remove_outputs(&spec.dir(&ctx.root), &prior.outputs, &HashSet::new());
            }
            let (outputs, entries) =
                crate::remote_build::execute(ctx, executor, spec, &key, upstream)?;
            let fingerprints = restore(ctx, spec, &outputs, None)?;
            // Kept under the build key too, with the digests the server
            // gave (not read and hashed again).
            upload_executed(ctx, &key, &outputs, &entries)?;
            *built_by = Some(format!("{}/{}", spec.store, spec.app));
            return Ok(BuildRecord {
                key,
                outputs,
                fingerprints,
                how: How::Executed,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        None if ctx.sandbox => crate::sandbox::build(ctx, spec, key, prior, upstream)?,
        None => run(ctx, spec, key, prior)?,
    };
    upload_remote(ctx, &key, &record.outputs)?;
    *built_by = Some(format!("{}/{}", spec.store, spec.app));
    Ok(record)
}

/// The action a build is cached under in a remote cache: a REAPI `Action`
/// whose `Command` names the build key (the key covers every input the
/// build reads, so the input root is left empty), and the blobs of its
/// `Action` and `Command` messages. An action executed remotely has its
/// result stored under this digest too, so that machines which only read
/// the cache find it.
pub(crate) fn cache_action(
    ctx: &BuildContext,
    key: &ContentHash,
) -> (reapi::Digest, Vec<reapi::Blob>) {
    use reapi::re;
    let command = re::Command {
        arguments: ctx.pm.run_script("build"),
        environment_variables: vec![re::command::EnvironmentVariable {
            name: "STRATA_BUILD_KEY".into(),
            value: key.to_hex(),
        }],
        ..Default::default()
    };
    let (command_digest, command_bytes) = reapi::message_digest(&command);
    let (empty, empty_bytes) = reapi::message_digest(&re::Directory::default());
    let action = re::Action {
        command_digest: Some(command_digest.clone()),
        input_root_digest: Some(empty.clone()),
        salt: b"strata build/v2".to_vec(),
        ..Default::default()
    };
    let (action_digest, action_bytes) = reapi::message_digest(&action);
    let blobs = vec![
        reapi::Blob {
            digest: command_digest,
            source: reapi::Source::Bytes(command_bytes),
        },
        reapi::Blob {
            digest: empty,
            source: reapi::Source::Bytes(empty_bytes),
        },
        reapi::Blob {
            digest: action_digest.clone(),
            source: reapi::Source::Bytes(action_bytes),
        },
    ];
    (action_digest, blobs)
}

/// The outputs of `key` from the remote cache, every blob fetched into the
/// local store and verified; `None` on a miss (or a corrupt blob).
fn fetch_remote(ctx: &BuildContext, key: &ContentHash) -> Result<Option<Vec<OutputFile>>> {
    use prost::Message as _;
    let Some(remote) = &ctx.remote else {
        return Ok(None);
    };
    let (action, _) = cache_action(ctx, key);
    let Some(result) = remote.get_action_result(&action) else {
        return Ok(None);
    };
    if result.exit_code != 0 {
        return Ok(None);
    }
    let entries = reapi::tree::result_entries(&result, |digest| {
        let bytes = remote
            .get_blob_bytes(digest)
            .ok_or_else(|| format!("tree {} is missing", reapi::show(digest)))?;
        reapi::re::Tree::decode(bytes.as_slice()).map_err(|e| e.to_string())
    });
    let Ok(entries) = entries else {
        return Ok(None);
    };
    let Some(outputs) = take_entries(ctx, &entries, &|wanted| remote.get_blobs(wanted))? else {
        return Ok(None);
    };
    let bytes = postcard::to_stdvec(&outputs).expect("a manifest encodes");
    ctx.manifests.insert(&key.0, &bytes)?;
    Ok(Some(outputs))
}

/// A blob to fetch, and the path it goes to.
pub(crate) type Wanted = (reapi::Digest, PathBuf);

/// The outputs an action result names (`entries`), their file blobs
/// fetched by `get_all` (each into its path) into the local store and
/// checked; `None` when a path is not
/// safe to write (see below) or a blob could not be had.
pub(crate) fn take_entries(
    ctx: &BuildContext,
    entries: &BTreeMap<String, reapi::tree::Entry>,
    get_all: &dyn Fn(&[Wanted]) -> bool,
) -> Result<Option<Vec<OutputFile>>> {
    // An entry names paths to write: only plain relative paths inside the
    // app, never under a symlink it also makes, and links that stay inside
    // at every step (followed through the entry's other links, which a
    // check of each target's text alone would miss) and land on no path
    // outputs never have (`.env*`, the installed `node_modules/`, `.git`).
    let links: HashMap<&str, &Path> = entries
        .iter()
        .filter_map(|(path, e)| match e {
            reapi::tree::Entry::Symlink { target } => Some((path.as_str(), Path::new(target))),
            reapi::tree::Entry::File { .. } => None,
        })
        .collect();
    let under_link = |path: &str| {
        let mut p = path;
        while let Some((parent, _)) = p.rsplit_once('/') {
            if links.contains_key(parent) {
                return true;
            }
            p = parent;
        }
        false
    };
    let unsafe_entry = entries.iter().any(|(path, e)| {
        !safe_output_path(path)
            || under_link(path)
            || matches!(e, reapi::tree::Entry::Symlink { target }
                if !(safe_link(path, Path::new(target))
                    && crate::prepare::links::landing(&links, path, Path::new(target))
                        .is_some_and(|l| !l.is_empty() && !never_output(&l))))
    });
    if unsafe_entry {
        return Ok(None);
    }
    // The local store is keyed by blake3: each distinct blob lands beside
    // it under a temporary name, is checked against its sha256 as it
    // arrives (all in one go: batches, not a call per file), then takes its
    // blake3 name.
    let staging = ctx.cas.dir().join("tmp");
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let mut temps: HashMap<&str, PathBuf> = HashMap::new();
    let mut wanted = Vec::new();
    for entry in entries.values() {
        if let reapi::tree::Entry::File { digest, .. } = entry
            && !temps.contains_key(digest.hash.as_str())
        {
            let tmp = strata_engine::TempName::beside(&staging.join(&digest.hash));
            temps.insert(digest.hash.as_str(), tmp.clone());
            // The empty blob is never asked for: servers need not store it.
            if digest.size_bytes == 0 {
                std::fs::write(&tmp, b"").map_err(|e| Error::io(&tmp, e))?;
            } else {
                wanted.push((digest.clone(), tmp));
            }
        }
    }
    let remove_all = || {
        for tmp in temps.values() {
            let _ = std::fs::remove_file(tmp);
        }
    };
    if !wanted.is_empty() && !get_all(&wanted) {
        remove_all();
        return Ok(None);
    }
    let placed: Result<HashMap<&str, ContentHash>> = temps
        .par_iter()
        .map(|(hash, tmp)| {
            let blake = strata_engine::file_digest(tmp)?;
            let dest = ctx.cas.path(&blake);
            if ctx.cas.contains(&blake) {
                let _ = std::fs::remove_file(tmp);
            } else {
                let dir = dest.parent().expect("a blob has a folder");
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                std::fs::rename(tmp, &dest).map_err(|e| Error::io(&dest, e))?;
            }
            Ok((*hash, blake))
        })
        .collect();
    let placed = match placed {
        Ok(placed) => placed,
        Err(e) => {
            remove_all();
            return Err(e);
        }
    };
    let outputs = entries
        .iter()
        .map(|(path, entry)| match entry {
            reapi::tree::Entry::Symlink { target } => {
                let target = PathBuf::from(target);
                OutputFile {
                    path: path.clone(),
                    kind: EntryKind::Symlink,
                    digest: symlink_digest(&target),
                    link_target: Some(target),
                }
            }
            reapi::tree::Entry::File { digest, executable } => OutputFile {
                path: path.clone(),
                kind: EntryKind::File {
                    executable: *executable,
                },
                digest: placed[digest.hash.as_str()],
                link_target: None,
            },
        })
        .collect();
    Ok(Some(outputs))
}

/// Sends a successful build's outputs to the remote cache as a REAPI
/// `ActionResult`: the blobs first (files, then each output folder's
/// `Tree`), then the result that names them.
fn upload_remote(ctx: &BuildContext, key: &ContentHash, outputs: &[OutputFile]) -> Result<()> {
    let Some(remote) = &ctx.remote else {
        return Ok(());
    };
    if remote.read_only() || !remote.usable() {
        return Ok(());
    }
    /// An output as the result names it, and its blob.
    type Described = Option<(String, reapi::tree::Entry, Option<reapi::Blob>)>;
    let described: Vec<Result<Described>> = outputs
        .par_iter()
        .map(|o| match o.kind {
            EntryKind::Symlink => {
                // A target that is not UTF-8 has no REAPI form.
                let Some(target) = o.link_target.as_deref().and_then(|t| t.to_str()) else {
                    return Ok(None);
                };
                Ok(Some((
                    o.path.clone(),
                    reapi::tree::Entry::Symlink {
                        target: target.to_string(),
                    },
                    None,
                )))
            }
            EntryKind::File { executable } => {
                let blob = ctx.cas.path(&o.digest);
                let hash = strata_engine::file_sha256(&blob)?;
                let size = std::fs::metadata(&blob)
                    .map_err(|e| Error::io(&blob, e))?
                    .len();
                let digest = reapi::Digest {
                    hash,
                    size_bytes: size as i64,
                };
                Ok(Some((
                    o.path.clone(),
                    reapi::tree::Entry::File {
                        digest: digest.clone(),
                        executable,
                    },
                    Some(reapi::Blob {
                        digest,
                        source: reapi::Source::File(blob),
                    }),
                )))
            }
        })
        .collect();
    let mut entries = BTreeMap::new();
    let mut blobs = Vec::new();
    for d in described {
        match d? {
            Some((path, entry, blob)) => {
                entries.insert(path, entry);
                blobs.extend(blob);
            }
            None => return Ok(()),
        }
    }
    put_result(ctx, remote, key, &entries, blobs);
    Ok(())
}

/// Stores an executed build's outputs in the remote cache under `key`:
/// `entries` are their REAPI form as the executor gave it, `outputs` where
/// each file's blob is here.
fn upload_executed(
    ctx: &BuildContext,
    key: &ContentHash,
    outputs: &[OutputFile],
    entries: &BTreeMap<String, reapi::tree::Entry>,
) -> Result<()> {
    let Some(remote) = &ctx.remote else {
        return Ok(());
    };
    if remote.read_only() || !remote.usable() {
        return Ok(());
    }
    let blobs = outputs
        .iter()
        .filter_map(|o| match entries.get(&o.path) {
            Some(reapi::tree::Entry::File { digest, .. }) => Some(reapi::Blob {
                digest: digest.clone(),
                source: reapi::Source::File(ctx.cas.path(&o.digest)),
            }),
            _ => None,
        })
        .collect();
    put_result(ctx, remote, key, entries, blobs);
    Ok(())
}

/// Stores `entries` (files among them sent from `blobs`) as the remote
/// cache's result of `key`: the blobs first (files, then each output
/// folder's `Tree`), then the result that names them.
fn put_result(
    ctx: &BuildContext,
    remote: &RemoteCache,
    key: &ContentHash,
    entries: &BTreeMap<String, reapi::tree::Entry>,
    mut blobs: Vec<reapi::Blob>,
) {
    let Ok(parts) = reapi::tree::outputs(entries) else {
        return;
    };
    let (action, action_blobs) = cache_action(ctx, key);
    blobs.extend(action_blobs);
    blobs.extend(parts.trees.into_iter().map(|(digest, bytes)| reapi::Blob {
        digest,
        source: reapi::Source::Bytes(bytes),
    }));
    // No result may name a blob that did not go up.
    if !remote.put_blobs(blobs) {
        return;
    }
    remote.put_action_result(
        &action,
        &reapi::re::ActionResult {
            output_files: parts.files,
            output_symlinks: parts.symlinks,
            output_directories: parts.directories,
            exit_code: 0,
            ..Default::default()
        },
    );
}

/// The manifest stored for `key`, when every blob it names is present.
fn manifest(ctx: &BuildContext, key: &ContentHash) -> Result<Option<Vec<OutputFile>>> {
    let Some(bytes) = ctx.manifests.get(&key.0)? else {
        return Ok(None);
    };
    let Ok(outputs) = postcard::from_bytes::<Vec<OutputFile>>(&bytes) else {
        return Ok(None);
    };
    let complete = outputs
        .iter()
        .all(|o| o.kind == EntryKind::Symlink || ctx.cas.contains(&o.digest));
    Ok(complete.then_some(outputs))
}

pub(crate) fn remove_outputs(dir: &Path, outputs: &[OutputFile], keep: &HashSet<&str>) {
    for o in outputs {
        if !keep.contains(o.path.as_str()) {
            let _ = std::fs::remove_file(dir.join(strata_engine::fs_path(&o.path)));
        }
    }
}

/// Puts `outputs` (in the local store) in place in the app's folder; their
/// stat there.
pub(crate) fn restore_outputs(
    ctx: &BuildContext,
    spec: &BuildSpec,
    outputs: &[OutputFile],
) -> Result<Vec<Fingerprint>> {
    restore(ctx, spec, outputs, None)
}

fn restore(
    ctx: &BuildContext,
    spec: &BuildSpec,
    outputs: &[OutputFile],
    prior: Option<&BuildRecord>,
) -> Result<Vec<Fingerprint>> {
    let dir = spec.dir(&ctx.root);
    if let Some(prior) = prior {
        let keep: HashSet<&str> = outputs.iter().map(|o| o.path.as_str()).collect();
        remove_outputs(&dir, &prior.outputs, &keep);
    }
    outputs
        .par_iter()
        .map(|o| {
            let dest = dir.join(strata_engine::fs_path(&o.path));
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            match o.kind {
                EntryKind::Symlink => {
                    symlink_atomic(o.link_target.as_deref().unwrap_or(Path::new("")), &dest)?
                }
                EntryKind::File { executable } => ctx.cas.restore(&o.digest, &dest, executable)?,
            }
            Fingerprint::at(&dest).map_err(|e| Error::io(&dest, e))
        })
        .collect()
}

/// Every file under the app folder that git ignores (what builds make),
/// with its stat.
fn ignored_files(dir: &Path) -> Result<BTreeMap<String, Fingerprint>> {
    let base = dir.to_path_buf();
    let skip = move |e: &ignore::DirEntry| {
        let rel = strata_engine::relative(&base, e.path());
        rel.is_empty() || !never_output(&rel)
    };
    let mut visible = HashSet::new();
    let mut walk = walker(dir);
    walk.filter_entry(skip.clone());
    for entry in walk.build().flatten() {
        visible.insert(strata_engine::relative(dir, entry.path()));
    }
    let mut all = ignore::WalkBuilder::new(dir);
    all.standard_filters(false)
        .follow_links(false)
        .filter_entry(skip);
    let mut out = BTreeMap::new();
    for entry in all.build().flatten() {
        if entry.file_type().is_none_or(|t| t.is_dir()) {
            continue;
        }
        let rel = strata_engine::relative(dir, entry.path());
        if visible.contains(&rel) {
            continue;
        }
        if let Ok(fp) = Fingerprint::at(entry.path()) {
            out.insert(rel, fp);
        }
    }
    Ok(out)
}

/// The files under the paths the config names as outputs.
pub(crate) fn named_outputs(dir: &Path, paths: &[String]) -> BTreeMap<String, Fingerprint> {
    let mut out = BTreeMap::new();
    for p in paths {
        let mut walk = ignore::WalkBuilder::new(dir.join(p));
        walk.standard_filters(false).follow_links(false);
        for entry in walk.build().flatten() {
            if entry.file_type().is_some_and(|t| !t.is_dir()) {
                let rel = strata_engine::relative(dir, entry.path());
                if let Ok(fp) = Fingerprint::at(entry.path()) {
                    out.insert(rel, fp);
                }
            }
        }
    }
    out
}

fn run(
    ctx: &BuildContext,
    spec: &BuildSpec,
    key: ContentHash,
    prior: Option<&BuildRecord>,
) -> Result<BuildRecord> {
    let dir = spec.dir(&ctx.root);
    let program_path = package_manager(ctx)?;
    // A build starts from a clean slate: what the last build made goes.
    if let Some(prior) = prior {
        remove_outputs(&dir, &prior.outputs, &HashSet::new());
    }
    let log_path = dir.join(".strata-build.log");
    let log = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
    // The new log's change time is the build's start on the file system's
    // own clock: what the build makes or touches is changed at or after it.
    let start_ns = Fingerprint::of(&log.metadata().map_err(|e| Error::io(&log_path, e))?).ctime_ns;
    let log_err = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
    let mut path = std::ffi::OsString::from(ctx.root.join("node_modules/.bin"));
    if let Some(existing) = std::env::var_os("PATH") {
        path.push(":");
        path.push(existing);
    }
    let mut command = Command::new(program_path);
    command
        .args(&ctx.pm.run_script("build")[1..])
        .current_dir(&dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));

    let seconds = run_script(ctx, spec, command, ctx.slots.acquire(), &dir, "")?;

    let named = ctx
        .settings
        .apps
        .get(&spec.app)
        .map(|a| a.outputs.clone())
        .unwrap_or_default();
    let made: Vec<String> = if named.is_empty() {
        // With a prior record, the last build's outputs were removed first,
        // so what the build left is what it changed. Without one (state
        // lost, `.out` kept), an incremental tool may leave files as they
        // were: every ignored file counts.
        ignored_files(&dir)?
            .into_iter()
            .filter(|(_, fp)| prior.is_none() || fp.ctime_ns >= start_ns)
            .map(|(path, _)| path)
            .collect()
    } else {
        named_outputs(&dir, &named).into_keys().collect()
    };
    let stored = store_outputs(ctx, &dir, &made)?;
    let (outputs, fingerprints): (Vec<_>, Vec<_>) = stored.into_iter().unzip();
    let bytes = postcard::to_stdvec(&outputs).expect("a manifest encodes");
    ctx.manifests.insert(&key.0, &bytes)?;
    Ok(BuildRecord {
        key,
        outputs,
        fingerprints,
        how: How::Ran,
        seconds,
    })
}

/// The package manager's program, found on `PATH`.
pub(crate) fn package_manager(ctx: &BuildContext) -> Result<PathBuf> {
    let program = ctx.pm.program();
    which(program).ok_or_else(|| Error::Toolchain {
        message: format!(
            "{program} is not on PATH, and this repository uses it ({}); install it (npm install -g {program}, or corepack enable)",
            match ctx.pm {
                PackageManager::Yarn => "yarn.lock",
                PackageManager::Pnpm => "pnpm-lock.yaml",
                PackageManager::Npm => "package-lock.json",
            }
        ),
    })
}

/// Runs the build script `command` in `dir` (its output going to the
/// app's `.strata-build.log`), holding `permit` until it ends: counted,
/// not started after another build failed under `--fail-fast`, and a
/// failure (`note` added to its status) is a [`Error::BuildFailed`] with the
/// log's last lines. The seconds it ran.
pub(crate) fn run_script(
    ctx: &BuildContext,
    spec: &BuildSpec,
    mut command: Command,
    permit: Permit<'_>,
    dir: &Path,
    note: &str,
) -> Result<f64> {
    let started = Instant::now();
    ctx.scripts_run.fetch_add(1, Ordering::Relaxed);
    if ctx.fail_fast && ctx.failed() {
        return Err(Error::Cancelled);
    }
    let mut child = process::spawn(&mut command).map_err(|e| Error::io(dir, e))?;
    let status = process::wait(&mut child);
    // A failure is known before the next build may start: with
    // --fail-fast, the build waiting for this slot must see it.
    if !status.as_ref().is_ok_and(|s| s.success()) {
        ctx.mark_failed();
    }
    drop(permit);
    let status = status.map_err(|e| Error::io(dir, e))?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        let log = PathBuf::from(&spec.out).join(".strata-build.log");
        return Err(Error::BuildFailed {
            store: spec.store.clone(),
            app: spec.app.clone(),
            status: format!("{status}{note}"),
            tail: tail(&ctx.root.join(&log), 20),
            log,
        });
    }
    Ok(seconds)
}

/// Puts the files `made` (relative to `dir`; what outputs never hold left
/// out) into the local store: each as an output, with its stat.
pub(crate) fn store_outputs(
    ctx: &BuildContext,
    dir: &Path,
    made: &[String],
) -> Result<Vec<(OutputFile, Fingerprint)>> {
    made.par_iter()
        .filter(|rel| !never_output(rel))
        .map(|rel| {
            let full = dir.join(strata_engine::fs_path(rel));
            let meta = std::fs::symlink_metadata(&full).map_err(|e| Error::io(&full, e))?;
            let file = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&full).map_err(|e| Error::io(&full, e))?;
                OutputFile {
                    path: rel.clone(),
                    kind: EntryKind::Symlink,
                    digest: symlink_digest(&target),
                    link_target: Some(target),
                }
            } else {
                use std::os::unix::fs::PermissionsExt;
                OutputFile {
                    path: rel.clone(),
                    kind: EntryKind::File {
                        executable: meta.permissions().mode() & 0o111 != 0,
                    },
                    digest: ctx.cas.put_file(&full, None)?,
                    link_target: None,
                }
            };
            Ok((file, Fingerprint::of(&meta)))
        })
        .collect()
}

/// The last `n` lines of a file.
pub(crate) fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(|l| l.ok()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::never_output;

    #[test]
    fn outputs_exclude_tools_caches_and_env_files() {
        for (path, excluded) in [
            (".next/server/app.js", false),
            ("lib/index.js", false),
            (".next/cache/webpack/x", true),
            ("node_modules/x/index.js", true),
            ("node_modules/.cache/x", true),
            // Inside output folders, node_modules are what the build made.
            ("lib/node_modules/y.js", false),
            (".next/standalone/node_modules/next/package.json", false),
            (".output/server/node_modules/h3/index.mjs", false),
            (".next/standalone/.env", true),
            (".env.local", true),
            (".env", true),
            (".strata-build.log", true),
            (".deploy/server.js", true),
            (".next/standalone/.out/s/web/.env.production", true),
            ("dist/.env", true),
        ] {
            assert_eq!(never_output(path), excluded, "{path}");
        }
    }

    #[test]
    fn remote_entries_cannot_escape_the_app() {
        use super::{safe_link, safe_output_path};
        use std::path::Path;
        for (path, ok) in [
            ("lib/index.js", true),
            ("../../../home/u/.ssh/authorized_keys", false),
            ("/etc/cron.d/x", false),
            ("lib/./x", false),
            ("lib//x", false),
            ("lib/.env", false),
        ] {
            assert_eq!(safe_output_path(path), ok, "{path}");
        }
        assert!(safe_link("lib/a", Path::new("b")));
        assert!(safe_link("lib/a", Path::new("../x")));
        assert!(!safe_link("lib/a", Path::new("../../x")));
        assert!(!safe_link("a", Path::new("/home")));
    }
}
