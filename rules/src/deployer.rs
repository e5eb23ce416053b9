//! The deploy command: compose, build and prepare the selected stores, then
//! for each store make its apps' images, push them (or publish them in the
//! local OCI layout), and trigger the deployment, skipping what did not
//! change.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use strata_engine::{ContentHash, Engine, Event, Graph, Status};

use crate::builder::{BuildOptions, BuildReport, build_stores_with};
use crate::error::{Error, Result};
use crate::node_id::NodeId;
use crate::nodes::{
    NodeKind, StoreNode, StoreValue, base_id, build_id, deploy_id, image_id, layer_id, push_id,
    revision_id, scan_id, trigger_id,
};
use crate::oci::auth::Credentials;
use crate::oci::base::{DEFAULT_BASE, Registries};
use crate::oci::image::LayerPart;
use crate::oci::layer::Compression;
use crate::oci::layout::Layout;
use crate::oci::push::BlobHomes;
use crate::prepare::deployed_apps;
use crate::revision::{self, Revision, Tagging, short};
use crate::rollout::{RequestSettings, Rollout, forget_pending};
use crate::workspace::Workspace;

/// What `store deploy` was asked to do.
#[derive(Clone, Debug)]
pub struct DeployOptions {
    /// The build part (stores, jobs, dry run…).
    pub build: BuildOptions,
    /// Where to push: `[http[s]://]host[:port][/prefix]`. None: the local
    /// OCI layout.
    pub registry: Option<String>,
    /// Credentials for the target registry.
    pub credentials: Option<Credentials>,
    /// Plain HTTP to the target (and loopback) registries.
    pub insecure: bool,
    /// Extra CA certificates for TLS (`SSL_CERT_FILE`).
    pub ca_file: Option<PathBuf>,
    /// The base image, overriding the config.
    pub base_image: Option<String>,
    /// `os/arch[/variant]` of base images.
    pub platform: String,
    /// Layer compression.
    pub compression: Compression,
    /// Deploy uncommitted changes, tagged `<sha>-dirty`.
    pub allow_dirty: bool,
    /// The console's deployment endpoint.
    pub console_url: Option<String>,
    /// Push and trigger even when nothing changed.
    pub force: bool,
    /// Resolve base image tags again.
    pub pull: bool,
    /// strata's state folder (`.strata`).
    pub state_dir: PathBuf,
}

/// One app's image.
#[derive(Clone, Debug, Serialize)]
pub struct AppImage {
    /// The app.
    pub app: String,
    /// Where the image is: `<registry>/<repository>:<tag>`, or
    /// `oci:<layout>:<ref>`.
    pub image: String,
    /// The manifest digest.
    pub digest: String,
}

/// One store's deploy.
#[derive(Clone, Debug, Serialize)]
pub struct StoreDeploy {
    /// The store.
    pub id: String,
    /// Each stage: `run`, `cached`, `planned`, `unchanged`, `failed`,
    /// `skipped`.
    pub stages: BTreeMap<&'static str, String>,
    /// The images.
    pub images: Vec<AppImage>,
    /// Bytes sent to the registry.
    pub bytes_uploaded: u64,
    /// What the console answered, or where the deployment was recorded.
    pub message: Option<String>,
    /// Seconds its build scripts (or restores) took, plus its images,
    /// push and trigger.
    pub seconds: f64,
}

/// What `store deploy` did.
#[derive(Debug, Serialize)]
pub struct DeployReport {
    /// The commit SHA.
    pub revision: String,
    /// The tag images got.
    pub tag: String,
    /// Where images went.
    pub target: String,
    /// Per store.
    pub stores: Vec<StoreDeploy>,
    /// The build part.
    pub build: BuildReport,
    /// What failed after the builds.
    #[serde(skip)]
    pub failures: Vec<Error>,
}

