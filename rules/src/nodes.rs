//! The domain's nodes in the engine's graph: scans of layer folders,
//! compositions, and materializations into `.out`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strata_engine::{Computed, ContentHash, Inputs, KeyHasher, Node, StatCache};

use crate::build::{BuildContext, BuildRecord, BuildSpec, build, build_key, outputs_valid};
use crate::compose::{Composition, PACKAGE_JSON, composition};
use crate::error::{Error, Result};
use crate::ignore_paths::IgnorePaths;
use crate::listing::Listing;
use crate::lockfile::Closure;
use crate::materialize::{OutRecord, Strays, materialize, still_valid};
use crate::node_id::NodeId;
use crate::oci::image::{BaseImage, LayerPart};
use crate::oci::layer::LayerBlob;
use crate::prepare::{AppKind, DEPLOY, DeployPlan};
use crate::revision::Tagging;
use crate::rollout::{
    Deployed, ImageRecord, Published, RequestSettings, Rollout, base_digest, deployed_digest,
    deployed_still, image_present, published_still,
};
use crate::sources::SourceCache;
use crate::store_test::{TestRecord, TestSpec};

/// The output folder of composed stores, relative to the root.
pub const OUT: &str = ".out";

/// A node of the compose graph.
pub enum StoreNode {
    /// Scans one layer folder (volatile: it reads the file system).
    Scan {
        /// `scan/<dir>`.
        id: String,
        /// The monorepo's root.
        root: Arc<Path>,
        /// The layer folder, relative to the root.
        dir: String,
        /// File digests by stat.
        cache: StatCache,
    },
    /// Composes one app of one store from its layers' scans.
    Compose {
        /// `compose/<store>/<app>`.
        id: String,
        /// The monorepo's root.
        root: Arc<Path>,
        /// The store id.
        store: String,
        /// The app.
        app: String,
        /// The layer folders, base first.
        dirs: Vec<String>,
        /// The files the store's `ignorePaths` remove.
        ignore: Arc<IgnorePaths>,
    },
    /// Makes `.out/<store>/<app>` hold the composition.
    Materialize {
        /// `out/<store>/<app>`.
        id: String,
        /// The monorepo's root.
        root: Arc<Path>,
        /// The compose node it writes.
        compose: String,
        /// `.out/<store>/<app>`, relative to the root.
        out: String,
        /// Source bytes shared by the run's materializations.
        sources: Arc<SourceCache>,
    },
    /// Runs (or restores) one app's build.
    Build {
        /// `build/<store>/<app>`.
        id: String,
        /// What to build.
        spec: BuildSpec,
        /// The materialize node of the app.
        out: String,
        /// The build node this one builds on (the middleware's).
        upstream: Option<String>,
        /// The recorded outputs of that build, when it is not in the graph.
        upstream_recorded: Option<ContentHash>,
        /// `.env*` digests of the app folder, read when the graph was made.
        dotenv: Vec<(String, ContentHash)>,
        /// What the run's builds share.
        ctx: Arc<BuildContext>,
    },
    /// Prepares one app's `.deploy` folder.
    Prepare {
        /// `deploy/<store>/<app>`.
        id: String,
        /// The store.
        store: String,
        /// The app.
        app: String,
        /// How `.deploy` is selected.
        kind: AppKind,
        /// The materialize node of the app.
        out: String,
        /// The build node, when the app has a build script.
        build: Option<String>,
        /// What the run's builds share.
        ctx: Arc<BuildContext>,
        /// File digests by stat.
        cache: StatCache,
        /// Source bytes shared by the run's materializations.
        sources: Arc<SourceCache>,
    },
    /// A setting every build reads, read when the graph is made (the
    /// lockfile, the root files builds read, the toolchain, a declared
    /// environment variable, its value only hashed): an input with a name,
    /// so that a reason says `lockfile/yarn.lock changed`.
    Setting {
        /// `lockfile/<name>/<app>`, `root/files`, `toolchain/<tool>`,
        /// `env/<NAME>`.
        id: String,
        /// Its digest.
        digest: ContentHash,
        /// For a lockfile setting: the app's closure (recorded, so that a
        /// change says which packages changed).
        closure: Option<Arc<Closure>>,
    },
    /// Resolves a base image (volatile: a tag may move).
    Base {
        /// `base/<name>`.
        id: String,
        /// As configured (`scratch`, `node:24-alpine`, `oci-layout:…`).
        name: String,
        /// What the rollout shares.
        rollout: Arc<Rollout>,
    },
    /// Makes one layer of an app's image from its `.deploy`.
    Layer {
        /// `layer/<store>/<app>/<part>`.
        id: String,
        /// The store.
        store: String,
        /// The app.
        app: String,
        /// Which layer.
        part: LayerPart,
        /// The `.deploy` node.
        deploy: String,
        /// What the rollout shares.
        rollout: Arc<Rollout>,
    },
    /// Makes one app's image from its layers on its base.
    Image {
        /// `image/<store>/<app>`.
        id: String,
        /// The store.
        store: String,
        /// The app.
        app: String,
        /// The `.deploy` node.
        deploy: String,
        /// The base node.
        base: String,
        /// Its layer nodes, in image order.
        layers: Vec<String>,
        /// What the rollout shares.
        rollout: Arc<Rollout>,
    },
    /// Publishes one app's image under the run's tag.
    Push {
        /// `push/<store>/<app>`.
        id: String,
        /// The image node.
        image: String,
        /// The base node (its blobs may be mounted from its origin).
        base: String,
        /// The target repository (`<store>-<app>` in the local layout).
        repository: String,
        /// The revision node: the tag.
        revision: String,
        /// What the rollout shares.
        rollout: Arc<Rollout>,
    },
    /// Triggers one store's deployment.
    Trigger {
        /// `trigger/<store>`.
        id: String,
        /// The request's settings.
        settings: RequestSettings,
        /// Per app: its image node and repository.
        images: Vec<(String, String, String)>,
        /// What the rollout shares.
        rollout: Arc<Rollout>,
    },
    /// Runs one store's tests against its servers.
    Test {
        /// `test/<store>`.
        id: String,
        /// What to run.
        spec: Arc<TestSpec>,
    },
    /// Compares the working tree with HEAD: the tag pushes give images, or
    /// the refusal of uncommitted work. Keyed by HEAD, the scanned folders
    /// (its inputs) and the root files builds read, so that a deploy with
    /// nothing changed does not ask git. Builds run after it: a refused
    /// deploy builds nothing.
    Revision {
        /// `revision/HEAD`.
        id: String,
        /// Whether uncommitted work is tagged `<sha>-dirty` rather than
        /// refused.
        allow_dirty: bool,
        /// The layer folders whose scans it reads.
        dirs: Vec<String>,
        /// The root files builds read, with the digest of each (read when
        /// the graph is made; none when absent).
        files: Vec<(String, Option<ContentHash>)>,
        /// File digests by stat.
        cache: StatCache,
        /// What the rollout shares.
        rollout: Arc<Rollout>,
    },
}

