//! What the background work of notifications and replication did, counted for metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts shared by a [`Notifier`](crate::notify::Notifier) and a
/// [`Replicator`](crate::replicate::Replicator), read by whoever exports metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events delivered to endpoints.
    pub notifications_delivered: AtomicU64,
    /// Deliveries that failed (each is tried again).
    pub notification_failures: AtomicU64,
    /// Pushes and deletions replicated to a target.
    pub replications: AtomicU64,
    /// Replications that failed (each is tried again).
    pub replication_failures: AtomicU64,
    /// Blobs uploaded to targets.
    pub replicated_blobs: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}
