//! Watching folders for changes: inotify (through notify) on every folder
//! that git does not ignore, batched into quiet-period batches.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::error::{Error, Result};
use crate::scan::walker;

/// Git's ignore rules under a root, read lazily per folder and forgotten
/// when a `.gitignore` changes.
pub struct IgnoreRules {
    root: PathBuf,
    cache: Mutex<HashMap<PathBuf, Option<Arc<Gitignore>>>>,
}

impl IgnoreRules {
    /// The rules of the repository at `root`.
    pub fn new(root: &Path) -> Self {
        IgnoreRules {
            root: root.to_path_buf(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets what was read (a `.gitignore` changed).
    pub fn reset(&self) {
        self.cache.lock().unwrap().clear();
    }

    fn rules_of(&self, dir: &Path) -> Option<Arc<Gitignore>> {
        let mut cache = self.cache.lock().unwrap();
        cache
            .entry(dir.to_path_buf())
            .or_insert_with(|| {
                let mut builder = GitignoreBuilder::new(dir);
                let mut any = false;
                if dir.join(".gitignore").is_file() {
                    builder.add(dir.join(".gitignore"));
                    any = true;
                }
                if dir == self.root && dir.join(".git/info/exclude").is_file() {
                    builder.add(dir.join(".git/info/exclude"));
                    any = true;
                }
                any.then(|| builder.build().ok().map(Arc::new)).flatten()
            })
            .clone()
    }

    /// Whether git ignores `path` (or a folder above it), or it is in `.git`.
    pub fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return false;
        };
        if rel.components().any(|c| c.as_os_str() == ".git") {
            return true;
        }
        // The deepest rules decide: walk from the path's folder up.
        let mut dirs: Vec<&Path> = path
            .ancestors()
            .skip(1)
            .take_while(|d| d.starts_with(&self.root))
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            if let Some(rules) = self.rules_of(dir) {
                match rules.matched_path_or_any_parents(path, is_dir) {
                    ignore::Match::Ignore(_) => return true,
                    ignore::Match::Whitelist(_) => return false,
                    ignore::Match::None => {}
                }
            }
        }
        false
    }
}

/// A watcher of folder trees.
pub struct Watcher {
    watcher: RecommendedWatcher,
    events: Receiver<notify::Result<notify::Event>>,
    rules: Arc<IgnoreRules>,
    watched: BTreeSet<PathBuf>,
    roots: Vec<PathBuf>,
    kept: Option<KeptIgnored>,
}

/// Which ignored files still count as changes (see [`Watcher::keep_ignored`]).
type KeptIgnored = Box<dyn Fn(&Path) -> bool + Send>;

impl Watcher {
    /// Watches every folder under each of `roots` that git does not ignore,
    /// with the ignore rules of the repository at `repo`. Missing roots are
    /// skipped; `files` are watched through their folders.
    pub fn new(repo: &Path, roots: &[PathBuf], files: &[PathBuf]) -> Result<Watcher> {
        let (tx, rx) = channel();
        let watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .map_err(|e| watch_error(repo, e))?;
        let mut w = Watcher {
            watcher,
            events: rx,
            // The monorepo's root bounds the rules, as it bounds the scan's
            // matches (a monorepo in a folder its enclosing repository
            // ignores is still watched).
            rules: Arc::new(IgnoreRules::new(repo)),
            watched: BTreeSet::new(),
            roots: roots.to_vec(),
            kept: None,
        };
        for root in roots {
            w.watch_tree(root)?;
        }
        for file in files {
            if let Some(dir) = file.parent() {
                w.watch_dir(dir)?;
            }
        }
        Ok(w)
    }

    /// Reports changes of the files `kept` accepts even where git ignores
    /// them (files in watched folders only: an ignored folder is not
    /// watched).
    pub fn keep_ignored(mut self, kept: impl Fn(&Path) -> bool + Send + 'static) -> Self {
        self.kept = Some(Box::new(kept));
        self
    }

    /// The ignore rules the watcher uses.
    pub fn rules(&self) -> &IgnoreRules {
        &self.rules
    }

    /// How many folders are watched.
    pub fn watched(&self) -> usize {
        self.watched.len()
    }