/// The kind of a node, as `store graph --nodes` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Scans a layer folder.
    Scan,
    /// Composes an app of a store.
    Compose,
    /// Writes `.out/<store>/<app>`.
    Materialize,
    /// Runs (or restores) a build.
    Build,
    /// Prepares `.deploy`.
    Prepare,
    /// A setting builds read.
    Setting,
    /// Resolves a base image.
    Base,
    /// Makes a layer.
    Layer,
    /// Makes an image.
    Image,
    /// Publishes an image.
    Push,
    /// Triggers a deployment.
    Trigger,
    /// Runs a store's tests.
    Test,
    /// Reads the working tree against HEAD.
    Revision,
}

impl std::fmt::Display for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeKind::Scan => "scan",
            NodeKind::Compose => "compose",
            NodeKind::Materialize => "materialize",
            NodeKind::Build => "build",
            NodeKind::Prepare => "prepare",
            NodeKind::Setting => "setting",
            NodeKind::Base => "base",
            NodeKind::Layer => "layer",
            NodeKind::Image => "image",
            NodeKind::Push => "push",
            NodeKind::Trigger => "trigger",
            NodeKind::Test => "test",
            NodeKind::Revision => "revision",
        })
    }
}

impl StoreNode {
    /// Its kind.
    pub fn kind(&self) -> NodeKind {
        match self {
            StoreNode::Scan { .. } => NodeKind::Scan,
            StoreNode::Compose { .. } => NodeKind::Compose,
            StoreNode::Materialize { .. } => NodeKind::Materialize,
            StoreNode::Build { .. } => NodeKind::Build,
            StoreNode::Prepare { .. } => NodeKind::Prepare,
            StoreNode::Setting { .. } => NodeKind::Setting,
            StoreNode::Base { .. } => NodeKind::Base,
            StoreNode::Layer { .. } => NodeKind::Layer,
            StoreNode::Image { .. } => NodeKind::Image,
            StoreNode::Push { .. } => NodeKind::Push,
            StoreNode::Trigger { .. } => NodeKind::Trigger,
            StoreNode::Test { .. } => NodeKind::Test,
            StoreNode::Revision { .. } => NodeKind::Revision,
        }
    }
}

