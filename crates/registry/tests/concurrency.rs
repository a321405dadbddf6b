//! Many pushes at once, of the same and of different content.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream;
use wharf_oci::Digest;
use wharf_registry::{ManifestReference, Registry, RegistryOptions};
use wharf_storage::{FilesystemDriver, MemoryDriver, StorageDriver};

mod common;

async fn thirty_two_pushers(driver: Arc<dyn StorageDriver>) {
    let registry = Registry::new(driver, RegistryOptions::default());
    let shared_layer = Bytes::from(vec![42u8; 200_000]);
    let tasks = (0..32).map(|task| {
        let registry = registry.clone();
        let shared_layer = shared_layer.clone();
        tokio::spawn(async move {
            // Half the tasks share a repository; every task pushes the shared layer, one layer
            // of its own, and either the shared manifest or one of its own.
            let repository = registry.repository(&format!("concurrent/{}", task % 2).parse().unwrap());
            let own_layer = Bytes::from(format!("layer of task {task}").repeat(100));
            let config = Bytes::from_static(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
            for blob in [&shared_layer, &own_layer, &config] {
                let digest = Digest::sha256(blob);
                let upload = repository.start_upload().await.unwrap();
                let half = blob.len() / 2;
                repository.append_upload(&upload.id, Some(0), stream::iter([Ok(blob.slice(..half))])).await.unwrap();
                repository
                    .finish_upload(&upload.id, &digest, Some(stream::iter([Ok(blob.slice(half..))])))
                    .await
                    .unwrap();
            }
            let layers = if task % 4 == 0 { vec![&shared_layer] } else { vec![&shared_layer, &own_layer] };
            let layers: Vec<(Digest, usize)> = layers.iter().map(|l| (Digest::sha256(l), l.len())).collect();
            let layers: Vec<(&Digest, usize)> = layers.iter().map(|(d, s)| (d, *s)).collect();
            let manifest = common::image_manifest(&Digest::sha256(&config), config.len(), &layers);
            let tag = if task % 4 == 0 { "shared".to_owned() } else { format!("task-{task}") };
            let digest = repository
                .put_manifest(&ManifestReference::Tag(tag.parse().unwrap()), Bytes::from(manifest), None)
                .await
                .unwrap();
            (task, tag, digest)
        })
    });
    let results: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    for (task, tag, digest) in results {
        let repository = registry.repository(&format!("concurrent/{}", task % 2).parse().unwrap());
        let stored = repository.get_manifest(&ManifestReference::Tag(tag.parse().unwrap())).await.unwrap();
        assert_eq!(stored.digest, digest);
        let manifest = wharf_oci::Manifest::parse(stored.content, None).unwrap();
        for reference in manifest.references() {
            let (info, stream) = repository.read_blob(&reference.digest, 0).await.unwrap();
            let data: Vec<Bytes> = futures::TryStreamExt::try_collect(stream).await.unwrap();
            assert_eq!(info.size, reference.size);
            assert_eq!(Digest::sha256(&data.concat()), reference.digest);
        }
    }
    let tags = registry.repository(&"concurrent/0".parse().unwrap()).tags(None, None).await.unwrap();
    // Repository 0 has tasks 0, 2, 4…: those of 0, 4, 8… share one tag, the others have their own.
    assert_eq!(tags.len(), 1 + 8, "{tags:?}");
    // No upload is left behind.
    for repository in ["concurrent/0", "concurrent/1"] {
        let uploads =
            registry.driver().list(&format!("{}/{repository}/_uploads", wharf_registry::layout::repositories())).await;
        assert!(uploads.is_err() || uploads.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() {
    thirty_two_pushers(Arc::new(MemoryDriver::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    thirty_two_pushers(Arc::new(FilesystemDriver::new(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3() {
    let Some(driver) = common::s3_driver("concurrency").await else { return };
    thirty_two_pushers(driver).await;
}
