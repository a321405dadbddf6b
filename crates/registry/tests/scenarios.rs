//! The registry's behaviours, each written once and run on the memory and filesystem
//! backends.

use std::sync::Arc;

mod common;
use common::{image_manifest, s3_driver};

use bytes::Bytes;
use futures::stream;
use wharf_oci::{Digest, RepositoryName, media_type};
use wharf_registry::{Error, ManifestReference, Registry, RegistryOptions, Repository, layout};
use wharf_storage::{FilesystemDriver, MemoryDriver, StorageDriver};

type Chunk = stream::Iter<std::vec::IntoIter<wharf_storage::Result<Bytes>>>;

fn chunk(data: &[u8]) -> Chunk {
    stream::iter(vec![Ok(Bytes::copy_from_slice(data))])
}

fn name(text: &str) -> RepositoryName {
    text.parse().unwrap()
}

async fn push_blob(repository: &Repository, data: &[u8]) -> Digest {
    let digest = Digest::sha256(data);
    repository.put_blob(&digest, chunk(data)).await.unwrap();
    digest
}

/// Pushes a config and one layer and a manifest tagged `tag`; returns the manifest's digest.
async fn push_image(repository: &Repository, tag: &str, seed: &str) -> Digest {
    let config = format!(r#"{{"seed":"{seed}"}}"#);
    let layer = format!("layer of {seed}");
    let config_digest = push_blob(repository, config.as_bytes()).await;
    let layer_digest = push_blob(repository, layer.as_bytes()).await;
    let manifest = image_manifest(&config_digest, config.len(), &[(&layer_digest, layer.len())]);
    repository.put_manifest(&tag.parse().unwrap(), Bytes::from(manifest), None).await.unwrap()
}

async fn chunked_upload_with_resume(registry: &Registry) {
    let repository = registry.repository(&name("team/app"));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256(&data);
    let upload = repository.start_upload().await.unwrap();
    assert_eq!(upload.size, 0);
    let status = repository.append_upload(&upload.id, Some(0), chunk(&data[..30_000])).await.unwrap();
    assert_eq!(status.size, 30_000);
    // A new registry over the same store stands for a restarted process.
    let restarted = Registry::new(registry.driver().clone(), RegistryOptions::default());
    let repository = restarted.repository(&name("team/app"));
    assert_eq!(repository.upload_status(&upload.id).await.unwrap().size, 30_000);
    match repository.append_upload(&upload.id, Some(10), chunk(b"x")).await {
        Err(Error::UploadOffset { expected: 30_000, offset: 10, .. }) => {}
        other => panic!("a chunk at the wrong offset: {other:?}"),
    }
    repository.append_upload(&upload.id, None, chunk(&data[30_000..90_000])).await.unwrap();
    let blob = repository.finish_upload(&upload.id, &digest, Some(chunk(&data[90_000..]))).await.unwrap();
    assert_eq!(blob.size, data.len() as u64);
    let (info, stream) = repository.read_blob(&digest, 0).await.unwrap();
    assert_eq!(info.size, data.len() as u64);
    let read: Vec<Bytes> = futures::TryStreamExt::try_collect(stream).await.unwrap();
    assert_eq!(read.concat(), data);
    assert!(matches!(repository.upload_status(&upload.id).await, Err(Error::UploadUnknown { .. })));
}

async fn digest_mismatch_stores_nothing(registry: &Registry) {
    let repository = registry.repository(&name("team/app"));
    let claimed = Digest::sha256(b"what the client claims");
    let upload = repository.start_upload().await.unwrap();
    match repository.finish_upload(&upload.id, &claimed, Some(chunk(b"what it sends"))).await {
        Err(Error::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, Digest::sha256(b"what it sends"));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(matches!(repository.stat_blob(&claimed).await, Err(Error::BlobUnknown { .. })));
    let actual = Digest::sha256(b"what it sends");
    assert!(registry.driver().stat(&layout::blob_data(&actual)).await.unwrap_err().is_not_found());
    assert!(matches!(repository.upload_status(&upload.id).await, Err(Error::UploadUnknown { .. })));
}

async fn sha512_blobs_and_empty_blobs(registry: &Registry) {
    let repository = registry.repository(&name("team/app"));
    let digest = Digest::sha512(b"sha512 content");
    let blob = repository.put_blob(&digest, chunk(b"sha512 content")).await.unwrap();
    assert_eq!(blob.size, 14);
    assert_eq!(repository.stat_blob(&digest).await.unwrap().size, 14);
    let wrong = Digest::sha512(b"other");
    assert!(matches!(repository.put_blob(&wrong, chunk(b"sha512 content")).await, Err(Error::DigestMismatch { .. })));
    let empty = Digest::sha256(b"");
    assert_eq!(repository.put_blob(&empty, stream::iter(Vec::new())).await.unwrap().size, 0);
    assert_eq!(repository.stat_blob(&empty).await.unwrap().size, 0);
}

async fn mount_and_delete_blobs(registry: &Registry) {
    let source = registry.repository(&name("source"));
    let target = registry.repository(&name("target"));
    let digest = push_blob(&source, b"shared layer").await;
    assert!(matches!(target.stat_blob(&digest).await, Err(Error::BlobUnknown { .. })));
    assert_eq!(target.mount_blob(&digest, source.name()).await.unwrap().size, 12);
    assert_eq!(target.stat_blob(&digest).await.unwrap().size, 12);
    let missing = Digest::sha256(b"nowhere");
    assert!(matches!(target.mount_blob(&missing, source.name()).await, Err(Error::BlobUnknown { .. })));
    target.delete_blob(&digest).await.unwrap();
    assert!(matches!(target.stat_blob(&digest).await, Err(Error::BlobUnknown { .. })));
    assert_eq!(source.stat_blob(&digest).await.unwrap().size, 12);
}

async fn manifests_by_tag_and_digest(registry: &Registry) {
    let repository = registry.repository(&name("library/app"));
    let digest = push_image(&repository, "v1", "one").await;
    let by_tag = repository.get_manifest(&ManifestReference::Tag("v1".parse().unwrap())).await.unwrap();
    let by_digest = repository.get_manifest(&ManifestReference::Digest(digest.clone())).await.unwrap();
    assert_eq!(by_tag, by_digest);
    assert_eq!(by_tag.digest, digest);
    assert_eq!(by_tag.media_type, media_type::OCI_IMAGE_MANIFEST);
    assert_eq!(Digest::sha256(&by_tag.content), digest);

    // Pushed by digest: the digest must be the content's, in the algorithm given.
    let again = repository.get_manifest(&"v1".parse().unwrap()).await.unwrap().content;
    let sha512 = Digest::sha512(&again);
    assert_eq!(
        repository.put_manifest(&ManifestReference::Digest(sha512.clone()), again.clone(), None).await.unwrap(),
        sha512
    );
    assert_eq!(repository.get_manifest(&ManifestReference::Digest(sha512)).await.unwrap().content, again);
    let wrong = Digest::sha256(b"not it");
    assert!(matches!(
        repository.put_manifest(&ManifestReference::Digest(wrong), again, None).await,
        Err(Error::DigestMismatch { .. })
    ));

    // A reference the repository lacks is named.
    let missing = Digest::sha256(b"missing layer");
    let config = push_blob(&repository, b"{}").await;
    let manifest = image_manifest(&config, 2, &[(&missing, 13)]);
    match repository.put_manifest(&"broken".parse().unwrap(), Bytes::from(manifest), None).await {
        Err(Error::ManifestBlobUnknown { digest, .. }) => assert_eq!(digest, missing),
        other => panic!("expected MANIFEST_BLOB_UNKNOWN, got {other:?}"),
    }
    assert!(repository.tags(None, None).await.unwrap().iter().all(|t| t != "broken"));

    // Too large, and malformed.
    let small = Registry::new(registry.driver().clone(), {
        let mut options = RegistryOptions::default();
        options.max_manifest_bytes = 64;
        options
    });
    let huge = Bytes::from(vec![b' '; 65]);
    assert!(matches!(
        small.repository(repository.name()).put_manifest(&"x".parse().unwrap(), huge, None).await,
        Err(Error::ManifestTooLarge { size: 65, limit: 64 })
    ));
    assert!(matches!(
        repository.put_manifest(&"x".parse().unwrap(), Bytes::from_static(b"{}"), None).await,
        Err(Error::ManifestInvalid(_))
    ));
    assert!(matches!(repository.get_manifest(&"nope".parse().unwrap()).await, Err(Error::ManifestUnknown { .. })));
}

async fn indexes_need_their_children(registry: &Registry) {
    let repository = registry.repository(&name("multi"));
    let amd64 = push_image(&repository, "amd64", "amd64").await;
    let arm64 = push_image(&repository, "arm64", "arm64").await;
    let size = |d: &Digest| {
        let repository = repository.clone();
        let d = d.clone();
        async move { repository.get_manifest(&ManifestReference::Digest(d)).await.unwrap().content.len() }
    };
    let index = common::image_index;
    let (amd64_size, arm64_size) = (size(&amd64).await, size(&arm64).await);
    let digest = repository
        .put_manifest(
            &"latest".parse().unwrap(),
            Bytes::from(index(&[(&amd64, amd64_size), (&arm64, arm64_size)])),
            None,
        )
        .await
        .unwrap();
    assert_eq!(repository.get_manifest(&"latest".parse().unwrap()).await.unwrap().digest, digest);
    let missing = Digest::sha256(b"no such child");
    match repository.put_manifest(&"bad".parse().unwrap(), Bytes::from(index(&[(&missing, 10)])), None).await {
        Err(Error::ManifestBlobUnknown { digest, .. }) => assert_eq!(digest, missing),
        other => panic!("expected MANIFEST_BLOB_UNKNOWN, got {other:?}"),
    }
}

async fn tags_page_and_deletes(registry: &Registry) {
    let repository = registry.repository(&name("tags"));
    let digest = push_image(&repository, "b", "shared").await;
    for tag in ["a", "c", "b-1", "B"] {
        repository.tag(tag, &digest).await.unwrap();
    }
    let other = push_image(&repository, "z", "other").await;
    assert_eq!(repository.tags(None, None).await.unwrap(), ["B", "a", "b", "b-1", "c", "z"]);
    assert_eq!(repository.tags(Some(2), None).await.unwrap(), ["B", "a"]);
    assert_eq!(repository.tags(Some(2), Some("a")).await.unwrap(), ["b", "b-1"]);
    assert_eq!(repository.tags(None, Some("c")).await.unwrap(), ["z"]);
    assert!(repository.tags(Some(0), None).await.unwrap().is_empty());
    assert!(matches!(repository.tag("bad tag", &digest).await, Err(Error::TagInvalid(_))));

    repository.untag("a").await.unwrap();
    assert!(matches!(repository.untag("a").await, Err(Error::ManifestUnknown { .. })));
    repository.delete_manifest(&digest).await.unwrap();
    assert_eq!(repository.tags(None, None).await.unwrap(), ["z"]);
    assert!(matches!(
        repository.get_manifest(&ManifestReference::Digest(digest.clone())).await,
        Err(Error::ManifestUnknown { .. })
    ));
    assert!(matches!(repository.tag("again", &digest).await, Err(Error::ManifestUnknown { .. })));
    assert_eq!(repository.get_manifest(&"z".parse().unwrap()).await.unwrap().digest, other);
}

async fn listings_with_link_times(registry: &Registry) {
    let repository = registry.repository(&name("listed"));
    assert!(repository.manifest_revisions().await.unwrap().is_empty());
    assert!(repository.tag_links().await.unwrap().is_empty());
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
    let first = push_image(&repository, "v1", "first").await;
    let second = push_image(&repository, "v2", "second").await;
    repository.tag("also-first", &first).await.unwrap();
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    let revisions = repository.manifest_revisions().await.unwrap();
    assert_eq!(revisions.iter().map(|r| r.digest.clone()).collect::<Vec<_>>(), expected);
    assert!(revisions.iter().all(|r| r.linked >= before), "{revisions:?}");
    let links = repository.tag_links().await.unwrap();
    let named: Vec<(&str, &Digest)> = links.iter().map(|l| (l.tag.as_str(), &l.digest)).collect();
    assert_eq!(named, [("also-first", &first), ("v1", &first), ("v2", &second)]);
    assert!(links.iter().all(|l| l.linked >= before));
    repository.untag("v2").await.unwrap();
    repository.delete_manifest(&second).await.unwrap();
    assert_eq!(repository.manifest_revisions().await.unwrap().len(), 1);
    assert_eq!(repository.tag_links().await.unwrap().len(), 2);
}

async fn failed_chunk_keeps_what_arrived(registry: &Registry) {
    let repository = registry.repository(&name("flaky"));
    let upload = repository.start_upload().await.unwrap();
    let broken = stream::iter(vec![
        Ok(Bytes::from_static(b"first part ")),
        Err(wharf_storage::Error::Backend {
            driver: "test",
            operation: "read the body",
            path: "/".into(),
            source: "connection reset".into(),
        }),
    ]);
    assert!(repository.append_upload(&upload.id, Some(0), broken).await.is_err());
    let status = repository.upload_status(&upload.id).await.unwrap();
    assert_eq!(status.size, 11);
    let digest = Digest::sha256(b"first part second part");
    repository.finish_upload(&upload.id, &digest, Some(chunk(b"second part"))).await.unwrap();
    assert_eq!(repository.stat_blob(&digest).await.unwrap().size, 22);
}

async fn cancelled_uploads_are_gone(registry: &Registry) {
    let repository = registry.repository(&name("cancel"));
    let upload = repository.start_upload().await.unwrap();
    repository.append_upload(&upload.id, None, chunk(b"data")).await.unwrap();
    repository.cancel_upload(&upload.id).await.unwrap();
    assert!(matches!(repository.upload_status(&upload.id).await, Err(Error::UploadUnknown { .. })));
    assert!(matches!(repository.cancel_upload(&upload.id).await, Err(Error::UploadUnknown { .. })));
    for bad in ["", "..", "a/b", "../../x"] {
        assert!(matches!(repository.upload_status(bad).await, Err(Error::UploadUnknown { .. })), "{bad:?}");
    }
}

async fn run_all(driver: Arc<dyn StorageDriver>) {
    let registry = Registry::new(driver, RegistryOptions::default());
    chunked_upload_with_resume(&registry).await;
    digest_mismatch_stores_nothing(&registry).await;
    sha512_blobs_and_empty_blobs(&registry).await;
    mount_and_delete_blobs(&registry).await;
    manifests_by_tag_and_digest(&registry).await;
    indexes_need_their_children(&registry).await;
    tags_page_and_deletes(&registry).await;
    listings_with_link_times(&registry).await;
    failed_chunk_keeps_what_arrived(&registry).await;
    cancelled_uploads_are_gone(&registry).await;
    catalog_pages(&registry).await;
    purging_old_uploads(&registry).await;
    referrers_are_listed_and_filtered(&registry).await;
    usage_counts_shared_blobs_once(&registry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() {
    run_all(Arc::new(MemoryDriver::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    run_all(Arc::new(FilesystemDriver::new(dir.path()).unwrap())).await;
}

/// The files sit where Distribution puts them.
#[tokio::test]
async fn filesystem_layout_is_distributions() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(Arc::new(FilesystemDriver::new(dir.path()).unwrap()), RegistryOptions::default());
    let repository = registry.repository(&name("library/app"));
    let digest = push_image(&repository, "v1", "layout").await;
    let v2 = dir.path().join("docker/registry/v2");
    let hex = digest.hex();
    let blob = v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]));
    assert_eq!(Digest::sha256(&std::fs::read(blob).unwrap()), digest);
    let repo = v2.join("repositories/library/app/_manifests");
    assert_eq!(std::fs::read_to_string(repo.join(format!("revisions/sha256/{hex}/link"))).unwrap(), digest.to_string());
    assert_eq!(std::fs::read_to_string(repo.join("tags/v1/current/link")).unwrap(), digest.to_string());
    assert_eq!(
        std::fs::read_to_string(repo.join(format!("tags/v1/index/sha256/{hex}/link"))).unwrap(),
        digest.to_string()
    );
    let layers = std::fs::read_dir(v2.join("repositories/library/app/_layers/sha256")).unwrap().count();
    assert_eq!(layers, 2);
    assert!(
        !v2.join("repositories/library/app/_uploads").exists()
            || std::fs::read_dir(v2.join("repositories/library/app/_uploads")).unwrap().count() == 0
    );
}

async fn catalog_pages(registry: &Registry) {
    let names = ["a", "a/b", "a/b/c", "a-b", "a.b", "a0", "z/deep/repo"];
    for repo in names {
        push_image(&registry.repository(&name(repo)), "v1", repo).await;
    }
    // Only uploads: not a repository to list yet. A blob makes one, as in Distribution 2.8.
    registry.repository(&name("only/uploads")).start_upload().await.unwrap();
    push_blob(&registry.repository(&name("only/blobs")), b"a layer alone").await;
    let all: Vec<String> = registry.catalog(None, None).await.unwrap().iter().map(ToString::to_string).collect();
    let mine: Vec<&str> = all.iter().map(String::as_str).filter(|n| names.contains(n)).collect();
    assert_eq!(mine, ["a", "a/b", "a/b/c", "a-b", "a.b", "a0", "z/deep/repo"]);
    assert!(!all.iter().any(|n| n == "only/uploads"));
    assert!(all.iter().any(|n| n == "only/blobs"), "{all:?}");
    // Pages of two, each after the last of the one before, add up to the whole list.
    let mut paged = Vec::new();
    let mut last: Option<RepositoryName> = None;
    loop {
        let page = registry.catalog(Some(2), last.as_ref()).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        last = page.last().cloned();
        paged.extend(page.iter().map(ToString::to_string));
    }
    assert_eq!(paged, all);
    assert!(registry.catalog(Some(0), None).await.unwrap().is_empty());
    // `last` need not exist.
    let after: Vec<String> =
        registry.catalog(None, Some(&name("a/b/d"))).await.unwrap().iter().map(ToString::to_string).collect();
    assert_eq!(after.first().map(String::as_str), Some("a-b"));
}

async fn purging_old_uploads(registry: &Registry) {
    let repository = registry.repository(&name("purge"));
    let old = repository.start_upload().await.unwrap();
    let fresh = repository.start_upload().await.unwrap();
    // Backdate one upload, as one left from yesterday would be.
    let yesterday = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    registry
        .driver()
        .put_content(
            &layout::upload_started_at(repository.name(), &old.id),
            Bytes::from(humantime::format_rfc3339_seconds(yesterday).to_string()),
        )
        .await
        .unwrap();
    let week = std::time::Duration::from_secs(7 * 86_400);
    assert!(registry.purge_uploads(week, false).await.unwrap().is_empty());
    let hour = std::time::Duration::from_secs(3600);
    let dry = registry.purge_uploads(hour, true).await.unwrap();
    assert_eq!(dry.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [old.id.as_str()]);
    assert_eq!(repository.upload_status(&old.id).await.unwrap().size, 0);
    let purged = registry.purge_uploads(hour, false).await.unwrap();
    assert_eq!(purged.len(), 1);
    assert!(matches!(repository.upload_status(&old.id).await, Err(Error::UploadUnknown { .. })));
    assert_eq!(repository.upload_status(&fresh.id).await.unwrap().size, 0);
}

fn artifact(subject: &Digest, subject_size: usize, artifact_type: &str, layer: &Digest, layer_size: usize) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"{artifact_type}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{layer}","size":{layer_size}}}],"subject":{{"mediaType":"{}","digest":"{subject}","size":{subject_size}}},"annotations":{{"org.example.kind":"{artifact_type}"}}}}"#,
        media_type::OCI_IMAGE_MANIFEST,
        media_type::OCI_EMPTY,
        media_type::OCI_EMPTY_DIGEST,
        media_type::OCI_IMAGE_MANIFEST,
    )
}

