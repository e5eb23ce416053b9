//! Store management: `store add` (a folder, and a config entry written into
//! the file as it is formatted), `store move` (the folders, with git when
//! they are tracked, and which files now resolve differently) and `store
//! lint` (dead, orphan and drifted overrides, `package.json` overrides).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use jsonc_parser::cst::{CstInputValue, CstRootNode};
use serde::Serialize;
use strata_engine::{ContentHash, EntryKind, write_atomic};

use crate::compose::PACKAGE_JSON;
use crate::config::CONFIG_FILE;
use crate::error::{Error, Result};
use crate::listing::Listing;
use crate::prepare::{MIDDLEWARE_APP, NEXTJS_APP, NUXT_APP};
use crate::workspace::{APPS, STORES, Workspace};

fn usage(message: String) -> Error {
    Error::Usage { message }
}

/// What `store add` is asked for.
#[derive(Clone, Debug, Default)]
pub struct AddOptions {
    /// The new store's id.
    pub id: String,
    /// Its parent store, or `None` for the root of the tree.
    pub parent: Option<String>,
    /// A template store: in the tree only, not in the config.
    pub template: bool,
    /// `nextjs` or `nuxt` (default: the one frontend base app there is).
    pub framework: Option<String>,
    /// The console project (default: the id).
    pub project_name: Option<String>,
    /// The cloud region.
    pub cloud_region: Option<String>,
}

/// What `store add` did.
#[derive(Debug, Serialize)]
pub struct AddReport {
    /// The id.
    pub id: String,
    /// The store's folder, relative to the root.
    pub dir: String,
    /// The app folders made in it.
    pub apps: Vec<String>,
    /// The config entry written (none for a template).
    pub entry: Option<serde_json::Value>,
    /// The `tsconfig.json` files written for editors.
    pub tsconfig: Vec<String>,
}

impl std::fmt::Display for AddReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "created {}/", self.dir)?;
        for app in &self.apps {
            writeln!(f, "  {}/{app}/", self.dir)?;
        }
        for path in &self.tsconfig {
            writeln!(f, "wrote {path} (for editors)")?;
        }
        match &self.entry {
            Some(entry) => writeln!(
                f,
                "added \"{}\" to {CONFIG_FILE}: {}",
                self.id,
                serde_json::to_string(entry).unwrap_or_default()
            ),
            None => writeln!(f, "a template store: not in {CONFIG_FILE}"),
        }
    }
}

