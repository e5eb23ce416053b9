//! The commit an image is tagged with: HEAD's SHA and time (or
//! `SOURCE_DATE_EPOCH`), whether the working tree has uncommitted changes
//! that would make the tag lie, and the repository's URL.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{Repository, StatusOptions};
use std::os::unix::ffi::OsStrExt;
use strata_engine::{ContentHash, KeyHasher, StatCache, file_entry, fs_path, relative};

use crate::config::CONFIG_FILE;
use crate::error::{Error, Result};
use crate::listing::kind_tag;

/// HEAD, as images record it.
#[derive(Clone, Debug)]
pub struct Revision {
    /// The full SHA.
    pub sha: String,
    /// The time every image and layer carries: `SOURCE_DATE_EPOCH`, else the
    /// Unix epoch. Never the commit's time: an image depends on its content
    /// only, so an unchanged app keeps its digest across commits.
    pub epoch: u64,
    /// The URL of the `origin` remote, if any.
    pub source: Option<String>,
}

/// What the revision node found: the tag a deploy's images get, the
/// uncommitted changes behind a `-dirty` one, and what was found clean.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tagging {
    /// HEAD's SHA.
    pub sha: String,
    /// The SHA, or `<sha>-dirty` for uncommitted work.
    pub tag: String,
    /// The uncommitted changes (at most a few paths).
    pub dirty: Vec<String>,
    /// The paths found clean, each with what it held and what HEAD held
    /// there: a path whose content and HEAD's object are both unchanged is
    /// still clean, and git is not asked about it again.
    pub clean: BTreeMap<String, Seen>,
}

/// A path of the working tree as it was found clean.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    /// The digest of its content (a folder's listing, a file's bytes and
    /// mode); none when absent.
    pub content: Option<ContentHash>,
    /// HEAD's object at the path (a tree or a blob); none when absent.
    pub head: Option<String>,
}

impl Tagging {
    /// The tag for HEAD `sha` with the uncommitted changes `dirty`: the SHA
    /// for a clean tree; `<sha>-dirty` when `allow_dirty`, else the
    /// refusal that names the changes.
    pub fn of(sha: &str, dirty: Vec<String>, allow_dirty: bool) -> Result<Tagging> {
        let tag = if dirty.is_empty() {
            sha.to_string()
        } else if allow_dirty {
            format!("{sha}-dirty")
        } else {
            let short = short(sha);
            return Err(Error::GitRef {
                message: format!(
                    "uncommitted changes ({}): images are tagged with the commit SHA {short}, which would not describe what is deployed; commit them, or pass --allow-dirty to tag {short}-dirty",
                    dirty.join(", "),
                ),
            });
        };
        Ok(Tagging {
            sha: sha.to_string(),
            tag,
            dirty,
            clean: BTreeMap::new(),
        })
    }
}

/// The files at the root a deploy's tag answers for beside the layer
/// folders: the config, the lockfiles and the root files builds read, each
/// with the digest of its content and mode (none when absent).
pub fn root_files(root: &Path, cache: &StatCache) -> Result<Vec<(String, Option<ContentHash>)>> {
    std::iter::once(CONFIG_FILE)
        .chain(crate::lockfile::LOCKFILES.iter().copied())
        .chain(crate::toolchain::GLOBAL_INPUTS.iter().copied())
        .map(|name| Ok((name.to_string(), root_file(root, name, cache)?)))
        .collect()
}

/// The digest of the content and mode of the file `name` at `root` (none
/// when absent).
pub fn root_file(root: &Path, name: &str, cache: &StatCache) -> Result<Option<ContentHash>> {
    let entry = file_entry(root, &root.join(name), Some(cache), "")?;
    Ok(entry.map(|e| {
        KeyHasher::new("root-file/v1")
            .u64(kind_tag(e.kind))
            .hash(&e.digest)
            .finish()
    }))
}

