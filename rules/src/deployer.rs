//! The deploy command: compose, build and prepare the selected stores, then
//! for each store make its apps' images, push them (or publish them in the
//! local OCI layout), and trigger the deployment, skipping what did not
//! change.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use strata_engine::{Engine, Event, Tree};

use crate::builder::{BuildOptions, BuildReport, build_stores};
use crate::deployment::{DeploymentRequest, record, trigger};
use crate::error::{Error, Result};
use crate::nodes::{OUT, StoreNode, StoreValue, deploy_dir, deploy_id};
use crate::oci::auth::Credentials;
use crate::oci::base::{DEFAULT_BASE, Registries, resolve_base};
use crate::oci::image::{BaseImage, BuiltImage, ImageMeta, build_image};
use crate::oci::layer::Compression;
use crate::oci::layout::Layout;
use crate::oci::push::{BlobHomes, push_image};
use crate::prepare::deployed_apps;
use crate::revision::revision;
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

/// What is recorded of a store's last successful deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
struct Deployed {
    request: DeploymentRequest,
    tag: String,
    target: String,
    console: Option<String>,
}

/// A trigger that was about to be sent: recorded (and flushed) before the
/// request leaves, removed once the console answered. A run killed in
/// between leaves it behind, and the next run sends the same deployment
/// with the same idempotency key, so the console counts it once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
struct Pending {
    deployment: Deployed,
    key: String,
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

struct Context<'a> {
    ws: &'a Workspace,
    engine: &'a Engine,
    options: &'a DeployOptions,
    layout: Layout,
    layers: Tree,
    bases_cache: Tree,
    deployments: Tree,
    pending: Tree,
    homes: BlobHomes,
    registries: Registries,
    target: Option<(String, String)>,
    bases: Mutex<HashMap<String, std::result::Result<Arc<BaseImage>, String>>>,
    tag: String,
    sha: String,
    epoch: u64,
    source: Option<String>,
}

