//! Copying images: between registries, and to and from OCI image layouts. Children go
//! before what points to them (blobs, then manifests, then the index), so the target never
//! holds a manifest whose content is missing; manifests keep their exact bytes and so their
//! digests, unless a subset of an index's platforms is asked for, which makes a new index.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use futures::{StreamExt as _, TryStreamExt as _};
use tokio::sync::{OnceCell, Semaphore};
use wharf_oci::{Descriptor, Digest, Manifest, ManifestKind, Reference};

use crate::address::{ImageAddress, LayoutImage};
use crate::client::{Client, TransferSlots};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::platform::PlatformSpec;
use crate::push::{BlobOutcome, BlobSource, Meter, Metered, RegistryBlob, metered};
use crate::repository::Repository;

/// Which images of an index to copy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Platforms {
    /// The image for the platform this program runs on, copied alone (as skopeo does by
    /// default); a manifest that is not an index is copied as it is.
    #[default]
    Host,
    /// The whole index, every image in it.
    All,
    /// The images for these platforms, under a new index that lists only them.
    Only(Vec<PlatformSpec>),
    /// The images for these platforms under the original index, whose other entries then
    /// name manifests the target lacks (a sparse index): the index keeps its digest, and
    /// signatures of it stay valid. Registries refuse one unless told to take it
    /// (Distribution's `validation.manifests.indexes.platforms`); an OCI layout takes it.
    Sparse(Vec<PlatformSpec>),
}

/// What a copy reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A blob's transfer began.
    Started {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes of a blob went out.
    Bytes {
        /// The blob.
        digest: Digest,
        /// Bytes read from the source so far.
        done: u64,
        /// Its size.
        size: u64,
    },
    /// A blob is at the target.
    Finished {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// How it got there.
        outcome: BlobOutcome,
    },
    /// A manifest is at the target.
    Manifest {
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
    },
}

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How to copy.
#[derive(Clone)]
pub struct CopyOptions {
    /// Which images of an index.
    pub platforms: Platforms,
    /// Also copy the manifests that refer to each copied one (signatures, SBOMs), and theirs.
    pub referrers: bool,
    /// How many blobs go at once.
    pub concurrency: usize,
    /// Told of every step.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOptions")
            .field("platforms", &self.platforms)
            .field("referrers", &self.referrers)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions { platforms: Platforms::Host, referrers: false, concurrency: 8, progress: None }
    }
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyReport {
    /// The manifest written at the target's name (a new index when platforms were chosen).
    pub manifest: Option<Descriptor>,
    /// Manifests written, referrers included.
    pub manifests: u64,
    /// Blobs whose bytes were sent, and how many bytes (counting any sent again).
    pub sent: (u64, u64),
    /// Blobs the target had already, and their bytes.
    pub skipped: (u64, u64),
    /// Blobs the target linked from a repository of its own, and their bytes.
    pub mounted: (u64, u64),
}

/// One side of a copy.
#[derive(Debug, Clone)]
enum Side {
    Registry { repository: Repository, reference: Option<String> },
    Layout { layout: Layout, image: Option<LayoutImage> },
}

/// Where an image is, opened for a copy through `client` (used for registry addresses).
fn side(client: &Client, address: &ImageAddress, writing: bool) -> Result<Side> {
    match address {
        ImageAddress::Registry(reference) => {
            Ok(Side::Registry { repository: client.repository_of(reference), reference: reference_text(reference) })
        }
        ImageAddress::Layout { dir, image } => {
            let layout = if writing { Layout::create(dir)? } else { Layout::open(dir)? };
            Ok(Side::Layout { layout, image: image.clone() })
        }
    }
}

fn reference_text(reference: &Reference) -> Option<String> {
    reference.digest().map(ToString::to_string).or_else(|| reference.tag().map(str::to_owned))
}

