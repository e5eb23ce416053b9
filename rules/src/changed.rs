//! `store changed`: which deployable stores a git range affects, and why.
//! The composition is the truth: a store is reported when its composed
//! files differ between the two sides, with the changed files behind it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use git2::{Repository, Sort};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::compose::PACKAGE_JSON;
use crate::config::CONFIG_FILE;
use crate::error::{Error, Result};
use crate::lockfile::LOCKFILES;
use crate::snapshot::{CommitSnapshot, GitEntry, Snapshot, WorkSnapshot, workspace};
use crate::workspace::{APPS, STORES, Workspace};

/// What to compare.
#[derive(Clone, Debug)]
pub struct ChangedOptions {
    /// The older side (default `HEAD~1`).
    pub since: String,
    /// The newer side (default `HEAD`); ignored with `uncommitted`.
    pub to: String,
    /// Compare `since` with the working tree instead.
    pub uncommitted: bool,
    /// Globs (relative to the monorepo's root) whose changes affect every
    /// store.
    pub global_dependencies: Vec<String>,
}

/// Why a store is affected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReasonKind {
    /// A file in the store's own folder changed its composition.
    StoreChanged,
    /// A file in an ancestor store or a base app did.
    AncestorChanged,
    /// A lockfile changed.
    PackageLockChanged,
    /// A file matching `--global-dependencies` changed.
    GlobalDependenciesChanged,
    /// The store's own entry in `alokai.config.json` changed.
    ConfigChanged,
}

impl fmt::Display for ReasonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ReasonKind::StoreChanged => "STORE_CHANGED",
            ReasonKind::AncestorChanged => "ANCESTOR_CHANGED",
            ReasonKind::PackageLockChanged => "PACKAGE_LOCK_CHANGED",
            ReasonKind::GlobalDependenciesChanged => "GLOBAL_DEPENDENCIES_CHANGED",
            ReasonKind::ConfigChanged => "CONFIG_CHANGED",
        };
        f.write_str(s)
    }
}

/// One reason, with the files behind it.
#[derive(Clone, Debug, Serialize)]
pub struct Reason {
    /// The kind.
    pub reason: ReasonKind,
    /// The changed files, relative to the monorepo's root.
    pub files: Vec<String>,
    /// For a lockfile change: the packages that changed in the closures of
    /// the store's apps (`express 4.21.1 -> 4.21.2 (storefront-middleware)`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
}

/// An affected store.
#[derive(Clone, Debug, Serialize)]
pub struct ChangedStore {
    /// The store id.
    pub id: String,
    /// Why, in a fixed order.
    pub reasons: Vec<Reason>,
}

/// The answer of `store changed`.
#[derive(Clone, Debug, Serialize)]
pub struct ChangeReport {
    /// The commit `--since` resolved to.
    pub since: String,
    /// The commit compared against (the merge base of the range).
    pub base: String,
    /// The commit `--to` resolved to, or `working-tree`.
    pub to: String,
    /// Files that changed in the range, relative to the monorepo's root.
    pub changed_files: usize,
    /// The affected deployable stores, in the config's order.
    pub stores: Vec<ChangedStore>,
    /// What could not be read exactly (a lockfile that does not parse: every
    /// store counts as affected by it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ChangeReport {
    /// The affected store ids.
    pub fn ids(&self) -> Vec<&str> {
        self.stores.iter().map(|s| s.id.as_str()).collect()
    }
}

fn ref_error(repo: &Repository, flag: &str, reference: &str, e: &git2::Error) -> Error {
    let mut message = format!("cannot resolve {flag} {reference:?}: {}", e.message());
    if repo.is_shallow() {
        message.push_str(
            "; this is a shallow clone, so older commits are missing: fetch more history (git fetch --deepen=100, or --unshallow; in GitHub Actions, actions/checkout with fetch-depth: 0)",
        );
    } else {
        message.push_str("; check the name, or fetch the history that has it (git fetch origin)");
    }
    Error::GitRef { message }
}

