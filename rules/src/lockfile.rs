//! The dependency closure of each app, read from the root lockfile: the
//! packages an app installs (its `dependencies`, `devDependencies`,
//! `optionalDependencies` and `peerDependencies` as installed, and theirs,
//! to a fixed point), each named by what the lockfile resolved it to. A
//! build's key holds its app's closure, not the whole lockfile, so a
//! lockfile change reaches only the apps whose dependencies it touches.
//!
//! When in doubt, the whole lockfile counts: a format strata does not know,
//! a lockfile it cannot parse, a dependency it cannot resolve, and `patch:`,
//! `portal:`, `file:` and `link:` dependencies outside the workspace make
//! the app's closure the whole lockfile. Patches applied after the install
//! (`patches/` of patch-package, pnpm's `patchedDependencies`) count in
//! every closure with the package they patch.

mod npm;
mod pnpm;
mod yarn;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use strata_engine::{ContentHash, KeyHasher};

use crate::error::{Error, Result};
use crate::workspace::APPS;

/// One resolved package of a closure.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// The version the lockfile resolved.
    pub version: String,
    /// What pins its content: the integrity, else the resolution.
    pub pin: String,
}

/// An app's dependency closure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    /// The packages.
    pub packages: BTreeSet<Package>,
    /// Why the whole lockfile counts instead, when it does.
    pub whole: Option<String>,
    /// Digests of patches applied to packages of the closure, by package
    /// name.
    pub patches: BTreeMap<String, ContentHash>,
}

impl Closure {
    /// The closure's digest: its packages' identities (and the whole
    /// lockfile's digest `lockfile` when in doubt).
    pub fn digest(&self, lockfile: ContentHash) -> ContentHash {
        let mut h = KeyHasher::new("closure/v1");
        for p in &self.packages {
            h.str(&p.name).str(&p.version).str(&p.pin);
        }
        for (name, digest) in &self.patches {
            h.str(name).hash(digest);
        }
        if self.whole.is_some() {
            h.str("whole").hash(&lockfile);
        }
        h.finish()
    }

    /// What changed from `before` to this closure, in words: `express
    /// 4.21.1 -> 4.21.2`, `+ left-pad 1.3.0`, `- ms 2.0.0`, at most `limit`
    /// changes and then a count.
    pub fn changes_from(&self, before: &Closure, limit: usize) -> Vec<String> {
        let (old, new) = (versions(before), versions(self));
        let mut out = Vec::new();
        let names: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
        for name in names {
            match (old.get(name), new.get(name)) {
                (Some(a), Some(b)) if a == b => {
                    let pins = |c: &Closure| {
                        c.packages
                            .iter()
                            .filter(|p| p.name == name)
                            .map(|p| p.pin.clone())
                            .collect::<Vec<_>>()
                    };
                    if pins(before) != pins(self) {
                        out.push(format!("{name} {} (new content)", join(b)));
                    }
                }
                (Some(a), Some(b)) => out.push(format!("{name} {} -> {}", join(a), join(b))),
                (None, Some(b)) => out.push(format!("+ {name} {}", join(b))),
                (Some(a), None) => out.push(format!("- {name} {}", join(a))),
                (None, None) => {}
            }
        }
        if before.patches != self.patches {
            out.push("patches changed".into());
        }
        if before.whole != self.whole {
            match &self.whole {
                Some(why) => out.push(format!("the whole lockfile counts: {why}")),
                None => out.push("the closure is known again".into()),
            }
        }
        if out.len() > limit {
            let more = out.len() - limit;
            out.truncate(limit);
            out.push(format!("{more} more"));
        }
        out
    }
}

fn versions(c: &Closure) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut m: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in &c.packages {
        m.entry(p.name.as_str())
            .or_default()
            .insert(p.version.as_str());
    }
    m
}

fn join(versions: &BTreeSet<&str>) -> String {
    versions.iter().copied().collect::<Vec<_>>().join(", ")
}

/// A workspace app as the lockfile walkers see it.
#[derive(Clone, Debug)]
pub struct App {
    /// Its folder, relative to the root: `apps/storefront-middleware`.
    pub dir: String,
    /// Its `package.json`, parsed.
    pub manifest: serde_json::Value,
}

/// The closures of the apps, from one lockfile.
#[derive(Clone, Debug, Default)]
pub struct Closures {
    /// By app folder.
    pub apps: BTreeMap<String, Closure>,
    /// Why the lockfile could not be read, when it could not (every
    /// closure is then the whole lockfile).
    pub warning: Option<String>,
}

/// The lockfile names strata reads, and how.
pub const LOCKFILES: &[&str] = &["yarn.lock", "pnpm-lock.yaml", "package-lock.json"];

