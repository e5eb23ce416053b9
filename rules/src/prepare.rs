//! `.deploy` preparation: the minimal folder an app's image is made from,
//! selected by the rule of its framework.

mod imports;
pub(crate) mod links;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use strata_engine::{EntryKind, StatCache};

use crate::build::BuildRecord;
use crate::compose::{Composed, Composition, PACKAGE_JSON, Source, path_entry};
use crate::config::StrataSettings;
use crate::error::{Error, Result};
use crate::workspace::Workspace;

/// The base app of the Next.js frontend.
pub const NEXTJS_APP: &str = "storefront-unified-nextjs";
/// The base app of the Nuxt frontend.
pub const NUXT_APP: &str = "storefront-unified-nuxt";
/// The middleware's base app.
pub const MIDDLEWARE_APP: &str = "storefront-middleware";
/// The folder under an app's output folder that images are made from.
pub const DEPLOY: &str = ".deploy";

/// How an app's `.deploy` is selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// Next.js with `output: 'standalone'`.
    Next,
    /// Nuxt (`.output/`).
    Nuxt,
    /// Any other Node app: build outputs, package.json, production
    /// dependencies, and a `server.js`.
    Node,
}

impl AppKind {
    /// The kind of a base app, by its name.
    pub fn of(app: &str) -> AppKind {
        match app {
            NEXTJS_APP => AppKind::Next,
            NUXT_APP => AppKind::Nuxt,
            _ => AppKind::Node,
        }
    }
}

/// The apps of `store` that are deployed: its frontend (by `framework`, or
/// the only frontend base app), the middleware, and the apps the config's
/// `strata.deployApps` adds. Only apps that exist as base apps.
pub fn deployed_apps(ws: &Workspace, store: &str) -> Vec<String> {
    let framework = ws
        .config
        .stores
        .get(store)
        .and_then(|s| s.deployment.framework.as_deref());
    let has = |app: &str| ws.base_apps.iter().any(|a| a == app);
    let mut apps = Vec::new();
    match framework {
        Some("nuxt") if has(NUXT_APP) => apps.push(NUXT_APP.to_string()),
        Some("nextjs") | Some("next") if has(NEXTJS_APP) => apps.push(NEXTJS_APP.to_string()),
        _ => {
            if has(NEXTJS_APP) && !has(NUXT_APP) {
                apps.push(NEXTJS_APP.to_string());
            } else if has(NUXT_APP) && !has(NEXTJS_APP) {
                apps.push(NUXT_APP.to_string());
            }
        }
    }
    if has(MIDDLEWARE_APP) {
        apps.push(MIDDLEWARE_APP.to_string());
    }
    for extra in &ws.config.strata.deploy_apps {
        if has(extra) && !apps.contains(extra) {
            apps.push(extra.clone());
        }
    }
    apps
}

/// What goes in one app's `.deploy`, as a composition of files from the
/// app's output folder (and `node_modules`).
pub struct DeployPlan<'a> {
    /// The monorepo's root.
    pub root: &'a Path,
    /// The store.
    pub store: &'a str,
    /// The app.
    pub app: &'a str,
    /// `.out/<store>/<app>`, relative to the root.
    pub out: &'a str,
    /// Its kind.
    pub kind: AppKind,
    /// The build, when the app has a build script.
    pub build: Option<&'a BuildRecord>,
    /// The config's settings.
    pub settings: &'a StrataSettings,
    /// File digests by stat.
    pub cache: &'a StatCache,
}

