//! Wharf: libraries for container registries, gathered under one name.
//!
//! Each module re-exports one crate of the workspace, so an application can depend on
//! `wharf` alone:
//!
//! ```
//! use wharf::oci::Reference;
//!
//! let reference: Reference = "ubuntu:24.04".parse()?;
//! assert_eq!(reference.to_string(), "docker.io/library/ubuntu:24.04");
//! # Ok::<(), wharf::oci::Error>(())
//! ```

pub use wharf_client as client;
pub use wharf_mirror as mirror;
pub use wharf_oci as oci;
pub use wharf_policy as policy;
pub use wharf_registry as registry;
pub use wharf_server as server;
pub use wharf_storage as storage;

/// The README's examples, compiled and run as doctests so they cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
