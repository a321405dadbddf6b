//! An async client for container registries (the OCI Distribution API): authentication
//! challenges and tokens, pulls that resume, pushes that continue where they stopped, copies
//! between registries and OCI layouts.

mod address;
mod auth;
mod challenge;
mod client;
mod copy;
mod credentials;
mod error;
pub mod headers;
mod layout;
mod platform;
mod pull;
mod push;
mod repository;

pub use crate::address::{ImageAddress, LayoutImage};
pub use crate::auth::Scope;
pub use crate::challenge::Challenge;
pub use crate::client::{Client, ClientBuilder, Retry};
pub use crate::copy::{CopyOptions, CopyReport, Platforms, Progress, copy};
pub use crate::credentials::{
    Anonymous, ConfigFiles, Credential, CredentialHelper, CredentialSource, DEFAULT_HELPER_TIMEOUT, StaticCredentials,
    stored_credential,
};
pub use crate::error::{Error, Result};
pub use crate::layout::{Layout, LayoutBlob, REF_NAME};
pub use crate::platform::PlatformSpec;
pub use crate::pull::BlobPull;
pub use crate::push::{BlobOutcome, BlobSource, RegistryBlob, UploadOptions};
pub use crate::repository::Repository;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