struct Copier<'a> {
    source: Side,
    target: Side,
    options: &'a CopyOptions,
    /// The copy's own bound on blobs in flight, across every image of an index.
    blobs_at_once: Semaphore,
    /// Each blob's one transfer in this copy.
    blobs: Mutex<HashMap<Digest, Arc<OnceCell<()>>>>,
    max_manifest_bytes: u64,
    report: Mutex<CopyReport>,
}

/// Copies the image at `source` to `target`: `source_client` reaches the source's registry,
/// `target_client` the target's (one client may do both).
///
/// # Errors
/// The first failure; blobs in flight beside it are abandoned, and the target gets no
/// manifest whose content is not all there.
pub async fn copy(
    source_client: &Client,
    source: &ImageAddress,
    target_client: &Client,
    target: &ImageAddress,
    options: &CopyOptions,
) -> Result<CopyReport> {
    let copier = Copier {
        source: side(source_client, source, false)?,
        target: side(target_client, target, true)?,
        options,
        blobs_at_once: Semaphore::new(options.concurrency.max(1)),
        blobs: Mutex::default(),
        max_manifest_bytes: source_client.inner.max_manifest_bytes,
        report: Mutex::default(),
    };
    let top = copier.top_manifest().await?;
    let top = copier.choose_platforms(top).await?;
    // The top manifest is put even when the target has it: its name may point elsewhere.
    copier.copy_manifest(&top, 0).await?;
    let name = copier.target_name(&top);
    copier.put_manifest(&top, name.as_deref()).await?;
    let mut report = copier.report.into_inner().unwrap_or_else(PoisonError::into_inner);
    report.manifest = Some(layout_descriptor(&top));
    Ok(report)
}

/// A descriptor with only what an index entry needs.
fn layout_descriptor(manifest: &Manifest) -> Descriptor {
    Descriptor::new(manifest.media_type(), manifest.digest().clone(), manifest.raw().len() as u64)
}

