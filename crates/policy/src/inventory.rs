//! What a registry holds, as the engine reads it: repositories, their manifests (with the
//! blobs they reference, their subject and children) and their tags, with push and pull times.
//! Read from and written to JSON by the `retention` example; built by code from a live
//! registry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wharf_oci::{Digest, Manifest, media_type};

use crate::error::{Error, Result};
use crate::time::Timestamp;

/// Everything the engine is told about a registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// The repositories, in any order.
    pub repositories: Vec<RepositoryInventory>,
}

/// One repository's manifests and tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryInventory {
    /// The repository's name (`team/app`).
    pub name: String,
    /// Its manifests, in any order.
    #[serde(default)]
    pub manifests: Vec<ManifestRecord>,
    /// Its tags, in any order.
    #[serde(default)]
    pub tags: Vec<TagRecord>,
}

/// A manifest in a repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRecord {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its artifact type (an artifact's `artifactType`, or its config's media type), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The size of the manifest itself.
    pub size: u64,
    /// The blobs it references (config and layers).
    #[serde(default)]
    pub blobs: Vec<BlobRecord>,
    /// When it was pushed.
    pub pushed: Timestamp,
    /// When it was last pulled, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<Timestamp>,
    /// The manifest it refers to (a signature's or SBOM's image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    /// The manifests it lists, when it is an index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Digest>,
    /// Its annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A blob a manifest references.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobRecord {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

/// A tag in a repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRecord {
    /// The tag.
    pub name: String,
    /// The manifest it points to.
    pub digest: Digest,
    /// When it was last pushed (pointed at this manifest).
    pub pushed: Timestamp,
    /// When it was last pulled, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<Timestamp>,
}

/// Config media types of images (as opposed to artifacts, whose config type is their
/// artifact type).
pub(crate) const IMAGE_CONFIGS: [&str; 2] = [media_type::OCI_IMAGE_CONFIG, media_type::DOCKER_CONFIG];

impl ManifestRecord {
    /// The record of `manifest`, stored under `digest`, pushed and last pulled when given.
    pub fn of(digest: Digest, manifest: &Manifest, pushed: Timestamp, pulled: Option<Timestamp>) -> ManifestRecord {
        let artifact_type = manifest
            .artifact_type()
            .or_else(|| manifest.config().map(|c| c.media_type.as_str()).filter(|t| !IMAGE_CONFIGS.contains(t)))
            .map(str::to_owned);
        ManifestRecord {
            digest,
            media_type: manifest.media_type().to_owned(),
            artifact_type,
            size: manifest.raw().len() as u64,
            blobs: manifest
                .config()
                .into_iter()
                .chain(manifest.layers())
                .map(|d| BlobRecord { digest: d.digest.clone(), size: d.size })
                .collect(),
            pushed,
            pulled,
            subject: manifest.subject().map(|d| d.digest.clone()),
            children: manifest.manifests().iter().map(|d| d.digest.clone()).collect(),
            annotations: manifest.annotations().clone(),
        }
    }
}

impl Inventory {
    /// Reads an inventory from its JSON.
    ///
    /// # Errors
    /// [`Error::Inventory`] naming the place in the document that is wrong.
    pub fn from_json(text: &str) -> Result<Inventory> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| Error::Inventory { place: e.path().to_string(), reason: e.inner().to_string() })
    }

    /// The inventory as JSON, repositories, manifests and tags sorted.
    pub fn to_json(&self) -> String {
        let mut sorted = self.clone();
        sorted.repositories.sort_by(|a, b| a.name.cmp(&b.name));
        for repository in &mut sorted.repositories {
            repository.manifests.sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
            repository.tags.sort_by(|a, b| a.name.cmp(&b.name));
        }
        serde_json::to_string_pretty(&sorted).unwrap_or_default()
    }
}
