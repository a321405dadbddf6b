//! Blobs: what a repository has, mounts from other repositories, deletion and usage.

use bytes::Bytes;
use futures::Stream;
use wharf_oci::{Digest, RepositoryName};
use wharf_storage::{ByteStream, StorageDriverExt};

use crate::{Error, Repository, Result, layout};

/// A blob's address and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

impl Repository {
    /// The size of a blob the repository has.
    ///
    /// # Errors
    /// [`Error::BlobUnknown`] when the repository does not link it (or its data is gone).
    pub async fn stat_blob(&self, digest: &Digest) -> Result<BlobInfo> {
        let unknown = || Error::BlobUnknown { repository: self.name.clone(), digest: digest.clone() };
        let linked = self.registry.read_link(&layout::layer_link(&self.name, digest)).await?;
        if linked.as_ref() != Some(digest) {
            return Err(unknown());
        }
        let size = self.registry.blob_size(digest).await?.ok_or_else(unknown)?;
        Ok(BlobInfo { digest: digest.clone(), size })
    }

    /// Streams a blob from `offset`.
    ///
    /// # Errors
    /// [`Error::BlobUnknown`]; storage errors such as an offset past the end.
    pub async fn read_blob(&self, digest: &Digest, offset: u64) -> Result<(BlobInfo, ByteStream)> {
        let info = self.stat_blob(digest).await?;
        let stream = self.driver().reader(&layout::blob_data(digest), offset).await?;
        Ok((info, stream))
    }

    /// A URL the client can fetch the blob from directly, where the store has one (S3's
    /// presigned URLs).
    ///
    /// # Errors
    /// [`Error::BlobUnknown`]; storage errors.
    pub async fn blob_url(&self, digest: &Digest, method: wharf_storage::RedirectMethod) -> Result<Option<url::Url>> {
        self.stat_blob(digest).await?;
        Ok(self.driver().redirect_url(&layout::blob_data(digest), method).await?)
    }

    /// Whether anything of the repository is stored (a manifest, a blob link, an upload).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn exists(&self) -> Result<bool> {
        Ok(self.driver().exists(&layout::repository(&self.name)).await?)
    }

    /// Removes a blob from the repository (its data stays until garbage collection).
    ///
    /// # Errors
    /// [`Error::BlobUnknown`] when the repository does not have it.
    pub async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        self.stat_blob(digest).await?;
        self.driver().delete(&layout::layer_dir(&self.name, digest)).await?;
        Ok(())
    }

    /// Links a blob that repository `from` has into this one, without copying it.
    ///
    /// # Errors
    /// [`Error::BlobUnknown`] when `from` does not have it.
    pub async fn mount_blob(&self, digest: &Digest, from: &RepositoryName) -> Result<BlobInfo> {
        let info = self.registry.repository(from).stat_blob(digest).await?;
        self.registry.write_link(&layout::layer_link(&self.name, digest), digest).await?;
        // Write, then verify: a garbage collection may have set the blob aside meanwhile.
        if self.registry.blob_size(digest).await?.is_none() {
            let _ = self.driver().delete(&layout::layer_dir(&self.name, digest)).await;
            return Err(Error::BlobUnknown { repository: from.clone(), digest: digest.clone() });
        }
        Ok(info)
    }

    /// Links a blob the registry holds into this repository, whichever repository pushed
    /// it: the spec's mount without `from`. The caller decides whether the client may read
    /// what it names (a registry whose users may each read only some repositories should not
    /// offer this).
    ///
    /// # Errors
    /// [`Error::BlobUnknown`] when the registry does not have it.
    pub async fn link_blob(&self, digest: &Digest) -> Result<BlobInfo> {
        let unknown = || Error::BlobUnknown { repository: self.name.clone(), digest: digest.clone() };
        let size = self.registry.blob_size(digest).await?.ok_or_else(unknown)?;
        self.registry.write_link(&layout::layer_link(&self.name, digest), digest).await?;
        // Write, then verify: a garbage collection may have set the blob aside meanwhile.
        if self.registry.blob_size(digest).await?.is_none() {
            let _ = self.driver().delete(&layout::layer_dir(&self.name, digest)).await;
            return Err(unknown());
        }
        Ok(BlobInfo { digest: digest.clone(), size })
    }

    /// Stores a whole blob whose digest is known up front; the content is verified before it
    /// becomes visible.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] when the content hashes to something else (nothing is stored).
    pub async fn put_blob<S>(&self, expected: &Digest, content: S) -> Result<BlobInfo>
    where
        S: Stream<Item = wharf_storage::Result<Bytes>> + Send + Unpin,
    {
        let upload = self.start_upload().await?;
        self.finish_upload(&upload.id, expected, Some(content)).await
    }

    // ----- usage -----

    /// The bytes of every blob and manifest the repository links, each counted once.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn usage(&self) -> Result<u64> {
        let (layers_dir, revisions_dir) = (layout::layers(&self.name), layout::revisions(&self.name));
        let (layers, revisions) = futures::try_join!(
            self.linked(&layers_dir, layout::layer_link),
            self.linked(&revisions_dir, layout::revision_link)
        )?;
        let digests: std::collections::BTreeSet<Digest> =
            layers.into_iter().chain(revisions).map(|(digest, _)| digest).collect();
        // One batch of stats, not one call per blob.
        let data = digests.iter().map(layout::blob_data).collect();
        let sizes = self.driver().stat_many(data).await?;
        Ok(sizes.into_iter().flatten().filter(|info| !info.is_dir).map(|info| info.size).fold(0, u64::saturating_add))
    }
}
