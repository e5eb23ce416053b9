//! A client of the Bazel Remote Execution API v2 (REAPI): the content
//! addressable storage (CAS), the action cache and remote execution, over
//! gRPC (`grpc://`, or `grpcs://` with TLS). It knows digests, blobs,
//! actions and trees, nothing of what they build.
//!
//! The rest of strata is synchronous: the client owns a small tokio runtime
//! and every call blocks on it. Each call has a timeout and is retried with
//! backoff when the server is unavailable or overloaded; a server that
//! answers wrongly (a blob that does not hash to its digest, a capability it
//! lacks) is an error naming it, never a hang.

pub mod inputs;
pub mod tree;

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::{
    QueryWriteStatusRequest, ReadRequest, WriteRequest, byte_stream_client::ByteStreamClient,
};
use bazel_remote_apis::google::longrunning::{Operation, operation};
use prost::Message as _;
use re::action_cache_client::ActionCacheClient;
use re::capabilities_client::CapabilitiesClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;
use re::execution_client::ExecutionClient;
use sha2::{Digest as _, Sha256};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use crate::atomic::TempName;
use crate::error::{Error, Result};

/// A point in time, as REAPI metadata gives it.
pub type Timestamp = bazel_remote_apis::google::protobuf::Timestamp;

/// Whether an execution's status says the server lacks some of the
/// action's inputs (`FAILED_PRECONDITION`): they are to be sent again.
pub fn lacks_inputs(status: &bazel_remote_apis::google::rpc::Status) -> bool {
    status.code == Code::FailedPrecondition as i32
}

/// A blob's REAPI digest: its SHA-256 (lowercase hex) and size.
pub type Digest = re::Digest;

/// The digest of `bytes`.
pub fn digest_of(bytes: &[u8]) -> Digest {
    Digest {
        hash: format!("{:x}", Sha256::digest(bytes)),
        size_bytes: bytes.len() as i64,
    }
}

/// The digest of a message's canonical encoding, and that encoding.
pub fn message_digest<M: prost::Message>(message: &M) -> (Digest, Vec<u8>) {
    let bytes = message.encode_to_vec();
    (digest_of(&bytes), bytes)
}

/// `<hash>/<size>`, as digests are named in resource names and messages.
pub fn show(digest: &Digest) -> String {
    format!("{}/{}", digest.hash, digest.size_bytes)
}

/// Where a blob to upload comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// These bytes.
    Bytes(Vec<u8>),
    /// This file (read when it is sent).
    File(PathBuf),
}

/// A blob to upload.
#[derive(Clone, Debug)]
pub struct Blob {
    /// Its digest.
    pub digest: Digest,
    /// Its bytes.
    pub source: Source,
}

/// Headers for debug output: names only (values may be secrets).
pub struct Redacted<'a>(pub &'a [(String, String)]);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}: …")))
            .finish()
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("instance", &self.instance)
            .field("headers", &Redacted(&self.headers))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// How to reach a REAPI server.
#[derive(Clone)]
pub struct Options {
    /// The instance name (`--remote-instance`); empty for the default.
    pub instance: String,
    /// Headers sent with every call (`--remote-header name=value`); their
    /// values are never shown.
    pub headers: Vec<(String, String)>,
    /// The longest one call (other than an execution) may take.
    pub timeout: Duration,
    /// How many times a call the server could not take is tried again.
    pub retries: u32,
    /// Certificates (PEM) trusted for `grpcs://` beside the usual roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            instance: String::new(),
            headers: Vec::new(),
            timeout: Duration::from_secs(60),
            retries: 4,
            ca_pem: None,
        }
    }
}

/// What the server can do, as `GetCapabilities` said.
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// The largest total of a batch call's blobs.
    pub max_batch_bytes: usize,
    /// Whether it executes actions.
    pub exec_enabled: bool,
    /// Whether clients may write the action cache.
    pub ac_writable: bool,
}

/// A connection to one REAPI server.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    instance: String,
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    shown: String,
    timeout: Duration,
    retries: u32,
    capabilities: Capabilities,
    /// Bytes read from the server.
    pub downloaded: AtomicU64,
    /// Bytes sent to the server.
    pub uploaded: AtomicU64,
    /// Executions resumed with `WaitExecution` after a stream broke.
    pub resumed: AtomicU64,
}

/// The largest gRPC message strata reads (batch answers are kept under the
/// server's batch limit, which is under this).
const MAX_MESSAGE: usize = 64 << 20;
/// The batch limit when the server states none (gRPC's default message
/// size, less room for the envelope).
const DEFAULT_BATCH: usize = 4 << 20;
/// ByteStream chunk size.
const CHUNK: usize = 1 << 20;
/// How long an execution stream may say nothing before it is asked again.
const IDLE: Duration = Duration::from_secs(300);
/// What one blob adds to a batch message beside its bytes (its digest,
/// status and field tags), counted generously.
const PER_BLOB: usize = 160;

