//! The build command: compose the selected stores, run (or restore) their
//! apps' builds in dependency order with at most `-j` scripts at once, and
//! prepare the `.deploy` folders of the apps that are deployed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use strata_engine::{
    Cas, Engine, Event, Graph, OnFailure, RemoteCache, RunLog, RunOptions, Status,
};

use crate::build::{BuildContext, BuildSpec, How};
use crate::composer::compose_graph;
use crate::error::{Error, Result};
use crate::nodes::{NodeKind, StoreNode, StoreValue, build_id, deploy_id, out_dir, out_id};
use crate::prepare::{AppKind, MIDDLEWARE_APP, deployed_apps};
use crate::sources::SourceCache;
use crate::toolchain::{
    PackageManager, declared_env, dotenv_digests, globals_digest, lockfile_digest, node_version,
};
use crate::workspace::Workspace;

/// What `store build` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Store ids (empty: every deployable store).
    pub stores: Vec<String>,
    /// App names to build, and `!name` to leave out (empty: all).
    pub filter: Vec<String>,
    /// Build processes at once.
    pub jobs: usize,
    /// Stop at the first failure.
    pub fail_fast: bool,
    /// Where the content-addressed store is.
    pub cas_dir: std::path::PathBuf,
    /// Plan only: run nothing, record nothing.
    pub dry_run: bool,
    /// The remote cache.
    pub remote: Option<RemoteSettings>,
    /// The REAPI executor builds run on (`--remote-executor`).
    pub executor: Option<crate::remote_build::ExecutorSettings>,
    /// Run local builds in a sandbox holding only their input root.
    pub sandbox: bool,
}

/// What happened to one app.
#[derive(Clone, Debug, Serialize)]
pub struct AppBuild {
    /// The app.
    pub app: String,
    /// `built`, `cached` (in place), `restored` (from the local cache),
    /// `remote` (from the remote cache), `shared`
    /// (another store's identical build), `failed`, `skipped` (a
    /// dependency failed), `no-script`, or `planned` (a dry run: it would
    /// run).
    pub build: &'static str,
    /// The store/app whose identical build this one reused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_with: Option<String>,
    /// Seconds the script ran.
    pub seconds: Option<f64>,
    /// `.deploy`: `prepared`, `cached`, `failed`, `skipped`, or none when
    /// the app is not deployed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<&'static str>,
    /// Bytes of the build's outputs, when the run read its record (none
    /// for a build a deploy did not look at: its images were cached).
    pub output_bytes: Option<u64>,
    /// Bytes of `.deploy`, when the run read its record.
    pub deploy_bytes: Option<u64>,
    /// The action the build is kept under in a remote cache
    /// (`<sha256>/<size>`), when a remote cache is in use and the run
    /// read the build's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_action: Option<String>,
}

/// One store's builds.
#[derive(Clone, Debug, Serialize)]
pub struct StoreBuild {
    /// The store id.
    pub id: String,
    /// Its apps.
    pub apps: Vec<AppBuild>,
}

/// What `store build` did.
#[derive(Debug, Serialize)]
pub struct BuildReport {
    /// Per store.
    pub stores: Vec<StoreBuild>,
    /// Build scripts started.
    pub scripts_run: usize,
    /// The failures, in store order.
    #[serde(skip)]
    pub failures: Vec<Error>,
    /// The engine's log.
    #[serde(skip)]
    pub log: RunLog,
    /// Warnings (a remote cache that failed or sent a corrupt blob).
    pub warnings: Vec<String>,
    /// The remote cache used, with bytes fetched and sent.
    pub remote: Option<RemoteUse>,
    /// The REAPI executor used.
    pub executor: Option<ExecutorUse>,
    /// Failed nodes of the rollout (base, image, push, trigger), by id.
    #[serde(skip)]
    pub rollout_errors: Vec<(String, Error)>,
    /// The tag a deploy's revision node gave, when it ran.
    #[serde(skip)]
    pub revision: Option<crate::revision::Tagging>,
}

impl BuildReport {
    /// What the run did with node `id`.
    pub fn build_status(&self, id: &str) -> Option<Status> {
        self.log.status(id)
    }
}