/// The stores affected by the changes between two commits (or a commit and
/// the working tree) of the repository holding `root`.
pub fn changed(root: &Path, options: &ChangedOptions) -> Result<ChangeReport> {
    let repo = Repository::discover(root).map_err(|e| Error::GitRef {
        message: format!(
            "{} is not in a git repository: {}",
            root.display(),
            e.message()
        ),
    })?;
    let workdir = repo.workdir().ok_or_else(|| Error::GitRef {
        message: "the repository is bare; run strata in a checkout".into(),
    })?;
    let prefix = prefix(workdir, root)?;

    let since = repo
        .revparse_single(&options.since)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| ref_error(&repo, "--since", &options.since, &e))?;
    let to_ref = if options.uncommitted {
        "HEAD"
    } else {
        options.to.as_str()
    };
    let to = repo
        .revparse_single(to_ref)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| ref_error(&repo, "--to", to_ref, &e))?;
    // Like `git diff since...to`: what the range brought, from where it
    // forked (for a plain ancestor, that is `since` itself).
    let base_id = repo.merge_base(since.id(), to.id()).map_err(|e| Error::GitRef {
        message: format!(
            "{} and {} have no common history here ({}); in a shallow clone, fetch more history (git fetch --deepen=100 or --unshallow)",
            options.since,
            to_ref,
            e.message()
        ),
    })?;
    let base = repo.find_commit(base_id).map_err(|e| Error::Git {
        message: e.message().to_string(),
    })?;

    let old = CommitSnapshot::new(&repo, &base, &prefix)?;
    let base_tree = base.tree().map_err(|e| Error::Git {
        message: e.message().to_string(),
    })?;
    let mut diff_options = git2::DiffOptions::new();
    if !prefix.is_empty() {
        diff_options.pathspec(prefix.trim_end_matches('/'));
    }
    let (diff, new): (git2::Diff<'_>, Box<dyn Snapshot + '_>) = if options.uncommitted {
        diff_options
            .include_untracked(true)
            .recurse_untracked_dirs(true);
        let diff = repo
            .diff_tree_to_workdir_with_index(Some(&base_tree), Some(&mut diff_options))
            .map_err(|e| Error::Git {
                message: e.message().to_string(),
            })?;
        (diff, Box::new(WorkSnapshot::new(root)))
    } else {
        let to_tree = to.tree().map_err(|e| Error::Git {
            message: e.message().to_string(),
        })?;
        let diff = repo
            .diff_tree_to_tree(Some(&base_tree), Some(&to_tree), Some(&mut diff_options))
            .map_err(|e| Error::Git {
                message: e.message().to_string(),
            })?;
        (diff, Box::new(CommitSnapshot::new(&repo, &to, &prefix)?))
    };
    let mut paths: Vec<String> = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            // A name that is not UTF-8 counts, escaped as compose
            // escapes it (`strata_engine::name_str`).
            if let Some(path) = file.path_bytes().map(|b| {
                use std::os::unix::ffi::OsStrExt;
                strata_engine::name_str(std::ffi::OsStr::from_bytes(b)).into_owned()
            }) && let Some(rel) = path.strip_prefix(prefix.as_str())
            {
                paths.push(rel.to_string());
            }
        }
    }
    paths.sort();
    paths.dedup();

    let new_ws = workspace(root, new.as_ref())?;
    // An older side that does not load (no config yet, a broken one) has
    // no stores: everything deployable now counts as new.
    let old_ws = workspace(root, &old).ok();
    let globs = globset(&options.global_dependencies)?;
    let mut warnings = Vec::new();
    let stores = affected(
        &new_ws,
        old_ws.as_ref(),
        &old,
        new.as_ref(),
        &paths,
        &globs,
        &mut warnings,
    )?;
    Ok(ChangeReport {
        since: since.id().to_string(),
        base: base_id.to_string(),
        to: if options.uncommitted {
            "working-tree".into()
        } else {
            to.id().to_string()
        },
        changed_files: paths.len(),
        stores,
        warnings,
    })
}

/// The root of the monorepo relative to the repository's working folder,
/// as a path (empty at the top; any name, UTF-8 or not).
pub(crate) fn prefix_path(workdir: &Path, root: &Path) -> Result<std::path::PathBuf> {
    let canon = |p: &Path| p.canonicalize().map_err(|e| Error::io(p, e));
    let workdir = canon(workdir)?;
    let root = canon(root)?;
    root.strip_prefix(&workdir)
        .map(Path::to_path_buf)
        .map_err(|_| Error::GitRef {
            message: format!(
                "{} is outside the repository at {}",
                root.display(),
                workdir.display()
            ),
        })
}

