//! The crate's one error type.

/// What went wrong reading a policy, an inventory or an in-use list. Each names the place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A policy file that cannot be used.
    #[error("policy: {place}: {reason}")]
    Policy {
        /// Where in the file: a key path (`rules[1] (dev-builds).tags.regex`), with the line
        /// when the text could not be read.
        place: String,
        /// What is wrong there.
        reason: String,
    },
    /// An inventory that cannot be read.
    #[error("inventory: {place}: {reason}")]
    Inventory {
        /// Where in the document.
        place: String,
        /// What is wrong there.
        reason: String,
    },
    /// A registry that could not be read or changed.
    #[error("registry: {what}: {reason}")]
    Registry {
        /// What was being read or changed.
        what: String,
        /// What failed.
        reason: String,
    },
    /// A line of an in-use list that is not a reference or a digest.
    #[error("in-use list, line {line}: {reason}")]
    InUse {
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
