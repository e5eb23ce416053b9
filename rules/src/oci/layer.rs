//! Image layers: reproducible tar archives of a `.deploy` folder, compressed
//! in parallel. The same files give the same bytes on any machine, in any
//! checkout, at any time.

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use strata_engine::{ContentHash, EntryKind, KeyHasher};

use super::layout::{HashingWriter, Layout};
use crate::error::{Error, Result};

/// How layers are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// gzip, compressed in parallel (the default; every runtime reads it).
    Gzip,
    /// zstd (smaller and faster; needs a recent runtime).
    Zstd,
}

impl Compression {
    /// The layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// One file of a layer: where it goes in the image, and where its bytes are.
#[derive(Clone, Debug)]
pub struct LayerFile {
    /// The path in the image, relative to `/` (`var/www/server.js`).
    pub path: String,
    /// File (with its execute bit) or symlink.
    pub kind: EntryKind,
    /// Its digest (for the layer's cache key).
    pub digest: ContentHash,
    /// Where its bytes are read from.
    pub source: PathBuf,
    /// A symlink's target.
    pub link_target: Option<PathBuf>,
}

/// A built layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerBlob {
    /// `sha256:…` of the compressed blob.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// `sha256:…` of the uncompressed tar (the config's `diff_id`).
    pub diff_id: String,
    /// The media type.
    pub media_type: String,
}

/// The cache key of a layer: its files, their modes and digests, the
/// timestamp and the compression. Equal keys give byte-identical blobs.
pub fn layer_key(files: &[LayerFile], mtime: u64, compression: Compression) -> ContentHash {
    let mut h = KeyHasher::new("layer/v1");
    h.u64(mtime).str(compression.media_type());
    for f in files {
        h.str(&f.path).hash(&f.digest).u64(match f.kind {
            EntryKind::File { executable: false } => 0,
            EntryKind::File { executable: true } => 1,
            EntryKind::Symlink => 2,
        });
    }
    h.finish()
}

/// Writes a reproducible tar of `files` (sorted by path, with every parent
/// folder, uid and gid 0, no user names, modes 0755 for folders and
/// executables and 0644 otherwise, every timestamp `mtime`, no extended
/// attributes).
pub fn write_tar(files: &[LayerFile], mtime: u64, out: impl Write) -> Result<()> {
    let mut entries: Vec<&LayerFile> = files.iter().collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let mut dirs: Vec<String> = Vec::new();
    for f in &entries {
        let mut p = f.path.as_str();
        while let Some(slash) = p.rfind('/') {
            p = &p[..slash];
            dirs.push(p.to_string());
        }
    }
    dirs.sort();
    dirs.dedup();
    enum Item<'a> {
        Dir(&'a str),
        File(&'a LayerFile),
    }
    let mut items: Vec<(&str, Item)> = dirs.iter().map(|d| (d.as_str(), Item::Dir(d))).collect();
    items.extend(entries.iter().map(|f| (f.path.as_str(), Item::File(f))));
    items.sort_by(|a, b| a.0.cmp(b.0));

    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Deterministic);
    let io = |e: std::io::Error| Error::Image {
        message: format!("writing a layer: {e}"),
    };
    for (_, item) in items {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        match item {
            Item::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(
                        &mut header,
                        strata_engine::fs_path(&format!("{path}/")),
                        std::io::empty(),
                    )
                    .map_err(io)?;
            }
            Item::File(f) => match f.kind {
                EntryKind::Symlink => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    let target = f.link_target.as_deref().unwrap_or(Path::new(""));
                    builder
                        .append_link(&mut header, strata_engine::fs_path(&f.path), target)
                        .map_err(io)?;
                }
                EntryKind::File { executable } => {
                    let file =
                        std::fs::File::open(&f.source).map_err(|e| Error::io(&f.source, e))?;
                    let len = file.metadata().map_err(|e| Error::io(&f.source, e))?.len();
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(if executable { 0o755 } else { 0o644 });
                    header.set_size(len);
                    builder
                        .append_data(&mut header, strata_engine::fs_path(&f.path), file)
                        .map_err(io)?;
                }
            },
        }
    }
    builder.into_inner().map_err(io)?.flush().map_err(io)?;
    Ok(())
}

/// gzip in parallel: the stream is cut into blocks, each compressed as its
/// own gzip member on a core of its own; the members, concatenated, are one
/// valid gzip file (RFC 1952 allows several members; every runtime reads
/// them).
pub struct ParallelGzip<W: Write> {
    out: W,
    block: Vec<u8>,
    pending: Vec<Vec<u8>>,
    level: u32,
}

const BLOCK: usize = 1 << 20;

impl<W: Write> ParallelGzip<W> {
    /// Compresses into `out` at `level`.
    pub fn new(out: W, level: u32) -> Self {
        ParallelGzip {
            out,
            block: Vec::with_capacity(BLOCK),
            pending: Vec::new(),
            level,
        }
    }

