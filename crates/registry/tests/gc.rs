//! Garbage collection: what goes, what stays, and safety while pushes go on.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt as _};
use wharf_oci::{Digest, RepositoryName, media_type};
use wharf_registry::{GcOptions, ManifestReference, Registry, RegistryOptions, Repository, layout};
use wharf_storage::{Fault, FaultInjector, FilesystemDriver, MemoryDriver, Operation, StorageDriver};

mod common;

fn chunk(data: &[u8]) -> stream::Iter<std::vec::IntoIter<wharf_storage::Result<Bytes>>> {
    stream::iter(vec![Ok(Bytes::copy_from_slice(data))])
}

fn name(text: &str) -> RepositoryName {
    text.parse().unwrap()
}

/// Collects at once: no grace period, and the store's clock taken as exact.
fn options() -> GcOptions {
    let mut options = GcOptions::default();
    options.grace_period = Duration::ZERO;
    options.clock_slack = Duration::ZERO;
    options
}

async fn push_blob(repository: &Repository, data: &[u8]) -> Digest {
    let digest = Digest::sha256(data);
    repository.put_blob(&digest, chunk(data)).await.unwrap();
    digest
}

/// Pushes a one-layer image; returns (manifest, config, layer) digests and the manifest size.
async fn push_image(repository: &Repository, reference: Option<&str>, seed: &str) -> (Digest, Digest, Digest, usize) {
    try_push_image(repository, reference, seed).await.unwrap()
}

