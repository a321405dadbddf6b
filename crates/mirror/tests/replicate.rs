//! Replication to Debian's `docker-registry`: an image with its signature, an index with its
//! images, nothing copied twice, and a replication cut by a fault that resumes where it
//! stopped.

use std::sync::Arc;

use bytes::Bytes;
use wharf_client::Client;
use wharf_mirror::replicate::ReplicaTarget;
use wharf_oci::{Digest, media_type};
use wharf_registry::{ManifestReference, Registry, RegistryOptions, Repository};
use wharf_testing::http::image_manifest;
use wharf_testing::images::content;
use wharf_testing::peers::{Distribution, has_peer};
use wharf_testing::proxy::{Direction, FaultProxy};

async fn blob(repository: &Repository, data: Vec<u8>) -> (Digest, usize) {
    let digest = Digest::sha256(&data);
    let size = data.len();
    repository.put_blob(&digest, futures::stream::iter([Ok(Bytes::from(data))])).await.unwrap();
    (digest, size)
}

/// An image of two layers of `size` bytes; tagged `tag` when given.
async fn image(repository: &Repository, seed: &str, size: usize, tag: Option<&str>) -> (Digest, usize) {
    let config =
        blob(repository, format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}").into_bytes())
            .await;
    let one = blob(repository, content(&format!("{seed} one"), size)).await;
    let two = blob(repository, content(&format!("{seed} two"), size)).await;
    let raw = image_manifest((config.0.as_str(), config.1), &[(one.0.as_str(), one.1), (two.0.as_str(), two.1)], None);
    let reference = tag.map_or_else(|| ManifestReference::Digest(Digest::sha256(&raw)), |t| t.parse().unwrap());
    let size = raw.len();
    (repository.put_manifest(&reference, Bytes::from(raw), None).await.unwrap(), size)
}

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
    let v1 = image(&app, "v1", 20_000, Some("v1")).await;
    let (empty, _) = blob(&app, b"{}".to_vec()).await;
    let (payload, payload_size) = blob(&app, b"signature".to_vec()).await;
    let mut signature: serde_json::Value = serde_json::from_slice(&image_manifest(
        (empty.as_str(), 2),
        &[(payload.as_str(), payload_size)],
        Some((v1.0.as_str(), v1.1)),
    ))
    .unwrap();
    signature["artifactType"] = "application/vnd.dev.cosign.artifact.sig.v1+json".into();
    signature["config"]["mediaType"] = media_type::OCI_EMPTY.into();
    let raw = serde_json::to_vec(&signature).unwrap();
    let signature =
        app.put_manifest(&ManifestReference::Digest(Digest::sha256(&raw)), Bytes::from(raw), None).await.unwrap();

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
    let amd64 = image(&app, "amd64", 1000, None).await;
    let arm64 = image(&app, "arm64", 1000, None).await;
    let manifests: Vec<serde_json::Value> = [(&amd64, "amd64"), (&arm64, "arm64")]
        .iter()
        .map(|((digest, size), arch)| serde_json::json!({"mediaType": media_type::OCI_IMAGE_MANIFEST, "digest": digest, "size": size, "platform": {"os": "linux", "architecture": arch}}))
        .collect();
    let index = serde_json::to_vec(
        &serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_IMAGE_INDEX, "manifests": manifests}),
    )
    .unwrap();
    let index = app.put_manifest(&"multi".parse().unwrap(), Bytes::from(index), None).await.unwrap();
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
    let v1 = image(&app, "big", 3 << 20, Some("v1")).await;
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