    /// Watches `dir` (again: a folder deleted and made anew, or moved back,
    /// needs a new watch, and adding one twice is harmless).
    fn watch_dir(&mut self, dir: &Path) -> Result<()> {
        match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(dir.to_path_buf());
                Ok(())
            }
            // Gone already: its removal is in the events.
            Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => Ok(()),
            Err(e) => Err(watch_error(dir, e)),
        }
    }

    /// Watches `root` and every folder under it that git does not ignore.
    /// Each folder is watched as the walk reaches it, before its entries are
    /// listed: a subfolder made meanwhile shows up as an event.
    pub fn watch_tree(&mut self, root: &Path) -> Result<()> {
        if !root.is_dir() {
            return Ok(());
        }
        for entry in walker(root).build().flatten() {
            if entry.file_type().is_some_and(|t| t.is_dir()) {
                self.watch_dir(entry.path())?;
            }
        }
        Ok(())
    }

    /// Forgets the watches of a folder that is gone and of everything under
    /// it.
    fn forget_tree(&mut self, dir: &Path) {
        let gone: Vec<PathBuf> = self
            .watched
            .range(dir.to_path_buf()..)
            .take_while(|p| p.starts_with(dir))
            .cloned()
            .collect();
        for p in gone {
            self.watched.remove(&p);
        }
    }

    /// The next batch of changed paths: waits up to `timeout` for a first
    /// event, then gathers events until `quiet` passes without one (or
    /// `max` since the first). New folders are watched as they appear;
    /// ignored paths are left out. `None` when nothing happened.
    pub fn next_batch(
        &mut self,
        timeout: Duration,
        quiet: Duration,
        max: Duration,
    ) -> Result<Option<BTreeSet<PathBuf>>> {
        let first = match self.events.recv_timeout(timeout) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => return Ok(None),
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
        };
        let started = Instant::now();
        let mut raw = vec![first];
        loop {
            let left = max.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match self.events.recv_timeout(quiet.min(left)) {
                Ok(e) => raw.push(e),
                Err(_) => break,
            }
        }
        let mut paths = BTreeSet::new();
        for event in raw {
            let event = match event {
                Ok(e) => e,
                // A watch that could not be kept (a folder made unreadable):
                // report, go on.
                Err(e) => {
                    eprintln!("warning: {}", watch_error(Path::new("."), e));
                    continue;
                }
            };
            if matches!(event.kind, notify::EventKind::Access(_)) {
                continue;
            }
            if event.need_rescan() {
                // The kernel's queue overflowed: events were lost, so every
                // watched root counts as changed.
                self.rules.reset();
                paths.extend(self.roots.iter().cloned());
                continue;
            }
            for path in event.paths {
                if path.file_name().is_some_and(|n| n == ".gitignore") {
                    self.rules.reset();
                }
                let exists = path.symlink_metadata().is_ok();
                let is_dir = path.is_dir();
                // A path that is gone may have been a folder: it is ignored
                // if either reading says so.
                let ignored = if exists {
                    self.rules.is_ignored(&path, is_dir)
                } else {
                    self.rules.is_ignored(&path, true) || self.rules.is_ignored(&path, false)
                };
                if ignored
                    && !self
                        .kept
                        .as_ref()
                        .is_some_and(|kept| !is_dir && kept(&path))
                {
                    continue;
                }
                if is_dir {
                    self.watch_tree(&path)?;
                } else if !exists {
                    self.forget_tree(&path);
                }
                paths.insert(path);
            }
        }
        Ok(if paths.is_empty() {
            Some(BTreeSet::new())
        } else {
            Some(paths)
        })
    }
}

fn watch_error(path: &Path, e: notify::Error) -> Error {
    let hint = if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
        ": the inotify watch limit is reached; raise fs.inotify.max_user_watches"
    } else {
        ""
    };
    Error::Walk {
        path: path.to_path_buf(),
        message: format!("watching: {e}{hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_rules_follow_git() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("apps/web/node_modules/x")).unwrap();
        std::fs::write(root.join(".gitignore"), "node_modules/\n*.log\n").unwrap();
        std::fs::write(root.join("apps/web/.gitignore"), ".next/\n!keep.log\n").unwrap();
        let rules = IgnoreRules::new(root);
        assert!(rules.is_ignored(&root.join("apps/web/node_modules/x/i.js"), false));
        assert!(rules.is_ignored(&root.join("apps/web/.next/server/a.js"), false));
        assert!(rules.is_ignored(&root.join("apps/web/debug.log"), false));
        assert!(!rules.is_ignored(&root.join("apps/web/keep.log"), false));
        assert!(!rules.is_ignored(&root.join("apps/web/src/a.ts"), false));
        assert!(rules.is_ignored(&root.join(".git/index"), false));
    }

    #[test]
    fn batches_gather_changes_and_new_folders_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("apps/web")).unwrap();
        std::fs::write(root.join(".gitignore"), "ignored/\n").unwrap();
        let mut w = Watcher::new(&root, &[root.join("apps")], &[]).unwrap();
        std::fs::write(root.join("apps/web/a.ts"), "a").unwrap();
        std::fs::create_dir_all(root.join("apps/web/ignored")).unwrap();
        let batch = w
            .next_batch(
                Duration::from_secs(5),
                Duration::from_millis(50),
                Duration::from_secs(1),
            )
            .unwrap()
            .unwrap();
        assert!(batch.contains(&root.join("apps/web/a.ts")), "{batch:?}");
        assert!(!batch.iter().any(|p| p.ends_with("ignored")));
        std::fs::create_dir_all(root.join("apps/web/new")).unwrap();
        let _ = w
            .next_batch(
                Duration::from_secs(5),
                Duration::from_millis(50),
                Duration::from_secs(1),
            )
            .unwrap();
        std::fs::write(root.join("apps/web/new/b.ts"), "b").unwrap();
        let batch = w
            .next_batch(
                Duration::from_secs(5),
                Duration::from_millis(50),
                Duration::from_secs(1),
            )
            .unwrap()
            .unwrap();
        assert!(batch.contains(&root.join("apps/web/new/b.ts")), "{batch:?}");
    }
}
