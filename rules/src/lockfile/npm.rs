//! npm's `package-lock.json` (versions 2 and 3): `packages` maps install
//! paths (`node_modules/a/node_modules/b`) to entries; a dependency of the
//! package at path P is found as Node finds it, in `P/node_modules`, then
//! in each `node_modules` above it. Workspaces are entries at their folder
//! (`apps/x`), linked from `node_modules/<name>`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use serde_json::{Map, Value};

use super::{App, Closure, Package, unpinned_protocol};

pub(super) fn closures(text: &str, apps: &[App]) -> Result<BTreeMap<String, Closure>, String> {
    let lock: Value = serde_json::from_str(text).map_err(|e| format!("it is not JSON: {e}"))?;
    let packages = lock
        .get("packages")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            format!(
                "lockfileVersion {} has no \"packages\" (strata reads versions 2 and 3)",
                lock.get("lockfileVersion").unwrap_or(&Value::Null)
            )
        })?;
    let walker = Walker {
        packages,
        steps: RefCell::new(HashMap::new()),
    };
    Ok(apps
        .iter()
        .map(|app| (app.dir.clone(), walker.closure(app)))
        .collect())
}

const FIELDS: [(&str, bool); 4] = [
    ("dependencies", false),
    ("optionalDependencies", true),
    ("peerDependencies", true),
    ("devDependencies", false),
];

/// A dependency asked for: (name, range, may be absent).
type Want<'a> = (&'a str, &'a str, bool);

/// The dependencies an entry asks for.
fn wanted(entry: &Map<String, Value>, importer: bool) -> Vec<Want<'_>> {
    let mut out = Vec::new();
    for (field, optional) in FIELDS {
        // A package's devDependencies are not installed; an importer's are.
        if field == "devDependencies" && !importer {
            continue;
        }
        if let Some(map) = entry.get(field).and_then(Value::as_object) {
            for (name, range) in map {
                let optional = optional
                    || entry
                        .get("peerDependenciesMeta")
                        .and_then(|m| m.get(name))
                        .and_then(|m| m.get("optional"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                out.push((name.as_str(), range.as_str().unwrap_or(""), optional));
            }
        }
    }
    out
}

/// Where Node finds `name` from the package installed at `from`: the key
/// of its entry.
fn resolve<'a>(packages: &'a Map<String, Value>, from: &str, name: &str) -> Option<&'a str> {
    let mut at = from;
    let mut candidate = String::new();
    loop {
        candidate.clear();
        if !at.is_empty() {
            candidate.push_str(at);
            candidate.push('/');
        }
        candidate.push_str("node_modules/");
        candidate.push_str(name);
        if let Some((key, _)) = packages.get_key_value(candidate.as_str()) {
            return Some(key.as_str());
        }
        if at.is_empty() {
            return None;
        }
        // Up one level: past the last `node_modules/<pkg>` (a scoped
        // package is two segments), or from a workspace folder to the root.
        at = match at.rfind("node_modules/") {
            Some(i) => at[..i].trim_end_matches('/'),
            None => "",
        };
    }
}

