//! A remote cache shared by machines, in the Bazel HTTP cache layout:
//! `GET`/`PUT`/`HEAD` on `/ac/<key>` (what a key produced) and
//! `/cas/<sha256>` (blobs by content). nginx with WebDAV, bazel-remote and
//! hosted caches serve it. The cache only ever saves time: every fetched
//! blob is verified, and a slow, failing or unreachable cache gives a
//! warning and is left alone for the rest of the run.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder};
use sha2::{Digest as _, Sha256};

use crate::atomic::TempName;
use crate::error::{Error, Result};

/// How to authenticate to a remote cache when its URL holds no
/// credentials (those in the URL win).
#[derive(Clone, Default)]
pub enum RemoteAuth {
    /// Anonymous.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// Basic auth.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for RemoteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.write_str(match self {
            RemoteAuth::None => "None",
            RemoteAuth::Bearer(_) => "Bearer(…)",
            RemoteAuth::Basic { .. } => "Basic(…)",
        })
    }
}

/// A remote cache.
pub struct RemoteCache {
    base: String,
    shown: String,
    client: Client,
    auth: Option<String>,
    read_only: bool,
    off: AtomicBool,
    warnings: Mutex<Vec<String>>,
    /// Bytes fetched.
    pub downloaded: AtomicU64,
    /// Bytes sent.
    pub uploaded: AtomicU64,
}

/// `sha256` of a file, as lowercase hex.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

