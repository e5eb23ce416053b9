//! An OCI image layout folder: `oci-layout`, `index.json` and
//! `blobs/sha256/`. strata keeps every blob it builds or pulls in one, and
//! with no registry configured, that folder is where images are published.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use strata_engine::{TempName, write_atomic};

use crate::error::{Error, Result};

/// The annotation that names a manifest in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor: media type, `sha256:…` digest and size.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Descriptor {
    /// The media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// An OCI image layout on disk.
pub struct Layout {
    dir: PathBuf,
    index: Mutex<()>,
}

impl Layout {
    /// Opens (creating as needed) the layout at `dir`.
    pub fn open(dir: &Path) -> Result<Layout> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#, false)?;
        }
        let index = dir.join("index.json");
        if !index.exists() {
            write_atomic(
                &index,
                &canonical_json(&json!({"schemaVersion": 2, "manifests": []})),
                false,
            )?;
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
            index: Mutex::new(()),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `sha256:<hex>` lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs/sha256").join(hex)
    }

    /// Whether the blob is present (with the right size, when given).
    pub fn has_blob(&self, digest: &str, size: Option<u64>) -> bool {
        std::fs::metadata(self.blob_path(digest))
            .is_ok_and(|m| m.is_file() && size.is_none_or(|s| s == m.len()))
    }

    /// Stores bytes as a blob.
    pub fn put_bytes(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let digest = sha256_digest(bytes);
        let path = self.blob_path(&digest);
        if !path.is_file() {
            write_atomic(&path, bytes, false)?;
        }
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
        })
    }

    /// A temporary file in the blob folder, to be moved in with
    /// [`Layout::adopt`] once its digest is known.
    pub fn temp_blob(&self) -> PathBuf {
        TempName::beside(&self.dir.join("blobs/sha256/blob"))
    }

    /// Moves a finished temporary file into place as blob `digest`.
    pub fn adopt(&self, tmp: &Path, digest: &str) -> Result<()> {
        let path = self.blob_path(digest);
        std::fs::rename(tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// The bytes of a blob, checked against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| Error::io(&path, e))?;
        if sha256_digest(&bytes) != digest {
            return Err(Error::Image {
                message: format!(
                    "blob {} is corrupt: its content does not match its digest",
                    path.display()
                ),
            });
        }
        Ok(bytes)
    }

    /// Points the name `reference` at a manifest in `index.json`
    /// (replacing what it named before).
    pub fn tag(
        &self,
        reference: &str,
        manifest: &Descriptor,
        platform: Option<&Value>,
    ) -> Result<()> {
        let _guard = self.index.lock().unwrap();
        let path = self.dir.join("index.json");
        let mut index = self.index_json()?;
        let manifests = index["manifests"]
            .as_array_mut()
            .expect("an index has manifests");
        manifests.retain(|m| m["annotations"][REF_NAME] != reference);
        let mut entry = json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.size,
            "annotations": { REF_NAME: reference },
        });
        if let Some(p) = platform {
            entry["platform"] = p.clone();
        }
        manifests.push(entry);
        manifests.sort_by(|a, b| {
            a["annotations"][REF_NAME]
                .as_str()
                .cmp(&b["annotations"][REF_NAME].as_str())
        });
        Ok(write_atomic(&path, &canonical_json(&index), false)?)
    }

    /// The manifest named `reference` (or the only one, when `reference` is
    /// `None` and there is exactly one).
    pub fn resolve(&self, reference: Option<&str>) -> Result<Descriptor> {
        let index = self.index_json()?;
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let found: Vec<&Value> = match reference {
            Some(r) => manifests
                .iter()
                .filter(|m| m["annotations"][REF_NAME] == r)
                .collect(),
            None => manifests.iter().collect(),
        };
        match found.as_slice() {
            [one] => serde_json::from_value((*one).clone()).map_err(|e| Error::Image {
                message: format!("{}/index.json: {e}", self.dir.display()),
            }),
            [] => Err(Error::Image {
                message: format!(
                    "no image {} in the OCI layout {}",
                    reference
                        .map(|r| format!("named {r:?}"))
                        .unwrap_or_default(),
                    self.dir.display()
                ),
            }),
            _ => Err(Error::Image {
                message: format!(
                    "the OCI layout {} holds several images: name one (oci-layout:PATH:REF)",
                    self.dir.display()
                ),
            }),
        }
    }

    fn index_json(&self) -> Result<Value> {
        let path = self.dir.join("index.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Image {
            message: format!("{}: {e}", path.display()),
        })
    }
}

/// JSON with every object's keys sorted, compact: the same value always
/// gives the same bytes (and so the same digest).
pub fn canonical_json(value: &Value) -> Vec<u8> {
    fn sort(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sort(&map[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sort(value)).expect("JSON values serialize")
}

/// A writer that hashes (sha256) and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, the `sha256:…` digest and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            format!("sha256:{:x}", self.hasher.finalize()),
            self.written,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a = json!({"b": 1, "a": {"z": 1, "y": [{"d": 1, "c": 2}]}});
        assert_eq!(
            String::from_utf8(canonical_json(&a)).unwrap(),
            r#"{"a":{"y":[{"c":2,"d":1}],"z":1},"b":1}"#
        );
    }

    #[test]
    fn tags_replace_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let one = layout
            .put_bytes("application/vnd.oci.image.manifest.v1+json", b"{}")
            .unwrap();
        let two = layout
            .put_bytes("application/vnd.oci.image.manifest.v1+json", b"{\"x\":1}")
            .unwrap();
        layout.tag("app:1", &one, None).unwrap();
        layout.tag("app:1", &two, None).unwrap();
        layout.tag("other:2", &one, None).unwrap();
        assert_eq!(layout.resolve(Some("app:1")).unwrap().digest, two.digest);
        assert!(
            layout.resolve(None).is_err(),
            "two images: a name is needed"
        );
        assert!(layout.resolve(Some("nope")).is_err());
        assert_eq!(layout.read_blob(&one.digest).unwrap(), b"{}");
    }
}