/// The tag for commit `sha` of the repository holding `root`, given the
/// working tree's `paths` (folders and files, relative to `root`, with the
/// digest of their content): the paths with uncommitted changes (git's
/// status: untracked files included, ignored ones not) make it
/// `<sha>-dirty`, or a refusal without `allow_dirty`. Git is asked only
/// about the paths `prior` did not find clean with the same content and
/// the same object in HEAD: a deploy after a one-file edit reads that
/// file's folder, not the whole tree. A path git found clean is kept as
/// clean only if `content_now` (its content read again after git's answer)
/// is what was given: one edited meanwhile is asked about next time.
pub fn tagging(
    root: &Path,
    sha: &str,
    paths: &[(String, Option<ContentHash>)],
    prior: Option<&Tagging>,
    allow_dirty: bool,
    content_now: &dyn Fn(&str) -> Result<Option<ContentHash>>,
) -> Result<Tagging> {
    let repo = discover(root)?;
    let workdir = repo.workdir().ok_or_else(|| Error::GitRef {
        message: format!(
            "the repository holding {} has no working tree",
            root.display()
        ),
    })?;
    let prefix = crate::changed::prefix_path(workdir, root)?;
    let tree = git2::Oid::from_str(sha)
        .and_then(|oid| repo.find_commit(oid))
        .and_then(|c| c.tree())
        .map_err(|e| git("reading the commit's tree", e))?;
    let mut seen = Vec::new();
    let mut ask = Vec::new();
    for (path, content) in paths {
        let in_repo = prefix.join(fs_path(path));
        let head = tree.get_path(&in_repo).ok().map(|e| e.id().to_string());
        let now = Seen {
            content: *content,
            head,
        };
        let known = prior.and_then(|p| p.clean.get(path)) == Some(&now);
        if !known {
            ask.push(path.as_str());
        }
        seen.push((path, now, known));
    }
    let dirty = if ask.is_empty() {
        Vec::new()
    } else {
        status(&repo, &prefix, &ask)?
    };
    let under = |dirty: &str, path: &str| {
        dirty == path
            || dirty
                .strip_prefix(path)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    // A change git named that falls under no path asked about (a name it
    // could not give back): none of them is taken as clean.
    let unplaced = dirty.iter().any(|d| !ask.iter().any(|path| under(d, path)));
    let mut clean = BTreeMap::new();
    for (path, now, known) in seen {
        let found_clean = !unplaced && !dirty.iter().any(|d| under(d, path));
        if known || (found_clean && content_now(path)? == now.content) {
            clean.insert(path.clone(), now);
        }
    }
    let mut tagging = Tagging::of(sha, dirty.into_iter().take(5).collect(), allow_dirty)?;
    tagging.clean = clean;
    Ok(tagging)
}

/// The paths under `paths` (relative to the monorepo's root, which is at
/// `prefix` in the working tree) that git's status names, relative to the
/// root; a name that is not UTF-8 as [`strata_engine::name_str`] carries
/// it.
fn status(repo: &Repository, prefix: &Path, paths: &[&str]) -> Result<Vec<String>> {
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        // Paths, not patterns: a name holding `*` or starting with `!`.
        .disable_pathspec_match(true);
    for path in paths {
        options.pathspec(prefix.join(fs_path(path)));
    }
    // As `git status` does, the index's stat data is refreshed when the
    // index can be written: files whose stat data is stale (a checkout or
    // a commit in the same second as the edit) are not hashed again on
    // every run. A read-only or locked index is only read.
    options.update_index(true);
    let statuses = match repo.statuses(Some(&mut options)) {
        Ok(statuses) => statuses,
        Err(_) => {
            options.update_index(false);
            repo.statuses(Some(&mut options))
                .map_err(|e| git("reading the working tree's status", e))?
        }
    };
    Ok(statuses
        .iter()
        .map(|s| {
            let path = Path::new(std::ffi::OsStr::from_bytes(s.path_bytes()));
            relative(prefix, path)
        })
        .collect())
}

/// The first 12 hex digits of a commit id.
pub(crate) fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn git(what: &str, e: git2::Error) -> Error {
    Error::GitRef {
        message: format!("{what}: {}", e.message()),
    }
}

fn discover(root: &Path) -> Result<Repository> {
    Repository::discover(root).map_err(|e| Error::GitRef {
        message: format!(
            "{} is not in a git repository ({}); images are tagged with the commit SHA, so deploy from a git checkout",
            root.display(),
            e.message()
        ),
    })
}

/// HEAD of the repository holding `root`, without looking at the working
/// tree (that is [`tagging`]'s).
pub fn head(root: &Path) -> Result<Revision> {
    let repo = discover(root)?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| git("the repository has no commit to tag images with", e))?;
    let epoch = image_epoch()?;
    let source = repo
        .find_remote("origin")
        .ok()
        .and_then(|r| r.url().map(str::to_string))
        .and_then(|u| public_url(&u));
    Ok(Revision {
        sha: head.id().to_string(),
        epoch,
        source,
    })
}

