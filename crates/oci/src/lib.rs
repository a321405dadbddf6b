//! The content-addressed vocabulary of container registries: digests, image references,
//! media types and manifests.
//!
//! Everything a registry stores is addressed by a [`Digest`]; people name it with a
//! [`Reference`]; what ties content together is a [`Manifest`], kept as the exact bytes that
//! were pushed.
//!
//! ```
//! use wharf_oci::{Digest, Manifest, Reference, media_type};
//!
//! let reference: Reference = "localhost:5000/team/app:v1".parse()?;
//! assert_eq!((reference.registry(), reference.repository()), ("localhost:5000", "team/app"));
//!
//! let config = br#"{"architecture":"amd64","os":"linux"}"#;
//! let raw = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[]}}"#,
//!     media_type::OCI_IMAGE_MANIFEST, media_type::OCI_IMAGE_CONFIG, Digest::sha256(config), config.len(),
//! );
//! let manifest = Manifest::parse(raw.clone(), None)?;
//! assert_eq!(manifest.digest(), &Digest::sha256(raw.as_bytes()));
//! assert_eq!(manifest.config().map(|c| &c.digest), Some(&Digest::sha256(config)));
//! # Ok::<(), wharf_oci::Error>(())
//! ```

mod digest;
mod error;
mod manifest;
pub mod media_type;
mod reference;

pub use crate::digest::{Algorithm, Digest, Digester};
pub use crate::error::{DigestError, Error, Result};
pub use crate::manifest::{Descriptor, MAX_MANIFEST_BYTES, Manifest, ManifestKind, Platform};
pub use crate::reference::{
    DEFAULT_REGISTRY, LEGACY_DEFAULT_REGISTRY, MAX_REPOSITORY_LEN, MAX_TAG_LEN, OFFICIAL_NAMESPACE, Reference,
    RepositoryName, Tag, validate_tag,
};

/// The `oci-spec` crate this one builds on, for its image types (`Platform`, `ImageConfiguration`…).
pub use oci_spec;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
