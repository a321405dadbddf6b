//! Referrers: the manifests whose `subject` is a given manifest.

use futures::TryStreamExt;
use wharf_oci::{Descriptor, Digest};

use crate::{Error, ManifestReference, Repository, Result, layout};

impl Repository {
    /// The manifests whose `subject` is `subject`, as descriptors (media type, digest, size,
    /// artifact type, annotations), sorted by digest; only those of `artifact_type` when given.
    /// The subject itself need not be in the repository.
    ///
    /// # Errors
    /// Storage errors; [`Error::CorruptLink`] for an entry that is not a descriptor.
    pub async fn referrers(&self, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>> {
        let dir = layout::referrers(&self.name, subject);
        let entries: Vec<wharf_storage::FileInfo> = self.driver().walk(&dir, None).try_collect().await?;
        let mut found = Vec::new();
        for entry in entries.into_iter().filter(|e| e.path.ends_with("/descriptor")) {
            let content = match self.driver().get_content(&entry.path).await {
                Ok(content) => content,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let descriptor: Descriptor = serde_json::from_slice(&content).map_err(|e| Error::CorruptLink {
                path: entry.path.clone(),
                source: wharf_oci::Error::InvalidManifest { reason: e.to_string() },
            })?;
            if artifact_type.is_some_and(|wanted| descriptor.artifact_type.as_deref() != Some(wanted)) {
                continue;
            }
            // A referrer deleted behind our back (by another registry on the same store).
            if self.resolve(&ManifestReference::Digest(descriptor.digest.clone())).await.is_err() {
                continue;
            }
            found.push(descriptor);
        }
        found.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(found)
    }
}
