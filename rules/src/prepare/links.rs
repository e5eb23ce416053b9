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
    let mut at: Vec<String> = path.split('/').map(str::to_string).collect();
    at.pop();
    let mut pending: VecDeque<String> = VecDeque::new();
    if !push_components(&mut pending, target, false) {
        return false;
    }
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            ".." => {
                if at.pop().is_none() {
                    return false;
                }
            }
            name => {
                at.push(name.to_string());
                let here = at.join("/");
                if let Some(next) = links.get(here.as_str()) {
                    hops += 1;
                    // A loop, or a chain longer than Linux follows.
                    if hops > 40 {
                        return false;
                    }
                    at.pop();
                    if !push_components(&mut pending, next, true) {
                        return false;
                    }
                }
            }
        }
    }
    let here = at.join("/");
    here.is_empty() || files.contains(here.as_str()) || dirs.contains(&here)
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
    /// monorepo, dropped when it points at nothing. A link out of the
    /// monorepo is an error: its target would not be in the image.
    pub(super) fn settle_links(&self, mut entries: Vec<Composed>) -> Result<Vec<Composed>> {
        let root = self.root.canonicalize().unwrap_or(self.root.to_path_buf());
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
            let outside: Vec<usize> = entries
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
                let Ok(inside) = real.strip_prefix(&root) else {
                    return Err(self.error(format!(
                        "{} is a symlink to {}, outside the monorepo; the image would hold a link to nothing (make the build copy it instead)",
                        src,
                        real.display()
                    )));
                };
                let rel = strata_engine::name_str(inside.as_os_str()).into_owned();
                if real.is_dir() {
                    replaced.extend(self.files(&rel, &link.path, &|_| true)?);
                } else if let Some(e) = self.entry(&rel, &link.path)? {
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
        ] {
            assert_eq!(
                lands_inside(&links, &files, &dirs, path, Path::new(target)),
                inside,
                "{path} -> {target}"
            );
        }
    }
}
