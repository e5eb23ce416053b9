//! The domain's nodes in the engine's graph: scans of layer folders,
//! compositions, and materializations into `.out`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strata_engine::{Computed, ContentHash, Inputs, KeyHasher, Node, StatCache};

use crate::build::{BuildContext, BuildRecord, BuildSpec, build, outputs_valid};
use crate::compose::{Composition, PACKAGE_JSON, composition};
use crate::error::{Error, Result};
use crate::listing::Listing;
use crate::materialize::{OutRecord, Strays, materialize, still_valid};
use crate::prepare::{AppKind, DEPLOY, DeployPlan};
use crate::sources::SourceCache;

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
}

/// The id of the scan node of a layer folder.
pub fn scan_id(dir: &str) -> String {
    format!("scan/{dir}")
}

/// The id of the compose node of (store, app).
pub fn compose_id(store: &str, app: &str) -> String {
    format!("compose/{store}/{app}")
}

/// The id of the materialize node of (store, app).
pub fn out_id(store: &str, app: &str) -> String {
    format!("out/{store}/{app}")
}

/// `.out/<store>/<app>`, relative to the root.
pub fn out_dir(store: &str, app: &str) -> String {
    format!("{OUT}/{store}/{app}")
}

/// The id of the build node of (store, app).
pub fn build_id(store: &str, app: &str) -> String {
    format!("build/{store}/{app}")
}

/// The id of the `.deploy` node of (store, app).
pub fn deploy_id(store: &str, app: &str) -> String {
    format!("deploy/{store}/{app}")
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
            | StoreNode::Prepare { id, .. } => id,
        }
    }

    fn salt(&self) -> ContentHash {
        // Never the root's absolute path: keys must not depend on where the
        // checkout is.
        let mut h = KeyHasher::new("store-node/v1");
        match self {
            StoreNode::Scan { dir, .. } => h.str("scan").str(dir),
            StoreNode::Compose {
                store, app, dirs, ..
            } => {
                h.str("compose").str(store).str(app);
                for d in dirs {
                    h.str(d);
                }
                &mut h
            }
            StoreNode::Materialize { out, .. } => h.str("out").str(out),
            StoreNode::Build {
                spec,
                dotenv,
                ctx,
                upstream_recorded,
                ..
            } => {
                if let Some(up) = upstream_recorded {
                    h.hash(up);
                }
                h.str("build")
                    .str(&spec.out)
                    .str(&spec.script)
                    .hash(&ctx.salt());
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
                h.str("prepare/v2")
                    .str(store)
                    .str(app)
                    .str(&format!("{kind:?}"))
                    .hash(&ctx.lock)
                    .str(entry.as_deref().unwrap_or(""))
            }
        };
        h.finish()
    }

    fn volatile(&self) -> bool {
        matches!(self, StoreNode::Scan { .. })
    }

    fn persist(&self) -> bool {
        // A composition is cheap to compute again from its scans.
        !matches!(self, StoreNode::Compose { .. })
    }

    fn validates(&self) -> bool {
        matches!(
            self,
            StoreNode::Materialize { .. } | StoreNode::Build { .. } | StoreNode::Prepare { .. }
        )
    }

    fn still_valid(&self, prior: &StoreValue) -> Result<bool> {
        match (self, prior) {
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
                ..
            } => {
                let values = dirs
                    .iter()
                    .map(|d| inputs.dependency(&scan_id(d)))
                    .collect::<Result<Vec<_>>>()?;
                let listings: Vec<&Listing> = values.iter().map(|v| listing(v)).collect();
                let dir_refs: Vec<&str> = dirs.iter().map(String::as_str).collect();
                let package = root.join(&dirs[0]).join(PACKAGE_JSON);
                let composition = composition(app, store, &dir_refs, &listings, || {
                    std::fs::read(&package).map_err(|e| Error::io(&package, e))
                })?;
                let digest = composition.digest;
                Ok(Computed::new(StoreValue::Composition(composition), digest))
            }
            StoreNode::Materialize {
                root,
                compose,
                out,
                sources,
                ..
            } => {
                let value = inputs.dependency(compose)?;
                let StoreValue::Composition(composition) = &*value else {
                    unreachable!("a compose node computes a composition")
                };
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
                let digest = record.composition;
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
                let StoreValue::Out(composed) = &*inputs.dependency(out)? else {
                    unreachable!("a materialize node records its output")
                };
                let upstream = match upstream {
                    Some(id) => match &*inputs.dependency(id)? {
                        StoreValue::Build(record) => Some(record.digest()),
                        _ => None,
                    },
                    None => *upstream_recorded,
                };
                let prior = match inputs.prior() {
                    Some(StoreValue::Build(record)) => Some(record),
                    _ => None,
                };
                let record = build(ctx, spec, composed.shared, upstream, prior)?;
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
                let built = match build {
                    Some(id) => Some(inputs.dependency(id)?),
                    None => None,
                };
                let record = built.as_deref().and_then(|v| match v {
                    StoreValue::Build(r) => Some(r),
                    _ => None,
                });
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
        }
    }
}

/// `.out/<store>/<app>/.deploy`.
pub fn deploy_dir(root: &Path, store: &str, app: &str) -> PathBuf {
    root.join(out_dir(store, app)).join(DEPLOY)
}

fn listing(value: &StoreValue) -> &Listing {
    match value {
        StoreValue::Listing(l) => l,
        _ => unreachable!("a scan node computes a listing"),
    }
}
