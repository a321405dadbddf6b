//! Tags: listed, set and removed.

use bytes::Bytes;
use wharf_oci::Digest;
use wharf_storage::{Durability, Precondition};

use crate::{Error, ManifestReference, Repository, Result, layout};

impl Repository {
    /// The tags, in lexical order, after `last` (exclusive) and at most `n` of them.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn tags(&self, n: Option<usize>, last: Option<&str>) -> Result<Vec<String>> {
        // A tag is listed when its current link exists, so a tag whose removal was cut short
        // by a crash is not. The folder names come from one listing; only the links of the
        // page are looked at.
        let names: Vec<String> = match self.driver().list(&layout::tags(&self.name)).await {
            Ok(paths) => paths
                .iter()
                .filter_map(|path| path.rsplit('/').next())
                .filter(|tag| last.is_none_or(|last| *tag > last))
                .map(str::to_owned)
                .collect(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let wanted = n.unwrap_or(usize::MAX);
        let mut tags = Vec::new();
        for batch in names.chunks(256) {
            if tags.len() >= wanted {
                break;
            }
            let links = batch.iter().map(|tag| layout::tag_current(&self.name, tag)).collect();
            let found = self.driver().stat_many(links).await?;
            tags.extend(
                batch
                    .iter()
                    .zip(found)
                    .filter(|(_, link)| link.as_ref().is_some_and(|l| !l.is_dir))
                    .map(|(tag, _)| tag.clone()),
            );
        }
        // Listings come sorted by path; sort by name all the same, whatever the backend.
        tags.sort_unstable();
        tags.truncate(wanted);
        Ok(tags)
    }

    /// Points `tag` at a manifest the repository has.
    ///
    /// # Errors
    /// [`Error::TagInvalid`], [`Error::ManifestUnknown`].
    pub async fn tag(&self, tag: &str, digest: &Digest) -> Result<()> {
        wharf_oci::validate_tag(tag).map_err(Error::TagInvalid)?;
        let reference = ManifestReference::Digest(digest.clone());
        self.resolve(&reference).await?;
        // The current link first: a crash between the two leaves a working tag.
        self.registry.write_link(&layout::tag_current(&self.name, tag), digest).await?;
        self.registry.write_link(&layout::tag_index_entry(&self.name, tag, digest), digest).await?;
        // Write, then verify: a garbage collection may have removed the manifest meanwhile.
        if let Err(e) = self.resolve(&reference).await {
            let _ = self.driver().delete(&layout::tag_dir(&self.name, tag)).await;
            return Err(e);
        }
        Ok(())
    }

    /// Points `tag` at `digest`, as [`Repository::tag`] does, if `guard` allows the move
    /// from the manifest the tag points at now (`None` for a new tag). The check and the
    /// write are one step against every other guarded move of the tag, from any process: the
    /// link is replaced only while it is still what the guard saw, and checked again if not.
    ///
    /// # Errors
    /// [`Error::TagDenied`] with the guard's reason; as [`Repository::tag`] otherwise.
    pub async fn tag_guarded(
        &self,
        tag: &str,
        digest: &Digest,
        guard: &(dyn Fn(Option<&Digest>) -> std::result::Result<(), String> + Send + Sync),
    ) -> Result<()> {
        wharf_oci::validate_tag(tag).map_err(Error::TagInvalid)?;
        let reference = ManifestReference::Digest(digest.clone());
        self.resolve(&reference).await?;
        let path = layout::tag_current(&self.name, tag);
        loop {
            let (current, precondition) = match self.driver().get_versioned(&path).await {
                Ok((content, version)) => {
                    let text = String::from_utf8_lossy(&content);
                    let current: Digest =
                        text.trim().parse().map_err(|source| Error::CorruptLink { path: path.clone(), source })?;
                    (Some(current), Precondition::Matches(version))
                }
                Err(e) if e.is_not_found() => (None, Precondition::Absent),
                Err(e) => return Err(e.into()),
            };
            guard(current.as_ref()).map_err(|reason| Error::TagDenied {
                tag: tag.to_owned(),
                digest: digest.clone(),
                reason,
            })?;
            if current.as_ref() == Some(digest) {
                break;
            }
            let content = Bytes::from(digest.to_string());
            match self.driver().put_if(&path, content, precondition, Durability::Durable).await {
                Ok(_) => break,
                // Moved meanwhile: look again, and ask the guard again.
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.registry.write_link(&layout::tag_index_entry(&self.name, tag, digest), digest).await?;
        if let Err(e) = self.resolve(&reference).await {
            let _ = self.driver().delete(&layout::tag_dir(&self.name, tag)).await;
            return Err(e);
        }
        Ok(())
    }

    /// Removes a tag (the manifest stays).
    ///
    /// # Errors
    /// [`Error::ManifestUnknown`] when there is no such tag.
    pub async fn untag(&self, tag: &str) -> Result<()> {
        wharf_oci::validate_tag(tag).map_err(Error::TagInvalid)?;
        // The current link first: from then on the tag is gone, whatever a crash leaves.
        let current = format!("{}/current", layout::tag_dir(&self.name, tag));
        let existed = match self.driver().delete(&current).await {
            Ok(()) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e.into()),
        };
        match self.driver().delete(&layout::tag_dir(&self.name, tag)).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if existed {
            Ok(())
        } else {
            Err(Error::ManifestUnknown { repository: self.name.clone(), reference: tag.to_owned() })
        }
    }
}
