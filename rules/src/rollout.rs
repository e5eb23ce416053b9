//! The rollout as nodes of the graph, above each store's `.deploy`
//! folders: a base image (resolved once and kept; `--pull` looks its tag
//! up again), an image per app (keyed by the base's digest and the
//! `.deploy` content, never the commit), a push per app and target
//! repository (keyed by the image and the tag; it asks the registry whether
//! the tag is still there), and a trigger per store and console (keyed by the
//! store's apps: a commit that changes none of them triggers nothing, it
//! only moves the tag).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};
use strata_engine::{ContentHash, Db, KeyHasher, Tree};

use crate::deployment::{DeploymentRequest, record, trigger};
use crate::error::{Error, Result};
use crate::materialize::OutRecord;
use crate::nodes::{OUT, deploy_dir};
use crate::oci::auth::Credentials;
use crate::oci::base::{Registries, resolve_base};
use crate::oci::image::{BaseImage, BuiltImage, ImageMeta, LayerPart, assemble_image, image_layer};
use crate::oci::layer::Compression;
use crate::oci::layer::LayerBlob;
use crate::oci::layout::{Descriptor, Layout};
use crate::oci::push::{BlobHomes, push_image};

/// What every rollout node of a run shares.
pub struct Rollout {
    /// The monorepo's root.
    pub root: PathBuf,
    /// The local OCI layout (`.strata/oci`): every image's blobs.
    pub layout: Layout,
    /// Layers already compressed, by the key of their files.
    pub layers: Tree,
    /// Where each blob was seen, per registry (for cross-repository mounts).
    pub homes: BlobHomes,
    /// Registry clients.
    pub registries: Arc<Registries>,
    /// What the target registry said of tags asked ahead of the run.
    pub tags: Arc<TagAnswers>,
    /// The target registry's host and repository prefix; none for the
    /// local layout.
    pub target: Option<(String, String)>,
    /// HEAD's SHA, sent with deployments (the tag images get is the
    /// revision node's value: the working tree decides it).
    pub sha: String,
    /// Every timestamp in images: `SOURCE_DATE_EPOCH`, else 0.
    pub epoch: u64,
    /// The repository's public URL, for the `source` label.
    pub source: Option<String>,
    /// `os/arch[/variant]` of base images.
    pub platform: String,
    /// Resolve base tags again.
    pub pull: bool,
    /// Layer compression.
    pub compression: Compression,
    /// The console's deployment endpoint; none records the deployment in
    /// `.out/<store>/deployment.json`.
    pub console: Option<String>,
    /// Credentials for the console.
    pub credentials: Option<Credentials>,
    /// Triggers about to be sent (see [`Pending`]).
    pub pending: Tree,
    /// The database, flushed before a trigger leaves.
    pub db: Db,
    /// Deployments recorded by strata before triggers were nodes (the
    /// `deployments` tree): adopted once, so an upgrade re-triggers nothing.
    pub legacy: Tree,
    /// Bases as strata recorded them before they were node values (the
    /// `bases` tree): adopted once, so an upgrade looks no tag up again.
    pub legacy_bases: Tree,
    /// A dry run: nothing is pulled, pushed or sent.
    pub dry_run: bool,
}

impl Rollout {
    /// Where images go, as the summary says it.
    pub fn target_text(&self) -> String {
        match &self.target {
            Some((host, prefix)) => format!("{host}/{prefix}"),
            None => "oci-layout".into(),
        }
    }

    /// The name an app's image is published under with `tag`.
    pub fn name(&self, repository: &str, tag: &str) -> String {
        match &self.target {
            Some((host, _)) => format!("{host}/{repository}:{tag}"),
            None => format!("oci:{}:{repository}:{tag}", self.layout.dir().display()),
        }
    }

    /// An app's image pinned by its manifest digest.
    pub fn pinned(&self, repository: &str, digest: &str) -> String {
        match &self.target {
            Some((host, _)) => format!("{host}/{repository}@{digest}"),
            None => format!("{repository}@{digest}"),
        }
    }
}

/// An image as a node records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Its manifest.
    pub manifest: Descriptor,
    /// Its config.
    pub config: Descriptor,
    /// Every layer, the base's first.
    pub layers: Vec<Descriptor>,
    /// `os`, `architecture` (and `variant`), as JSON text.
    pub platform: String,
}