async fn try_push_image(
    repository: &Repository,
    reference: Option<&str>,
    seed: &str,
) -> Result<(Digest, Digest, Digest, usize), wharf_registry::Error> {
    let config = format!(r#"{{"seed":"{seed}"}}"#);
    let layer = format!("layer {seed}");
    let config_digest = Digest::sha256(config.as_bytes());
    repository.put_blob(&config_digest, chunk(config.as_bytes())).await?;
    let layer_digest = Digest::sha256(layer.as_bytes());
    repository.put_blob(&layer_digest, chunk(layer.as_bytes())).await?;
    let manifest = common::image_manifest(&config_digest, config.len(), &[(&layer_digest, layer.len())]);
    let reference = match reference {
        Some(tag) => ManifestReference::Tag(tag.parse().unwrap()),
        None => ManifestReference::Digest(Digest::sha256(manifest.as_bytes())),
    };
    let digest = repository.put_manifest(&reference, Bytes::from(manifest.clone()), None).await?;
    Ok((digest, config_digest, layer_digest, manifest.len()))
}

async fn index(repository: &Repository, tag: &str, children: &[(&Digest, usize)]) -> Digest {
    let index = common::image_index(children);
    repository.put_manifest(&ManifestReference::Tag(tag.parse().unwrap()), Bytes::from(index), None).await.unwrap()
}

async fn blob_exists(registry: &Registry, digest: &Digest) -> bool {
    registry.driver().stat(&layout::blob_data(digest)).await.is_ok()
}

async fn sweeps_unreferenced_blobs(driver: Arc<dyn StorageDriver>) {
    let registry = Registry::new(driver, RegistryOptions::default());
    let repository = registry.repository(&name("app"));
    let (manifest, config, layer, _) = push_image(&repository, Some("v1"), "kept").await;
    let orphan = push_blob(&repository, b"nobody references me").await;

    let mut dry = options();
    dry.dry_run = true;
    let report = registry.collect_garbage(&dry).await.unwrap();
    assert_eq!(report.blobs_deleted, std::slice::from_ref(&orphan));
    assert_eq!(report.bytes_freed, 20);
    assert!(blob_exists(&registry, &orphan).await, "a dry run deletes nothing");

    // The grace period protects what was just written.
    let mut patient = options();
    patient.grace_period = Duration::from_secs(3600);
    assert!(registry.collect_garbage(&patient).await.unwrap().blobs_deleted.is_empty());

    let report = registry.collect_garbage(&options()).await.unwrap();
    assert_eq!(report.blobs_deleted, std::slice::from_ref(&orphan));
    assert!(!blob_exists(&registry, &orphan).await);
    for kept in [&manifest, &config, &layer] {
        assert!(blob_exists(&registry, kept).await, "{kept} was referenced");
    }
    assert!(repository.stat_blob(&orphan).await.is_err());
    assert_eq!(repository.get_manifest(&"v1".parse().unwrap()).await.unwrap().digest, manifest);
    // Nothing is left to collect.
    assert!(registry.collect_garbage(&options()).await.unwrap().blobs_deleted.is_empty());
}

async fn untagged_manifests_but_not_index_children(driver: Arc<dyn StorageDriver>) {
    let registry = Registry::new(driver, RegistryOptions::default());
    let repository = registry.repository(&name("multi"));
    let (amd64, _, amd64_layer, amd64_size) = push_image(&repository, None, "amd64").await;
    let (arm64, _, _, arm64_size) = push_image(&repository, None, "arm64").await;
    let list = index(&repository, "latest", &[(&amd64, amd64_size), (&arm64, arm64_size)]).await;
    let (untagged, _, untagged_layer, _) = push_image(&repository, None, "dangling").await;
    let (old, _, _, _) = push_image(&repository, Some("old"), "old").await;
    repository.untag("old").await.unwrap();

    let mut untagged_options = options();
    untagged_options.delete_untagged = true;
    let report = registry.collect_garbage(&untagged_options).await.unwrap();
    let deleted: HashSet<Digest> = report.manifests_deleted.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(deleted, HashSet::from([untagged.clone(), old.clone()]));
    // The children of the tagged index stay (Distribution's bug #3004 deletes them).
    for child in [&amd64, &arm64, &list] {
        repository.get_manifest(&ManifestReference::Digest(child.clone())).await.unwrap();
    }
    assert!(blob_exists(&registry, &amd64_layer).await);
    assert!(!blob_exists(&registry, &untagged_layer).await);
    assert!(repository.get_manifest(&ManifestReference::Digest(untagged)).await.is_err());
}

async fn referrers_follow_their_subject_only_when_asked(driver: Arc<dyn StorageDriver>) {
    let registry = Registry::new(driver, RegistryOptions::default());
    let repository = registry.repository(&name("signed"));
    let (subject, _, _, subject_size) = push_image(&repository, Some("v1"), "signed").await;
    let (gone, _, _, gone_size) = push_image(&repository, None, "unsigned-later").await;
    push_blob(&repository, b"{}").await;
    let signature = push_blob(&repository, b"signature bytes").await;
    let referrer = |subject: &Digest, size: usize| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{signature}","size":15}}],"subject":{{"mediaType":"{}","digest":"{subject}","size":{size}}}}}"#,
            media_type::OCI_IMAGE_MANIFEST,
            media_type::OCI_EMPTY,
            media_type::OCI_EMPTY_DIGEST,
            media_type::OCI_IMAGE_MANIFEST
        )
    };
    let on_kept = referrer(&subject, subject_size);
    let on_kept = repository
        .put_manifest(&ManifestReference::Digest(Digest::sha256(on_kept.as_bytes())), Bytes::from(on_kept), None)
        .await
        .unwrap();
    let on_gone = referrer(&gone, gone_size);
    let on_gone = repository
        .put_manifest(&ManifestReference::Digest(Digest::sha256(on_gone.as_bytes())), Bytes::from(on_gone), None)
        .await
        .unwrap();

    let mut untagged = options();
    untagged.delete_untagged = true;
    let report = registry.collect_garbage(&untagged).await.unwrap();
    let deleted: Vec<&Digest> = report.manifests_deleted.iter().map(|(_, d)| d).collect();
    // The untagged subject goes; its referrer stays, as removing it was not asked for.
    assert_eq!(deleted, [&gone]);
    repository.get_manifest(&ManifestReference::Digest(on_gone.clone())).await.unwrap();

    untagged.delete_orphaned_referrers = true;
    let report = registry.collect_garbage(&untagged).await.unwrap();
    let deleted: Vec<&Digest> = report.manifests_deleted.iter().map(|(_, d)| d).collect();
    assert_eq!(deleted, [&on_gone]);
    assert_eq!(repository.referrers(&subject, None).await.unwrap()[0].digest, on_kept);
    assert!(repository.referrers(&gone, None).await.unwrap().is_empty());
    assert!(blob_exists(&registry, &signature).await);
}

