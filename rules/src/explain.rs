//! `store explain`: where a store's files come from, and why it is or is not
//! recomposed.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use strata_engine::Engine;

use crate::compose::PACKAGE_JSON;
use crate::compose::{Source, composition};
use crate::error::{Error, Result};
use crate::ignore_paths::IgnoreRule;
use crate::listing::Listing;
use crate::nodes::{StoreNode, StoreValue, out_id, scan_id};
use crate::workspace::Workspace;

/// Why a store looks the way it does.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// The store.
    pub store: String,
    /// Its ancestors, farthest first, then itself.
    pub lineage: Vec<String>,
    /// Per app.
    pub apps: Vec<AppExplanation>,
}

/// One app of the store.
#[derive(Debug, Serialize)]
pub struct AppExplanation {
    /// The app.
    pub app: String,
    /// Files in the composition.
    pub files: usize,
    /// How many of them each layer provides (layers with none included).
    pub layers: Vec<LayerShare>,
    /// `up-to-date`, `stale` (inputs changed since the last compose), or
    /// `never-composed`.
    pub state: &'static str,
    /// Input files changed since the last compose, and whether each reaches
    /// this store.
    pub changes: Vec<InputChange>,
    /// With `--file`: the layers that have it, the winner last.
    pub file: Option<FileOrigin>,
}

/// A layer's share of a composition.
#[derive(Debug, Serialize)]
pub struct LayerShare {
    /// The layer folder.
    pub dir: String,
    /// Files it provides.
    pub files: usize,
}

/// An input that changed since the last compose.
#[derive(Debug, Serialize)]
pub struct InputChange {
    /// The file, relative to the root.
    pub path: String,
    /// `added`, `modified` or `removed`.
    pub change: &'static str,
    /// The layer folder that overrides it for this store, if any.
    pub shadowed_by: Option<String>,
}

/// Where one file of a composition comes from.
#[derive(Debug, Serialize)]
pub struct FileOrigin {
    /// The path, relative to the app.
    pub path: String,
    /// The layer folder that wins (none: no layer has it).
    pub winner: Option<String>,
    /// The layers it shadows, closest first.
    pub shadows: Vec<String>,
    /// The `ignorePaths` rule that removes it from this store, if any.
    pub removed_by: Option<IgnoreRule>,
}

