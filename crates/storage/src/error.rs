//! The one error type of `wharf-storage`.

/// A boxed error from a backend's own library (I/O, the S3 SDK…).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a storage operation can fail with. Each variant names the driver and the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing is at the path (or, for `writer(path, true)`, nothing to resume).
    #[error("{driver}: path not found: {path}")]
    NotFound {
        /// The driver's name.
        driver: &'static str,
        /// The path that was looked for.
        path: String,
    },
    /// The path is not of the form `/seg/seg…` with segments of `[A-Za-z0-9._-]`.
    #[error("{driver}: invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The driver's name.
        driver: &'static str,
        /// The path as given (cut to 300 characters).
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A read started past the end of the file.
    #[error("{driver}: invalid offset {offset} for {path} ({size} bytes)")]
    InvalidOffset {
        /// The driver's name.
        driver: &'static str,
        /// The file.
        path: String,
        /// The offset asked for.
        offset: u64,
        /// The file's size.
        size: u64,
    },
    /// A create-only write ([`Precondition::Absent`](crate::Precondition::Absent)) found a
    /// file already there; nothing was written.
    #[error("{driver}: {path} already exists")]
    AlreadyExists {
        /// The driver's name.
        driver: &'static str,
        /// The path written to.
        path: String,
    },
    /// An update-if-unchanged write
    /// ([`Precondition::Matches`](crate::Precondition::Matches)) found the file changed or
    /// gone; nothing was written.
    #[error("{driver}: {path} changed since it was read")]
    Precondition {
        /// The driver's name.
        driver: &'static str,
        /// The path written to.
        path: String,
    },
    /// The configuration is wrong; the message names the key.
    #[error("storage configuration: {0}")]
    Config(String),
    /// A fault injected on purpose by [`FaultInjector`](crate::FaultInjector).
    #[cfg(feature = "fault-injection")]
    #[error("{driver}: injected fault in {operation} of {path}")]
    Injected {
        /// The wrapped driver's name.
        driver: &'static str,
        /// The operation that failed.
        operation: crate::Operation,
        /// The path it was given.
        path: String,
    },
    /// The content handed to a write failed before its end (a client's request body cut
    /// short); the store itself did not fail.
    #[error("the content being written ended early: {source}")]
    ContentFailed {
        /// What the content's source said.
        #[source]
        source: BoxError,
    },
    /// The backend failed.
    #[error("{driver}: {operation} {path}: {source}")]
    Backend {
        /// The driver's name.
        driver: &'static str,
        /// What was being done.
        operation: &'static str,
        /// The path it was done to.
        path: String,
        /// What the backend said.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Whether this is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether a conditional write lost: [`Error::AlreadyExists`] or [`Error::Precondition`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::AlreadyExists { .. } | Error::Precondition { .. })
    }

    pub(crate) fn not_found(driver: &'static str, path: &str) -> Error {
        Error::NotFound { driver, path: path.to_owned() }
    }

    pub(crate) fn backend(
        driver: &'static str,
        operation: &'static str,
        path: &str,
        source: impl Into<BoxError>,
    ) -> Error {
        Error::Backend { driver, operation, path: path.to_owned(), source: source.into() }
    }
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