/// What the nodes compute.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StoreValue {
    /// A layer's files.
    Listing(Listing),
    /// A composition.
    Composition(Composition),
    /// What is on disk in `.out` (or in `.deploy`).
    Out(OutRecord),
    /// A build's outputs.
    Build(BuildRecord),
    /// A base image.
    Base(BaseImage),
    /// An image.
    Image(ImageRecord),
    /// A published image.
    Published(Published),
    /// A deployment.
    Deployed(Deployed),
    /// A setting's digest. (New variants go last: stored values decode by
    /// variant number.)
    Setting(ContentHash),
    /// A layer (none: an app without `node_modules` has no dependencies
    /// layer).
    Layer(Option<LayerBlob>),
    /// An app's dependency closure in the lockfile.
    Closure(Closure),
    /// A store's passing test run.
    Tested(TestRecord),
    /// The tag a deploy's images get.
    Revision(Tagging),
}

/// A type one of [`StoreValue`]'s variants holds: a node reads an input's
/// value as the type its kind computes, and a value of another kind (a
/// record from another version of strata) is an error naming the node,
/// never a panic.
pub trait ValueOf: Sized {
    /// What the variant holds, in words.
    const WHAT: &'static str;
    /// The value, when it is of this type.
    fn of(value: &StoreValue) -> Option<&Self>;
}

macro_rules! value_of {
    ($($variant:ident($ty:ty) = $what:literal;)*) => {
        $(impl ValueOf for $ty {
            const WHAT: &'static str = $what;
            fn of(value: &StoreValue) -> Option<&Self> {
                match value {
                    StoreValue::$variant(v) => Some(v),
                    _ => None,
                }
            }
        })*

        impl StoreValue {
            /// What this value holds, in words.
            pub fn what(&self) -> &'static str {
                match self {
                    $(StoreValue::$variant(_) => $what,)*
                }
            }
        }
    };
}

value_of! {
    Listing(Listing) = "a listing";
    Composition(Composition) = "a composition";
    Out(OutRecord) = "a record of files on disk";
    Build(BuildRecord) = "a build record";
    Base(BaseImage) = "a base image";
    Image(ImageRecord) = "an image";
    Published(Published) = "a published image";
    Deployed(Deployed) = "a deployment";
    Setting(ContentHash) = "a setting's digest";
    Layer(Option<LayerBlob>) = "a layer";
    Closure(Closure) = "a dependency closure";
    Tested(TestRecord) = "a passing test run";
    Revision(Tagging) = "a revision";
}

impl StoreValue {
    /// This value as the `T` node `id` computes.
    pub fn get<T: ValueOf>(&self, id: &str) -> Result<&T> {
        T::of(self).ok_or_else(|| {
            Error::Engine(strata_engine::Error::Decode {
                node: id.to_string(),
                message: format!("it holds {} where {} was expected", self.what(), T::WHAT),
            })
        })
    }
}

/// The id of the scan node of a layer folder.
pub fn scan_id(dir: &str) -> String {
    NodeId::Scan { dir: dir.into() }.to_string()
}

/// The id of the compose node of (store, app).
pub fn compose_id(store: &str, app: &str) -> String {
    NodeId::Compose {
        store: store.into(),
        app: app.into(),
    }
    .to_string()
}

