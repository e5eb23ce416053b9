//! An image for one app of one store: the base image's layers, then the
//! app's `.deploy` folder in two layers (its `node_modules`, then the
//! rest) under `/var/www`, with a config equivalent to the seed's
//! Dockerfile (`WORKDIR /var/www`, `COPY ./.deploy/ ./`,
//! `ENTRYPOINT ["node", "server.js"]`, `NODE_ENV=production`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use oci_spec::image::{
    ConfigBuilder, Descriptor as OciDescriptor, DescriptorBuilder, HistoryBuilder,
    ImageConfiguration, ImageManifestBuilder, MediaType, RootFsBuilder,
};
use serde::{Deserialize, Serialize};
use strata_engine::{EntryKind, Tree};

use super::layer::{Compression, LayerBlob, LayerFile, build_layer, layer_key};
use super::layout::{Descriptor, Layout, canonical_json};
use crate::error::{Error, Result};
use crate::materialize::OutFile;

/// Where images put the app.
pub const WORKDIR: &str = "/var/www";
/// The label and annotation prefix of strata's own keys.
pub const LABEL_PREFIX: &str = "dev.strata";

/// A base image, resolved: its config and layers (blobs in the layout).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BaseImage {
    /// As named (`scratch`, `node:24-alpine`, `oci-layout:…`).
    pub name: String,
    /// Its manifest's digest (none for `scratch`).
    pub manifest: Option<String>,
    /// Its config JSON (kept as text: the engine's records are not
    /// self-describing, a JSON value is).
    #[serde(with = "json_text")]
    pub config: serde_json::Value,
    /// Its layers, with OCI media types.
    pub layers: Vec<Descriptor>,
    /// The registry and repository its blobs can be mounted from.
    pub origin: Option<(String, String)>,
}

/// A JSON value stored as its text.
mod json_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(D::Error::custom)
    }
}

impl BaseImage {
    /// The empty base: no layers, for `platform` (`os/arch[/variant]`).
    pub fn scratch(platform: &str) -> BaseImage {
        let mut parts = platform.split('/');
        let os = parts.next().unwrap_or("linux");
        let arch = parts.next().unwrap_or("amd64");
        let mut config = serde_json::json!({
            "architecture": arch,
            "os": os,
            "rootfs": {"type": "layers", "diff_ids": []},
        });
        if let Some(variant) = parts.next() {
            config["variant"] = variant.into();
        }
        BaseImage {
            name: "scratch".into(),
            manifest: None,
            config,
            layers: Vec::new(),
            origin: None,
        }
    }
}

/// Facts recorded in the image.
#[derive(Clone, Debug)]
pub struct ImageMeta {
    /// The store.
    pub store: String,
    /// The app.
    pub app: String,
    /// The composition digest of the app.
    pub composition: String,
    /// The repository's URL, when it has a remote.
    pub source: Option<String>,
    /// Every timestamp: `SOURCE_DATE_EPOCH`, else 0. The commit is in the
    /// tag and the deployment request, never in the image.
    pub epoch: u64,
}

/// A built image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuiltImage {
    /// Its manifest.
    pub manifest: Descriptor,
    /// Its config.
    pub config: Descriptor,
    /// Every layer, the base's first.
    pub layers: Vec<Descriptor>,
    /// `os`, `architecture` (and `variant`) of the image.
    pub platform: serde_json::Value,
}

/// How an image names its base: a registry reference as given, anything
/// local (an OCI layout's path would differ between checkouts) by digest.
fn base_label(base: &BaseImage) -> String {
    if base.name.starts_with("oci-layout:") {
        format!(
            "oci-layout@{}",
            base.manifest.as_deref().unwrap_or("unknown")
        )
    } else {
        base.name.clone()
    }
}

/// RFC 3339 for a Unix time.
pub fn rfc3339(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(epoch)).to_string()
}

