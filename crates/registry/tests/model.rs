//! Random sequences of registry operations give the same answers as a simple model.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use wharf_oci::{Digest, media_type};
use wharf_registry::{Error, ManifestReference, Registry, RegistryOptions};
use wharf_storage::{FilesystemDriver, MemoryDriver, StorageDriver};

const REPOSITORIES: [&str; 2] = ["one", "two/nested"];
const TAGS: [&str; 3] = ["latest", "v1", "v1.0"];

#[derive(Debug, Clone)]
enum Op {
    /// Push blob number `blob` (content derived from it) to a repository.
    PushBlob {
        repository: usize,
        blob: u8,
    },
    /// Push a manifest over `layers` (blob numbers) to a repository under a tag.
    PushManifest {
        repository: usize,
        layers: Vec<u8>,
        tag: usize,
    },
    DeleteManifestOfTag {
        repository: usize,
        tag: usize,
    },
    Untag {
        repository: usize,
        tag: usize,
    },
    DeleteBlob {
        repository: usize,
        blob: u8,
    },
    Mount {
        repository: usize,
        blob: u8,
    },
    ListTags {
        repository: usize,
    },
    StatBlob {
        repository: usize,
        blob: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let repository = 0..REPOSITORIES.len();
    let tag = 0..TAGS.len();
    let blob = 0u8..6;
    prop_oneof![
        4 => (repository.clone(), blob.clone()).prop_map(|(repository, blob)| Op::PushBlob { repository, blob }),
        4 => (repository.clone(), prop::collection::vec(blob.clone(), 0..3), tag.clone())
            .prop_map(|(repository, layers, tag)| Op::PushManifest { repository, layers, tag }),
        1 => (repository.clone(), tag.clone()).prop_map(|(repository, tag)| Op::DeleteManifestOfTag { repository, tag }),
        1 => (repository.clone(), tag).prop_map(|(repository, tag)| Op::Untag { repository, tag }),
        1 => (repository.clone(), blob.clone()).prop_map(|(repository, blob)| Op::DeleteBlob { repository, blob }),
        1 => (repository.clone(), blob.clone()).prop_map(|(repository, blob)| Op::Mount { repository, blob }),
        1 => repository.clone().prop_map(|repository| Op::ListTags { repository }),
        2 => (repository, blob).prop_map(|(repository, blob)| Op::StatBlob { repository, blob }),
    ]
}

fn blob_content(blob: u8) -> Bytes {
    Bytes::from(format!("blob number {blob} ").repeat(usize::from(blob) * 50 + 1))
}

const CONFIG: &[u8] = b"{}";

fn manifest(layers: &[u8]) -> Bytes {
    let layers: Vec<String> = layers
        .iter()
        .map(|b| {
            let content = blob_content(*b);
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
                media_type::OCI_LAYER_TAR,
                Digest::sha256(&content),
                content.len()
            )
        })
        .collect();
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[{}]}}"#,
        media_type::OCI_IMAGE_MANIFEST,
        media_type::OCI_IMAGE_CONFIG,
        Digest::sha256(CONFIG),
        layers.join(",")
    ))
}

/// Per repository: which blobs it links, which manifests it has, where tags point.
#[derive(Default)]
struct Model {
    blobs: BTreeMap<usize, BTreeSet<Digest>>,
    manifests: BTreeMap<usize, BTreeSet<Digest>>,
    tags: BTreeMap<usize, BTreeMap<String, Digest>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Digest(Digest),
    Tags(Vec<String>),
    Size(u64),
    BlobUnknown,
    ManifestUnknown,
    ManifestBlobUnknown(Digest),
    /// What the model expects of a manifest with missing references: that one of them is named.
    MissingOneOf(BTreeSet<Digest>),
}

impl Model {
    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::PushBlob { repository, blob } => {
                self.blobs.entry(*repository).or_default().insert(Digest::sha256(&blob_content(*blob)));
                Outcome::Done
            }
            Op::PushManifest { repository, layers, tag } => {
                let linked = self.blobs.entry(*repository).or_default();
                let config = Digest::sha256(CONFIG);
                let needed = std::iter::once(config).chain(layers.iter().map(|b| Digest::sha256(&blob_content(*b))));
                let missing: BTreeSet<Digest> = needed.filter(|digest| !linked.contains(digest)).collect();
                if !missing.is_empty() {
                    return Outcome::MissingOneOf(missing);
                }
                let digest = Digest::sha256(&manifest(layers));
                self.manifests.entry(*repository).or_default().insert(digest.clone());
                self.tags.entry(*repository).or_default().insert(TAGS[*tag].to_owned(), digest.clone());
                Outcome::Digest(digest)
            }
            Op::DeleteManifestOfTag { repository, tag } => {
                let tags = self.tags.entry(*repository).or_default();
                let Some(digest) = tags.get(TAGS[*tag]).cloned() else { return Outcome::ManifestUnknown };
                tags.retain(|_, d| *d != digest);
                self.manifests.entry(*repository).or_default().remove(&digest);
                Outcome::Done
            }
            Op::Untag { repository, tag } => match self.tags.entry(*repository).or_default().remove(TAGS[*tag]) {
                Some(_) => Outcome::Done,
                None => Outcome::ManifestUnknown,
            },
            Op::DeleteBlob { repository, blob } => {
                let digest = Digest::sha256(&blob_content(*blob));
                if self.blobs.entry(*repository).or_default().remove(&digest) {
                    Outcome::Done
                } else {
                    Outcome::BlobUnknown
                }
            }
            Op::Mount { repository, blob } => {
                let digest = Digest::sha256(&blob_content(*blob));
                let from = 1 - *repository;
                if self.blobs.entry(from).or_default().contains(&digest) {
                    self.blobs.entry(*repository).or_default().insert(digest);
                    Outcome::Size(blob_content(*blob).len() as u64)
                } else {
                    Outcome::BlobUnknown
                }
            }
            Op::ListTags { repository } => {
                Outcome::Tags(self.tags.entry(*repository).or_default().keys().cloned().collect())
            }
            Op::StatBlob { repository, blob } => {
                let digest = Digest::sha256(&blob_content(*blob));
                if self.blobs.entry(*repository).or_default().contains(&digest) {
                    Outcome::Size(blob_content(*blob).len() as u64)
                } else {
                    Outcome::BlobUnknown
                }
            }
        }
    }
}

