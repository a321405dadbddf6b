//! The one error type of `wharf-oci`.

use crate::digest::Digest;

/// Everything that can go wrong when parsing or checking registry content.
///
/// Each variant names the input that was refused and why, so a server can hand the message
/// to its client as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest string does not follow `<algorithm>:<lowercase hex>` for a supported algorithm.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The text that was parsed (cut to 200 characters).
        input: String,
        /// What exactly is wrong with it.
        reason: DigestError,
    },
    /// Content did not hash to the digest it was expected to have.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest the caller announced.
        expected: Digest,
        /// The digest of the bytes that were actually received.
        actual: Digest,
    },
    /// A saved hash state could not be restored.
    #[error("invalid saved hash state: {reason}")]
    InvalidHashState {
        /// Why the bytes are not a state this crate wrote.
        reason: &'static str,
    },
    /// An image reference does not follow the docker reference grammar.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference {
        /// The text that was parsed (cut to 200 characters).
        input: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A repository name (a path such as `library/ubuntu`) is not valid.
    #[error("invalid repository name {input:?}: {reason}")]
    InvalidRepositoryName {
        /// The text that was parsed (cut to 200 characters).
        input: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A tag does not match `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid tag {input:?}: {reason}")]
    InvalidTag {
        /// The text that was parsed (cut to 200 characters).
        input: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A manifest document is malformed or breaks a rule of its specification.
    #[error("invalid manifest: {reason}")]
    InvalidManifest {
        /// What is wrong, with the JSON path of the offending field where there is one.
        reason: String,
    },
    /// A manifest of a kind this crate does not handle (Docker schema 1, or an unknown media type).
    #[error("unsupported manifest: {reason}")]
    UnsupportedManifest {
        /// Which kind was seen and why it is refused.
        reason: String,
    },
    /// The document's `mediaType` and the declared content type name different manifest kinds.
    #[error("manifest media type conflict: the document says {document:?} but it was sent as {content_type:?}")]
    MediaTypeConflict {
        /// The `mediaType` field inside the document.
        document: String,
        /// The content type it was declared with (for example the HTTP `Content-Type`).
        content_type: String,
    },
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// There is no `:` between algorithm and hex.
    #[error("missing ':' between algorithm and encoded hash")]
    MissingSeparator,
    /// The algorithm is not one this crate supports.
    #[error("unsupported algorithm {0:?} (expected sha256 or sha512)")]
    UnknownAlgorithm(String),
    /// The hex part has the wrong length for its algorithm.
    #[error("{algorithm} needs {expected} hex characters, found {found}")]
    WrongLength {
        /// The algorithm named in the digest.
        algorithm: &'static str,
        /// The length that algorithm requires.
        expected: usize,
        /// The length that was given.
        found: usize,
    },
    /// The hex part contains an uppercase hex letter.
    #[error("uppercase hex character {character:?} at position {position}; digests are lowercase")]
    Uppercase {
        /// The offending character.
        character: char,
        /// Its position in the hex part, counted from 0.
        position: usize,
    },
    /// The hex part contains a character that is not hex at all.
    #[error("character {character:?} at position {position} is not a hex digit")]
    BadCharacter {
        /// The offending character.
        character: char,
        /// Its position in the hex part, counted from 0.
        position: usize,
    },
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Cuts user input to a length that is safe to echo in an error message.
pub(crate) fn excerpt(input: &str) -> String {
    const MAX: usize = 200;
    if input.len() <= MAX {
        return input.to_owned();
    }
    let mut end = MAX;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &input[..end])
}
