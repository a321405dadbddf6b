//! Every blob served hashes to its digest, whatever the requests on one upload do at once:
//! two chunks racing on one upload, a request whose lease ran out while it stalled, and a
//! request dropped midway, on the memory, filesystem and S3 backends.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use wharf_oci::{Digest, RepositoryName};
use wharf_registry::{Error, Registry, RegistryOptions, layout};
use wharf_storage::{Fault, FaultInjector, FilesystemDriver, MemoryDriver, Operation, StorageDriver, StorageDriverExt};

type Chunk = stream::Iter<std::vec::IntoIter<wharf_storage::Result<Bytes>>>;

fn chunk(data: &'static [u8]) -> Chunk {
    stream::iter(vec![Ok(Bytes::from_static(data))])
}

fn name() -> RepositoryName {
    "team/app".parse().unwrap()
}

/// Reads every blob in the store and checks that it hashes to the digest it is stored under;
/// how many there are.
async fn concat(stream: wharf_storage::ByteStream) -> Vec<u8> {
    stream.map_ok(|chunk| chunk.to_vec()).try_concat().await.unwrap()
}

async fn assert_blobs_whole(driver: &dyn StorageDriver) -> usize {
    let blobs: Vec<_> = driver.walk("/docker/registry/v2/blobs", None).try_collect().await.unwrap();
    for blob in &blobs {
        let hex = blob.path.rsplit('/').nth(1).unwrap();
        let stored: Digest = format!("sha256:{hex}").parse().unwrap();
        let content = driver.read_all(&blob.path, 0).await.unwrap();
        assert_eq!(Digest::sha256(&content), stored, "{} holds bytes of another digest", blob.path);
    }
    blobs.len()
}

/// The reproduction of the poisoned blob: one chunk's close held up by 200 ms, a second chunk
/// at the same offset 50 ms later, then the upload finished with the second chunk's digest.
/// The second request is refused while the first holds the upload, and the finish with its
/// digest is refused too: nothing is published under a digest its bytes do not have.
async fn racing_chunks<D: StorageDriver + Clone>(inner: D) {
    let driver = FaultInjector::new(inner);
    let registry = Registry::new(Arc::new(driver.clone()), RegistryOptions::default());
    let repository = registry.repository(&name());
    let upload = repository.start_upload().await.unwrap();
    driver.inject(Fault::delay(Operation::Close, Duration::from_millis(200)).on_paths_containing(&upload.id).times(1));
    let first = repository.append_upload(&upload.id, Some(0), chunk(b"AAAA"));
    let second = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        repository.append_upload(&upload.id, Some(0), chunk(b"BBBB")).await
    };
    let (first, second) = futures::join!(first, second);
    assert_eq!(first.unwrap().size, 4);
    assert!(matches!(second, Err(Error::UploadInUse { .. })), "the second chunk at once: {second:?}");

    let finished = repository.finish_upload::<Chunk>(&upload.id, &Digest::sha256(b"BBBB"), None).await;
    assert!(
        matches!(finished, Err(Error::DigestMismatch { .. })),
        "finished with the refused chunk's digest: {finished:?}"
    );
    // A clean push of those bytes elsewhere is stored, not taken for a copy the registry has.
    let other = registry.repository(&"team/other".parse().unwrap());
    other.put_blob(&Digest::sha256(b"BBBB"), chunk(b"BBBB")).await.unwrap();
    let (_, served) = other.read_blob(&Digest::sha256(b"BBBB"), 0).await.unwrap();
    assert_eq!(concat(served).await, b"BBBB");
    assert_eq!(assert_blobs_whole(&driver).await, 1);
}

