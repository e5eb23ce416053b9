//! pnpm's `pnpm-lock.yaml` (lockfile versions 5.4, 6 and 9), parsed with
//! `yaml-rust2`: `importers` (one per workspace folder) name the versions
//! they installed; packages are keyed `name@version` (9: dependencies in
//! `snapshots`, resolutions in `packages`), `/name@version` (6) or
//! `/name/version` (5.4). Versions may carry peer suffixes
//! (`1.0.0(react@18.2.0)`), and `link:` points at another workspace.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use yaml_rust2::{Yaml, YamlLoader};

use super::{App, Closure, Package, unpinned_protocol};
use strata_engine::ContentHash;

pub(super) fn closures(text: &str, apps: &[App]) -> Result<BTreeMap<String, Closure>, String> {
    let docs =
        YamlLoader::load_from_str(text).map_err(|e| format!("it does not parse as YAML: {e}"))?;
    let doc = docs.first().ok_or("it is empty")?;
    let importers = doc["importers"]
        .as_hash()
        .ok_or("it has no importers (a pnpm lockfile of a workspace has them)")?;
    let lock = Lock {
        importers: importers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v)))
            .collect(),
        packages: index(&doc["packages"]),
        snapshots: index(&doc["snapshots"]),
        patched: index(&doc["patchedDependencies"]),
        found: RefCell::default(),
        visits: RefCell::default(),
        succ: RefCell::default(),
    };
    Ok(apps
        .iter()
        .map(|app| (app.dir.clone(), lock.closure(app)))
        .collect())
}

/// A mapping by its string keys, indexed once: a lookup by `Yaml` key
/// allocates a key each time.
fn index(y: &Yaml) -> HashMap<String, &Yaml> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v)))
                .collect()
        })
        .unwrap_or_default()
}

struct Lock<'a> {
    importers: BTreeMap<String, &'a Yaml>,
    packages: HashMap<String, &'a Yaml>,
    snapshots: HashMap<String, &'a Yaml>,
    patched: HashMap<String, &'a Yaml>,
    found: RefCell<HashMap<String, Option<Rc<Found>>>>,
    visits: RefCell<HashMap<String, Rc<Visit>>>,
    succ: RefCell<HashMap<usize, Rc<Vec<Succ>>>>,
}

/// (name, version as the lockfile writes it, may be absent).
type Want = (String, String, bool);

/// What an importer or a package installed, from its dependency maps.
fn installed(entry: &Yaml, importer: bool) -> Vec<Want> {
    let mut out = Vec::new();
    for (field, optional) in [
        ("dependencies", false),
        ("optionalDependencies", true),
        ("devDependencies", false),
    ] {
        if field == "devDependencies" && !importer {
            continue;
        }
        if let Some(map) = entry[field].as_hash() {
            for (name, v) in map {
                let Some(name) = name.as_str() else { continue };
                // Importers of 6 and 9: {specifier, version}; others: the
                // version itself.
                let version = match v {
                    Yaml::Hash(_) => scalar(&v["version"]),
                    other => scalar(other),
                };
                out.push((name.to_string(), version, optional));
            }
        }
    }
    out
}

fn scalar(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        _ => String::new(),
    }
}

/// `1.0.0(react@18.2.0)` → `1.0.0`.
fn without_peers(version: &str) -> &str {
    version.split('(').next().unwrap_or(version)
}

/// `@scope/name@1.0.0(peer)` → (`@scope/name`, `1.0.0`).
fn split_key(key: &str) -> Option<(&str, &str)> {
    let key = key.strip_prefix('/').unwrap_or(key);
    let base = without_peers(key);
    let at = base.get(1..)?.find('@').map(|i| i + 1)?;
    Some((&key[..at], &key[at + 1..]))
}

/// What visiting one package gives, computed once for all apps.
struct Visit {
    id: usize,
    package: Package,
    whole: Option<String>,
    patch: Option<(String, ContentHash)>,
    wants: Vec<Want>,
}

/// (key for its dependencies, key for its resolution, name, version).
type Found = (String, String, String, String);

/// A dependency of a package, resolved.
enum Succ {
    Found(Rc<Found>),
    Whole(String),
}

