//! Registry mirrors on [`wharf_client`] and [`wharf_registry`]: a pull-through cache of one
//! or several upstreams ([`PullThrough`]), what CNCF Distribution's `proxy:` section does,
//! with every uncached blob fetched once however many clients ask for it at the same time,
//! streamed to the first while it is stored, and verified against its digest before it is
//! kept.

mod error;
pub mod notify;
mod pull_through;
pub mod replicate;
mod stats;

pub use crate::error::{Error, Result};
pub use crate::pull_through::{BlobFetch, CacheRoute, Expired, PullThrough, Synced, Upstream, pinned_image};
pub use crate::stats::Stats;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