/// The folder a store with this parent lives in.
fn stores_dir(ws: &Workspace, parent: Option<&str>) -> Result<String> {
    match parent {
        None | Some("root") => Ok(format!("{APPS}/{STORES}")),
        Some(p) => match ws.store(p) {
            Some(s) => Ok(format!("{}/{STORES}", s.dir)),
            None => Err(usage(format!(
                "unknown parent store {p:?}; the stores are: {}",
                ws.stores()
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

/// The first port above every one the config uses for `kind`, from
/// `start` when none is used.
fn free_port(ws: &Workspace, kind: &str, start: u16) -> u16 {
    ws.config
        .stores
        .values()
        .filter_map(|s| s.local_ports.get(kind).copied())
        .max()
        .map_or(start, |p| p.saturating_add(1))
}

/// Adds a store: its folder (with a `README.md`, so that git keeps it, and
/// an empty folder per app) and, unless a template, its config entry
/// appended to `stores` with the file's formatting and key order kept.
pub fn add_store(ws: &Workspace, options: &AddOptions) -> Result<AddReport> {
    let id = &options.id;
    if let Some(reason) = crate::store_id::invalid_reason(id) {
        return Err(Error::InvalidStoreId {
            id: id.clone(),
            place: "--store-id".into(),
            reason,
        });
    }
    if let Some(s) = ws.store(id) {
        return Err(usage(format!("store {id:?} exists already, at {}", s.dir)));
    }
    if ws.config.stores.contains_key(id) {
        return Err(usage(format!(
            "store {id:?} is in {CONFIG_FILE} already (with no folder)"
        )));
    }
    if id == "root" {
        return Err(usage(
            "\"root\" names the top of the store tree (--parent root); choose another id".into(),
        ));
    }
    let dir = format!("{}/{id}", stores_dir(ws, options.parent.as_deref())?);
    let frontends: Vec<&str> = [NEXTJS_APP, NUXT_APP]
        .into_iter()
        .filter(|a| ws.base_apps.iter().any(|b| b == a))
        .collect();
    let framework = match options.framework.as_deref() {
        Some(f @ ("nextjs" | "nuxt")) => {
            let app = if f == "nuxt" { NUXT_APP } else { NEXTJS_APP };
            if !options.template && !frontends.contains(&app) {
                return Err(usage(format!(
                    "--framework {f}: there is no apps/{app} base app to deploy"
                )));
            }
            Some(f.to_string())
        }
        Some(other) => {
            return Err(usage(format!("--framework {other:?}: say nextjs or nuxt")));
        }
        None => match frontends.as_slice() {
            [one] => Some(if *one == NUXT_APP { "nuxt" } else { "nextjs" }.to_string()),
            [_, _] if !options.template => {
                return Err(usage(format!(
                    "this repository has both apps/{NEXTJS_APP} and apps/{NUXT_APP}: say which the store deploys with --framework nextjs or --framework nuxt"
                )));
            }
            _ => None,
        },
    };
    let skipped = match framework.as_deref() {
        Some("nextjs") => Some(NUXT_APP),
        Some("nuxt") => Some(NEXTJS_APP),
        _ => None,
    };
    let apps: Vec<String> = ws
        .base_apps
        .iter()
        .filter(|a| Some(a.as_str()) != skipped)
        .cloned()
        .collect();

    let entry = if options.template {
        None
    } else {
        let mut deployment = serde_json::Map::new();
        if let Some(f) = &framework {
            deployment.insert("framework".into(), f.clone().into());
        }
        deployment.insert(
            "projectName".into(),
            options
                .project_name
                .clone()
                .unwrap_or_else(|| id.clone())
                .into(),
        );
        if let Some(r) = &options.cloud_region {
            deployment.insert("cloudRegion".into(), r.clone().into());
        }
        let mut ports = serde_json::Map::new();
        if ws.base_apps.iter().any(|a| a == MIDDLEWARE_APP) {
            ports.insert(
                "middleware".into(),
                free_port(ws, "middleware", 4000).into(),
            );
        }
        match framework.as_deref() {
            Some("nuxt") => {
                ports.insert("nuxt".into(), free_port(ws, "nuxt", 3333).into());
            }
            Some(_) => {
                ports.insert("nextjs".into(), free_port(ws, "nextjs", 3000).into());
            }
            None => {}
        }
        Some(serde_json::json!({
            "deployment": deployment,
            "localPorts": ports,
            "localDomain": format!("{id}.local"),
        }))
    };

    // The new config text first (nothing is written if it cannot be made).
    let config_text = match &entry {
        Some(entry) => Some(with_store(&ws.config.path, id, entry)?),
        None => None,
    };
    let root = ws.root();
    let store_dir = root.join(&dir);
    std::fs::create_dir_all(&store_dir).map_err(|e| Error::io(&store_dir, e))?;
    let made = (|| {
        for app in &apps {
            let d = store_dir.join(app);
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        let readme = format!(
            "# {id}\n\nA store{}. Files in `<app>/` override the same paths of that app for this store and the stores below it; child stores go in `stores/<id>/`.\n",
            match options.parent.as_deref() {
                None | Some("root") => String::new(),
                Some(p) => format!(" below {p}"),
            }
        );
        write_atomic(&store_dir.join("README.md"), readme.as_bytes(), false)?;
        if let Some(text) = &config_text {
            write_atomic(&ws.config.path, text.as_bytes(), false)?;
        }
        Ok(())
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&store_dir);
        return Err(e);
    }
    // Editors' configs, from the tree as it is now.
    let tsconfig =
        crate::tsconfig::sync(&Workspace::load(root)?, std::slice::from_ref(id), false)?.stale;
    Ok(AddReport {
        id: id.clone(),
        dir,
        apps,
        entry,
        tsconfig,
    })
}

/// The config's text with `entry` appended to `stores` under `id`, the
/// rest of the file as it was.
fn with_store(path: &Path, id: &str, entry: &serde_json::Value) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    // A byte order mark stays where it was, outside what is parsed.
    let (bom, text) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text.as_str()),
    };
    let root = CstRootNode::parse(text, &Default::default()).map_err(|e| Error::ConfigShape {
        path: path.to_path_buf(),
        field: "(the file)".into(),
        message: e.to_string(),
    })?;
    let Some(top) = root.object_value() else {
        return Err(Error::ConfigShape {
            path: path.to_path_buf(),
            field: "(the top level)".into(),
            message: "expected an object".into(),
        });
    };
    let stores = top.object_value_or_set("stores");
    stores.append(id, input(entry));
    Ok(format!("{bom}{root}"))
}

fn input(value: &serde_json::Value) -> CstInputValue {
    match value {
        serde_json::Value::Null => CstInputValue::Null,
        serde_json::Value::Bool(b) => CstInputValue::Bool(*b),
        serde_json::Value::Number(n) => CstInputValue::Number(n.to_string()),
        serde_json::Value::String(s) => CstInputValue::String(s.clone()),
        serde_json::Value::Array(a) => CstInputValue::Array(a.iter().map(input).collect()),
        serde_json::Value::Object(o) => {
            CstInputValue::Object(o.iter().map(|(k, v)| (k.clone(), input(v))).collect())
        }
    }
}

/// One file of a composition: its digest and the layer that gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Winner {
    digest: ContentHash,
    kind: EntryKind,
    /// The owner: `base` or a store id.
    owner: String,
}

/// Which layer wins at each path of `app` for `store`, read from disk.
fn winners(
    ws: &Workspace,
    store: &str,
    app: &str,
    listings: &mut Listings,
) -> Result<BTreeMap<String, Winner>> {
    let mut out = BTreeMap::new();
    let ignore = ws.ignore_paths(store)?;
    for (l, layer) in ws.layers(store, app).into_iter().enumerate() {
        if !ws.root().join(&layer.dir).is_dir() {
            continue;
        }
        let listing = listings.get(ws.root(), &layer.dir)?;
        let owner = match &layer.owner {
            crate::workspace::Owner::Base => "base".to_string(),
            crate::workspace::Owner::Store(id) => id.clone(),
        };
        for e in &listing.entries {
            if (l > 0 && e.path == PACKAGE_JSON)
                || !crate::compose::lends(l, &e.path)
                || ignore.removes(app, &e.path)
            {
                continue;
            }
            out.insert(
                e.path.clone(),
                Winner {
                    digest: e.digest,
                    kind: e.kind,
                    owner: owner.clone(),
                },
            );
        }
    }
    Ok(out)
}

/// A file of a deployable store that resolves differently after a move.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ResolutionChange {
    /// The store.
    pub store: String,
    /// The app.
    pub app: String,
    /// The path in the app.
    pub path: String,
    /// Whose file it was (`base`, a store id), or none.
    pub before: Option<String>,
    /// Whose file it is now, or none.
    pub after: Option<String>,
}

/// What `store move` did.
#[derive(Debug, Serialize)]
pub struct MoveReport {
    /// (id, old folder, new folder).
    pub moved: Vec<(String, String, String)>,
    /// Whether git moved them (history follows).
    pub with_git: bool,
    /// Every file of a deployable store whose content now comes from
    /// elsewhere: what a user must test.
    pub changes: Vec<ResolutionChange>,
    /// The `tsconfig.json` files rewritten for editors.
    pub tsconfig: Vec<String>,
}

impl std::fmt::Display for MoveReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (id, from, to) in &self.moved {
            writeln!(
                f,
                "moved {id}: {from} -> {to}{}",
                if self.with_git { " (git mv)" } else { "" }
            )?;
        }
        for path in &self.tsconfig {
            writeln!(f, "rewrote {path} (for editors)")?;
        }
        if self.changes.is_empty() {
            return writeln!(f, "no file of a deployable store resolves differently");
        }
        writeln!(
            f,
            "{} now {} differently (test {}):",
            plural(self.changes.len(), "file"),
            if self.changes.len() == 1 {
                "resolves"
            } else {
                "resolve"
            },
            if self.changes.len() == 1 {
                "it"
            } else {
                "them"
            },
        )?;
        for c in &self.changes {
            writeln!(
                f,
                "  {}/{}/{}: {} -> {}",
                c.store,
                c.app,
                strata_engine::display(&c.path),
                c.before.as_deref().unwrap_or("(none)"),
                c.after.as_deref().unwrap_or("(none)")
            )?;
        }
        Ok(())
    }
}