/// What the remote cache did in a run.
#[derive(Clone, Debug, Serialize)]
pub struct RemoteUse {
    /// Its URL, without credentials.
    pub url: String,
    /// Bytes fetched.
    pub downloaded: u64,
    /// Bytes sent.
    pub uploaded: u64,
}

/// What the REAPI executor did in a run.
#[derive(Clone, Debug, Serialize)]
pub struct ExecutorUse {
    /// Its address.
    pub url: String,
    /// Build actions submitted.
    pub actions: usize,
    /// Of those, actions a worker ran (the others were in its cache).
    pub executed: usize,
    /// The workers that ran them.
    pub workers: Vec<String>,
    /// Executions resumed with `WaitExecution` after a stream broke.
    pub resumed: u64,
    /// Where the executed actions' time went on the server (seconds,
    /// summed).
    pub server_time: crate::remote_build::Timings,
    /// Bytes sent (inputs).
    pub uploaded: u64,
    /// Bytes read (outputs, logs).
    pub downloaded: u64,
}

/// The part `spec` (`I/N`, 1-based) of `ids`: sorted, then dealt round
/// robin, so that every id is in exactly one part and parts differ in size
/// by one at most.
pub fn shard(ids: &[String], spec: &str) -> Result<Vec<String>> {
    let bad = || Error::BadShard {
        spec: spec.to_string(),
    };
    let (i, n) = spec.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i == 0 || i > n {
        return Err(bad());
    }
    let mut sorted = ids.to_vec();
    sorted.sort();
    Ok(sorted
        .into_iter()
        .enumerate()
        .filter(|(k, _)| k % n == i - 1)
        .map(|(_, id)| id)
        .collect())
}

/// The apps `filter` keeps: names, and `!name` exclusions (Alokai's
/// `--filter`). Unknown names are an error.
pub fn filter_apps(apps: &[String], filter: &[String]) -> Result<Vec<String>> {
    for f in filter {
        let name = f.trim_start_matches('!');
        if !apps.iter().any(|a| a == name) {
            return Err(Error::UnknownApp {
                filter: f.clone(),
                name: name.to_string(),
                apps: apps.to_vec(),
            });
        }
    }
    let include: Vec<&str> = filter
        .iter()
        .filter(|f| !f.starts_with('!'))
        .map(String::as_str)
        .collect();
    let exclude: Vec<&str> = filter.iter().filter_map(|f| f.strip_prefix('!')).collect();
    Ok(apps
        .iter()
        .filter(|a| include.is_empty() || include.contains(&a.as_str()))
        .filter(|a| !exclude.contains(&a.as_str()))
        .cloned()
        .collect())
}

/// The `build` script of a base app's package.json (the composed one
/// always has the same scripts: package.json cannot be overridden).
pub fn build_script(root: &Path, app: &str) -> Result<Option<String>> {
    build_script_named(root, app, "build")
}

/// The script `name` of a base app's package.json.
pub fn build_script_named(root: &Path, app: &str, name: &str) -> Result<Option<String>> {
    let path = root.join("apps").join(app).join("package.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::PackageJson {
            path: path.clone(),
            message: e.to_string(),
        })?;
    Ok(value
        .get("scripts")
        .and_then(|s| s.get(name))
        .and_then(|b| b.as_str())
        .map(str::to_string))
}

/// The remote cache's credentials when its URL has none:
/// `STRATA_REMOTE_CACHE_TOKEN` (a bearer token), or
/// `STRATA_REMOTE_CACHE_USER` and `STRATA_REMOTE_CACHE_PASSWORD`.
pub(crate) fn remote_auth() -> strata_engine::RemoteAuth {
    if let Ok(token) = std::env::var("STRATA_REMOTE_CACHE_TOKEN") {
        strata_engine::RemoteAuth::Bearer(token)
    } else if let (Ok(user), Ok(password)) = (
        std::env::var("STRATA_REMOTE_CACHE_USER"),
        std::env::var("STRATA_REMOTE_CACHE_PASSWORD"),
    ) {
        strata_engine::RemoteAuth::Basic { user, password }
    } else {
        strata_engine::RemoteAuth::None
    }
}

