//! Pushing an image: every blob the registry lacks is mounted from a
//! sibling repository when one has it, else uploaded; the manifest is put
//! only after every blob it names is confirmed present, so a tag never
//! points at missing blobs.

use std::collections::BTreeSet;

use rayon::prelude::*;
use strata_engine::Tree;

use super::image::{BaseImage, BuiltImage};
use super::layout::{Descriptor, Layout};
use super::registry::{Mount, Registry};
use crate::error::{Error, Result};

/// What a push did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PushStats {
    /// Blobs the registry already had.
    pub present: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// Where each blob was seen, per registry: `host|digest` -> repositories.
/// It lets a store mount a layer another store pushed.
pub struct BlobHomes {
    tree: Tree,
}

impl BlobHomes {
    /// The record kept in `tree`.
    pub fn new(tree: Tree) -> Self {
        BlobHomes { tree }
    }

    fn key(host: &str, digest: &str) -> Vec<u8> {
        format!("{host}|{digest}").into_bytes()
    }

    fn homes(&self, host: &str, digest: &str) -> Result<BTreeSet<String>> {
        Ok(self
            .tree
            .get(&Self::key(host, digest))?
            .and_then(|b| postcard::from_bytes(&b).ok())
            .unwrap_or_default())
    }

    fn add(&self, host: &str, digest: &str, repo: &str) -> Result<()> {
        let mut homes = self.homes(host, digest)?;
        if homes.insert(repo.to_string()) {
            self.tree.insert(
                &Self::key(host, digest),
                &postcard::to_stdvec(&homes).expect("a set encodes"),
            )?;
        }
        Ok(())
    }
}

enum Outcome {
    Present,
    Mounted,
    Uploaded(u64),
}

fn push_blob(
    registry: &Registry,
    layout: &Layout,
    homes: &BlobHomes,
    base: &BaseImage,
    repo: &str,
    blob: &Descriptor,
) -> Result<Outcome> {
    if registry.has_blob(repo, &blob.digest, blob.size)? {
        homes.add(registry.host(), &blob.digest, repo)?;
        return Ok(Outcome::Present);
    }
    let mut candidates: Vec<String> = homes
        .homes(registry.host(), &blob.digest)?
        .into_iter()
        .filter(|r| r != repo)
        .collect();
    if let Some((host, from)) = &base.origin
        && host == registry.host()
        && from != repo
        && base.layers.iter().any(|l| l.digest == blob.digest)
    {
        candidates.insert(0, from.clone());
    }
    // One mount attempt: when it does not happen, the registry opens an
    // upload session, which the upload below uses.
    let mut session = None;
    if let Some(from) = candidates.first() {
        match registry.mount(repo, &blob.digest, from) {
            Ok(Mount::Mounted) => {
                homes.add(registry.host(), &blob.digest, repo)?;
                return Ok(Outcome::Mounted);
            }
            Ok(Mount::Upload(location)) => session = Some(location),
            // A registry that refuses mounts still takes uploads.
            Err(_) => {}
        }
    }
    let path = layout.blob_path(&blob.digest);
    if !layout.has_blob(&blob.digest, Some(blob.size)) {
        return Err(Error::Image {
            message: format!(
                "blob {} is missing from {}: rebuild the image",
                blob.digest,
                layout.dir().display()
            ),
        });
    }
    registry.push_blob(repo, &blob.digest, blob.size, &path, session)?;
    homes.add(registry.host(), &blob.digest, repo)?;
    Ok(Outcome::Uploaded(blob.size))
}

/// Pushes `image` to `repo:tag`. Blobs go concurrently; the manifest last.
pub fn push_image(
    registry: &Registry,
    layout: &Layout,
    homes: &BlobHomes,
    base: &BaseImage,
    image: &BuiltImage,
    repo: &str,
    tag: &str,
) -> Result<PushStats> {
    let mut blobs = vec![image.config.clone()];
    blobs.extend(image.layers.iter().cloned());
    let manifest = layout.read_blob(&image.manifest.digest)?;
    // A repository that has the manifest: a new tag of it is one PUT,
    // once its blobs are confirmed there (a tag never names a missing
    // blob, even on a registry that lost some).
    if registry
        .manifest_digest(repo, &image.manifest.digest)?
        .is_some()
    {
        let present: Vec<Result<bool>> = blobs
            .par_iter()
            .map(|b| registry.has_blob(repo, &b.digest, b.size))
            .collect();
        if present.iter().all(|p| matches!(p, Ok(true))) {
            for b in &blobs {
                homes.add(registry.host(), &b.digest, repo)?;
            }
            registry.put_manifest(repo, tag, &manifest, &image.manifest.media_type)?;
            return Ok(PushStats {
                present: blobs.len(),
                ..PushStats::default()
            });
        }
    }
    let outcomes: Vec<Result<Outcome>> = blobs
        .par_iter()
        .map(|b| push_blob(registry, layout, homes, base, repo, b))
        .collect();
    let mut stats = PushStats::default();
    for o in outcomes {
        match o? {
            Outcome::Present => stats.present += 1,
            Outcome::Mounted => stats.mounted += 1,
            Outcome::Uploaded(bytes) => {
                stats.uploaded += 1;
                stats.bytes += bytes;
            }
        }
    }
    // Confirm, then tag: a tag must never name a blob the registry lacks.
    for b in &blobs {
        if !registry.has_blob(repo, &b.digest, b.size)? {
            return Err(Error::Registry {
                message: format!(
                    "{} does not have blob {} after it was sent to {repo}; the manifest was not put",
                    registry.host(),
                    b.digest
                ),
            });
        }
    }
    registry.put_manifest(repo, tag, &manifest, &image.manifest.media_type)?;
    Ok(stats)
}