/// "1 file", "2 files".
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The compositions of the deployable stores below `ids`, by (store, app).
type Snapshot = BTreeMap<(String, String), BTreeMap<String, Winner>>;

/// Layer folders read once (a missing one is empty). A move changes which
/// layers a store has, not what a layer holds, so `store move` reads a
/// folder once before and after (a moved folder under its old name).
#[derive(Default)]
struct Listings {
    read: BTreeMap<String, std::rc::Rc<Listing>>,
    /// (old folder, new folder) of each moved store.
    moved: Vec<(String, String)>,
}

impl Listings {
    fn get(&mut self, root: &Path, dir: &str) -> Result<std::rc::Rc<Listing>> {
        let key = self
            .moved
            .iter()
            .find_map(|(from, to)| {
                dir.strip_prefix(to.as_str())
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                    .map(|rest| format!("{from}{rest}"))
            })
            .unwrap_or_else(|| dir.to_string());
        if let Some(l) = self.read.get(&key) {
            return Ok(l.clone());
        }
        let listing = std::rc::Rc::new(if root.join(dir).is_dir() {
            Listing::scan(root, dir, None)?
        } else {
            Listing::default()
        });
        self.read.insert(key, listing.clone());
        Ok(listing)
    }
}

fn snapshot(ws: &Workspace, ids: &[String], listings: &mut Listings) -> Result<Snapshot> {
    let mut out = BTreeMap::new();
    for id in ids {
        for store in ws.deployable_descendants(id) {
            for app in &ws.base_apps {
                out.insert(
                    (store.id.clone(), app.clone()),
                    winners(ws, &store.id, app, listings)?,
                );
            }
        }
    }
    Ok(out)
}

