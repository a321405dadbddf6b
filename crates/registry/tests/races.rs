//! Uploads at awkward moments: a push that finishes while a garbage collection takes the blob
//! away (the collection's move played just as the push links the blob), on the memory and
//! filesystem backends; an upload whose start fails halfway; a blob that cannot be placed; a
//! finished upload whose leftovers cannot be removed; and cancels of malformed upload ids.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use wharf_oci::{Digest, RepositoryName};
use wharf_registry::{Error, Registry, RegistryOptions, layout};
use wharf_storage::{
    ByteStream, Durability, Fault, FaultInjector, FileInfo, FileWriter, FilesystemDriver, MemoryDriver, Operation,
    Precondition, RedirectMethod, Result, StorageDriver, StorageDriverExt, Version,
};

/// A driver that, when the link `armed` names is written, moves the blob away as a collection
/// would (once): as soon as the blob is in place, which may be before or after the link.
#[derive(Debug)]
struct TakesTheBlob {
    inner: Arc<dyn StorageDriver>,
    armed: Mutex<Option<(String, Digest)>>,
}

impl TakesTheBlob {
    fn arm(&self, link: String, digest: Digest) {
        *self.armed.lock().unwrap_or_else(PoisonError::into_inner) = Some((link, digest));
    }
}

#[async_trait]
impl StorageDriver for TakesTheBlob {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        self.inner.get_content(path).await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<()> {
        let taken = {
            let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
            if armed.as_ref().is_some_and(|(link, _)| link == path) { armed.take() } else { None }
        };
        self.inner.put_content(path, content).await?;
        if let Some((_, digest)) = taken {
            let blob = layout::blob_data(&digest);
            for _ in 0..5000 {
                if self.inner.stat(&blob).await.is_ok() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            self.inner.rename(&blob, "/taken-by-the-collector").await?;
        }
        Ok(())
    }

    async fn put_scratch(&self, path: &str, content: Bytes) -> Result<()> {
        self.inner.put_scratch(path, content).await
    }

    async fn get_versioned(&self, path: &str) -> Result<(Bytes, Version)> {
        self.inner.get_versioned(path).await
    }

    async fn put_if(
        &self,
        path: &str,
        content: Bytes,
        precondition: Precondition,
        durability: Durability,
    ) -> Result<Version> {
        self.inner.put_if(path, content, precondition, durability).await
    }

    async fn reader(&self, path: &str, offset: u64) -> Result<ByteStream> {
        self.inner.reader(path, offset).await
    }

    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>> {
        self.inner.writer(path, append).await
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        self.inner.stat(path).await
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        self.inner.list(path).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.rename(from, to).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path).await
    }

    fn walk(&self, path: &str, start_after: Option<&str>) -> BoxStream<'static, Result<FileInfo>> {
        self.inner.walk(path, start_after)
    }

    async fn redirect_url(&self, path: &str, method: RedirectMethod) -> Result<Option<url::Url>> {
        self.inner.redirect_url(path, method).await
    }
}

fn chunk(data: &'static [u8]) -> stream::Iter<std::vec::IntoIter<Result<Bytes>>> {
    stream::iter(vec![Ok(Bytes::from_static(data))])
}

/// Waits for what is left of a repository's finished uploads to be removed, which happens
/// after the push has its answer.
async fn assert_uploads_gone(driver: &dyn StorageDriver, name: &RepositoryName) {
    let what = format!("the removal of {name}'s finished uploads");
    wharf_testing::eventually(&what, std::time::Duration::from_secs(5), async || {
        driver.walk(&layout::uploads(name), None).count().await == 0
    })
    .await;
}

/// A registry over `inner` with faults to inject, and its repository `team/app`.
fn with_faults<D: StorageDriver + Clone + 'static>(inner: D) -> (FaultInjector<D>, Registry, RepositoryName) {
    let driver = FaultInjector::new(inner);
    let registry = Registry::new(Arc::new(driver.clone()), RegistryOptions::default());
    (driver, registry, "team/app".parse().unwrap())
}

