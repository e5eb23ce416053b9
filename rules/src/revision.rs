//! The commit an image is tagged with: HEAD's SHA and time (or
//! `SOURCE_DATE_EPOCH`), whether the working tree has uncommitted changes
//! that would make the tag lie, and the repository's URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::{Repository, StatusOptions};
use strata_engine::{ContentHash, KeyHasher, StatCache, file_entry};

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
            let short = sha.get(..12).unwrap_or(sha);
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
    let names = std::iter::once(CONFIG_FILE)
        .chain(crate::lockfile::LOCKFILES.iter().copied())
        .chain(crate::toolchain::GLOBAL_INPUTS.iter().copied());
    let mut files = Vec::new();
    for name in names {
        let entry = file_entry(root, &root.join(name), Some(cache), "")?;
        let digest = entry.map(|e| {
            KeyHasher::new("root-file/v1")
                .u64(kind_tag(e.kind))
                .hash(&e.digest)
                .finish()
        });
        files.push((name.to_string(), digest));
    }
    Ok(files)
}

/// The tag for commit `sha` of the repository holding `root`, given the
/// working tree's `paths` (folders and files, relative to `root`, with the
/// digest of their content): the paths with uncommitted changes (git's
/// status: untracked files included, ignored ones not) make it
/// `<sha>-dirty`, or a refusal without `allow_dirty`. Git is asked only
/// about the paths `prior` did not find clean with the same content and
/// the same object in HEAD: a deploy after a one-file edit reads that
/// file's folder, not the whole tree.
pub fn tagging(
    root: &Path,
    sha: &str,
    paths: &[(String, Option<ContentHash>)],
    prior: Option<&Tagging>,
    allow_dirty: bool,
) -> Result<Tagging> {
    let repo = discover(root)?;
    let prefix = workdir_prefix(&repo, root);
    let tree = git2::Oid::from_str(sha)
        .and_then(|oid| repo.find_commit(oid))
        .and_then(|c| c.tree())
        .map_err(|e| git("reading the commit's tree", e))?;
    let mut seen = Vec::new();
    let mut ask = Vec::new();
    for (path, content) in paths {
        let head = tree
            .get_path(Path::new(&prefix.join(path)))
            .ok()
            .map(|e| e.id().to_string());
        let now = Seen {
            content: *content,
            head,
        };
        if prior.and_then(|p| p.clean.get(path)) != Some(&now) {
            ask.push(path.as_str());
        }
        seen.push((path, now));
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
    let clean = seen
        .into_iter()
        .filter(|(path, _)| !dirty.iter().any(|d| under(d, path)))
        .map(|(path, now)| (path.clone(), now))
        .collect();
    let mut tagging = Tagging::of(sha, dirty.into_iter().take(5).collect(), allow_dirty)?;
    tagging.clean = clean;
    Ok(tagging)
}

/// Where `root` is inside the repository's working tree (empty at its top).
fn workdir_prefix(repo: &Repository, root: &Path) -> PathBuf {
    let workdir = repo.workdir().unwrap_or(root);
    root.canonicalize()
        .ok()
        .and_then(|r| {
            workdir
                .canonicalize()
                .ok()
                .and_then(|w| r.strip_prefix(&w).ok().map(|p| p.to_path_buf()))
        })
        .unwrap_or_default()
}

/// The paths under `paths` (relative to `prefix` in the working tree) that
/// git's status names, relative to `prefix`.
fn status(repo: &Repository, prefix: &Path, paths: &[&str]) -> Result<Vec<String>> {
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    for path in paths {
        options.pathspec(prefix.join(path));
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
        .filter_map(|s| {
            let path = s.path()?;
            Some(
                Path::new(path)
                    .strip_prefix(prefix)
                    .ok()?
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .collect())
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
    use super::public_url;

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