/// The root of the monorepo relative to the repository's working folder:
/// empty, or ending in `/`.
pub(crate) fn prefix(workdir: &Path, root: &Path) -> Result<String> {
    let rel = prefix_path(workdir, root)?;
    let rel = rel.to_string_lossy();
    Ok(if rel.is_empty() {
        String::new()
    } else {
        format!("{rel}/")
    })
}

fn globset(patterns: &[String]) -> Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|e| Error::BadPattern {
            option: "--global-dependencies",
            pattern: p.clone(),
            message: e.kind().to_string(),
        })?;
        builder.add(glob);
    }
    builder.build().map_err(|e| Error::BadPattern {
        option: "--global-dependencies",
        pattern: e.glob().unwrap_or_default().to_string(),
        message: e.kind().to_string(),
    })
}

/// Where a changed path sits: the layer folder, the app, and the path
/// inside the app.
pub(crate) struct Touched<'p> {
    pub(crate) path: &'p str,
    pub(crate) layer: String,
    pub(crate) app: String,
    pub(crate) rel: String,
}

/// Splits `apps/<app>/<rel>` and `apps/stores/<id>(/stores/<id>)*/<app>/<rel>`.
pub(crate) fn touched(path: &str) -> Option<Touched<'_>> {
    let rest = path.strip_prefix(&format!("{APPS}/"))?;
    let mut parts: Vec<&str> = rest.split('/').collect();
    if parts.len() < 2 {
        return None;
    }
    if parts[0] != STORES {
        let app = parts.remove(0);
        return Some(Touched {
            path,
            layer: format!("{APPS}/{app}"),
            app: app.to_string(),
            rel: parts.join("/"),
        });
    }
    // apps/stores/<id>, then pairs of stores/<id>, then <app>/<rel>.
    let mut i = 2;
    while parts.get(i) == Some(&STORES) && parts.len() > i + 2 {
        i += 2;
    }
    if parts.len() < i + 2 {
        return None;
    }
    let app = parts[i];
    let layer = format!("{APPS}/{}/{app}", parts[..i].join("/"));
    Some(Touched {
        path,
        layer,
        app: app.to_string(),
        rel: parts[i + 1..].join("/"),
    })
}

struct Lookup<'a> {
    snapshot: &'a dyn Snapshot,
    cache: HashMap<String, Option<GitEntry>>,
}