async fn collection_during_push(inner: Arc<dyn StorageDriver>) {
    let driver = Arc::new(TakesTheBlob { inner, armed: Mutex::new(None) });
    let registry = Registry::new(driver.clone(), RegistryOptions::default());
    let (first, second): (RepositoryName, RepositoryName) =
        ("team/first".parse().unwrap(), "team/second".parse().unwrap());
    let data: &'static [u8] = b"a layer both repositories push";
    let digest = Digest::sha256(data);

    // The registry has the blob when the second push finishes, and loses it just as the push
    // links it: the pushed copy takes its place.
    registry.repository(&first).put_blob(&digest, chunk(data)).await.unwrap();
    driver.arm(layout::layer_link(&second, &digest), digest.clone());
    let second_repository = registry.repository(&second);
    second_repository.put_blob(&digest, chunk(data)).await.unwrap();
    assert_eq!(driver.read_all(&layout::blob_data(&digest), 0).await.unwrap(), data);
    assert_eq!(driver.get_content("/taken-by-the-collector").await.unwrap(), data);
    assert_eq!(second_repository.stat_blob(&digest).await.unwrap().size, data.len() as u64);
    assert_uploads_gone(driver.as_ref(), &second).await;

    // A blob the registry has: pushed again, it is linked, and the upload leaves nothing.
    let third: RepositoryName = "team/third".parse().unwrap();
    registry.repository(&third).put_blob(&digest, chunk(data)).await.unwrap();
    assert_eq!(registry.repository(&third).stat_blob(&digest).await.unwrap().size, data.len() as u64);
    assert_uploads_gone(driver.as_ref(), &third).await;

    // A new blob taken just as it is linked: the push fails, so the client pushes again, and
    // then it is there.
    let fresh: &'static [u8] = b"a layer only one repository pushes";
    let fresh_digest = Digest::sha256(fresh);
    driver.delete("/taken-by-the-collector").await.unwrap();
    driver.arm(layout::layer_link(&first, &fresh_digest), fresh_digest.clone());
    let repository = registry.repository(&first);
    match repository.put_blob(&fresh_digest, chunk(fresh)).await {
        Err(Error::BlobUnknown { digest, .. }) => assert_eq!(digest, fresh_digest),
        other => panic!("expected BlobUnknown, got {other:?}"),
    }
    assert_uploads_gone(driver.as_ref(), &first).await;
    repository.put_blob(&fresh_digest, chunk(fresh)).await.unwrap();
    assert_eq!(driver.read_all(&layout::blob_data(&fresh_digest), 0).await.unwrap(), fresh);
}

#[tokio::test]
async fn on_memory() {
    collection_during_push(Arc::new(MemoryDriver::new())).await;
}

#[tokio::test]
async fn on_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    collection_during_push(Arc::new(FilesystemDriver::new(dir.path()).unwrap())).await;
}

/// An upload whose start fails halfway leaves nothing behind, staged or visible.
#[tokio::test]
async fn a_failed_start_leaves_nothing() {
    for failing in [Operation::PutContent, Operation::Writer, Operation::Close] {
        let dir = tempfile::tempdir().unwrap();
        let (driver, registry, name) = with_faults(FilesystemDriver::new(dir.path()).unwrap());
        driver.inject(Fault::fail(failing));
        assert!(registry.repository(&name).start_upload().await.is_err(), "{failing:?}");
        driver.clear();
        let mut left = Vec::new();
        let mut folders = vec![dir.path().to_path_buf()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() { folders.push(path) } else { left.push(path) }
            }
        }
        assert!(left.is_empty(), "{failing:?} left {left:?}");
    }
}

