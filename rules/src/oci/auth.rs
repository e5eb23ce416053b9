//! Registry credentials and challenges: anonymous, basic, and the bearer
//! token flow that `WWW-Authenticate` asks for (as Docker Hub does).

use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;

/// A user name and password (or token). Never printed: `Debug` hides the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// The `Authorization` value for basic auth.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Basic auth.
    Basic,
    /// A token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter.
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header.
pub fn challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let mut realm = None;
            let mut service = None;
            for (key, value) in parameters(params) {
                match key.as_str() {
                    "realm" => realm = Some(value),
                    "service" => service = Some(value),
                    _ => {}
                }
            }
            Some(Challenge::Bearer {
                realm: realm?,
                service,
            })
        }
        _ => None,
    }
}

/// `key="value", key2=value2` pairs (values may hold commas inside quotes).
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (quoted[..end].to_string(), &quoted[end + 1..]),
                None => (quoted.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_string(), &after[end..]),
                None => (after.trim().to_string(), ""),
            }
        };
        out.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Credentials for `host` from Docker's config file (`$DOCKER_CONFIG` or
/// `~/.docker/config.json`), when it holds them inline (`auth`, or
/// `username`/`password`). Credential helpers are not run.
pub fn docker_config(host: &str) -> Option<Credentials> {
    let path = std::env::var_os("DOCKER_CONFIG")
        .map(|d| PathBuf::from(d).join("config.json"))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
        })?;
    let text = std::fs::read_to_string(path).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let hub = host == "docker.io" || host == "registry-1.docker.io" || host == "index.docker.io";
    let entry = auths.iter().find_map(|(key, value)| {
        let name = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        let matches = name == host
            || (hub
                && (name == "index.docker.io"
                    || name == "docker.io"
                    || name == "registry-1.docker.io"));
        matches.then_some(value)
    })?;
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        return Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    Some(Credentials {
        username: entry.get("username")?.as_str()?.to_string(),
        password: entry.get("password")?.as_str()?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            challenge("Basic realm=\"Registry Realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/node:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(challenge("Negotiate"), None);
    }

    #[test]
    fn passwords_are_never_printed() {
        let c = Credentials {
            username: "u".into(),
            password: "s3cret".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.basic(), "Basic dTpzM2NyZXQ=");
    }

    #[test]
    fn docker_config_inline_auth() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "aHViOnB3"}, "127.0.0.1:5000": {"username": "a", "password": "b"}}}"#,
        )
        .unwrap();
        // SAFETY: tests in this module do not read DOCKER_CONFIG concurrently.
        unsafe { std::env::set_var("DOCKER_CONFIG", dir.path()) };
        assert_eq!(docker_config("docker.io").unwrap().username, "hub");
        assert_eq!(docker_config("127.0.0.1:5000").unwrap().password, "b");
        assert!(docker_config("ghcr.io").is_none());
        unsafe { std::env::remove_var("DOCKER_CONFIG") };
    }
}