fn oci(d: &Descriptor) -> Result<OciDescriptor> {
    let digest = d.digest.parse().map_err(|e| Error::Image {
        message: format!("digest {}: {e}", d.digest),
    })?;
    Ok(DescriptorBuilder::default()
        .media_type(MediaType::from(d.media_type.as_str()))
        .digest::<oci_spec::image::Digest>(digest)
        .size(d.size)
        .build()
        .expect("a descriptor with every field"))
}

fn spec_error(e: impl std::fmt::Display) -> Error {
    Error::Image {
        message: format!("image config: {e}"),
    }
}

/// The files of `.deploy` as image layer entries: (node_modules, the rest).
fn layer_files(deploy_dir: &Path, files: &[OutFile]) -> (Vec<LayerFile>, Vec<LayerFile>) {
    let mut deps = Vec::new();
    let mut app = Vec::new();
    let root = WORKDIR.trim_start_matches('/');
    for f in files {
        let source: PathBuf = deploy_dir.join(strata_engine::fs_path(&f.path));
        let link_target =
            (f.kind == EntryKind::Symlink).then(|| std::fs::read_link(&source).unwrap_or_default());
        let entry = LayerFile {
            path: format!("{root}/{}", f.path),
            kind: f.kind,
            digest: f.digest,
            source,
            link_target,
        };
        if f.path.starts_with("node_modules/") {
            deps.push(entry);
        } else {
            app.push(entry);
        }
    }
    (deps, app)
}

/// A layer, built once: a layer with the same key already in the layout
/// is reused without compressing anything.
fn layer(
    layout: &Layout,
    cache: &Tree,
    files: &[LayerFile],
    epoch: u64,
    compression: Compression,
) -> Result<LayerBlob> {
    let key = layer_key(files, epoch, compression);
    if let Some(bytes) = cache.get(&key.0)?
        && let Ok(blob) = postcard::from_bytes::<LayerBlob>(&bytes)
        && layout.has_blob(&blob.digest, Some(blob.size))
    {
        return Ok(blob);
    }
    let blob = build_layer(layout, files, epoch, compression)?;
    cache.insert(
        &key.0,
        &postcard::to_stdvec(&blob).expect("a layer record encodes"),
    )?;
    Ok(blob)
}

/// The layers an app adds to its base, split by how often they change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LayerPart {
    /// `.deploy/node_modules`: the dependencies, shared by stores and
    /// commits with the same ones.
    Dependencies,
    /// The rest of `.deploy`: the app's own build output.
    App,
}

impl LayerPart {
    /// Both, in image order.
    pub const ALL: [LayerPart; 2] = [LayerPart::Dependencies, LayerPart::App];

    /// Its name in node ids.
    pub fn name(self) -> &'static str {
        match self {
            LayerPart::Dependencies => "dependencies",
            LayerPart::App => "app",
        }
    }

    /// The Dockerfile step it stands for (the image's history).
    pub fn step(self) -> &'static str {
        match self {
            LayerPart::Dependencies => "COPY ./.deploy/node_modules ./node_modules",
            LayerPart::App => "COPY ./.deploy/ ./",
        }
    }
}

/// One layer of an app's image from its `.deploy` folder (whose files are
/// `files`), its blob in `layout`; `None` for a dependencies layer of an
/// app without `node_modules`.
pub fn image_layer(
    layout: &Layout,
    cache: &Tree,
    deploy_dir: &Path,
    files: &[OutFile],
    part: LayerPart,
    epoch: u64,
    compression: Compression,
) -> Result<Option<LayerBlob>> {
    let (deps, app) = layer_files(deploy_dir, files);
    let files = match part {
        LayerPart::Dependencies if deps.is_empty() => return Ok(None),
        LayerPart::Dependencies => deps,
        LayerPart::App => app,
    };
    layer(layout, cache, &files, epoch, compression).map(Some)
}