/// A new blob that cannot be put in place fails its push without leaving a link (written at
/// the same time) behind: the repository does not claim the blob, and the client's retry
/// stores it.
async fn unplaceable_blob<D: StorageDriver + Clone + 'static>(inner: D) {
    let (driver, registry, name) = with_faults(inner);
    let repository = registry.repository(&name);
    let data: &'static [u8] = b"a layer the disk refuses once";
    let digest = Digest::sha256(data);

    driver.inject(Fault::fail(Operation::Commit).times(1));
    let err = repository.put_blob(&digest, chunk(data)).await.unwrap_err();
    assert!(err.to_string().contains("injected fault in Commit"), "{err}");
    assert!(
        matches!(driver.stat(&layout::layer_link(&name, &digest)).await, Err(e) if e.is_not_found()),
        "the link outlived the failed push"
    );
    assert!(matches!(repository.stat_blob(&digest).await, Err(Error::BlobUnknown { .. })));

    repository.put_blob(&digest, chunk(data)).await.unwrap();
    assert_eq!(repository.stat_blob(&digest).await.unwrap().size, data.len() as u64);
    assert_eq!(driver.read_all(&layout::blob_data(&digest), 0).await.unwrap(), data);
}

#[tokio::test]
async fn a_blob_that_cannot_be_placed_leaves_no_link_on_memory() {
    unplaceable_blob(MemoryDriver::new()).await;
}

#[tokio::test]
async fn a_blob_that_cannot_be_placed_leaves_no_link_on_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    unplaceable_blob(FilesystemDriver::new(dir.path()).unwrap()).await;
}

/// A finished upload is gone for the client at once, although what is left of it (its start
/// time and hash state) is removed after the answer: here that removal fails, and the upload
/// still reads as unknown to a status request, a chunk and a cancel. Purging removes the rest.
async fn leftovers_of_a_finished_upload<D: StorageDriver + Clone + 'static>(inner: D) {
    let (driver, registry, name) = with_faults(inner);
    let repository = registry.repository(&name);
    let data: &'static [u8] = b"a layer pushed in two requests";
    let digest = Digest::sha256(data);

    driver.inject(Fault::fail(Operation::Delete).on_paths_containing("/_uploads/"));
    let upload = repository.start_upload().await.unwrap();
    repository.append_upload(&upload.id, Some(0), chunk(data)).await.unwrap();
    let info = repository.finish_upload::<stream::Iter<std::vec::IntoIter<Result<Bytes>>>>(&upload.id, &digest, None);
    assert_eq!(info.await.unwrap().size, data.len() as u64);
    // The removal was tried, and failed.
    wharf_testing::eventually(
        "the removal of the leftovers after the answer",
        std::time::Duration::from_secs(5),
        async || driver.injected() > 0,
    )
    .await;
    let started_at = layout::upload_started_at(&name, &upload.id);
    assert!(driver.stat(&started_at).await.is_ok(), "the leftovers are gone: the test shows nothing");

    let unknown = |result: std::result::Result<_, Error>| matches!(result, Err(Error::UploadUnknown { .. }));
    assert!(unknown(repository.upload_status(&upload.id).await.map(|_| ())));
    assert!(unknown(repository.append_upload(&upload.id, None, chunk(b"more")).await.map(|_| ())));
    assert!(unknown(repository.cancel_upload(&upload.id).await));
    assert_eq!(repository.stat_blob(&digest).await.unwrap().size, data.len() as u64);

    driver.clear();
    let purged = registry.purge_uploads(std::time::Duration::ZERO, false).await.unwrap();
    assert_eq!(purged.iter().map(|purged| purged.id.as_str()).collect::<Vec<_>>(), [upload.id.as_str()]);
    assert_uploads_gone(&driver, &name).await;
    assert_eq!(driver.read_all(&layout::blob_data(&digest), 0).await.unwrap(), data);
}

