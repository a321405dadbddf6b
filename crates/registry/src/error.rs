//! The one error type of `wharf-registry`.

use wharf_oci::{Digest, RepositoryName};

/// What a registry operation can fail with; the distribution API maps each to its error code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The blob is not in the repository (`BLOB_UNKNOWN`).
    #[error("blob {digest} is not in repository {repository}")]
    BlobUnknown {
        /// The repository asked.
        repository: RepositoryName,
        /// The blob asked for.
        digest: Digest,
    },
    /// No upload with this id in the repository (`BLOB_UPLOAD_UNKNOWN`).
    #[error("upload {id} is not in progress in repository {repository}")]
    UploadUnknown {
        /// The repository asked.
        repository: RepositoryName,
        /// The upload id asked for.
        id: String,
    },
    /// A chunk did not start where the upload ends (`416 Range Not Satisfiable`).
    #[error("upload {id} has {expected} bytes; a chunk starting at {offset} does not follow on")]
    UploadOffset {
        /// The upload.
        id: String,
        /// Where the next chunk must start.
        expected: u64,
        /// Where the chunk said it starts.
        offset: u64,
    },
    /// Another request is writing to the upload, in this process or another that shares the
    /// store: nothing was changed. The client asks for the upload's status and goes on from
    /// there (`416 Range Not Satisfiable`).
    #[error("upload {id} is being written by another request")]
    UploadInUse {
        /// The upload.
        id: String,
    },
    /// An upload whose saved hash state does not match its data (cut short by a crash): it
    /// cannot be resumed and should be restarted.
    #[error("upload {id} cannot be resumed at {size} bytes: {reason}")]
    UploadAbandoned {
        /// The upload.
        id: String,
        /// How many bytes its data has.
        size: u64,
        /// What is missing.
        reason: String,
    },
    /// Another garbage collection is running on the store, in this process or another; or
    /// this one lost its lease midway and stopped before its next change.
    #[error("another garbage collection is running on this store")]
    CollectionInProgress,
    /// Content does not hash to the digest it was sent with (`DIGEST_INVALID`).
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest the client announced.
        expected: Digest,
        /// The digest of what was received.
        actual: Digest,
    },
    /// The manifest is not in the repository (`MANIFEST_UNKNOWN`).
    #[error("manifest {reference} is not in repository {repository}")]
    ManifestUnknown {
        /// The repository asked.
        repository: RepositoryName,
        /// The tag or digest asked for.
        reference: String,
    },
    /// The manifest is malformed or unsupported (`MANIFEST_INVALID`).
    #[error("{0}")]
    ManifestInvalid(#[source] wharf_oci::Error),
    /// The manifest points to content the repository does not have (`MANIFEST_BLOB_UNKNOWN`).
    #[error("manifest references {digest}, which is not in repository {repository}")]
    ManifestBlobUnknown {
        /// The repository the manifest was pushed to.
        repository: RepositoryName,
        /// The first missing blob or manifest.
        digest: Digest,
    },
    /// The manifest is larger than the registry accepts (`413`).
    #[error("manifest of {size} bytes is larger than the limit of {limit}")]
    ManifestTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A tag move that a guard refused (`DENIED`): a tag policy's immutability, say.
    #[error("tag {tag} cannot point at {digest}: {reason}")]
    TagDenied {
        /// The tag.
        tag: String,
        /// Where it was to point.
        digest: Digest,
        /// The guard's reason.
        reason: String,
    },
    /// A tag breaks the tag grammar (`TAG_INVALID`).
    #[error("{0}")]
    TagInvalid(#[source] wharf_oci::Error),
    /// A reference that reads as a digest (it has a `:`) is not one (`DIGEST_INVALID`).
    #[error("{0}")]
    DigestInvalid(#[source] wharf_oci::Error),
    /// The store failed, or holds something this registry cannot read.
    #[error(transparent)]
    Storage(#[from] wharf_storage::Error),
    /// A link file does not hold a digest: the store was damaged or written by something else.
    #[error("{path} does not hold a valid digest: {source}")]
    CorruptLink {
        /// The link file.
        path: String,
        /// Why its content is not a digest.
        #[source]
        source: wharf_oci::Error,
    },
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
