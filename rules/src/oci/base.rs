//! Base images: `scratch`, a local OCI layout (`oci-layout:PATH[:REF]`),
//! or a registry reference, resolved for a platform and pulled once into
//! the layout store (a resolved tag is remembered: pass `--pull` to look
//! again).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::auth::{Credentials, docker_config};
use super::image::BaseImage;
use super::layout::{Descriptor, Layout, sha256_digest};
use super::reference::Reference;
use super::registry::{ClientOptions, Registry};
use crate::error::{Error, Result};

/// The base image used when nothing else names one.
pub const DEFAULT_BASE: &str = "docker.io/library/node:24-alpine";

/// Clients of the registries a run talks to, made once per host.
pub struct Registries {
    target: Option<String>,
    target_credentials: Option<Credentials>,
    insecure: bool,
    ca_file: Option<PathBuf>,
    clients: Mutex<HashMap<String, Arc<Registry>>>,
}

impl Registries {
    /// Clients for a run whose target registry is `target` (with its
    /// credentials). `insecure` makes the target, and registries on a
    /// loopback address, plain HTTP.
    pub fn new(
        target: Option<String>,
        target_credentials: Option<Credentials>,
        insecure: bool,
        ca_file: Option<PathBuf>,
    ) -> Self {
        Registries {
            target,
            target_credentials,
            insecure,
            ca_file,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client of `host`.
    pub fn get(&self, host: &str) -> Result<Arc<Registry>> {
        let mut clients = self.clients.lock().unwrap();
        if let Some(c) = clients.get(host) {
            return Ok(c.clone());
        }
        let is_target = self.target.as_deref() == Some(host);
        let loopback =
            host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
        let credentials = if is_target {
            self.target_credentials
                .clone()
                .or_else(|| docker_config(host))
        } else {
            docker_config(host)
        };
        let client = Arc::new(Registry::new(
            host,
            ClientOptions {
                insecure: self.insecure && (is_target || loopback),
                credentials,
                ca_file: self.ca_file.clone(),
                timeout: None,
            },
        )?);
        clients.insert(host.to_string(), client.clone());
        Ok(client)
    }
}

const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Where blobs of a base come from while it is resolved.
enum Source<'a> {
    Layout(&'a Layout),
    Registry(&'a Registry, &'a str),
}

impl Source<'_> {
    fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String)> {
        match self {
            Source::Registry(r, repo) => r.get_manifest(repo, reference),
            Source::Layout(l) => {
                let bytes = l.read_blob(reference)?;
                let media = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| {
                        v.get("mediaType")
                            .and_then(|m| m.as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                Ok((bytes, media))
            }
        }
    }

    /// Copies a blob into `store` unless it is there.
    fn fetch(&self, store: &Layout, digest: &str, size: u64) -> Result<()> {
        if store.has_blob(digest, Some(size)) {
            return Ok(());
        }
        match self {
            Source::Registry(r, repo) => {
                r.get_blob(repo, digest, &store.blob_path(digest))?;
            }
            Source::Layout(l) => {
                let from = l.blob_path(digest);
                let tmp = store.temp_blob();
                std::fs::copy(&from, &tmp).map_err(|e| Error::io(&from, e))?;
                let got = format!("sha256:{}", strata_engine::file_sha256(&tmp)?);
                if got != digest {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(Error::Image {
                        message: format!(
                            "{} is corrupt: its content hashes to {got}",
                            from.display()
                        ),
                    });
                }
                store.adopt(&tmp, digest)?;
            }
        }
        Ok(())
    }
}

/// The base `name` for `platform` as strata recorded it before bases were
/// node values (the `bases` table), taken out of `table` when `take`:
/// adopted once when the layout still holds its layers, so an upgrade
/// looks no tag up again.
pub fn adopt_recorded(
    name: &str,
    platform: &str,
    store: &Layout,
    table: &strata_engine::Tree,
    take: bool,
) -> Result<Option<BaseImage>> {
    let key = format!("{name}|{platform}");
    let Some(bytes) = table.get(key.as_bytes())? else {
        return Ok(None);
    };
    if take {
        table.remove(key.as_bytes())?;
    }
    Ok(serde_json::from_slice::<LegacyBase>(&bytes)
        .ok()
        .map(|b| BaseImage {
            name: b.name,
            manifest: b.manifest,
            config: b.config,
            layers: b.layers,
            origin: b.origin,
        })
        .filter(|base| {
            base.layers
                .iter()
                .all(|l| store.has_blob(&l.digest, Some(l.size)))
        }))
}

/// A base as the `bases` table held it (JSON, the config a value).
#[derive(serde::Deserialize)]
struct LegacyBase {
    name: String,
    manifest: Option<String>,
    config: serde_json::Value,
    layers: Vec<crate::oci::layout::Descriptor>,
    origin: Option<(String, String)>,
}

/// Resolves the base image `name` for `platform` (`os/arch[/variant]`),
/// with its blobs in `store`.
pub fn resolve_base(
    name: &str,
    platform: &str,
    store: &Layout,
    registries: &Registries,
) -> Result<BaseImage> {
    if name == "scratch" {
        return Ok(BaseImage::scratch(platform));
    }
    let base = if let Some(rest) = name.strip_prefix("oci-layout:") {
        let (path, reference) = split_layout(rest);
        if !Path::new(path).join("index.json").is_file() {
            return Err(Error::Image {
                message: format!(
                    "base image {name}: {path} is not an OCI image layout (no index.json)"
                ),
            });
        }
        let layout = Layout::open(Path::new(path))?;
        let top = layout.resolve(reference)?;
        pull_image(
            name,
            &Source::Layout(&layout),
            &top.digest,
            platform,
            store,
            None,
        )?
    } else {
        let reference = Reference::parse(name)?;
        let registry = registries.get(reference.api_host())?;
        let origin = Some((registry.host().to_string(), reference.repository.clone()));
        pull_image(
            name,
            &Source::Registry(&registry, &reference.repository),
            reference.target(),
            platform,
            store,
            origin,
        )?
    };
    Ok(base)
}

/// `PATH[:REF]`: the reference is after the last `:` when what is before it
/// is a folder.
fn split_layout(text: &str) -> (&str, Option<&str>) {
    if Path::new(text).join("index.json").is_file() {
        return (text, None);
    }
    match text.split_once(':') {
        Some((path, reference)) => (path, Some(reference)),
        None => (text, None),
    }
}

fn pull_image(
    name: &str,
    source: &Source<'_>,
    reference: &str,
    platform: &str,
    store: &Layout,
    origin: Option<(String, String)>,
) -> Result<BaseImage> {
    let (mut bytes, mut media) = source.manifest(reference)?;
    // A digest names exactly these bytes: anything else was swapped.
    let check = |bytes: &[u8], wanted: &str| -> Result<()> {
        if wanted.starts_with("sha256:") && sha256_digest(bytes) != wanted {
            return Err(Error::Image {
                message: format!("base image {name}: the manifest received is not {wanted}"),
            });
        }
        Ok(())
    };
    check(&bytes, reference)?;
    let parse = |bytes: &[u8]| -> Result<serde_json::Value> {
        serde_json::from_slice(bytes).map_err(|e| Error::Image {
            message: format!("base image {name}: its manifest is not JSON: {e}"),
        })
    };
    let mut manifest = parse(&bytes)?;
    if media.is_empty() {
        media = manifest["mediaType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    if INDEX_TYPES.contains(&media.as_str()) || manifest.get("manifests").is_some() {
        let mut want = platform.split('/');
        let (os, arch, variant) = (
            want.next().unwrap_or("linux"),
            want.next().unwrap_or("amd64"),
            want.next(),
        );
        let choice = manifest["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| {
                let p = &m["platform"];
                p["os"] == os
                    && p["architecture"] == arch
                    && variant.is_none_or(|v| p["variant"] == v)
            })
            .ok_or_else(|| Error::Image {
                message: format!(
                    "base image {name} has no {platform} image (choose another with --platform)"
                ),
            })?;
        let digest = choice["digest"].as_str().unwrap_or_default().to_string();
        (bytes, media) = source.manifest(&digest)?;
        check(&bytes, &digest)?;
        let _ = media;
        manifest = parse(&bytes)?;
    }
    let manifest_digest = sha256_digest(&bytes);
    let config_desc: Descriptor =
        serde_json::from_value(manifest["config"].clone()).map_err(|e| Error::Image {
            message: format!("base image {name}: its manifest has no config: {e}"),
        })?;
    source.fetch(store, &config_desc.digest, config_desc.size)?;
    let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&config_desc.digest)?)
        .map_err(|e| Error::Image {
            message: format!("base image {name}: its config is not JSON: {e}"),
        })?;
    let mut layers = Vec::new();
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let mut d: Descriptor =
            serde_json::from_value(layer.clone()).map_err(|e| Error::Image {
                message: format!("base image {name}: a layer descriptor: {e}"),
            })?;
        source.fetch(store, &d.digest, d.size)?;
        if d.media_type == DOCKER_LAYER {
            d.media_type = OCI_GZIP.to_string();
        }
        layers.push(d);
    }
    Ok(BaseImage {
        name: name.to_string(),
        manifest: Some(manifest_digest),
        config,
        layers,
        origin,
    })
}