/// The id of the materialize node of (store, app).
pub fn out_id(store: &str, app: &str) -> String {
    NodeId::Materialize {
        store: store.into(),
        app: app.into(),
    }
    .to_string()
}

/// The id of the base image node of `name`.
pub fn base_id(name: &str) -> String {
    NodeId::Base { name: name.into() }.to_string()
}

/// The id of the layer node of (store, app, part).
pub fn layer_id(store: &str, app: &str, part: LayerPart) -> String {
    NodeId::Layer {
        store: store.into(),
        app: app.into(),
        part: part.name().into(),
    }
    .to_string()
}

/// The id of the image node of (store, app).
pub fn image_id(store: &str, app: &str) -> String {
    NodeId::Image {
        store: store.into(),
        app: app.into(),
    }
    .to_string()
}

/// The id of the push node of (store, app).
pub fn push_id(store: &str, app: &str) -> String {
    NodeId::Push {
        store: store.into(),
        app: app.into(),
    }
    .to_string()
}

/// The id of the trigger node of a store.
pub fn trigger_id(store: &str) -> String {
    NodeId::Trigger {
        store: store.into(),
    }
    .to_string()
}

/// The id of the revision node.
pub fn revision_id() -> String {
    NodeId::Revision.to_string()
}

/// `.out/<store>/<app>`, relative to the root.
pub fn out_dir(store: &str, app: &str) -> String {
    format!("{OUT}/{store}/{app}")
}

/// The id of the build node of (store, app).
pub fn build_id(store: &str, app: &str) -> String {
    NodeId::Build {
        store: store.into(),
        app: app.into(),
    }
    .to_string()
}

/// The id of the `.deploy` node of (store, app).
pub fn deploy_id(store: &str, app: &str) -> String {
    NodeId::Prepare {
        store: store.into(),
        app: app.into(),
    }
    .to_string()
}

impl Node for StoreNode {
    type Value = StoreValue;
    type Error = Error;

    fn id(&self) -> &str {
        match self {
            StoreNode::Scan { id, .. }
            | StoreNode::Compose { id, .. }
            | StoreNode::Materialize { id, .. }
            | StoreNode::Build { id, .. }
            | StoreNode::Prepare { id, .. }
            | StoreNode::Setting { id, .. }
            | StoreNode::Base { id, .. }
            | StoreNode::Layer { id, .. }
            | StoreNode::Image { id, .. }
            | StoreNode::Push { id, .. }
            | StoreNode::Trigger { id, .. }
            | StoreNode::Test { id, .. }
            | StoreNode::Revision { id, .. } => id,
        }
    }

