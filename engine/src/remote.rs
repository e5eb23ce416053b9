//! A remote cache shared by machines: the Bazel HTTP cache layout
//! (`GET`/`PUT`/`HEAD` on `/ac/<action>` and `/cas/<sha256>`, served by
//! nginx with WebDAV, bazel-remote and hosted caches) or a REAPI server's
//! action cache and CAS over gRPC. Entries are REAPI `ActionResult`s either
//! way. The cache only ever saves time: every fetched
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
use crate::reapi;

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

/// How the cache is reached.
enum Backend {
    /// The Bazel HTTP cache layout.
    Http {
        base: String,
        client: Client,
        auth: Option<String>,
    },
    /// A REAPI server's action cache and CAS.
    Grpc(Box<reapi::Client>),
}

impl std::fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteOptions")
            .field("auth", &self.auth)
            .field("read_only", &self.read_only)
            .field("instance", &self.instance)
            .field("headers", &reapi::Redacted(&self.headers))
            .finish_non_exhaustive()
    }
}

/// How to use a remote cache.
#[derive(Clone)]
pub struct RemoteOptions {
    /// Credentials, when the URL holds none.
    pub auth: RemoteAuth,
    /// Only read.
    pub read_only: bool,
    /// The longest one request may take.
    pub timeout: Duration,
    /// The REAPI instance name (gRPC only).
    pub instance: String,
    /// Headers sent with every gRPC call (values never shown).
    pub headers: Vec<(String, String)>,
    /// Certificates (PEM) trusted for `grpcs://` beside the usual roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            auth: RemoteAuth::None,
            read_only: false,
            timeout: Duration::from_secs(20),
            instance: String::new(),
            headers: Vec::new(),
            ca_pem: None,
        }
    }
}

