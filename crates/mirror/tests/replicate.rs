//! Replication to Debian's `docker-registry`: an image with its signature, an index with its
//! images, nothing copied twice, and a replication cut by a fault that resumes where it
//! stopped.

use std::sync::Arc;

use wharf_client::Client;
use wharf_mirror::replicate::ReplicaTarget;
use wharf_oci::{Digest, media_type};
use wharf_registry::{Registry, RegistryOptions};
use wharf_testing::images::{store_image, store_index, store_signature};
use wharf_testing::peers::{Distribution, has_peer};
use wharf_testing::proxy::{Direction, FaultProxy};

fn target(host: &str) -> ReplicaTarget {
    let client = Client::builder().plain_http(host).build().unwrap();
    ReplicaTarget { name: "dr".into(), host: host.to_owned(), prefix: Some("dr".into()), client }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_with_their_referrers_and_indexes_with_their_images() {
    if !has_peer("docker-registry", "images_with_their_referrers_and_indexes_with_their_images") {
        return;
    }
    let registry = Registry::new(Arc::new(wharf_storage::MemoryDriver::new()), RegistryOptions::default());
    let app = registry.repository(&"team/app".parse().unwrap());
    let v1 = store_image(&app, "v1", 20_000, Some("v1")).await;
    let signature = store_signature(&app, &v1, "signature").await;

    let distribution = Distribution::start("", "");
    let host = distribution.host();
    let dr = target(&host);
    let copied = dr.replicate(&registry, &"team/app".parse().unwrap(), &"v1".parse().unwrap()).await.unwrap();
    assert_eq!((copied.blobs_copied, copied.manifests), (5, 3), "{copied:?}");
    let remote = dr.client.repository(&host, "dr/team/app");
    assert_eq!(remote.manifest_descriptor("v1").await.unwrap().unwrap().digest, v1.0);
    let referrers = remote.referrers(&v1.0, None).await.unwrap();
    assert_eq!(referrers.iter().map(|d| &d.digest).collect::<Vec<_>>(), [&signature], "the signature travels with it");

    // Again: nothing to copy.
    let again = dr.replicate(&registry, &"team/app".parse().unwrap(), &"v1".parse().unwrap()).await.unwrap();
    assert_eq!(again.blobs_copied, 0, "{again:?}");

    // An index with its images.
    let amd64 = store_image(&app, "amd64", 1000, None).await;
    let arm64 = store_image(&app, "arm64", 1000, None).await;
    let index = store_index(&app, &[(&amd64, "linux/amd64"), (&arm64, "linux/arm64")], "multi").await;
    let copied = dr.replicate(&registry, &"team/app".parse().unwrap(), &"multi".parse().unwrap()).await.unwrap();
    assert_eq!(copied.manifests, 4, "two images, the index by digest and by tag: {copied:?}");
    assert_eq!(remote.manifest_descriptor("multi").await.unwrap().unwrap().digest, index);
    for child in [&amd64.0, &arm64.0] {
        assert!(remote.manifest_descriptor(child.as_str()).await.unwrap().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_cut_by_a_fault_resumes_where_it_stopped() {
    if !has_peer("docker-registry", "a_replication_cut_by_a_fault_resumes_where_it_stopped") {
        return;
    }
    let registry = Registry::new(Arc::new(wharf_storage::MemoryDriver::new()), RegistryOptions::default());
    let app = registry.repository(&"team/app".parse().unwrap());
    let v1 = store_image(&app, "big", 3 << 20, Some("v1")).await;
    let distribution = Distribution::start("", "");
    let proxy = FaultProxy::start(distribution.host().parse().unwrap()).await;
    let quick = wharf_client::Retry::NEVER;
    let client = Client::builder().plain_http(&proxy.host()).retry(quick).build().unwrap();
    let dr = ReplicaTarget { name: "dr".into(), host: proxy.host(), prefix: None, client };
    // Cut the connection that carries the middle of the second layer: the first stays.
    proxy.cut_at(Direction::Upstream, (3 << 20) + (3 << 19));
    let failed = dr.replicate(&registry, &"team/app".parse().unwrap(), &"v1".parse().unwrap()).await.unwrap_err();
    assert!(failed.to_string().contains("replicating blob"), "{failed}");
    let resumed = dr.replicate(&registry, &"team/app".parse().unwrap(), &"v1".parse().unwrap()).await.unwrap();
    assert!(resumed.blobs_skipped >= 1, "what was copied before is not copied again: {resumed:?}");
    let remote = dr.client.repository(&proxy.host(), "team/app");
    assert_eq!(remote.manifest_descriptor("v1").await.unwrap().unwrap().digest, v1.0);
}

fn push_event(repository: &str, tag: &str, digest: &Digest) -> wharf_mirror::notify::Event {
    wharf_mirror::notify::Event {
        id: format!("{repository}:{tag}@{digest}"),
        timestamp: "2026-12-07T10:00:00Z".into(),
        action: wharf_mirror::notify::Action::Push,
        target: wharf_mirror::notify::Target {
            media_type: media_type::OCI_IMAGE_MANIFEST.into(),
            digest: digest.to_string(),
            repository: repository.into(),
            tag: tag.into(),
            ..Default::default()
        },
        request: Default::default(),
        actor: Default::default(),
        source: Default::default(),
    }
}

fn rule(target: ReplicaTarget) -> wharf_mirror::replicate::ReplicationRule {
    let glob = globset::GlobBuilder::new("team/**").literal_separator(true).build().unwrap().compile_matcher();
    let tags = wharf_policy::TagSelector::from_value(serde_json::json!({"semver": "*"}), "tags").unwrap();
    wharf_mirror::replicate::ReplicationRule {
        name: "releases".into(),
        repositories: vec![glob],
        tags: Some(tags),
        targets: vec![target],
        deletes: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_replicated_in_order_and_a_target_down_catches_up() {
    if !has_peer("docker-registry", "pushes_replicated_in_order_and_a_target_down_catches_up") {
        return;
    }
    let registry = Registry::new(Arc::new(wharf_storage::MemoryDriver::new()), RegistryOptions::default());
    let app = registry.repository(&"team/app".parse().unwrap());
    let other = registry.repository(&"other/app".parse().unwrap());
    let v1 = store_image(&app, "v1", 1000, Some("v1.0.0")).await;
    let dev = store_image(&app, "dev", 1000, Some("dev")).await;
    let elsewhere = store_image(&other, "x", 1000, Some("v1.0.0")).await;
    let distribution = Distribution::start("", "");
    let proxy = FaultProxy::start(distribution.host().parse().unwrap()).await;
    let client = Client::builder().plain_http(&proxy.host()).retry(wharf_client::Retry::NEVER).build().unwrap();
    let target = ReplicaTarget { name: "dr".into(), host: proxy.host(), prefix: None, client };
    let replicator = wharf_mirror::replicate::Replicator::new(&registry, vec![rule(target.clone())], "one").unwrap();
    for event in [
        push_event("team/app", "v1.0.0", &v1.0),
        push_event("team/app", "dev", &dev.0),
        push_event("other/app", "v1.0.0", &elsewhere.0),
    ] {
        replicator.on_event(&event).await.unwrap();
    }
    // The target is down: the replication waits in the queue.
    proxy.refuse_next(50, 503, None);
    assert!(replicator.process(0).await.is_err());
    // The registry restarts (the queue is in its store) and the target comes back.
    drop(replicator);
    let restarted = wharf_mirror::replicate::Replicator::new(&registry, vec![rule(target.clone())], "one").unwrap();
    let v2 = store_image(&app, "v2", 1000, Some("v2.0.0")).await;
    restarted.on_event(&push_event("team/app", "v2.0.0", &v2.0)).await.unwrap();
    proxy.refuse_next(0, 503, None);
    // Let the refusals already queued run out.
    let mut done = 0;
    for _ in 0..100 {
        match restarted.process(0).await {
            Ok(n) => {
                done += n;
                if done == 2 {
                    break;
                }
            }
            Err(_) => continue,
        }
    }
    assert_eq!(done, 2, "the two releases of team/");
    let remote = target.client.repository(&target.host, "team/app");
    assert_eq!(remote.manifest_descriptor("v1.0.0").await.unwrap().unwrap().digest, v1.0);
    assert_eq!(remote.manifest_descriptor("v2.0.0").await.unwrap().unwrap().digest, v2.0);
    assert!(remote.manifest_descriptor("dev").await.unwrap().is_none(), "dev is no release");
    let other_remote = target.client.repository(&target.host, "other/app");
    assert!(other_remote.manifest_descriptor("v1.0.0").await.unwrap_or(None).is_none(), "other/ is not replicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_copies_what_the_target_lacks() {
    if !has_peer("docker-registry", "a_sync_copies_what_the_target_lacks") {
        return;
    }
    let registry = Registry::new(Arc::new(wharf_storage::MemoryDriver::new()), RegistryOptions::default());
    let app = registry.repository(&"team/app".parse().unwrap());
    let v1 = store_image(&app, "v1", 1000, Some("v1.0.0")).await;
    store_image(&app, "dev", 1000, Some("dev")).await;
    let distribution = Distribution::start("", "");
    let dr = target(&distribution.host());
    let replicator = wharf_mirror::replicate::Replicator::new(&registry, vec![rule(dr.clone())], "one").unwrap();
    let copied = replicator.sync().await.unwrap();
    assert_eq!(copied.manifests, 2, "v1.0.0 by digest and by tag: {copied:?}");
    let remote = dr.client.repository(&dr.host, "dr/team/app");
    assert_eq!(remote.manifest_descriptor("v1.0.0").await.unwrap().unwrap().digest, v1.0);
    assert!(remote.manifest_descriptor("dev").await.unwrap().is_none());
    assert_eq!(replicator.sync().await.unwrap().manifests, 0, "nothing left to copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_pushed_later_follow_their_subject() {
    if !has_peer("docker-registry", "signatures_pushed_later_follow_their_subject") {
        return;
    }
    let registry = Registry::new(Arc::new(wharf_storage::MemoryDriver::new()), RegistryOptions::default());
    let app = registry.repository(&"team/app".parse().unwrap());
    let v1 = store_image(&app, "v1", 1000, Some("v1.0.0")).await;
    let dev = store_image(&app, "dev", 1000, Some("dev")).await;
    let distribution = Distribution::start("", "");
    let dr = target(&distribution.host());
    let replicator = wharf_mirror::replicate::Replicator::new(&registry, vec![rule(dr.clone())], "one").unwrap();
    replicator.on_event(&push_event("team/app", "v1.0.0", &v1.0)).await.unwrap();
    assert_eq!(replicator.process(0).await.unwrap(), 1);
    let remote = dr.client.repository(&dr.host, "dr/team/app");
    assert!(remote.referrers(&v1.0, None).await.unwrap().is_empty());

    // The release is signed after it was copied, and so is dev, which the rule does not take.
    let signed = store_signature(&app, &v1, "v1 signed").await;
    let dev_signed = store_signature(&app, &dev, "dev signed").await;
    for signature in [&signed, &dev_signed] {
        replicator.on_event(&push_event("team/app", "", signature)).await.unwrap();
    }
    // A manifest pushed by digest that refers to nothing is no replication.
    replicator.on_event(&push_event("team/app", "", &dev.0)).await.unwrap();
    assert_eq!(replicator.process(0).await.unwrap(), 2, "the two signatures, and no more");
    let referrers = remote.referrers(&v1.0, None).await.unwrap();
    assert_eq!(referrers.iter().map(|d| &d.digest).collect::<Vec<_>>(), [&signed], "the signature followed");
    assert!(remote.manifest_descriptor(dev_signed.as_str()).await.unwrap().is_none(), "dev's stayed");
    assert!(remote.manifest_descriptor(dev.0.as_str()).await.unwrap().is_none());

    // A signature no event announced (a target that was down past its queue) is caught up
    // by the sync.
    let attested = store_signature(&app, &v1, "v1 attested").await;
    let copied = replicator.sync().await.unwrap();
    assert_eq!(copied.manifests, 2, "the new signature, and the tag pushed again: {copied:?}");
    let mut referrers: Vec<Digest> =
        remote.referrers(&v1.0, None).await.unwrap().into_iter().map(|d| d.digest).collect();
    referrers.sort();
    let mut expected = vec![signed, attested];
    expected.sort();
    assert_eq!(referrers, expected);
    assert_eq!(replicator.sync().await.unwrap(), Default::default(), "nothing left to copy");
}
