//! Image references (`[registry/]repository[:tag][@digest]`), with Docker's
//! defaults: no registry means Docker Hub, and a one-part name there means
//! `library/<name>`.

use std::fmt;

use crate::error::{Error, Result};

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry host (and port).
    pub registry: String,
    /// The repository path.
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest, if any.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference.
    pub fn parse(text: &str) -> Result<Reference> {
        let bad = |why: &str| Error::Image {
            message: format!("invalid image reference {text:?}: {why}"),
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                if !d.starts_with("sha256:") || d.len() != 71 {
                    return Err(bad("a digest must be sha256:<64 hex>"));
                }
                (r, Some(d.to_string()))
            }
            None => (text, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), rest.to_string()),
        };
        // A tag is after the last ':' of the last path component.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), Some(tag.to_string())),
            _ => (path, None),
        };
        if repository.is_empty() {
            return Err(bad("no repository"));
        }
        if repository
            .chars()
            .any(|c| c.is_ascii_uppercase() || c.is_whitespace())
        {
            return Err(bad("repositories are lowercase, without spaces"));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host to talk to (Docker Hub's API lives elsewhere than its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest, else the tag, else `latest`.
    pub fn target(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_defaults_and_explicit_registries() {
        let cases = [
            (
                "node:24-alpine",
                "docker.io",
                "library/node",
                Some("24-alpine"),
            ),
            (
                "docker.io/library/node:24-alpine",
                "docker.io",
                "library/node",
                Some("24-alpine"),
            ),
            ("bitnami/nginx", "docker.io", "bitnami/nginx", None),
            (
                "127.0.0.1:5000/base/node:1",
                "127.0.0.1:5000",
                "base/node",
                Some("1"),
            ),
            ("localhost/x", "localhost", "x", None),
            ("ghcr.io/org/app:sha-1", "ghcr.io", "org/app", Some("sha-1")),
        ];
        for (text, registry, repository, tag) in cases {
            let r = Reference::parse(text).unwrap();
            assert_eq!(
                (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
                (registry, repository, tag),
                "{text}"
            );
        }
        let d = format!("ghcr.io/a/b@sha256:{}", "0".repeat(64));
        assert_eq!(
            Reference::parse(&d).unwrap().target(),
            format!("sha256:{}", "0".repeat(64))
        );
        assert_eq!(
            Reference::parse("node").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert!(Reference::parse("Bad/Name").is_err());
        assert!(Reference::parse("x@sha256:12").is_err());
    }
}
