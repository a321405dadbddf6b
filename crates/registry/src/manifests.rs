//! Manifests: pushed by tag or digest with what they reference checked, read, deleted.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use wharf_oci::{Digest, Manifest, Tag};

use crate::{Error, Repository, Result, layout};

/// How a manifest is asked for: by tag or by digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ManifestReference {
    /// A tag, such as `latest`.
    Tag(Tag),
    /// A digest, such as `sha256:…`.
    Digest(Digest),
}

impl FromStr for ManifestReference {
    type Err = Error;

    /// A digest when the text has a `:` (which no tag has), else a tag: the one reading of a
    /// manifest reference, for the API's paths as for everyone else.
    ///
    /// # Errors
    /// [`Error::DigestInvalid`] for text with a `:` that is no digest, [`Error::TagInvalid`]
    /// for text without one that is no tag.
    fn from_str(text: &str) -> Result<Self> {
        if text.contains(':') {
            Ok(ManifestReference::Digest(text.parse().map_err(Error::DigestInvalid)?))
        } else {
            Ok(ManifestReference::Tag(text.parse().map_err(Error::TagInvalid)?))
        }
    }
}

impl fmt::Display for ManifestReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestReference::Tag(tag) => f.write_str(tag),
            ManifestReference::Digest(digest) => write!(f, "{digest}"),
        }
    }
}

/// A manifest as stored: the exact bytes pushed, their digest and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// The digest of `content`.
    pub digest: Digest,
    /// The manifest's media type (its `mediaType`, or the kind it was recognised as).
    pub media_type: String,
    /// The bytes, exactly as pushed.
    pub content: Bytes,
}

impl Repository {
    /// Stores a manifest under a tag or its digest. Everything it references (but its
    /// `subject`, and what [`RegistryOptions::index_children`](crate::RegistryOptions::index_children) and
    /// [`RegistryOptions::require_image_blobs`](crate::RegistryOptions::require_image_blobs) let be absent) must be in the repository.
    ///
    /// # Errors
    /// [`Error::ManifestTooLarge`], [`Error::ManifestInvalid`], [`Error::DigestMismatch`] when
    /// pushed by a digest it does not have, [`Error::ManifestBlobUnknown`].
    pub async fn put_manifest(
        &self,
        reference: &ManifestReference,
        content: Bytes,
        content_type: Option<&str>,
    ) -> Result<Digest> {
        let limit = self.registry.inner.options.max_manifest_bytes;
        if content.len() as u64 > limit {
            return Err(Error::ManifestTooLarge { size: content.len() as u64, limit });
        }
        let manifest = Manifest::parse(content.clone(), content_type).map_err(Error::ManifestInvalid)?;
        let digest = match reference {
            ManifestReference::Digest(expected) => {
                let actual = manifest.digest_with(expected.algorithm());
                if actual != *expected {
                    return Err(Error::DigestMismatch { expected: expected.clone(), actual });
                }
                actual
            }
            ManifestReference::Tag(_) => manifest.digest().clone(),
        };
        self.check_references(&manifest).await?;

        if self.registry.blob_size(&digest).await?.is_none() {
            self.driver().put_content(&layout::blob_data(&digest), content.clone()).await?;
        }
        self.registry.write_link(&layout::revision_link(&self.name, &digest), &digest).await?;
        // Write, then verify: a garbage collection may have set a reference aside meanwhile.
        if let Err(e) = self.check_references(&manifest).await {
            let _ = self.driver().delete(&layout::revision_dir(&self.name, &digest)).await;
            return Err(e);
        }
        if let Some(subject) = manifest.subject() {
            let mut descriptor = manifest.descriptor();
            descriptor.digest = digest.clone();
            let entry = serde_json::to_vec(&descriptor).map_err(|e| {
                Error::Storage(wharf_storage::Error::Backend {
                    driver: "registry",
                    operation: "encode referrer",
                    path: layout::referrers(&self.name, &subject.digest),
                    source: Box::new(e),
                })
            })?;
            let path = layout::referrer_entry(&self.name, &subject.digest, &digest);
            self.driver().put_content(&path, Bytes::from(entry)).await?;
        }
        if let ManifestReference::Tag(tag) = reference {
            self.tag(tag, &digest).await?;
        }
        // A collection that found the manifest untagged, before its revision link and tag
        // were written, may have set its bytes aside after the check above and re-checked
        // before the link and tag existed. Once both exist, a collection that sets the bytes
        // aside finds them when it re-checks; until then, what is gone is written again.
        if self.registry.blob_size(&digest).await?.is_none() {
            self.driver().put_content(&layout::blob_data(&digest), content).await?;
        }
        Ok(digest)
    }

