//! An embeddable container registry: repositories of blobs, uploads, manifests and tags,
//! stored through any [`StorageDriver`] in CNCF Distribution's layout.
//!
//! A root written by Distribution (`registry:2`) opens here, and what is written here
//! Distribution serves: see [`layout`].
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use futures::stream;
//! use wharf_oci::{Digest, media_type};
//! use wharf_registry::{ManifestReference, Registry, RegistryOptions};
//! use wharf_storage::MemoryDriver;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new(Arc::new(MemoryDriver::new()), RegistryOptions::default());
//! let repository = registry.repository(&"team/app".parse()?);
//!
//! // A blob, pushed in two chunks.
//! let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
//! let upload = repository.start_upload().await?;
//! repository.append_upload(&upload.id, Some(0), stream::iter([Ok(config.slice(..10))])).await?;
//! let blob = repository.finish_upload(&upload.id, &Digest::sha256(&config), Some(stream::iter([Ok(config.slice(10..))]))).await?;
//! assert_eq!(blob.size, config.len() as u64);
//!
//! // A manifest that points to it, tagged.
//! let manifest = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[]}}"#,
//!     media_type::OCI_IMAGE_MANIFEST, media_type::OCI_IMAGE_CONFIG, blob.digest, blob.size,
//! );
//! let digest = repository.put_manifest(&"v1".parse()?, Bytes::from(manifest.clone()), None).await?;
//! let stored = repository.get_manifest(&ManifestReference::Tag("v1".into())).await?;
//! assert_eq!((stored.digest, stored.content), (digest, Bytes::from(manifest)));
//! assert_eq!(repository.tags(None, None).await?, ["v1"]);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use wharf_oci::{Algorithm, Descriptor, Digest, Digester, MAX_MANIFEST_BYTES, Manifest, RepositoryName};
use wharf_storage::{ByteStream, StorageDriver, StorageDriverExt};

mod cache;
mod error;
pub mod gc;
pub mod layout;
mod lease;
mod pulls;

pub use crate::error::{Error, Result};
pub use crate::gc::{GcOptions, GcReport};

/// Settings of a [`Registry`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryOptions {
    /// The largest manifest accepted, 4 MiB by default.
    pub max_manifest_bytes: u64,
    /// Track when manifests are pulled, writing each at most once per this interval; off
    /// (`None`) by default.
    pub pull_tracking_interval: Option<std::time::Duration>,
    /// The term of the lease a request holds on an upload while it writes to it, renewed as
    /// it goes: a request of a process that crashed blocks the upload for at most this long.
    /// One minute by default.
    pub upload_lease_term: std::time::Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            max_manifest_bytes: MAX_MANIFEST_BYTES as u64,
            pull_tracking_interval: None,
            upload_lease_term: std::time::Duration::from_secs(60),
        }
    }
}

impl RegistryOptions {
    /// Sets [`RegistryOptions::upload_lease_term`].
    #[must_use]
    pub fn with_upload_lease_term(mut self, term: std::time::Duration) -> RegistryOptions {
        self.upload_lease_term = term;
        self
    }
}

/// A registry over a storage driver. Clones share the driver.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    driver: Arc<dyn StorageDriver>,
    options: RegistryOptions,
    pulls: pulls::PullLog,
    manifests: cache::ManifestCache,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("driver", &self.inner.driver).field("options", &self.inner.options).finish()
    }
}

/// A blob's address and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    /// The upload's id, as in `/v2/<name>/blobs/uploads/<id>`.
    pub id: String,
    /// How many bytes it holds; the next chunk starts here.
    pub size: u64,
}

/// An upload removed (or, in a dry run, to be removed) by [`Registry::purge_uploads`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedUpload {
    /// Its repository.
    pub repository: RepositoryName,
    /// Its id.
    pub id: String,
    /// When it started.
    pub started: SystemTime,
}

/// How a manifest is asked for: by tag or by digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ManifestReference {
    /// A tag, such as `latest`.
    Tag(String),
    /// A digest, such as `sha256:…`.
    Digest(Digest),
}

impl FromStr for ManifestReference {
    type Err = Error;

    /// A digest when the text has a `:` (which no tag has), else a tag.
    fn from_str(text: &str) -> Result<Self> {
        if text.contains(':') {
            let digest = text.parse().map_err(Error::ManifestInvalid)?;
            Ok(ManifestReference::Digest(digest))
        } else {
            wharf_oci::validate_tag(text).map_err(Error::TagInvalid)?;
            Ok(ManifestReference::Tag(text.to_owned()))
        }
    }
}

impl fmt::Display for ManifestReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestReference::Tag(tag) => f.write_str(tag),
            ManifestReference::Digest(digest) => write!(f, "{digest}"),
        }
    }
}

/// A manifest as stored: the exact bytes pushed, their digest and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// The digest of `content`.
    pub digest: Digest,
    /// The manifest's media type (its `mediaType`, or the kind it was recognised as).
    pub media_type: String,
    /// The bytes, exactly as pushed.
    pub content: Bytes,
}