impl Context<'_> {
    fn base(&self, name: &str) -> Result<Arc<BaseImage>> {
        let mut bases = self.bases.lock().unwrap();
        if let Some(found) = bases.get(name) {
            return found.clone().map_err(|message| Error::Image { message });
        }
        let resolved = resolve_base(
            name,
            &self.options.platform,
            &self.layout,
            &self.bases_cache,
            &self.registries,
            self.options.pull,
        )
        .map(Arc::new)
        .map_err(|e| e.to_string());
        bases.insert(name.to_string(), resolved.clone());
        resolved.map_err(|message| Error::Image { message })
    }

    fn base_name(&self, store: &str) -> String {
        self.options
            .base_image
            .clone()
            .or_else(|| {
                self.ws
                    .config
                    .stores
                    .get(store)
                    .and_then(|s| s.deployment.base_image.clone())
            })
            .or_else(|| self.ws.config.strata.base_image.clone())
            .unwrap_or_else(|| DEFAULT_BASE.to_string())
    }

    /// Builds, publishes and triggers one store.
    fn deploy_store(
        &self,
        store: &str,
        stages: &mut BTreeMap<&'static str, String>,
    ) -> Result<(Vec<AppImage>, u64, Option<String>)> {
        let apps = deployed_apps(self.ws, store);
        let base = self.base(&self.base_name(store))?;
        let mut built: Vec<(String, BuiltImage)> = Vec::new();
        for app in &apps {
            let Some(StoreValue::Out(files)) =
                self.engine.load::<StoreNode>(&deploy_id(store, app))?
            else {
                return Err(Error::Image {
                    message: format!("{store}/{app}: no .deploy folder was prepared"),
                });
            };
            let meta = ImageMeta {
                store: store.to_string(),
                app: app.clone(),
                composition: files.composition.to_hex(),
                source: self.source.clone(),
                epoch: self.epoch,
            };
            let image = build_image(
                &self.layout,
                &self.layers,
                &base,
                &deploy_dir(self.ws.root(), store, app),
                &files.files,
                &meta,
                self.options.compression,
            )?;
            built.push((app.clone(), image));
        }
        stages.insert("image", "run".into());

        let settings = self
            .ws
            .config
            .stores
            .get(store)
            .cloned()
            .unwrap_or_default();
        let mut images = Vec::new();
        let mut request = DeploymentRequest {
            store: store.to_string(),
            project_name: settings
                .deployment
                .project_name
                .clone()
                .unwrap_or_else(|| store.to_string()),
            cloud_region: settings.deployment.cloud_region.clone(),
            framework: settings.deployment.framework.clone(),
            commit: self.sha.clone(),
            images: BTreeMap::new(),
        };
        for (app, image) in &built {
            let (name, pinned) = match &self.target {
                Some((host, prefix)) => {
                    let repo = repository(self.ws, store, app, prefix);
                    (
                        format!("{host}/{repo}:{}", self.tag),
                        format!("{host}/{repo}@{}", image.manifest.digest),
                    )
                }
                None => {
                    let reference = format!("{store}-{app}:{}", self.tag);
                    (
                        format!("oci:{}:{reference}", self.layout.dir().display()),
                        format!("{store}-{app}@{}", image.manifest.digest),
                    )
                }
            };
            request.images.insert(app.clone(), pinned);
            images.push(AppImage {
                app: app.clone(),
                image: name,
                digest: image.manifest.digest.clone(),
            });
        }

        let done = Deployed {
            request: request.clone(),
            tag: self.tag.clone(),
            target: self.target_text(),
            console: self.options.console_url.clone(),
        };
        let last: Option<Deployed> = self
            .deployments
            .get(store.as_bytes())?
            .and_then(|b| serde_json::from_slice(&b).ok());
        // The same images (by digest), settings, place and console as the
        // last successful deployment: what runs there is what would be
        // rolled out, so it is not triggered again (unless --force), even
        // under a new commit. The commit only moves the tag.
        let same_rollout = last.as_ref().filter(|l| {
            l.request.images == request.images
                && l.request.project_name == request.project_name
                && l.request.cloud_region == request.cloud_region
                && l.request.framework == request.framework
                && l.target == done.target
                && l.console == done.console
        });
        let still_there = match &self.target {
            Some((host, prefix)) => {
                let registry = self.registries.get(host)?;
                built.iter().all(|(app, _)| {
                    registry
                        .has_manifest(&repository(self.ws, store, app, prefix), &self.tag)
                        .unwrap_or(false)
                })
            }
            None => true,
        };
        let unchanged_since = |last: &Deployed| {
            format!(
                "unchanged since commit {} (the images deployed then): not triggered again",
                short(&last.request.commit)
            )
        };
        if let Some(last) = same_rollout
            && last.tag == self.tag
            && still_there
            && !self.options.force
        {
            // Nothing new: keep the local layout's names right (cheap), and
            // neither push nor trigger again.
            if self.target.is_none() {
                self.tag_locally(store, &built)?;
            }
            stages.insert("image", "cached".into());
            stages.insert("push", "unchanged".into());
            stages.insert("trigger", "unchanged".into());
            return Ok((images, 0, Some(unchanged_since(last))));
        }

        let mut bytes = 0;
        match &self.target {
            Some((host, prefix)) => {
                let registry = self.registries.get(host)?;
                for (app, image) in &built {
                    let repo = repository(self.ws, store, app, prefix);
                    let stats = push_image(
                        &registry,
                        &self.layout,
                        &self.homes,
                        &base,
                        image,
                        &repo,
                        &self.tag,
                    )?;
                    bytes += stats.bytes;
                }
            }
            None => self.tag_locally(store, &built)?,
        }
        stages.insert("push", "run".into());
        if let Some(last) = same_rollout
            && !self.options.force
        {
            // Tagged with the new commit; the deployment stays the one made
            // at the commit that changed its images.
            let tagged = Deployed {
                tag: self.tag.clone(),
                ..last.clone()
            };
            self.deployments.insert(
                store.as_bytes(),
                &serde_json::to_vec(&tagged).expect("a record serializes"),
            )?;
            self.engine.db().flush()?;
            stages.insert("trigger", "unchanged".into());
            return Ok((images, bytes, Some(unchanged_since(last))));
        }
        let message = match &self.options.console_url {
            Some(url) => {
                let pending: Option<Pending> = self
                    .pending
                    .get(store.as_bytes())?
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let key = match pending {
                    Some(p) if p.deployment == done && !self.options.force => p.key,
                    _ => request.idempotency_key(),
                };
                let intent = Pending {
                    deployment: done.clone(),
                    key: key.clone(),
                };
                self.pending.insert(
                    store.as_bytes(),
                    &serde_json::to_vec(&intent).expect("a record serializes"),
                )?;
                self.engine.db().flush()?;
                let answer = match trigger(url, self.options.credentials.as_ref(), &request, &key) {
                    Ok(answer) => answer,
                    // A refusal is an answer: nothing is pending, and the
                    // next run is a new request with a new key. Any other
                    // failure leaves the outcome unknown: the intent stays.
                    Err(e @ Error::ConsoleRefused { .. }) => {
                        self.pending.remove(store.as_bytes())?;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                Some(format!("console: {}", answer.trim()))
            }
            None => {
                let dir = self.ws.root().join(OUT).join(store);
                record(&dir, &request)?;
                Some(format!("recorded in {OUT}/{store}/deployment.json"))
            }
        };
        stages.insert("trigger", "run".into());
        self.deployments.insert(
            store.as_bytes(),
            &serde_json::to_vec(&done).expect("a record serializes"),
        )?;
        self.pending.remove(store.as_bytes())?;
        self.engine.db().flush()?;
        Ok((images, bytes, message))
    }

    fn target_text(&self) -> String {
        match &self.target {
            Some((host, prefix)) => format!("{host}/{prefix}"),
            None => "oci-layout".into(),
        }
    }

    fn tag_locally(&self, store: &str, built: &[(String, BuiltImage)]) -> Result<()> {
        for (app, image) in built {
            let reference = format!("{store}-{app}:{}", self.tag);
            let current = self.layout.resolve(Some(&reference)).ok();
            if current.map(|d| d.digest) != Some(image.manifest.digest.clone()) {
                self.layout
                    .tag(&reference, &image.manifest, Some(&image.platform))?;
            }
        }
        Ok(())
    }
}

/// The first 12 hex digits of a commit id.
fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
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

/// Deploys the selected stores.
pub fn deploy(
    ws: &Workspace,
    engine: &Engine,
    options: &DeployOptions,
    observe: &(dyn Fn(&Event) + Sync),
) -> Result<DeployReport> {
    let rev = revision(ws.root())?;
    // Nothing leaves the machine with no registry and no console: a local
    // deploy of work in progress is tagged for what it is, not refused.
    let local = options.registry.is_none() && options.console_url.is_none();
    let mut dirty_note = None;
    let tag = if rev.dirty.is_empty() {
        rev.sha.clone()
    } else if options.allow_dirty || local {
        if !options.allow_dirty {
            dirty_note = Some(format!(
                "uncommitted changes ({}): images in the local layout are tagged {}-dirty (a deploy to a registry or a console refuses them without --allow-dirty)",
                rev.dirty.join(", "),
                &rev.sha[..12]
            ));
        }
        format!("{}-dirty", rev.sha)
    } else {
        return Err(Error::GitRef {
            message: format!(
                "uncommitted changes ({}): images are tagged with the commit SHA {}, which would not describe what is deployed; commit them, or pass --allow-dirty to tag {}-dirty",
                rev.dirty.join(", "),
                &rev.sha[..12],
                &rev.sha[..12]
            ),
        });
    };
    let target = options
        .registry
        .as_deref()
        .map(parse_registry)
        .transpose()?;
    let insecure = options.insecure || target.as_ref().is_some_and(|(_, _, http)| *http);
    let layout = Layout::open(&options.state_dir.join("oci"))?;
    let registries = Registries::new(
        target.as_ref().map(|(h, _, _)| h.clone()),
        options.credentials.clone(),
        insecure,
        options.ca_file.clone(),
    );
    let cx = Context {
        ws,
        engine,
        options,
        layout,
        layers: engine.db().tree("layers")?,
        bases_cache: engine.db().tree("bases")?,
        deployments: engine.db().tree("deployments")?,
        pending: engine.db().tree("deploy-pending")?,
        homes: BlobHomes::new(engine.db().tree("blob-homes")?),
        registries,
        target: target.as_ref().map(|(h, p, _)| (h.clone(), p.clone())),
        bases: Mutex::new(HashMap::new()),
        tag: tag.clone(),
        sha: rev.sha.clone(),
        epoch: rev.epoch,
        source: rev.source.clone(),
    };

    // Two stores must not claim one repository and tag.
    if let Some((_, prefix, _)) = &target {
        let mut owners: HashMap<String, String> = HashMap::new();
        for store in ws.select(&options.build.stores)? {
            for app in deployed_apps(ws, &store.id) {
                let repo = repository(ws, &store.id, &app, prefix);
                if let Some(other) = owners.insert(repo.clone(), store.id.clone()) {
                    return Err(Error::RepositoryClash {
                        first: other,
                        second: store.id.clone(),
                        repository: repo,
                        tag: tag.clone(),
                    });
                }
            }
        }
    }

    let build = build_stores(ws, engine, &options.build, observe)?;
    let started = Instant::now();
    let results: Vec<(StoreDeploy, Option<Error>)> = build
        .stores
        .par_iter()
        .map(|store| {
            let deployed = deployed_apps(ws, &store.id);
            let mut stages: BTreeMap<&'static str, String> = BTreeMap::new();
            let composes: Vec<&str> = build
                .log
                .events
                .iter()
                .filter(|e| e.id.starts_with(&format!("out/{}/", store.id)))
                .map(|e| match e.status {
                    strata_engine::Status::Cached => "cached",
                    strata_engine::Status::Planned => "planned",
                    strata_engine::Status::Failed => "failed",
                    strata_engine::Status::Skipped => "skipped",
                    _ => "run",
                })
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
            let mut result = StoreDeploy {
                id: store.id.clone(),
                stages,
                images: Vec::new(),
                bytes_uploaded: 0,
                message: None,
                // Its builds' time, then its images, push and trigger.
                seconds: store
                    .apps
                    .iter()
                    .filter_map(|a| a.seconds)
                    .fold(0.0, |sum, s| sum + s),
            };
            if options.build.dry_run {
                let last: Option<Deployed> = cx
                    .deployments
                    .get(store.id.as_bytes())
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let same_commit =
                    last.is_some_and(|l| l.request.commit == cx.sha && l.tag == cx.tag);
                let later = if prepare == "cached" && same_commit && !options.force {
                    "cached"
                } else {
                    "planned"
                };
                for stage in ["image", "push", "trigger"] {
                    result.stages.insert(stage, later.into());
                }
                result.message = Some(match later {
                    "cached" => "deployed at this commit and nothing changed since".into(),
                    _ if !same_commit => "not deployed at this commit yet".into(),
                    _ => "inputs changed since the last deployment".into(),
                });
                return (result, None);
            }
            if matches!(prepare.as_str(), "failed" | "skipped") {
                for stage in ["image", "push", "trigger"] {
                    result.stages.insert(stage, "skipped".into());
                }
                result.message = Some("not deployed: a build or .deploy failed".into());
                return (result, None);
            }
            let t = Instant::now();
            match cx.deploy_store(&store.id, &mut result.stages) {
                Ok((images, bytes, message)) => {
                    result.images = images;
                    result.bytes_uploaded = bytes;
                    result.message = message;
                    result.seconds += t.elapsed().as_secs_f64();
                    (result, None)
                }
                Err(e) => {
                    for stage in ["image", "push", "trigger"] {
                        result
                            .stages
                            .entry(stage)
                            .or_insert_with(|| "failed".into());
                    }
                    result.message = Some(e.to_string());
                    (result, Some(e))
                }
            }
        })
        .collect();
    let _ = started;
    engine.db().flush()?;
    let mut stores = Vec::new();
    let mut failures = Vec::new();
    for (s, e) in results {
        stores.push(s);
        failures.extend(e);
    }
    let target_text = match &target {
        Some((host, prefix, _)) => format!("{host}/{prefix}"),
        None => format!("oci:{}", cx.layout.dir().display()),
    };
    let mut build = build;
    build.warnings.extend(dirty_note);
    Ok(DeployReport {
        revision: rev.sha,
        tag,
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