/// Explains store `id`; with `file` (`<app>/<path>` or a path inside any
/// app), also where that file comes from.
pub fn explain(
    ws: &Workspace,
    engine: &Engine,
    id: &str,
    file: Option<&str>,
) -> Result<Explanation> {
    let store = ws.store(id).ok_or_else(|| Error::UnknownStore {
        message: format!("no store {id:?} in this monorepo"),
    })?;
    let ignore = ws.ignore_paths(id)?;
    let mut apps = Vec::new();
    for app in &ws.base_apps {
        let dirs: Vec<String> = ws.layers(id, app).into_iter().map(|l| l.dir).collect();
        let listings = dirs
            .iter()
            .map(|d| Listing::scan(ws.root(), d, Some(engine.stat_cache())))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Listing> = listings.iter().collect();
        let dir_refs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let package = ws.root().join(&dirs[0]).join(PACKAGE_JSON);
        let comp = composition(app, id, &dir_refs, &refs, &ignore, || {
            std::fs::read(&package).map_err(|e| Error::io(&package, e))
        })?;
        let mut shares: BTreeMap<usize, usize> = (0..dirs.len()).map(|l| (l, 0)).collect();
        for e in &comp.entries {
            let l = match e.source {
                Source::Layer(l) => l as usize,
                Source::Generated(_) | Source::Path(_) => 0,
            };
            *shares.entry(l).or_default() += 1;
        }
        let mut changes = Vec::new();
        for (l, (dir, now)) in dirs.iter().zip(&listings).enumerate() {
            let Some(StoreValue::Listing(before)) = engine.load::<StoreNode>(&scan_id(dir))? else {
                continue;
            };
            for (path, change) in listing_changes(&before, now) {
                let shadowed_by = listings[l + 1..]
                    .iter()
                    .zip(&dirs[l + 1..])
                    .rev()
                    .find(|(listing, _)| listing.get(&path).is_some())
                    .map(|(_, d)| d.clone());
                changes.push(InputChange {
                    path: format!("{dir}/{path}"),
                    change,
                    shadowed_by,
                });
            }
        }
        let state = match engine.recorded_output(&out_id(id, app))? {
            None => "never-composed",
            Some(d) if d == comp.shared => "up-to-date",
            Some(_) => "stale",
        };
        let file = file.and_then(|f| {
            let rel = match f.split_once('/') {
                Some((a, rest)) if a == app => rest,
                Some((a, _)) if ws.base_apps.iter().any(|b| b == a) => return None,
                _ => f,
            };
            let having: Vec<String> = dirs
                .iter()
                .zip(&listings)
                .enumerate()
                .filter(|(i, (_, l))| l.get(rel).is_some() && crate::compose::lends(*i, rel))
                .map(|(_, (d, _))| d.clone())
                .collect();
            if having.is_empty() && f.split_once('/').map(|(a, _)| a) != Some(app.as_str()) {
                return None;
            }
            let mut shadows = having;
            let winner = shadows.pop();
            shadows.reverse();
            Some(FileOrigin {
                path: rel.to_string(),
                removed_by: winner.as_ref().and_then(|_| ignore.removed_by(app, rel)),
                winner,
                shadows,
            })
        });
        apps.push(AppExplanation {
            app: app.clone(),
            files: comp.entries.len(),
            layers: shares
                .into_iter()
                .map(|(l, files)| LayerShare {
                    dir: dirs[l].clone(),
                    files,
                })
                .collect(),
            state,
            changes,
            file,
        });
    }
    Ok(Explanation {
        store: store.id.clone(),
        lineage: ws.lineage(id).iter().map(|s| s.id.clone()).collect(),
        apps,
    })
}

fn listing_changes(before: &Listing, now: &Listing) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for e in &now.entries {
        match before.get(&e.path) {
            None => out.push((e.path.clone(), "added")),
            Some(b) if b.digest != e.digest || b.kind != e.kind => {
                out.push((e.path.clone(), "modified"))
            }
            Some(_) => {}
        }
    }
    for e in &before.entries {
        if now.get(&e.path).is_none() {
            out.push((e.path.clone(), "removed"));
        }
    }
    out.sort();
    out
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "store {} (inherits: {})",
            self.store,
            self.lineage.join(" > ")
        )?;
        for app in &self.apps {
            writeln!(f, "\n{}: {} files, {}", app.app, app.files, app.state)?;
            for share in &app.layers {
                writeln!(f, "  {:>6}  from {}", share.files, share.dir)?;
            }
            if let Some(file) = &app.file {
                match (&file.winner, &file.removed_by) {
                    (Some(w), Some(rule)) => writeln!(
                        f,
                        "  {}: removed by {:?} in the ignorePaths of {} (it would come from {w})",
                        file.path, rule.pattern, rule.store
                    )?,
                    (Some(w), None) => writeln!(f, "  {}: from {w}", file.path)?,
                    (None, _) => writeln!(f, "  {}: in no layer", file.path)?,
                }
                for s in &file.shadows {
                    writeln!(f, "    shadows {s}/{}", file.path)?;
                }
            }
            if !app.changes.is_empty() {
                writeln!(f, "  changed since the last compose:")?;
                for c in &app.changes {
                    match &c.shadowed_by {
                        Some(by) => writeln!(
                            f,
                            "    {:<8} {} (no effect: overridden by {by})",
                            c.change, c.path
                        )?,
                        None => writeln!(f, "    {:<8} {}", c.change, c.path)?,
                    }
                }
            }
        }
        Ok(())
    }
}