impl Registry {
    /// A registry storing through `driver`.
    pub fn new(driver: Arc<dyn StorageDriver>, options: RegistryOptions) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                driver,
                options,
                pulls: pulls::PullLog::default(),
                manifests: cache::ManifestCache::default(),
            }),
        }
    }

    /// The storage driver underneath.
    pub fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.inner.driver
    }

    /// The settings it was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.inner.options
    }

    /// A repository of this registry (it exists once something is pushed to it).
    pub fn repository(&self, name: &RepositoryName) -> Repository {
        Repository { registry: self.clone(), name: name.clone() }
    }

    /// Repository names in the order of their path components (`a`, `a/b`, `a-b`), after
    /// `last` (exclusive) and at most `n` of them. A repository is listed once it has a
    /// manifest folder, as Distribution does.
    ///
    /// A page costs one listing per repository folder it visits: the folders before `last`
    /// are skipped without being read.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn catalog(&self, n: Option<usize>, last: Option<&RepositoryName>) -> Result<Vec<RepositoryName>> {
        let mut found = Vec::new();
        if n == Some(0) {
            return Ok(found);
        }
        self.visit_repository_folders(last, |name, children| {
            if children.iter().any(|c| c == "_manifests") {
                found.push(name.clone());
            }
            n.is_none_or(|n| found.len() < n)
        })
        .await?;
        Ok(found)
    }

    /// Walks the repository folders depth first in the order of their path components,
    /// calling `visit` with each folder's name and the names of its entries, after `after`;
    /// stops when `visit` returns false.
    async fn visit_repository_folders(
        &self,
        after: Option<&RepositoryName>,
        mut visit: impl FnMut(&RepositoryName, &[String]) -> bool,
    ) -> Result<()> {
        let after: Option<Vec<&str>> = after.map(|name| name.components().collect());
        let root = layout::repositories();
        // Folders still to visit, as component lists; the next one is at the end.
        let mut stack: Vec<Vec<String>> = vec![Vec::new()];
        while let Some(parts) = stack.pop() {
            let dir = if parts.is_empty() { root.clone() } else { format!("{root}/{}", parts.join("/")) };
            let children: Vec<String> = match self.inner.driver.list(&dir).await {
                Ok(paths) => paths.into_iter().filter_map(|p| p.rsplit('/').next().map(str::to_owned)).collect(),
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let is_after = |candidate: &[String]| {
                after.as_ref().is_none_or(|after| {
                    let candidate: Vec<&str> = candidate.iter().map(String::as_str).collect();
                    candidate.as_slice() > after.as_slice()
                })
            };
            if !parts.is_empty()
                && is_after(&parts)
                && let Ok(name) = parts.join("/").parse::<RepositoryName>()
                && !visit(&name, &children)
            {
                return Ok(());
            }
            let mut subfolders: Vec<Vec<String>> = children
                .iter()
                .filter(|child| !child.starts_with('_'))
                .map(|child| {
                    let mut child_parts = parts.clone();
                    child_parts.push(child.clone());
                    child_parts
                })
                .filter(|child| {
                    // Keep what comes after `after`, and the folders on the way to it.
                    is_after(child)
                        || after.as_ref().is_some_and(|after| {
                            after.len() >= child.len() && child.iter().zip(after.iter()).all(|(a, b)| a == b)
                        })
                })
                .collect();
            subfolders.sort();
            stack.extend(subfolders.into_iter().rev());
        }
        Ok(())
    }

    /// Every repository, including those with only uploads or layers.
    async fn all_repositories(&self) -> Result<Vec<RepositoryName>> {
        let mut all = Vec::new();
        self.visit_repository_folders(None, |name, children| {
            if children.iter().any(|c| c.starts_with('_')) {
                all.push(name.clone());
            }
            true
        })
        .await?;
        Ok(all)
    }

    /// Removes uploads started more than `max_age` ago (Distribution's `uploadpurging`).
    /// Uploads whose start time cannot be read are left alone.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn purge_uploads(&self, max_age: std::time::Duration, dry_run: bool) -> Result<Vec<PurgedUpload>> {
        let cutoff = SystemTime::now().checked_sub(max_age).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut purged = Vec::new();
        for repository in self.all_repositories().await? {
            let ids = match self.inner.driver.list(&layout::uploads(&repository)).await {
                Ok(paths) => paths,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for path in ids {
                let Some(id) = path.rsplit('/').next() else {
                    continue;
                };
                let started = match self.inner.driver.get_content(&layout::upload_started_at(&repository, id)).await {
                    Ok(text) => humantime::parse_rfc3339_weak(String::from_utf8_lossy(&text).trim()).ok(),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e.into()),
                };
                let Some(started) = started.filter(|started| *started < cutoff) else {
                    continue;
                };
                if !dry_run {
                    match self.inner.driver.delete(&layout::upload_dir(&repository, id)).await {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                purged.push(PurgedUpload { repository: repository.clone(), id: id.to_owned(), started });
            }
        }
        Ok(purged)
    }

    /// The bytes of every blob stored, shared ones counted once.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn usage(&self) -> Result<u64> {
        let blobs = self.inner.driver.walk(&layout::blobs(), None);
        blobs
            .try_fold(0, |total, file| async move {
                Ok(if file.path.ends_with("/data") { total + file.size } else { total })
            })
            .await
            .map_err(Error::from)
    }

    async fn read_link(&self, path: &str) -> Result<Option<Digest>> {
        match self.inner.driver.get_content(path).await {
            Ok(content) => {
                let text = String::from_utf8_lossy(&content);
                let digest =
                    text.trim().parse().map_err(|source| Error::CorruptLink { path: path.to_owned(), source })?;
                Ok(Some(digest))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_link(&self, path: &str, digest: &Digest) -> Result<()> {
        Ok(self.inner.driver.put_content(path, Bytes::from(digest.to_string())).await?)
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.inner.driver.stat(&layout::blob_data(digest)).await {
            Ok(info) if !info.is_dir => Ok(Some(info.size)),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// One repository of a [`Registry`].
#[derive(Clone)]
pub struct Repository {
    registry: Registry,
    name: RepositoryName,
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository").field("name", &self.name).finish()
    }
}

/// Where an upload's content is once its digest is verified.
enum Verified {
    /// Still in the upload's writer, to be published where the blob goes.
    Staged(Box<dyn wharf_storage::FileWriter>),
    /// Published at the upload's own data path.
    Published,
}

fn new_upload_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Repository {
    /// The repository's name.
    pub fn name(&self) -> &RepositoryName {
        &self.name
    }

    fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.registry.inner.driver
    }

    // ----- blobs -----

    /// The size of a blob the repository has.
    ///
    /// # Errors
    /// [`Error::BlobUnknown`] when the repository does not link it (or its data is gone).
    pub async fn stat_blob(&self, digest: &Digest) -> Result<BlobInfo> {
        let unknown = || Error::BlobUnknown { repository: self.name.clone(), digest: digest.clone() };
        let linked = self.registry.read_link(&layout::layer_link(&self.name, digest)).await?;
        if linked.as_ref() != Some(digest) {
            return Err(unknown());
        }
        let size = self.registry.blob_size(digest).await?.ok_or_else(unknown)?;
        Ok(BlobInfo { digest: digest.clone(), size })
    }

    /// Streams a blob from `offset`.
    ///
    /// # Errors
    /// [`Error::BlobUnknown`]; storage errors such as an offset past the end.
    pub async fn read_blob(&self, digest: &Digest, offset: u64) -> Result<(BlobInfo, ByteStream)> {
        let info = self.stat_blob(digest).await?;
        let stream = self.driver().reader(&layout::blob_data(digest), offset).await?;
        Ok((info, stream))
    }

    /// A URL the client can fetch the blob from directly, where the store has one (S3's
    /// presigned URLs).
    ///
    /// # Errors
    /// [`Error::BlobUnknown`]; storage errors.
    pub async fn blob_url(&self, digest: &Digest, method: wharf_storage::RedirectMethod) -> Result<Option<url::Url>> {
        self.stat_blob(digest).await?;
        Ok(self.driver().redirect_url(&layout::blob_data(digest), method).await?)
    }

    /// Whether anything of the repository is stored (a manifest, a blob link, an upload).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn exists(&self) -> Result<bool> {
        Ok(self.driver().exists(&layout::repository(&self.name)).await?)
    }

    /// Removes a blob from the repository (its data stays until garbage collection).
    ///
    /// # Errors
    /// [`Error::BlobUnknown`] when the repository does not have it.
    pub async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        self.stat_blob(digest).await?;
        self.driver().delete(&layout::layer_dir(&self.name, digest)).await?;
        Ok(())
    }

    /// Links a blob that repository `from` has into this one, without copying it.
    ///
    /// # Errors
    /// [`Error::BlobUnknown`] when `from` does not have it.
    pub async fn mount_blob(&self, digest: &Digest, from: &RepositoryName) -> Result<BlobInfo> {
        let info = self.registry.repository(from).stat_blob(digest).await?;
        self.registry.write_link(&layout::layer_link(&self.name, digest), digest).await?;
        // Write, then verify: a garbage collection may have set the blob aside meanwhile.
        if self.registry.blob_size(digest).await?.is_none() {
            let _ = self.driver().delete(&layout::layer_dir(&self.name, digest)).await;
            return Err(Error::BlobUnknown { repository: from.clone(), digest: digest.clone() });
        }
        Ok(info)
    }

    /// Links a blob the registry holds into this repository, whichever repository pushed
    /// it: the spec's mount without `from`. The caller decides whether the client may read
    /// what it names (a registry whose users may each read only some repositories should not
    /// offer this).
    ///
    /// # Errors
    /// [`Error::BlobUnknown`] when the registry does not have it.
    pub async fn link_blob(&self, digest: &Digest) -> Result<BlobInfo> {
        let unknown = || Error::BlobUnknown { repository: self.name.clone(), digest: digest.clone() };
        let size = self.registry.blob_size(digest).await?.ok_or_else(unknown)?;
        self.registry.write_link(&layout::layer_link(&self.name, digest), digest).await?;
        // Write, then verify: a garbage collection may have set the blob aside meanwhile.
        if self.registry.blob_size(digest).await?.is_none() {
            let _ = self.driver().delete(&layout::layer_dir(&self.name, digest)).await;
            return Err(unknown());
        }
        Ok(BlobInfo { digest: digest.clone(), size })
    }

    /// Stores a whole blob whose digest is known up front; the content is verified before it
    /// becomes visible.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] when the content hashes to something else (nothing is stored).
    pub async fn put_blob<S>(&self, expected: &Digest, content: S) -> Result<BlobInfo>
    where
        S: Stream<Item = wharf_storage::Result<Bytes>> + Send + Unpin,
    {
        let upload = self.start_upload().await?;
        self.finish_upload(&upload.id, expected, Some(content)).await
    }

    // ----- uploads -----

    /// Starts an upload.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn start_upload(&self) -> Result<UploadStatus> {
        let id = new_upload_id();
        let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        // An upload's state is scratch: a crash may lose it, and the client starts over. Its
        // start time and its (empty) data are written at once.
        let (stamped, opened) = futures::future::join(
            self.driver().put_scratch(&layout::upload_started_at(&self.name, &id), Bytes::from(started)),
            async { self.driver().writer(&layout::upload_data(&self.name, &id), false).await?.close().await },
        )
        .await;
        if let Err(e) = stamped.and(opened) {
            let _ = self.driver().delete(&layout::upload_dir(&self.name, &id)).await;
            return Err(e.into());
        }
        Ok(UploadStatus { id, size: 0 })
    }

    /// How far an upload has come.
    ///
    /// # Errors
    /// [`Error::UploadUnknown`] when there is no such upload.
    pub async fn upload_status(&self, id: &str) -> Result<UploadStatus> {
        let writer = self.open_upload(id).await?;
        Ok(UploadStatus { id: id.to_owned(), size: writer.size() })
    }

    /// Appends a chunk to an upload. `offset`, when given, must be the upload's size.
    ///
    /// When the stream fails midway, what arrived is kept (with its hash state), so the client
    /// can ask for the status and go on from there.
    ///
    /// # Errors
    /// [`Error::UploadUnknown`], [`Error::UploadOffset`] (nothing is written then),
    /// [`Error::UploadAbandoned`], or the stream's or the store's error.
    pub async fn append_upload<S>(&self, id: &str, offset: Option<u64>, chunk: S) -> Result<UploadStatus>
    where
        S: Stream<Item = wharf_storage::Result<Bytes>> + Send + Unpin,
    {
        let mut lease = self.lease_upload(id).await?;
        let appended = async {
            let (mut writer, mut digester) = self.resume_upload(id, offset).await?;
            let received = self.receive(id, writer.as_mut(), &mut digester, chunk, &mut lease).await;
            // What arrived is kept, failure or not, unless another request may have the upload
            // now: then this writer is dropped, and what it wrote since it opened with it.
            self.confirm(id, &mut lease).await?;
            // The state first, so that a state exists for every size the data can be found at.
            let state_path = layout::upload_hash_state(&self.name, id, Algorithm::Sha256, digester.len());
            self.driver().put_scratch(&state_path, Bytes::from(digester.save_state())).await?;
            let size = writer.size();
            writer.close().await?;
            received?;
            Ok(UploadStatus { id: id.to_owned(), size })
        }
        .await;
        self.release_upload(id, lease, &appended).await;
        appended
    }

    /// Completes an upload with its last chunk (if any): the content is verified against
    /// `expected`, and becomes the blob in this repository.
    ///
    /// The content's digest comes from the hash state the upload's requests kept, which only
    /// one request at a time writes (through the upload's lease). When the lease was ever
    /// taken from a request that did not finish (its process crashed or stalled, its future was
    /// dropped), the state may not describe the stored bytes: the bytes are then read back
    /// and hashed before anything is published.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] (the upload is discarded), [`Error::UploadUnknown`],
    /// [`Error::UploadInUse`], or the stream's or the store's error.
    pub async fn finish_upload<S>(&self, id: &str, expected: &Digest, last_chunk: Option<S>) -> Result<BlobInfo>
    where
        S: Stream<Item = wharf_storage::Result<Bytes>> + Send + Unpin,
    {
        let mut lease = self.lease_upload(id).await?;
        let finished = self.finish_leased(id, expected, last_chunk, &mut lease).await;
        self.release_upload(id, lease, &finished).await;
        finished
    }

    async fn finish_leased<S>(
        &self,
        id: &str,
        expected: &Digest,
        last_chunk: Option<S>,
        lease: &mut lease::Lease,
    ) -> Result<BlobInfo>
    where
        S: Stream<Item = wharf_storage::Result<Bytes>> + Send + Unpin,
    {
        // Whether the registry has the blob already is asked while the upload is reopened.
        let (resumed, existing) =
            futures::future::join(self.resume_upload(id, None), self.registry.blob_size(expected)).await;
        let (mut writer, mut digester) = resumed?;
        let existing = existing?.is_some();
        if let Some(chunk) = last_chunk
            && let Err(e) = self.receive(id, writer.as_mut(), &mut digester, chunk, lease).await
        {
            if !matches!(e, Error::UploadInUse { .. }) {
                lease.abandon();
                let _ = writer.cancel().await;
                let _ = self.discard_upload(id).await;
            }
            return Err(e);
        }
        self.confirm(id, lease).await?;
        let size = writer.size();
        let content = if expected.algorithm() == Algorithm::Sha256 && !lease.was_taken_over() {
            let actual = digester.finalize();
            if actual != *expected {
                lease.abandon();
                let _ = writer.cancel().await;
                let _ = self.discard_upload(id).await;
                return Err(Error::DigestMismatch { expected: expected.clone(), actual });
            }
            Verified::Staged(writer)
        } else {
            // The saved state is sha256's, or may not describe the stored bytes: hash what was
            // published at the upload's own path, before it becomes the blob.
            writer.commit().await?;
            let mut other = Digester::new(expected.algorithm());
            let mut stream = self.driver().reader(&layout::upload_data(&self.name, id), 0).await?;
            while let Some(chunk) = stream.try_next().await? {
                other.update(&chunk);
            }
            if let Err(wharf_oci::Error::DigestMismatch { actual, .. }) = other.verify(expected) {
                lease.abandon();
                let _ = self.discard_upload(id).await;
                return Err(Error::DigestMismatch { expected: expected.clone(), actual });
            }
            Verified::Published
        };
        let upload_dir = layout::upload_dir(&self.name, id);
        let link = layout::layer_link(&self.name, expected);
        // Write, then verify: a garbage collection may set the blob aside at any time.
        if existing {
            // The registry has these bytes: link them, and keep ours only if a collection
            // took the other copy meanwhile.
            self.registry.write_link(&link, expected).await?;
            if self.registry.blob_size(expected).await?.is_none() {
                self.place_blob(id, expected, content).await?;
            } else if let Verified::Staged(writer) = content {
                writer.cancel().await?;
            }
            lease.abandon();
            self.driver().delete(&upload_dir).await?;
        } else {
            // The blob and its link are written at once, so that their disk flushes overlap.
            // Until the blob is in place the link points at nothing, which reads as an unknown
            // blob, as it did before.
            let (placed, linked) = futures::future::join(
                self.place_blob(id, expected, content),
                self.registry.write_link(&link, expected),
            )
            .await;
            if let Err(e) = placed {
                if linked.is_ok() {
                    let _ = self.driver().delete(&layout::layer_dir(&self.name, expected)).await;
                }
                return Err(e);
            }
            linked?;
            // The upload's data is the blob now, so the upload reads as unknown already; its
            // start time, lease and hash states go after the answer.
            lease.abandon();
            self.discard_leftovers(upload_dir).await;
            if self.registry.blob_size(expected).await?.is_none() {
                // Ours was taken: the client uploads again.
                return Err(Error::BlobUnknown { repository: self.name.clone(), digest: expected.clone() });
            }
        }
        Ok(BlobInfo { digest: expected.clone(), size })
    }

    /// Takes the upload's lease: one request at a time writes to an upload.
    async fn lease_upload(&self, id: &str) -> Result<lease::Lease> {
        check_upload_id(&self.name, id)?;
        let path = layout::upload_lease(&self.name, id);
        let term = self.registry.inner.options.upload_lease_term;
        match lease::Lease::acquire(self.driver().clone(), path, term).await {
            Ok(lease) => Ok(lease),
            // The lease of an upload that finished a moment ago may outlive it: the upload is
            // unknown then, not busy.
            Err(lease::LeaseError::Held) => match self.open_upload(id).await {
                Ok(_) => Err(Error::UploadInUse { id: id.to_owned() }),
                Err(e) => Err(e),
            },
            Err(lease::LeaseError::Storage(e)) => Err(e.into()),
        }
    }

    /// Confirms the upload's lease is still this request's (renewing it as it goes).
    async fn confirm(&self, id: &str, lease: &mut lease::Lease) -> Result<()> {
        match lease.confirm().await {
            Ok(()) => Ok(()),
            Err(lease::LeaseError::Held) => Err(Error::UploadInUse { id: id.to_owned() }),
            Err(lease::LeaseError::Storage(e)) => Err(e.into()),
        }
    }

    /// Gives the upload's lease up after a request. When the upload turned out not to exist,
    /// the lease's file goes, so that it leaves no folder behind.
    async fn release_upload<T>(&self, id: &str, lease: lease::Lease, outcome: &Result<T>) {
        if matches!(outcome, Err(Error::UploadUnknown { .. })) {
            let mut lease = lease;
            lease.abandon();
            let _ = self.driver().delete(&layout::upload_lease(&self.name, id)).await;
            return;
        }
        // A lease that cannot be released ends with its term.
        let _ = lease.release().await;
    }

    /// Abandons an upload and everything it received.
    ///
    /// # Errors
    /// [`Error::UploadUnknown`] when there is no such upload.
    pub async fn cancel_upload(&self, id: &str) -> Result<()> {
        // Checked first: a malformed id names no folder to clear up.
        check_upload_id(&self.name, id)?;
        // An upload is known by its data: what is left of a finished one may outlive it for a
        // moment (see `discard_leftovers`).
        if let Err(e) = self.open_upload(id).await {
            if matches!(e, Error::UploadUnknown { .. }) {
                let _ = self.driver().delete(&layout::upload_dir(&self.name, id)).await;
            }
            return Err(e);
        }
        self.discard_upload(id).await
    }

    /// Removes an upload's folder: its data, start time and hash states.
    async fn discard_upload(&self, id: &str) -> Result<()> {
        check_upload_id(&self.name, id)?;
        match self.driver().delete(&layout::upload_dir(&self.name, id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => {
                Err(Error::UploadUnknown { repository: self.name.clone(), id: id.to_owned() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the folder of an upload whose data is gone (placed as a blob), in a task of its
    /// own where there is a Tokio runtime, so the client has its answer without waiting for the
    /// folder removals. Should that fail, or the process stop first, purging removes what is
    /// left, as for any upload that was abandoned.
    async fn discard_leftovers(&self, upload_dir: String) {
        let driver = self.driver().clone();
        let removal = async move {
            let _ = driver.delete(&upload_dir).await;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(removal)),
            Err(_) => removal.await,
        }
    }

    /// Makes an upload's verified content the blob, replacing any copy already there.
    async fn place_blob(&self, id: &str, digest: &Digest, content: Verified) -> Result<()> {
        let blob = layout::blob_data(digest);
        let published_here = match content {
            Verified::Staged(writer) => writer.commit_to(&blob).await?,
            Verified::Published => false,
        };
        if !published_here {
            self.driver().rename(&layout::upload_data(&self.name, id), &blob).await?;
        }
        Ok(())
    }

    async fn open_upload(&self, id: &str) -> Result<Box<dyn wharf_storage::FileWriter>> {
        check_upload_id(&self.name, id)?;
        match self.driver().writer(&layout::upload_data(&self.name, id), true).await {
            Ok(writer) => Ok(writer),
            Err(e) if e.is_not_found() => {
                Err(Error::UploadUnknown { repository: self.name.clone(), id: id.to_owned() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reopens an upload's data and its hash state at the data's size. When no state was saved
    /// at that size (a request was stopped midway, after some of its bytes reached the store),
    /// the largest saved state below it is taken, and the bytes after it are read back from
    /// the store and hashed, as Distribution does.
    async fn resume_upload(
        &self,
        id: &str,
        offset: Option<u64>,
    ) -> Result<(Box<dyn wharf_storage::FileWriter>, Digester)> {
        let mut writer = self.open_upload(id).await?;
        let size = writer.size();
        if let Some(offset) = offset.filter(|&offset| offset != size) {
            // Dropping the writer unused leaves the upload as it was.
            return Err(Error::UploadOffset { id: id.to_owned(), expected: size, offset });
        }
        if size == 0 {
            return Ok((writer, Digester::new(Algorithm::Sha256)));
        }
        let abandoned = |reason: String| Error::UploadAbandoned { id: id.to_owned(), size, reason };
        let state_path = layout::upload_hash_state(&self.name, id, Algorithm::Sha256, size);
        let (mut digester, from) = match self.driver().get_content(&state_path).await {
            Ok(state) => (Digester::restore_state(&state).map_err(|e| abandoned(e.to_string()))?, size),
            Err(e) if e.is_not_found() => match self.saved_state_below(id, size).await? {
                Some((at, state)) => (Digester::restore_state(&state).map_err(|e| abandoned(e.to_string()))?, at),
                None => (Digester::new(Algorithm::Sha256), 0),
            },
            Err(e) => return Err(e.into()),
        };
        if digester.len() != from {
            return Err(abandoned(format!("the hash state saved at {from} bytes covers {}", digester.len())));
        }
        if from < size {
            let mut gap = writer
                .read_back(from)
                .await
                .map_err(|e| abandoned(format!("no hash state at {size} bytes, and the bytes after {from}: {e}")))?;
            while let Some(chunk) = gap.try_next().await? {
                digester.update(&chunk);
            }
            if digester.len() != size {
                return Err(abandoned(format!("read back {} of {size} bytes", digester.len())));
            }
        }
        Ok((writer, digester))
    }

    /// The largest hash state saved below `size` bytes, with its offset.
    async fn saved_state_below(&self, id: &str, size: u64) -> Result<Option<(u64, Bytes)>> {
        let dir = layout::upload_hash_states(&self.name, id, Algorithm::Sha256);
        let saved = match self.driver().list(&dir).await {
            Ok(paths) => paths,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut offsets: Vec<u64> = saved
            .iter()
            .filter_map(|path| path.rsplit('/').next()?.parse().ok())
            .filter(|&offset| offset < size)
            .collect();
        offsets.sort_unstable();
        while let Some(offset) = offsets.pop() {
            match self.driver().get_content(&layout::upload_hash_state(&self.name, id, Algorithm::Sha256, offset)).await
            {
                Ok(state) => return Ok(Some((offset, state))),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    async fn receive<S>(
        &self,
        id: &str,
        writer: &mut dyn wharf_storage::FileWriter,
        digester: &mut Digester,
        mut chunk: S,
        lease: &mut lease::Lease,
    ) -> Result<()>
    where
        S: Stream<Item = wharf_storage::Result<Bytes>> + Send + Unpin,
    {
        while let Some(bytes) = chunk.next().await {
            let bytes = bytes?;
            self.confirm(id, lease).await?;
            writer.write(bytes.clone()).await?;
            digester.update(&bytes);
        }
        Ok(())
    }

    // ----- manifests -----

    /// Stores a manifest under a tag or its digest. Everything it references (but its
    /// `subject`) must be in the repository.
    ///
    /// # Errors
    /// [`Error::ManifestTooLarge`], [`Error::ManifestInvalid`], [`Error::DigestMismatch`] when
    /// pushed by a digest it does not have, [`Error::ManifestBlobUnknown`].
    pub async fn put_manifest(
        &self,
        reference: &ManifestReference,
        content: Bytes,
        content_type: Option<&str>,
    ) -> Result<Digest> {
        let limit = self.registry.inner.options.max_manifest_bytes;
        if content.len() as u64 > limit {
            return Err(Error::ManifestTooLarge { size: content.len() as u64, limit });
        }
        let manifest = Manifest::parse(content.clone(), content_type).map_err(Error::ManifestInvalid)?;
        let digest = match reference {
            ManifestReference::Digest(expected) => {
                let actual = manifest.digest_with(expected.algorithm());
                if actual != *expected {
                    return Err(Error::DigestMismatch { expected: expected.clone(), actual });
                }
                actual
            }
            ManifestReference::Tag(_) => manifest.digest().clone(),
        };
        self.check_references(&manifest).await?;

        if self.registry.blob_size(&digest).await?.is_none() {
            self.driver().put_content(&layout::blob_data(&digest), content).await?;
        }
        self.registry.write_link(&layout::revision_link(&self.name, &digest), &digest).await?;
        // Write, then verify: a garbage collection may have set a reference aside meanwhile.
        if let Err(e) = self.check_references(&manifest).await {
            let _ = self.driver().delete(&layout::revision_dir(&self.name, &digest)).await;
            return Err(e);
        }
        if let Some(subject) = manifest.subject() {
            let mut descriptor = manifest.descriptor();
            descriptor.digest = digest.clone();
            let entry = serde_json::to_vec(&descriptor).map_err(|e| {
                Error::Storage(wharf_storage::Error::Backend {
                    driver: "registry",
                    operation: "encode referrer",
                    path: layout::referrers(&self.name, &subject.digest),
                    source: Box::new(e),
                })
            })?;
            let path = layout::referrer_entry(&self.name, &subject.digest, &digest);
            self.driver().put_content(&path, Bytes::from(entry)).await?;
        }
        if let ManifestReference::Tag(tag) = reference {
            self.tag(tag, &digest).await?;
        }
        Ok(digest)
    }

    async fn check_references(&self, manifest: &Manifest) -> Result<()> {
        let subject = manifest.subject().map(|s| s.digest.clone());
        let is_index = manifest.kind().is_index();
        // Owned digests, so that the future stays `Send` for any caller.
        let digests: Vec<Digest> = manifest
            .references()
            .filter(|d| Some(&d.digest) != subject.as_ref())
            // Foreign layers are fetched from their URLs, not from the registry.
            .filter(|d| d.urls.as_ref().is_none_or(|urls| urls.is_empty()))
            .map(|d| d.digest.clone())
            .collect();
        for batch in digests.chunks(16) {
            futures::future::try_join_all(batch.iter().map(|digest| self.check_reference(digest, is_index))).await?;
        }
        Ok(())
    }

    async fn check_reference(&self, digest: &Digest, is_manifest: bool) -> Result<()> {
        let link = if is_manifest {
            layout::revision_link(&self.name, digest)
        } else {
            layout::layer_link(&self.name, digest)
        };
        let linked = self.registry.read_link(&link).await?;
        if linked.as_ref() == Some(digest) && self.registry.blob_size(digest).await?.is_some() {
            Ok(())
        } else {
            Err(Error::ManifestBlobUnknown { repository: self.name.clone(), digest: digest.clone() })
        }
    }

    /// The digest a reference points to, if the repository has that manifest.
    ///
    /// # Errors
    /// [`Error::ManifestUnknown`].
    pub async fn resolve(&self, reference: &ManifestReference) -> Result<Digest> {
        let unknown = || Error::ManifestUnknown { repository: self.name.clone(), reference: reference.to_string() };
        let digest = match reference {
            ManifestReference::Tag(tag) => {
                self.registry.read_link(&layout::tag_current(&self.name, tag)).await?.ok_or_else(unknown)?
            }
            ManifestReference::Digest(digest) => digest.clone(),
        };
        match self.registry.read_link(&layout::revision_link(&self.name, &digest)).await? {
            Some(linked) if linked == digest => Ok(digest),
            _ => Err(unknown()),
        }
    }

    /// A manifest's bytes, digest and media type.
    ///
    /// # Errors
    /// [`Error::ManifestUnknown`].
    pub async fn get_manifest(&self, reference: &ManifestReference) -> Result<StoredManifest> {
        let digest = self.resolve(reference).await?;
        if let Some((media_type, content)) = self.registry.inner.manifests.get(&digest) {
            return Ok(StoredManifest { digest, media_type, content });
        }
        let content = match self.driver().get_content(&layout::blob_data(&digest)).await {
            Ok(content) => content,
            Err(e) if e.is_not_found() => {
                return Err(Error::ManifestUnknown { repository: self.name.clone(), reference: reference.to_string() });
            }
            Err(e) => return Err(e.into()),
        };
        let manifest = Manifest::parse(content.clone(), None).map_err(Error::ManifestInvalid)?;
        let media_type = manifest.media_type().to_owned();
        self.registry.inner.manifests.insert(digest.clone(), media_type.clone(), content.clone());
        Ok(StoredManifest { digest, media_type, content })
    }

    /// Deletes a manifest and every tag that points to it.
    ///
    /// # Errors
    /// [`Error::ManifestUnknown`].
    pub async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        let digest = self.resolve(&ManifestReference::Digest(digest.clone())).await?;
        if let Ok(stored) = self.get_manifest(&ManifestReference::Digest(digest.clone())).await
            && let Ok(manifest) = Manifest::parse(stored.content, None)
            && let Some(subject) = manifest.subject()
        {
            match self.driver().delete(&layout::referrer_dir(&self.name, &subject.digest, &digest)).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        for tag in self.tags(None, None).await? {
            if self.registry.read_link(&layout::tag_current(&self.name, &tag)).await?.as_ref() == Some(&digest) {
                self.untag(&tag).await?;
            }
        }
        self.driver().delete(&layout::revision_dir(&self.name, &digest)).await?;
        Ok(())
    }

    // ----- referrers -----

    /// The manifests whose `subject` is `subject`, as descriptors (media type, digest, size,
    /// artifact type, annotations), sorted by digest; only those of `artifact_type` when given.
    /// The subject itself need not be in the repository.
    ///
    /// # Errors
    /// Storage errors; [`Error::CorruptLink`] for an entry that is not a descriptor.
    pub async fn referrers(&self, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>> {
        let dir = layout::referrers(&self.name, subject);
        let entries: Vec<wharf_storage::FileInfo> = self.driver().walk(&dir, None).try_collect().await?;
        let mut found = Vec::new();
        for entry in entries.into_iter().filter(|e| e.path.ends_with("/descriptor")) {
            let content = match self.driver().get_content(&entry.path).await {
                Ok(content) => content,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let descriptor: Descriptor = serde_json::from_slice(&content).map_err(|e| Error::CorruptLink {
                path: entry.path.clone(),
                source: wharf_oci::Error::InvalidManifest { reason: e.to_string() },
            })?;
            if artifact_type.is_some_and(|wanted| descriptor.artifact_type.as_deref() != Some(wanted)) {
                continue;
            }
            // A referrer deleted behind our back (by another registry on the same store).
            if self.resolve(&ManifestReference::Digest(descriptor.digest.clone())).await.is_err() {
                continue;
            }
            found.push(descriptor);
        }
        found.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(found)
    }

    // ----- usage -----

    /// The bytes of every blob and manifest the repository links, each counted once.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn usage(&self) -> Result<u64> {
        let mut digests = std::collections::BTreeSet::new();
        for dir in [layout::layers(&self.name), layout::revisions(&self.name)] {
            let links: Vec<wharf_storage::FileInfo> = self.driver().walk(&dir, None).try_collect().await?;
            for link in links {
                if let Some(digest) = link_digest(&link.path) {
                    digests.insert(digest);
                }
            }
        }
        let mut total = 0;
        for digest in digests {
            total += self.registry.blob_size(&digest).await?.unwrap_or(0);
        }
        Ok(total)
    }

    // ----- tags -----

    /// The tags, in lexical order, after `last` (exclusive) and at most `n` of them.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn tags(&self, n: Option<usize>, last: Option<&str>) -> Result<Vec<String>> {
        // A tag is listed when its current link exists, so a tag whose removal was cut short
        // by a crash is not. The folder names come from one listing; only the links of the
        // page are looked at.
        let names: Vec<String> = match self.driver().list(&layout::tags(&self.name)).await {
            Ok(paths) => paths
                .iter()
                .filter_map(|path| path.rsplit('/').next())
                .filter(|tag| last.is_none_or(|last| *tag > last))
                .map(str::to_owned)
                .collect(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let wanted = n.unwrap_or(usize::MAX);
        let mut tags = Vec::new();
        for batch in names.chunks(256) {
            if tags.len() >= wanted {
                break;
            }
            let links = batch.iter().map(|tag| layout::tag_current(&self.name, tag)).collect();
            let found = self.driver().stat_many(links).await?;
            tags.extend(
                batch
                    .iter()
                    .zip(found)
                    .filter(|(_, link)| link.as_ref().is_some_and(|l| !l.is_dir))
                    .map(|(tag, _)| tag.clone()),
            );
        }
        // Listings come sorted by path; sort by name all the same, whatever the backend.
        tags.sort_unstable();
        tags.truncate(wanted);
        Ok(tags)
    }

    /// Points `tag` at a manifest the repository has.
    ///
    /// # Errors
    /// [`Error::TagInvalid`], [`Error::ManifestUnknown`].
    pub async fn tag(&self, tag: &str, digest: &Digest) -> Result<()> {
        wharf_oci::validate_tag(tag).map_err(Error::TagInvalid)?;
        let reference = ManifestReference::Digest(digest.clone());
        self.resolve(&reference).await?;
        // The current link first: a crash between the two leaves a working tag.
        self.registry.write_link(&layout::tag_current(&self.name, tag), digest).await?;
        self.registry.write_link(&layout::tag_index_entry(&self.name, tag, digest), digest).await?;
        // Write, then verify: a garbage collection may have removed the manifest meanwhile.
        if let Err(e) = self.resolve(&reference).await {
            let _ = self.driver().delete(&layout::tag_dir(&self.name, tag)).await;
            return Err(e);
        }
        Ok(())
    }

    /// Removes a tag (the manifest stays).
    ///
    /// # Errors
    /// [`Error::ManifestUnknown`] when there is no such tag.
    pub async fn untag(&self, tag: &str) -> Result<()> {
        wharf_oci::validate_tag(tag).map_err(Error::TagInvalid)?;
        // The current link first: from then on the tag is gone, whatever a crash leaves.
        let current = format!("{}/current", layout::tag_dir(&self.name, tag));
        let existed = match self.driver().delete(&current).await {
            Ok(()) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e.into()),
        };
        match self.driver().delete(&layout::tag_dir(&self.name, tag)).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if existed {
            Ok(())
        } else {
            Err(Error::ManifestUnknown { repository: self.name.clone(), reference: tag.to_owned() })
        }
    }
}

/// The digest a link file's path names (`…/<alg>/<hex>/link`).
pub(crate) fn link_digest(path: &str) -> Option<Digest> {
    let mut parts = path.rsplit('/');
    let (_link, hex, algorithm) = (parts.next()?, parts.next()?, parts.next()?);
    format!("{algorithm}:{hex}").parse().ok()
}

/// Upload ids are path segments: refuse anything that could name another path.
fn check_upload_id(repository: &RepositoryName, id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid { Ok(()) } else { Err(Error::UploadUnknown { repository: repository.clone(), id: id.to_owned() }) }
}