fn outcome<T>(result: Result<T, Error>, ok: impl FnOnce(T) -> Outcome) -> Result<Outcome, String> {
    match result {
        Ok(value) => Ok(ok(value)),
        Err(Error::BlobUnknown { .. }) => Ok(Outcome::BlobUnknown),
        Err(Error::ManifestUnknown { .. }) => Ok(Outcome::ManifestUnknown),
        Err(Error::ManifestBlobUnknown { digest, .. }) => Ok(Outcome::ManifestBlobUnknown(digest)),
        Err(e) => Err(e.to_string()),
    }
}

async fn run(registry: &Registry, op: &Op) -> Result<Outcome, String> {
    let repository = |index: &usize| registry.repository(&REPOSITORIES[*index].parse().unwrap());
    match op {
        Op::PushBlob { repository: r, blob } => {
            let content = blob_content(*blob);
            let result = repository(r).put_blob(&Digest::sha256(&content), stream::iter(vec![Ok(content)])).await;
            // The config blob goes along with every blob, as clients push it with the layers.
            let config = Bytes::from_static(CONFIG);
            repository(r)
                .put_blob(&Digest::sha256(CONFIG), stream::iter(vec![Ok(config)]))
                .await
                .map_err(|e| e.to_string())?;
            outcome(result, |_| Outcome::Done)
        }
        Op::PushManifest { repository: r, layers, tag } => {
            let reference = ManifestReference::Tag(TAGS[*tag].parse().unwrap());
            outcome(repository(r).put_manifest(&reference, manifest(layers), None).await, Outcome::Digest)
        }
        Op::DeleteManifestOfTag { repository: r, tag } => {
            let digest = match repository(r).resolve(&ManifestReference::Tag(TAGS[*tag].parse().unwrap())).await {
                Ok(digest) => digest,
                Err(e) => return outcome(Err::<(), _>(e), |()| Outcome::Done),
            };
            outcome(repository(r).delete_manifest(&digest).await, |()| Outcome::Done)
        }
        Op::Untag { repository: r, tag } => outcome(repository(r).untag(TAGS[*tag]).await, |()| Outcome::Done),
        Op::DeleteBlob { repository: r, blob } => {
            outcome(repository(r).delete_blob(&Digest::sha256(&blob_content(*blob))).await, |()| Outcome::Done)
        }
        Op::Mount { repository: r, blob } => {
            let from = REPOSITORIES[1 - *r].parse().unwrap();
            let digest = Digest::sha256(&blob_content(*blob));
            outcome(repository(r).mount_blob(&digest, &from).await, |info| Outcome::Size(info.size))
        }
        Op::ListTags { repository: r } => outcome(repository(r).tags(None, None).await, Outcome::Tags),
        Op::StatBlob { repository: r, blob } => {
            outcome(repository(r).stat_blob(&Digest::sha256(&blob_content(*blob))).await, |info| {
                Outcome::Size(info.size)
            })
        }
    }
}

fn run_model(make: impl Fn() -> (Arc<dyn StorageDriver>, Option<tempfile::TempDir>), cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let result = runner.run(&prop::collection::vec(op(), 1..30), |ops| {
        let (driver, _dir) = make();
        let registry = Registry::new(driver, RegistryOptions::default());
        runtime.block_on(async {
            let mut model = Model::default();
            for (i, op) in ops.iter().enumerate() {
                // The model pushes the config blob with every blob, as `run` does.
                if let Op::PushBlob { repository, .. } = op {
                    model.blobs.entry(*repository).or_default().insert(Digest::sha256(CONFIG));
                }
                let expected = model.apply(op);
                let actual =
                    run(&registry, op).await.map_err(|e| TestCaseError::fail(format!("step {i} {op:?}: {e}")))?;
                match (&actual, &expected) {
                    (Outcome::ManifestBlobUnknown(named), Outcome::MissingOneOf(missing)) => {
                        prop_assert!(missing.contains(named), "step {} {:?}: {} is not missing", i, op, named);
                    }
                    _ => prop_assert_eq!(&actual, &expected, "step {} {:?}", i, op),
                }
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn memory_matches_the_model() {
    run_model(|| (Arc::new(MemoryDriver::new()), None), 128);
}

#[test]
fn filesystem_matches_the_model() {
    run_model(
        || {
            let dir = tempfile::tempdir().unwrap();
            (Arc::new(FilesystemDriver::new(dir.path()).unwrap()), Some(dir))
        },
        48,
    );
}
