//! The deployment trigger: a JSON request per store to the console (with
//! basic auth, an idempotency key, and retries on server errors), or, with
//! no console, a record in `.out/<store>/deployment.json`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_engine::write_atomic;

use crate::error::{Error, Result};
use crate::oci::auth::Credentials;
use crate::oci::layout::{canonical_json, sha256_digest};

/// What is asked of the console for one store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRequest {
    /// The store id.
    pub store: String,
    /// The project.
    pub project_name: String,
    /// The region.
    pub cloud_region: Option<String>,
    /// `nextjs` or `nuxt`.
    pub framework: Option<String>,
    /// The commit SHA.
    pub commit: String,
    /// Each app's image, as `repository@sha256:…`.
    pub images: BTreeMap<String, String>,
}

impl DeploymentRequest {
    /// A new key for this request: retries of it share it (they are not a
    /// second deployment), including a rerun after a crash that may have
    /// sent it (the deployer keeps it as a pending intent until the
    /// console answers); a later deliberate deployment of the same images
    /// (a rollback, `--force`) gets a new one.
    pub fn idempotency_key(&self) -> String {
        let value = serde_json::to_value(self).expect("a request serializes");
        let mut bytes = canonical_json(&value);
        bytes.extend_from_slice(run_nonce().as_bytes());
        sha256_digest(&bytes)
    }
}

/// A value unique to this process run.
fn run_nonce() -> &'static str {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{}-{now}", std::process::id())
    })
}

/// Sends the request to the console at `url` with the idempotency `key`
/// (retries of one deployment share it, so the console counts them once);
/// returns what it answered.
pub fn trigger(
    url: &str,
    credentials: Option<&Credentials>,
    request: &DeploymentRequest,
    key: &str,
) -> Result<String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::Registry {
            message: format!("making an HTTP client: {e}"),
        })?;
    let body = serde_json::to_vec(request).expect("a request serializes");
    let mut attempt = 0u32;
    loop {
        let mut http = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", key)
            .body(body.clone());
        if let Some(c) = credentials {
            http = http.header(reqwest::header::AUTHORIZATION, c.basic());
        }
        match http.send() {
            Ok(response) if response.status().is_success() => {
                return Ok(response.text().unwrap_or_default());
            }
            Ok(response) if response.status().is_server_error() && attempt < 4 => {}
            // Still failing: the console may have acted on it (a gateway
            // that timed out after forwarding). The outcome is unknown, not
            // a refusal: the pending intent stays, and a rerun resends it
            // under the same key.
            Ok(response)
                if response.status().is_server_error()
                    || matches!(response.status().as_u16(), 408 | 409 | 425 | 429) =>
            {
                return Err(Error::Registry {
                    message: format!(
                        "the console answered {} to the deployment of {}; it may or may not have happened: run again to resend it under the same idempotency key",
                        response.status(),
                        request.store
                    ),
                });
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| {
                        v.get("message")
                            .and_then(|m| m.as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or(text);
                return Err(Error::ConsoleRefused {
                    message: format!(
                        "the console refused the deployment of {} ({status}): {}",
                        request.store,
                        message.trim()
                    ),
                });
            }
            Err(_) if attempt < 4 => {}
            Err(e) => {
                return Err(Error::Registry {
                    message: format!("the console is unreachable: {}", e.without_url()),
                });
            }
        }
        attempt += 1;
        std::thread::sleep(Duration::from_millis(200 * 2u64.pow(attempt)));
    }
}

/// Records the deployment in `.out/<store>/deployment.json` (no console).
pub fn record(store_dir: &Path, request: &DeploymentRequest) -> Result<()> {
    std::fs::create_dir_all(store_dir).map_err(|e| Error::io(store_dir, e))?;
    let mut text = serde_json::to_vec_pretty(request).expect("a request serializes");
    text.push(b'\n');
    write_atomic(&store_dir.join("deployment.json"), &text, false)?;
    Ok(())
}
