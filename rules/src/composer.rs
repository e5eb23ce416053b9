//! The compose command: builds the graph of scans, compositions and
//! materializations for the selected stores, runs it, and removes the
//! outputs of stores and apps that are gone.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use strata_engine::{Engine, Event, Graph, OnFailure, RunLog, Status};

use crate::error::{Error, Result};
use crate::materialize::Counts;
use crate::node_id::{NodeId, id_prefix};
use crate::nodes::{NodeKind, OUT, StoreNode, StoreValue, compose_id, out_dir, out_id, scan_id};
use crate::sources::SourceCache;
use crate::workspace::Workspace;

/// What a compose did, per store and app.
#[derive(Debug, Serialize)]
pub struct ComposeReport {
    /// The selected stores, in the config's order.
    pub stores: Vec<StoreReport>,
    /// Output folders removed because their store or app is gone.
    pub removed: Vec<String>,
    /// The engine's log of the run.
    #[serde(skip)]
    pub log: RunLog,
}

/// One store's part of a compose.
#[derive(Debug, Serialize)]
pub struct StoreReport {
    /// The store id.
    pub id: String,
    /// Its apps.
    pub apps: Vec<AppReport>,
}

/// One app's part of a compose.
#[derive(Debug, Serialize)]
pub struct AppReport {
    /// The app.
    pub app: String,
    /// Whether `.out` was touched (`cached`: it was already exact).
    pub status: Status,
    /// What was done, when something was.
    pub counts: Option<Counts>,
}

impl ComposeReport {
    /// Files written, restored and removed over all stores.
    pub fn totals(&self) -> Counts {
        let mut total = Counts::default();
        for app in self.stores.iter().flat_map(|s| &s.apps) {
            if let Some(c) = app.counts {
                total.files += c.files;
                total.written += c.written;
                total.restored += c.restored;
                total.removed += c.removed;
            }
        }
        total
    }
}

/// The compose graph of the selected stores.
pub fn compose_graph(ws: &Workspace, engine: &Engine, ids: &[String]) -> Result<Graph<StoreNode>> {
    let root: Arc<Path> = Arc::from(ws.root());
    let sources = Arc::new(SourceCache::new());
    let mut graph = Graph::new();
    for store in ws.select(ids)? {
        let ignore = Arc::new(ws.ignore_paths(&store.id)?);
        for app in &ws.base_apps {
            let dirs: Vec<String> = ws
                .layers(&store.id, app)
                .into_iter()
                .map(|l| l.dir)
                .collect();
            for dir in &dirs {
                let id = scan_id(dir);
                if !graph.contains(&id) {
                    graph.add(StoreNode::Scan {
                        id,
                        root: root.clone(),
                        dir: dir.clone(),
                        cache: engine.stat_cache().clone(),
                    })?;
                }
            }
            let cid = compose_id(&store.id, app);
            graph.add(StoreNode::Compose {
                id: cid.clone(),
                root: root.clone(),
                store: store.id.clone(),
                app: app.clone(),
                dirs: dirs.clone(),
                ignore: ignore.clone(),
            })?;
            for dir in &dirs {
                graph.depend(&cid, &scan_id(dir))?;
            }
            let oid = out_id(&store.id, app);
            graph.add(StoreNode::Materialize {
                id: oid.clone(),
                root: root.clone(),
                compose: cid.clone(),
                out: out_dir(&store.id, app),
                sources: sources.clone(),
            })?;
            graph.depend(&oid, &cid)?;
        }
    }
    // No output is written until every composition is known to be valid:
    // bad input anywhere leaves `.out` untouched.
    let composes: Vec<String> = graph_ids(ws, ids, compose_id)?;
    for out in graph_ids(ws, ids, out_id)? {
        for compose in &composes {
            graph.order(&out, compose)?;
        }
    }
    Ok(graph)
}

fn graph_ids(ws: &Workspace, ids: &[String], id: fn(&str, &str) -> String) -> Result<Vec<String>> {
    Ok(ws
        .select(ids)?
        .iter()
        .flat_map(|s| ws.base_apps.iter().map(|app| id(&s.id, app)))
        .collect())
}

/// Composes the stores named by `ids` (all deployable stores when empty)
/// into `.out`. Bad input anywhere stops the run before anything in `.out`
/// is written.
pub fn compose(
    ws: &Workspace,
    engine: &Engine,
    ids: &[String],
    observe: &(dyn Fn(&Event) + Sync),
) -> Result<ComposeReport> {
    let graph = compose_graph(ws, engine, ids)?;
    let mut outcome = engine.run_observed(&graph, OnFailure::Stop, observe)?;
    if !outcome.errors.is_empty() {
        return Err(outcome.errors.swap_remove(0).1);
    }
    let removed = if ids.is_empty() {
        remove_stale(ws, engine)?
    } else {
        Vec::new()
    };
    let mut stores = Vec::new();
    for store in ws.select(ids)? {
        let apps = ws
            .base_apps
            .iter()
            .map(|app| {
                let id = out_id(&store.id, app);
                let status = outcome.log.status(&id).unwrap_or(Status::Skipped);
                let counts = match (status, outcome.value(&id).as_deref()) {
                    (s, Some(StoreValue::Out(record))) if s != Status::Cached => {
                        Some(record.counts)
                    }
                    _ => None,
                };
                AppReport {
                    app: app.clone(),
                    status,
                    counts,
                }
            })
            .collect();
        stores.push(StoreReport {
            id: store.id.clone(),
            apps,
        });
    }
    Ok(ComposeReport {
        stores,
        removed,
        log: outcome.log,
    })
}

/// Removes `.out/<store>/<app>` folders strata wrote for stores that are no
/// longer deployable or apps that no longer exist.
fn remove_stale(ws: &Workspace, engine: &Engine) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for id in engine.recorded_ids(&id_prefix(NodeKind::Materialize))? {
        let Ok(NodeId::Materialize { store, app }) = id.parse::<NodeId>() else {
            continue;
        };
        let (store, app) = (store.as_str(), app.as_str());
        let live =
            ws.store(store).is_some_and(|s| s.deployable) && ws.base_apps.iter().any(|a| a == app);
        if live {
            continue;
        }
        let dir = ws.root().join(out_dir(store, app));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => removed.push(out_dir(store, app)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&dir, e)),
        }
        engine.forget(&id)?;
        let store_dir = ws.root().join(OUT).join(store);
        if !ws.store(store).is_some_and(|s| s.deployable) {
            // The store is gone: its whole folder goes (deployment records,
            // leftovers), as long as nothing of another strata run is there.
            if std::fs::remove_dir_all(&store_dir).is_ok() {
                removed.push(format!("{OUT}/{store}"));
            }
        }
    }
    removed.sort();
    removed.dedup();
    engine.db().flush()?;
    Ok(removed)
}