/// The closures of `apps` from the lockfile `name` holding `text`, with
/// the patch-package patches `patches` (file name → digest).
pub fn closures(
    name: &str,
    text: &str,
    apps: &[App],
    patches: &BTreeMap<String, ContentHash>,
) -> Closures {
    let walked = match name {
        "package-lock.json" | "npm-shrinkwrap.json" => npm::closures(text, apps),
        "yarn.lock" => yarn::closures(text, apps),
        "pnpm-lock.yaml" => pnpm::closures(text, apps),
        other => Err(format!(
            "strata does not know the lockfile format of {other}"
        )),
    };
    let mut out = match walked {
        Ok(apps) => Closures {
            apps,
            warning: None,
        },
        Err(why) => Closures {
            apps: apps
                .iter()
                .map(|a| {
                    (
                        a.dir.clone(),
                        Closure {
                            whole: Some(why.clone()),
                            ..Closure::default()
                        },
                    )
                })
                .collect(),
            warning: Some(format!(
                "{name}: {why}; every app's builds depend on the whole lockfile"
            )),
        },
    };
    if !patches.is_empty() {
        for closure in out.apps.values_mut() {
            apply_patches(closure, patches);
        }
    }
    out
}

/// The closures of the base `apps` (folder names under `apps/`) from the
/// lockfile at `lockfile` of the monorepo at `root`, with its `patches/`.
pub fn read_closures(root: &Path, lockfile: &Path, apps: &[String]) -> Result<Closures> {
    let name = lockfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = match std::fs::read(lockfile) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return Err(Error::io(lockfile, e)),
    };
    let mut listed = Vec::new();
    for app in apps {
        let path = root.join(APPS).join(app).join("package.json");
        let manifest = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(e) => return Err(Error::io(&path, e)),
        };
        listed.push(App {
            dir: format!("{APPS}/{app}"),
            manifest,
        });
    }
    let mut patches = BTreeMap::new();
    let dir = root.join(PATCHES);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                patches.insert(
                    entry.file_name().to_string_lossy().into_owned(),
                    strata_engine::file_digest(&path)?,
                );
            }
        }
    }
    Ok(closures(&name, &text, &listed, &patches))
}

/// patch-package's folder of patches, at the root.
pub const PATCHES: &str = "patches";

/// patch-package's patches (`patches/<name>+<version>.patch`, a scope as
/// `@scope+name+…`): each counts in the closures holding its package; one
/// whose name cannot be read counts in every closure.
fn apply_patches(closure: &mut Closure, patches: &BTreeMap<String, ContentHash>) {
    for (file, digest) in patches {
        let stem = file.strip_suffix(".patch").unwrap_or(file);
        let package = patched_package(stem);
        let applies = match &package {
            Some(name) => {
                closure.whole.is_some() || closure.packages.iter().any(|p| &p.name == name)
            }
            None => true,
        };
        if applies {
            closure.patches.insert(file.clone(), *digest);
        }
    }
}

/// The package a patch-package file names: `left-pad+1.3.0` → `left-pad`,
/// `@scope+pkg+1.0.0` → `@scope/pkg`, a nested one
/// (`a++b+1.0.0`) → `b`.
fn patched_package(stem: &str) -> Option<String> {
    let last = stem.rsplit("++").next()?;
    let parts: Vec<&str> = last.split('+').collect();
    match parts.as_slice() {
        [scope, name, _version] if scope.starts_with('@') => Some(format!("{scope}/{name}")),
        [name, _version] => Some((*name).to_string()),
        _ => None,
    }
}

/// The names and ranges an app's manifest asks for, in the four fields.
pub(crate) fn manifest_dependencies(manifest: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for field in crate::toolchain::DEPENDENCY_FIELDS {
        if let Some(map) = manifest.get(field).and_then(|v| v.as_object()) {
            for (name, range) in map {
                out.push((name.clone(), range.as_str().unwrap_or("").to_string()));
            }
        }
    }
    out
}

/// A range that points outside the registry at something the lockfile
/// does not pin by content.
pub(crate) fn unpinned_protocol(range: &str) -> Option<&'static str> {
    let range = range.trim();
    if range.starts_with("portal:") {
        Some("portal:")
    } else if range.starts_with("file:") {
        Some("file:")
    } else if range.starts_with("link:") {
        Some("link:")
    } else if range.starts_with("patch:") && !is_builtin_patch(range) {
        Some("patch:")
    } else {
        None
    }
}