/// Builds the image of one app from its `.deploy` folder (whose files are
/// `files`) on `base`; blobs go into `layout`.
pub fn build_image(
    layout: &Layout,
    cache: &Tree,
    base: &BaseImage,
    deploy_dir: &Path,
    files: &[OutFile],
    meta: &ImageMeta,
    compression: Compression,
) -> Result<BuiltImage> {
    let mut own = Vec::new();
    for part in LayerPart::ALL {
        if let Some(blob) = image_layer(
            layout,
            cache,
            deploy_dir,
            files,
            part,
            meta.epoch,
            compression,
        )? {
            own.push((blob, part));
        }
    }
    assemble_image(layout, base, &own, meta)
}

/// The image of an app: `base`, then its own layers `own` (made by
/// [`image_layer`]), with a config equivalent to the seed's Dockerfile.
pub fn assemble_image(
    layout: &Layout,
    base: &BaseImage,
    own: &[(LayerBlob, LayerPart)],
    meta: &ImageMeta,
) -> Result<BuiltImage> {
    let created = rfc3339(meta.epoch);
    let mut labels: HashMap<String, String> = HashMap::new();
    labels.insert("org.opencontainers.image.created".into(), created.clone());
    if let Some(source) = &meta.source {
        labels.insert("org.opencontainers.image.source".into(), source.clone());
    }
    labels.insert(format!("{LABEL_PREFIX}.store"), meta.store.clone());
    labels.insert(format!("{LABEL_PREFIX}.app"), meta.app.clone());
    labels.insert(
        format!("{LABEL_PREFIX}.composition"),
        meta.composition.clone(),
    );
    labels.insert(format!("{LABEL_PREFIX}.base"), base_label(base));

    // The base's config, as the Dockerfile's FROM inherits it.
    let base_config: ImageConfiguration =
        serde_json::from_value(base.config.clone()).map_err(|e| Error::Image {
            message: format!("the config of base image {}: {e}", base.name),
        })?;
    let inherited = base_config.config().clone().unwrap_or_default();
    let mut env: Vec<String> = inherited
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e.starts_with("NODE_ENV="))
        .collect();
    env.push("NODE_ENV=production".into());
    let mut all_labels = inherited.labels().clone().unwrap_or_default();
    all_labels.extend(labels.clone());
    let mut config = ConfigBuilder::default()
        .env(env)
        .working_dir(WORKDIR)
        .entrypoint(vec!["node".to_string(), "server.js".to_string()])
        .labels(all_labels)
        .build()
        .map_err(spec_error)?;
    // What a Dockerfile keeps from its base; CMD is reset by ENTRYPOINT.
    config.set_user(inherited.user().clone());
    config.set_exposed_ports(inherited.exposed_ports().clone());
    config.set_stop_signal(inherited.stop_signal().clone());
    config.set_volumes(inherited.volumes().clone());

    let mut diff_ids = base_config.rootfs().diff_ids().clone();
    diff_ids.extend(own.iter().map(|(l, _)| l.diff_id.clone()));
    let mut history = base_config.history().clone().unwrap_or_default();
    let step = |by: &str, empty: bool| {
        HistoryBuilder::default()
            .created(created.clone())
            .created_by(by.to_string())
            .empty_layer(empty)
            .build()
            .map_err(spec_error)
    };
    history.push(step(&format!("WORKDIR {WORKDIR}"), true)?);
    for (_, part) in own {
        history.push(step(part.step(), false)?);
    }
    history.push(step("ENV NODE_ENV=production", true)?);
    history.push(step("ENTRYPOINT [\"node\", \"server.js\"]", true)?);

    let mut image_config = base_config.clone();
    image_config.set_created(Some(created.clone()));
    image_config.set_author(None);
    image_config.set_config(Some(config));
    image_config.set_rootfs(
        RootFsBuilder::default()
            .typ("layers")
            .diff_ids(diff_ids)
            .build()
            .map_err(spec_error)?,
    );
    image_config.set_history(Some(history));
    let config_json = serde_json::to_value(&image_config).map_err(spec_error)?;
    let config_desc = layout.put_bytes(
        "application/vnd.oci.image.config.v1+json",
        &canonical_json(&config_json),
    )?;

    let mut layers: Vec<Descriptor> = base.layers.clone();
    layers.extend(own.iter().map(|(l, _)| Descriptor {
        media_type: l.media_type.clone(),
        digest: l.digest.clone(),
        size: l.size,
    }));
    let annotations = labels;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(oci(&config_desc)?)
        .layers(layers.iter().map(oci).collect::<Result<Vec<_>>>()?)
        .annotations(annotations)
        .build()
        .map_err(spec_error)?;
    let manifest_json = serde_json::to_value(&manifest).map_err(spec_error)?;
    let manifest_desc = layout.put_bytes(
        "application/vnd.oci.image.manifest.v1+json",
        &canonical_json(&manifest_json),
    )?;

    let mut platform = serde_json::json!({
        "os": config_json["os"],
        "architecture": config_json["architecture"],
    });
    if let Some(v) = config_json.get("variant") {
        platform["variant"] = v.clone();
    }
    Ok(BuiltImage {
        manifest: manifest_desc,
        config: config_desc,
        layers,
        platform,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_engine::{ContentHash, Db, Fingerprint};

    fn out_file(dir: &Path, path: &str, body: &str) -> OutFile {
        let full = dir.join(strata_engine::fs_path(path));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, body).unwrap();
        OutFile {
            path: path.into(),
            kind: EntryKind::File { executable: false },
            digest: ContentHash::of(body.as_bytes()),
            fingerprint: Fingerprint::at(&full).unwrap(),
        }
    }

    #[test]
    fn same_deploy_same_digests_and_dependencies_in_their_own_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let meta = ImageMeta {
            store: "us".into(),
            app: "api".into(),
            composition: "abc".into(),
            source: None,
            epoch: 1_700_000_000,
        };
        let mut digests = Vec::new();
        let mut deps_layers = Vec::new();
        // Two checkouts at different paths, built at different times.
        for (n, body) in [("one", "console.log(1)"), ("two", "console.log(2)")] {
            let deploy = tmp.path().join(n).join(".deploy");
            let files = vec![
                out_file(&deploy, "node_modules/dep/index.js", "module.exports = 1"),
                out_file(&deploy, "server.js", body),
            ];
            let db = Db::open(&tmp.path().join(n).join("db")).unwrap();
            let layout = Layout::open(&tmp.path().join(n).join("oci")).unwrap();
            let base = BaseImage::scratch("linux/amd64");
            let image = build_image(
                &layout,
                &db.tree("layers").unwrap(),
                &base,
                &deploy,
                &files,
                &meta,
                Compression::Gzip,
            )
            .unwrap();
            assert_eq!(image.layers.len(), 2);
            deps_layers.push(image.layers[0].digest.clone());
            let again = build_image(
                &layout,
                &db.tree("layers").unwrap(),
                &base,
                &deploy,
                &files,
                &meta,
                Compression::Gzip,
            )
            .unwrap();
            assert_eq!(again.manifest, image.manifest);
            digests.push(image.manifest.digest);
            let config: serde_json::Value =
                serde_json::from_slice(&layout.read_blob(&image.config.digest).unwrap()).unwrap();
            assert_eq!(
                config["config"]["Entrypoint"],
                serde_json::json!(["node", "server.js"])
            );
            assert_eq!(config["config"]["WorkingDir"], "/var/www");
            assert_eq!(config["created"], "2023-11-14T22:13:20Z");
            assert!(
                config["config"]["Env"]
                    .as_array()
                    .unwrap()
                    .contains(&"NODE_ENV=production".into())
            );
            assert!(
                config["config"]["Labels"]
                    .get("org.opencontainers.image.revision")
                    .is_none(),
                "the commit is in the tag, never in the image"
            );
        }
        // The dependencies layer is shared; the app layers differ.
        assert_eq!(deps_layers[0], deps_layers[1]);
        assert_ne!(digests[0], digests[1]);
    }
}