impl Copier<'_> {
    async fn top_manifest(&self) -> Result<Manifest> {
        match &self.source {
            Side::Registry { repository, reference } => {
                let reference = reference.as_deref().unwrap_or("latest");
                repository.manifest(reference).await
            }
            Side::Layout { layout, image } => {
                let descriptor = layout.resolve(image.as_ref())?;
                layout.manifest(&descriptor, self.max_manifest_bytes)
            }
        }
    }

    async fn manifest(&self, descriptor: &Descriptor) -> Result<Manifest> {
        match &self.source {
            Side::Registry { repository, .. } => repository.manifest(descriptor.digest.as_str()).await,
            Side::Layout { layout, .. } => layout.manifest(descriptor, self.max_manifest_bytes),
        }
    }

    /// The manifest to copy at the top: as it is, its host platform's image, or a new
    /// index of the platforms asked for.
    async fn choose_platforms(&self, top: Manifest) -> Result<Manifest> {
        if !matches!(top.kind(), ManifestKind::OciIndex | ManifestKind::DockerManifestList) {
            return Ok(top);
        }
        let choose = |specs: &[PlatformSpec]| -> Vec<Descriptor> {
            top.manifests()
                .iter()
                .filter(|d| d.platform.as_ref().is_some_and(|p| specs.iter().any(|spec| spec.matches(p))))
                .cloned()
                .collect()
        };
        match &self.options.platforms {
            Platforms::All => Ok(top),
            Platforms::Sparse(specs) => {
                if choose(specs).is_empty() {
                    return Err(Error::Protocol {
                        what: format!("index {}", top.digest()),
                        reason: format!("no image for the platforms asked for ({specs:?})"),
                    });
                }
                Ok(top)
            }
            Platforms::Host => {
                let chosen = choose(&[PlatformSpec::host()]);
                let first = chosen.first().ok_or_else(|| Error::Protocol {
                    what: format!("index {}", top.digest()),
                    reason: format!("no image for {:?}; copy --all or name platforms", PlatformSpec::host()),
                })?;
                self.manifest(first).await
            }
            Platforms::Only(specs) => {
                let chosen = choose(specs);
                if chosen.is_empty() {
                    return Err(Error::Protocol {
                        what: format!("index {}", top.digest()),
                        reason: format!("no image for the platforms asked for ({specs:?})"),
                    });
                }
                let mut document: serde_json::Value = serde_json::from_slice(top.raw())
                    .map_err(|e| Error::Protocol { what: format!("index {}", top.digest()), reason: e.to_string() })?;
                let kept: Vec<&str> = chosen.iter().map(|d| d.digest.as_str()).collect();
                if let Some(entries) = document.get_mut("manifests").and_then(serde_json::Value::as_array_mut) {
                    entries.retain(|entry| entry["digest"].as_str().is_some_and(|d| kept.contains(&d)));
                }
                let bytes = serde_json::to_vec(&document)
                    .map_err(|e| Error::Protocol { what: format!("index {}", top.digest()), reason: e.to_string() })?;
                Manifest::parse(bytes, Some(top.media_type())).map_err(|e| Error::Protocol {
                    what: format!("filtered index of {}", top.digest()),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Copies everything `manifest` points to (and, when asked, what refers to it), then
    /// leaves the manifest itself to the caller; says whether the target has it already.
    /// An image manifest the target holds needs none of its blobs sent: a registry takes a
    /// manifest only once its blobs are there. An index is never taken on trust, since it may
    /// be sparse there. The images of an index go side by side, their blobs within the copy's
    /// concurrency.
    fn copy_manifest<'s>(&'s self, manifest: &'s Manifest, depth: u32) -> BoxFuture<'s, Result<bool>> {
        Box::pin(async move {
            if depth > 8 {
                return Err(Error::Protocol {
                    what: format!("manifest {}", manifest.digest()),
                    reason: "nested too deeply".into(),
                });
            }
            let present = !manifest.kind().is_index() && self.target_has(manifest).await?;
            let children: Vec<BoxFuture<'s, Result<()>>> = manifest
                .manifests()
                .iter()
                .filter(|child| depth > 0 || self.is_copied(child))
                .map(|child| self.copy_child(child, depth + 1))
                .collect();
            let children = futures::stream::iter(children)
                .buffer_unordered(self.options.concurrency.max(1))
                .try_for_each(|()| futures::future::ok(()));
            let blobs: Vec<&Descriptor> = manifest.config().into_iter().chain(manifest.layers()).collect();
            let blobs = async {
                if present {
                    blobs.into_iter().for_each(|blob| self.already_there(blob));
                    return Ok(());
                }
                futures::future::try_join_all(blobs.into_iter().map(|descriptor| self.copy_blob(descriptor)))
                    .await
                    .map(drop)
            };
            futures::try_join!(children, blobs)?;
            if self.options.referrers {
                for referrer in self.source_referrers(manifest.digest()).await? {
                    self.copy_child(&referrer, depth + 1).await?;
                }
            }
            Ok(present)
        })
    }

    /// Copies the manifest `child` names with everything it points to, and puts it.
    fn copy_child<'s>(&'s self, child: &'s Descriptor, depth: u32) -> BoxFuture<'s, Result<()>> {
        Box::pin(async move {
            let child_manifest = self.manifest(child).await?;
            if !self.copy_manifest(&child_manifest, depth).await? {
                self.put_manifest(&child_manifest, None).await?;
            }
            Ok(())
        })
    }

    /// Whether the target's registry holds `manifest` (by digest). A layout is not asked:
    /// its blobs are checked one by one, at the cost of a file's metadata each.
    async fn target_has(&self, manifest: &Manifest) -> Result<bool> {
        match &self.target {
            Side::Registry { repository, .. } => Ok(repository
                .manifest_descriptor(manifest.digest().as_str())
                .await?
                .is_some_and(|found| &found.digest == manifest.digest())),
            Side::Layout { .. } => Ok(false),
        }
    }

    /// Counts `blob` as skipped without asking: its manifest is at the target.
    fn already_there(&self, blob: &Descriptor) {
        add(&mut self.report.lock().unwrap_or_else(PoisonError::into_inner).skipped, blob.size);
        self.tell(&Progress::Finished { digest: blob.digest.clone(), size: blob.size, outcome: BlobOutcome::Skipped });
    }

    /// Whether an entry of the top index is copied: all are, but for a sparse copy.
    fn is_copied(&self, entry: &Descriptor) -> bool {
        match &self.options.platforms {
            Platforms::Sparse(specs) => {
                entry.platform.as_ref().is_some_and(|platform| specs.iter().any(|spec| spec.matches(platform)))
            }
            _ => true,
        }
    }

    async fn source_referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        match &self.source {
            Side::Registry { repository, .. } => repository.referrers(subject, None).await,
            // A layout keeps referrers as images with a subject; skopeo writes none, so a
            // layout is read for them only when it lists them by digest in its index.
            Side::Layout { layout, .. } => layout.referrers(subject, self.max_manifest_bytes),
        }
    }

    /// The name the top manifest gets at the target: the target's tag or digest, else the
    /// source's tag.
    fn target_name(&self, top: &Manifest) -> Option<String> {
        let source_tag = match &self.source {
            Side::Registry { reference, .. } => reference.clone().filter(|r| r.parse::<Digest>().is_err()),
            Side::Layout { image: Some(LayoutImage::Tag(tag)), .. } => Some(tag.as_str().to_owned()),
            Side::Layout { .. } => None,
        };
        let named = match &self.target {
            Side::Registry { reference, .. } => reference.clone(),
            Side::Layout { image: Some(LayoutImage::Tag(tag)), .. } => Some(tag.as_str().to_owned()),
            Side::Layout { image: Some(LayoutImage::Digest(digest)), .. } => Some(digest.to_string()),
            Side::Layout { image: None, .. } => None,
        };
        named.or(source_tag).or_else(|| Some(top.digest().to_string()))
    }

    async fn put_manifest(&self, manifest: &Manifest, name: Option<&str>) -> Result<()> {
        let digest = manifest.digest().to_string();
        match &self.target {
            Side::Registry { repository, .. } => {
                let sparse = matches!(self.options.platforms, Platforms::Sparse(_)) && !manifest.manifests().is_empty();
                repository.push_manifest(name.unwrap_or(&digest), manifest).await.map_err(|error| match error {
                    Error::Status { method, url, status, codes, message } if sparse && status.is_client_error() => {
                        let message = format!(
                            "the target refuses a sparse index (the images left out are not there); \
                             copy every platform or a filtered index instead: {message}"
                        );
                        Error::Status { method, url, status, codes, message }
                    }
                    other => other,
                })?;
            }
            Side::Layout { layout, .. } => {
                layout.write_manifest(manifest).await?;
                // The top manifest is named in the index, and so is a referrer (a layout
                // has no other way to find it); the children of an index are not.
                let tag = name.filter(|n| n.parse::<Digest>().is_err());
                if name.is_some() || manifest.subject().is_some() {
                    layout.add_to_index(&layout_descriptor(manifest), tag)?;
                }
            }
        }
        self.report.lock().unwrap_or_else(PoisonError::into_inner).manifests += 1;
        self.tell(&Progress::Manifest { digest: manifest.digest().clone(), size: manifest.raw().len() as u64 });
        Ok(())
    }

    fn tell(&self, progress: &Progress) {
        if let Some(tell) = &self.options.progress {
            tell(progress);
        }
    }

    /// Copies a blob once per copy: images of an index that share a layer, copied side by
    /// side, wait for the one transfer of it, and count it as already there.
    async fn copy_blob(&self, descriptor: &Descriptor) -> Result<()> {
        let once = self
            .blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(descriptor.digest.clone())
            .or_default()
            .clone();
        let mut first = false;
        once.get_or_try_init(|| {
            first = true;
            self.transfer_blob(descriptor)
        })
        .await?;
        if !first {
            self.already_there(descriptor);
        }
        Ok(())
    }

    async fn transfer_blob(&self, descriptor: &Descriptor) -> Result<()> {
        let (digest, size) = (descriptor.digest.clone(), descriptor.size);
        // Never closed; then the host's places, always in this order.
        let _turn = self.blobs_at_once.acquire().await.ok();
        let _slots = self.transfer_slots().await;
        self.tell(&Progress::Started { digest: digest.clone(), size });
        let meter = self.progress_meter(&digest, size);
        let outcome = match &self.target {
            Side::Registry { repository, .. } => {
                let (source, mount_from): (Box<dyn BlobSource>, _) = match &self.source {
                    Side::Registry { repository: from, .. } => {
                        let blob = RegistryBlob { repository: from.clone(), digest: digest.clone(), size };
                        let same_registry = from.host == repository.host && from.name != repository.name;
                        (Box::new(blob), same_registry.then_some(from.name.as_str()))
                    }
                    Side::Layout { layout, .. } => (Box::new(layout.blob(descriptor)), None),
                };
                let source = Metered { source: source.as_ref(), meter };
                repository.push_blob_in_slot(descriptor, &source, mount_from).await?
            }
            Side::Layout { layout, .. } if layout.has_blob(&digest, size) => BlobOutcome::Skipped,
            Side::Layout { layout, .. } => {
                let (stream, resumes) = match &self.source {
                    // From a registry, the download checks the digest and resumes.
                    Side::Registry { repository, .. } => {
                        let pull = repository.pull_blob_in_slot(&digest, Some(size));
                        let resumes = pull.resume_counter();
                        (pull.boxed(), resumes)
                    }
                    Side::Layout { layout: from, .. } => (from.blob(descriptor).open(0).await?, Arc::default()),
                };
                let sent = layout.write_blob(descriptor, metered(stream, 0, meter)).await?;
                BlobOutcome::Uploaded { sent, resumes: resumes.load(std::sync::atomic::Ordering::Relaxed) }
            }
        };
        {
            let mut report = self.report.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                BlobOutcome::Skipped => add(&mut report.skipped, size),
                BlobOutcome::Mounted => add(&mut report.mounted, size),
                BlobOutcome::Uploaded { sent, .. } => add(&mut report.sent, sent),
            }
        }
        self.tell(&Progress::Finished { digest, size, outcome });
        Ok(())
    }

    /// A place among the transfers of each registry host the copy touches, taken in the
    /// hosts' order (see [`Client::transfer_slots`]).
    async fn transfer_slots(&self) -> Vec<TransferSlots> {
        let mut repositories: Vec<&Repository> = [&self.source, &self.target]
            .into_iter()
            .filter_map(|side| match side {
                Side::Registry { repository, .. } => Some(repository),
                Side::Layout { .. } => None,
            })
            .collect();
        repositories.sort_by(|a, b| a.host.cmp(&b.host));
        match repositories.as_slice() {
            [a, b] if Arc::ptr_eq(&a.client.inner, &b.client.inner) => {
                vec![a.client.transfer_slots(&[&a.host, &b.host]).await]
            }
            _ => {
                let mut slots = Vec::with_capacity(repositories.len());
                for repository in repositories {
                    slots.push(repository.client.transfer_slots(&[&repository.host]).await);
                }
                slots
            }
        }
    }

    /// What tells the caller how far blob `digest`'s bytes got.
    fn progress_meter(&self, digest: &Digest, size: u64) -> Meter {
        let Some(progress) = self.options.progress.clone() else { return Arc::new(|_, _| {}) };
        let digest = digest.clone();
        Arc::new(move |_, done| progress(&Progress::Bytes { digest: digest.clone(), done, size }))
    }
}

fn add(counter: &mut (u64, u64), bytes: u64) {
    counter.0 += 1;
    counter.1 = counter.1.saturating_add(bytes);
}
