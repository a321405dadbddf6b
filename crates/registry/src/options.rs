//! How a [`Registry`](crate::Registry) checks what is pushed, and the terms of its leases.

use wharf_oci::MAX_MANIFEST_BYTES;

/// Settings of a [`Registry`](crate::Registry).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryOptions {
    /// The largest manifest accepted, 4 MiB by default.
    pub max_manifest_bytes: u64,
    /// Track when manifests are pulled, writing each at most once per this interval; off
    /// (`None`) by default.
    pub pull_tracking_interval: Option<std::time::Duration>,
    /// The term of the lease a request holds on an upload while it writes to it, renewed as
    /// it goes: a request of a process that crashed blocks the upload for at most this long.
    /// One minute by default.
    pub upload_lease_term: std::time::Duration,
    /// Which children of an index must be in the repository when the index is pushed: all
    /// of them by default.
    pub index_children: IndexChildren,
    /// Whether the config and layers of an image manifest must be in the repository when it
    /// is pushed: on by default; off, manifests may be sparse (their blobs pushed later, or
    /// never).
    pub require_image_blobs: bool,
}

/// Which children of an image index must exist when it is pushed (Distribution's
/// `validation.manifests.indexes.platforms`); the others may be absent, as in a sparse index
/// that copies a few platforms of a bigger one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexChildren {
    /// Every child (`all`).
    #[default]
    All,
    /// None (`none`).
    None,
    /// The children whose platform is one of these, as (OS, architecture) (`list`, with
    /// `platformlist`).
    Platforms(Vec<(String, String)>),
}

impl IndexChildren {
    /// Whether an index entry must exist.
    pub fn requires(&self, child: &wharf_oci::Descriptor) -> bool {
        match self {
            IndexChildren::All => true,
            IndexChildren::None => false,
            IndexChildren::Platforms(platforms) => child.platform.as_ref().is_some_and(|platform| {
                let (os, architecture) = (platform.os().to_string(), platform.architecture().to_string());
                platforms.iter().any(|(o, a)| *o == os && *a == architecture)
            }),
        }
    }
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            max_manifest_bytes: MAX_MANIFEST_BYTES as u64,
            pull_tracking_interval: None,
            upload_lease_term: std::time::Duration::from_secs(60),
            index_children: IndexChildren::All,
            require_image_blobs: true,
        }
    }
}

impl RegistryOptions {
    /// Sets [`RegistryOptions::upload_lease_term`].
    #[must_use]
    pub fn with_upload_lease_term(mut self, term: std::time::Duration) -> RegistryOptions {
        self.upload_lease_term = term;
        self
    }

    /// Sets [`RegistryOptions::index_children`].
    #[must_use]
    pub fn with_index_children(mut self, children: IndexChildren) -> RegistryOptions {
        self.index_children = children;
        self
    }

    /// Sets [`RegistryOptions::require_image_blobs`].
    #[must_use]
    pub fn with_require_image_blobs(mut self, required: bool) -> RegistryOptions {
        self.require_image_blobs = required;
        self
    }
}
