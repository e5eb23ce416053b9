//! Yarn's `yarn.lock`, v1 and Berry (v2 and later), parsed by the
//! `yarn-lock-parser` crate: entries keyed by the descriptors
//! (`name@range`) that resolve to them. Yarn 1 has no entries for
//! workspaces (an app's manifest says what it asks for); Berry has one per
//! workspace (`name@workspace:apps/x`) and writes ranges with their
//! protocol (`npm:^1.0.0`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use yarn_lock_parser::{Entry, parse_str};

use super::{App, Closure, Package, is_builtin_patch, manifest_dependencies, unpinned_protocol};

pub(super) fn closures(text: &str, apps: &[App]) -> Result<BTreeMap<String, Closure>, String> {
    let lock = parse_str(text).map_err(|e| format!("it does not parse as a yarn.lock: {e}"))?;
    let berry = lock.version > 1;
    let mut by_descriptor: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, entry) in lock.entries.iter().enumerate() {
        for (name, range) in &entry.descriptors {
            by_descriptor.insert((name, range), i);
        }
    }
    // Workspaces by package name: Berry's entries, else the apps' own
    // manifests.
    let mut workspaces: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for app in apps {
        if let Some(name) = app.manifest.get("name").and_then(|n| n.as_str()) {
            workspaces.insert(name.to_string(), manifest_dependencies(&app.manifest));
        }
    }
    let walk = Walk {
        entries: &lock.entries,
        by_descriptor: &by_descriptor,
        workspaces: &workspaces,
        berry,
    };
    Ok(apps
        .iter()
        .map(|app| (app.dir.clone(), walk.closure(app)))
        .collect())
}

struct Walk<'a> {
    entries: &'a [Entry<'a>],
    by_descriptor: &'a HashMap<(&'a str, &'a str), usize>,
    workspaces: &'a HashMap<String, Vec<(String, String)>>,
    berry: bool,
}

impl Walk<'_> {
    fn find(&self, name: &str, range: &str) -> Option<usize> {
        self.by_descriptor.get(&(name, range)).copied().or_else(|| {
            // Berry writes a bare range for the npm protocol in some places.
            self.berry
                .then(|| format!("npm:{range}"))
                .and_then(|r| self.by_descriptor.get(&(name, r.as_str())).copied())
        })
    }

    /// Berry's entry for the workspace at `dir`.
    fn workspace_entry(&self, dir: &str) -> Option<usize> {
        let wanted = format!("workspace:{dir}");
        self.entries
            .iter()
            .position(|e| e.descriptors.iter().any(|(_, r)| *r == wanted))
    }

    fn closure(&self, app: &App) -> Closure {
        let mut closure = Closure::default();
        let start: Vec<(String, String, bool)> = match self.workspace_entry(&app.dir) {
            Some(i) => deps(&self.entries[i]),
            None => manifest_dependencies(&app.manifest)
                .into_iter()
                .map(|(n, r)| (n, r, false))
                .collect(),
        };
        let mut seen: BTreeSet<usize> = BTreeSet::new();
        let mut seen_workspaces: BTreeSet<String> = BTreeSet::new();
        let mut queue: VecDeque<(String, String, bool)> = start.into_iter().collect();
        while let Some((name, range, optional)) = queue.pop_front() {
            if let Some(protocol) = unpinned_protocol(&range) {
                closure.whole = Some(format!("{name}@{range} is a {protocol} dependency"));
                continue;
            }
            if range.starts_with("workspace:") && self.find(&name, &range).is_none() {
                // Yarn 1, or a workspace range Berry wrote differently: the
                // sibling's manifest.
                match self.workspaces.get(&name) {
                    Some(deps) => {
                        if seen_workspaces.insert(name.clone()) {
                            queue.extend(deps.iter().map(|(n, r)| (n.clone(), r.clone(), false)));
                        }
                    }
                    None => {
                        closure.whole = Some(format!("{name}@{range}: no such workspace"));
                    }
                }
                continue;
            }
            let Some(i) = self.find(&name, &range) else {
                if let Some(deps) = self.workspaces.get(&name) {
                    // Yarn 1: a sibling workspace asked for by version.
                    if seen_workspaces.insert(name.clone()) {
                        queue.extend(deps.iter().map(|(n, r)| (n.clone(), r.clone(), false)));
                    }
                } else if !optional {
                    closure.whole = Some(format!("{name}@{range} is not in yarn.lock"));
                }
                continue;
            };
            if !seen.insert(i) {
                continue;
            }
            let entry = &self.entries[i];
            let resolved = entry.resolved;
            // Berry writes `name@protocol:…`; Yarn 1 a URL or `file:…`.
            let protocol = unpinned_protocol(resolved).or_else(|| {
                ["portal:", "link:", "file:"]
                    .into_iter()
                    .find(|p| resolved.contains(&format!("@{p}")))
                    .or_else(|| {
                        (resolved.contains("@patch:") && !is_builtin_patch(resolved))
                            .then_some("patch:")
                    })
            });
            if let Some(protocol) = protocol {
                closure.whole = Some(format!("{name} resolves to a {protocol} package"));
            }
            if resolved.contains("@workspace:") {
                // A workspace depended on: its dependencies are installed.
                queue.extend(deps(entry));
                continue;
            }
            let pin = if entry.integrity.is_empty() {
                resolved
            } else {
                entry.integrity
            };
            closure.packages.insert(Package {
                name: entry.name.to_string(),
                version: entry.version.to_string(),
                pin: pin.to_string(),
            });
            queue.extend(deps(entry));
        }
        closure
    }
}

/// What an entry asks for: (name, range, may be absent).
fn deps(entry: &Entry<'_>) -> Vec<(String, String, bool)> {
    let optional_meta = |name: &str| {
        entry
            .peer_dependencies_meta
            .iter()
            .chain(&entry.dependencies_meta)
            .any(|(n, meta)| *n == name && meta.optional.unwrap_or(false))
    };
    let mut out: Vec<(String, String, bool)> = Vec::new();
    for (name, range) in &entry.dependencies {
        out.push((name.to_string(), range.to_string(), optional_meta(name)));
    }
    for (name, range) in &entry.optional_dependencies {
        out.push((name.to_string(), range.to_string(), true));
    }
    for (name, range) in &entry.peer_dependencies {
        out.push((name.to_string(), range.to_string(), true));
    }
    out
}