/// What following one dependency gives.
#[derive(Clone)]
enum Step<'a> {
    /// An installed package, by its entry's key.
    Package(&'a str),
    /// Another workspace, by its folder.
    Workspace(&'a str),
    /// The whole lockfile counts, and why.
    Whole(String),
}

/// The steps from one entry, shared between the apps that reach it.
type Steps<'a> = Rc<Vec<Step<'a>>>;

/// The lockfile's entries, and each entry's steps once computed (the apps
/// share most of their packages).
struct Walker<'a> {
    packages: &'a Map<String, Value>,
    /// By entry, and whether it was read as an importer (an app's own
    /// devDependencies are installed, a workspace dependency's are not).
    steps: RefCell<HashMap<(&'a str, bool), Steps<'a>>>,
}

impl<'a> Walker<'a> {
    fn entry(&self, key: &str) -> Option<&'a Map<String, Value>> {
        self.packages.get(key).and_then(Value::as_object)
    }

    /// The steps from the entry at `from` (as an importer: its dev
    /// dependencies included).
    fn steps(&self, from: &'a str, importer: bool) -> Steps<'a> {
        if let Some(steps) = self.steps.borrow().get(&(from, importer)) {
            return steps.clone();
        }
        let wants = self
            .entry(from)
            .map(|e| wanted(e, importer))
            .unwrap_or_default();
        let steps = Rc::new(self.resolve_wants(from, &wants));
        self.steps
            .borrow_mut()
            .insert((from, importer), steps.clone());
        steps
    }

    /// What each of `wants`, asked for by the entry (or app folder) at
    /// `from`, resolves to.
    fn resolve_wants(&self, from: &str, wants: &[Want<'_>]) -> Vec<Step<'a>> {
        let mut steps = Vec::new();
        for &(name, range, optional) in wants {
            if let Some(protocol) = unpinned_protocol(range) {
                steps.push(Step::Whole(format!(
                    "{name} is a {protocol} dependency of {}",
                    display(from)
                )));
                continue;
            }
            let Some(key) = resolve(self.packages, from, name) else {
                if !optional {
                    steps.push(Step::Whole(format!(
                        "{name}, a dependency of {}, is not in the lockfile",
                        display(from)
                    )));
                }
                continue;
            };
            let Some(entry) = self.entry(key) else {
                steps.push(Step::Whole(format!("the entry of {key} is not an object")));
                continue;
            };
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                let target = entry.get("resolved").and_then(Value::as_str).unwrap_or("");
                match self.packages.get_key_value(target) {
                    // Another workspace: its dependencies are installed too.
                    Some((target, _)) if !target.starts_with("..") => {
                        steps.push(Step::Workspace(target.as_str()));
                    }
                    _ => steps.push(Step::Whole(format!(
                        "{name} links to {target}, outside the lockfile's workspaces"
                    ))),
                }
                continue;
            }
            steps.push(Step::Package(key));
        }
        steps
    }

    fn closure(&self, app: &App) -> Closure {
        match self.packages.get_key_value(app.dir.as_str()) {
            Some((dir, entry)) if entry.is_object() => {
                let dir = dir.as_str();
                self.walk(Some(dir), self.steps(dir, true).to_vec())
            }
            // An app the lockfile does not list as a workspace: its manifest.
            _ => {
                let deps = super::manifest_dependencies(&app.manifest);
                let wants: Vec<Want<'_>> = deps
                    .iter()
                    .map(|(name, range)| (name.as_str(), range.as_str(), false))
                    .collect();
                self.walk(None, self.resolve_wants(&app.dir, &wants))
            }
        }
    }

    /// The closure reached from `start`, the steps of the importer at
    /// `importer` (which is not walked again as a workspace).
    fn walk(&self, importer: Option<&'a str>, start: Vec<Step<'a>>) -> Closure {
        let mut closure = Closure::default();
        let mut seen: HashSet<&str> = importer.into_iter().collect();
        let mut queue: VecDeque<Step<'a>> = start.into();
        while let Some(step) = queue.pop_front() {
            match step {
                Step::Whole(why) => closure.whole = Some(why),
                Step::Workspace(dir) => {
                    if seen.insert(dir) {
                        queue.extend(self.steps(dir, false).iter().cloned());
                    }
                }
                Step::Package(key) => {
                    if !seen.insert(key) {
                        continue;
                    }
                    let Some(entry) = self.entry(key) else {
                        closure.whole = Some(format!("the entry of {key} is not an object"));
                        continue;
                    };
                    let version = entry.get("version").and_then(Value::as_str).unwrap_or("");
                    let resolved = entry.get("resolved").and_then(Value::as_str).unwrap_or("");
                    if resolved.starts_with("file:") {
                        closure.whole = Some(format!("{} resolves to {resolved}", display(key)));
                    }
                    let pin = entry
                        .get("integrity")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .unwrap_or(if resolved.is_empty() {
                            version
                        } else {
                            resolved
                        });
                    let real = entry
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| display(key));
                    closure.packages.insert(Package {
                        name: real.to_string(),
                        version: version.to_string(),
                        pin: pin.to_string(),
                    });
                    queue.extend(self.steps(key, false).iter().cloned());
                }
            }
        }
        closure
    }
}

fn display(path: &str) -> &str {
    path.rsplit("node_modules/").next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(dir: &str) -> App {
        App {
            dir: dir.into(),
            manifest: serde_json::json!({}),
        }
    }

    /// Nested entries shadow hoisted ones, as Node resolves them.
    #[test]
    fn nested_entries_resolve_before_hoisted_ones() {
        let lock = serde_json::json!({
            "lockfileVersion": 3,
            "packages": {
                "": {"workspaces": ["apps/*"]},
                "apps/a": {"name": "a", "dependencies": {"x": "^1", "@s/y": "2"}},
                "node_modules/a": {"resolved": "apps/a", "link": true},
                "node_modules/x": {"version": "1.0.0", "integrity": "sha-x1", "dependencies": {"z": "^2"}},
                "node_modules/z": {"version": "3.0.0", "integrity": "sha-z3"},
                "node_modules/x/node_modules/z": {"version": "2.0.0", "integrity": "sha-z2"},
                "node_modules/@s/y": {"version": "2.0.0", "integrity": "sha-y", "dependencies": {"z": "*"}},
                "node_modules/unused": {"version": "9.9.9", "integrity": "sha-u"}
            }
        });
        let c = closures(&lock.to_string(), &[app("apps/a")]).unwrap();
        let got: Vec<String> = c["apps/a"]
            .packages
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(got, ["@s/y@2.0.0", "x@1.0.0", "z@2.0.0", "z@3.0.0"]);
        assert!(c["apps/a"].whole.is_none());
    }

    /// An app's own devDependencies are installed; those of a workspace it
    /// depends on are not, whichever app is walked first.
    #[test]
    fn dev_dependencies_count_for_the_app_itself_only() {
        let lock = serde_json::json!({
            "lockfileVersion": 3,
            "packages": {
                "apps/a": {"dependencies": {"b": "*"}},
                "apps/b": {"dependencies": {"x": "^1"}, "devDependencies": {"tool": "^1"}},
                "node_modules/b": {"resolved": "apps/b", "link": true},
                "node_modules/x": {"version": "1.0.0", "integrity": "sha-x"},
                "node_modules/tool": {"version": "1.0.0", "integrity": "sha-t"}
            }
        });
        let c = closures(&lock.to_string(), &[app("apps/a"), app("apps/b")]).unwrap();
        let names =
            |dir: &str| -> Vec<String> { c[dir].packages.iter().map(|p| p.name.clone()).collect() };
        assert_eq!(names("apps/a"), ["x"]);
        assert_eq!(names("apps/b"), ["tool", "x"]);
    }

    #[test]
    fn file_dependencies_and_missing_entries_make_the_closure_whole() {
        let lock = serde_json::json!({
            "lockfileVersion": 3,
            "packages": {
                "apps/a": {"dependencies": {"local": "file:../local"}},
                "apps/b": {"dependencies": {"gone": "^1"}},
                "apps/c": {"optionalDependencies": {"gone": "^1"}}
            }
        });
        let c = closures(
            &lock.to_string(),
            &[app("apps/a"), app("apps/b"), app("apps/c")],
        )
        .unwrap();
        assert!(c["apps/a"].whole.as_deref().unwrap().contains("file:"));
        assert!(c["apps/b"].whole.as_deref().unwrap().contains("gone"));
        assert!(c["apps/c"].whole.is_none(), "an optional one may be absent");
        let v1 = closures(
            r#"{"lockfileVersion": 1, "dependencies": {}}"#,
            &[app("apps/a")],
        );
        assert!(v1.unwrap_err().contains("lockfileVersion 1"));
    }
}
