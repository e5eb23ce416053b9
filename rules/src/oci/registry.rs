//! A client of the OCI distribution API: blobs (HEAD, GET, cross-repository
//! mount, monolithic and chunked uploads that resume after a dropped
//! connection), manifests (GET, PUT), with authentication and retries.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE, WWW_AUTHENTICATE,
};

use super::auth::{Challenge, Credentials, challenge};
use super::layout::HashingWriter;
use crate::error::{Error, Result};

/// Blobs up to this size go up in one request; larger ones in chunks.
pub const MONOLITHIC_LIMIT: u64 = 8 << 20;
/// The size of an upload chunk.
pub const CHUNK: u64 = 16 << 20;
const ATTEMPTS: u32 = 5;

/// Media types a manifest GET accepts.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// How to reach a registry.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Plain HTTP (for a loopback registry without TLS).
    pub insecure: bool,
    /// Who to be.
    pub credentials: Option<Credentials>,
    /// Extra CA certificates (PEM), as `SSL_CERT_FILE` names.
    pub ca_file: Option<PathBuf>,
    /// How long to wait for a connection or an answer.
    pub timeout: Option<Duration>,
}

/// One registry host.
pub struct Registry {
    host: String,
    base: String,
    http: Client,
    credentials: Option<Credentials>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, String>>,
    uploaded: AtomicU64,
}

/// The result of asking for a cross-repository mount.
pub enum Mount {
    /// The blob is now in the repository.
    Mounted,
    /// The registry did not mount it and opened an upload instead.
    Upload(String),
}

fn transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

impl Registry {
    /// A client of `host` (`host[:port]`).
    pub fn new(host: &str, options: ClientOptions) -> Result<Registry> {
        // Requests are bounded: one chunk or one small blob at a time.
        let timeout = options.timeout.unwrap_or_else(request_timeout);
        let mut builder = Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .timeout(timeout)
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &options.ca_file {
            let pem = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Image {
                message: format!("{}: not a PEM certificate bundle: {e}", ca.display()),
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| Error::Image {
            message: format!("making an HTTP client: {e}"),
        })?;
        let scheme = if options.insecure { "http" } else { "https" };
        Ok(Registry {
            host: host.to_string(),
            base: format!("{scheme}://{host}"),
            http,
            credentials: options.credentials,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            uploaded: AtomicU64::new(0),
        })
    }

    /// The host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Bytes of blobs sent so far.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    fn url(&self, path: &str) -> String {
        match reqwest::Url::parse(&self.base).and_then(|b| b.join(path)) {
            Ok(u) => u.to_string(),
            Err(_) => format!("{}{path}", self.base),
        }
    }

    /// Whether `url` is this registry (scheme, host and port): credentials
    /// go nowhere else.
    fn same_origin(&self, url: &reqwest::Url) -> bool {
        reqwest::Url::parse(&self.base).is_ok_and(|b| b.origin() == url.origin())
    }

