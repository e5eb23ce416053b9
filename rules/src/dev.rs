//! Watch mode's core: a batch of changed source paths is mapped, through the
//! inheritance index, to the (store, app, path) copies it affects, and only
//! those copies in `.out` are brought to what composition says now.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use strata_engine::{EntryKind, Fingerprint, IgnoreRules, walker};

use crate::changed::touched;
use crate::compose::{
    Composed, Composition, PACKAGE_JSON, Source, lends, package_json, path_entry,
};
use crate::error::{Error, Result};
use crate::listing::is_dotenv;
use crate::materialize::{TOOL_OWNED, holds, remove, write_replacing};
use crate::nodes::out_dir;
use crate::sources::SourceCache;
use crate::workspace::{APPS, Workspace};

/// One copy brought up to date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Update {
    /// The store.
    pub store: String,
    /// `written` or `removed`.
    pub change: &'static str,
    /// The path under `.out`.
    pub path: String,
}

/// What to reconcile: (store, app, path inside the app; `""` for all of it).
pub type Target = (String, String, String);

/// The copies a batch of changed paths (relative to the root) can affect,
/// among the deployable `stores`.
pub fn targets(ws: &Workspace, stores: &[String], changed: &BTreeSet<String>) -> BTreeSet<Target> {
    let mut out = BTreeSet::new();
    for path in changed {
        if let Some(t) = touched(path) {
            if !ws.base_apps.contains(&t.app) {
                continue;
            }
            for store in stores {
                if ws.layers(store, &t.app).iter().any(|l| l.dir == t.layer) {
                    out.insert((store.clone(), t.app.clone(), t.rel.clone()));
                }
            }
            continue;
        }
        // A folder above the layers (a store's folder, a base app, a
        // layer itself, `apps` itself): every app it can hold, whole.
        if path != APPS && !path.starts_with(&format!("{APPS}/")) {
            continue;
        }
        for store in stores {
            for app in &ws.base_apps {
                let reaches = ws
                    .layers(store, app)
                    .iter()
                    .any(|l| l.dir == *path || l.dir.starts_with(&format!("{path}/")));
                if reaches {
                    out.insert((store.clone(), app.clone(), String::new()));
                }
            }
        }
    }
    // A whole app covers its paths.
    let whole: BTreeSet<(String, String)> = out
        .iter()
        .filter(|(_, _, r)| r.is_empty())
        .map(|(s, a, _)| (s.clone(), a.clone()))
        .collect();
    // (A `.env` file keeps its own target: a whole app's reconcile leaves
    // alone the `.env` files no layer has, and a deleted one has none.)
    out.retain(|(s, a, r)| {
        r.is_empty() || is_dotenv(r) || !whole.contains(&(s.clone(), a.clone()))
    });
    out
}

fn join(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (_, true) => base.to_string(),
        _ => format!("{base}/{rel}"),
    }
}

/// The entry for the file at `src` (relative to the root) placed at `dest`.
fn entry(root: &Path, src: &str, dest: &str) -> Result<Option<Composed>> {
    path_entry(root, src, dest, true, &|full, _| {
        Ok(strata_engine::file_digest(full)?)
    })
}

/// Whether the file at `rel` of layer `layer` is composed: git does not
/// ignore it (or it is a `.env` file), and the layer lends it.
fn composed_file(git_ignored: bool, layer: usize, rel: &str) -> bool {
    (!git_ignored || is_dotenv(rel)) && lends(layer, rel)
}

/// What composition puts at `rel` (a file, or everything under a folder)
/// for `app` of `store`, from the files on disk now.
fn desired(
    ws: &Workspace,
    rules: &IgnoreRules,
    store: &str,
    app: &str,
    rel: &str,
) -> Result<BTreeMap<String, Composed>> {
    let root = ws.root();
    let mut files: BTreeMap<String, Composed> = BTreeMap::new();
    let mut folders: BTreeSet<String> = BTreeSet::new();
    let layers = ws.layers(store, app);
    // As in composition: what `ignorePaths` removes is in no layer.
    let ignore = ws.ignore_paths(store)?;
    for (i, layer) in layers.iter().enumerate() {
        let base = join(&layer.dir, rel);
        let full = root.join(strata_engine::fs_path(&base));
        let Ok(meta) = std::fs::symlink_metadata(&full) else {
            continue;
        };
        if meta.is_dir() && rules.is_ignored(&full, true) {
            continue;
        }
        if meta.is_dir() {
            let mut found = Vec::new();
            for e in walker(&full).build().flatten() {
                if e.file_type().is_some_and(|t| !t.is_dir()) {
                    found.push(strata_engine::relative(&full, e.path()));
                }
            }
            if rel.is_empty() {
                // Git-ignored `.env` files are composed too.
                for name in crate::listing::dotenv_files(&full)? {
                    if !found.contains(&name) {
                        found.push(name);
                    }
                }
            }
            for sub in found {
                let path = join(rel, &sub);
                if !lends(i, &path) || ignore.removes(app, &path) {
                    continue;
                }
                if i > 0 && path == PACKAGE_JSON {
                    return Err(Error::PackageJsonOverride {
                        path: root.join(&layer.dir).join(PACKAGE_JSON),
                    });
                }
                if let Some(e) = entry(root, &join(&base, &sub), &path)? {
                    files.insert(path, e);
                }
            }
            folders.insert(rel.to_string());
        } else if composed_file(rules.is_ignored(&full, false), i, rel) && !ignore.removes(app, rel)
        {
            if i > 0 && rel == PACKAGE_JSON {
                return Err(Error::PackageJsonOverride { path: full });
            }
            if let Some(e) = entry(root, &base, rel)? {
                files.insert(rel.to_string(), e);
            }
        }
    }
    if let Some(pkg) = files.get_mut(PACKAGE_JSON)
        && pkg.kind != EntryKind::Symlink
    {
        let path = root.join(&layers[0].dir).join(PACKAGE_JSON);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let generated = package_json(&bytes, &format!("{app}-{store}"))
            .map_err(|message| Error::PackageJson { path, message })?;
        pkg.digest = strata_engine::ContentHash::of(&generated);
        pkg.source = Source::Generated(generated);
    }
    // A file in one layer where another has a folder.
    if let Some(file) = files
        .keys()
        .find(|p| files.keys().any(|q| q.starts_with(&format!("{p}/"))))
    {
        return Err(Error::FileFolderConflict {
            file: PathBuf::from(strata_engine::display(file).as_ref()),
            folder: PathBuf::from(
                strata_engine::display(
                    files
                        .keys()
                        .find(|q| q.starts_with(&format!("{file}/")))
                        .unwrap(),
                )
                .as_ref(),
            ),
        });
    }
    Ok(files)
}