impl Client {
    /// Connects to `url` (`grpc://host:port` or `grpcs://host[:port]`) and
    /// checks its capabilities: SHA-256 digests and REAPI v2.
    pub fn connect(url: &str, options: Options) -> Result<Client> {
        let bad = |message: String| Error::Url { message };
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            bad(format!(
                "the address is not a URL ({e}); use grpc://host:port"
            ))
        })?;
        let tls = match parsed.scheme() {
            "grpc" => false,
            "grpcs" => true,
            other => {
                return Err(bad(format!(
                    "{other}:// is not a REAPI address; use grpc://host:port or grpcs://host:port"
                )));
            }
        };
        let host = parsed
            .host_str()
            .ok_or_else(|| bad("the address names no host; use grpc://host:port".into()))?
            .to_string();
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "a REAPI address holds no credentials; send them with --remote-header (e.g. authorization=Bearer …)"
                    .into(),
            ));
        }
        let port = parsed.port().unwrap_or(if tls { 443 } else { 80 });
        let shown = format!("{}://{host}:{port}", parsed.scheme());
        let mut headers = Vec::new();
        for (name, value) in &options.headers {
            let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| bad(format!("--remote-header: {name:?} is not a header name")))?;
            let mut value = AsciiMetadataValue::try_from(value.as_str()).map_err(|_| {
                bad(format!(
                    "--remote-header: the value of {name} is not printable ASCII"
                ))
            })?;
            value.set_sensitive(true);
            headers.push((key, value));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-reapi")
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        let scheme = if tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host}:{port}"))
            .map_err(|e| bad(format!("{shown}: {e}")))?
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if tls {
            let mut config = ClientTlsConfig::new()
                .with_webpki_roots()
                .domain_name(host.clone());
            if let Some(pem) = &options.ca_pem {
                config = config.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| bad(format!("{shown}: TLS: {e}")))?;
        }
        let channel = {
            let _guard = runtime.enter();
            endpoint.connect_lazy()
        };
        let mut client = Client {
            runtime,
            channel,
            instance: options.instance,
            headers,
            shown,
            timeout: options.timeout,
            retries: options.retries,
            capabilities: Capabilities {
                max_batch_bytes: DEFAULT_BATCH,
                exec_enabled: false,
                ac_writable: false,
            },
            downloaded: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
        };
        client.capabilities = client.check_capabilities()?;
        Ok(client)
    }

    /// The server's address (it holds no credentials).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// What the server said it can do.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn error(&self, what: &str, status: &Status) -> Error {
        Error::Remote {
            server: self.shown.clone(),
            message: format!("{what}: {}", describe(status)),
        }
    }

    fn wrong(&self, message: String) -> Error {
        Error::Remote {
            server: self.shown.clone(),
            message,
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        for (k, v) in &self.headers {
            request.metadata_mut().insert(k.clone(), v.clone());
        }
        request
    }

    /// Runs `call` until it succeeds, fails for good, or has been tried
    /// `retries + 1` times; each try is bounded by the timeout.
    fn retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        self.runtime.block_on(async {
            let mut wait = Duration::from_millis(100);
            let mut attempt = 0;
            loop {
                let outcome = match tokio::time::timeout(self.timeout, call()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Status::deadline_exceeded(format!(
                        "no answer in {}s",
                        self.timeout.as_secs()
                    ))),
                };
                match outcome {
                    Ok(value) => return Ok(value),
                    Err(status) if attempt < self.retries && transient(&status) => {
                        attempt += 1;
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    Err(status) => return Err(self.error(what, &status)),
                }
            }
        })
    }

    fn check_capabilities(&self) -> Result<Capabilities> {
        let channel = self.channel.clone();
        let answer = self.retry("GetCapabilities", || {
            let mut client = CapabilitiesClient::new(channel.clone());
            let request = self.request(re::GetCapabilitiesRequest {
                instance_name: self.instance.clone(),
            });
            async move { client.get_capabilities(request).await }
        })?;
        let caps = answer.into_inner();
        let high = caps
            .high_api_version
            .as_ref()
            .or(caps.deprecated_api_version.as_ref());
        let low = caps
            .low_api_version
            .as_ref()
            .or(caps.deprecated_api_version.as_ref());
        if let (Some(low), Some(high)) = (low, high)
            && !(low.major <= 2 && high.major >= 2)
        {
            return Err(self.wrong(format!(
                "speaks REAPI {}.{} to {}.{}, not v2",
                low.major, low.minor, high.major, high.minor
            )));
        }
        let cache = caps.cache_capabilities.unwrap_or_default();
        let sha256 = re::digest_function::Value::Sha256 as i32;
        if !cache.digest_functions.is_empty() && !cache.digest_functions.contains(&sha256) {
            return Err(self.wrong(
                "does not offer SHA-256 digests (its cache capabilities list other digest functions)"
                    .into(),
            ));
        }
        let stated = usize::try_from(cache.max_batch_total_size_bytes).unwrap_or(0);
        let max_batch_bytes = if stated == 0 {
            DEFAULT_BATCH
        } else {
            stated.min(DEFAULT_BATCH)
        };
        let exec = caps.execution_capabilities.unwrap_or_default();
        let exec_enabled = exec.exec_enabled
            && (exec.digest_function == sha256
                || exec.digest_function == 0
                || exec.digest_functions.contains(&sha256));
        Ok(Capabilities {
            max_batch_bytes,
            exec_enabled,
            ac_writable: cache
                .action_cache_update_capabilities
                .is_none_or(|c| c.update_enabled),
        })
    }

    fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn bytestream(&self) -> ByteStreamClient<Channel> {
        ByteStreamClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// Which of `digests` the server lacks.
    pub fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let mut missing = Vec::new();
        for chunk in digests.chunks(10_000) {
            let chunk: Vec<Digest> = chunk.iter().filter(|d| d.size_bytes > 0).cloned().collect();
            if chunk.is_empty() {
                continue;
            }
            let answer = self.retry("FindMissingBlobs", || {
                let mut cas = self.cas();
                let request = self.request(re::FindMissingBlobsRequest {
                    instance_name: self.instance.clone(),
                    blob_digests: chunk.clone(),
                    digest_function: re::digest_function::Value::Sha256 as i32,
                });
                async move { cas.find_missing_blobs(request).await }
            })?;
            missing.extend(answer.into_inner().missing_blob_digests);
        }
        Ok(missing)
    }

    /// Uploads `blobs` the server lacks (asked first): small ones in
    /// batches, large ones through ByteStream. Returns the bytes sent.
    pub fn upload_missing(&self, blobs: Vec<Blob>) -> Result<u64> {
        let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
        let missing = self.find_missing(&digests)?;
        self.upload(keep_missing(blobs, missing))
    }

    /// Uploads `blobs` (whether or not the server has them).
    pub fn upload(&self, blobs: Vec<Blob>) -> Result<u64> {
        let limit = self.capabilities.max_batch_bytes.saturating_sub(64 << 10);
        let mut sent = 0u64;
        let mut batch: Vec<(Digest, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0usize;
        for blob in blobs {
            let size = usize::try_from(blob.digest.size_bytes).unwrap_or(usize::MAX);
            if size == 0 {
                continue;
            }
            if size + PER_BLOB > limit {
                sent += self.write(&blob)?;
                continue;
            }
            let bytes = match blob.source {
                Source::Bytes(b) => b,
                Source::File(path) => std::fs::read(&path).map_err(|e| Error::io(&path, e))?,
            };
            if bytes.len() != size {
                return Err(Error::Changed {
                    what: format!("a blob to upload ({})", show(&blob.digest)),
                });
            }
            if batch_bytes + size + PER_BLOB > limit {
                sent += self.batch_update(std::mem::take(&mut batch))?;
                batch_bytes = 0;
            }
            batch_bytes += size + PER_BLOB;
            batch.push((blob.digest, bytes));
        }
        if !batch.is_empty() {
            sent += self.batch_update(batch)?;
        }
        self.uploaded.fetch_add(sent, Ordering::Relaxed);
        Ok(sent)
    }

    fn batch_update(&self, batch: Vec<(Digest, Vec<u8>)>) -> Result<u64> {
        let total: u64 = batch.iter().map(|(_, b)| b.len() as u64).sum();
        let requests: Vec<re::batch_update_blobs_request::Request> = batch
            .into_iter()
            .map(|(digest, data)| re::batch_update_blobs_request::Request {
                digest: Some(digest),
                data,
                compressor: 0,
            })
            .collect();
        let answer = self.retry("BatchUpdateBlobs", || {
            let mut cas = self.cas();
            let request = self.request(re::BatchUpdateBlobsRequest {
                instance_name: self.instance.clone(),
                requests: requests.clone(),
                digest_function: re::digest_function::Value::Sha256 as i32,
            });
            async move { cas.batch_update_blobs(request).await }
        })?;
        for response in answer.into_inner().responses {
            if let Some(status) = response.status
                && status.code != 0
            {
                return Err(self.wrong(format!(
                    "BatchUpdateBlobs: blob {} refused: {}",
                    response.digest.as_ref().map(show).unwrap_or_default(),
                    rpc_status(&status)
                )));
            }
        }
        Ok(total)
    }

    /// Sends one blob through ByteStream `Write`, resuming from what the
    /// server committed when the stream breaks.
    fn write(&self, blob: &Blob) -> Result<u64> {
        let resource = |id: &str| {
            format!(
                "{}uploads/{id}/blobs/{}/{}",
                prefix(&self.instance),
                blob.digest.hash,
                blob.digest.size_bytes
            )
        };
        let mut name = resource(&upload_id());
        let size = blob.digest.size_bytes;
        // At least 1 MiB/s beside the usual timeout: a slow link is not
        // a dead one.
        let limit = self.timeout + Duration::from_secs((size as u64) >> 20);
        let mut offset = 0i64;
        let mut attempt = 0;
        loop {
            let chunks = Chunks::new(&blob.source, offset, size, &name)?;
            let mut bytestream = self.bytestream();
            let request = self.request(tokio_stream::iter(chunks));
            let outcome = self
                .runtime
                .block_on(async { tokio::time::timeout(limit, bytestream.write(request)).await });
            let status = match outcome {
                Ok(Ok(answer)) => {
                    // A file that changed while it was read is ours to
                    // report, not the server's.
                    self.check_source(blob)?;
                    let committed = answer.into_inner().committed_size;
                    // A server that already held the blob may answer early
                    // with its full size.
                    if committed != size && committed != -1 {
                        return Err(self.wrong(format!(
                            "ByteStream.Write of {} committed {committed} bytes",
                            show(&blob.digest)
                        )));
                    }
                    return Ok((size - offset) as u64);
                }
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded("no answer"),
            };
            self.check_source(blob)?;
            if attempt >= self.retries || !transient(&status) {
                return Err(self.error(&format!("uploading {}", show(&blob.digest)), &status));
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(100 << attempt.min(5)));
            // Resume where the server got to, when it can say; from the
            // start under a new name otherwise.
            let status = self
                .retry("QueryWriteStatus", || {
                    let mut bytestream = self.bytestream();
                    let request = self.request(QueryWriteStatusRequest {
                        resource_name: name.clone(),
                    });
                    async move { bytestream.query_write_status(request).await }
                })
                .map(|a| a.into_inner());
            offset = match status {
                Ok(a) if a.complete => size,
                Ok(a) => a.committed_size.clamp(0, size),
                Err(_) => 0,
            };
            if offset == size {
                return Ok(0);
            }
            if offset == 0 {
                name = resource(&upload_id());
            }
        }
    }

    /// A file that changed while it was sent is an error, not a blob.
    fn check_source(&self, blob: &Blob) -> Result<()> {
        if let Source::File(path) = &blob.source {
            let size = std::fs::metadata(path)
                .map_err(|e| Error::io(path, e))?
                .len();
            if size as i64 != blob.digest.size_bytes {
                return Err(Error::Changed {
                    what: path.display().to_string(),
                });
            }
        }
        Ok(())
    }

    /// The bytes of `digests` (small ones batched, large ones streamed),
    /// each checked against its digest.
    pub fn read_blobs(&self, digests: &[Digest]) -> Result<HashMap<String, Vec<u8>>> {
        let limit = self.capabilities.max_batch_bytes.saturating_sub(64 << 10);
        let mut out = HashMap::new();
        let mut batch: Vec<Digest> = Vec::new();
        let mut asked = std::collections::HashSet::new();
        let mut batch_bytes = 0usize;
        for digest in digests {
            let size = usize::try_from(digest.size_bytes).unwrap_or(usize::MAX);
            if size == 0 {
                out.insert(digest.hash.clone(), Vec::new());
                continue;
            }
            if !asked.insert(digest.hash.clone()) {
                continue;
            }
            if size + PER_BLOB > limit {
                let mut bytes = Vec::with_capacity(size);
                self.read_into(digest, &mut bytes)?;
                out.insert(digest.hash.clone(), bytes);
                continue;
            }
            if batch_bytes + size + PER_BLOB > limit {
                self.batch_read(std::mem::take(&mut batch), &mut out)?;
                batch_bytes = 0;
            }
            batch_bytes += size + PER_BLOB;
            batch.push(digest.clone());
        }
        if !batch.is_empty() {
            self.batch_read(batch, &mut out)?;
        }
        Ok(out)
    }

    /// One blob's bytes, or `None` when the server does not hold it.
    pub fn read_blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        match self.read_blobs(std::slice::from_ref(digest)) {
            Ok(mut found) => Ok(found.remove(&digest.hash)),
            Err(Error::RemoteMissing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn batch_read(&self, batch: Vec<Digest>, out: &mut HashMap<String, Vec<u8>>) -> Result<()> {
        let answer = self.retry("BatchReadBlobs", || {
            let mut cas = self.cas();
            let request = self.request(re::BatchReadBlobsRequest {
                instance_name: self.instance.clone(),
                digests: batch.clone(),
                acceptable_compressors: Vec::new(),
                digest_function: re::digest_function::Value::Sha256 as i32,
            });
            async move { cas.batch_read_blobs(request).await }
        })?;
        for response in answer.into_inner().responses {
            let digest = response.digest.unwrap_or_default();
            if let Some(status) = &response.status
                && status.code != 0
            {
                if status.code == Code::NotFound as i32 {
                    return Err(Error::RemoteMissing {
                        server: self.shown.clone(),
                        digest: show(&digest),
                    });
                }
                return Err(self.wrong(format!(
                    "BatchReadBlobs: {}: {}",
                    show(&digest),
                    rpc_status(status)
                )));
            }
            if !batch.iter().any(|d| d.hash == digest.hash) || out.contains_key(&digest.hash) {
                return Err(self.wrong(format!(
                    "BatchReadBlobs answered with {}, which was not asked for",
                    show(&digest)
                )));
            }
            self.verify(&digest, &response.data)?;
            self.downloaded
                .fetch_add(response.data.len() as u64, Ordering::Relaxed);
            out.insert(digest.hash, response.data);
        }
        if let Some(lost) = batch.iter().find(|d| !out.contains_key(&d.hash)) {
            return Err(self.wrong(format!("BatchReadBlobs did not answer for {}", show(lost))));
        }
        Ok(())
    }

    fn verify(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let got = digest_of(bytes);
        if got.hash != digest.hash || got.size_bytes != digest.size_bytes {
            return Err(Error::RemoteCorrupt {
                server: self.shown.clone(),
                digest: show(digest),
                got: show(&got),
            });
        }
        Ok(())
    }

    /// Streams blob `digest` into `sink`, resuming after a broken stream;
    /// checks the bytes against the digest.
    fn read_into(&self, digest: &Digest, sink: &mut dyn Write) -> Result<()> {
        let resource = format!(
            "{}blobs/{}/{}",
            prefix(&self.instance),
            digest.hash,
            digest.size_bytes
        );
        let mut hasher = Sha256::new();
        let mut offset = 0i64;
        let mut attempt = 0;
        loop {
            let mut bytestream = self.bytestream();
            let request = self.request(ReadRequest {
                resource_name: resource.clone(),
                read_offset: offset,
                read_limit: 0,
            });
            let outcome: std::result::Result<(), Status> = self.runtime.block_on(async {
                let mut stream = tokio::time::timeout(self.timeout, bytestream.read(request))
                    .await
                    .map_err(|_| Status::deadline_exceeded("no answer"))??
                    .into_inner();
                loop {
                    let next = tokio::time::timeout(self.timeout, stream.message())
                        .await
                        .map_err(|_| Status::deadline_exceeded("the stream stalled"))??;
                    let Some(chunk) = next else {
                        return Ok(());
                    };
                    if offset + chunk.data.len() as i64 > digest.size_bytes {
                        return Err(Status::out_of_range("more bytes than the digest's size"));
                    }
                    hasher.update(&chunk.data);
                    sink.write_all(&chunk.data)
                        .map_err(|e| Status::internal(e.to_string()))?;
                    offset += chunk.data.len() as i64;
                    self.downloaded
                        .fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
                }
            });
            match outcome {
                Ok(()) if offset == digest.size_bytes => break,
                Ok(()) => {
                    return Err(self.wrong(format!(
                        "ByteStream.Read of {} ended after {offset} bytes",
                        show(digest)
                    )));
                }
                Err(status) if status.code() == Code::NotFound => {
                    return Err(Error::RemoteMissing {
                        server: self.shown.clone(),
                        digest: show(digest),
                    });
                }
                Err(status) if status.code() == Code::OutOfRange => {
                    return Err(self.wrong(format!(
                        "ByteStream.Read of {}: {}",
                        show(digest),
                        status.message()
                    )));
                }
                Err(status) if attempt < self.retries && transient(&status) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100 << attempt.min(5)));
                }
                Err(status) => {
                    return Err(self.error(&format!("reading {}", show(digest)), &status));
                }
            }
        }
        let got = format!("{:x}", hasher.finalize());
        if got != digest.hash {
            return Err(Error::RemoteCorrupt {
                server: self.shown.clone(),
                digest: show(digest),
                got: format!("sha256 {got}"),
            });
        }
        Ok(())
    }

    /// Downloads blob `digest` into the file `dest` (through a temporary
    /// file beside it, renamed once checked).
    pub fn download(&self, digest: &Digest, dest: &Path) -> Result<()> {
        let tmp = TempName::beside(dest);
        let result = (|| {
            let size = usize::try_from(digest.size_bytes).unwrap_or(usize::MAX);
            if size + PER_BLOB <= self.capabilities.max_batch_bytes.saturating_sub(64 << 10) {
                let bytes = self
                    .read_blob(digest)?
                    .ok_or_else(|| Error::RemoteMissing {
                        server: self.shown.clone(),
                        digest: show(digest),
                    })?;
                std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
            } else {
                let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
                let mut writer = std::io::BufWriter::with_capacity(CHUNK, file);
                self.read_into(digest, &mut writer)?;
                writer.flush().map_err(|e| Error::io(&tmp, e))?;
            }
            std::fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Downloads each blob of `wanted` into its path: the small ones a
    /// batch at a time, the large ones streamed; each checked. Stops at the
    /// first error (a blob the server lacks is [`Error::RemoteMissing`]);
    /// the paths already written are the caller's to remove.
    pub fn download_many(&self, wanted: &[(Digest, PathBuf)]) -> Result<()> {
        let limit = self.capabilities.max_batch_bytes.saturating_sub(64 << 10);
        let mut batch: Vec<&(Digest, PathBuf)> = Vec::new();
        let mut batch_bytes = 0usize;
        for item in wanted {
            let size = usize::try_from(item.0.size_bytes).unwrap_or(usize::MAX);
            if size == 0 {
                std::fs::write(&item.1, b"").map_err(|e| Error::io(&item.1, e))?;
                continue;
            }
            if size + PER_BLOB > limit {
                self.download(&item.0, &item.1)?;
                continue;
            }
            if batch_bytes + size + PER_BLOB > limit {
                self.write_batch(&batch)?;
                batch.clear();
                batch_bytes = 0;
            }
            batch_bytes += size + PER_BLOB;
            batch.push(item);
        }
        self.write_batch(&batch)
    }

    fn write_batch(&self, batch: &[&(Digest, PathBuf)]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut asked = std::collections::HashSet::new();
        let digests: Vec<Digest> = batch
            .iter()
            .filter(|(d, _)| asked.insert(d.hash.clone()))
            .map(|(d, _)| d.clone())
            .collect();
        let mut got = HashMap::new();
        self.batch_read(digests, &mut got)?;
        for (digest, path) in batch {
            let bytes = &got[&digest.hash];
            std::fs::write(path, bytes).map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    /// The action cache's result for `action`, if it holds one.
    pub fn get_action_result(&self, action: &Digest) -> Result<Option<re::ActionResult>> {
        let channel = self.channel.clone();
        let outcome = self.retry("GetActionResult", || {
            let mut ac =
                ActionCacheClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE);
            let request = self.request(re::GetActionResultRequest {
                instance_name: self.instance.clone(),
                action_digest: Some(action.clone()),
                inline_stdout: false,
                inline_stderr: false,
                inline_output_files: Vec::new(),
                digest_function: re::digest_function::Value::Sha256 as i32,
            });
            async move {
                match ac.get_action_result(request).await {
                    Ok(answer) => Ok(Some(answer.into_inner())),
                    Err(status) if status.code() == Code::NotFound => Ok(None),
                    Err(status) => Err(status),
                }
            }
        })?;
        if let Some(result) = &outcome {
            self.downloaded
                .fetch_add(result.encoded_len() as u64, Ordering::Relaxed);
        }
        Ok(outcome)
    }

    /// Stores `result` as the action cache's entry for `action`.
    pub fn update_action_result(&self, action: &Digest, result: &re::ActionResult) -> Result<()> {
        let channel = self.channel.clone();
        self.retry("UpdateActionResult", || {
            let mut ac =
                ActionCacheClient::new(channel.clone()).max_encoding_message_size(MAX_MESSAGE);
            let request = self.request(re::UpdateActionResultRequest {
                instance_name: self.instance.clone(),
                action_digest: Some(action.clone()),
                action_result: Some(result.clone()),
                results_cache_policy: None,
                digest_function: re::digest_function::Value::Sha256 as i32,
            });
            async move { ac.update_action_result(request).await }
        })?;
        self.uploaded
            .fetch_add(result.encoded_len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Executes `action` (its blobs already uploaded) and waits for its
    /// response. A stream that breaks is resumed with `WaitExecution` once
    /// the server has named the operation (before that, `Execute` is sent
    /// again: servers merge equal actions in flight); an operation the
    /// server forgot is submitted again. `deadline` bounds the whole
    /// execution; breaks are retried without end while streams make
    /// progress, and `retries` times in a row otherwise.
    ///
    /// The response may carry a status that is not OK (the action timed
    /// out, its inputs are missing): the caller reads it, with the result
    /// the server gave beside it (the action's logs).
    pub fn execute(
        &self,
        action: &Digest,
        skip_cache: bool,
        deadline: Duration,
    ) -> Result<re::ExecuteResponse> {
        enum Step {
            Done(Operation),
            Ended,
            Failed(Status),
            TimedOut,
            /// The server said nothing for [`IDLE`]: ask again.
            Idle,
        }
        let started = std::time::Instant::now();
        let mut name: Option<String> = None;
        let mut failures = 0;
        let too_long = || {
            self.wrong(format!(
                "the execution of action {} took longer than {}s",
                show(action),
                deadline.as_secs()
            ))
        };
        loop {
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(too_long());
            }
            let mut execution =
                ExecutionClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE);
            if name.is_some() {
                self.resumed.fetch_add(1, Ordering::Relaxed);
            }
            // The operation's name, kept as soon as the server gives it, and
            // whether the stream said anything at all.
            let mut seen: Option<String> = None;
            let mut progress = false;
            let opened = std::time::Instant::now();
            let step = self.runtime.block_on(async {
                let call = async {
                    let stream = match &name {
                        Some(n) => {
                            let request =
                                self.request(re::WaitExecutionRequest { name: n.clone() });
                            execution.wait_execution(request).await
                        }
                        None => {
                            let request = self.request(re::ExecuteRequest {
                                instance_name: self.instance.clone(),
                                skip_cache_lookup: skip_cache,
                                action_digest: Some(action.clone()),
                                execution_policy: None,
                                results_cache_policy: None,
                                digest_function: re::digest_function::Value::Sha256 as i32,
                                inline_stdout: false,
                                inline_stderr: false,
                                inline_output_files: Vec::new(),
                            });
                            execution.execute(request).await
                        }
                    };
                    let mut stream = match stream {
                        Ok(s) => s.into_inner(),
                        Err(status) => return Step::Failed(status),
                    };
                    loop {
                        let Ok(next) = tokio::time::timeout(IDLE, stream.message()).await else {
                            return Step::Idle;
                        };
                        match next {
                            Ok(Some(op)) => {
                                progress = true;
                                if !op.name.is_empty() {
                                    seen = Some(op.name.clone());
                                }
                                if op.done {
                                    return Step::Done(op);
                                }
                            }
                            Ok(None) => return Step::Ended,
                            Err(status) => return Step::Failed(status),
                        }
                    }
                };
                tokio::time::timeout(left, call)
                    .await
                    .unwrap_or(Step::TimedOut)
            });
            if seen.is_some() {
                name = seen;
            }
            // A stream that stayed up a while and said something was no
            // failure: the count is of breaks in a row.
            if progress && opened.elapsed() >= Duration::from_secs(10) {
                failures = 0;
            }
            match step {
                Step::Done(op) => return self.finished(action, op),
                Step::TimedOut => return Err(too_long()),
                // A quiet server is asked again on a new stream (a stuck
                // one is then found by the breaks it gives, or the
                // deadline); this is not a break.
                Step::Idle => continue,
                // A problem the server found before it made an operation
                // (missing inputs): answered as the response's status.
                Step::Failed(status) if status.code() == Code::FailedPrecondition => {
                    return Ok(re::ExecuteResponse {
                        status: Some(bazel_remote_apis::google::rpc::Status {
                            code: Code::FailedPrecondition as i32,
                            message: status.message().to_string(),
                            details: Vec::new(),
                        }),
                        ..Default::default()
                    });
                }
                Step::Ended => failures += 1,
                Step::Failed(status) if status.code() == Code::NotFound && name.is_some() => {
                    // The server forgot the operation: submit it again (its
                    // action cache answers if it finished meanwhile).
                    name = None;
                    failures += 1;
                }
                // A stream cut off shows as one of these.
                Step::Failed(status)
                    if transient(&status)
                        || matches!(
                            status.code(),
                            Code::Internal | Code::Unknown | Code::Cancelled
                        ) =>
                {
                    failures += 1;
                    if failures > self.retries {
                        return Err(self.error("Execute", &status));
                    }
                }
                Step::Failed(status) => return Err(self.error("Execute", &status)),
            }
            if failures > self.retries {
                return Err(self.wrong(format!(
                    "the execution stream of action {} broke {failures} times in a row",
                    show(action)
                )));
            }
            std::thread::sleep(Duration::from_millis(100 << failures.min(5)));
        }
    }

    /// The text of a status an execution answered.
    pub fn status_text(status: &bazel_remote_apis::google::rpc::Status) -> String {
        rpc_status(status)
    }

    fn finished(&self, action: &Digest, op: Operation) -> Result<re::ExecuteResponse> {
        match op.result {
            Some(operation::Result::Response(any)) => {
                if !any
                    .type_url
                    .ends_with("build.bazel.remote.execution.v2.ExecuteResponse")
                {
                    return Err(self.wrong(format!(
                        "the execution of {} answered a {}, not an ExecuteResponse",
                        show(action),
                        any.type_url
                    )));
                }
                let response = re::ExecuteResponse::decode(any.value.as_slice()).map_err(|e| {
                    self.wrong(format!(
                        "the ExecuteResponse of {} is unreadable: {e}",
                        show(action)
                    ))
                })?;
                let ok = response.status.as_ref().is_none_or(|s| s.code == 0);
                if ok && response.result.is_none() {
                    return Err(
                        self.wrong(format!("the execution of {} gave no result", show(action)))
                    );
                }
                Ok(response)
            }
            // As an answer with that status, so the caller reads it in one
            // place.
            Some(operation::Result::Error(status)) => Ok(re::ExecuteResponse {
                status: Some(status),
                ..Default::default()
            }),
            None => Err(self.wrong(format!(
                "the execution of {} finished without a response",
                show(action)
            ))),
        }
    }
}

/// The blobs of `blobs` that are `missing`, once each.
pub fn keep_missing(blobs: Vec<Blob>, missing: Vec<Digest>) -> Vec<Blob> {
    let missing: std::collections::HashSet<String> = missing.into_iter().map(|d| d.hash).collect();
    let mut seen = std::collections::HashSet::new();
    blobs
        .into_iter()
        .filter(|b| missing.contains(&b.digest.hash) && seen.insert(b.digest.hash.clone()))
        .collect()
}

/// `<instance>/` or nothing, to start a ByteStream resource name.
fn prefix(instance: &str) -> String {
    if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    }
}

/// A fresh upload id, in the UUID form servers expect.
fn upload_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(
        &std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let hex = h.finalize().to_hex();
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// The write requests that send `source` from `offset` on, read a chunk at
/// a time as the stream is sent. A read that fails ends the stream without
/// `finish_write`, which the server answers with an error.
struct Chunks {
    file: Option<std::fs::File>,
    bytes: Option<std::sync::Arc<Vec<u8>>>,
    at: i64,
    size: i64,
    resource: String,
    first: bool,
}

impl Chunks {
    fn new(source: &Source, offset: i64, size: i64, resource: &str) -> Result<Chunks> {
        let (file, bytes) = match source {
            Source::Bytes(b) => {
                if b.len() as i64 != size {
                    return Err(Error::Changed {
                        what: format!("a blob to upload ({resource})"),
                    });
                }
                (None, Some(std::sync::Arc::new(b.clone())))
            }
            Source::File(path) => {
                let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset as u64))
                    .map_err(|e| Error::io(path, e))?;
                (Some(file), None)
            }
        };
        Ok(Chunks {
            file,
            bytes,
            at: offset,
            size,
            resource: resource.to_string(),
            first: true,
        })
    }
}

impl Iterator for Chunks {
    type Item = WriteRequest;

    fn next(&mut self) -> Option<WriteRequest> {
        if self.at >= self.size {
            return None;
        }
        let want = CHUNK.min((self.size - self.at) as usize);
        let data = match (&mut self.file, &self.bytes) {
            (Some(file), _) => {
                let mut data = vec![0u8; want];
                file.read_exact(&mut data).ok()?;
                data
            }
            (None, Some(bytes)) => bytes[self.at as usize..self.at as usize + want].to_vec(),
            (None, None) => return None,
        };
        let request = WriteRequest {
            resource_name: if self.first {
                self.resource.clone()
            } else {
                String::new()
            },
            write_offset: self.at,
            finish_write: self.at + want as i64 == self.size,
            data,
        };
        self.first = false;
        self.at += want as i64;
        Some(request)
    }
}

/// Whether a call that failed with `status` may succeed when tried again.
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::ResourceExhausted | Code::Aborted | Code::DeadlineExceeded
    ) || (status.code() == Code::Unknown && status.message().contains("connection"))
}

