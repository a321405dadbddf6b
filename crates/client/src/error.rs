//! What can go wrong talking to a registry.

/// A client error. Each variant names what failed and keeps its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image address (`docker://…`, `oci:…`) could not be read.
    #[error("image address {address:?}: {reason}")]
    Address {
        /// The address, or its first characters.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `WWW-Authenticate` header could not be read.
    #[error("WWW-Authenticate {header:?}: {reason}")]
    Challenge {
        /// The header's first characters.
        header: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A credential source could not answer: a config file that is unreadable, a helper
    /// that failed or hung.
    #[error("credentials from {source_name}: {reason}")]
    Credentials {
        /// The file or helper program asked.
        source_name: String,
        /// What went wrong.
        reason: String,
    },
    /// TLS settings that cannot be used: a certificate or key that does not parse.
    #[error("TLS: {0}")]
    Tls(String),
    /// An OCI image layout that cannot be read or written.
    #[error("OCI layout {path}: {reason}")]
    Layout {
        /// The file or folder concerned.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A token server refused or answered something that is not a token.
    #[error("token server {realm}: {reason}")]
    Token {
        /// The token server's address (the challenge's `realm`).
        realm: String,
        /// What it answered.
        reason: String,
    },
    /// The registry still refused after the client authenticated as it asked.
    #[error("{host}: unauthorized: {reason}")]
    Unauthorized {
        /// The registry host.
        host: String,
        /// The registry's message, or what was tried.
        reason: String,
    },
    /// The request could not be sent or its answer not read (connection refused or cut,
    /// TLS, a timeout).
    #[error("{method} {url}: {source}")]
    Transport {
        /// The request's method.
        method: String,
        /// The request's address.
        url: String,
        /// What failed underneath.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("{method} {url}: {status}{}", describe_codes(codes, message))]
    Status {
        /// The request's method.
        method: String,
        /// The request's address.
        url: String,
        /// The status the registry answered.
        status: reqwest::StatusCode,
        /// The error codes of its `errors` body (`MANIFEST_UNKNOWN`, …), if it sent one.
        codes: Vec<String>,
        /// Its first message, or the start of the body.
        message: String,
    },
    /// Content does not hash to the digest it was asked for or announced with.
    #[error("{what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked (a manifest, a blob and where it came from).
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// Content is larger than the client accepts, or than it was announced.
    #[error("{what}: larger than {limit} bytes")]
    TooLarge {
        /// What was read.
        what: String,
        /// The limit it passed.
        limit: u64,
    },
    /// The registry answered something the protocol does not allow (a missing header, a
    /// `Content-Range` for other bytes, a manifest that does not parse).
    #[error("{what}: {reason}")]
    Protocol {
        /// The request or content concerned.
        what: String,
        /// What was wrong.
        reason: String,
    },
}

fn describe_codes(codes: &[String], message: &str) -> String {
    match (codes.is_empty(), message.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!(": {message}"),
        (false, true) => format!(" {}", codes.join(", ")),
        (false, false) => format!(" {}: {message}", codes.join(", ")),
    }
}

impl Error {
    /// The registry's status, when it answered with an error.
    pub fn status(&self) -> Option<reqwest::StatusCode> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the registry answered with error `code` (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, …).
    pub fn has_code(&self, code: &str) -> bool {
        matches!(self, Error::Status { codes, .. } if codes.iter().any(|c| c == code))
    }
}

/// A client result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