impl RemoteCache {
    /// A cache at `url` (`http[s]://[user:password@]host[:port][/prefix]`).
    /// Credentials come from the URL, else `auth`. They never appear in
    /// messages.
    pub fn new(
        url: &str,
        auth: RemoteAuth,
        read_only: bool,
        timeout: Duration,
    ) -> Result<RemoteCache> {
        let parsed = reqwest::Url::parse(url).map_err(|e| Error::Url {
            message: format!("not a URL ({e})"),
        })?;
        let auth = if !parsed.username().is_empty() {
            let user = percent_decode(parsed.username());
            let password = percent_decode(parsed.password().unwrap_or(""));
            Some(basic(&user, &password))
        } else {
            match auth {
                RemoteAuth::None => None,
                RemoteAuth::Bearer(token) => Some(format!("Bearer {token}")),
                RemoteAuth::Basic { user, password } => Some(basic(&user, &password)),
            }
        };
        let mut clean = parsed.clone();
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        let base = clean.as_str().trim_end_matches('/').to_string();
        // What is shown has no query either (it may hold a token).
        let mut shown = clean.clone();
        shown.set_query(None);
        let shown = shown.as_str().trim_end_matches('/').to_string();
        let client = Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Url {
                message: e.to_string(),
            })?;
        Ok(RemoteCache {
            shown,
            base,
            client,
            auth,
            read_only,
            off: AtomicBool::new(false),
            warnings: Mutex::new(Vec::new()),
            downloaded: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
        })
    }

    /// The URL without credentials.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Whether results are only read.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// What went wrong with the cache (each a warning to show).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().unwrap().clone()
    }

    fn warn(&self, message: String) {
        self.warnings.lock().unwrap().push(message);
    }

    /// Stops using the cache for this run, with a warning.
    fn give_up(&self, what: &str, why: String) {
        if !self.off.swap(true, Ordering::SeqCst) {
            self.warn(format!(
                "remote cache {}: {what}: {why}; going on without it for this run",
                self.shown
            ));
        }
    }

    fn request(&self, make: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Some(a) => make.header(reqwest::header::AUTHORIZATION, a),
            None => make,
        }
    }

    /// Whether the cache is still in use this run (it is left alone after
    /// a failure).
    pub fn usable(&self) -> bool {
        !self.off.load(Ordering::SeqCst)
    }

    /// Whether the cache holds the action result of `key` (one `HEAD`);
    /// `None` when it cannot tell.
    pub fn has_ac(&self, key: &str) -> Option<bool> {
        if !self.usable() {
            return None;
        }
        self.exists(&format!("ac/{key}"))
    }

    /// The action result stored under `key`, if any.
    pub fn get_ac(&self, key: &str) -> Option<Vec<u8>> {
        if !self.usable() {
            return None;
        }
        let url = format!("{}/ac/{key}", self.base);
        match self.request(self.client.get(&url)).send() {
            Ok(r) if r.status().is_success() => match r.bytes() {
                Ok(b) => {
                    self.downloaded.fetch_add(b.len() as u64, Ordering::Relaxed);
                    Some(b.to_vec())
                }
                Err(e) => {
                    self.give_up("reading an action result", e.without_url().to_string());
                    None
                }
            },
            Ok(r) if r.status() == StatusCode::NOT_FOUND => None,
            Ok(r) => {
                self.give_up(
                    "reading an action result",
                    format!("answered {}", r.status()),
                );
                None
            }
            Err(e) => {
                self.give_up("reading an action result", e.without_url().to_string());
                None
            }
        }
    }

    /// Downloads blob `sha256` into `dest` (atomically), checking its
    /// digest. A corrupt blob is a miss with a warning.
    pub fn get_cas(&self, sha256: &str, dest: &Path) -> bool {
        if !self.usable() {
            return false;
        }
        let url = format!("{}/cas/{sha256}", self.base);
        let mut response = match self.request(self.client.get(&url)).send() {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if r.status() == StatusCode::NOT_FOUND => return false,
            Ok(r) => {
                self.give_up("reading a blob", format!("answered {}", r.status()));
                return false;
            }
            Err(e) => {
                self.give_up("reading a blob", e.without_url().to_string());
                return false;
            }
        };
        let tmp = TempName::beside(dest);
        let result = (|| -> std::io::Result<(String, u64)> {
            let mut file = std::fs::File::create(&tmp)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            loop {
                let n = response.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])?;
                total += n as u64;
            }
            file.flush()?;
            Ok((format!("{:x}", hasher.finalize()), total))
        })();
        match result {
            Ok((got, total)) if got == sha256 => {
                self.downloaded.fetch_add(total, Ordering::Relaxed);
                std::fs::rename(&tmp, dest).is_ok()
            }
            Ok((got, _)) => {
                let _ = std::fs::remove_file(&tmp);
                self.warn(format!(
                    "remote cache {}: blob {sha256} is corrupt (its content hashes to {got}); not used",
                    self.shown
                ));
                false
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.give_up("reading a blob", e.to_string());
                false
            }
        }
    }

    fn exists(&self, path: &str) -> Option<bool> {
        let url = format!("{}/{path}", self.base);
        match self.request(self.client.head(&url)).send() {
            Ok(r) if r.status().is_success() => Some(true),
            Ok(r) if r.status() == StatusCode::NOT_FOUND => Some(false),
            Ok(r) => {
                self.give_up("checking a blob", format!("answered {}", r.status()));
                None
            }
            Err(e) => {
                self.give_up("checking a blob", e.without_url().to_string());
                None
            }
        }
    }

    fn put(&self, path: &str, body: reqwest::blocking::Body, len: u64) -> bool {
        let url = format!("{}/{path}", self.base);
        match self
            .request(self.client.put(&url))
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
        {
            Ok(r) if r.status().is_success() => {
                self.uploaded.fetch_add(len, Ordering::Relaxed);
                true
            }
            Ok(r) => {
                self.give_up("storing a result", format!("answered {}", r.status()));
                false
            }
            Err(e) => {
                self.give_up("storing a result", e.without_url().to_string());
                false
            }
        }
    }

    /// Uploads the file at `path` as blob `sha256` unless the cache has it.
    pub fn put_cas(&self, sha256: &str, path: &Path) -> bool {
        if !self.usable() || self.read_only {
            return false;
        }
        match self.exists(&format!("cas/{sha256}")) {
            Some(true) => true,
            Some(false) => {
                let Ok(file) = std::fs::File::open(path) else {
                    return false;
                };
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.put(
                    &format!("cas/{sha256}"),
                    reqwest::blocking::Body::sized(file, len),
                    len,
                )
            }
            None => false,
        }
    }

    /// Stores the action result of `key` (after its blobs).
    pub fn put_ac(&self, key: &str, bytes: &[u8]) -> bool {
        if !self.usable() || self.read_only {
            return false;
        }
        self.put(
            &format!("ac/{key}"),
            bytes.to_vec().into(),
            bytes.len() as u64,
        )
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_shown() {
        let cache = RemoteCache::new(
            "http://ci:s%40cret@127.0.0.1:9/cache/",
            RemoteAuth::Bearer("ignored: the URL's credentials win".into()),
            false,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(cache.url(), "http://127.0.0.1:9/cache");
        assert_eq!(cache.auth.as_deref(), Some(basic("ci", "s@cret").as_str()));
    }

    #[test]
    fn an_unreachable_cache_is_a_miss_and_one_warning() {
        // Nothing listens on port 9 of loopback (the discard port).
        let cache = RemoteCache::new(
            "http://127.0.0.1:9",
            RemoteAuth::None,
            false,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(cache.get_ac("00"), None);
        assert!(!cache.put_ac("00", b"{}"));
        let warnings = cache.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("going on without it"));
    }
}
