//! Interoperation with CNCF Distribution 2.8.2 (Debian's `docker-registry`) through skopeo,
//! both ways: what Distribution stored opens in Wharf, and what Wharf stored Distribution
//! serves, byte for byte.
#![allow(clippy::print_stderr, reason = "a skipped test says so, and why")]

use wharf_testing::images;
use wharf_testing::peers;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::{TryStreamExt, stream};
use images::Images;
use peers::{Distribution, has_peer, skopeo};
use wharf_oci::{Digest, Manifest};
use wharf_registry::{ManifestReference, Registry, RegistryOptions};
use wharf_storage::FilesystemDriver;

fn registry_over(root: &Path) -> Registry {
    Registry::new(Arc::new(FilesystemDriver::new(root).unwrap()), RegistryOptions::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_what_distribution_stored() {
    if !has_peer("docker-registry", "reads_what_distribution_stored")
        || !has_peer("skopeo", "reads_what_distribution_stored")
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (layout, root) = (work.path().join("layout"), work.path().join("root"));
    let images = Images::standard();
    images.write_layout(&layout);
    {
        let distribution = Distribution::serve(&root);
        for tag in images.tags.keys() {
            let source = format!("oci:{}:{tag}", layout.display());
            skopeo(&[
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
                &source,
                &distribution.url("team/app", tag),
            ]);
        }
    }

    let registry = registry_over(&root);
    let repository = registry.repository(&"team/app".parse().unwrap());
    let mut tags = repository.tags(None, None).await.unwrap();
    tags.sort();
    assert_eq!(tags, images.tags.keys().cloned().collect::<Vec<_>>());
    for (tag, raw) in &images.tags {
        let stored = repository.get_manifest(&ManifestReference::Tag(tag.parse().unwrap())).await.unwrap();
        assert_eq!(stored.content, raw[..], "manifest of {tag} differs");
        assert_eq!(stored.digest, Digest::sha256(raw));
        let manifest = Manifest::parse(stored.content.clone(), None).unwrap();
        let mut pending: Vec<Manifest> = vec![manifest];
        while let Some(manifest) = pending.pop() {
            for reference in manifest.references().filter(|d| Some(*d) != manifest.subject()) {
                if manifest.kind().is_index() {
                    let child =
                        repository.get_manifest(&ManifestReference::Digest(reference.digest.clone())).await.unwrap();
                    assert_eq!(child.content, images.blobs[&reference.digest][..]);
                    pending.push(Manifest::parse(child.content, None).unwrap());
                    continue;
                }
                let (info, stream) = repository.read_blob(&reference.digest, 0).await.unwrap();
                let read: Vec<Bytes> = stream.try_collect().await.unwrap();
                let read = read.concat();
                assert_eq!(info.size, reference.size);
                assert_eq!(Digest::sha256(&read), reference.digest, "blob of {tag} does not match its digest");
                assert_eq!(read, images.blobs[&reference.digest]);
            }
        }
    }
    assert!(registry.catalog(None, None).await.unwrap().iter().any(|n| n.as_str() == "team/app"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_serves_what_wharf_stored() {
    if !has_peer("docker-registry", "distribution_serves_what_wharf_stored")
        || !has_peer("skopeo", "distribution_serves_what_wharf_stored")
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let images = Images::standard();
    let registry = registry_over(&root);
    let repository = registry.repository(&"team/app".parse().unwrap());
    // Blobs first, in two chunks each (a resumed upload), then manifests children first.
    for (digest, data) in &images.blobs {
        let upload = repository.start_upload().await.unwrap();
        let half = data.len() / 2;
        let first = stream::iter(vec![Ok(Bytes::copy_from_slice(&data[..half]))]);
        repository.append_upload(&upload.id, Some(0), first).await.unwrap();
        let rest = stream::iter(vec![Ok(Bytes::copy_from_slice(&data[half..]))]);
        repository.finish_upload(&upload.id, digest, Some(rest)).await.unwrap();
    }
    let index = Manifest::parse(images.tags["index"].clone(), None).unwrap();
    for child in index.manifests() {
        let raw = Bytes::from(images.blobs[&child.digest].clone());
        repository.put_manifest(&ManifestReference::Digest(child.digest.clone()), raw, None).await.unwrap();
    }
    for (tag, raw) in &images.tags {
        repository
            .put_manifest(&ManifestReference::Tag(tag.parse().unwrap()), Bytes::from(raw.clone()), None)
            .await
            .unwrap();
    }

    let distribution = Distribution::serve(&root);
    let out = work.path().join("pulled");
    for tag in images.tags.keys() {
        let destination = format!("oci:{}:{tag}", out.display());
        skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            &distribution.url("team/app", tag),
            &destination,
        ]);
    }
    drop(distribution);
    images.check_layout(&out);
}