impl Lookup<'_> {
    fn entry(&mut self, path: String) -> Result<Option<GitEntry>> {
        if let Some(hit) = self.cache.get(&path) {
            return Ok(*hit);
        }
        let found = self.snapshot.entry(&path)?;
        self.cache.insert(path, found);
        Ok(found)
    }

    /// The winning file for `rel` among `layers` (base first), of the
    /// layers that lend it.
    fn winner(&mut self, layers: &[String], rel: &str) -> Result<Option<GitEntry>> {
        for (_, dir) in layers
            .iter()
            .enumerate()
            .rev()
            .filter(|(l, _)| crate::compose::lends(*l, rel))
        {
            if let Some(e) = self.entry(format!("{dir}/{rel}"))? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}

fn affected(
    new_ws: &Workspace,
    old_ws: Option<&Workspace>,
    old: &dyn Snapshot,
    new: &dyn Snapshot,
    paths: &[String],
    globs: &GlobSet,
    warnings: &mut Vec<String>,
) -> Result<Vec<ChangedStore>> {
    let base_apps_of = |ws: Option<&Workspace>| ws.map(|w| w.base_apps.clone()).unwrap_or_default();
    let old_apps = base_apps_of(old_ws);
    let is_lockfile = |p: &str| {
        LOCKFILES.contains(&p)
            || p.split_once('/').is_some_and(|(first, rest)| {
                first == APPS
                    && rest.split_once('/').is_some_and(|(app, file)| {
                        LOCKFILES.contains(&file)
                            && (new_ws.base_apps.iter().any(|a| a == app)
                                || old_apps.iter().any(|a| a == app))
                    })
            })
    };
    let mut locks: Vec<String> = paths.iter().filter(|p| is_lockfile(p)).cloned().collect();
    // A patch-package patch changes the closures of what it patches: the
    // root lockfile is read on both sides as if it had changed.
    let patched: Vec<&String> = paths
        .iter()
        .filter(|p| p.starts_with(&format!("{}/", crate::lockfile::PATCHES)))
        .collect();
    let mut read = locks.clone();
    if !patched.is_empty() && read.is_empty() {
        for name in LOCKFILES {
            if new.read(name)?.is_some() {
                read.push((*name).to_string());
                locks.extend(patched.iter().map(|p| (*p).clone()));
                break;
            }
        }
    }
    let impact = lock_impact(new_ws, old_ws, old, new, &read, warnings)?;
    let global: Vec<String> = paths
        .iter()
        .filter(|p| globs.is_match(p.as_str()))
        .cloned()
        .collect();
    let config_touched = paths.iter().any(|p| p == CONFIG_FILE);
    let touches: Vec<Touched<'_>> = paths.iter().filter_map(|p| touched(p)).collect();

    let mut old_lookup = Lookup {
        snapshot: old,
        cache: HashMap::new(),
    };
    let mut new_lookup = Lookup {
        snapshot: new,
        cache: HashMap::new(),
    };
    let mut result = Vec::new();
    let mut lock_reasons: HashMap<String, Vec<String>> = HashMap::new();
    for store in new_ws.deployable() {
        let mut reasons: BTreeMap<ReasonKind, Vec<String>> = BTreeMap::new();
        let old_store = old_ws.and_then(|w| w.store(&store.id).filter(|s| s.deployable).map(|_| w));
        let ignore = new_ws.ignore_paths(&store.id)?;
        let same_shape = old_store.is_some_and(|w| {
            w.base_apps == new_ws.base_apps
                && w.lineage(&store.id)
                    .iter()
                    .map(|s| &s.dir)
                    .eq(new_ws.lineage(&store.id).iter().map(|s| &s.dir))
                // Other `ignorePaths`: other files, whatever changed.
                && w.ignore_paths(&store.id).is_ok_and(|old| old == ignore)
        });
        if same_shape {
            for t in touches
                .iter()
                .filter(|t| new_ws.base_apps.contains(&t.app) && !ignore.removes(&t.app, &t.rel))
            {
                let layers: Vec<String> = new_ws
                    .layers(&store.id, &t.app)
                    .into_iter()
                    .map(|l| l.dir)
                    .collect();
                let Some(position) = layers.iter().position(|d| *d == t.layer) else {
                    continue;
                };
                if !crate::compose::lends(position, &t.rel) {
                    continue;
                }
                // A name that is not UTF-8 cannot be looked up by its text:
                // counted as a change (rebuilding is the safe side).
                if t.rel.contains('\u{FFFD}')
                    || old_lookup.winner(&layers, &t.rel)? != new_lookup.winner(&layers, &t.rel)?
                {
                    let kind = if position + 1 == layers.len() {
                        ReasonKind::StoreChanged
                    } else {
                        ReasonKind::AncestorChanged
                    };
                    reasons.entry(kind).or_default().push(t.path.to_string());
                }
            }
        } else {
            // A new store, or one whose place in the tree (or the set of
            // base apps) changed: compare whole compositions.
            let differs = match old_store {
                None => true,
                Some(w) => composed(w, old, &store.id)? != composed(new_ws, new, &store.id)?,
            };
            if differs {
                let mut files: Vec<String> = touches
                    .iter()
                    .filter(|t| t.layer.starts_with(&format!("{}/", store.dir)))
                    .map(|t| t.path.to_string())
                    .collect();
                if files.is_empty() {
                    files.push(store.dir.clone());
                }
                reasons.insert(ReasonKind::StoreChanged, files);
            }
        }
        match &impact {
            LockImpact::None => {}
            LockImpact::All => {
                reasons.insert(ReasonKind::PackageLockChanged, locks.clone());
            }
            LockImpact::Apps(changes) => {
                let packages: Vec<String> = crate::prepare::deployed_apps(new_ws, &store.id)
                    .iter()
                    .filter_map(|app| changes.get(app).map(|c| (app, c)))
                    .flat_map(|(app, c)| c.iter().map(move |change| format!("{change} ({app})")))
                    .collect();
                if !packages.is_empty() {
                    lock_reasons.insert(store.id.clone(), packages);
                    reasons.insert(ReasonKind::PackageLockChanged, locks.clone());
                }
            }
        }
        if !global.is_empty() {
            reasons.insert(ReasonKind::GlobalDependenciesChanged, global.clone());
        }
        if config_touched || old_store.is_none() {
            let before = old_ws.and_then(|w| w.config.raw_stores.get(&store.id));
            if before != new_ws.config.raw_stores.get(&store.id) {
                reasons.insert(ReasonKind::ConfigChanged, vec![CONFIG_FILE.to_string()]);
            }
        }
        if !reasons.is_empty() {
            let packages = lock_reasons.remove(&store.id).unwrap_or_default();
            result.push(ChangedStore {
                id: store.id.clone(),
                reasons: reasons
                    .into_iter()
                    .map(|(reason, files)| Reason {
                        packages: if reason == ReasonKind::PackageLockChanged {
                            packages.clone()
                        } else {
                            Vec::new()
                        },
                        reason,
                        files,
                    })
                    .collect(),
            });
        }
    }
    Ok(result)
}

/// Which apps a lockfile change reaches.
enum LockImpact {
    /// No lockfile changed.
    None,
    /// Every store (a lockfile in an app folder, one that does not parse,
    /// a lockfile that appeared or went).
    All,
    /// The base apps whose dependency closure changed, with what changed.
    Apps(BTreeMap<String, Vec<String>>),
}

/// The apps whose closure in the root lockfile differs between the sides.
fn lock_impact(
    new_ws: &Workspace,
    old_ws: Option<&Workspace>,
    old: &dyn Snapshot,
    new: &dyn Snapshot,
    locks: &[String],
    warnings: &mut Vec<String>,
) -> Result<LockImpact> {
    if locks.is_empty() {
        return Ok(LockImpact::None);
    }
    // Only root lockfiles are read by package; one in an app folder is not
    // the workspace's.
    if locks.iter().any(|l| l.contains('/')) {
        return Ok(LockImpact::All);
    }
    let mut apps: Vec<String> = new_ws.base_apps.clone();
    if let Some(w) = old_ws {
        apps.extend(w.base_apps.iter().cloned());
    }
    apps.sort();
    apps.dedup();
    let closures = |side: &dyn Snapshot,
                    name: &str|
     -> Result<Option<(crate::lockfile::Closures, strata_engine::ContentHash)>> {
        let Some(bytes) = side.read(name)? else {
            return Ok(None);
        };
        let mut listed = Vec::new();
        for app in &apps {
            let path = format!("{APPS}/{app}/{PACKAGE_JSON}");
            let manifest = side
                .read(&path)?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(serde_json::Value::Null);
            listed.push(crate::lockfile::App {
                dir: format!("{APPS}/{app}"),
                manifest,
            });
        }
        let mut patches = BTreeMap::new();
        for (file, entry) in side.list(crate::lockfile::PATCHES)? {
            if !file.contains('/') {
                patches.insert(file, strata_engine::ContentHash::of(entry.0.as_bytes()));
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        Ok(Some((
            crate::lockfile::closures(name, &text, &listed, &patches),
            strata_engine::ContentHash::of(&bytes),
        )))
    };
    let mut changes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for lock in locks {
        let (Some((before, old_digest)), Some((after, new_digest))) =
            (closures(old, lock)?, closures(new, lock)?)
        else {
            // A lockfile that appeared or went: every store.
            return Ok(LockImpact::All);
        };
        if let Some(w) = before.warning.iter().chain(&after.warning).next() {
            warnings.push(format!("{w}; every store counts as changed by it"));
            return Ok(LockImpact::All);
        }
        for app in &apps {
            let dir = format!("{APPS}/{app}");
            let (a, b) = (before.apps.get(&dir), after.apps.get(&dir));
            let (Some(a), Some(b)) = (a, b) else {
                changes
                    .entry(app.clone())
                    .or_default()
                    .push(format!("{lock} (a new app)"));
                continue;
            };
            if a.digest(old_digest) != b.digest(new_digest) {
                let mut said = b.changes_from(a, 10);
                if said.is_empty() {
                    said.push(format!("{lock} changed"));
                }
                changes.entry(app.clone()).or_default().extend(said);
            }
        }
    }
    Ok(LockImpact::Apps(changes))
}

/// A store's whole composition in a snapshot: app -> path -> git entry.
fn composed(
    ws: &Workspace,
    snapshot: &dyn Snapshot,
    id: &str,
) -> Result<BTreeMap<String, BTreeMap<String, GitEntry>>> {
    let ignore = ws.ignore_paths(id)?;
    let mut apps = BTreeMap::new();
    for app in &ws.base_apps {
        let mut files = BTreeMap::new();
        for (l, layer) in ws.layers(id, app).into_iter().enumerate() {
            for (rel, entry) in snapshot.list(&layer.dir)? {
                if l == 0 || (rel != PACKAGE_JSON && crate::compose::lends(l, &rel)) {
                    files.insert(rel, entry);
                }
            }
        }
        files.retain(|rel, _| !ignore.removes(app, rel));
        apps.insert(app.clone(), files);
    }
    Ok(apps)
}

impl fmt::Display for ChangeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 3;
        if self.stores.is_empty() {
            return writeln!(
                f,
                "no store is affected ({} files changed)",
                self.changed_files
            );
        }
        let width = self
            .stores
            .iter()
            .map(|s| s.id.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let rwidth = self
            .stores
            .iter()
            .flat_map(|s| &s.reasons)
            .map(|r| r.reason.to_string().len())
            .max()
            .unwrap_or(7);
        writeln!(f, "{:<width$}  {:<rwidth$}  FILES", "STORE", "REASON")?;
        for store in &self.stores {
            for (i, reason) in store.reasons.iter().enumerate() {
                let id = if i == 0 { store.id.as_str() } else { "" };
                let (mut files, more) = first_few(&reason.files, SHOWN);
                let more = if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                };
                if files.is_empty() {
                    files.push('-');
                }
                let packages = if reason.packages.is_empty() {
                    String::new()
                } else {
                    let (shown, more) = first_few(&reason.packages, SHOWN);
                    let more = if more > 0 {
                        format!(", +{more} more")
                    } else {
                        String::new()
                    };
                    format!(": {shown}{more}")
                };
                writeln!(
                    f,
                    "{id:<width$}  {:<rwidth$}  {files}{more}{packages}",
                    reason.reason.to_string(),
                )?;
            }
        }
        Ok(())
    }
}

/// The first `shown` of `items`, joined with `, `, and how many more
/// there are.
fn first_few(items: &[String], shown: usize) -> (String, usize) {
    let first: Vec<&str> = items.iter().take(shown).map(String::as_str).collect();
    (first.join(", "), items.len().saturating_sub(shown))
}

/// The commits of the current branch, newest first (for tests and
/// benchmarks that need history).
pub fn history(root: &Path, limit: usize) -> Result<Vec<String>> {
    let repo = Repository::discover(root).map_err(|e| Error::Git {
        message: e.message().to_string(),
    })?;
    let mut walk = repo.revwalk().map_err(|e| Error::Git {
        message: e.message().to_string(),
    })?;
    walk.push_head().map_err(|e| Error::Git {
        message: e.message().to_string(),
    })?;
    let _ = walk.set_sorting(Sort::TOPOLOGICAL);
    Ok(walk
        .take(limit)
        .filter_map(|o| o.ok())
        .map(|o| o.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::touched;

    #[test]
    fn paths_map_to_layers() {
        let cases = [
            ("apps/web/src/a.ts", Some(("apps/web", "web", "src/a.ts"))),
            (
                "apps/stores/b/web/x.ts",
                Some(("apps/stores/b/web", "web", "x.ts")),
            ),
            (
                "apps/stores/b/stores/us/api/deep/y.ts",
                Some(("apps/stores/b/stores/us/api", "api", "deep/y.ts")),
            ),
            // A folder named `stores` inside an app is just a folder.
            (
                "apps/stores/b/web/stores/z.ts",
                Some(("apps/stores/b/web", "web", "stores/z.ts")),
            ),
            ("apps/stores/b/README.md", None),
            ("apps/README.md", None),
            ("alokai.config.json", None),
        ];
        for (path, want) in cases {
            let got = touched(path).map(|t| (t.layer, t.app, t.rel));
            let want = want.map(|(l, a, r)| (l.to_string(), a.to_string(), r.to_string()));
            assert_eq!(got, want, "{path}");
        }
    }
}