impl ImageRecord {
    fn of(image: &BuiltImage) -> ImageRecord {
        ImageRecord {
            manifest: image.manifest.clone(),
            config: image.config.clone(),
            layers: image.layers.clone(),
            platform: image.platform.to_string(),
        }
    }

    fn built(&self) -> BuiltImage {
        BuiltImage {
            manifest: self.manifest.clone(),
            config: self.config.clone(),
            layers: self.layers.clone(),
            platform: serde_json::from_str(&self.platform).unwrap_or_default(),
        }
    }
}

/// A published image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// `<registry>/<repository>:<tag>`, or `oci:<layout>:<ref>`.
    pub name: String,
    /// `<registry>/<repository>@<digest>`.
    pub pinned: String,
    /// The manifest digest.
    pub digest: String,
    /// Bytes sent to the registry.
    pub bytes: u64,
    /// The tag.
    pub tag: String,
}

/// A deployment that happened: what the trigger node records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    /// What was asked, at which commit.
    pub request: DeploymentRequest,
    /// HEAD's SHA when it was triggered (the request pins the images by
    /// digest; older records hold the tag the images had then).
    pub commit: String,
    /// Where the images were.
    pub target: String,
    /// The console, if any.
    pub console: Option<String>,
    /// What the console answered, or where the deployment was recorded.
    pub answer: String,
}

/// A trigger that was about to be sent: recorded (and flushed) before the
/// request leaves, kept after the console answered (until the next
/// deployment of the store replaces it, or a refusal or `--force` removes
/// it). A run killed before its record of the trigger was kept sends the
/// same deployment again with the same idempotency key, so the console
/// counts it once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    request: DeploymentRequest,
    target: String,
    console: Option<String>,
    key: String,
}

/// Whether two requests deploy the same thing: everything but the commit.
fn same_rollout(a: &DeploymentRequest, b: &DeploymentRequest) -> bool {
    a.images == b.images
        && a.store == b.store
        && a.project_name == b.project_name
        && a.cloud_region == b.cloud_region
        && a.framework == b.framework
}

/// A deployment as strata recorded it before triggers were nodes.
#[derive(Deserialize)]
struct LegacyDeployed {
    request: DeploymentRequest,
    target: String,
    console: Option<String>,
}

/// An intent as strata recorded it before triggers were nodes.
#[derive(Deserialize)]
struct LegacyPending {
    deployment: LegacyDeployed,
    key: String,
}

/// The pending intent of `store`, if any (in either record format).
fn pending(rollout: &Rollout, store: &str) -> Result<Option<Pending>> {
    let Some(bytes) = rollout.pending.get(store.as_bytes())? else {
        return Ok(None);
    };
    if let Ok(p) = serde_json::from_slice::<Pending>(&bytes) {
        return Ok(Some(p));
    }
    Ok(serde_json::from_slice::<LegacyPending>(&bytes)
        .ok()
        .map(|old| Pending {
            request: old.deployment.request,
            target: old.deployment.target,
            console: old.deployment.console,
            key: old.key,
        }))
}

/// Forgets the pending intent of `store` and any record of an earlier
/// strata: `--force` makes a new deployment of the same request, under a
/// new key.
pub fn forget_pending(rollout: &Rollout, store: &str) -> Result<()> {
    rollout.pending.remove(store.as_bytes())?;
    rollout.legacy.remove(store.as_bytes())?;
    Ok(())
}

/// The base image `name`, resolved (pulled into the layout; its node keeps
/// it until `--pull`). One recorded by an earlier strata is adopted.
pub fn base(rollout: &Rollout, name: &str) -> Result<BaseImage> {
    // A dry run fetches (and adopts) nothing: a base not resolved yet
    // stands for itself by name, and the images on it are planned.
    if rollout.dry_run && name != "scratch" {
        if let Some(base) = crate::oci::base::adopt_recorded(
            name,
            &rollout.platform,
            &rollout.layout,
            &rollout.legacy_bases,
            false,
        )? {
            return Ok(base);
        }
        return Ok(BaseImage {
            name: name.to_string(),
            manifest: None,
            config: serde_json::json!({"not pulled yet": name}),
            layers: Vec::new(),
            origin: None,
        });
    }
    let recorded = crate::oci::base::adopt_recorded(
        name,
        &rollout.platform,
        &rollout.layout,
        &rollout.legacy_bases,
        true,
    )?;
    if let Some(base) = recorded.filter(|_| !rollout.pull) {
        return Ok(base);
    }
    resolve_base(
        name,
        &rollout.platform,
        &rollout.layout,
        &rollout.registries,
    )
}