/// A request that stalls past its lease's term (its close held up by 300 ms with a term of
/// 100 ms): the next request takes the upload over, and the stalled one's bytes land after
/// it. The registry cannot trust the hash state then, so it hashes the stored bytes: the
/// blob is published only under the digest of what is stored.
async fn stalled_past_the_lease<D: StorageDriver + Clone>(inner: D) {
    let driver = FaultInjector::new(inner);
    let options = RegistryOptions::default().with_upload_lease_term(Duration::from_millis(100));
    let registry = Registry::new(Arc::new(driver.clone()), options);
    let repository = registry.repository(&name());
    for finish_with in [&b"BBBB"[..], b"AAAA", b"BBBBAAAA"] {
        let upload = repository.start_upload().await.unwrap();
        driver.inject(
            Fault::delay(Operation::Close, Duration::from_millis(300)).on_paths_containing(&upload.id).times(1),
        );
        let first = repository.append_upload(&upload.id, Some(0), chunk(b"AAAA"));
        let second = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            repository.append_upload(&upload.id, Some(0), chunk(b"BBBB")).await
        };
        // Either may fail (the first when its lease is gone by its end): what counts is what
        // a finish publishes.
        let _ = futures::join!(first, second);
        let digest = Digest::sha256(finish_with);
        let finished = repository.finish_upload::<Chunk>(&upload.id, &digest, None).await;
        match finished {
            Ok(info) => {
                let (_, served) = repository.read_blob(&info.digest, 0).await.unwrap();
                assert_eq!(concat(served).await, finish_with);
            }
            Err(Error::DigestMismatch { .. } | Error::UploadAbandoned { .. }) => {}
            Err(e) => panic!("finishing with {finish_with:?}: {e}"),
        }
    }
    // Whatever each finish did, no blob holds bytes of another digest, and the refused one
    // (the second chunk alone, which its stalled predecessor's bytes overwrote or followed)
    // is not there.
    assert_blobs_whole(&driver).await;
    assert!(repository.stat_blob(&Digest::sha256(b"BBBB")).await.is_err(), "published the second chunk alone");
}

/// A chunk whose request is dropped after 3 MiB of its body (a timeout, a shutdown): what
/// reached the store is kept and the upload goes on from there at once (its lease freed by
/// the dropped request), also where no hash state was saved at that size.
async fn dropped_midway<D: StorageDriver + Clone>(inner: D) {
    let registry = Registry::new(Arc::new(inner.clone()), RegistryOptions::default());
    let repository = registry.repository(&name());
    let data = wharf_storage::testsuite::test_data(7, 5 << 20);
    let upload = repository.start_upload().await.unwrap();
    let head: Vec<wharf_storage::Result<Bytes>> = (0..3).map(|i| Ok(data.slice(i << 20..(i + 1) << 20))).collect();
    let body = stream::iter(head).chain(stream::pending());
    let appended = tokio::time::timeout(Duration::from_secs(1), repository.append_upload(&upload.id, Some(0), body));
    assert!(appended.await.is_err(), "the request ended by itself");

    let kept = repository.upload_status(&upload.id).await.unwrap().size;
    // The dropped request's lease is freed in a task of its own: the next chunk waits for it.
    let rest = data.slice(usize::try_from(kept).unwrap()..);
    let mut appended = None;
    for _ in 0..200 {
        match repository.append_upload(&upload.id, Some(kept), stream::iter(vec![Ok(rest.clone())])).await {
            Err(Error::UploadInUse { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
            other => {
                appended = Some(other);
                break;
            }
        }
    }
    assert_eq!(appended.expect("the upload stayed in use").unwrap().size, data.len() as u64);
    let digest = Digest::sha256(&data);
    repository.finish_upload::<Chunk>(&upload.id, &digest, None).await.unwrap();
    let (_, served) = repository.read_blob(&digest, 0).await.unwrap();
    assert!(concat(served).await == data, "the blob differs from what was sent");
    assert_blobs_whole(&inner).await;
}

#[tokio::test]
async fn racing_chunks_on_memory() {
    racing_chunks(MemoryDriver::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_chunks_on_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    racing_chunks(FilesystemDriver::new(dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_chunks_on_s3() {
    let Some(driver) = common::s3("integrity-racing").await else { return };
    racing_chunks(driver).await;
}

#[tokio::test]
async fn stalled_past_the_lease_on_memory() {
    stalled_past_the_lease(MemoryDriver::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_past_the_lease_on_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    stalled_past_the_lease(FilesystemDriver::new(dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_past_the_lease_on_s3() {
    let Some(driver) = common::s3("integrity-stalled").await else { return };
    stalled_past_the_lease(driver).await;
}

#[tokio::test]
async fn dropped_midway_on_memory() {
    dropped_midway(MemoryDriver::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_midway_on_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    dropped_midway(FilesystemDriver::new(dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_midway_on_s3() {
    let Some(driver) = common::s3("integrity-dropped").await else { return };
    dropped_midway(driver).await;
}

/// The stored layout names the lease beside Distribution's entries.
#[test]
fn the_lease_lives_in_the_upload_folder() {
    assert_eq!(layout::upload_lease(&name(), "u1"), "/docker/registry/v2/repositories/team/app/_uploads/u1/lease");
}
