//! What a repository holds, listed whole with the times its links were written: the input
//! of retention policies and of reports.

use std::time::SystemTime;

use futures::{StreamExt as _, TryStreamExt as _};
use wharf_oci::{Digest, RepositoryName};

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
    /// Every manifest the repository has, by digest, with when each was linked: its
    /// revision folders listed, their links looked at in one batch.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn manifest_revisions(&self) -> Result<Vec<ManifestRevision>> {
        let linked = self.linked(&layout::revisions(&self.name), layout::revision_link).await?;
        let mut revisions: Vec<ManifestRevision> =
            linked.into_iter().map(|(digest, linked)| ManifestRevision { digest, linked }).collect();
        revisions.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(revisions)
    }

    /// The digests of `dir`'s `<alg>/<hex>` folders that hold a link, with when it was
    /// written.
    pub(crate) async fn linked(
        &self,
        dir: &str,
        link: fn(&RepositoryName, &Digest) -> String,
    ) -> Result<Vec<(Digest, SystemTime)>> {
        let digests = self.registry.digest_folders(dir, false).await?;
        let links = self.driver().stat_many(digests.iter().map(|digest| link(&self.name, digest)).collect()).await?;
        Ok(digests
            .into_iter()
            .zip(links)
            .filter_map(|(digest, info)| info.filter(|info| !info.is_dir).map(|info| (digest, info.modified)))
            .collect())
    }

    /// Every tag, by name, with when its link was written: the tags listed, their links
    /// looked at in one batch, none read.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn tag_times(&self) -> Result<Vec<(String, SystemTime)>> {
        let names: Vec<String> = match self.driver().list(&layout::tags(&self.name)).await {
            Ok(paths) => paths.iter().filter_map(|path| path.rsplit('/').next()).map(str::to_owned).collect(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let links =
            self.driver().stat_many(names.iter().map(|tag| layout::tag_current(&self.name, tag)).collect()).await?;
        let mut tags: Vec<(String, SystemTime)> = names
            .into_iter()
            .zip(links)
            .filter_map(|(tag, info)| info.filter(|info| !info.is_dir).map(|info| (tag, info.modified)))
            .collect();
        tags.sort();
        Ok(tags)
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