/// What image nodes see of a base: its manifest digest (the config's, for
/// `scratch`).
pub fn base_digest(base: &BaseImage) -> ContentHash {
    let mut h = KeyHasher::new("base/v1");
    h.str(base.manifest.as_deref().unwrap_or(""))
        .str(&base.config.to_string());
    h.finish()
}

/// One layer of the image of `store/app` from its prepared `.deploy`.
pub fn layer(
    rollout: &Rollout,
    store: &str,
    app: &str,
    part: LayerPart,
    deploy: &OutRecord,
) -> Result<Option<LayerBlob>> {
    image_layer(
        &rollout.layout,
        &rollout.layers,
        &deploy_dir(&rollout.root, store, app),
        &deploy.files,
        part,
        rollout.epoch,
        rollout.compression,
    )
}

/// The image of `store/app` on `base` with its own layers `own`.
pub fn image(
    rollout: &Rollout,
    store: &str,
    app: &str,
    base: &BaseImage,
    own: &[(LayerBlob, LayerPart)],
    deploy: &OutRecord,
) -> Result<ImageRecord> {
    let meta = ImageMeta {
        store: store.to_string(),
        app: app.to_string(),
        composition: deploy.composition.to_hex(),
        source: rollout.source.clone(),
        epoch: rollout.epoch,
    };
    let built = assemble_image(&rollout.layout, base, own, &meta)?;
    Ok(ImageRecord::of(&built))
}

/// Whether the layout still holds every blob of `image`.
pub fn image_present(rollout: &Rollout, image: &ImageRecord) -> bool {
    std::iter::once(&image.manifest)
        .chain(std::iter::once(&image.config))
        .chain(&image.layers)
        .all(|d| rollout.layout.has_blob(&d.digest, Some(d.size)))
}

/// Publishes `image` as `repository` under `tag`: pushed to the target
/// registry (blobs it lacks, then the manifest), or tagged in the local
/// layout.
pub fn publish(
    rollout: &Rollout,
    repository: &str,
    tag: &str,
    base: &BaseImage,
    image: &ImageRecord,
) -> Result<Published> {
    let name = rollout.name(repository, tag);
    let pinned = rollout.pinned(repository, &image.manifest.digest);
    let built = image.built();
    let bytes = match &rollout.target {
        Some((host, _)) => {
            let registry = rollout.registries.get(host)?;
            push_image(
                &registry,
                &rollout.layout,
                &rollout.homes,
                base,
                &built,
                repository,
                tag,
            )?
            .bytes
        }
        None => {
            let reference = format!("{repository}:{tag}");
            rollout
                .layout
                .tag(&reference, &built.manifest, Some(&built.platform))?;
            0
        }
    };
    Ok(Published {
        name,
        pinned,
        digest: image.manifest.digest.clone(),
        bytes,
        tag: tag.to_string(),
    })
}

/// Whether the published tag still names the image.
pub fn published_still(rollout: &Rollout, repository: &str, published: &Published) -> bool {
    match &rollout.target {
        // The tag still names what was pushed (one moved by someone else
        // is pushed again).
        Some((host, _)) => {
            let answer = match rollout.tags.take(repository, &published.tag) {
                Some(answer) => answer,
                None => match rollout.registries.get(host) {
                    Ok(registry) => registry
                        .manifest_digest(repository, &published.tag)
                        .ok()
                        .flatten(),
                    Err(_) => None,
                },
            };
            answer.is_some_and(|d| d.is_empty() || d == published.digest)
        }
        None => rollout
            .layout
            .resolve(Some(&format!("{repository}:{}", published.tag)))
            .is_ok_and(|d| d.digest == published.digest),
    }
}

/// The settings of a store's deployment request, beside its images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestSettings {
    /// The store.
    pub store: String,
    /// The project.
    pub project_name: String,
    /// The region.
    pub cloud_region: Option<String>,
    /// `nextjs` or `nuxt`.
    pub framework: Option<String>,
}

