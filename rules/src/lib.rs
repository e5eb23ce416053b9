//! strata-rules: the domain of multistore monorepos. The workspace model and
//! its config, composition by the inheritance rules, and materialization of
//! composed stores into `.out`.
#![deny(missing_docs)]

mod build;
mod builder;
pub mod cache;
mod caddy;
mod changed;
mod compose;
mod composer;
mod config;
mod deployer;
mod deployment;
mod dev;
mod error;
mod explain;
mod ignore_paths;
mod listing;
pub mod lockfile;
pub mod manage;
mod materialize;
mod node_id;
mod nodes;
pub mod oci;
mod picture;
mod prepare;
mod remote_build;
pub use remote_build::ExecutorSettings;
mod revision;
mod rollout;
mod sandbox;
mod servers;
mod snapshot;
mod sources;
mod store_id;
pub mod store_test;
mod summary;
mod toolchain;
mod tree;
pub mod tsconfig;
mod workspace;

pub use build::{BuildContext, BuildRecord, BuildSpec, How, OutputFile};
pub use builder::{
    AppBuild, BuildOptions, BuildReport, RemoteSettings, RemoteUse, StoreBuild, build_stores,
    filter_apps, shard,
};
pub use caddy::{CADDYFILE, caddyfile};
pub use changed::{
    ChangeReport, ChangedOptions, ChangedStore, Reason, ReasonKind, changed, history,
};
pub use compose::{
    Composed, Composition, PACKAGE_JSON, Source, composition, package_json, resolve,
};
pub use composer::{AppReport, ComposeReport, StoreReport, compose, compose_graph};
pub use config::{CONFIG_FILE, Config, Deployment, StoreSettings, StrataSettings};
pub use deployer::{AppImage, DeployOptions, DeployReport, StoreDeploy, deploy, deploy_graph};
pub use deployment::{DeploymentRequest, record, trigger};
pub use dev::{Target, Update, reconcile, selected, targets};
pub use error::{Error, Result};
pub use explain::{AppExplanation, Explanation, FileOrigin, InputChange, LayerShare, explain};
pub use ignore_paths::{IgnorePaths, IgnoreRule};
pub use listing::{Listing, is_dotenv};
pub use lockfile::LOCKFILES;
pub use materialize::{Counts, OutDir, OutFile, OutRecord, Strays, TOOL_OWNED};
pub use node_id::{NodeId, NotANodeId};
pub use nodes::{
    NodeKind, OUT, StoreNode, StoreValue, build_id, compose_id, deploy_dir, deploy_id, out_dir,
    out_id, scan_id,
};
pub use picture::{NodePicture, PictureNode, node_picture};
pub use prepare::{AppKind, DEPLOY, MIDDLEWARE_APP, NEXTJS_APP, NUXT_APP, deployed_apps};
pub use revision::{Revision, public_url};
pub use servers::{Run, ServerSpec, Supervisor, port_key, server_specs, start_specs};
pub use snapshot::{CommitSnapshot, GitEntry, Snapshot, WorkSnapshot};
pub use sources::SourceCache;
pub use store_id::invalid_reason;
pub use summary::summary;
pub use toolchain::PackageManager;
pub use tree::{TreeStore, TreeView, tree};
pub use workspace::{APPS, FileSystem, Folders, Layer, Owner, STORES, Store, Workspace};