/// Eight tasks push images while collections run; afterwards every manifest's references
/// exist, and every push either succeeded or failed cleanly.
async fn safe_while_pushing(driver: Arc<dyn StorageDriver>) {
    let registry = Registry::new(driver, RegistryOptions::default());
    let pushes = (0..8).map(|task| {
        let registry = registry.clone();
        tokio::spawn(async move {
            let repository = registry.repository(&name(&format!("busy/{task}")));
            let mut done = Vec::new();
            for round in 0..6 {
                // Upload blobs first, then (a moment later) the manifest, as clients do.
                // With no grace period the collector may take blobs whose manifest is still
                // to come, or a manifest not yet tagged: the push then fails cleanly (blob or
                // manifest unknown) and, as a client would, pushes again.
                let seed = format!("{task}-{round}");
                let tag = format!("r{round}");
                let mut attempts = 0;
                let digest = loop {
                    attempts += 1;
                    match try_push_image(&repository, Some(&tag), &seed).await {
                        Ok((digest, ..)) => break digest,
                        Err(
                            wharf_registry::Error::ManifestBlobUnknown { .. }
                            | wharf_registry::Error::ManifestUnknown { .. }
                            | wharf_registry::Error::BlobUnknown { .. },
                        ) if attempts < 20 => {}
                        Err(e) => panic!("push {seed} failed: {e}"),
                    }
                };
                done.push(digest);
                tokio::task::yield_now().await;
            }
            done
        })
    });
    let collector = {
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut untagged = options();
            untagged.delete_untagged = true;
            // File times on a filesystem are coarser than the clock, and S3's are whole
            // seconds: allow for that.
            untagged.clock_slack = Duration::from_secs(2);
            for _ in 0..5 {
                registry.collect_garbage(&untagged).await.unwrap();
            }
        })
    };
    let pushed: Vec<Vec<Digest>> = futures::future::join_all(pushes).await.into_iter().map(Result::unwrap).collect();
    collector.await.unwrap();

    for (task, digests) in pushed.iter().enumerate() {
        let repository = registry.repository(&name(&format!("busy/{task}")));
        assert_eq!(digests.len(), 6);
        for (round, digest) in digests.iter().enumerate() {
            let stored = match repository.get_manifest(&format!("r{round}").parse().unwrap()).await {
                Ok(stored) => stored,
                Err(e) => {
                    let tags = repository.tags(None, None).await.unwrap();
                    let revision = registry.driver().stat(&layout::revision_link(repository.name(), digest)).await;
                    let blob = blob_exists(&registry, digest).await;
                    panic!(
                        "r{round} of task {task} ({digest}): {e}; tags {tags:?}; revision {revision:?}; blob {blob}"
                    );
                }
            };
            assert_eq!(&stored.digest, digest);
            let manifest = wharf_oci::Manifest::parse(stored.content, None).unwrap();
            for reference in manifest.references() {
                assert!(blob_exists(&registry, &reference.digest).await, "{} lost {}", digest, reference.digest);
                repository.stat_blob(&reference.digest).await.unwrap();
            }
        }
    }
}