/// Brings `.out/<store>/<app>/<rel>` to what composition says now. Returns
/// the copies written and removed.
pub fn reconcile(
    ws: &Workspace,
    rules: &IgnoreRules,
    sources: &SourceCache,
    target: &Target,
) -> Result<Vec<Update>> {
    let (store, app, rel) = target;
    let root = ws.root();
    let out = root.join(out_dir(store, app));
    let mut updates = Vec::new();
    // A path git ignores in the app (a build output such as `.next/`), or a
    // tool's folder, is never touched in `.out`: deleting it in a source
    // layer must not wipe the build outputs of every store.
    let first = rel.split('/').next().unwrap_or("");
    let base_path = root
        .join(crate::workspace::APPS)
        .join(app)
        .join(strata_engine::fs_path(rel));
    if !rel.is_empty()
        && !is_dotenv(rel)
        && (TOOL_OWNED.contains(&first)
            || (first.starts_with(".env") && !rel.contains('/'))
            || rules.is_ignored(&base_path, true)
            || rules.is_ignored(&base_path, false))
    {
        return Ok(updates);
    }
    let want = desired(ws, rules, store, app, rel)?;
    // What is there now (git-ignored outputs and tool folders left alone).
    let mut have: BTreeSet<String> = BTreeSet::new();
    let at = if rel.is_empty() {
        out.clone()
    } else {
        out.join(strata_engine::fs_path(rel))
    };
    match std::fs::symlink_metadata(&at) {
        Ok(m) if m.is_dir() => {
            let mut walk = walker(&at);
            let top = out.clone();
            walk.filter_entry(move |e| {
                let r = strata_engine::relative(&top, e.path());
                let first = r.split('/').next().unwrap_or("");
                !(TOOL_OWNED.contains(&first) || (first.starts_with(".env") && !r.contains('/')))
            });
            for e in walk.build().flatten() {
                if e.file_type().is_some_and(|t| !t.is_dir()) {
                    have.insert(strata_engine::relative(&out, e.path()));
                }
            }
            // The `.env` files composition owns: those a layer has (one
            // someone put in `.out` by hand, under a name no layer has,
            // stays).
            if rel.is_empty() {
                for layer in ws.layers(store, app) {
                    for name in crate::listing::dotenv_files(&root.join(&layer.dir))? {
                        if out.join(&name).is_file() {
                            have.insert(name);
                        }
                    }
                }
            }
        }
        Ok(_) => {
            have.insert(rel.clone());
        }
        Err(_) => {}
    }
    // Removals first: a file or a symlink where a folder now goes must be
    // gone before anything is written under that path.
    for path in have.iter().filter(|p| !want.contains_key(*p)) {
        if remove(&out.join(strata_engine::fs_path(path)))? {
            updates.push(Update {
                store: store.clone(),
                change: "removed",
                path: format!("{}/{path}", out_dir(store, app)),
            });
        }
        // Folders left empty go too, up to the app's folder.
        let on_disk = strata_engine::fs_path(path);
        let mut dir = on_disk.parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if std::fs::remove_dir(out.join(d)).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    let composition = Composition::assembled(want.values().cloned().collect());
    for e in &composition.entries {
        let path = out.join(strata_engine::fs_path(&e.path));
        clear_parents(&out, &e.path)?;
        let in_place = Fingerprint::at(&path).is_ok_and(|fp| holds(&path, &fp, e));
        if !in_place {
            write_replacing(root, &composition, e, &path, sources)?;
            updates.push(Update {
                store: store.clone(),
                change: "written",
                path: format!("{}/{}", out_dir(store, app), e.path),
            });
        }
    }
    Ok(updates)
}

/// Removes anything that is not a real folder (a file, a symlink) on the
/// way from `out` to `rel`'s folder, so that a write never follows a link
/// or fails on a file.
fn clear_parents(out: &Path, rel: &str) -> Result<()> {
    let mut at = out.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push(strata_engine::fs_path(part));
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                remove(&at)?;
            }
            Err(_) => break,
        }
    }
    Ok(())
}

/// The deployable stores of `selection` (all when empty) in `ws`.
pub fn selected(ws: &Workspace, selection: &[String]) -> Vec<String> {
    ws.deployable()
        .into_iter()
        .map(|s| s.id.clone())
        .filter(|id| selection.is_empty() || selection.contains(id))
        .collect()
}