impl Lock<'_> {
    /// What a package's dependencies resolve to, once.
    fn successors(&self, found: &Found, node: &Visit) -> Rc<Vec<Succ>> {
        if let Some(succ) = self.succ.borrow().get(&node.id) {
            return succ.clone();
        }
        let out: Vec<Succ> = node
            .wants
            .iter()
            .filter_map(|want| {
                if want.1.starts_with("link:") {
                    Some(Succ::Whole(format!(
                        "{}, a dependency of {}, links to a folder",
                        want.0, found.0
                    )))
                } else {
                    self.resolve(&found.0, want)
                }
            })
            .collect();
        let out = Rc::new(out);
        self.succ.borrow_mut().insert(node.id, out.clone());
        out
    }

    /// What a dependency of `from` (not a `link:`) resolves to; `None`
    /// for an optional one that is absent.
    fn resolve(&self, from: &str, (name, version, optional): &Want) -> Option<Succ> {
        if let Some(protocol) = unpinned_protocol(version) {
            return Some(Succ::Whole(format!("{name} is a {protocol} dependency")));
        }
        match self.find_once(name, version) {
            Some(f) => Some(Succ::Found(f)),
            None => (!optional).then(|| {
                Succ::Whole(format!(
                    "{name}@{version}, a dependency of {from}, is not in pnpm-lock.yaml"
                ))
            }),
        }
    }

    fn find_once(&self, name: &str, version: &str) -> Option<Rc<Found>> {
        let memo_key = format!("{name}\u{0}{version}");
        if let Some(found) = self.found.borrow().get(&memo_key) {
            return found.clone();
        }
        let found = self.find(name, version).map(Rc::new);
        self.found.borrow_mut().insert(memo_key, found.clone());
        found
    }

    fn visit(&self, found: &Found) -> Rc<Visit> {
        let (key, resolution_key, real, v) = found;
        if let Some(visit) = self.visits.borrow().get(key) {
            return visit.clone();
        }
        let resolution = self
            .packages
            .get(resolution_key)
            .map(|p| &p["resolution"])
            .unwrap_or(&Yaml::BadValue);
        let pin = [
            &resolution["integrity"],
            &resolution["tarball"],
            &resolution["commit"],
        ]
        .into_iter()
        .map(scalar)
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| key.clone());
        let whole = (!resolution["directory"].is_badvalue())
            .then(|| format!("{real} is a local directory"));
        let patch = self.patched.get(&format!("{real}@{v}")).map(|patched| {
            let hash = match patched {
                Yaml::Hash(_) => scalar(&patched["hash"]),
                other => scalar(other),
            };
            (format!("{real}@{v}"), ContentHash::of(hash.as_bytes()))
        });
        // Its dependencies: in `snapshots` (9) or beside its resolution.
        let deps_entry = self
            .snapshots
            .get(key)
            .or_else(|| self.packages.get(key))
            .copied()
            .unwrap_or(&Yaml::BadValue);
        let id = self.visits.borrow().len();
        let visit = Rc::new(Visit {
            id,
            package: Package {
                name: real.clone(),
                version: v.clone(),
                pin,
            },
            whole,
            patch,
            wants: installed(deps_entry, false),
        });
        self.visits.borrow_mut().insert(key.clone(), visit.clone());
        visit
    }

    /// The keys of the entry `name` at `version` resolves to: (key for its
    /// dependencies, key for its resolution, name, version).
    fn find(&self, name: &str, version: &str) -> Option<(String, String, String, String)> {
        let mut candidates = vec![
            format!("{name}@{version}"),
            format!("/{name}@{version}"),
            format!("/{name}/{version}"),
        ];
        // An alias or a non-registry package: the version is the key.
        if version.contains('@') || version.starts_with('/') {
            candidates.insert(0, version.trim_start_matches('/').to_string());
            candidates.insert(1, version.to_string());
        }
        for key in candidates {
            let has_snapshot = self.snapshots.contains_key(&key);
            let base = without_peers(&key).to_string();
            let has_package = self.packages.contains_key(&key) || self.packages.contains_key(&base);
            if has_snapshot || has_package {
                let resolution_key = if self.packages.contains_key(&key) {
                    key.clone()
                } else {
                    base
                };
                let (real, v) = split_key(&key)
                    .map(|(n, v)| (n.to_string(), without_peers(v).to_string()))
                    .or_else(|| {
                        key.strip_prefix('/').and_then(|k| {
                            k.rsplit_once('/')
                                .map(|(n, v)| (n.to_string(), v.to_string()))
                        })
                    })
                    .unwrap_or_else(|| (name.to_string(), without_peers(version).to_string()));
                return Some((key, resolution_key, real, v));
            }
        }
        None
    }

    fn closure(&self, app: &App) -> Closure {
        let mut closure = Closure::default();
        let Some(importer) = self.importers.get(&app.dir) else {
            closure.whole = Some(format!("{} is not an importer of pnpm-lock.yaml", app.dir));
            return closure;
        };
        let mut nodes: VecDeque<Rc<Found>> = VecDeque::new();
        let mut queue: VecDeque<(String, Want)> = installed(importer, true)
            .into_iter()
            .map(|w| (app.dir.clone(), w))
            .collect();
        let mut importers_seen = BTreeSet::from([app.dir.clone()]);
        while let Some((from, (name, version, optional))) = queue.pop_front() {
            if let Some(target) = version.strip_prefix("link:") {
                let dir = normalize(&from, target);
                match self.importers.get(&dir) {
                    Some(other) => {
                        if importers_seen.insert(dir.clone()) {
                            queue.extend(
                                installed(other, false)
                                    .into_iter()
                                    .map(|w| (dir.clone(), w)),
                            );
                        }
                    }
                    None => {
                        closure.whole = Some(format!(
                            "{name} links to {target}, outside the lockfile's workspaces"
                        ));
                    }
                }
                continue;
            }
            match self.resolve(&from, &(name, version, optional)) {
                Some(Succ::Found(found)) => nodes.push_back(found),
                Some(Succ::Whole(why)) => closure.whole = Some(why),
                None => {}
            }
        }
        // Then the packages, each one's successors resolved once for all
        // apps.
        let mut seen: HashSet<usize> = HashSet::new();
        while let Some(found) = nodes.pop_front() {
            let node = self.visit(&found);
            if !seen.insert(node.id) {
                continue;
            }
            if let Some(why) = &node.whole {
                closure.whole = Some(why.clone());
            }
            if let Some((name, hash)) = &node.patch {
                closure.patches.insert(name.clone(), *hash);
            }
            closure.packages.insert(node.package.clone());
            for next in self.successors(&found, &node).iter() {
                match next {
                    Succ::Found(f) => nodes.push_back(f.clone()),
                    Succ::Whole(why) => closure.whole = Some(why.clone()),
                }
            }
        }
        closure
    }
}