    fn salt(&self) -> ContentHash {
        // Never the root's absolute path: keys must not depend on where the
        // checkout is.
        let mut h = KeyHasher::new("store-node/v1");
        match self {
            StoreNode::Scan { dir, .. } => h.str("scan").str(dir),
            StoreNode::Compose {
                store,
                app,
                dirs,
                ignore,
                ..
            } => {
                h.str("compose").str(store).str(app);
                for d in dirs {
                    h.str(d);
                }
                ignore.hash_into(&mut h);
                &mut h
            }
            // v2: its output is the store-independent digest.
            StoreNode::Materialize { out, .. } => h.str("out/v2").str(out),
            StoreNode::Build {
                spec,
                dotenv,
                upstream_recorded,
                ..
            } => {
                if let Some(up) = upstream_recorded {
                    h.hash(up);
                }
                // The tools, lockfile, root files and environment are
                // inputs (setting nodes), not part of the salt.
                h.str("build/v2").str(&spec.out).str(&spec.script);
                for (name, digest) in dotenv {
                    h.str(name).hash(digest);
                }
                &mut h
            }
            StoreNode::Prepare {
                store,
                app,
                kind,
                ctx,
                ..
            } => {
                let entry = ctx.settings.apps.get(app).and_then(|a| a.entry.clone());
                // v2: links settled and imports checked (issue 12).
                // v3: the app's dependency closure, not the whole lockfile.
                h.str("prepare/v3")
                    .str(store)
                    .str(app)
                    .str(&format!("{kind:?}"))
                    .hash(&ctx.closure(app))
                    .str(entry.as_deref().unwrap_or(""))
            }
            StoreNode::Setting { id, .. } => h.str("setting").str(id),
            // v2: the resolved base is the node's value (no table beside).
            StoreNode::Base { name, rollout, .. } => {
                h.str("base/v2").str(name).str(&rollout.platform)
            }
            StoreNode::Layer {
                store,
                app,
                part,
                rollout,
                ..
            } => h
                .str("layer/v1")
                .str(store)
                .str(app)
                .str(part.name())
                .u64(rollout.epoch)
                .str(rollout.compression.media_type()),
            // The image's content only: never the commit or the clock.
            StoreNode::Image {
                store,
                app,
                rollout,
                ..
            } => h
                .str("image/v1")
                .str(store)
                .str(app)
                .u64(rollout.epoch)
                .str(rollout.source.as_deref().unwrap_or(""))
                .str(rollout.compression.media_type()),
            StoreNode::Push {
                repository,
                rollout,
                ..
            } => h.str("push/v2").str(&rollout.target_text()).str(repository),
            StoreNode::Revision {
                allow_dirty,
                files,
                rollout,
                ..
            } => {
                h.str("revision/v1")
                    .str(&rollout.sha)
                    .str(if *allow_dirty { "dirty" } else { "" });
                for (name, digest) in files {
                    h.str(name).hash(&digest.unwrap_or_default());
                }
                &mut h
            }
            // The images (its inputs), where they are, the console and the
            // request's settings: never the commit, which only moves tags.
            StoreNode::Trigger {
                settings,
                images,
                rollout,
                ..
            } => {
                h.str("trigger/v1")
                    .str(&rollout.target_text())
                    .str(rollout.console.as_deref().unwrap_or(""))
                    .str(&settings.store)
                    .str(&settings.project_name)
                    .str(settings.cloud_region.as_deref().unwrap_or(""))
                    .str(settings.framework.as_deref().unwrap_or(""));
                for (app, _, repository) in images {
                    h.str(app).str(repository);
                }
                &mut h
            }
            StoreNode::Test { spec, .. } => {
                spec.salt(&mut h);
                &mut h
            }
        };
        h.finish()
    }

    fn key(&self, inputs: &[(String, ContentHash)]) -> Option<ContentHash> {
        // A build's key is its action key in the caches: the same
        // function of the same inputs, so the graph and the caches agree.
        let StoreNode::Build {
            spec,
            out,
            upstream,
            upstream_recorded,
            ctx,
            ..
        } = self
        else {
            return None;
        };
        let output = |id: &str| inputs.iter().find(|(i, _)| i == id).map(|(_, o)| *o);
        let shared = output(out);
        debug_assert!(shared.is_some(), "a build reads its materialize node");
        let upstream = match upstream {
            Some(id) => Some(output(id)?),
            None => *upstream_recorded,
        };
        // The app's `.env*` files as materialize left them (the key is
        // asked only once every input is done).
        let dotenv = crate::toolchain::dotenv_digests(&ctx.root.join(&spec.out)).ok()?;
        Some(build_key(ctx, spec, shared?, upstream, &dotenv))
    }

    fn volatile(&self) -> bool {
        match self {
            StoreNode::Scan { .. } | StoreNode::Setting { .. } => true,
            // A base is resolved once and kept; `--pull` looks its tag up
            // again (not in a dry run, which fetches nothing).
            StoreNode::Base { rollout, .. } => rollout.pull && !rollout.dry_run,
            _ => false,
        }
    }

    fn persist(&self) -> bool {
        // A composition is cheap to compute again from its scans.
        !matches!(
            self,
            StoreNode::Compose { .. } | StoreNode::Setting { closure: None, .. }
        )
    }

    fn describe_change(&self, prior: &StoreValue, now: &StoreValue) -> Option<String> {
        match (prior, now) {
            (StoreValue::Closure(before), StoreValue::Closure(after)) => {
                let changes = after.changes_from(before, 5);
                (!changes.is_empty()).then(|| changes.join(", "))
            }
            _ => None,
        }
    }

    fn validates(&self) -> bool {
        matches!(
            self,
            StoreNode::Materialize { .. }
                | StoreNode::Build { .. }
                | StoreNode::Prepare { .. }
                | StoreNode::Base { .. }
                | StoreNode::Layer { .. }
                | StoreNode::Image { .. }
                | StoreNode::Push { .. }
                | StoreNode::Trigger { .. }
                | StoreNode::Test { .. }
        )
    }

