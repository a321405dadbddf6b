//! What a repository holds, listed whole with the times its links were written: the input
//! of retention policies and of reports.

use std::time::SystemTime;

use futures::{StreamExt as _, TryStreamExt as _};
use wharf_oci::Digest;

use crate::{Repository, Result, layout};

/// A manifest of a repository, and when it was linked there (pushed, or pushed again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRevision {
    /// The manifest.
    pub digest: Digest,
    /// When its link was written.
    pub linked: SystemTime,
}

/// A tag, the manifest it points at and when it was last pointed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagLink {
    /// The tag.
    pub tag: String,
    /// The manifest.
    pub digest: Digest,
    /// When the tag's link was written.
    pub linked: SystemTime,
}

impl Repository {
    /// Every manifest the repository has, by digest, with when each was linked.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn manifest_revisions(&self) -> Result<Vec<ManifestRevision>> {
        let files: Vec<wharf_storage::FileInfo> =
            self.driver().walk(&layout::revisions(&self.name), None).try_collect().await?;
        let mut revisions: Vec<ManifestRevision> = files
            .into_iter()
            .filter_map(|file| {
                let mut parts = file.path.rsplit('/');
                let (Some("link"), Some(hex), Some(algorithm)) = (parts.next(), parts.next(), parts.next()) else {
                    return None;
                };
                let digest = format!("{algorithm}:{hex}").parse().ok()?;
                Some(ManifestRevision { digest, linked: file.modified })
            })
            .collect();
        revisions.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(revisions)
    }

    /// Every tag with the manifest it points at, by name, with when its link was written.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn tag_links(&self) -> Result<Vec<TagLink>> {
        let files: Vec<wharf_storage::FileInfo> =
            self.driver().walk(&layout::tags(&self.name), None).try_collect().await?;
        let currents: Vec<(String, String, SystemTime)> = files
            .into_iter()
            .filter_map(|file| {
                let mut parts = file.path.rsplit('/');
                let (Some("link"), Some("current"), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
                    return None;
                };
                Some((tag.to_owned(), file.path.clone(), file.modified))
            })
            .collect();
        let links: Vec<Option<TagLink>> = futures::stream::iter(currents)
            .map(|(tag, path, linked)| async move {
                let digest = self.registry.read_link(&path).await?;
                Ok::<_, crate::Error>(digest.map(|digest| TagLink { tag, digest, linked }))
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        let mut links: Vec<TagLink> = links.into_iter().flatten().collect();
        links.sort_by(|a, b| a.tag.cmp(&b.tag));
        Ok(links)
    }
}