    async fn check_references(&self, manifest: &Manifest) -> Result<()> {
        let subject = manifest.subject().map(|s| s.digest.clone());
        let is_index = manifest.kind().is_index();
        let options = &self.registry.inner.options;
        if !is_index && !options.require_image_blobs {
            return Ok(());
        }
        // Owned digests, so that the future stays `Send` for any caller.
        let digests: Vec<Digest> = manifest
            .references()
            .filter(|d| Some(&d.digest) != subject.as_ref())
            .filter(|d| !is_index || options.index_children.requires(d))
            // Foreign layers are fetched from their URLs, not from the registry.
            .filter(|d| d.urls.as_ref().is_none_or(|urls| urls.is_empty()))
            .map(|d| d.digest.clone())
            .collect();
        for batch in digests.chunks(16) {
            futures::future::try_join_all(batch.iter().map(|digest| self.check_reference(digest, is_index))).await?;
        }
        Ok(())
    }

    async fn check_reference(&self, digest: &Digest, is_manifest: bool) -> Result<()> {
        let link = if is_manifest {
            layout::revision_link(&self.name, digest)
        } else {
            layout::layer_link(&self.name, digest)
        };
        let linked = self.registry.read_link(&link).await?;
        if linked.as_ref() == Some(digest) && self.registry.blob_size(digest).await?.is_some() {
            Ok(())
        } else {
            Err(Error::ManifestBlobUnknown { repository: self.name.clone(), digest: digest.clone() })
        }
    }

    /// The digest a reference points to, if the repository has that manifest.
    ///
    /// # Errors
    /// [`Error::ManifestUnknown`].
    pub async fn resolve(&self, reference: &ManifestReference) -> Result<Digest> {
        let unknown = || Error::ManifestUnknown { repository: self.name.clone(), reference: reference.to_string() };
        let digest = match reference {
            ManifestReference::Tag(tag) => {
                self.registry.read_link(&layout::tag_current(&self.name, tag)).await?.ok_or_else(unknown)?
            }
            ManifestReference::Digest(digest) => digest.clone(),
        };
        match self.registry.read_link(&layout::revision_link(&self.name, &digest)).await? {
            Some(linked) if linked == digest => Ok(digest),
            _ => Err(unknown()),
        }
    }

    /// A manifest's bytes, digest and media type.
    ///
    /// # Errors
    /// [`Error::ManifestUnknown`].
    pub async fn get_manifest(&self, reference: &ManifestReference) -> Result<StoredManifest> {
        let digest = match reference {
            // A tag's link is written after its manifest's revision link, and a revision goes
            // only once no tag points at it (a manifest's deletion removes its tags first; a
            // collection takes untagged manifests only): the tag, read now, is enough.
            ManifestReference::Tag(tag) => {
                self.registry.read_link(&layout::tag_current(&self.name, tag)).await?.ok_or_else(|| {
                    Error::ManifestUnknown { repository: self.name.clone(), reference: tag.to_string() }
                })?
            }
            ManifestReference::Digest(_) => self.resolve(reference).await?,
        };
        if let Some((media_type, content)) = self.registry.inner.manifests.get(&digest) {
            return Ok(StoredManifest { digest, media_type, content });
        }
        let content = match self.driver().get_content(&layout::blob_data(&digest)).await {
            Ok(content) => content,
            Err(e) if e.is_not_found() => {
                return Err(Error::ManifestUnknown { repository: self.name.clone(), reference: reference.to_string() });
            }
            Err(e) => return Err(e.into()),
        };
        let manifest = Manifest::parse(content.clone(), None).map_err(Error::ManifestInvalid)?;
        let media_type = manifest.media_type().to_owned();
        self.registry.inner.manifests.insert(digest.clone(), media_type.clone(), content.clone());
        Ok(StoredManifest { digest, media_type, content })
    }

    /// Deletes a manifest and every tag that points to it.
    ///
    /// # Errors
    /// [`Error::ManifestUnknown`].
    pub async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        let digest = self.resolve(&ManifestReference::Digest(digest.clone())).await?;
        if let Ok(stored) = self.get_manifest(&ManifestReference::Digest(digest.clone())).await
            && let Ok(manifest) = Manifest::parse(stored.content, None)
            && let Some(subject) = manifest.subject()
        {
            match self.driver().delete(&layout::referrer_dir(&self.name, &subject.digest, &digest)).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        for tag in self.tags(None, None).await? {
            if self.registry.read_link(&layout::tag_current(&self.name, &tag)).await?.as_ref() == Some(&digest) {
                match self.untag(&tag).await {
                    // Another delete (another process) took the tag meanwhile.
                    Ok(()) | Err(Error::ManifestUnknown { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        match self.driver().delete(&layout::revision_dir(&self.name, &digest)).await {
            Ok(()) => Ok(()),
            // Another delete of the same manifest got there first: for this one, it is unknown.
            Err(e) if e.is_not_found() => {
                Err(Error::ManifestUnknown { repository: self.name.clone(), reference: digest.to_string() })
            }
            Err(e) => Err(e.into()),
        }
    }
}