    fn computes_in_dry_run(&self) -> bool {
        // A dry run refuses uncommitted work as the deploy would; a base
        // not resolved yet stands for itself by name (nothing is fetched).
        matches!(self, StoreNode::Revision { .. } | StoreNode::Base { .. })
    }

    fn waits_on_network(&self) -> bool {
        matches!(self, StoreNode::Push { .. } | StoreNode::Trigger { .. })
    }

    fn checked_on_demand(&self) -> bool {
        // The folders under `.out` an image is made from: a deploy whose
        // images are cached does not read them.
        matches!(
            self,
            StoreNode::Materialize { .. } | StoreNode::Build { .. } | StoreNode::Prepare { .. }
        )
    }

    fn still_valid(&self, prior: &StoreValue) -> Result<bool> {
        match (self, prior) {
            // A passing run stands while its inputs are unchanged, unless
            // `--force` asks for another.
            (StoreNode::Test { spec, .. }, StoreValue::Tested(_)) => Ok(!spec.force),
            (StoreNode::Materialize { root, out, .. }, StoreValue::Out(record)) => Ok(still_valid(
                root,
                &root.join(out),
                record,
                Strays::KeepIgnored,
            )),
            (StoreNode::Build { spec, ctx, .. }, StoreValue::Build(record)) => {
                Ok(outputs_valid(&ctx.root, spec, record))
            }
            (
                StoreNode::Prepare {
                    store, app, ctx, ..
                },
                StoreValue::Out(record),
            ) => Ok(still_valid(
                &ctx.root,
                &deploy_dir(&ctx.root, store, app),
                record,
                Strays::RemoveAll,
            )),
            // A base stands while the local layout holds its layers.
            (StoreNode::Base { rollout, .. }, StoreValue::Base(base)) => Ok(base
                .layers
                .iter()
                .all(|l| rollout.layout.has_blob(&l.digest, Some(l.size)))),
            (StoreNode::Layer { rollout, .. }, StoreValue::Layer(blob)) => Ok(blob
                .as_ref()
                .is_none_or(|b| rollout.layout.has_blob(&b.digest, Some(b.size)))),
            (StoreNode::Image { rollout, .. }, StoreValue::Image(image)) => {
                Ok(image_present(rollout, image))
            }
            // The registry is asked: a tag deleted there is pushed again.
            (
                StoreNode::Push {
                    repository,
                    rollout,
                    ..
                },
                StoreValue::Published(published),
            ) => Ok(published_still(rollout, repository, published)),
            (StoreNode::Trigger { rollout, .. }, StoreValue::Deployed(deployed)) => {
                Ok(deployed_still(rollout, deployed))
            }
            _ => Ok(false),
        }
    }