#[tokio::test]
async fn leftovers_of_a_finished_upload_on_memory() {
    leftovers_of_a_finished_upload(MemoryDriver::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_finished_upload_on_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    leftovers_of_a_finished_upload(FilesystemDriver::new(dir.path()).unwrap()).await;
}

/// Cancelling a malformed upload id answers `UploadUnknown` without removing anything: no path
/// is built from the id, so a driver that does not check its paths is safe too.
#[tokio::test]
async fn a_malformed_upload_id_is_cancelled_without_removals() {
    let (driver, registry, name) = with_faults(MemoryDriver::new());
    driver.inject(Fault::fail(Operation::Delete));
    let repository = registry.repository(&name);
    for id in ["..", "a/b", "", &"x".repeat(129)] {
        assert!(matches!(repository.cancel_upload(id).await, Err(Error::UploadUnknown { .. })), "{id:?}");
    }
    assert_eq!(driver.injected(), 0, "a removal was tried");
}

/// A flush of pull times that fails for one of them writes all the others, and keeps the one
/// that failed for the next flush.
#[tokio::test]
async fn a_failed_pull_time_loses_no_other() {
    let driver = FaultInjector::new(MemoryDriver::new());
    let mut options = RegistryOptions::default();
    options.pull_tracking_interval = Some(std::time::Duration::from_secs(60));
    let registry = Registry::new(Arc::new(driver.clone()), options);
    let name: RepositoryName = "team/app".parse().unwrap();
    let repository = registry.repository(&name);
    let digests: Vec<Digest> = (0..8).map(|i| Digest::sha256(format!("manifest {i}").as_bytes())).collect();
    for digest in &digests {
        repository.record_pull(digest);
    }
    driver.inject(Fault::fail(Operation::PutContent).on_paths_containing(digests[3].hex()).times(1));
    assert!(registry.flush_pulls().await.is_err(), "the failed write went unreported");

    // What the store has, as a registry that starts now reads it.
    let reader = Registry::new(Arc::new(driver.clone()), RegistryOptions::default());
    let stored = async |digest: &Digest| reader.repository(&name).last_pulled(digest).await.unwrap().is_some();
    for (i, digest) in digests.iter().enumerate() {
        assert_eq!(stored(digest).await, i != 3, "pull time {i} after the failed flush");
    }
    assert_eq!(registry.flush_pulls().await.unwrap(), 1, "the failed one is written at the next flush");
    assert!(stored(&digests[3]).await);
}

/// A manifest push that found the manifest's bytes already stored, and lost them while it
/// wrote its links (a collection that took the manifest for untagged set them aside and
/// deleted them), writes them again before it answers: what it acknowledges is readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_push_keeps_bytes_that_vanish_meanwhile() {
    let faults = FaultInjector::new(MemoryDriver::new());
    let registry = Registry::new(Arc::new(faults.clone()), RegistryOptions::default());
    let repository = registry.repository(&"team/app".parse().unwrap());
    let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let config_digest = Digest::sha256(&config);
    repository.put_blob(&config_digest, stream::iter(vec![Ok(config.clone())])).await.unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let digest = Digest::sha256(manifest.as_bytes());
    // An earlier push stored the bytes; the collector will take them as this one goes on.
    faults.put_content(&layout::blob_data(&digest), Bytes::from(manifest.clone())).await.unwrap();
    faults.inject(
        Fault::delay(Operation::PutContent, std::time::Duration::from_millis(300)).on_paths_containing("/_manifests/"),
    );
    let push = {
        let repository = repository.clone();
        let manifest = Bytes::from(manifest.clone());
        tokio::spawn(async move { repository.put_manifest(&"v1".parse().unwrap(), manifest, None).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    faults.inner().delete(&layout::blob_data(&digest)).await.unwrap();
    assert_eq!(push.await.unwrap().unwrap(), digest);
    faults.clear();
    let stored = repository.get_manifest(&"v1".parse().unwrap()).await.expect("the acknowledged manifest");
    assert_eq!(stored.content, Bytes::from(manifest));
}