impl DeployPlan<'_> {
    fn error(&self, message: impl Into<String>) -> Error {
        Error::Prepare {
            store: self.store.to_string(),
            app: self.app.to_string(),
            message: message.into(),
        }
    }

    /// The composition of `.deploy`.
    pub fn composition(&self) -> Result<Composition> {
        let mut entries = Vec::new();
        match self.kind {
            AppKind::Next => self.next(&mut entries)?,
            AppKind::Nuxt => {
                let output = format!("{}/.output", self.out);
                if !self.root.join(&output).is_dir() {
                    return Err(self.error(
                        ".output is missing after the build; a Nuxt app's build script must run `nuxt build`",
                    ));
                }
                entries.extend(self.files(&output, ".output", &|_| true)?);
                entries.push(generated("server.js", "import(\"./.output/server/index.mjs\").catch((error) => {\n  console.error(error);\n  process.exit(1);\n});\n"));
            }
            AppKind::Node => self.node(&mut entries)?,
        }
        let entries = self.settle_links(entries)?;
        self.check_imports(&entries)?;
        Ok(Composition::assembled(entries))
    }

    /// Fails unless every package `server.js` loads statically (and, for a
    /// `server.js` strata generated, the file it starts) resolves inside
    /// `.deploy`, as it must from `/var/www` in the image; for Next.js,
    /// `next` and `react` must resolve from its root too.
    fn check_imports(&self, entries: &[Composed]) -> Result<()> {
        let by_path: HashMap<&str, &Composed> =
            entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let mut dirs = links::folders(entries);
        // Links that settled land inside: a package may be one.
        dirs.extend(
            entries
                .iter()
                .filter(|e| e.kind == EntryKind::Symlink)
                .map(|e| e.path.clone()),
        );
        let mut missing: Vec<(String, String)> = Vec::new();
        if self.kind == AppKind::Next {
            for package in ["next", "react"] {
                if !imports::resolves(&dirs, "", package) {
                    missing.push((package.to_string(), "server.js".to_string()));
                }
            }
        }
        let mut pending = vec!["server.js".to_string()];
        let mut seen = HashSet::new();
        while let Some(file) = pending.pop() {
            if !seen.insert(file.clone()) {
                continue;
            }
            let Some(entry) = by_path.get(file.as_str()) else {
                return Err(self.error(if file == "server.js" {
                    ".deploy has no server.js, which the image starts (ENTRYPOINT node server.js)"
                        .to_string()
                } else {
                    format!(
                        "the server.js strata generates starts {file}, which is not in {}/{DEPLOY}",
                        self.out
                    )
                }));
            };
            let text = match &entry.source {
                Source::Generated(bytes) => bytes.clone(),
                Source::Path(src) if entry.kind != EntryKind::Symlink => {
                    let full = self.root.join(strata_engine::fs_path(src));
                    std::fs::read(&full).map_err(|e| Error::io(&full, e))?
                }
                _ => continue,
            };
            let from = file.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            for spec in imports::specifiers(&String::from_utf8_lossy(&text)) {
                match imports::package_of(&spec) {
                    Some(package)
                        if !imports::resolves(&dirs, from, package)
                            && !missing.iter().any(|(p, _)| p == package) =>
                    {
                        missing.push((package.to_string(), file.clone()));
                    }
                    // The file a generated server.js starts is the entry.
                    None if matches!(entry.source, Source::Generated(_))
                        && spec.starts_with("./") =>
                    {
                        pending.push(spec.trim_start_matches("./").to_string());
                    }
                    _ => {}
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = missing
            .iter()
            .map(|(p, file)| format!("{p} (loaded by {file})"))
            .collect();
        let hint = match self.kind {
            AppKind::Next => {
                "Next.js writes them to .next/standalone/node_modules: is `output: 'standalone'` set, and did the build run in full?"
            }
            AppKind::Nuxt => "Nuxt writes them to .output/server/node_modules",
            AppKind::Node => {
                "list them under `dependencies` in the app's package.json, and install them"
            }
        };
        Err(self.error(format!(
            "{} cannot be found from {}/{DEPLOY}: no node_modules/ inside it holds {}. In the image nothing is above /var/www, so the app would not start; {hint}",
            names.join(", "),
            self.out,
            if missing.len() == 1 { "it" } else { "them" },
        )))
    }

    fn next(&self, entries: &mut Vec<Composed>) -> Result<()> {
        let standalone = format!("{}/.next/standalone", self.out);
        if !self.root.join(&standalone).is_dir() {
            return Err(self.error(
                ".next/standalone is missing after the build: set `output: 'standalone'` in the app's next.config (.js, .mjs or .ts)",
            ));
        }
        let server = self.standalone_server(&standalone)?;
        let app_in = server
            .rsplit_once('/')
            .map(|(dir, _)| dir.to_string())
            .unwrap_or_default();
        let app_dir = if app_in.is_empty() {
            standalone.clone()
        } else {
            format!("{standalone}/{app_in}")
        };
        entries.extend(self.files(&app_dir, "", &|_| true)?);
        if !app_in.is_empty() {
            entries.extend(self.files(
                &format!("{standalone}/node_modules"),
                "node_modules",
                &|_| true,
            )?);
        }
        entries.extend(self.files(
            &format!("{}/.next/static", self.out),
            ".next/static",
            &|_| true,
        )?);
        entries.extend(self.files(&format!("{}/public", self.out), "public", &|_| true)?);
        Ok(())
    }

    /// The `server.js` of the app inside `.next/standalone` (in a monorepo,
    /// Next nests it under the app's path from the tracing root).
    fn standalone_server(&self, standalone: &str) -> Result<String> {
        let dir = self.root.join(standalone);
        let mut walk = ignore::WalkBuilder::new(&dir);
        walk.standard_filters(false)
            .follow_links(false)
            .filter_entry(|e| e.file_name() != "node_modules");
        let mut found: Vec<String> = walk
            .build()
            .flatten()
            .filter(|e| e.file_name() == "server.js" && e.file_type().is_some_and(|t| t.is_file()))
            .map(|e| strata_engine::relative(&dir, e.path()))
            .filter(|rel| {
                let parent = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                dir.join(strata_engine::fs_path(parent))
                    .join(".next")
                    .is_dir()
            })
            .collect();
        found.sort_by_key(|p| (p.matches('/').count(), p.clone()));
        found
            .into_iter()
            .next()
            .ok_or_else(|| self.error(".next/standalone has no server.js next to a .next folder; is the build a Next.js standalone build?"))
    }

    fn node(&self, entries: &mut Vec<Composed>) -> Result<()> {
        let Some(build) = self.build else {
            return Err(self.error(
                "it has no build script, so there is nothing to deploy; add a `build` script to its package.json",
            ));
        };
        let outputs: Vec<String> = build
            .outputs
            .iter()
            .map(|o| o.path.clone())
            .filter(|p| !p.split('/').any(|part| part.starts_with(".env")))
            .collect();
        for path in &outputs {
            if let Some(e) = self.entry(&format!("{}/{path}", self.out), path)? {
                entries.push(e);
            }
        }
        let package = format!("{}/{PACKAGE_JSON}", self.out);
        if let Some(e) = self.entry(&package, PACKAGE_JSON)? {
            entries.push(e);
        }
        if !outputs.iter().any(|p| p == "server.js") {
            let entry = self.node_entry(&outputs)?;
            entries.push(generated(
                "server.js",
                &format!("import(\"./{entry}\").catch((error) => {{\n  console.error(error);\n  process.exit(1);\n}});\n"),
            ));
        }
        for (dir, dest) in dependency_closure(self.root, &self.root.join(self.out))? {
            entries.extend(self.files(&dir, &dest, &|rel| {
                !rel.split('/').any(|p| p == "node_modules")
            })?);
        }
        Ok(())
    }

    /// The file `server.js` starts: the config's `entry`, else package.json
    /// `main`, else a conventional build output.
    fn node_entry(&self, outputs: &[String]) -> Result<String> {
        if let Some(entry) = self
            .settings
            .apps
            .get(self.app)
            .and_then(|a| a.entry.clone())
        {
            return Ok(entry.trim_start_matches("./").to_string());
        }
        let package = self.root.join(self.out).join(PACKAGE_JSON);
        let main = std::fs::read(&package)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                v.get("main")
                    .and_then(|m| m.as_str())
                    .map(|m| m.trim_start_matches("./").to_string())
            });
        if let Some(main) = main.filter(|m| outputs.contains(m)) {
            return Ok(main);
        }
        const CONVENTIONAL: &[&str] = &[
            "lib/index.js",
            "lib/index.mjs",
            "lib/server.js",
            "dist/index.js",
            "dist/index.mjs",
            "dist/server.js",
            "build/index.js",
        ];
        CONVENTIONAL
            .iter()
            .find(|c| outputs.iter().any(|o| o == *c))
            .map(|c| c.to_string())
            .ok_or_else(|| {
                self.error(format!(
                    "cannot tell which file server.js should start; set \"strata\": {{\"apps\": {{\"{}\": {{\"entry\": \"lib/index.js\"}}}}}} in alokai.config.json",
                    self.app
                ))
            })
    }

    /// The entry for the file at `src` (relative to the root), placed at
    /// `dest` in `.deploy`.
    fn entry(&self, src: &str, dest: &str) -> Result<Option<Composed>> {
        path_entry(self.root, src, dest, false, &|full, meta| {
            Ok(self.cache.file_digest(src, full, meta)?)
        })
    }

    /// Every file under `src` (relative to the root), placed under `dest`,
    /// for which `keep` (given the path relative to `src`) is true.
    fn files(
        &self,
        src: &str,
        dest: &str,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<Composed>> {
        let dir = self.root.join(strata_engine::fs_path(src));
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut walk = ignore::WalkBuilder::new(&dir);
        walk.standard_filters(false).follow_links(false);
        let rels: Vec<String> = walk
            .build()
            .flatten()
            .filter(|e| e.file_type().is_some_and(|t| !t.is_dir()))
            .map(|e| strata_engine::relative(&dir, e.path()))
            // Never `.env*` files: builds copy them along (Next.js does), and
            // images must hold no secrets.
            .filter(|rel| keep(rel) && !rel.split('/').any(|p| p.starts_with(".env")))
            .collect();
        let found: Vec<Option<Composed>> = rels
            .par_iter()
            .map(|rel| {
                let to = if dest.is_empty() {
                    rel.clone()
                } else {
                    format!("{dest}/{rel}")
                };
                self.entry(&format!("{src}/{rel}"), &to)
            })
            .collect::<Result<_>>()?;
        Ok(found.into_iter().flatten().collect())
    }
}

fn generated(path: &str, text: &str) -> Composed {
    Composed {
        path: path.to_string(),
        kind: EntryKind::File { executable: false },
        digest: strata_engine::ContentHash::of(text.as_bytes()),
        source: Source::Generated(text.as_bytes().to_vec()),
        link_target: None,
    }
}

/// The production dependencies of the package at `app_dir`, followed
/// through `dependencies` and `optionalDependencies` (never
/// `devDependencies`), resolved as Node does (the nearest `node_modules`
/// up to `root`). Returns (package folder relative to the root, where it
/// goes in `.deploy`), placed flat where names do not clash.
pub fn dependency_closure(root: &Path, app_dir: &Path) -> Result<Vec<(String, String)>> {
    let mut placed: HashMap<String, PathBuf> = HashMap::new();
    let mut out = Vec::new();
    let mut queue: VecDeque<(PathBuf, String, String, bool)> = VecDeque::new();
    for (name, optional) in dependencies(&app_dir.join(PACKAGE_JSON))? {
        queue.push_back((app_dir.to_path_buf(), String::new(), name, optional));
    }
    while let Some((from, from_dest, name, optional)) = queue.pop_front() {
        let Some(dir) = resolve(root, &from, &name) else {
            if optional {
                continue;
            }
            return Err(Error::Toolchain {
                message: format!(
                    "{name} (a dependency of {}) is not installed under {}; run the package manager's install first",
                    from.display(),
                    root.display()
                ),
            });
        };
        let dest = match placed.get(&name) {
            Some(existing) if *existing == dir => continue,
            None => {
                placed.insert(name.clone(), dir.clone());
                format!("node_modules/{name}")
            }
            // Another version already sits at the top: nest this one.
            Some(_) => format!("{from_dest}/node_modules/{name}"),
        };
        let rel = if dir.starts_with(root) {
            strata_engine::relative(root, &dir)
        } else {
            strata_engine::name_str(dir.as_os_str()).into_owned()
        };
        out.push((rel, dest.clone()));
        for (dep, optional) in dependencies(&dir.join(PACKAGE_JSON))? {
            queue.push_back((dir.clone(), dest.clone(), dep, optional));
        }
    }
    Ok(out)
}

fn dependencies(package_json: &Path) -> Result<Vec<(String, bool)>> {
    let bytes = match std::fs::read(package_json) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(package_json, e)),
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::PackageJson {
            path: package_json.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut deps = Vec::new();
    for (field, optional) in [("dependencies", false), ("optionalDependencies", true)] {
        if let Some(map) = value.get(field).and_then(|d| d.as_object()) {
            deps.extend(map.keys().map(|k| (k.clone(), optional)));
        }
    }
    deps.sort();
    deps.dedup_by(|a, b| a.0 == b.0);
    Ok(deps)
}

/// Where `name` resolves from `from`, as Node looks it up, not above `root`.
fn resolve(root: &Path, from: &Path, name: &str) -> Option<PathBuf> {
    let mut dir = Some(from);
    while let Some(d) = dir {
        let candidate = d.join("node_modules").join(name);
        if candidate.join(PACKAGE_JSON).is_file() {
            return Some(candidate.canonicalize().unwrap_or(candidate));
        }
        if d == root {
            break;
        }
        dir = d.parent();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(dir: &Path, json: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("package.json"), json).unwrap();
        std::fs::write(dir.join("index.js"), "module.exports = 1;").unwrap();
    }

    #[test]
    fn closure_follows_dependencies_not_dev_dependencies() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let app = root.join(".out/s/api");
        package(
            &app,
            r#"{"dependencies": {"a": "1"}, "devDependencies": {"dev": "1"}, "optionalDependencies": {"gone": "1"}}"#,
        );
        package(
            &root.join("node_modules/a"),
            r#"{"dependencies": {"b": "1"}}"#,
        );
        package(&root.join("node_modules/b"), r#"{}"#);
        package(&root.join("node_modules/dev"), r#"{}"#);
        // `a` needs its own version of `c`, nested; the top has another.
        package(&root.join("node_modules/a/node_modules/c"), r#"{}"#);
        std::fs::write(
            root.join("node_modules/a/package.json"),
            r#"{"dependencies": {"b": "1", "c": "2"}}"#,
        )
        .unwrap();
        let closure = dependency_closure(&root, &app).unwrap();
        let dests: Vec<&str> = closure.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(
            dests,
            ["node_modules/a", "node_modules/b", "node_modules/c"]
        );
        assert!(closure.iter().all(|(src, _)| !src.contains("dev")));
        // A clash of names nests the second version.
        package(&root.join("node_modules/c"), r#"{}"#);
        std::fs::write(
            app.join("package.json"),
            r#"{"dependencies": {"c": "1", "a": "1"}}"#,
        )
        .unwrap();
        let closure = dependency_closure(&root, &app).unwrap();
        let dests: Vec<&str> = closure.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(
            dests,
            [
                "node_modules/a",
                "node_modules/c",
                "node_modules/b",
                "node_modules/a/node_modules/c"
            ]
        );
    }

    #[test]
    fn a_missing_dependency_is_an_error_and_an_optional_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let app = root.join("app");
        package(&app, r#"{"dependencies": {"missing": "1"}}"#);
        let err = dependency_closure(&root, &app).unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("install"), "{err}");
        package(&app, r#"{"optionalDependencies": {"missing": "1"}}"#);
        assert!(dependency_closure(&root, &app).unwrap().is_empty());
    }
}