/// A registry URL, split: host, repository prefix, whether it said `http://`.
/// Credentials in the URL are refused: they would be printed with image
/// names and recorded in deployments.
fn parse_registry(url: &str) -> Result<(String, String, bool)> {
    let (rest, http) = match url.strip_prefix("http://") {
        Some(r) => (r, true),
        None => (url.strip_prefix("https://").unwrap_or(url), false),
    };
    let rest = rest.trim_end_matches('/');
    let (host, prefix) = match rest.split_once('/') {
        Some((host, prefix)) => (host.to_string(), format!("{prefix}/")),
        None => (rest.to_string(), String::new()),
    };
    if host.contains('@') {
        return Err(Error::BadUrl {
            option: "--registry",
            message: "the registry URL holds credentials: give them with --username/--password or CLI_CLOUD_USERNAME/CLI_CLOUD_PASSWORD instead".into(),
        });
    }
    let bad = |why: String| Error::Usage {
        message: format!(
            "registry {url:?}: {why}; say [http[s]://]host[:port][/prefix], such as registry.example.com/team or http://localhost:5000"
        ),
    };
    if let Some((scheme, _)) = url.split_once("://")
        && scheme != "http"
        && scheme != "https"
    {
        return Err(bad(format!("{scheme}:// is not http:// or https://")));
    }
    if host.is_empty() {
        return Err(bad("no host".into()));
    }
    // The URL parser checks the host and the port (`host:notaport`,
    // `host:99999`, `[::1` fail here, not at the first push).
    let parsed = reqwest::Url::parse(&format!("http://{host}/"))
        .map_err(|e| bad(format!("{host:?} is not a host[:port] ({e})")))?;
    if parsed.host_str().is_none_or(str::is_empty)
        || host.contains(|c: char| c.is_whitespace() || c == '?' || c == '#')
    {
        return Err(bad(format!("{host:?} is not a host[:port]")));
    }
    for part in prefix
        .trim_end_matches('/')
        .split('/')
        .filter(|p| !prefix.is_empty() || !p.is_empty())
    {
        if let Some(reason) = crate::store_id::invalid_reason(part) {
            return Err(bad(format!(
                "the path part {part:?} cannot be in an image name: {reason}"
            )));
        }
    }
    Ok((host, prefix, http))
}

fn repository(ws: &Workspace, store: &str, app: &str, prefix: &str) -> String {
    let settings = ws.config.stores.get(store).cloned().unwrap_or_default();
    let template = ws
        .config
        .strata
        .repository
        .as_deref()
        .unwrap_or("{projectName}/{app}");
    let project = settings
        .deployment
        .project_name
        .unwrap_or_else(|| store.to_string());
    let region = settings.deployment.cloud_region.unwrap_or_default();
    let repo = template
        .replace("{projectName}", &project)
        .replace("{store}", store)
        .replace("{app}", app)
        .replace("{cloudRegion}", &region);
    format!("{prefix}{repo}").to_ascii_lowercase()
}

fn stage_of(statuses: &[&str]) -> String {
    if statuses.contains(&"failed") {
        "failed"
    } else if statuses.contains(&"skipped") {
        "skipped"
    } else if statuses.contains(&"planned") {
        "planned"
    } else if statuses
        .iter()
        .all(|s| matches!(*s, "cached" | "no-script" | "checked"))
    {
        "cached"
    } else {
        "run"
    }
    .to_string()
}

/// The base image of `store`: `--base-image`, the store's
/// `deployment.baseImage`, `"strata": {"baseImage"}`, or the default.
fn base_name(ws: &Workspace, options: &DeployOptions, store: &str) -> String {
    options
        .base_image
        .clone()
        .or_else(|| {
            ws.config
                .stores
                .get(store)
                .and_then(|s| s.deployment.base_image.clone())
        })
        .or_else(|| ws.config.strata.base_image.clone())
        .unwrap_or_else(|| DEFAULT_BASE.to_string())
}

/// The ids of the stores `options` selects.
fn selected(ws: &Workspace, options: &DeployOptions) -> Result<Vec<String>> {
    Ok(ws
        .select(&options.build.stores)?
        .into_iter()
        .map(|s| s.id.clone())
        .collect())
}