async fn referrers_are_listed_and_filtered(registry: &Registry) {
    let repository = registry.repository(&name("referred"));
    let subject = push_image(&repository, "v1", "subject").await;
    let subject_size = repository.get_manifest(&"v1".parse().unwrap()).await.unwrap().content.len();
    push_blob(&repository, b"{}").await;
    let sbom = push_blob(&repository, b"sbom content").await;
    let signature = push_blob(&repository, b"signature").await;
    let sbom_manifest = artifact(&subject, subject_size, "application/vnd.example.sbom", &sbom, 12);
    let sbom_digest = repository
        .put_manifest(
            &ManifestReference::Digest(Digest::sha256(sbom_manifest.as_bytes())),
            Bytes::from(sbom_manifest),
            None,
        )
        .await
        .unwrap();
    let sig_manifest = artifact(&subject, subject_size, "application/vnd.example.sig", &signature, 9);
    let sig_digest =
        repository.put_manifest(&"sig".parse().unwrap(), Bytes::from(sig_manifest.clone()), None).await.unwrap();

    let all = repository.referrers(&subject, None).await.unwrap();
    let mut expected = vec![sbom_digest.clone(), sig_digest.clone()];
    expected.sort();
    assert_eq!(all.iter().map(|d| d.digest.clone()).collect::<Vec<_>>(), expected);
    let sig = all.iter().find(|d| d.digest == sig_digest).unwrap();
    assert_eq!(sig.size, sig_manifest.len() as u64);
    assert_eq!(sig.media_type, media_type::OCI_IMAGE_MANIFEST);
    assert_eq!(sig.artifact_type.as_deref(), Some("application/vnd.example.sig"));
    assert_eq!(sig.annotations.as_ref().unwrap()["org.example.kind"], "application/vnd.example.sig");
    let sboms = repository.referrers(&subject, Some("application/vnd.example.sbom")).await.unwrap();
    assert_eq!(sboms.iter().map(|d| &d.digest).collect::<Vec<_>>(), [&sbom_digest]);
    assert!(repository.referrers(&subject, Some("application/none")).await.unwrap().is_empty());

    // A subject that is not (yet) in the registry.
    let absent = Digest::sha256(b"not pushed yet");
    let early = artifact(&absent, 100, "application/vnd.example.sig", &signature, 9);
    let early_digest = repository.put_manifest(&"early".parse().unwrap(), Bytes::from(early), None).await.unwrap();
    assert_eq!(repository.referrers(&absent, None).await.unwrap()[0].digest, early_digest);

    // Deleting a referrer takes it off the list.
    repository.delete_manifest(&sig_digest).await.unwrap();
    let left = repository.referrers(&subject, None).await.unwrap();
    assert_eq!(left.iter().map(|d| &d.digest).collect::<Vec<_>>(), [&sbom_digest]);
    assert!(repository.referrers(&Digest::sha256(b"nobody"), None).await.unwrap().is_empty());
}

