//! What can go wrong between a client, the cache and an upstream.

/// A mirror's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The upstream has no such manifest or blob (and the cache has none either).
    #[error("{what} is not in {upstream}")]
    NotFound {
        /// The upstream.
        upstream: String,
        /// What was asked for.
        what: String,
    },
    /// The upstream could not be reached or failed, and the cache cannot answer.
    #[error("upstream {upstream}: {what}: {reason}")]
    Upstream {
        /// The upstream.
        upstream: String,
        /// What was asked for.
        what: String,
        /// What failed.
        reason: String,
    },
    /// The local store failed.
    #[error("cache: {0}")]
    Registry(#[from] wharf_registry::Error),
    /// Another request's transfer of the same blob failed.
    #[error("the transfer of {digest} from {upstream} failed: {reason}")]
    Transfer {
        /// The upstream.
        upstream: String,
        /// The blob.
        digest: wharf_oci::Digest,
        /// What failed.
        reason: String,
    },
}

/// A mirror's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