impl std::fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSettings")
            .field("url", &self.url)
            .field("read_only", &self.read_only)
            .field("instance", &self.instance)
            .field("headers", &strata_engine::reapi::Redacted(&self.headers))
            .field("ca", &self.ca)
            .finish()
    }
}

/// A remote cache to use.
#[derive(Clone, Default)]
pub struct RemoteSettings {
    /// `http(s)://…` or `grpc(s)://…`.
    pub url: String,
    /// Only read from it.
    pub read_only: bool,
    /// The REAPI instance name (gRPC).
    pub instance: String,
    /// Headers for every gRPC call (`name`, `value`; values never shown).
    pub headers: Vec<(String, String)>,
    /// A PEM file of certificates trusted for `grpcs://`.
    pub ca: Option<std::path::PathBuf>,
}

/// The certificates of `--remote-ca`, read.
pub(crate) fn read_ca(path: Option<&std::path::Path>) -> Result<Option<Vec<u8>>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|e| Error::BadUrl {
        option: "--remote-ca",
        message: format!("{}: {e}", path.display()),
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::BadUrl {
            option: "--remote-ca",
            message: format!("{} holds no PEM certificate", path.display()),
        });
    }
    Ok(Some(pem))
}

/// The shared context of a run's builds.
pub fn build_context(
    ws: &Workspace,
    engine: &Engine,
    options: &BuildOptions,
) -> Result<BuildContext> {
    let (pm, lockfile) = PackageManager::detect(ws.root());
    // An executor's server is the remote cache too, unless another is
    // named (as Bazel does).
    let remote_settings = options.remote.clone().or_else(|| {
        options.executor.as_ref().map(|e| RemoteSettings {
            url: e.url.clone(),
            read_only: false,
            instance: e.instance.clone(),
            headers: e.headers.clone(),
            ca: e.ca.clone(),
        })
    });
    let remote = match &remote_settings {
        Some(settings) => Some(Arc::new(
            RemoteCache::new(
                &settings.url,
                strata_engine::RemoteOptions {
                    auth: remote_auth(),
                    read_only: settings.read_only,
                    timeout: std::time::Duration::from_secs(20),
                    instance: settings.instance.clone(),
                    headers: settings.headers.clone(),
                    ca_pem: read_ca(settings.ca.as_deref())?,
                },
            )
            .map_err(|e| Error::BadUrl {
                option: "--remote-cache",
                message: e.to_string(),
            })?,
        )),
        None => None,
    };
    let mut ctx = BuildContext::new(
        ws.root(),
        pm,
        node_version(&engine.db().tree("toolchain")?)?,
        declared_env(&ws.config.strata.env),
        lockfile_digest(lockfile.as_deref())?,
        Cas::new(&options.cas_dir),
        engine.db().tree(crate::cache::BUILDS)?,
        ws.config.strata.clone(),
        options.jobs,
        options.fail_fast,
    );
    ctx.remote = remote;
    ctx.sandbox = options.sandbox;
    if let Some(settings) = &options.executor
        && !options.dry_run
    {
        ctx.executor = Some(Arc::new(crate::remote_build::Executor::connect(
            settings,
            engine.db().tree("reapi-sha256")?,
            engine.db().tree("reapi-held")?,
            // The cache's token goes only to the server it was given for.
            options
                .remote
                .as_ref()
                .is_none_or(|r| r.url == settings.url),
        )?));
    }
    ctx.lockfile = lockfile
        .as_deref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    if let Some(path) = &lockfile {
        let crate::lockfile::Closures { apps, warning } =
            crate::lockfile::read_closures(ws.root(), path, &ws.base_apps)?;
        for (dir, closure) in apps {
            let app = dir.rsplit('/').next().unwrap_or(&dir).to_string();
            let digest = closure.digest(ctx.lock);
            ctx.closures.insert(app, (digest, Arc::new(closure)));
        }
        if let Some(warning) = warning {
            ctx.warnings.lock().unwrap().push(warning);
        }
    }
    ctx.used = Some(engine.db().tree(crate::cache::BUILD_USED)?);
    ctx.globals = globals_digest(ws.root())?;
    Ok(ctx)
}