async fn usage_counts_shared_blobs_once(registry: &Registry) {
    let one = registry.repository(&name("usage/one"));
    let two = registry.repository(&name("usage/two"));
    let shared = push_blob(&one, &[7u8; 1000]).await;
    two.mount_blob(&shared, one.name()).await.unwrap();
    push_blob(&two, &[8u8; 500]).await;
    assert_eq!(one.usage().await.unwrap(), 1000);
    assert_eq!(two.usage().await.unwrap(), 1500);
    let before = registry.usage().await.unwrap();
    push_blob(&two, &[9u8; 250]).await;
    assert_eq!(registry.usage().await.unwrap(), before + 250);
    two.mount_blob(&shared, one.name()).await.unwrap();
    assert_eq!(registry.usage().await.unwrap(), before + 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3() {
    let Some(driver) = s3_driver("scenarios").await else { return };
    run_all(driver).await;
}

async fn pulls_are_written_once_per_interval(driver: Arc<dyn StorageDriver>) {
    let mut options = RegistryOptions::default();
    options.pull_tracking_interval = Some(std::time::Duration::from_secs(3600));
    let registry = Registry::new(driver.clone(), options);
    let repository = registry.repository(&name("pulled"));
    let digest = push_image(&repository, "v1", "pulled").await;
    let other = push_image(&repository, "v2", "never pulled").await;
    assert_eq!(repository.last_pulled(&digest).await.unwrap(), None);
    assert_eq!(repository.last_pull().await.unwrap(), None, "nothing pulled yet");
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
    for _ in 0..100 {
        repository.record_pull(&digest);
    }
    let noted = repository.last_pull().await.unwrap().expect("a pull noted, not yet written");
    assert!(noted >= before);
    assert_eq!(registry.flush_pulls().await.unwrap(), 1, "a hundred pulls, one write");
    repository.record_pull(&digest);
    assert_eq!(registry.flush_pulls().await.unwrap(), 0, "pulled again within the interval: no write");
    // A new process reads the time back from the store.
    let restarted = Registry::new(driver, RegistryOptions::default()).repository(&name("pulled"));
    let pulled = restarted.last_pulled(&digest).await.unwrap().expect("the pull was written");
    assert!(pulled >= before, "{pulled:?}");
    // The repository's last pull, from the store alone: that one (written to the second).
    assert_eq!(restarted.last_pull().await.unwrap(), Some(pulled));
    assert_eq!(restarted.last_pulled(&other).await.unwrap(), None);
    // Without tracking nothing is noted.
    restarted.record_pull(&other);
    assert_eq!(registry.flush_pulls().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_tracking() {
    pulls_are_written_once_per_interval(Arc::new(MemoryDriver::new())).await;
    let dir = tempfile::tempdir().unwrap();
    pulls_are_written_once_per_interval(Arc::new(FilesystemDriver::new(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_flusher_writes_in_the_background() {
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let mut options = RegistryOptions::default();
    options.pull_tracking_interval = Some(std::time::Duration::from_secs(3600));
    let registry = Registry::new(driver.clone(), options);
    let repository = registry.repository(&name("flushed"));
    let digest = push_image(&repository, "v1", "flushed").await;
    let flusher = registry.spawn_pull_flusher(std::time::Duration::from_millis(20));
    repository.record_pull(&digest);
    let reader = Registry::new(driver, RegistryOptions::default()).repository(&name("flushed"));
    wharf_testing::eventually("the flusher writing the pull time", std::time::Duration::from_secs(10), async || {
        reader.last_pulled(&digest).await.unwrap().is_some()
    })
    .await;
    flusher.abort();
}

/// An index over children given as (digest, size, "os/architecture").
fn platform_index(children: &[(&Digest, usize, &str)]) -> Bytes {
    let entries: Vec<serde_json::Value> = children
        .iter()
        .map(|(digest, size, platform)| {
            let (os, architecture) = platform.split_once('/').unwrap();
            serde_json::json!({"mediaType": media_type::OCI_IMAGE_MANIFEST, "digest": digest.to_string(), "size": size,
                               "platform": {"os": os, "architecture": architecture}})
        })
        .collect();
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_IMAGE_INDEX, "manifests": entries});
    Bytes::from(serde_json::to_vec(&index).unwrap())
}

/// Sparse manifests, as options: an index whose children are only partly pushed, under each
/// of `all`, `none` and `list`; an image whose blobs were never pushed; both kept whole by a
/// collection, and their absent parts told apart from present ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_manifests() {
    use wharf_registry::IndexChildren;
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let strict = Registry::new(driver.clone(), RegistryOptions::default());
    let repository = strict.repository(&name("sparse"));
    let amd64 = push_image(&repository, "amd64", "amd64").await;
    let amd64_size = repository.get_manifest(&ManifestReference::Digest(amd64.clone())).await.unwrap().content.len();
    let arm64 = Digest::sha256(b"an arm64 image never pushed here");
    let index = platform_index(&[(&amd64, amd64_size, "linux/amd64"), (&arm64, 500, "linux/arm64")]);
    let refused = |result: wharf_registry::Result<Digest>, missing: &Digest| match result {
        Err(Error::ManifestBlobUnknown { digest, .. }) => assert_eq!(&digest, missing),
        other => panic!("expected MANIFEST_BLOB_UNKNOWN for {missing}, got {other:?}"),
    };
    refused(repository.put_manifest(&"all".parse().unwrap(), index.clone(), None).await, &arm64);

    let open = |children: IndexChildren, blobs: bool| {
        Registry::new(
            driver.clone(),
            RegistryOptions::default().with_index_children(children).with_require_image_blobs(blobs),
        )
        .repository(&name("sparse"))
    };
    let none = open(IndexChildren::None, true);
    let sparse_index = none.put_manifest(&"none".parse().unwrap(), index.clone(), None).await.unwrap();
    let amd64_only = open(IndexChildren::Platforms(vec![("linux".into(), "amd64".into())]), true);
    amd64_only.put_manifest(&"list".parse().unwrap(), index.clone(), None).await.unwrap();
    let arm64_only = open(IndexChildren::Platforms(vec![("linux".into(), "arm64".into())]), true);
    refused(arm64_only.put_manifest(&"list2".parse().unwrap(), index.clone(), None).await, &arm64);
    // Every child still refused when the present one is dropped from the list.
    let lone = platform_index(&[(&Digest::sha256(b"absent amd64"), 10, "linux/amd64")]);
    refused(amd64_only.put_manifest(&"list3".parse().unwrap(), lone, None).await, &Digest::sha256(b"absent amd64"));

    // An image whose config and layer were never pushed.
    let (config, layer) = (Digest::sha256(b"absent config"), Digest::sha256(b"absent layer"));
    let image = image_manifest(&config, 13, &[(&layer, 12)]);
    refused(repository.put_manifest(&"image".parse().unwrap(), Bytes::from(image.clone()), None).await, &config);
    let blobless = open(IndexChildren::All, false);
    let sparse_image = blobless.put_manifest(&"image".parse().unwrap(), Bytes::from(image), None).await.unwrap();
    assert!(blobless.stat_blob(&layer).await.is_err(), "an absent blob stays absent");

    let mut options = wharf_registry::GcOptions::default();
    options.grace_period = std::time::Duration::ZERO;
    options.clock_slack = std::time::Duration::ZERO;
    options.delete_untagged = true;
    strict.collect_garbage(&options).await.unwrap();
    for (tag, digest) in [("none", &sparse_index), ("image", &sparse_image), ("amd64", &amd64)] {
        assert_eq!(&repository.get_manifest(&tag.parse().unwrap()).await.unwrap().digest, digest, "{tag}");
    }
    assert!(repository.get_manifest(&ManifestReference::Digest(arm64)).await.is_err());
}

/// A tag moved through another registry on the same store (another process) is seen by the
/// next read, however often the manifest it pointed at was read before; and a tag deleted
/// there is gone here.
async fn tags_moved_elsewhere_are_seen_at_once(first: Arc<dyn StorageDriver>, second: Arc<dyn StorageDriver>) {
    let (here, there) =
        (Registry::new(first, RegistryOptions::default()), Registry::new(second, RegistryOptions::default()));
    let (mine, theirs) = (here.repository(&name("moved")), there.repository(&name("moved")));
    let old = push_image(&theirs, "latest", "old").await;
    for _ in 0..3 {
        assert_eq!(mine.get_manifest(&"latest".parse().unwrap()).await.unwrap().digest, old);
    }
    let new = push_image(&theirs, "latest", "new").await;
    assert_eq!(mine.get_manifest(&"latest".parse().unwrap()).await.unwrap().digest, new);
    assert_eq!(mine.get_manifest(&ManifestReference::Digest(old.clone())).await.unwrap().digest, old);
    theirs.untag("latest").await.unwrap();
    assert!(matches!(mine.get_manifest(&"latest".parse().unwrap()).await, Err(Error::ManifestUnknown { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_moved_elsewhere_on_filesystem_and_s3() {
    let dir = tempfile::tempdir().unwrap();
    tags_moved_elsewhere_are_seen_at_once(
        Arc::new(FilesystemDriver::new(dir.path()).unwrap()),
        Arc::new(FilesystemDriver::new(dir.path()).unwrap()),
    )
    .await;
    let Some(config) = wharf_testing::peers::s3_config("tags-moved") else { return };
    let first = wharf_testing::peers::s3_driver(config.clone()).await;
    let second = wharf_storage::S3Driver::new(config).await.unwrap();
    tags_moved_elsewhere_are_seen_at_once(Arc::new(first), Arc::new(second)).await;
}