/// What the rollout nodes of a deploy with `options` to `target` (host,
/// prefix, plain HTTP) share. `deploying` is the commit it deploys;
/// without it (the graph's picture) nothing is tagged, pulled or sent.
fn rollout(
    ws: &Workspace,
    engine: &Engine,
    options: &DeployOptions,
    target: Option<&(String, String, bool)>,
    deploying: Option<&Revision>,
) -> Result<Rollout> {
    let insecure = options.insecure || target.is_some_and(|(_, _, http)| *http);
    Ok(Rollout {
        root: ws.root().to_path_buf(),
        layout: Layout::open(&options.state_dir.join("oci"))?,
        layers: engine.db().tree("layers")?,
        homes: BlobHomes::new(engine.db().tree("blob-homes")?),
        registries: Arc::new(Registries::new(
            target.map(|(h, _, _)| h.clone()),
            options.credentials.clone(),
            insecure,
            options.ca_file.clone(),
        )),
        tags: Arc::default(),
        target: target.map(|(h, p, _)| (h.clone(), p.clone())),
        sha: deploying.map(|rev| rev.sha.clone()).unwrap_or_default(),
        epoch: deploying.map_or(0, |rev| rev.epoch),
        source: deploying.and_then(|rev| rev.source.clone()),
        platform: options.platform.clone(),
        pull: deploying.is_some() && options.pull,
        compression: options.compression,
        console: options.console_url.clone(),
        credentials: options.credentials.clone(),
        pending: engine.db().tree("deploy-pending")?,
        db: engine.db().clone(),
        legacy: engine.db().tree("deployments")?,
        legacy_bases: engine.db().tree("bases")?,
        dry_run: deploying.is_none() || options.build.dry_run,
    })
}

/// The whole graph a deploy of `options` runs, for its picture: every
/// node with its kind, its inputs and what it runs after. Nothing runs.
pub fn deploy_graph(
    ws: &Workspace,
    engine: &Engine,
    options: &DeployOptions,
) -> Result<Graph<StoreNode>> {
    let target = options
        .registry
        .as_deref()
        .map(parse_registry)
        .transpose()?;
    let rollout = Arc::new(rollout(ws, engine, options, target.as_ref(), None)?);
    let selected = selected(ws, options)?;
    let ctx = Arc::new(crate::builder::build_context(ws, engine, &options.build)?);
    let mut graph = crate::builder::build_graph(ws, engine, &options.build, &ctx)?;
    add_rollout(&mut graph, ws, engine, options, &rollout, &selected)?;
    Ok(graph)
}

/// Adds each selected store's rollout above its `.deploy` nodes: its base,
/// an image and a push per deployed app, and its trigger, which reads the
/// images (its key) and runs after the pushes (it does not read them: a
/// new tag is no new deployment). The pushes read the tag from the
/// revision node, which every build runs after: it reads the working tree
/// beside the scans, and a deploy it refuses builds nothing.
fn add_rollout(
    graph: &mut Graph<StoreNode>,
    ws: &Workspace,
    engine: &Engine,
    options: &DeployOptions,
    rollout: &Arc<Rollout>,
    stores: &[String],
) -> Result<()> {
    let revision = revision_id();
    let dirs = layer_dirs(ws, stores);
    graph.add(StoreNode::Revision {
        id: revision.clone(),
        allow_dirty: allows_dirty(options),
        dirs: dirs.clone(),
        files: revision::root_files(ws.root(), engine.stat_cache())?,
        cache: engine.stat_cache().clone(),
        rollout: rollout.clone(),
    })?;
    for dir in &dirs {
        graph.depend(&revision, &scan_id(dir))?;
    }
    // Nothing is built, prepared or pulled before the tag is known: a
    // refused deploy does no work.
    for store in stores {
        for app in &ws.base_apps {
            for id in [build_id(store, app), deploy_id(store, app)] {
                if graph.contains(&id) {
                    graph.order(&id, &revision)?;
                }
            }
        }
    }
    for store in stores {
        let apps: Vec<String> = deployed_apps(ws, store)
            .into_iter()
            .filter(|app| graph.contains(&deploy_id(store, app)))
            .collect();
        if apps.is_empty() {
            continue;
        }
        let name = base_name(ws, options, store);
        let base = base_id(&name);
        if !graph.contains(&base) {
            graph.add(StoreNode::Base {
                id: base.clone(),
                name,
                rollout: rollout.clone(),
            })?;
            graph.order(&base, &revision)?;
        }
        let trigger = trigger_id(store);
        let mut images = Vec::new();
        for app in &apps {
            let mut layers = Vec::new();
            for part in LayerPart::ALL {
                let layer = layer_id(store, app, part);
                graph.add(StoreNode::Layer {
                    id: layer.clone(),
                    store: store.clone(),
                    app: app.clone(),
                    part,
                    deploy: deploy_id(store, app),
                    rollout: rollout.clone(),
                })?;
                graph.depend(&layer, &deploy_id(store, app))?;
                layers.push(layer);
            }
            let image = image_id(store, app);
            graph.add(StoreNode::Image {
                id: image.clone(),
                store: store.clone(),
                app: app.clone(),
                deploy: deploy_id(store, app),
                base: base.clone(),
                layers: layers.clone(),
                rollout: rollout.clone(),
            })?;
            graph.depend(&image, &deploy_id(store, app))?;
            graph.depend(&image, &base)?;
            for layer in &layers {
                graph.depend(&image, layer)?;
            }
            let repository = match &rollout.target {
                Some((_, prefix)) => repository(ws, store, app, prefix),
                None => format!("{store}-{app}"),
            };
            let push = push_id(store, app);
            graph.add(StoreNode::Push {
                id: push.clone(),
                image: image.clone(),
                base: base.clone(),
                repository: repository.clone(),
                revision: revision.clone(),
                rollout: rollout.clone(),
            })?;
            graph.depend(&push, &image)?;
            graph.depend(&push, &base)?;
            graph.depend(&push, &revision)?;
            images.push((app.clone(), image, repository));
        }
        let settings = ws.config.stores.get(store).cloned().unwrap_or_default();
        graph.add(StoreNode::Trigger {
            id: trigger.clone(),
            settings: RequestSettings {
                store: store.clone(),
                project_name: settings
                    .deployment
                    .project_name
                    .clone()
                    .unwrap_or_else(|| store.clone()),
                cloud_region: settings.deployment.cloud_region.clone(),
                framework: settings.deployment.framework.clone(),
            },
            images: images.clone(),
            rollout: rollout.clone(),
        })?;
        for (app, image, _) in &images {
            graph.depend(&trigger, image)?;
            graph.order(&trigger, &push_id(store, app))?;
        }
    }
    Ok(())
}