    fn drain(&mut self) -> std::io::Result<()> {
        let level = self.level;
        let compressed: Vec<std::io::Result<Vec<u8>>> = std::mem::take(&mut self.pending)
            .into_par_iter()
            .map(|block| {
                let mut gz = flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(
                        Vec::with_capacity(block.len() / 2),
                        flate2::Compression::new(level),
                    );
                gz.write_all(&block)?;
                gz.finish()
            })
            .collect();
        for c in compressed {
            self.out.write_all(&c?)?;
        }
        Ok(())
    }

    /// Writes what is left and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        if !self.block.is_empty() || self.pending.is_empty() {
            let block = std::mem::take(&mut self.block);
            self.pending.push(block);
        }
        self.drain()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = BLOCK - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            let full = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
            self.pending.push(full);
            if self.pending.len() >= 2 * rayon::current_num_threads() {
                self.drain()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The gzip level: faster than `gzip -6`, and smaller than `gzip -1`.
pub const GZIP_LEVEL: u32 = 4;

/// Builds the layer of `files` into the layout: tar, compress, hash.
pub fn build_layer(
    layout: &Layout,
    files: &[LayerFile],
    mtime: u64,
    compression: Compression,
) -> Result<LayerBlob> {
    let tmp = layout.temp_blob();
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = (|| {
        let compressed = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let io = |e: std::io::Error| Error::Image {
            message: format!("compressing a layer: {e}"),
        };
        let (blob, diff_id) = match compression {
            Compression::Gzip => {
                let mut tar = HashingWriter::new(ParallelGzip::new(compressed, GZIP_LEVEL));
                write_tar(files, mtime, &mut tar)?;
                let (gz, diff_id, _) = tar.finish();
                (gz.finish().map_err(io)?, diff_id)
            }
            Compression::Zstd => {
                let mut encoder = zstd::stream::Encoder::new(compressed, 3).map_err(io)?;
                let threads = rayon::current_num_threads() as u32;
                encoder.multithread(threads).map_err(io)?;
                let mut tar = HashingWriter::new(encoder);
                write_tar(files, mtime, &mut tar)?;
                let (encoder, diff_id, _) = tar.finish();
                (encoder.finish().map_err(io)?, diff_id)
            }
        };
        let (mut writer, digest, size) = blob.finish();
        writer.flush().map_err(io)?;
        Ok(LayerBlob {
            digest,
            size,
            diff_id,
            media_type: compression.media_type().to_string(),
        })
    })();
    match result {
        Ok(blob) => {
            layout.adopt(&tmp, &blob.digest)?;
            Ok(blob)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn files(dir: &Path) -> Vec<LayerFile> {
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("server.js"), "console.log(1)").unwrap();
        std::fs::write(dir.join("lib/a.js"), "a".repeat(3 << 20)).unwrap();
        vec![
            LayerFile {
                path: "var/www/server.js".into(),
                kind: EntryKind::File { executable: false },
                digest: ContentHash::of(b"1"),
                source: dir.join("server.js"),
                link_target: None,
            },
            LayerFile {
                path: "var/www/lib/a.js".into(),
                kind: EntryKind::File { executable: true },
                digest: ContentHash::of(b"2"),
                source: dir.join("lib/a.js"),
                link_target: None,
            },
            LayerFile {
                path: "var/www/link".into(),
                kind: EntryKind::Symlink,
                digest: ContentHash::of(b"3"),
                source: dir.join("link"),
                link_target: Some("server.js".into()),
            },
        ]
    }

    #[test]
    fn tar_is_sorted_with_parents_and_normalized_headers() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        write_tar(&files(dir.path()), 1_700_000_000, &mut out).unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.mtime().unwrap(), 1_700_000_000);
            seen.push((
                entry.path().unwrap().to_string_lossy().into_owned(),
                h.mode().unwrap(),
            ));
        }
        let want: Vec<(String, u32)> = [
            ("var/", 0o755),
            ("var/www/", 0o755),
            ("var/www/lib/", 0o755),
            ("var/www/lib/a.js", 0o755),
            ("var/www/link", 0o777),
            ("var/www/server.js", 0o644),
        ]
        .iter()
        .map(|(p, m)| (p.to_string(), *m))
        .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn layers_are_reproducible_and_gzip_members_decode_as_one_stream() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(&dir.path().join("oci")).unwrap();
        let files = files(&dir.path().join("src"));
        let one = build_layer(&layout, &files, 7, Compression::Gzip).unwrap();
        let two = build_layer(&layout, &files, 7, Compression::Gzip).unwrap();
        assert_eq!(one, two);
        let other_time = build_layer(&layout, &files, 8, Compression::Gzip).unwrap();
        assert_ne!(one.digest, other_time.digest);
        // Several members (the file is larger than one block) read back as
        // one tar whose sha256 is the diff_id.
        let blob = std::fs::read(layout.blob_path(&one.digest)).unwrap();
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(super::super::layout::sha256_digest(&tar), one.diff_id);
        assert!(one.size < 3 << 20);
        let z = build_layer(&layout, &files, 7, Compression::Zstd).unwrap();
        let mut tar2 = Vec::new();
        zstd::stream::read::Decoder::new(std::fs::File::open(layout.blob_path(&z.digest)).unwrap())
            .unwrap()
            .read_to_end(&mut tar2)
            .unwrap();
        assert_eq!(tar, tar2);
    }
}