    fn compute(&self, inputs: &Inputs<'_, Self>) -> Result<Computed<StoreValue>> {
        match self {
            StoreNode::Scan {
                root, dir, cache, ..
            } => {
                let listing = Listing::scan(root, dir, Some(cache))?;
                let digest = listing.digest();
                Ok(Computed::new(StoreValue::Listing(listing), digest))
            }
            StoreNode::Compose {
                root,
                store,
                app,
                dirs,
                ignore,
                ..
            } => {
                let values = dirs
                    .iter()
                    .map(|d| inputs.dependency(&scan_id(d)))
                    .collect::<Result<Vec<_>>>()?;
                let listings = values
                    .iter()
                    .zip(dirs)
                    .map(|(v, d)| v.get::<Listing>(&scan_id(d)))
                    .collect::<Result<Vec<_>>>()?;
                let dir_refs: Vec<&str> = dirs.iter().map(String::as_str).collect();
                let package = root.join(&dirs[0]).join(PACKAGE_JSON);
                let composition = composition(app, store, &dir_refs, &listings, ignore, || {
                    std::fs::read(&package).map_err(|e| Error::io(&package, e))
                })?;
                // Both digests: an edit of the base package.json that the
                // store's renamed copy hides still changes what builds see.
                let mut h = KeyHasher::new("composition/v2");
                h.hash(&composition.digest).hash(&composition.shared);
                Ok(Computed::new(
                    StoreValue::Composition(composition),
                    h.finish(),
                ))
            }
            StoreNode::Materialize {
                root,
                compose,
                out,
                sources,
                ..
            } => {
                let value = inputs.dependency(compose)?;
                let composition: &Composition = value.get(compose)?;
                let prior = match inputs.prior() {
                    Some(StoreValue::Out(record)) => Some(record),
                    _ => None,
                };
                let out_dir: PathBuf = root.join(out);
                let record = materialize(
                    root,
                    &out_dir,
                    composition,
                    prior,
                    sources,
                    Strays::KeepIgnored,
                )?;
                // The store-independent digest (package.json as the base
                // app has it): for one store and app it changes exactly
                // when the composition does, and it is what a build's
                // action key is made of, so stores share builds.
                let digest = record.shared;
                Ok(Computed::new(StoreValue::Out(record), digest))
            }
            StoreNode::Build {
                spec,
                out,
                upstream,
                upstream_recorded,
                ctx,
                ..
            } => {
                let composed = inputs.dependency(out)?;
                let composed: &OutRecord = composed.get(out)?;
                let upstream_value = match upstream {
                    Some(id) => Some(inputs.dependency(id)?),
                    None => None,
                };
                let upstream_record = match (&upstream_value, upstream) {
                    (Some(value), Some(id)) => Some(value.get::<BuildRecord>(id)?),
                    _ => None,
                };
                let upstream = match upstream_record {
                    Some(record) => Some(record.digest()),
                    None => *upstream_recorded,
                };
                let prior = match inputs.prior() {
                    Some(StoreValue::Build(record)) => Some(record),
                    _ => None,
                };
                let dotenv = crate::toolchain::dotenv_digests(&ctx.root.join(&spec.out))?;
                let key = build_key(ctx, spec, composed.shared, upstream, &dotenv);
                let record = build(ctx, spec, key, prior, upstream_record)?;
                let digest = record.digest();
                Ok(Computed::new(StoreValue::Build(record), digest))
            }
            StoreNode::Prepare {
                store,
                app,
                kind,
                out,
                build,
                ctx,
                cache,
                sources,
                ..
            } => {
                // The composed folder it copies from: read through its node,
                // so that a check deferred until now happens first.
                inputs.dependency(out)?;
                let built = match build {
                    Some(id) => Some(inputs.dependency(id)?),
                    None => None,
                };
                let record = match (&built, build) {
                    (Some(value), Some(id)) => Some(value.get::<BuildRecord>(id)?),
                    _ => None,
                };
                let out_rel = out_dir(store, app);
                debug_assert_eq!(out, &out_id(store, app));
                let plan = DeployPlan {
                    root: &ctx.root,
                    store,
                    app,
                    out: &out_rel,
                    kind: *kind,
                    build: record,
                    settings: &ctx.settings,
                    cache,
                };
                let composition = plan.composition()?;
                let prior = match inputs.prior() {
                    Some(StoreValue::Out(record)) => Some(record),
                    _ => None,
                };
                let record = materialize(
                    &ctx.root,
                    &deploy_dir(&ctx.root, store, app),
                    &composition,
                    prior,
                    sources,
                    Strays::RemoveAll,
                )?;
                let digest = record.composition;
                Ok(Computed::new(StoreValue::Out(record), digest))
            }
            StoreNode::Setting {
                digest, closure, ..
            } => {
                let value = match closure {
                    Some(c) => StoreValue::Closure((**c).clone()),
                    None => StoreValue::Setting(*digest),
                };
                Ok(Computed::new(value, *digest))
            }
            StoreNode::Base { name, rollout, .. } => {
                let base = crate::rollout::base(rollout, name)?;
                let digest = base_digest(&base);
                Ok(Computed::new(StoreValue::Base(base), digest))
            }
            StoreNode::Layer {
                store,
                app,
                part,
                deploy,
                rollout,
                ..
            } => {
                let files = inputs.dependency(deploy)?;
                let files: &OutRecord = files.get(deploy)?;
                let blob = crate::rollout::layer(rollout, store, app, *part, files)?;
                let digest = match &blob {
                    Some(b) => ContentHash::of(b.digest.as_bytes()),
                    None => ContentHash::of(b"no layer"),
                };
                Ok(Computed::new(StoreValue::Layer(blob), digest))
            }
            StoreNode::Image {
                store,
                app,
                deploy,
                base,
                layers,
                rollout,
                ..
            } => {
                let files = inputs.dependency(deploy)?;
                let files: &OutRecord = files.get(deploy)?;
                let base_value = inputs.dependency(base)?;
                let base: &BaseImage = base_value.get(base)?;
                let mut own = Vec::new();
                for (id, part) in layers.iter().zip(LayerPart::ALL) {
                    let blob = inputs.dependency(id)?;
                    let blob: &Option<LayerBlob> = blob.get(id)?;
                    own.extend(blob.clone().map(|b| (b, part)));
                }
                let image = crate::rollout::image(rollout, store, app, base, &own, files)?;
                let digest = ContentHash::of(image.manifest.digest.as_bytes());
                Ok(Computed::new(StoreValue::Image(image), digest))
            }
            StoreNode::Push {
                image,
                base,
                repository,
                revision,
                rollout,
                ..
            } => {
                let image_value = inputs.dependency(image)?;
                let image: &ImageRecord = image_value.get(image)?;
                let base_value = inputs.dependency(base)?;
                let base: &BaseImage = base_value.get(base)?;
                let tagging = inputs.dependency(revision)?;
                let tagging: &Tagging = tagging.get(revision)?;
                let published =
                    crate::rollout::publish(rollout, repository, &tagging.tag, base, image)?;
                let mut h = KeyHasher::new("published/v1");
                h.str(&published.pinned).str(&published.tag);
                Ok(Computed::new(StoreValue::Published(published), h.finish()))
            }
            StoreNode::Trigger {
                settings,
                images,
                rollout,
                ..
            } => {
                let mut pinned = std::collections::BTreeMap::new();
                for (app, image, repository) in images {
                    let value = inputs.dependency(image)?;
                    let image: &ImageRecord = value.get(image)?;
                    pinned.insert(
                        app.clone(),
                        rollout.pinned(repository, &image.manifest.digest),
                    );
                }
                let deployed = crate::rollout::deploy(rollout, settings, pinned)?;
                let digest = deployed_digest(&deployed);
                Ok(Computed::new(StoreValue::Deployed(deployed), digest))
            }
            StoreNode::Test { spec, .. } => {
                let record = spec.run()?;
                let digest = KeyHasher::new("tested/v1").str(&spec.store).finish();
                Ok(Computed::new(StoreValue::Tested(record), digest))
            }
            StoreNode::Revision {
                allow_dirty,
                dirs,
                files,
                cache,
                rollout,
                ..
            } => {
                let mut paths = Vec::with_capacity(dirs.len() + files.len());
                for dir in dirs {
                    let id = scan_id(dir);
                    let listing = inputs.dependency(&id)?;
                    let listing: &Listing = listing.get(&id)?;
                    paths.push((dir.clone(), Some(listing.digest())));
                }
                paths.extend(files.iter().cloned());
                let prior = match inputs.prior() {
                    Some(StoreValue::Revision(t)) => Some(t),
                    _ => None,
                };
                let content_now = |path: &str| -> Result<Option<ContentHash>> {
                    if files.iter().any(|(name, _)| name == path) {
                        crate::revision::root_file(&rollout.root, path, cache)
                    } else {
                        Ok(Some(
                            Listing::scan(&rollout.root, path, Some(cache))?.digest(),
                        ))
                    }
                };
                let tagging = crate::revision::tagging(
                    &rollout.root,
                    &rollout.sha,
                    &paths,
                    prior,
                    *allow_dirty,
                    &content_now,
                )?;
                // Dependents see the tag only.
                let digest = KeyHasher::new("revision/v1").str(&tagging.tag).finish();
                Ok(Computed::new(StoreValue::Revision(tagging), digest))
            }
        }
    }
}

/// `.out/<store>/<app>/.deploy`.
pub fn deploy_dir(root: &Path, store: &str, app: &str) -> PathBuf {
    root.join(out_dir(store, app)).join(DEPLOY)
}