/// The layer folders the compositions of `stores` read (the scans the
/// revision node reads).
fn layer_dirs(ws: &Workspace, stores: &[String]) -> Vec<String> {
    let mut dirs = std::collections::BTreeSet::new();
    for store in stores {
        for app in &ws.base_apps {
            dirs.extend(ws.layers(store, app).into_iter().map(|l| l.dir));
        }
    }
    dirs.into_iter().collect()
}

/// Whether uncommitted work is tagged `<sha>-dirty` rather than refused:
/// with `--allow-dirty`, or when nothing leaves the machine (no registry,
/// no console: a local deploy of work in progress is tagged for what it is).
fn allows_dirty(options: &DeployOptions) -> bool {
    options.allow_dirty || (options.registry.is_none() && options.console_url.is_none())
}

/// A rollout stage's word for a node's status: `cached` (or `unchanged`
/// for a push or trigger), `run`, `planned`, `failed`, `skipped`.
fn rollout_status(status: Option<Status>, cached: &'static str) -> &'static str {
    match status {
        Some(Status::Cached) => cached,
        Some(Status::Planned) => "planned",
        Some(Status::Failed) => "failed",
        Some(Status::Skipped) | None => "skipped",
        Some(_) => "run",
    }
}

/// Why a node would run, down the chain of inputs that would run, to the
/// input that changed: `trigger/s <- image/s/a <- … : scan/<dir> changed
/// (<dir>/<file>)`.
fn reason_chain(ws: &Workspace, engine: &Engine, log: &strata_engine::RunLog, id: &str) -> String {
    let mut parts = vec![id.to_string()];
    let mut at = id.to_string();
    for _ in 0..64 {
        let Some(reason) = log
            .events
            .iter()
            .find(|e| e.id == at)
            .and_then(|e| e.reason.clone())
        else {
            break;
        };
        match reason.strip_suffix(" would run") {
            Some(next) => {
                parts.push(next.to_string());
                at = next.to_string();
            }
            None => {
                let files = match reason
                    .strip_suffix(" changed")
                    .and_then(|r| r.parse::<NodeId>().ok())
                {
                    Some(NodeId::Scan { dir }) => changed_files(ws, engine, &dir),
                    // A lockfile setting says which packages changed.
                    Some(NodeId::Setting { name }) => log
                        .events
                        .iter()
                        .find(|e| e.id == name && e.status == Status::Changed)
                        .and_then(|e| e.reason.clone())
                        .filter(|r| !r.starts_with("it "))
                        .into_iter()
                        .collect(),
                    _ => Vec::new(),
                };
                return if files.is_empty() {
                    format!("{}: {reason}", parts.join(" <- "))
                } else {
                    format!("{}: {reason} ({})", parts.join(" <- "), files.join(", "))
                };
            }
        }
    }
    parts.join(" <- ")
}

/// The files of the layer folder `dir` that differ from its last recorded
/// scan: what a dry run names as the reason (at most 5, then a count).
fn changed_files(ws: &Workspace, engine: &Engine, dir: &str) -> Vec<String> {
    let Ok(Some(StoreValue::Listing(before))) = engine.load::<StoreNode>(&scan_id(dir)) else {
        return Vec::new();
    };
    let Ok(now) = crate::listing::Listing::scan(ws.root(), dir, Some(engine.stat_cache())) else {
        return Vec::new();
    };
    let old: HashMap<&str, &ContentHash> = before
        .entries
        .iter()
        .map(|e| (e.path.as_str(), &e.digest))
        .collect();
    let new: HashMap<&str, &ContentHash> = now
        .entries
        .iter()
        .map(|e| (e.path.as_str(), &e.digest))
        .collect();
    let mut changed: Vec<String> = new
        .iter()
        .filter(|(p, d)| old.get(*p) != Some(*d))
        .map(|(p, _)| format!("{dir}/{p}"))
        .chain(
            old.keys()
                .filter(|p| !new.contains_key(*p))
                .map(|p| format!("{dir}/{p} (removed)")),
        )
        .collect();
    changed.sort();
    if changed.len() > 5 {
        let more = changed.len() - 5;
        changed.truncate(5);
        changed.push(format!("{more} more"));
    }
    changed
}

/// Deploys the selected stores: one graph from the sources to the
/// triggers, so that only what changed runs (and rolls out).
pub fn deploy(
    ws: &Workspace,
    engine: &Engine,
    options: &DeployOptions,
    observe: &(dyn Fn(&Event) + Sync),
) -> Result<DeployReport> {
    let head = revision::head(ws.root())?;
    let target = options
        .registry
        .as_deref()
        .map(parse_registry)
        .transpose()?;
    let selected = selected(ws, options)?;
    let rollout = rollout(ws, engine, options, target.as_ref(), Some(&head))?;
    // The registry is asked what the tags name while the sources are
    // scanned: the pushes' checks take the answers. Only pushes that ran
    // before can be cached, and only under the tag recorded last: after a
    // new commit every push runs again, and nothing is asked.
    let recorded_tag = match engine.load::<StoreNode>(&revision_id())? {
        Some(StoreValue::Revision(t)) if t.sha == head.sha => Some(t.tag),
        _ => None,
    };
    if let Some((host, prefix, _)) = &target
        && !options.force
        && let Some(tag) = recorded_tag
        && let Ok(registry) = rollout.registries.get(host)
    {
        let mut repositories = Vec::new();
        for store in &selected {
            for app in deployed_apps(ws, store) {
                if engine.recorded_key(&push_id(store, &app))?.is_some() {
                    repositories.push(repository(ws, store, &app, prefix));
                }
            }
        }
        if !repositories.is_empty() {
            rollout.tags.ask(registry, repositories, tag);
        }
    }
    let rollout = Arc::new(rollout);
    // Two stores must not claim one repository and tag.
    if let Some((_, prefix, _)) = &target {
        let mut owners: HashMap<String, String> = HashMap::new();
        for store in &selected {
            for app in deployed_apps(ws, store) {
                let repo = repository(ws, store, &app, prefix);
                if let Some(other) = owners.insert(repo.clone(), store.clone()) {
                    return Err(Error::RepositoryClash {
                        first: other,
                        second: store.clone(),
                        repository: repo,
                        tag: head.sha.clone(),
                    });
                }
            }
        }
    }
    // --force: every selected store is pushed and triggered again, as a
    // new deployment (a new idempotency key). Its records are forgotten
    // only once the tag is known to be allowed: a refused deploy changes
    // nothing.
    if options.force && !options.build.dry_run {
        if !allows_dirty(options) {
            let mut paths: Vec<(String, Option<ContentHash>)> = layer_dirs(ws, &selected)
                .into_iter()
                .map(|dir| (dir, None))
                .collect();
            paths.extend(revision::root_files(ws.root(), engine.stat_cache())?);
            revision::tagging(ws.root(), &head.sha, &paths, None, false, &|_| Ok(None))?;
        }
        for store in &selected {
            for app in deployed_apps(ws, store) {
                engine.forget(&push_id(store, &app))?;
            }
            engine.forget(&trigger_id(store))?;
            forget_pending(&rollout, store)?;
        }
    }
    let extend =
        |graph: &mut Graph<StoreNode>| add_rollout(graph, ws, engine, options, &rollout, &selected);
    let mut build = build_stores_with(ws, engine, &options.build, observe, &extend, true)?;
    let log = &build.log;
    let mut errors: HashMap<String, Error> = std::mem::take(&mut build.rollout_errors)
        .into_iter()
        .collect();
    let value = |id: &str| engine.load::<StoreNode>(id).ok().flatten();
    let mut stores = Vec::new();
    let mut failures = Vec::new();
    for store in &build.stores {
        let deployed = deployed_apps(ws, &store.id);
        let mut stages: BTreeMap<&'static str, String> = BTreeMap::new();
        let composes: Vec<&str> = log
            .events
            .iter()
            .filter(|e| {
                e.id.parse::<NodeId>().is_ok_and(|id| {
                    id.kind() == NodeKind::Materialize && id.store() == Some(store.id.as_str())
                })
            })
            .map(|e| rollout_status(Some(e.status), "cached"))
            .collect();
        stages.insert("compose", stage_of(&composes));
        let builds: Vec<&str> = store.apps.iter().map(|a| a.build).collect();
        stages.insert("build", stage_of(&builds));
        let prepares: Vec<&str> = store
            .apps
            .iter()
            .filter(|a| deployed.contains(&a.app))
            .map(|a| a.deploy.unwrap_or("skipped"))
            .collect();
        let prepare = stage_of(&prepares);
        stages.insert("prepare", prepare.clone());
        let images: Vec<&str> = deployed
            .iter()
            .map(|app| rollout_status(log.status(&image_id(&store.id, app)), "cached"))
            .collect();
        stages.insert("image", stage_of(&images));
        let pushes: Vec<&str> = deployed
            .iter()
            .map(|app| rollout_status(log.status(&push_id(&store.id, app)), "unchanged"))
            .collect();
        let push = if pushes.iter().all(|p| *p == "unchanged") {
            "unchanged".to_string()
        } else {
            stage_of(&pushes)
        };
        stages.insert("push", push);
        let trigger_status = log.status(&trigger_id(&store.id));
        stages.insert(
            "trigger",
            rollout_status(trigger_status, "unchanged").to_string(),
        );

        // Its builds' time, then its images, push and trigger.
        let mut seconds: f64 = store
            .apps
            .iter()
            .filter_map(|a| a.seconds)
            .fold(0.0, |sum, s| sum + s);
        let mine = |id: &str| {
            id.parse::<NodeId>().is_ok_and(|id| {
                id.store() == Some(store.id.as_str())
                    && matches!(
                        id.kind(),
                        NodeKind::Layer | NodeKind::Image | NodeKind::Push | NodeKind::Trigger
                    )
            })
        };
        seconds += log
            .events
            .iter()
            .filter(|e| mine(&e.id) && e.status.recomputed())
            .fold(0.0, |sum, e| sum + e.duration.as_secs_f64());
        let mut result = StoreDeploy {
            id: store.id.clone(),
            stages,
            images: Vec::new(),
            bytes_uploaded: 0,
            message: None,
            seconds,
        };
        let ran = |id: &str| matches!(log.status(id), Some(Status::Changed | Status::Unchanged));
        for app in &deployed {
            let pid = push_id(&store.id, app);
            let published = ran(&pid) || log.status(&pid) == Some(Status::Cached);
            if let Some(StoreValue::Published(p)) = value(&pid).filter(|_| published) {
                if ran(&pid) {
                    result.bytes_uploaded += p.bytes;
                }
                result.images.push(AppImage {
                    app: app.clone(),
                    image: p.name,
                    digest: p.digest,
                });
            }
        }
        // What went wrong, in the order the stages run: every failed node
        // of the store, its base's (shared by stores) told to each.
        let base = base_id(&base_name(ws, options, &store.id));
        let has_rollout = log.status(&trigger_id(&store.id)).is_some();
        let mut problems = Vec::new();
        if has_rollout && let Some(e) = errors.get(&base) {
            problems.push(e.to_string());
            failures.push(Error::Image {
                message: format!("{}: {e}", store.id),
            });
        }
        for id in deployed
            .iter()
            .flat_map(|app| LayerPart::ALL.map(|part| layer_id(&store.id, app, part)))
            .chain(deployed.iter().map(|app| image_id(&store.id, app)))
            .chain(deployed.iter().map(|app| push_id(&store.id, app)))
            .chain(std::iter::once(trigger_id(&store.id)))
        {
            if let Some(e) = errors.remove(&id) {
                problems.push(e.to_string());
                failures.push(e);
            }
        }
        let force_planned = options.build.dry_run && options.force;
        if force_planned && has_rollout {
            result.stages.insert("push", "planned".into());
            result.stages.insert("trigger", "planned".into());
        }
        result.message = if !problems.is_empty() {
            Some(problems.join("; "))
        } else if matches!(prepare.as_str(), "failed" | "skipped") {
            Some("not deployed: a build or .deploy failed".into())
        } else if force_planned {
            Some("--force: would push and trigger again".into())
        } else if options.build.dry_run {
            Some(match trigger_status {
                Some(Status::Cached) if result.stages["push"] == "unchanged" => {
                    "nothing would change: not pushed or triggered again".into()
                }
                Some(Status::Cached) => {
                    "its images are unchanged: they would only get the new tag, and it would not be triggered again".into()
                }
                _ => format!(
                    "would deploy: {}",
                    reason_chain(ws, engine, log, &trigger_id(&store.id))
                ),
            })
        } else {
            match value(&trigger_id(&store.id)) {
                Some(StoreValue::Deployed(d)) if trigger_status == Some(Status::Cached) => {
                    Some(format!(
                        "unchanged since commit {} (the images deployed then): not triggered again",
                        short(&d.request.commit)
                    ))
                }
                Some(StoreValue::Deployed(d)) if ran(&trigger_id(&store.id)) => Some(d.answer),
                _ => None,
            }
        };
        stores.push(result);
    }
    engine.db().flush()?;
    let target_text = match &target {
        Some((host, prefix, _)) => format!("{host}/{prefix}"),
        None => format!("oci:{}", rollout.layout.dir().display()),
    };
    // The tag the revision node gave, or kept from an earlier run with the
    // same key; HEAD's SHA when it did not run (the run stopped first).
    let cached = build.log.status(&revision_id()) == Some(Status::Cached);
    let tagging = match build.revision.take().or_else(|| {
        match engine.load::<StoreNode>(&revision_id()).ok().flatten() {
            Some(StoreValue::Revision(t)) if cached => Some(t),
            _ => None,
        }
    }) {
        Some(t) => t,
        None => Tagging::of(&head.sha, Vec::new(), true)?,
    };
    if !tagging.dirty.is_empty() && !options.allow_dirty {
        build.warnings.push(format!(
            "uncommitted changes ({}): images in the local layout are tagged {}-dirty (a deploy to a registry or a console refuses them without --allow-dirty)",
            tagging.dirty.join(", "),
            short(&tagging.sha),
        ));
    }
    Ok(DeployReport {
        revision: head.sha,
        tag: tagging.tag,
        target: target_text,
        stores,
        build,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_registry;

    #[test]
    fn registry_urls() {
        let parse = |url: &str| parse_registry(url).unwrap();
        assert_eq!(
            parse("http://127.0.0.1:5000"),
            ("127.0.0.1:5000".into(), "".into(), true)
        );
        assert_eq!(
            parse("https://r.example.com/team/"),
            ("r.example.com".into(), "team/".into(), false)
        );
        assert_eq!(
            parse("r.example.com:443"),
            ("r.example.com:443".into(), "".into(), false)
        );
        assert!(parse_registry("https://u:p@r.example.com").is_err());
        for bad in [
            "http://",
            "https://",
            "",
            "ht!tp://x",
            "ftp://host",
            "host:notaport",
            "http://host:99999",
            "://x",
            "http://[::1",
            "http://host/with space",
            "http://host/Team",
        ] {
            assert!(
                matches!(parse_registry(bad), Err(crate::Error::Usage { .. })),
                "{bad:?} passed"
            );
        }
        assert_eq!(
            parse("http://[::1]:5000/a/b"),
            ("[::1]:5000".into(), "a/b/".into(), true)
        );
    }
}