/// `link:../b` from importer `apps/a` → `apps/b`.
fn normalize(from: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if from == "." || from.is_empty() {
        Vec::new()
    } else {
        from.split('/').collect()
    };
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_name_and_version() {
        assert_eq!(split_key("express@4.21.1"), Some(("express", "4.21.1")));
        assert_eq!(
            split_key("/@s/n@1.0.0(react@18.2.0)"),
            Some(("@s/n", "1.0.0(react@18.2.0)"))
        );
        assert_eq!(normalize("apps/a", "../b"), "apps/b");
    }

    #[test]
    fn version_9_snapshots_peers_and_links() {
        let text = "lockfileVersion: '9.0'
importers:
  .: {}
  apps/a:
    dependencies:
      x:
        specifier: ^1.0.0
        version: 1.0.0(p@2.0.0)
      b:
        specifier: workspace:*
        version: link:../b
  apps/b:
    dependencies:
      y:
        specifier: ^3.0.0
        version: 3.0.0
packages:
  x@1.0.0:
    resolution: {integrity: sha-x}
  p@2.0.0:
    resolution: {integrity: sha-p}
  y@3.0.0:
    resolution: {integrity: sha-y}
  unused@1.0.0:
    resolution: {integrity: sha-u}
snapshots:
  x@1.0.0(p@2.0.0):
    dependencies:
      p: 2.0.0
  p@2.0.0: {}
  y@3.0.0: {}
  unused@1.0.0: {}
";
        let apps = [App {
            dir: "apps/a".into(),
            manifest: serde_json::json!({}),
        }];
        let c = closures(text, &apps).unwrap();
        let got: Vec<String> = c["apps/a"]
            .packages
            .iter()
            .map(|p| format!("{}@{}={}", p.name, p.version, p.pin))
            .collect();
        assert_eq!(got, ["p@2.0.0=sha-p", "x@1.0.0=sha-x", "y@3.0.0=sha-y"]);
        assert!(c["apps/a"].whole.is_none());
    }
}