/// Triggers the deployment of `images` (app → pinned reference): sent to
/// the console (recorded as pending and flushed first, so a rerun after a
/// crash sends it under the same idempotency key), or recorded in
/// `.out/<store>/deployment.json`.
pub fn deploy(
    rollout: &Rollout,
    settings: &RequestSettings,
    images: BTreeMap<String, String>,
) -> Result<Deployed> {
    let request = DeploymentRequest {
        store: settings.store.clone(),
        project_name: settings.project_name.clone(),
        cloud_region: settings.cloud_region.clone(),
        framework: settings.framework.clone(),
        commit: rollout.sha.clone(),
        images,
    };
    let target = rollout.target_text();
    let store = settings.store.as_bytes();
    // Deployed by an earlier strata (its own record): adopted, not sent.
    if let Some(old) = rollout
        .legacy
        .get(store)?
        .and_then(|b| serde_json::from_slice::<LegacyDeployed>(&b).ok())
    {
        rollout.legacy.remove(store)?;
        // Not while a later deployment's outcome is unknown: the console
        // may run that one.
        let unknown = pending(rollout, &settings.store)?
            .is_some_and(|p| !same_rollout(&p.request, &old.request));
        if same_rollout(&old.request, &request)
            && old.target == target
            && old.console == rollout.console
            && !unknown
        {
            return Ok(Deployed {
                answer: format!(
                    "deployed at commit {} by an earlier strata: not triggered again",
                    old.request.commit
                ),
                commit: old.request.commit.clone(),
                request: old.request,
                target,
                console: rollout.console.clone(),
            });
        }
    }
    let (answer, request) = match &rollout.console {
        Some(url) => {
            // An intent for the same images and place (at any commit) is
            // what a crashed run may have sent: it is sent again as it was,
            // under its key, so the console counts it once.
            let (request, key) = match pending(rollout, &settings.store)? {
                Some(p)
                    if same_rollout(&p.request, &request)
                        && p.target == target
                        && p.console == rollout.console =>
                {
                    (p.request, p.key)
                }
                _ => {
                    let key = request.idempotency_key();
                    (request.clone(), key)
                }
            };
            let intent = Pending {
                request: request.clone(),
                target: target.clone(),
                console: rollout.console.clone(),
                key: key.clone(),
            };
            rollout.pending.insert(
                store,
                &serde_json::to_vec(&intent).expect("a record serializes"),
            )?;
            rollout.db.flush()?;
            let answer = match trigger(url, rollout.credentials.as_ref(), &request, &key) {
                Ok(answer) => answer,
                // A refusal is an answer: nothing is pending, and the next
                // run is a new request with a new key. Any other failure
                // leaves the outcome unknown: the intent stays.
                Err(e @ Error::ConsoleRefused { .. }) => {
                    rollout.pending.remove(store)?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            // The intent stays: a crash before the node's record is kept
            // must not turn the next run's resend into a new key. It is
            // replaced by the next deployment's intent, which differs.
            (format!("console: {}", answer.trim()), request)
        }
        None => {
            let dir = rollout.root.join(OUT).join(&settings.store);
            record(&dir, &request)?;
            (
                format!("recorded in {OUT}/{}/deployment.json", settings.store),
                request,
            )
        }
    };
    Ok(Deployed {
        commit: rollout.sha.clone(),
        request,
        target,
        console: rollout.console.clone(),
        answer,
    })
}

/// Whether a recorded deployment is still in place where strata can see
/// it: with a console, no later deployment's outcome is unknown; without
/// one, `.out/<store>/deployment.json` (which `rm -rf .out` removes) must
/// still name the same images.
pub fn deployed_still(rollout: &Rollout, deployed: &Deployed) -> bool {
    if rollout.console.is_some() {
        // A later deployment whose outcome is unknown (it failed after
        // leaving) may be what runs now: the recorded one is no proof.
        return pending(rollout, &deployed.request.store)
            .ok()
            .flatten()
            .is_none_or(|p| {
                p.target != deployed.target
                    || p.console != deployed.console
                    || same_rollout(&p.request, &deployed.request)
            });
    }
    let path = rollout
        .root
        .join(OUT)
        .join(&deployed.request.store)
        .join("deployment.json");
    std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<DeploymentRequest>(&b).ok())
        .is_some_and(|r| r.images == deployed.request.images)
}

/// What a trigger node's dependents (none) and the summary compare: the
/// images, where they are and the console, never the commit.
pub fn deployed_digest(deployed: &Deployed) -> ContentHash {
    let mut h = KeyHasher::new("deployed/v1");
    h.str(&deployed.target)
        .str(deployed.console.as_deref().unwrap_or(""));
    for (app, pinned) in &deployed.request.images {
        h.str(app).str(pinned);
    }
    h.finish()
}

/// The target registry's answers about tags, asked ahead of the run (while
/// the working tree is read and the sources scanned) and taken by the push
/// nodes' checks: what `HEAD /v2/<repository>/manifests/<tag>` said.
#[derive(Default)]
pub struct TagAnswers {
    answers: Mutex<HashMap<String, Answer>>,
    done: Condvar,
}

enum Answer {
    Asking,
    /// The tag asked for and the digest it names (`None`: no such tag).
    Said(String, Option<String>),
    /// The question failed: the check asks again itself.
    Failed,
}

impl TagAnswers {
    /// Asks `registry`, on a few threads of its own, what `tag` names in
    /// each of `repositories`.
    pub fn ask(
        self: &Arc<Self>,
        registry: Arc<crate::oci::registry::Registry>,
        repositories: Vec<String>,
        tag: String,
    ) {
        {
            let mut answers = self.answers.lock().unwrap();
            for repository in &repositories {
                answers.insert(repository.clone(), Answer::Asking);
            }
        }
        let threads = repositories.len().clamp(1, 8);
        let chunk = repositories.len().div_ceil(threads).max(1);
        for part in repositories.chunks(chunk) {
            let part = part.to_vec();
            let (me, registry, tag) = (self.clone(), registry.clone(), tag.clone());
            std::thread::spawn(move || {
                // Whatever happens to this thread, no check waits forever:
                // what it did not answer is marked failed when it ends.
                let unanswered = Unanswered(me.clone(), part.clone());
                for repository in part {
                    let answer = match registry.manifest_digest(&repository, &tag) {
                        Ok(digest) => Answer::Said(tag.clone(), digest),
                        Err(_) => Answer::Failed,
                    };
                    let mut answers = me.answers.lock().unwrap_or_else(|e| e.into_inner());
                    answers.insert(repository, answer);
                    drop(answers);
                    me.done.notify_all();
                }
                drop(unanswered);
            });
        }
    }

    /// Marks what is still being asked in `repositories` as failed.
    fn give_up(&self, repositories: &[String]) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        for repository in repositories {
            if let Some(answer @ Answer::Asking) = answers.get_mut(repository) {
                *answer = Answer::Failed;
            }
        }
        drop(answers);
        self.done.notify_all();
    }

    /// What the registry said `tag` names in `repository`, waiting for the
    /// answer if it is being asked; `None` when it was not asked (or the
    /// question failed, or was about another tag).
    pub fn take(&self, repository: &str, tag: &str) -> Option<Option<String>> {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match answers.get(repository)? {
                Answer::Asking => {
                    answers = self.done.wait(answers).unwrap_or_else(|e| e.into_inner())
                }
                Answer::Said(asked, digest) if asked == tag => return Some(digest.clone()),
                Answer::Said(..) | Answer::Failed => return None,
            }
        }
    }
}

