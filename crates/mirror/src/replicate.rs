//! Replication: an image of the registry copied to another registry over the distribution
//! API, everything it references first (blobs, an index's images) and the manifests that
//! refer to it (signatures, SBOMs) after, each piece skipped when the target has it, so that
//! a replication that failed resumes where it stopped when it is run again.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use wharf_client::{BlobSource, Client};
use wharf_oci::{Descriptor, Digest, Manifest, RepositoryName};
use wharf_registry::{ManifestReference, Registry, Repository};

/// A registry images are copied to.
#[derive(Debug, Clone)]
pub struct ReplicaTarget {
    /// What logs and metrics call it.
    pub name: String,
    /// Where the client reaches it: `host[:port]`.
    pub host: String,
    /// A repository prefix there (`dr` puts `team/app` at `dr/team/app`); none by default.
    pub prefix: Option<String>,
    /// The client that reaches it, with its credentials and TLS settings.
    pub client: Client,
}

/// What a replication copied and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replicated {
    /// Blobs uploaded.
    pub blobs_copied: u64,
    /// Blobs the target had (or mounted).
    pub blobs_skipped: u64,
    /// Manifests pushed (the image's, its index's images, its referrers).
    pub manifests: u64,
}

/// Why a replication failed.
#[derive(Debug, thiserror::Error)]
#[error("replicating {what} to {target}: {reason}")]
pub struct ReplicationError {
    /// The target.
    pub target: String,
    /// What was being copied.
    pub what: String,
    /// What failed.
    pub reason: String,
}

/// A blob of the registry, as the client reads what it uploads.
struct LocalBlob {
    repository: Repository,
    digest: Digest,
}

impl BlobSource for LocalBlob {
    fn open(
        &self,
        offset: u64,
    ) -> BoxFuture<'_, wharf_client::Result<BoxStream<'static, wharf_client::Result<Bytes>>>> {
        Box::pin(async move {
            let protocol = |e: &dyn std::fmt::Display| wharf_client::Error::Protocol {
                what: format!("blob {} of {}", self.digest, self.repository.name()),
                reason: e.to_string(),
            };
            let (_, stream) = self.repository.read_blob(&self.digest, offset).await.map_err(|e| protocol(&e))?;
            let what = format!("blob {} of {}", self.digest, self.repository.name());
            Ok(stream
                .map_err(move |e| wharf_client::Error::Protocol { what: what.clone(), reason: e.to_string() })
                .boxed())
        })
    }
}

impl ReplicaTarget {
    /// Where `repository` goes there.
    pub fn repository_name(&self, repository: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{}/{repository}", prefix.trim_matches('/')),
            None => repository.to_owned(),
        }
    }

    /// Copies the image `reference` (a tag or a digest) names in `repository` of `registry`
    /// here, with what it references and what refers to it; the tag, when it is one, is
    /// pushed last.
    ///
    /// # Errors
    /// A [`ReplicationError`] naming what could not be read or copied; what was copied
    /// before stays, and a later run skips it.
    pub async fn replicate(
        &self,
        registry: &Registry,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<Replicated, ReplicationError> {
        let local = registry.repository(repository);
        let remote = self.client.repository(&self.host, &self.repository_name(repository.as_str()));
        let fail = |what: String, reason: &dyn std::fmt::Display| ReplicationError {
            target: self.name.clone(),
            what,
            reason: reason.to_string(),
        };
        let digest = local.resolve(reference).await.map_err(|e| fail(format!("{repository}:{reference}"), &e))?;
        let mut done = Replicated::default();
        let mut copier = Copier { local: &local, remote: &remote, done: &mut done, fail: &fail };
        copier.manifest(&digest, None).await?;
        if let ManifestReference::Tag(tag) = reference {
            copier.manifest(&digest, Some(tag.as_str())).await?;
        }
        // What refers to it (signatures, SBOMs), after it.
        let referrers =
            local.referrers(&digest, None).await.map_err(|e| fail(format!("the referrers of {digest}"), &e))?;
        for referrer in referrers {
            copier.manifest(&referrer.digest, None).await?;
        }
        Ok(done)
    }
}

/// One replication's copying.
struct Copier<'a, F: Fn(String, &dyn std::fmt::Display) -> ReplicationError> {
    local: &'a Repository,
    remote: &'a wharf_client::Repository,
    done: &'a mut Replicated,
    fail: &'a F,
}

impl<F: Fn(String, &dyn std::fmt::Display) -> ReplicationError + Sync> Copier<'_, F> {
    /// Pushes manifest `digest` (under `tag` when given), after its blobs and, for an
    /// index, its images.
    fn manifest<'s>(
        &'s mut self,
        digest: &'s Digest,
        tag: Option<&'s str>,
    ) -> BoxFuture<'s, Result<(), ReplicationError>> {
        Box::pin(async move {
            let what = || format!("manifest {digest} of {}", self.local.name());
            let stored = self
                .local
                .get_manifest(&ManifestReference::Digest(digest.clone()))
                .await
                .map_err(|e| (self.fail)(what(), &e))?;
            let manifest =
                Manifest::parse(stored.content, Some(&stored.media_type)).map_err(|e| (self.fail)(what(), &e))?;
            let present = self.remote.manifest_descriptor(digest.as_str()).await.is_ok_and(|d| d.is_some());
            if let Some(tag) = tag {
                // What it references went first, with the manifest by digest.
                self.remote.push_manifest(tag, &manifest).await.map_err(|e| (self.fail)(what(), &e))?;
                self.done.manifests += 1;
                return Ok(());
            }
            if present {
                return Ok(());
            }
            for child in manifest.manifests() {
                // A child of a sparse index the registry does not have is not copied.
                if self.local.get_manifest(&ManifestReference::Digest(child.digest.clone())).await.is_ok() {
                    self.manifest(&child.digest, None).await?;
                }
            }
            for blob in manifest.config().into_iter().chain(manifest.layers()) {
                self.blob(blob).await?;
            }
            self.remote
                .push_manifest(tag.unwrap_or(digest.as_str()), &manifest)
                .await
                .map_err(|e| (self.fail)(what(), &e))?;
            self.done.manifests += 1;
            Ok(())
        })
    }

    async fn blob(&mut self, blob: &Descriptor) -> Result<(), ReplicationError> {
        let source = LocalBlob { repository: self.local.clone(), digest: blob.digest.clone() };
        match self.remote.push_blob(blob, &source, None).await {
            Ok(wharf_client::BlobOutcome::Uploaded { .. }) => self.done.blobs_copied += 1,
            Ok(_) => self.done.blobs_skipped += 1,
            Err(e) => return Err((self.fail)(format!("blob {} of {}", blob.digest, self.local.name()), &e)),
        }
        Ok(())
    }
}