    /// Adds this registry's credentials for `scope` to a request to itself.
    fn authorize(
        &self,
        mut request: reqwest::blocking::Request,
        scope: &str,
    ) -> reqwest::blocking::Request {
        if self.same_origin(request.url())
            && let Some(value) = self.auth_header(scope).and_then(|h| h.parse().ok())
        {
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        request
    }

    fn error(&self, what: &str, url: &str, response: Response) -> Error {
        let status = response.status();
        let body = response.text().unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = v.get("errors")?.get(0)?.clone();
                Some(format!(
                    "{} {}",
                    e.get("code").and_then(|c| c.as_str()).unwrap_or(""),
                    e.get("message").and_then(|c| c.as_str()).unwrap_or("")
                ))
            })
            .unwrap_or_else(|| {
                if body.trim_start().starts_with('<') {
                    "an HTML page, not a registry's answer (is this a container registry?)".into()
                } else {
                    body.chars().take(200).collect()
                }
            });
        Error::Registry {
            message: format!(
                "{what}: {} answered {status}: {}",
                strip_query(url),
                detail.trim()
            ),
        }
    }

    fn auth_header(&self, scope: &str) -> Option<String> {
        match &*self.challenge.lock().unwrap() {
            Some(Challenge::Basic) => self.credentials.as_ref().map(Credentials::basic),
            Some(Challenge::Bearer { .. }) => self
                .tokens
                .lock()
                .unwrap()
                .get(scope)
                .map(|t| format!("Bearer {t}")),
            None => None,
        }
    }

    /// Gets a token for `scope` from the realm the registry named.
    fn fetch_token(&self, scope: &str, realm: &str, service: Option<&str>) -> Result<()> {
        let mut request = self.http.get(realm);
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for part in scope.split(' ') {
            query.push(("scope", part));
        }
        request = request.query(&query);
        // Credentials go to a token server only over TLS (or on loopback).
        let safe = reqwest::Url::parse(realm).is_ok_and(|u| {
            u.scheme() == "https"
                || matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        });
        if let (Some(c), true) = (&self.credentials, safe) {
            request = request.header(AUTHORIZATION, c.basic());
        }
        let response = request.send().map_err(|e| Error::Registry {
            message: format!("getting a token from {realm}: {}", without_url(&e)),
        })?;
        if !response.status().is_success() {
            return Err(self.error("getting a token", realm, response));
        }
        let body: serde_json::Value = response.json().map_err(|e| Error::Registry {
            message: format!("token from {realm}: {e}"),
        })?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| Error::Registry {
                message: format!("the token server {realm} answered without a token"),
            })?;
        self.tokens
            .lock()
            .unwrap()
            .insert(scope.to_string(), token.to_string());
        Ok(())
    }

    /// Sends a request built by `make` (called again for each attempt),
    /// authenticating as the registry asks and retrying server errors and
    /// dropped connections with backoff.
    fn send(&self, scope: &str, what: &str, make: &dyn Fn() -> RequestBuilder) -> Result<Response> {
        let mut authenticated_once = false;
        let mut attempt = 0;
        let mut timeouts = 0;
        loop {
            let request = make().build().map_err(|e| Error::Registry {
                message: format!("{what}: {}", without_url(&e)),
            })?;
            let request = self.authorize(request, scope);
            match self.http.execute(request) {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    let header = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_string);
                    if authenticated_once {
                        let hint = if self.credentials.is_some() {
                            "the credentials were refused"
                        } else {
                            "it needs credentials (--username/--password, CLI_CLOUD_USERNAME/CLI_CLOUD_PASSWORD, or ~/.docker/config.json)"
                        };
                        return Err(Error::Registry {
                            message: format!(
                                "{what}: {} answered 401 Unauthorized: {hint}",
                                self.host
                            ),
                        });
                    }
                    authenticated_once = true;
                    match header.as_deref().and_then(challenge) {
                        Some(Challenge::Basic) => {
                            if self.credentials.is_none() {
                                return Err(Error::Registry {
                                    message: format!(
                                        "{what}: {} requires credentials (--username/--password, CLI_CLOUD_USERNAME/CLI_CLOUD_PASSWORD, or ~/.docker/config.json)",
                                        self.host
                                    ),
                                });
                            }
                            *self.challenge.lock().unwrap() = Some(Challenge::Basic);
                        }
                        Some(Challenge::Bearer { realm, service }) => {
                            // A token may have expired: get a fresh one.
                            self.fetch_token(scope, &realm, service.as_deref())?;
                            *self.challenge.lock().unwrap() =
                                Some(Challenge::Bearer { realm, service });
                        }
                        None => return Err(self.error(what, &self.host, response)),
                    }
                }
                Ok(response) if transient(response.status()) && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt);
                }
                Ok(response) => return Ok(response),
                // A server that does not answer in time is asked once more,
                // not five times: a hung registry fails the run in minutes.
                Err(e) if e.is_timeout() && timeouts == 0 => {
                    timeouts += 1;
                    attempt += 1;
                    backoff(attempt);
                }
                Err(e)
                    if attempt + 1 < ATTEMPTS
                        && !e.is_timeout()
                        && (e.is_connect() || e.is_request() || e.is_body()) =>
                {
                    attempt += 1;
                    backoff(attempt);
                }
                Err(e) if e.is_timeout() => {
                    return Err(Error::Registry {
                        message: format!(
                            "{what}: {} did not answer in time, twice (STRATA_REGISTRY_TIMEOUT sets the limit per request)",
                            self.host
                        ),
                    });
                }
                Err(e) => {
                    return Err(Error::Registry {
                        message: format!(
                            "{what}: {} is unreachable: {}",
                            self.host,
                            without_url(&e)
                        ),
                    });
                }
            }
        }
    }

    /// Whether the repository has the blob of `size` bytes. A yes must be
    /// believable: a digest header, when sent, names this blob, and the
    /// length is the blob's (a server that says 200 to everything does not
    /// pass for a registry holding every blob).
    pub fn has_blob(&self, repo: &str, digest: &str, size: u64) -> Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let response = self.send(&pull(repo), "checking a blob", &|| self.http.head(&url))?;
        match response.status() {
            s if s.is_success() => {
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let digest_ok = header("docker-content-digest").is_none_or(|d| d == digest);
                let length_ok = header("content-length")
                    .and_then(|l| l.parse::<u64>().ok())
                    .is_some_and(|l| l == size);
                if digest_ok && length_ok {
                    Ok(true)
                } else {
                    Err(Error::Registry {
                        message: format!(
                            "checking a blob: {} answered for {digest} with another blob's length or digest; is {} a container registry?",
                            self.host, self.host
                        ),
                    })
                }
            }
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.error("checking a blob", &url, response)),
        }
    }

    /// Asks the registry to mount a blob from another repository of its own.
    pub fn mount(&self, repo: &str, digest: &str, from: &str) -> Result<Mount> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let scope = format!("{} {}", push(repo), pull(from));
        let response = self.send(&scope, "mounting a blob", &|| {
            self.http
                .post(&url)
                .query(&[("mount", digest), ("from", from)])
                .header(CONTENT_LENGTH, 0)
        })?;
        match response.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Upload(self.location(&response)?)),
            _ => Err(self.error("mounting a blob", &url, response)),
        }
    }

    fn location(&self, response: &Response) -> Result<String> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| Error::Registry {
                message: format!("{} answered an upload without a Location", self.host),
            })?;
        let url = self.url(location);
        if self.base.starts_with("https://") && url.starts_with("http://") {
            return Err(Error::Registry {
                message: format!(
                    "{} sent an upload to plain HTTP; refusing to send data without TLS",
                    self.host
                ),
            });
        }
        Ok(url)
    }

    fn start_upload(&self, repo: &str) -> Result<String> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let response = self.send(&push(repo), "starting an upload", &|| {
            self.http.post(&url).header(CONTENT_LENGTH, 0)
        })?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.error("starting an upload", &url, response));
        }
        self.location(&response)
    }

    /// Uploads the file at `path` as blob `digest` of `size` bytes; `session`
    /// is an upload already open (from a mount that did not happen).
    ///
    /// An upload that fails for good is checked once more: a blob the
    /// registry holds after all (another pusher, a finish whose answer was
    /// lost) is done; otherwise the upload starts over in a new session.
    pub fn push_blob(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        path: &Path,
        session: Option<String>,
    ) -> Result<()> {
        match self.upload(repo, digest, size, path, session) {
            Ok(()) => Ok(()),
            Err(_) if self.has_blob(repo, digest, size).unwrap_or(false) => Ok(()),
            Err(_) => self.upload(repo, digest, size, path, None),
        }
    }

    fn upload(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        path: &Path,
        session: Option<String>,
    ) -> Result<()> {
        let mut location = match session {
            Some(s) => s,
            None => self.start_upload(repo)?,
        };
        if size <= MONOLITHIC_LIMIT {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let url = with_digest(&location, digest);
            let response = self.send(&push(repo), "uploading a blob", &|| {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, bytes.len())
                    .body(bytes.clone())
            })?;
            if response.status() != StatusCode::CREATED {
                return Err(self.error("uploading a blob", &url, response));
            }
            self.uploaded.fetch_add(size, Ordering::Relaxed);
            return Ok(());
        }
        let mut offset = 0u64;
        let mut failures = 0;
        while offset < size {
            let end = (offset + CHUNK).min(size);
            let mut chunk = vec![0u8; (end - offset) as usize];
            let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut chunk))
                .map_err(|e| Error::io(path, e))?;
            let request = self
                .http
                .patch(&location)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, format!("{offset}-{}", end - 1))
                .header(CONTENT_LENGTH, chunk.len())
                .body(chunk)
                .build()
                .map_err(|e| Error::Registry {
                    message: format!("uploading a chunk: {}", without_url(&e)),
                })?;
            let sent = self.http.execute(self.authorize(request, &push(repo)));
            match sent {
                Ok(r) if r.status() == StatusCode::ACCEPTED => {
                    location = self.location(&r)?;
                    self.uploaded.fetch_add(end - offset, Ordering::Relaxed);
                    offset = end;
                    failures = 0;
                }
                other => {
                    // A dropped connection or a server error: ask where the
                    // upload stands and go on from there.
                    failures += 1;
                    if failures >= ATTEMPTS {
                        return match other {
                            Ok(r) => Err(self.error("uploading a chunk", &location, r)),
                            Err(e) => Err(Error::Registry {
                                message: format!(
                                    "uploading a chunk to {}: {}",
                                    self.host,
                                    without_url(&e)
                                ),
                            }),
                        };
                    }
                    backoff(failures);
                    match self.upload_offset(repo, &location)? {
                        Some((next, at)) => {
                            offset = next;
                            location = at;
                        }
                        None => {
                            location = self.start_upload(repo)?;
                            offset = 0;
                        }
                    }
                }
            }
        }
        let url = with_digest(&location, digest);
        let response = self.send(&push(repo), "finishing an upload", &|| {
            self.http.put(&url).header(CONTENT_LENGTH, 0)
        })?;
        if response.status() != StatusCode::CREATED {
            return Err(self.error("finishing an upload", &url, response));
        }
        Ok(())
    }

    /// Where an upload stands: the next offset and the session's location,
    /// or `None` when the session is gone.
    fn upload_offset(&self, repo: &str, location: &str) -> Result<Option<(u64, String)>> {
        let response = self.send(&push(repo), "checking an upload", &|| {
            self.http.get(location)
        })?;
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::ACCEPTED => {
                // `Range: 0-<last byte received>`; the distribution registry
                // also says `0-0` when it has received nothing, so `0-0`
                // means start again (a one-byte blob never goes in chunks).
                let next = response
                    .headers()
                    .get(RANGE)
                    .and_then(|r| r.to_str().ok())
                    .and_then(|r| r.rsplit('-').next())
                    .and_then(|end| end.parse::<u64>().ok())
                    .map_or(0, |end| if end == 0 { 0 } else { end + 1 });
                let at = self
                    .location(&response)
                    .unwrap_or_else(|_| location.to_string());
                Ok(Some((next, at)))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.error("checking an upload", location, response)),
        }
    }

    /// Downloads blob `digest` into `dest` (atomically), checking its digest.
    pub fn get_blob(&self, repo: &str, digest: &str, dest: &Path) -> Result<u64> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let mut response = self.send(&pull(repo), "downloading a blob", &|| self.http.get(&url))?;
        if !response.status().is_success() {
            return Err(self.error("downloading a blob", &url, response));
        }
        let tmp = strata_engine::TempName::beside(dest);
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut writer = HashingWriter::new(std::io::BufWriter::new(file));
        let copied = std::io::copy(&mut response, &mut writer);
        let (mut inner, got, size) = writer.finish();
        let flushed = inner.flush();
        if let Err(e) = copied.and(flushed) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Registry {
                message: format!("downloading {digest} from {}: {e}", self.host),
            });
        }
        if got != digest {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Registry {
                message: format!(
                    "{} sent a blob whose digest is {got}, not {digest}",
                    self.host
                ),
            });
        }
        std::fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))?;
        Ok(size)
    }

    /// A manifest (or index) and its media type.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<(Vec<u8>, String)> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let response = self.send(&pull(repo), "reading a manifest", &|| {
            self.http
                .get(&url)
                .header(reqwest::header::ACCEPT, MANIFEST_TYPES.join(", "))
        })?;
        if !response.status().is_success() {
            return Err(self.error(&format!("reading {repo}:{reference}"), &url, response));
        }
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .to_string();
        let bytes = response.bytes().map_err(|e| Error::Registry {
            message: format!("reading {repo}:{reference} from {}: {e}", self.host),
        })?;
        Ok((bytes.to_vec(), media_type))
    }

    /// The digest of the manifest `reference` (a tag) names, as the
    /// registry says in `Docker-Content-Digest`; `None` when there is none.
    /// A registry that does not say is taken at its word that the tag
    /// exists (the digest returned is `""`).
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Result<Option<String>> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let response = self.send(&pull(repo), "checking a tag", &|| {
            self.http
                .head(&url)
                .header(reqwest::header::ACCEPT, MANIFEST_TYPES.join(", "))
        })?;
        if !response.status().is_success() {
            return Ok(None);
        }
        Ok(Some(
            response
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        ))
    }

    /// Puts a manifest under `reference` (a tag or its digest).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<()> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let response = self.send(&push(repo), "putting a manifest", &|| {
            self.http
                .put(&url)
                .header(CONTENT_TYPE, media_type)
                .body(bytes.to_vec())
        })?;
        if !response.status().is_success() {
            return Err(self.error(&format!("tagging {repo}:{reference}"), &url, response));
        }
        // The registry says what it stored: it must be this manifest.
        let ours = crate::oci::layout::sha256_digest(bytes);
        let theirs = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok());
        let confirmed = match theirs {
            Some(d) => d == ours,
            None => response.status() == StatusCode::CREATED,
        };
        if !confirmed {
            return Err(Error::Registry {
                message: format!(
                    "tagging {repo}:{reference}: {} answered {} without confirming manifest {ours}; is it a container registry?",
                    self.host,
                    response.status()
                ),
            });
        }
        Ok(())
    }
}

fn pull(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// How long one request may take: `STRATA_REGISTRY_TIMEOUT` seconds, else
/// 120 (a 16 MiB chunk at 140 KB/s).
fn request_timeout() -> Duration {
    std::env::var("STRATA_REGISTRY_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(120))
}

fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(100 * 2u64.pow(attempt.min(6))));
}

fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={}", digest.replace(':', "%3A"))
}

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// An HTTP error's message without the URL (which may carry upload state).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.without_url_ref().to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            text = text.replace(url.as_str(), strip_query(url.as_str()));
        }
        text
    }
}