/// The repository's URL as it may be published in an image: `https://`
/// without user name, password or token, and no query; scp-like SSH
/// addresses (`git@host:org/repo.git`) become `https://host/org/repo`.
/// Local paths and anything unparsable give `None`.
pub fn public_url(url: &str) -> Option<String> {
    let url = url.trim();
    let (host, path) = if let Some(rest) = url.split_once("://").map(|(_, r)| r) {
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        let (host, path) = rest.split_once('/')?;
        let host = host.split(':').next().unwrap_or(host);
        (host.to_string(), path.to_string())
    } else if let Some((user_host, path)) = url.split_once(':') {
        // scp-like: [user@]host:path
        if user_host.contains('/') {
            return None;
        }
        let host = user_host
            .rsplit_once('@')
            .map(|(_, h)| h)
            .unwrap_or(user_host);
        (host.to_string(), path.to_string())
    } else {
        return None;
    };
    if host.is_empty() || url.starts_with("file:") || !host.contains('.') {
        return None;
    }
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    Some(format!("https://{host}/{}", path.trim_start_matches('/')))
}

/// `SOURCE_DATE_EPOCH` when set (reproducible-builds.org), else 0.
pub fn image_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse::<u64>().map_err(|_| Error::GitRef {
            message: format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"),
        }),
        Err(_) => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository whose monorepo root is its folder `mono`, with a layer
    /// `apps/a` holding `f.txt`, committed; its HEAD.
    fn repo() -> (tempfile::TempDir, std::path::PathBuf, String) {
        repo_in("mono".as_ref())
    }

    /// [`repo`], the monorepo in the folder `folder` of the repository.
    fn repo_in(folder: &std::ffi::OsStr) -> (tempfile::TempDir, std::path::PathBuf, String) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(folder);
        std::fs::create_dir_all(root.join("apps/a")).unwrap();
        std::fs::create_dir_all(root.join("apps/b")).unwrap();
        std::fs::write(root.join("apps/a/f.txt"), "one\n").unwrap();
        std::fs::write(root.join("apps/b/g.txt"), "two\n").unwrap();
        let repo = Repository::init(tmp.path()).unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let who = git2::Signature::now("t", "t@strata.invalid").unwrap();
        let sha = repo
            .commit(Some("HEAD"), &who, &who, "one", &tree, &[])
            .unwrap()
            .to_string();
        (tmp, root, sha)
    }

    /// What the caller says of each path: a digest standing for its content.
    fn paths(a: &str) -> Vec<(String, Option<ContentHash>)> {
        vec![
            ("apps/a".into(), Some(ContentHash::of(a.as_bytes()))),
            ("apps/b".into(), Some(ContentHash::of(b"b"))),
        ]
    }

    #[test]
    fn git_is_asked_only_about_paths_not_seen_clean_as_they_are() {
        let (_tmp, root, sha) = repo();
        let same = |path: &str| Ok(paths("a").into_iter().find(|(p, _)| p == path).unwrap().1);
        let first = tagging(&root, &sha, &paths("a"), None, false, &same).unwrap();
        assert_eq!(first.tag, sha);
        assert_eq!(first.clean.len(), 2);
        // Edited, but said to hold what was seen clean: not asked again.
        std::fs::write(root.join("apps/a/f.txt"), "edited\n").unwrap();
        let again = tagging(&root, &sha, &paths("a"), Some(&first), false, &same).unwrap();
        assert_eq!(again.tag, sha);
        // Its content changed: asked, and named relative to the root.
        let err = tagging(&root, &sha, &paths("a2"), Some(&first), false, &same).unwrap_err();
        assert!(err.to_string().contains("apps/a/f.txt"), "{err}");
        let dirty = tagging(&root, &sha, &paths("a2"), Some(&first), true, &same).unwrap();
        assert_eq!(dirty.tag, format!("{sha}-dirty"));
        assert_eq!(dirty.dirty, ["apps/a/f.txt"]);
        assert!(!dirty.clean.contains_key("apps/a") && dirty.clean.contains_key("apps/b"));
    }

    #[test]
    fn a_monorepo_in_a_folder_whose_name_is_not_utf8_is_read_where_it_is() {
        use std::os::unix::ffi::OsStrExt;
        let (_tmp, root, sha) = repo_in(std::ffi::OsStr::from_bytes(b"m\xe9no"));
        let same = |path: &str| Ok(paths("a").into_iter().find(|(p, _)| p == path).unwrap().1);
        std::fs::write(root.join("apps/a/f.txt"), "edited\n").unwrap();
        let t = tagging(&root, &sha, &paths("a"), None, true, &same).unwrap();
        assert_eq!(t.dirty, ["apps/a/f.txt"]);
        assert!(t.clean.contains_key("apps/b") && !t.clean.contains_key("apps/a"));
    }

    #[test]
    fn a_path_edited_while_git_answers_is_asked_about_next_time() {
        let (_tmp, root, sha) = repo();
        // The content read again is not what was given: clean now, but
        // not kept as clean.
        let moved = |_: &str| Ok(Some(ContentHash::of(b"moved")));
        let t = tagging(&root, &sha, &paths("a"), None, false, &moved).unwrap();
        assert_eq!(t.tag, sha);
        assert!(t.clean.is_empty());
    }

    #[test]
    fn a_name_that_is_not_utf8_is_uncommitted_work() {
        use std::os::unix::ffi::OsStrExt;
        let (_tmp, root, sha) = repo();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.html");
        std::fs::write(root.join("apps/a").join(name), "x").unwrap();
        let same = |path: &str| Ok(paths("a").into_iter().find(|(p, _)| p == path).unwrap().1);
        let t = tagging(&root, &sha, &paths("a"), None, true, &same).unwrap();
        assert_eq!(t.tag, format!("{sha}-dirty"));
        assert_eq!(t.dirty.len(), 1);
        assert!(t.dirty[0].starts_with("apps/a/caf"), "{:?}", t.dirty);
        assert!(!t.clean.contains_key("apps/a"));
    }

    #[test]
    fn published_urls_hold_no_credentials() {
        let cases = [
            (
                "https://gitlab-ci-token:glpat-secret@gitlab.example.com/g/p.git",
                Some("https://gitlab.example.com/g/p"),
            ),
            (
                "git@github.com:org/repo.git",
                Some("https://github.com/org/repo"),
            ),
            (
                "ssh://git@github.com:22/org/repo.git",
                Some("https://github.com/org/repo"),
            ),
            (
                "https://github.com/org/repo?token=x",
                Some("https://github.com/org/repo"),
            ),
            ("/srv/git/repo", None),
            ("file:///srv/git/repo", None),
        ];
        for (url, want) in cases {
            assert_eq!(public_url(url).as_deref(), want, "{url}");
        }
    }
}
