//! Symlinks in `.deploy`: builds make them (pnpm and npm workspaces link
//! packages, Turbopack links externals), and an image must never hold one
//! that lands nowhere. A link that lands inside `.deploy` stays a link;
//! one that lands outside is replaced by what it points to (a file, or a
//! folder's files); one that points at nothing is dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Component, Path};

use strata_engine::EntryKind;

use super::DeployPlan;
use crate::compose::{Composed, Source};
use crate::error::Result;

/// Every folder that holds an entry of `entries` (`""` excluded).
pub fn folders(entries: &[Composed]) -> HashSet<String> {
    let mut dirs = HashSet::new();
    for e in entries {
        let mut p = e.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if !dirs.insert(parent.to_string()) {
                break;
            }
            p = parent;
        }
    }
    dirs
}

/// Whether the link at `path` with `target` lands on a file or folder of
/// the tree (`files`, `dirs`, with the tree's own links in `links`),
/// following links inside the tree; never above its root.
pub fn lands_inside(
    links: &HashMap<&str, &Path>,
    files: &HashSet<&str>,
    dirs: &HashSet<String>,
    path: &str,
    target: &Path,
) -> bool {
    landing(links, path, target).is_some_and(|here| {
        here.is_empty() || files.contains(here.as_str()) || dirs.contains(&here)
    })
}

/// Where the link at `path` with `target` lands, relative to the tree's
/// root, following the tree's own `links` on the way; `None` when it goes
/// above the root at any step, is absolute, or loops.
pub fn landing(links: &HashMap<&str, &Path>, path: &str, target: &Path) -> Option<String> {
    let mut at: Vec<String> = path.split('/').map(str::to_string).collect();
    at.pop();
    let mut pending: VecDeque<String> = VecDeque::new();
    if !push_components(&mut pending, target, false) {
        return None;
    }
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            ".." => {
                at.pop()?;
            }
            name => {
                at.push(name.to_string());
                let here = at.join("/");
                if let Some(next) = links.get(here.as_str()) {
                    hops += 1;
                    // A loop, or a chain longer than Linux follows.
                    if hops > 40 {
                        return None;
                    }
                    at.pop();
                    if !push_components(&mut pending, next, true) {
                        return None;
                    }
                }
            }
        }
    }
    Some(at.join("/"))
}