/// The graph of a build: the compose graph, plus a build node per app with
/// a build script and a `.deploy` node per deployed app.
pub fn build_graph(
    ws: &Workspace,
    engine: &Engine,
    options: &BuildOptions,
    ctx: &Arc<BuildContext>,
) -> Result<Graph<StoreNode>> {
    let mut graph = compose_graph(ws, engine, &options.stores)?;
    let apps = filter_apps(&ws.base_apps, &options.filter)?;
    let sources = Arc::new(SourceCache::new());
    let mut scripts = Vec::new();
    for app in &apps {
        scripts.push((app.clone(), build_script(ws.root(), app)?));
    }
    let middleware_builds = build_script(ws.root(), MIDDLEWARE_APP)?.is_some();
    let settings = ctx.settings_digests();
    if scripts.iter().any(|(_, s)| s.is_some()) {
        for (id, digest) in &settings {
            let closure = ctx
                .closures
                .iter()
                .find(|(app, _)| ctx.lockfile_setting(app) == *id)
                .map(|(_, (_, c))| c.clone());
            graph.add(StoreNode::Setting {
                id: crate::node_id::NodeId::Setting { name: id.clone() }.to_string(),
                digest: *digest,
                closure,
            })?;
        }
    }
    for store in ws.select(&options.stores)? {
        let has_build = |app: &str| scripts.iter().any(|(a, s)| a == app && s.is_some());
        for (app, script) in &scripts {
            let Some(script) = script else { continue };
            let id = build_id(&store.id, app);
            let out = out_dir(&store.id, app);
            let upstream = (app != MIDDLEWARE_APP && has_build(MIDDLEWARE_APP))
                .then(|| build_id(&store.id, MIDDLEWARE_APP));
            // A middleware left out by --filter still shapes this build:
            // its recorded outputs stand in for the node.
            let upstream_recorded =
                (app != MIDDLEWARE_APP && upstream.is_none() && middleware_builds).then(|| {
                    match engine
                        .load::<StoreNode>(&build_id(&store.id, MIDDLEWARE_APP))
                        .ok()
                        .flatten()
                    {
                        Some(StoreValue::Build(r)) => r.digest(),
                        _ => strata_engine::ContentHash::default(),
                    }
                });
            graph.add(StoreNode::Build {
                id: id.clone(),
                spec: BuildSpec {
                    store: store.id.clone(),
                    app: app.clone(),
                    script: script.clone(),
                    out: out.clone(),
                },
                out: out_id(&store.id, app),
                upstream: upstream.clone(),
                upstream_recorded,
                dotenv: dotenv_digests(&ws.root().join(&out))?,
                ctx: ctx.clone(),
            })?;
            graph.depend(&id, &out_id(&store.id, app))?;
            if let Some(up) = upstream {
                graph.depend(&id, &up)?;
            }
            for (setting, _) in &settings {
                // Of the lockfile, a build reads its own app's closure.
                if setting.starts_with("lockfile/") && *setting != ctx.lockfile_setting(app) {
                    continue;
                }
                graph.depend(&id, setting)?;
            }
        }
        for app in deployed_apps(ws, &store.id) {
            if !apps.contains(&app) {
                continue;
            }
            let id = deploy_id(&store.id, &app);
            let build = has_build(&app).then(|| build_id(&store.id, &app));
            graph.add(StoreNode::Prepare {
                id: id.clone(),
                store: store.id.clone(),
                app: app.clone(),
                kind: AppKind::of(&app),
                out: out_id(&store.id, &app),
                build: build.clone(),
                ctx: ctx.clone(),
                cache: engine.stat_cache().clone(),
                sources: sources.clone(),
            })?;
            graph.depend(&id, &out_id(&store.id, &app))?;
            if let Some(b) = build {
                graph.depend(&id, &b)?;
            }
            // The dependencies it copies are its app's closure: named as an
            // input where the setting is a node.
            let setting = ctx.lockfile_setting(&app);
            if graph.contains(&setting) {
                graph.depend(&id, &setting)?;
            }
        }
    }
    Ok(graph)
}