/// Moves the stores `ids` under `parent` (`None`: the root of the tree).
pub fn move_stores(ws: &Workspace, ids: &[String], parent: Option<&str>) -> Result<MoveReport> {
    let parent = parent.filter(|p| *p != "root");
    let target = stores_dir(ws, parent)?;
    let mut plan = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let ids: Vec<String> = ids
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect();
    for id in &ids {
        let Some(store) = ws.store(id) else {
            return Err(usage(format!("unknown store {id:?}")));
        };
        // A store below another one listed moves with it: moving it too
        // would move it out from under its ancestor.
        if let Some(above) = ws
            .lineage(id)
            .iter()
            .find(|s| s.id != *id && ids.contains(&s.id))
        {
            return Err(usage(format!(
                "{id} is below {}, which is moved too (and takes {id} along); list only {}",
                above.id, above.id
            )));
        }
        if let Some(p) = parent
            && ws.lineage(p).iter().any(|s| s.id == *id)
        {
            return Err(usage(format!(
                "cannot move {id} under {p}: {p} is {id} itself or one of its descendants"
            )));
        }
        let to = format!("{target}/{id}");
        if store.dir == to {
            return Err(usage(format!("{id} is at {to} already")));
        }
        if ws.root().join(&to).exists() {
            return Err(usage(format!("{to} exists already")));
        }
        plan.push((id.clone(), store.dir.clone(), to));
    }
    let mut listings = Listings::default();
    let before = snapshot(ws, &ids, &mut listings)?;
    let root = ws.root();
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let with_git = plan
        .iter()
        .all(|(_, from, _)| git(&["ls-files", "--error-unmatch", "--", from]));
    let dest = root.join(&target);
    std::fs::create_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
    for (_, from, to) in &plan {
        if with_git {
            let out = Command::new("git")
                .arg("-C")
                .arg(root)
                .args(["mv", "--", from, to])
                .output()
                .map_err(|e| Error::io(root, e))?;
            if !out.status.success() {
                return Err(Error::Git {
                    message: format!(
                        "git mv {from} {to}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                });
            }
        } else {
            std::fs::rename(root.join(from), root.join(to))
                .map_err(|e| Error::io(root.join(from), e))?;
        }
    }
    let after_ws = Workspace::load(root)?;
    listings.moved = plan
        .iter()
        .map(|(_, from, to)| (from.clone(), to.clone()))
        .collect();
    let after = snapshot(&after_ws, &ids, &mut listings)?;
    let mut changes = Vec::new();
    for (key, old) in &before {
        let empty = BTreeMap::new();
        let new = after.get(key).unwrap_or(&empty);
        let paths: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for path in paths {
            let (o, n) = (old.get(path), new.get(path));
            let same = match (o, n) {
                (Some(a), Some(b)) => a.digest == b.digest && a.kind == b.kind,
                (None, None) => true,
                _ => false,
            };
            if !same {
                changes.push(ResolutionChange {
                    store: key.0.clone(),
                    app: key.1.clone(),
                    path: path.clone(),
                    before: o.map(|w| w.owner.clone()),
                    after: n.map(|w| w.owner.clone()),
                });
            }
        }
    }
    // The moved stores' editor configs (and their descendants') point at
    // their new ancestors.
    let subtree: Vec<String> = after_ws
        .stores()
        .iter()
        .filter(|s| after_ws.lineage(&s.id).iter().any(|a| ids.contains(&a.id)))
        .map(|s| s.id.clone())
        .collect();
    let tsconfig = if subtree.is_empty() {
        Vec::new()
    } else {
        crate::tsconfig::sync(&after_ws, &subtree, false)?.stale
    };
    Ok(MoveReport {
        moved: plan,
        with_git,
        changes,
        tsconfig,
    })
}

/// What `store lint` found.
#[derive(Debug, Default, Serialize)]
pub struct LintReport {
    /// Overrides byte-identical to what they shadow: they can go.
    pub dead: Vec<Finding>,
    /// Overrides of paths that were above once and are no longer.
    pub orphans: Vec<Finding>,
    /// Overrides whose shadowed file changed after the override's last
    /// edit (by git history): they may miss a fix.
    pub drift: Vec<Finding>,
    /// Stores that override `package.json` (never used).
    pub package_json: Vec<Finding>,
    /// What limited the checks (no git history, a shallow clone).
    pub warnings: Vec<String>,
}

/// One finding: the override and what it concerns.
#[derive(Debug, Serialize)]
pub struct Finding {
    /// The override, relative to the root.
    pub path: String,
    /// The file it shadows (or once shadowed), relative to the root.
    pub shadows: Option<String>,
}

impl LintReport {
    /// Whether anything was found.
    pub fn found(&self) -> bool {
        !(self.dead.is_empty()
            && self.orphans.is_empty()
            && self.drift.is_empty()
            && self.package_json.is_empty())
    }
}

impl std::fmt::Display for LintReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sections = [
            (
                "dead (identical to what they shadow; delete them)",
                &self.dead,
            ),
            (
                "orphans (what they overrode is gone from the layers above)",
                &self.orphans,
            ),
            (
                "drift (the shadowed file changed after the override's last edit)",
                &self.drift,
            ),
            (
                "package.json overrides (never used: package.json comes from the base app)",
                &self.package_json,
            ),
        ];
        for (title, findings) in sections {
            if findings.is_empty() {
                continue;
            }
            writeln!(f, "{title}:")?;
            for finding in findings {
                let path = strata_engine::display(&finding.path);
                match &finding.shadows {
                    Some(s) => writeln!(f, "  {path} (shadows {})", strata_engine::display(s))?,
                    None => writeln!(f, "  {path}")?,
                }
            }
        }
        if !self.found() {
            writeln!(f, "no dead, orphan or drifted overrides")?;
        }
        Ok(())
    }
}

/// What git history says about the files under `apps/`: the newest commit
/// that changed each path, from one walk of the history.
struct History {
    repo: git2::Repository,
    /// Path (relative to the root) to the newest commit changing it.
    last: std::collections::HashMap<String, git2::Oid>,
    /// Each commit's place in a topological order, newest first: a commit
    /// comes before every one of its ancestors.
    order: std::collections::HashMap<git2::Oid, usize>,
    /// Whether no commit has two parents: then a commit that comes first
    /// descends from every one after it.
    linear: bool,
    /// Answers of `graph_descendant_of` already asked.
    asked: std::cell::RefCell<std::collections::HashMap<(git2::Oid, git2::Oid), bool>>,
}

impl History {
    /// The history of the repository `root` is in; `None` outside one or
    /// before a first commit.
    fn read(root: &Path) -> Result<Option<History>> {
        let Ok(repo) = git2::Repository::discover(root) else {
            return Ok(None);
        };
        if repo.workdir().is_none() || repo.head().is_err() {
            return Ok(None);
        }
        // One `git log` over `apps/`: git's tree diff skips unchanged
        // folders by their hashes, which libgit2's does not (20 times
        // slower over 1,000 commits). Names come raw (`-z`), relative to
        // the root, in a topological order, newest first; merges list no
        // names (a change is dated by the commit that made it).
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args([
                "log",
                "--topo-order",
                "--relative",
                "--name-status",
                // A file moved unchanged (`store move`) is not an edit:
                // its history goes on under the old name.
                "-M100%",
                "-z",
                "--format=%x01%H %P",
                "--",
                APPS,
            ])
            .output()
            .map_err(|e| Error::Git {
                message: format!("git log: {e}; is git installed (Debian package git)?"),
            })?;
        if !out.status.success() {
            return Err(Error::Git {
                message: format!("git log: {}", String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
        let mut last: std::collections::HashMap<String, git2::Oid> = Default::default();
        let mut order = std::collections::HashMap::new();
        let mut linear = true;
        let mut commit = None;
        // Old name -> the name a later commit moved the file to, unchanged.
        let mut moved_to: std::collections::HashMap<String, String> = Default::default();
        // Newest first: the first commit seen for a name is its last edit.
        let mut touched =
            |path: String, oid: git2::Oid, moved_to: &std::collections::HashMap<String, String>| {
                let mut name = path;
                // Each name the file had later, too (a chain of moves ends).
                for _ in 0..64 {
                    let next = moved_to.get(&name).cloned();
                    last.entry(name).or_insert(oid);
                    match next {
                        Some(n) => name = n,
                        None => break,
                    }
                }
            };
        let name = |token: &[u8]| {
            use std::os::unix::ffi::OsStrExt;
            strata_engine::name_str(std::ffi::OsStr::from_bytes(token)).into_owned()
        };
        let mut tokens = out.stdout.split(|b| *b == 0);
        while let Some(token) = tokens.next() {
            let token = token.strip_prefix(b"\n").unwrap_or(token);
            if let Some(header) = token.strip_prefix(b"\x01") {
                let header = String::from_utf8_lossy(header);
                let mut ids = header.split(' ').filter(|s| !s.is_empty());
                let oid = ids.next().and_then(|h| git2::Oid::from_str(h).ok());
                if ids.count() > 1 {
                    linear = false;
                }
                if let Some(oid) = oid {
                    order.insert(oid, order.len());
                }
                commit = oid;
                continue;
            }
            let Some(oid) = commit else { continue };
            match token.first() {
                // A rename or a copy: the old name, then the new one.
                Some(b'R' | b'C') => {
                    let (Some(old), Some(new)) = (tokens.next(), tokens.next()) else {
                        break;
                    };
                    let (old, new) = (name(old), name(new));
                    let pure = token.ends_with(b"100");
                    if token[0] == b'R' {
                        touched(old.clone(), oid, &moved_to);
                    }
                    if pure {
                        // Not an edit of `new`: older edits of `old` are
                        // its edits.
                        moved_to.insert(old, new);
                    } else {
                        touched(new, oid, &moved_to);
                    }
                }
                Some(_) => {
                    if let Some(path) = tokens.next() {
                        touched(name(path), oid, &moved_to);
                    }
                }
                None => {}
            }
        }
        Ok(Some(History {
            repo,
            last,
            order,
            linear,
            asked: Default::default(),
        }))
    }

    /// The newest commit that changed `path` (relative to the root).
    fn last(&self, path: &str) -> Option<git2::Oid> {
        self.last.get(path).copied()
    }

    /// Whether commit `later` descends from commit `earlier`.
    fn comes_after(&self, earlier: git2::Oid, later: git2::Oid) -> bool {
        let (Some(&e), Some(&l)) = (self.order.get(&earlier), self.order.get(&later)) else {
            return false;
        };
        // A descendant comes first in the order; one that does not is
        // none. In a linear history, one that does is.
        if l >= e {
            return false;
        }
        if self.linear {
            return true;
        }
        *self
            .asked
            .borrow_mut()
            .entry((earlier, later))
            .or_insert_with(|| {
                self.repo
                    .graph_descendant_of(later, earlier)
                    .unwrap_or(false)
            })
    }
}

/// Checks every store's overrides.
pub fn lint(ws: &Workspace) -> Result<LintReport> {
    let root = ws.root();
    let history = History::read(root)?;
    let mut report = LintReport::default();
    match &history {
        None => report.warnings.push(
            "not in a git repository with commits: orphans and drift, which need history, were not looked for".into(),
        ),
        Some(h) if h.repo.is_shallow() => report.warnings.push(
            "this is a shallow clone: orphans and drift are judged on the history it has (git fetch --unshallow for all of it)".into(),
        ),
        Some(_) => {}
    }
    let mut listings = Listings::default();
    for store in ws.stores() {
        for app in &ws.base_apps {
            let layers = ws.layers(&store.id, app);
            let (own, above) = layers.split_last().expect("a base layer at least");
            let own_listing = listings.get(root, &own.dir)?;
            if own_listing.entries.is_empty() {
                continue;
            }
            let above_listings: Vec<std::rc::Rc<Listing>> = above
                .iter()
                .map(|l| listings.get(root, &l.dir))
                .collect::<Result<_>>()?;
            for entry in &own_listing.entries {
                if !crate::compose::lends(above.len(), &entry.path) {
                    continue;
                }
                let path = format!("{}/{}", own.dir, entry.path);
                if entry.path == PACKAGE_JSON {
                    report.package_json.push(Finding {
                        path,
                        shadows: Some(format!("{}/{PACKAGE_JSON}", above[0].dir)),
                    });
                    continue;
                }
                // The closest layer above that has the path.
                let shadowed = above
                    .iter()
                    .zip(&above_listings)
                    .rev()
                    .find_map(|(l, listing)| listing.get(&entry.path).map(|e| (l, e)));
                match shadowed {
                    Some((layer, e)) => {
                        let under = format!("{}/{}", layer.dir, entry.path);
                        if e.digest == entry.digest && e.kind == entry.kind {
                            report.dead.push(Finding {
                                path,
                                shadows: Some(under),
                            });
                        } else if let Some(history) = &history
                            && let (Some(mine), Some(theirs)) =
                                (history.last(&path), history.last(&under))
                            && history.comes_after(mine, theirs)
                        {
                            report.drift.push(Finding {
                                path,
                                shadows: Some(under),
                            });
                        }
                    }
                    None => {
                        // A file only this store has: an orphan when the
                        // path was above once (git remembers), an addition
                        // otherwise.
                        let once = |l: &crate::workspace::Layer| {
                            history.as_ref().is_some_and(|h| {
                                h.last(&format!("{}/{}", l.dir, entry.path)).is_some()
                            })
                        };
                        if above.iter().any(once) {
                            report.orphans.push(Finding {
                                path,
                                shadows: None,
                            });
                        }
                    }
                }
            }
        }
    }
    unmatched_ignore_paths(ws, &mut listings, &mut report)?;
    Ok(report)
}

/// Warns about each `ignorePaths` pattern that matches no file its store
/// would have without it (a typo, or a file that moved).
fn unmatched_ignore_paths(
    ws: &Workspace,
    listings: &mut Listings,
    report: &mut LintReport,
) -> Result<()> {
    for (id, settings) in &ws.config.stores {
        for pattern in &settings.ignore_paths {
            // A `!` rule is checked as the rule it negates would be.
            let positive = pattern.strip_prefix('!').unwrap_or(pattern);
            let Ok(single) =
                crate::ignore_paths::IgnorePaths::new(vec![crate::ignore_paths::IgnoreRule {
                    store: id.clone(),
                    pattern: positive.to_string(),
                }])
            else {
                continue;
            };
            let mut matched = false;
            'apps: for app in &ws.base_apps {
                for layer in ws.layers(id, app) {
                    let listing = listings.get(ws.root(), &layer.dir)?;
                    if listing.entries.iter().any(|e| single.removes(app, &e.path)) {
                        matched = true;
                        break 'apps;
                    }
                }
            }
            if !matched {
                report.warnings.push(format!(
                    "{}: stores.{id}.ignorePaths: {pattern:?} matches no file the store inherits (patterns are relative to .out/{id}/ and start with the app, such as \"storefront-unified-nextjs/public/legal/*\")",
                    crate::config::CONFIG_FILE
                ));
            }
        }
    }
    Ok(())
}