/// Yarn's own compatibility patches (`#~builtin<compat/…>`,
/// `#optional!builtin<compat/…>`): fixed by the Yarn version, pinned by
/// the lockfile's checksum like any package.
pub(crate) fn is_builtin_patch(range: &str) -> bool {
    range.contains("builtin<compat/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            pin: format!("sha512-{name}-{version}"),
        }
    }

    #[test]
    fn changes_are_said_by_package() {
        let before = Closure {
            packages: [
                pkg("express", "4.21.1"),
                pkg("ms", "2.0.0"),
                pkg("a", "1.0.0"),
            ]
            .into(),
            ..Closure::default()
        };
        let after = Closure {
            packages: [
                pkg("express", "4.21.2"),
                pkg("ms", "2.0.0"),
                pkg("b", "1.0.0"),
            ]
            .into(),
            ..Closure::default()
        };
        assert_eq!(
            after.changes_from(&before, 10),
            ["- a 1.0.0", "+ b 1.0.0", "express 4.21.1 -> 4.21.2"]
        );
        assert_eq!(after.changes_from(&before, 1), ["- a 1.0.0", "2 more"]);
        assert_ne!(
            after.digest(ContentHash::default()),
            before.digest(ContentHash::default())
        );
    }

    #[test]
    fn patch_file_names_name_their_package() {
        assert_eq!(
            patched_package("left-pad+1.3.0").as_deref(),
            Some("left-pad")
        );
        assert_eq!(
            patched_package("@scope+pkg+1.0.0").as_deref(),
            Some("@scope/pkg")
        );
        assert_eq!(patched_package("a++b+2.0.0").as_deref(), Some("b"));
        assert_eq!(patched_package("weird"), None);
    }

    #[test]
    fn an_unknown_format_makes_every_closure_the_whole_lockfile() {
        let apps = [App {
            dir: "apps/x".into(),
            manifest: serde_json::json!({"name": "x"}),
        }];
        let c = closures("bun.lockb", "", &apps, &BTreeMap::new());
        assert!(c.warning.as_deref().unwrap().contains("bun.lockb"));
        assert!(c.apps["apps/x"].whole.is_some());
        let a = c.apps["apps/x"].digest(ContentHash::of(b"one"));
        let b = c.apps["apps/x"].digest(ContentHash::of(b"two"));
        assert_ne!(a, b, "the whole lockfile is in the digest");
    }
}

/// The walkers on lockfiles the real package managers wrote
/// (`rules/testdata/lockfiles/`, see its README): npm 11, Yarn 1, Yarn 4
/// and pnpm 9 on the same three-app workspace, before and after an express
/// bump, and with a root-only tool added.
#[cfg(test)]
mod real {
    use super::*;
    use std::path::PathBuf;

    const APPS: [&str; 3] = [
        "apps/storefront-middleware",
        "apps/storefront-unified-nextjs",
        "apps/playwright",
    ];

    fn load(pm: &str, state: &str) -> Closures {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/lockfiles")
            .join(pm)
            .join(state);
        let apps: Vec<App> = APPS
            .iter()
            .map(|d| App {
                dir: d.to_string(),
                manifest: serde_json::from_slice(
                    &std::fs::read(dir.join(d).join("package.json")).unwrap(),
                )
                .unwrap(),
            })
            .collect();
        let name = LOCKFILES
            .iter()
            .find(|n| dir.join(n).is_file())
            .expect("a lockfile");
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let out = closures(name, &text, &apps, &BTreeMap::new());
        assert!(out.warning.is_none(), "{pm}/{state}: {:?}", out.warning);
        out
    }

    fn names(c: &Closure) -> Vec<String> {
        c.packages
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect()
    }

    #[test]
    fn every_package_manager_gives_the_same_closures() {
        for pm in ["npm", "yarn1", "yarn4", "pnpm"] {
            let base = load(pm, "base");
            let mw = &base.apps[APPS[0]];
            assert!(mw.whole.is_none(), "{pm}: {:?}", mw.whole);
            assert_eq!(mw.packages.len(), 72, "{pm}: {:?}", names(mw));
            for want in ["express@4.21.1", "debug@2.6.9", "ms@2.0.0", "ms@2.1.3"] {
                assert!(names(mw).contains(&want.to_string()), "{pm}: {want}");
            }
            assert_eq!(
                names(&base.apps[APPS[1]]),
                [
                    "debug@4.4.3",
                    "is-number@7.0.0",
                    "left-pad@1.3.0",
                    "ms@2.1.3"
                ],
                "{pm}"
            );
            assert_eq!(
                names(&base.apps[APPS[2]]),
                ["is-number@6.0.0", "is-odd@3.0.1"],
                "{pm}"
            );
            for c in base.apps.values() {
                assert!(
                    c.packages.iter().all(|p| !p.pin.is_empty()),
                    "{pm}: every package is pinned"
                );
            }
        }
    }