/// Two registries (two processes) on one store: while one collects, slowed to outlast its
/// lease's term several times (so it renews), the other's collection is refused; once it is
/// done, the other's runs. A lease its holder never gave up is taken over once it ended.
async fn one_collector_at_a_time<D: StorageDriver + Clone>(inner: D) {
    let slow = FaultInjector::new(inner.clone());
    let first = Registry::new(Arc::new(slow.clone()), RegistryOptions::default());
    let second = Registry::new(Arc::new(inner.clone()), RegistryOptions::default());
    let repository = second.repository(&name("team/app"));
    let (_, config, layer, _) = push_image(&repository, Some("v1"), "kept").await;
    let orphan = push_blob(&repository, b"an orphan").await;
    let mut options = options();
    options.lease_term = Duration::from_millis(300);

    slow.inject(Fault::delay(Operation::List, Duration::from_millis(150)));
    let running = first.collect_garbage(&options);
    let refused = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        second.collect_garbage(&options).await
    };
    let (ran, refused) = futures::join!(running, refused);
    slow.clear();
    let report = ran.unwrap();
    assert!(
        matches!(refused, Err(wharf_registry::Error::CollectionInProgress)),
        "a second collection during the first: {refused:?}"
    );
    assert_eq!(report.blobs_deleted, [orphan]);
    assert!(blob_exists(&second, &config).await && blob_exists(&second, &layer).await);
    second.collect_garbage(&options).await.unwrap();

    // A lease whose holder crashed: held until its end, then taken over.
    let lease = format!("{}/_wharf/gc/lease", layout::ROOT);
    let record = |expires_ms: u128| Bytes::from(format!(r#"{{"holder":"crashed","expires_ms":{expires_ms}}}"#));
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    inner.put_content(&lease, record(now_ms + 60_000)).await.unwrap();
    assert!(matches!(second.collect_garbage(&options).await, Err(wharf_registry::Error::CollectionInProgress)));
    inner.put_content(&lease, record(now_ms - 1)).await.unwrap();
    second.collect_garbage(&options).await.unwrap();
    assert!(blob_exists(&second, &config).await && blob_exists(&second, &layer).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_collector_at_a_time_on_memory() {
    one_collector_at_a_time(MemoryDriver::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_collector_at_a_time_on_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    one_collector_at_a_time(FilesystemDriver::new(dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_collector_at_a_time_on_s3() {
    let Some(driver) = common::s3("gc-lease").await else { return };
    one_collector_at_a_time(driver).await;
}

async fn run_all(make: impl Fn() -> Arc<dyn StorageDriver>) {
    sweeps_unreferenced_blobs(make()).await;
    untagged_manifests_but_not_index_children(make()).await;
    referrers_follow_their_subject_only_when_asked(make()).await;
    safe_while_pushing(make()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() {
    run_all(|| Arc::new(MemoryDriver::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new(FilesystemDriver::new(dir.path().join(n.to_string())).unwrap())
    })
    .await;
}

/// A blob stored long ago that nothing references, pushed again: the push rewrites its link,
/// so a collection that finds the blob's bytes old and unmarked puts it back at its re-check,
/// and the manifest that follows the push finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_pushed_again_is_kept_for_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(Arc::new(FilesystemDriver::new(dir.path()).unwrap()), RegistryOptions::default());
    let repository = registry.repository(&name("app"));
    let config = br#"{"seed":"old"}"#;
    let layer = b"a layer pushed long ago";
    let (config_digest, layer_digest) = (push_blob(&repository, config).await, push_blob(&repository, layer).await);
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for digest in [&config_digest, &layer_digest] {
        for path in [layout::blob_data(digest), layout::layer_link(&name("app"), digest)] {
            let file =
                std::fs::File::options().write(true).open(dir.path().join(path.trim_start_matches('/'))).unwrap();
            file.set_modified(two_hours_ago).unwrap();
        }
    }
    // Pushed again: the registry has the bytes, and says so.
    push_blob(&repository, layer).await;
    push_blob(&repository, config).await;

    let mut patient = options();
    patient.grace_period = Duration::from_secs(3600);
    let report = registry.collect_garbage(&patient).await.unwrap();
    assert!(report.blobs_deleted.is_empty(), "deleted {:?}", report.blobs_deleted);
    let manifest = common::image_manifest(&config_digest, config.len(), &[(&layer_digest, layer.len())]);
    repository.put_manifest(&ManifestReference::Tag("v1".parse().unwrap()), Bytes::from(manifest), None).await.unwrap();
    assert!(blob_exists(&registry, &layer_digest).await && blob_exists(&registry, &config_digest).await);

    // Without the second push the same collection takes them.
    let other = registry.repository(&name("other"));
    let lonely = push_blob(&other, b"a layer nobody pushed again").await;
    for path in [layout::blob_data(&lonely), layout::layer_link(&name("other"), &lonely)] {
        let file = std::fs::File::options().write(true).open(dir.path().join(path.trim_start_matches('/'))).unwrap();
        file.set_modified(two_hours_ago).unwrap();
    }
    let report = registry.collect_garbage(&patient).await.unwrap();
    assert_eq!(report.blobs_deleted, vec![lonely]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3() {
    let Some(first) = common::s3_driver("gc").await else { return };
    let mut drivers = vec![first];
    for n in 1..4 {
        drivers.push(common::s3_driver(&format!("gc{n}")).await.expect("the server answered a moment ago"));
    }
    let drivers = std::sync::Mutex::new(drivers);
    run_all(|| drivers.lock().unwrap().pop().expect("one store per scenario")).await;
}

/// Counts the requests an S3 client sends, retries included.
#[derive(Debug, Default, Clone)]
struct CountRequests(Arc<std::sync::atomic::AtomicUsize>);

impl aws_sdk_s3::config::Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// A collection of 1,000 orphaned blobs on S3 costs at most 2 requests per blob deleted, all
/// told: listing, setting aside, re-checking and deleting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn few_s3_requests_per_deleted_blob() {
    const ORPHANS: usize = 1000;
    let Some(plain) = common::s3("gc-requests").await else { return };
    let counter = CountRequests::default();
    let driver: Arc<dyn StorageDriver> = Arc::new(plain.with_interceptor(counter.clone()));
    let registry = Registry::new(driver.clone(), RegistryOptions::default());
    let repository = registry.repository(&name("app"));
    push_image(&repository, Some("v1"), "kept").await;
    let orphans: Vec<Digest> = stream::iter(0..ORPHANS)
        .map(|i| {
            let driver = driver.clone();
            async move {
                let data = format!("orphan {i}");
                let digest = Digest::sha256(data.as_bytes());
                driver.put_content(&layout::blob_data(&digest), Bytes::from(data)).await.unwrap();
                digest
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    let before = counter.0.load(std::sync::atomic::Ordering::Relaxed);
    let report = registry.collect_garbage(&options()).await.unwrap();
    let requests = counter.0.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert_eq!(report.blobs_deleted.len(), ORPHANS);
    for digest in orphans.iter().step_by(97) {
        assert!(!blob_exists(&registry, digest).await, "{digest} was an orphan");
    }
    let per_blob = requests as f64 / ORPHANS as f64;
    #[allow(clippy::print_stderr, reason = "the figure the assertion is about")]
    {
        eprintln!("collecting {ORPHANS} orphans on S3: {requests} requests, {per_blob:.2} per deleted blob");
    }
    assert!(per_blob <= 2.0, "{requests} S3 requests for {ORPHANS} deleted blobs");
}

/// A push's revision folder is listed by the mark before its link is in it (the link is
/// being written); the push then completes, tag and all, while the collection goes on. Its
/// manifest and everything it references must outlive the collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_listed_before_its_link_was_written_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultInjector::new(FilesystemDriver::new(dir.path()).unwrap()));
    let registry = Registry::new(faulty.clone(), RegistryOptions::default());
    let repository = registry.repository(&name("race/app"));
    // The push so far: its blobs, its manifest's bytes, and the folder of its revision link.
    let config = push_blob(&repository, br#"{"seed":"race"}"#).await;
    let layer = push_blob(&repository, b"layer race").await;
    let manifest = common::image_manifest(&config, 15, &[(&layer, 10)]);
    let digest = Digest::sha256(manifest.as_bytes());
    faulty.put_content(&layout::blob_data(&digest), Bytes::from(manifest.clone())).await.unwrap();
    let link = layout::revision_link(repository.name(), &digest);
    let folder = dir.path().join(link.trim_start_matches('/')).parent().unwrap().to_owned();
    std::fs::create_dir_all(&folder).unwrap();

    // The collection waits once it has marked, before it looks for unused blobs.
    let gate = wharf_storage::Gate::new();
    faulty.inject(Fault::hold(Operation::Walk, &gate).on_paths_containing("/v2/blobs").times(1));
    let collector = {
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut untagged = options();
            untagged.delete_untagged = true;
            registry.collect_garbage(&untagged).await
        })
    };
    gate.reached().await;
    // Meanwhile the push completes.
    repository.put_manifest(&"v1".parse().unwrap(), Bytes::from(manifest), None).await.unwrap();
    gate.open();
    let report = collector.await.unwrap().unwrap();
    for kept in [&digest, &config, &layer] {
        assert!(blob_exists(&registry, kept).await, "{kept} was deleted: {report:?}");
    }
    assert_eq!(repository.get_manifest(&"v1".parse().unwrap()).await.unwrap().digest, digest);
}

#[tokio::test]
async fn a_collection_leaves_its_record_and_a_dry_run_none() {
    let registry = Registry::new(Arc::new(MemoryDriver::new()), RegistryOptions::default());
    let repository = registry.repository(&name("recorded"));
    push_image(&repository, Some("v1"), "kept").await;
    push_blob(&repository, b"nobody's").await;
    let mut dry = options();
    dry.dry_run = true;
    registry.collect_garbage(&dry).await.unwrap();
    assert!(registry.maintenance_records().await.unwrap().is_empty(), "a dry run changes nothing");
    registry.collect_garbage(&options()).await.unwrap();
    let records = registry.maintenance_records().await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].kind, "gc");
    assert!(records[0].summary.starts_with("garbage collection: 1 blobs deleted"), "{records:?}");
    // Another kind beside it; a kind that is no path segment is refused.
    registry.record_maintenance("retention", "retention: nothing to do\nsecond line").await.unwrap();
    let kinds: Vec<String> = registry.maintenance_records().await.unwrap().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds.len(), 2);
    let summary = registry.maintenance_records().await.unwrap().into_iter().find(|r| r.kind == "retention").unwrap();
    assert_eq!(summary.summary, "retention: nothing to do second line");
    for bad in ["", "../gc", "a/b", "g c"] {
        assert!(registry.record_maintenance(bad, "x").await.is_err(), "{bad:?}");
    }
}
