//! The commit an image is tagged with: HEAD's SHA and time (or
//! `SOURCE_DATE_EPOCH`), whether the working tree has uncommitted changes
//! that would make the tag lie, and the repository's URL.

use std::path::Path;

use git2::{Repository, StatusOptions};

use crate::config::CONFIG_FILE;
use crate::error::{Error, Result};
use crate::workspace::APPS;

/// HEAD, as images record it.
#[derive(Clone, Debug)]
pub struct Revision {
    /// The full SHA.
    pub sha: String,
    /// The time every image and layer carries: `SOURCE_DATE_EPOCH`, else the
    /// Unix epoch. Never the commit's time: an image depends on its content
    /// only, so an unchanged app keeps its digest across commits.
    pub epoch: u64,
    /// Uncommitted changes under `apps/` or to the config (at most a few).
    pub dirty: Vec<String>,
    /// The URL of the `origin` remote, if any.
    pub source: Option<String>,
}

/// HEAD of the repository holding `root`, with its uncommitted changes.
pub fn revision(root: &Path) -> Result<Revision> {
    let mut rev = head(root)?;
    rev.dirty = uncommitted(root)?;
    Ok(rev)
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
/// tree (`dirty` is empty): quick, where [`uncommitted`] reads every file.
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
        dirty: Vec::new(),
        source,
    })
}

/// Uncommitted changes under `apps/`, to the config or to root files that
/// builds read (at most a few paths).
pub fn uncommitted(root: &Path) -> Result<Vec<String>> {
    let repo = discover(root)?;
    let workdir = repo.workdir().unwrap_or(root);
    let prefix = root
        .canonicalize()
        .ok()
        .and_then(|r| {
            workdir
                .canonicalize()
                .ok()
                .and_then(|w| r.strip_prefix(&w).ok().map(|p| p.to_path_buf()))
        })
        .unwrap_or_default();
    let prefix = prefix.to_string_lossy();
    let join = |p: &str| {
        if prefix.is_empty() {
            p.to_string()
        } else {
            format!("{prefix}/{p}")
        }
    };
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .pathspec(join(APPS))
        .pathspec(join(CONFIG_FILE));
    // Root files that are build inputs too: a lockfile, the root manifest.
    for file in crate::lockfile::LOCKFILES
        .iter()
        .chain(crate::toolchain::GLOBAL_INPUTS)
    {
        options.pathspec(join(file));
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
    let dirty: Vec<String> = statuses
        .iter()
        .filter_map(|s| s.path().map(str::to_string))
        .take(5)
        .collect();
    Ok(dirty)
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