/// Puts the parts of a relative `target` before (`front`) or after what is
/// pending; false for an absolute target.
fn push_components(pending: &mut VecDeque<String>, target: &Path, front: bool) -> bool {
    let mut parts = Vec::new();
    for c in target.components() {
        match c {
            Component::Normal(n) => parts.push(strata_engine::name_str(n).into_owned()),
            Component::ParentDir => parts.push("..".to_string()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    if front {
        for p in parts.into_iter().rev() {
            pending.push_front(p);
        }
    } else {
        pending.extend(parts);
    }
    true
}

impl DeployPlan<'_> {
    /// `entries` with every symlink landing inside the tree: kept when it
    /// does, replaced by what it points to on disk when that is inside the
    /// app's folder (outputs the build made, such as the workspace packages
    /// Next.js copies beside its standalone `node_modules`), dropped when it
    /// points at nothing. A link out of the app's folder, or to `.env*`
    /// files, `.deploy` or the app folder itself, is an error: what it
    /// points to is no input of the image, or must never be in one.
    pub(super) fn settle_links(&self, mut entries: Vec<Composed>) -> Result<Vec<Composed>> {
        let root = self.root.canonicalize().unwrap_or(self.root.to_path_buf());
        let app = root.join(strata_engine::fs_path(self.out));
        // Replacing a folder link brings its files, which may hold links of
        // their own: settle until nothing changes.
        for _ in 0..16 {
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            entries.dedup_by(|later, earlier| later.path == earlier.path);
            let files: HashSet<&str> = entries
                .iter()
                .filter(|e| e.kind != EntryKind::Symlink)
                .map(|e| e.path.as_str())
                .collect();
            let links: HashMap<&str, &Path> = entries
                .iter()
                .filter_map(|e| Some((e.path.as_str(), e.link_target.as_deref()?)))
                .collect();
            let dirs = folders(&entries);
            let outside: HashSet<usize> = entries
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.kind == EntryKind::Symlink
                        && !lands_inside(
                            &links,
                            &files,
                            &dirs,
                            &e.path,
                            e.link_target.as_deref().unwrap_or(Path::new("")),
                        )
                })
                .map(|(i, _)| i)
                .collect();
            if outside.is_empty() {
                return Ok(entries);
            }
            let mut replaced = Vec::new();
            for &i in &outside {
                let link = &entries[i];
                let Source::Path(src) = &link.source else {
                    continue;
                };
                let on_disk = self.root.join(strata_engine::fs_path(src));
                // Dangling: nothing to copy, and nothing may point nowhere.
                let Ok(real) = on_disk.canonicalize() else {
                    continue;
                };
                let refuse = |why: &str| {
                    self.error(format!(
                        "{src} is a symlink to {}, {why}; the image cannot hold it (make the build copy what it needs into its output)",
                        real.display()
                    ))
                };
                let Ok(inside) = real.strip_prefix(&app) else {
                    return Err(refuse("outside the app's folder"));
                };
                let rel = strata_engine::name_str(inside.as_os_str()).into_owned();
                if rel.is_empty()
                    || rel == super::DEPLOY
                    || rel.starts_with(&format!("{}/", super::DEPLOY))
                    || rel.split('/').any(|p| p.starts_with(".env"))
                {
                    return Err(refuse(
                        "which is the app folder, its .deploy, or a .env file",
                    ));
                }
                let from = format!("{}/{rel}", self.out);
                if real.is_dir() {
                    replaced.extend(self.files(&from, &link.path, &|_| true)?);
                } else if let Some(e) = self.entry(&from, &link.path)? {
                    replaced.push(e);
                }
            }
            let mut i = 0;
            entries.retain(|_| {
                let keep = !outside.contains(&i);
                i += 1;
                keep
            });
            entries.extend(replaced);
        }
        Err(self.error("its symlinks point at each other through folders more than 16 levels deep"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_land_inside_or_not() {
        let files: HashSet<&str> = ["node_modules/a/index.js", "server.js"].into();
        let dirs: HashSet<String> = ["node_modules", "node_modules/a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut links: HashMap<&str, &Path> = HashMap::new();
        links.insert("node_modules/b", Path::new("a"));
        links.insert("loop1", Path::new("loop2"));
        links.insert("loop2", Path::new("loop1"));
        for (path, target, inside) in [
            ("node_modules/b", "a", true),
            ("node_modules/c", "./a/index.js", true),
            ("x/y", "../server.js", true),
            ("node_modules/c", "b/index.js", true),
            ("node_modules/c", "../../apps/web", false),
            ("node_modules/c", "/usr/lib/node", false),
            ("node_modules/c", "missing", false),
            ("loop1", "loop2", false),
            ("top", ".", true),
            ("node_modules/c", "b/../../server.js", true),
        ] {
            assert_eq!(
                lands_inside(&links, &files, &dirs, path, Path::new(target)),
                inside,
                "{path} -> {target}"
            );
        }
    }

    /// Each link's text stays inside, but followed through the others the
    /// last one reaches above the root: `landing` sees it.
    #[test]
    fn a_chain_of_links_that_climbs_out_is_seen() {
        let mut links: HashMap<&str, &Path> = HashMap::new();
        links.insert("lib/a", Path::new(".."));
        links.insert("lib/b", Path::new("a/.."));
        links.insert("lib/c", Path::new("b/.."));
        assert_eq!(
            landing(&links, "lib/a", Path::new("..")).as_deref(),
            Some("")
        );
        assert_eq!(landing(&links, "lib/b", Path::new("a/..")), None);
        assert_eq!(landing(&links, "lib/c", Path::new("b/..")), None);
        assert_eq!(
            landing(&links, "lib/x", Path::new("a/lib/y")).as_deref(),
            Some("lib/y")
        );
    }
}