/// Composes and builds the selected stores. Bad input (in the workspace or
/// a composition) is an error before anything runs; failed builds are in
/// the report.
pub fn build_stores(
    ws: &Workspace,
    engine: &Engine,
    options: &BuildOptions,
    observe: &(dyn Fn(&Event) + Sync),
) -> Result<BuildReport> {
    build_stores_with(ws, engine, options, observe, &|_| Ok(()), false)
}

/// [`build_stores`] on the build graph with nodes `extend` adds above it
/// (the rollout's images, pushes and triggers), run as one graph. Their
/// failures are in [`BuildReport::rollout_errors`]. With `on_demand`, the
/// folders under `.out` are checked only when a node computes from them
/// (see [`strata_engine::RunOptions::on_demand`]).
pub fn build_stores_with(
    ws: &Workspace,
    engine: &Engine,
    options: &BuildOptions,
    observe: &(dyn Fn(&Event) + Sync),
    extend: &dyn Fn(&mut strata_engine::Graph<StoreNode>) -> Result<()>,
    on_demand: bool,
) -> Result<BuildReport> {
    let ctx = Arc::new(build_context(ws, engine, options)?);
    let mut graph = build_graph(ws, engine, options, &ctx)?;
    extend(&mut graph)?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let run = RunOptions {
        on_failure: if options.fail_fast {
            OnFailure::Stop
        } else {
            OnFailure::Continue
        },
        // Build nodes mostly wait on child processes: leave room for them
        // beside the compositions.
        threads: Some(
            options
                .jobs
                .max(cores)
                .max(options.executor.as_ref().map_or(0, |e| e.jobs))
                + 2,
        ),
        dry_run: options.dry_run,
        on_demand,
    };
    let kinds: std::collections::HashMap<String, NodeKind> = graph
        .edges()
        .into_iter()
        .map(|(node, _, _)| (strata_engine::Node::id(node).to_string(), node.kind()))
        .collect();
    let mut outcome = engine.run_with(&graph, run, observe)?;
    let mut failures = Vec::new();
    let mut cancelled = Vec::new();
    let mut rollout_errors = Vec::new();
    for (id, error) in std::mem::take(&mut outcome.errors) {
        if matches!(error, Error::Cancelled) {
            cancelled.push(id);
            continue;
        }
        match kinds.get(&id) {
            Some(
                NodeKind::Base
                | NodeKind::Layer
                | NodeKind::Image
                | NodeKind::Push
                | NodeKind::Trigger,
            ) => {
                rollout_errors.push((id, error));
            }
            Some(NodeKind::Build | NodeKind::Prepare | NodeKind::Test) => failures.push(error),
            // A scan or composition failed: bad input, nothing was built.
            _ => return Err(error),
        }
    }
    let apps = filter_apps(&ws.base_apps, &options.filter)?;
    let mut stores = Vec::new();
    for store in ws.select(&options.stores)? {
        let deployed = deployed_apps(ws, &store.id);
        let mut list = Vec::new();
        for app in &apps {
            let bid = build_id(&store.id, app);
            let (build, shared_with, seconds) = match outcome.log.status(&bid) {
                None => ("no-script", None, None),
                Some(Status::Cached) => ("cached", None, None),
                Some(Status::Planned) => ("planned", None, None),
                Some(Status::Failed) if cancelled.contains(&bid) => ("skipped", None, None),
                Some(Status::Failed) => ("failed", None, None),
                Some(Status::Skipped) => ("skipped", None, None),
                Some(_) => match outcome.value(&bid).as_deref() {
                    Some(StoreValue::Build(r)) => match &r.how {
                        How::Ran => ("built", None, Some(r.seconds)),
                        How::Restored => ("restored", None, None),
                        How::Shared { with } => ("shared", Some(with.clone()), None),
                        How::Remote => ("remote", None, None),
                        How::Executed => ("executed", None, Some(r.seconds)),
                    },
                    _ => ("built", None, None),
                },
            };
            let did = deploy_id(&store.id, app);
            let deploy = deployed
                .contains(app)
                .then(|| match outcome.log.status(&did) {
                    Some(Status::Cached) => "cached",
                    Some(Status::Planned) => "planned",
                    Some(Status::Failed) => "failed",
                    Some(Status::Skipped) | None => "skipped",
                    Some(_) => match outcome.value(&did).as_deref() {
                        Some(StoreValue::Out(r))
                            if r.counts.written + r.counts.restored + r.counts.removed == 0 =>
                        {
                            "checked"
                        }
                        _ => "prepared",
                    },
                });
            // Sizes from the values the run computed or checked: a record
            // nobody read is not loaded for them.
            let (output_bytes, remote_action) = match outcome.value(&bid).as_deref() {
                Some(StoreValue::Build(r)) => (
                    Some(r.fingerprints.iter().map(|f| f.size).sum()),
                    ctx.remote.as_ref().map(|_| {
                        strata_engine::reapi::show(&crate::build::cache_action(&ctx, &r.key).0)
                    }),
                ),
                _ => (None, None),
            };
            let deploy_bytes = match deploy.and_then(|_| outcome.value(&did)).as_deref() {
                Some(StoreValue::Out(r)) => Some(r.files.iter().map(|f| f.fingerprint.size).sum()),
                _ => None,
            };
            list.push(AppBuild {
                app: app.clone(),
                build,
                shared_with,
                seconds,
                deploy,
                output_bytes,
                deploy_bytes,
                remote_action,
            });
        }
        stores.push(StoreBuild {
            id: store.id.clone(),
            apps: list,
        });
    }
    let (mut warnings, remote) = match &ctx.remote {
        Some(r) => (
            r.warnings(),
            Some(RemoteUse {
                url: r.url().to_string(),
                downloaded: r.traffic().0,
                uploaded: r.traffic().1,
            }),
        ),
        None => (Vec::new(), None),
    };
    warnings.extend(ctx.warnings.lock().unwrap().drain(..));
    let revision = match outcome.value(&crate::nodes::revision_id()).as_deref() {
        Some(StoreValue::Revision(t)) => Some(t.clone()),
        _ => None,
    };
    Ok(BuildReport {
        revision,
        stores,
        scripts_run: ctx.scripts_run.load(Ordering::Relaxed),
        failures,
        log: outcome.log,
        warnings,
        remote,
        executor: ctx.executor.as_ref().map(|e| ExecutorUse {
            url: e.url().to_string(),
            actions: e.actions_submitted.load(Ordering::Relaxed),
            executed: e.actions_run.load(Ordering::Relaxed),
            workers: e.workers.lock().unwrap().iter().cloned().collect(),
            resumed: e.resumed(),
            server_time: e.timings.lock().unwrap().clone(),
            uploaded: e.traffic().0,
            downloaded: e.traffic().1,
        }),
        rollout_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::filter_apps;

    #[test]
    fn shards_cover_every_store_once() {
        let ids: Vec<String> = ["e", "a", "d", "b", "c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let parts: Vec<Vec<String>> = (1..=3)
            .map(|i| super::shard(&ids, &format!("{i}/3")).unwrap())
            .collect();
        assert_eq!(parts, [vec!["a", "d"], vec!["b", "e"], vec!["c"]]);
        assert!(super::shard(&ids, "0/3").is_err());
        assert!(super::shard(&ids, "4/3").is_err());
        assert!(super::shard(&ids, "x").is_err());
    }

    #[test]
    fn filter_names_and_exclusions() {
        let apps: Vec<String> = ["api", "e2e", "web"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let f = |args: &[&str]| {
            filter_apps(
                &apps,
                &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(f(&[]).unwrap(), ["api", "e2e", "web"]);
        assert_eq!(f(&["web"]).unwrap(), ["web"]);
        assert_eq!(f(&["!e2e"]).unwrap(), ["api", "web"]);
        assert_eq!(f(&["web", "api", "!api"]).unwrap(), ["web"]);
        assert!(
            f(&["nope"])
                .unwrap_err()
                .to_string()
                .contains("base apps: api, e2e, web")
        );
    }
}