/// A remote cache of action results and blobs, in REAPI's terms: an action
/// cache of `ActionResult` messages keyed by action digest, and a CAS of
/// blobs keyed by SHA-256. Over HTTP, `/ac/<hash>` holds the encoded
/// `ActionResult` and `/cas/<hash>` the blob, as bazel-remote stores them;
/// over gRPC, the REAPI `ActionCache` and `ContentAddressableStorage`
/// services. The same entries work through either.
pub struct RemoteCache {
    shown: String,
    backend: Backend,
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
    /// A cache at `url`: `http[s]://[user:password@]host[:port][/prefix]`
    /// (the Bazel HTTP layout) or `grpc[s]://host[:port]` (REAPI).
    /// Credentials come from the URL, else `options.auth`; they never
    /// appear in messages. A gRPC server that cannot be reached or lacks
    /// what strata needs gives a warning, and the run goes on without it.
    pub fn new(url: &str, options: RemoteOptions) -> Result<RemoteCache> {
        let parsed = reqwest::Url::parse(url).map_err(|e| Error::Url {
            message: format!("not a URL ({e})"),
        })?;
        if matches!(parsed.scheme(), "grpc" | "grpcs") {
            let mut headers = options.headers.clone();
            let has_auth = headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
            if !has_auth && let Some(value) = auth_header(&options.auth) {
                headers.push(("authorization".into(), value));
            }
            let shown = {
                let mut clean = parsed.clone();
                clean.set_query(None);
                clean.as_str().trim_end_matches('/').to_string()
            };
            let cache = |backend, off| RemoteCache {
                shown: shown.clone(),
                backend,
                read_only: options.read_only,
                off: AtomicBool::new(off),
                warnings: Mutex::new(Vec::new()),
                downloaded: AtomicU64::new(0),
                uploaded: AtomicU64::new(0),
            };
            let client = reapi::Client::connect(
                url,
                reapi::Options {
                    instance: options.instance.clone(),
                    headers,
                    timeout: options.timeout,
                    retries: 2,
                    ca_pem: options.ca_pem.clone(),
                },
            );
            return match client {
                Ok(client) => {
                    let writable = client.capabilities().ac_writable;
                    let mut cache = cache(Backend::Grpc(Box::new(client)), false);
                    if !writable && !cache.read_only {
                        cache.read_only = true;
                        cache.warn(format!(
                            "remote cache {}: the server lets no client write its action cache (its capabilities say so); reading only",
                            cache.shown
                        ));
                    }
                    Ok(cache)
                }
                Err(e @ Error::Url { .. }) => Err(e),
                Err(e) => {
                    // Unreachable, or not a cache strata can use: it only
                    // ever saves time.
                    let shell = cache(
                        Backend::Http {
                            base: String::new(),
                            client: Client::new(),
                            auth: None,
                        },
                        true,
                    );
                    shell.warn(format!(
                        "{e}; going on without the remote cache for this run"
                    ));
                    Ok(shell)
                }
            };
        }
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Url {
                message: format!(
                    "{}:// is not a remote cache address; use http(s):// (the Bazel HTTP cache) or grpc(s):// (REAPI)",
                    parsed.scheme()
                ),
            });
        }
        let auth = if !parsed.username().is_empty() {
            let user = percent_decode(parsed.username());
            let password = percent_decode(parsed.password().unwrap_or(""));
            Some(basic(&user, &password))
        } else {
            auth_header(&options.auth)
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
            .connect_timeout(options.timeout.min(Duration::from_secs(5)))
            .timeout(options.timeout)
            .build()
            .map_err(|e| Error::Url {
                message: e.to_string(),
            })?;
        Ok(RemoteCache {
            shown,
            backend: Backend::Http { base, client, auth },
            read_only: options.read_only,
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

    /// Whether the cache is still in use this run (it is left alone after
    /// a failure).
    pub fn usable(&self) -> bool {
        !self.off.load(Ordering::SeqCst)
    }

    /// Bytes fetched and sent so far.
    pub fn traffic(&self) -> (u64, u64) {
        let (mut down, mut up) = (
            self.downloaded.load(Ordering::Relaxed),
            self.uploaded.load(Ordering::Relaxed),
        );
        if let Backend::Grpc(client) = &self.backend {
            down += client.downloaded.load(Ordering::Relaxed);
            up += client.uploaded.load(Ordering::Relaxed);
        }
        (down, up)
    }

    fn http_request(&self, make: RequestBuilder) -> RequestBuilder {
        match &self.backend {
            Backend::Http {
                auth: Some(auth), ..
            } => make.header(reqwest::header::AUTHORIZATION, auth),
            _ => make,
        }
    }

    /// Whether the cache holds a result for `action`; `None` when it
    /// cannot tell.
    pub fn has_action_result(&self, action: &reapi::Digest) -> Option<bool> {
        if !self.usable() {
            return None;
        }
        match &self.backend {
            Backend::Http { .. } => self.exists(&format!("ac/{}", action.hash)),
            Backend::Grpc(client) => match client.get_action_result(action) {
                Ok(found) => Some(found.is_some()),
                Err(e) => {
                    self.give_up("reading an action result", e.to_string());
                    None
                }
            },
        }
    }

    /// The result the cache holds for `action`, if any. An entry that is
    /// not an `ActionResult` is a miss.
    pub fn get_action_result(&self, action: &reapi::Digest) -> Option<reapi::re::ActionResult> {
        if !self.usable() {
            return None;
        }
        match &self.backend {
            Backend::Http { .. } => {
                let bytes = self
                    .http_get_bytes(&format!("ac/{}", action.hash), "reading an action result")?;
                use prost::Message as _;
                reapi::re::ActionResult::decode(bytes.as_ref()).ok()
            }
            Backend::Grpc(client) => match client.get_action_result(action) {
                Ok(found) => found,
                Err(e) => {
                    self.give_up("reading an action result", e.to_string());
                    None
                }
            },
        }
    }

    /// Which of `digests` the cache lacks; `None` when it cannot tell.
    pub fn missing_blobs(&self, digests: &[reapi::Digest]) -> Option<Vec<reapi::Digest>> {
        if !self.usable() {
            return None;
        }
        match &self.backend {
            Backend::Http { .. } => {
                let mut missing = Vec::new();
                for d in digests {
                    match self.exists(&format!("cas/{}", d.hash)) {
                        Some(true) => {}
                        Some(false) => missing.push(d.clone()),
                        None => return None,
                    }
                }
                Some(missing)
            }
            Backend::Grpc(client) => match client.find_missing(digests) {
                Ok(missing) => Some(missing),
                Err(e) => {
                    self.give_up("checking blobs", e.to_string());
                    None
                }
            },
        }
    }

    /// Uploads the blobs of `blobs` the cache lacks; whether they are all
    /// there now.
    pub fn put_blobs(&self, blobs: Vec<reapi::Blob>) -> bool {
        if !self.usable() || self.read_only {
            return false;
        }
        let digests: Vec<reapi::Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
        let Some(missing) = self.missing_blobs(&digests) else {
            return false;
        };
        let wanted = reapi::keep_missing(blobs, missing);
        match &self.backend {
            Backend::Http { .. } => wanted.into_iter().all(|blob| {
                let len = blob.digest.size_bytes as u64;
                let body = match blob.source {
                    reapi::Source::Bytes(bytes) => reqwest::blocking::Body::from(bytes),
                    reapi::Source::File(path) => match std::fs::File::open(&path) {
                        Ok(file) => reqwest::blocking::Body::sized(file, len),
                        Err(_) => return false,
                    },
                };
                self.put(&format!("cas/{}", blob.digest.hash), body, len)
            }),
            Backend::Grpc(client) => match client.upload(wanted) {
                Ok(_) => true,
                Err(e) => {
                    self.give_up("storing blobs", e.to_string());
                    false
                }
            },
        }
    }

    /// Downloads every blob of `wanted` into its path (over gRPC, small
    /// ones in batches); whether all came. A blob that does not match is a
    /// miss with a warning.
    pub fn get_blobs(&self, wanted: &[(reapi::Digest, std::path::PathBuf)]) -> bool {
        if !self.usable() {
            return false;
        }
        match &self.backend {
            Backend::Http { .. } => {
                use rayon::prelude::*;
                wanted
                    .par_iter()
                    .all(|(digest, path)| self.http_get_cas(&digest.hash, path))
            }
            Backend::Grpc(client) => match client.download_many(wanted) {
                Ok(()) => true,
                Err(Error::RemoteMissing { .. }) => false,
                Err(e @ Error::RemoteCorrupt { .. }) => {
                    self.warn(format!("{e}; not used"));
                    false
                }
                Err(e) => {
                    self.give_up("reading blobs", e.to_string());
                    false
                }
            },
        }
    }

    /// The bytes of blob `digest` (a small one: a tree), checked.
    pub fn get_blob_bytes(&self, digest: &reapi::Digest) -> Option<Vec<u8>> {
        if !self.usable() {
            return None;
        }
        match &self.backend {
            Backend::Http { .. } => {
                let bytes =
                    self.http_get_bytes(&format!("cas/{}", digest.hash), "reading a blob")?;
                if reapi::digest_of(&bytes) != *digest {
                    self.warn(format!(
                        "remote cache {}: blob {} is corrupt; not used",
                        self.shown, digest.hash
                    ));
                    return None;
                }
                Some(bytes)
            }
            Backend::Grpc(client) => match client.read_blob(digest) {
                Ok(found) => found,
                Err(e) => {
                    self.give_up("reading a blob", e.to_string());
                    None
                }
            },
        }
    }

    /// Downloads blob `sha256` into `dest` (atomically), checking its
    /// digest. A corrupt blob is a miss with a warning.
    fn http_get_cas(&self, sha256: &str, dest: &Path) -> bool {
        let Some(mut response) = self.http_get(&format!("cas/{sha256}"), "reading a blob") else {
            return false;
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

    /// `GET <base>/<path>`: the response when found; `None` when not (a
    /// 404), or when the cache failed (it is then left alone, with a
    /// warning naming `what` it was doing).
    fn http_get(&self, path: &str, what: &str) -> Option<reqwest::blocking::Response> {
        let Backend::Http { base, client, .. } = &self.backend else {
            return None;
        };
        match self
            .http_request(client.get(format!("{base}/{path}")))
            .send()
        {
            Ok(r) if r.status().is_success() => Some(r),
            Ok(r) if r.status() == StatusCode::NOT_FOUND => None,
            Ok(r) => {
                self.give_up(what, format!("answered {}", r.status()));
                None
            }
            Err(e) => {
                self.give_up(what, e.without_url().to_string());
                None
            }
        }
    }

    /// The whole body of [`Self::http_get`], counted as fetched.
    fn http_get_bytes(&self, path: &str, what: &str) -> Option<Vec<u8>> {
        match self.http_get(path, what)?.bytes() {
            Ok(bytes) => {
                self.downloaded
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Some(bytes.to_vec())
            }
            Err(e) => {
                self.give_up(what, e.without_url().to_string());
                None
            }
        }
    }

    fn exists(&self, path: &str) -> Option<bool> {
        let Backend::Http { base, client, .. } = &self.backend else {
            return None;
        };
        let url = format!("{base}/{path}");
        match self.http_request(client.head(&url)).send() {
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
        let Backend::Http { base, client, .. } = &self.backend else {
            return false;
        };
        let url = format!("{base}/{path}");
        match self
            .http_request(client.put(&url))
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

    /// Stores `result` as the entry of `action` (after the blobs it
    /// names).
    pub fn put_action_result(
        &self,
        action: &reapi::Digest,
        result: &reapi::re::ActionResult,
    ) -> bool {
        if !self.usable() || self.read_only {
            return false;
        }
        match &self.backend {
            Backend::Http { .. } => {
                use prost::Message as _;
                let bytes = result.encode_to_vec();
                let len = bytes.len() as u64;
                self.put(&format!("ac/{}", action.hash), bytes.into(), len)
            }
            Backend::Grpc(client) => match client.update_action_result(action, result) {
                Ok(()) => true,
                Err(e) => {
                    self.give_up("storing an action result", e.to_string());
                    false
                }
            },
        }
    }
}

impl RemoteAuth {
    /// The `authorization` header value, when there are credentials.
    pub fn header(&self) -> Option<String> {
        auth_header(self)
    }
}

fn auth_header(auth: &RemoteAuth) -> Option<String> {
    match auth {
        RemoteAuth::None => None,
        RemoteAuth::Bearer(token) => Some(format!("Bearer {token}")),
        RemoteAuth::Basic { user, password } => Some(basic(user, password)),
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

    fn options(auth: RemoteAuth) -> RemoteOptions {
        RemoteOptions {
            auth,
            timeout: Duration::from_secs(1),
            ..RemoteOptions::default()
        }
    }

    #[test]
    fn credentials_leave_the_url_shown() {
        let cache = RemoteCache::new(
            "http://ci:s%40cret@127.0.0.1:9/cache/",
            options(RemoteAuth::Bearer(
                "ignored: the URL's credentials win".into(),
            )),
        )
        .unwrap();
        assert_eq!(cache.url(), "http://127.0.0.1:9/cache");
        let Backend::Http { auth, .. } = &cache.backend else {
            panic!("an HTTP cache");
        };
        assert_eq!(auth.as_deref(), Some(basic("ci", "s@cret").as_str()));
    }

    #[test]
    fn an_unreachable_cache_is_a_miss_and_one_warning() {
        // Nothing listens on port 9 of loopback (the discard port).
        for url in ["http://127.0.0.1:9", "grpc://127.0.0.1:9"] {
            let cache = RemoteCache::new(url, options(RemoteAuth::Bearer("t0ken".into()))).unwrap();
            let action = reapi::digest_of(b"action");
            assert_eq!(cache.get_action_result(&action), None);
            assert!(!cache.put_action_result(&action, &Default::default()));
            let warnings = cache.warnings();
            assert_eq!(warnings.len(), 1, "{url}: {warnings:?}");
            assert!(warnings[0].contains("going on without"), "{warnings:?}");
            assert!(!warnings[0].contains("t0ken"), "{warnings:?}");
        }
    }
}