    #[test]
    fn an_express_bump_changes_the_middleware_closure_alone() {
        let lock = ContentHash::of(b"the whole lockfile");
        for pm in ["npm", "yarn1", "yarn4", "pnpm"] {
            let base = load(pm, "base");
            let bumped = load(pm, "express-bump");
            let mw = (&base.apps[APPS[0]], &bumped.apps[APPS[0]]);
            assert_eq!(
                mw.1.changes_from(mw.0, 10),
                [
                    "express 4.21.1 -> 4.21.2",
                    "path-to-regexp 0.1.10 -> 0.1.12"
                ],
                "{pm}"
            );
            assert_ne!(mw.0.digest(lock), mw.1.digest(lock), "{pm}");
            for app in &APPS[1..] {
                assert_eq!(
                    base.apps[*app].digest(lock),
                    bumped.apps[*app].digest(lock),
                    "{pm}: {app}"
                );
            }
        }
    }

    #[test]
    fn a_root_only_tool_changes_no_closure() {
        for pm in ["npm", "yarn1", "yarn4", "pnpm"] {
            let base = load(pm, "base");
            let tool = load(pm, "root-tool");
            for app in APPS {
                assert_eq!(
                    base.apps[app].digest(ContentHash::of(b"base")),
                    tool.apps[app].digest(ContentHash::of(b"base")),
                    "{pm}: {app}"
                );
            }
        }
    }
}

/// When in doubt, the whole lockfile counts: each kind of doubt, in a
/// lockfile Yarn 4 wrote (edited), and pnpm's patches.
#[cfg(test)]
mod doubt {
    use super::*;

    fn yarn4_with(extra: &str) -> Closures {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/lockfiles/yarn4/base");
        let text = std::fs::read_to_string(dir.join("yarn.lock")).unwrap();
        let anchor = "    express: \"npm:4.21.1\"\n";
        assert!(text.contains(anchor));
        let text = text.replacen(anchor, &format!("{anchor}{extra}"), 1);
        let apps = [
            "apps/storefront-middleware",
            "apps/storefront-unified-nextjs",
        ]
        .map(|d| App {
            dir: d.into(),
            manifest: serde_json::from_slice(
                &std::fs::read(dir.join(d).join("package.json")).unwrap(),
            )
            .unwrap(),
        });
        let out = closures("yarn.lock", &text, &apps, &BTreeMap::new());
        assert!(out.warning.is_none(), "{:?}", out.warning);
        assert!(
            out.apps["apps/storefront-unified-nextjs"].whole.is_none(),
            "the other app keeps its closure"
        );
        out
    }

    #[test]
    fn portal_patch_and_unknown_workspace_dependencies_count_the_whole_lockfile() {
        for (extra, said) in [
            ("    local: \"portal:../local\"\n", "portal:"),
            (
                "    left-pad: \"patch:left-pad@npm%3A1.3.0#./patches/left-pad.patch\"\n",
                "patch:",
            ),
            ("    nowhere: \"workspace:^\"\n", "no such workspace"),
        ] {
            let out = yarn4_with(extra);
            let why = out.apps["apps/storefront-middleware"]
                .whole
                .clone()
                .unwrap_or_else(|| panic!("{extra}: not whole"));
            assert!(why.contains(said), "{why}");
        }
    }

    #[test]
    fn pnpm_patched_dependencies_count_in_the_closures_holding_them() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/lockfiles/pnpm/base");
        let text = std::fs::read_to_string(dir.join("pnpm-lock.yaml")).unwrap();
        let apps = [
            "apps/storefront-middleware",
            "apps/storefront-unified-nextjs",
        ]
        .map(|d| App {
            dir: d.into(),
            manifest: serde_json::Value::Null,
        });
        let before = closures("pnpm-lock.yaml", &text, &apps, &BTreeMap::new());
        let patched = text.replacen(
            "\nimporters:",
            "\npatchedDependencies:\n  left-pad@1.3.0:\n    hash: abc123\n    path: patches/left-pad@1.3.0.patch\n\nimporters:",
            1,
        );
        assert_ne!(patched, text);
        let after = closures("pnpm-lock.yaml", &patched, &apps, &BTreeMap::new());
        let lock = ContentHash::default();
        let fe = "apps/storefront-unified-nextjs";
        let mw = "apps/storefront-middleware";
        assert_ne!(before.apps[fe].digest(lock), after.apps[fe].digest(lock));
        assert_eq!(before.apps[mw].digest(lock), after.apps[mw].digest(lock));
        assert_eq!(
            after.apps[fe].changes_from(&before.apps[fe], 5),
            ["patches changed"]
        );
    }
}