fn describe(status: &Status) -> String {
    let message = status.message();
    if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {message}", status.code())
    }
}

fn rpc_status(status: &bazel_remote_apis::google::rpc::Status) -> String {
    let code = Code::from_i32(status.code);
    if status.message.is_empty() {
        format!("{code:?}")
    } else {
        format!("{code:?}: {}", status.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_resume_at_the_offset_and_finish_once() {
        let bytes = vec![7u8; CHUNK * 2 + 5];
        let digest = digest_of(&bytes);
        let chunks: Vec<WriteRequest> = Chunks::new(
            &Source::Bytes(bytes.clone()),
            CHUNK as i64,
            digest.size_bytes,
            "r",
        )
        .unwrap()
        .collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].resource_name, "r");
        assert_eq!(chunks[0].write_offset, CHUNK as i64);
        assert_eq!(chunks[1].resource_name, "");
        assert_eq!(chunks[1].write_offset, 2 * CHUNK as i64);
        assert!(!chunks[0].finish_write && chunks[1].finish_write);
        assert!(Chunks::new(&Source::Bytes(bytes), 0, 3, "r").is_err());
        // From a file, read as it goes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let text: Vec<u8> = (0..CHUNK + 10).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &text).unwrap();
        let sent: Vec<u8> = Chunks::new(&Source::File(path), 3, text.len() as i64, "r")
            .unwrap()
            .flat_map(|c| c.data)
            .collect();
        assert_eq!(sent, text[3..]);
    }

    #[test]
    fn upload_ids_differ_and_look_like_uuids() {
        let (a, b) = (upload_id(), upload_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn a_wrong_scheme_or_credentials_are_refused_before_connecting() {
        for url in ["http://127.0.0.1:9", "grpc://user:pw@127.0.0.1:9"] {
            let err = Client::connect(url, Options::default()).err().unwrap();
            assert!(!err.to_string().contains("pw"), "{err}");
            assert!(matches!(err, Error::Url { .. }), "{err}");
        }
    }
}
