//! npm's `package-lock.json` (versions 2 and 3): `packages` maps install
//! paths (`node_modules/a/node_modules/b`) to entries; a dependency of the
//! package at path P is found as Node finds it, in `P/node_modules`, then
//! in each `node_modules` above it. Workspaces are entries at their folder
//! (`apps/x`), linked from `node_modules/<name>`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
    Ok(apps
        .iter()
        .map(|app| (app.dir.clone(), closure(packages, app)))
        .collect())
}

const FIELDS: [(&str, bool); 4] = [
    ("dependencies", false),
    ("optionalDependencies", true),
    ("peerDependencies", true),
    ("devDependencies", false),
];

/// A dependency asked for: (name, range, may be absent).
type Want = (String, String, bool);

/// The dependencies an entry asks for.
fn wanted(entry: &Map<String, Value>, importer: bool) -> Vec<Want> {
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
                out.push((
                    name.clone(),
                    range.as_str().unwrap_or("").to_string(),
                    optional,
                ));
            }
        }
    }
    out
}

/// Where Node finds `name` from the package installed at `from`.
fn resolve<'a>(
    packages: &'a Map<String, Value>,
    from: &str,
    name: &str,
) -> Option<(String, &'a Map<String, Value>)> {
    let mut at = from.to_string();
    loop {
        let candidate = if at.is_empty() {
            format!("node_modules/{name}")
        } else {
            format!("{at}/node_modules/{name}")
        };
        if let Some(entry) = packages.get(&candidate).and_then(Value::as_object) {
            return Some((candidate, entry));
        }
        if at.is_empty() {
            return None;
        }
        // Up one level: past the last `node_modules/<pkg>` (a scoped
        // package is two segments), or from a workspace folder to the root.
        at = match at.rfind("node_modules/") {
            Some(i) => at[..i].trim_end_matches('/').to_string(),
            None => String::new(),
        };
    }
}

fn closure(packages: &Map<String, Value>, app: &App) -> Closure {
    let mut closure = Closure::default();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<(String, Vec<Want>)> = VecDeque::new();
    let importer = match packages.get(&app.dir).and_then(Value::as_object) {
        Some(entry) => wanted(entry, true),
        // An app the lockfile does not list as a workspace: its manifest.
        None => super::manifest_dependencies(&app.manifest)
            .into_iter()
            .map(|(n, r)| (n, r, false))
            .collect(),
    };
    seen.insert(app.dir.clone());
    queue.push_back((app.dir.clone(), importer));
    while let Some((from, deps)) = queue.pop_front() {
        for (name, range, optional) in deps {
            if let Some(protocol) = unpinned_protocol(&range) {
                closure.whole = Some(format!(
                    "{name} is a {protocol} dependency of {}",
                    display(&from)
                ));
                continue;
            }
            let Some((path, entry)) = resolve(packages, &from, &name) else {
                if !optional {
                    closure.whole = Some(format!(
                        "{name}, a dependency of {}, is not in the lockfile",
                        display(&from)
                    ));
                }
                continue;
            };
            if !seen.insert(path.clone()) {
                continue;
            }
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                let target = entry.get("resolved").and_then(Value::as_str).unwrap_or("");
                match packages.get(target).and_then(Value::as_object) {
                    // Another workspace: its dependencies are installed too.
                    Some(ws) if !target.starts_with("..") && seen.insert(target.to_string()) => {
                        queue.push_back((target.to_string(), wanted(ws, false)));
                    }
                    Some(_) => {}
                    None => {
                        closure.whole = Some(format!(
                            "{name} links to {target}, outside the lockfile's workspaces"
                        ));
                    }
                }
                continue;
            }
            let version = entry.get("version").and_then(Value::as_str).unwrap_or("");
            let resolved = entry.get("resolved").and_then(Value::as_str).unwrap_or("");
            if resolved.starts_with("file:") {
                closure.whole = Some(format!("{name} resolves to {resolved}"));
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
                .map(str::to_string)
                .unwrap_or_else(|| name.clone());
            closure.packages.insert(Package {
                name: real,
                version: version.to_string(),
                pin: pin.to_string(),
            });
            queue.push_back((path, wanted(entry, false)));
        }
    }
    closure
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
