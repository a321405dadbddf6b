//! An embeddable container registry: repositories of blobs, uploads, manifests and tags,
//! stored through any [`StorageDriver`](wharf_storage::StorageDriver) in CNCF Distribution's layout.
//!
//! A root written by Distribution (`registry:2`) opens here, and what is written here
//! Distribution serves: see [`layout`].
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use futures::stream;
//! use wharf_oci::{Digest, media_type};
//! use wharf_registry::{ManifestReference, Registry, RegistryOptions};
//! use wharf_storage::MemoryDriver;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new(Arc::new(MemoryDriver::new()), RegistryOptions::default());
//! let repository = registry.repository(&"team/app".parse()?);
//!
//! // A blob, pushed in two chunks.
//! let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
//! let upload = repository.start_upload().await?;
//! repository.append_upload(&upload.id, Some(0), stream::iter([Ok(config.slice(..10))])).await?;
//! let blob = repository.finish_upload(&upload.id, &Digest::sha256(&config), Some(stream::iter([Ok(config.slice(10..))]))).await?;
//! assert_eq!(blob.size, config.len() as u64);
//!
//! // A manifest that points to it, tagged.
//! let manifest = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[]}}"#,
//!     media_type::OCI_IMAGE_MANIFEST, media_type::OCI_IMAGE_CONFIG, blob.digest, blob.size,
//! );
//! let digest = repository.put_manifest(&"v1".parse()?, Bytes::from(manifest.clone()), None).await?;
//! let stored = repository.get_manifest(&ManifestReference::Tag("v1".parse()?)).await?;
//! assert_eq!((stored.digest, stored.content), (digest, Bytes::from(manifest)));
//! assert_eq!(repository.tags(None, None).await?, ["v1"]);
//! # Ok(())
//! # }
//! ```

mod blobs;
mod cache;
mod error;
pub mod gc;
pub mod layout;
mod lease;
mod listing;
mod manifests;
mod options;
mod pulls;
mod records;
mod referrers;
mod registry;
mod repository;
mod tags;
mod uploads;

pub use crate::blobs::BlobInfo;
pub use crate::error::{Error, Result};
pub use crate::gc::{GcOptions, GcReport};
pub use crate::listing::{ManifestRevision, TagLink};
pub use crate::manifests::{ManifestReference, StoredManifest};
pub use crate::options::{IndexChildren, RegistryOptions};
pub use crate::records::MaintenanceRecord;
pub use crate::registry::Registry;
pub use crate::repository::Repository;
pub use crate::uploads::{PurgedUpload, UploadStatus};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