/// The repositories a prefetching thread was given; on its end (or its
/// unwinding) those it did not answer are marked failed.
struct Unanswered(Arc<TagAnswers>, Vec<String>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        self.0.give_up(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check waits for an answer being asked; a thread that ends without
    /// answering (it failed, or panicked) never leaves a check waiting; an
    /// answer about another tag, or a repository not asked, is no answer.
    #[test]
    fn tag_answers_never_leave_a_check_waiting() {
        let answers = Arc::new(TagAnswers::default());
        {
            let mut map = answers.answers.lock().unwrap();
            map.insert("a".into(), Answer::Asking);
            map.insert("b".into(), Answer::Asking);
        }
        let asker = {
            let answers = answers.clone();
            std::thread::spawn(move || {
                let _unanswered = Unanswered(answers.clone(), vec!["a".into(), "b".into()]);
                answers.answers.lock().unwrap().insert(
                    "a".into(),
                    Answer::Said("t1".into(), Some("sha256:1".into())),
                );
                answers.done.notify_all();
                panic!("the registry client panicked before asking about b");
            })
        };
        assert_eq!(answers.take("b", "t1"), None, "b was given up");
        assert!(asker.join().is_err());
        assert_eq!(answers.take("a", "t1"), Some(Some("sha256:1".into())));
        assert_eq!(answers.take("a", "t2"), None, "asked about another tag");
        assert_eq!(answers.take("c", "t1"), None, "never asked");
    }
}
