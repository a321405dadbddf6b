//! Tag policies for container registries: naming rules and immutability checked when a tag
//! is pushed, and retention rules turned into a [`Plan`] that says, for every tag and
//! manifest, what happens and why, before anything is deleted. The engine does no I/O: it
//! reads a policy, an [`Inventory`] and the time, and the same inputs always give the same
//! plan.
//!
//! ```
//! use wharf_policy::{Decision, InUse, Inventory, Policy, Timestamp, plan};
//!
//! let policy = Policy::from_yaml(
//!     r#"
//! version: 1
//! rules:
//!   - name: releases
//!     tags: { semver: ">=1.0.0" }
//!     keep: { newest: 2, by: version }
//!   - name: the-rest
//!     tags: { semver: "*" }
//!     delete: { pushed_older_than: 30d }
//! "#,
//! )?;
//! let digest = |n: u8| wharf_oci::Digest::sha256(&[n]);
//! let mut inventory = Inventory::default();
//! let mut repository = wharf_policy::RepositoryInventory { name: "team/app".into(), ..Default::default() };
//! for (n, tag) in ["v1.0.0", "v1.1.0", "v1.2.0"].into_iter().enumerate() {
//!     repository.tags.push(wharf_policy::TagRecord {
//!         name: tag.into(),
//!         digest: digest(n as u8),
//!         pushed: "2026-01-01T00:00:00Z".parse()?,
//!         pulled: None,
//!     });
//! }
//! inventory.repositories.push(repository);
//! let now: Timestamp = "2026-12-07T00:00:00Z".parse()?;
//! let plan = plan(&inventory, &policy, &InUse::default(), now);
//! let decisions: Vec<_> = plan.repositories[0].tags.iter().map(|t| (t.name.as_str(), t.decision)).collect();
//! assert_eq!(
//!     decisions,
//!     [("v1.0.0", Decision::Delete), ("v1.1.0", Decision::Keep), ("v1.2.0", Decision::Keep)]
//! );
//! assert_eq!(&*plan.repositories[0].tags[0].reason, "pushed more than 30d ago");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod apply;
mod error;
mod in_use;
mod inventory;
mod plan;
mod policy;
#[cfg(feature = "registry")]
pub mod registry;
#[cfg(feature = "client")]
pub mod remote;
mod selector;
mod time;

pub use crate::apply::{Applied, AuditEntry};
pub use crate::error::{Error, Result};
pub use crate::in_use::InUse;
pub use crate::inventory::{BlobRecord, Inventory, ManifestRecord, RepositoryInventory, TagRecord};
pub use crate::plan::{Explanation, ManifestPlan, Plan, RepositoryPlan, RuleVerdict, Summary, TagPlan, explain, plan};
pub use crate::policy::{By, Decision, Per, Policy, Refusal};
pub use crate::selector::TagSelector;
pub use crate::time::{Timestamp, format_duration, parse_duration};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
