//! What the server counts: requests, pushes, uploads, collections. Into the `Metrics` when
//! they are on (the `metrics` feature, and `http.debug.prometheus` or an embedder's
//! [`ServerOptions::metrics`](crate::ServerOptions)); nowhere otherwise.

use std::time::Duration;

use crate::ServerOptions;
#[cfg(feature = "metrics")]
use crate::metrics::Metrics;

/// One thing done.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "metrics"), expect(dead_code, reason = "without the metrics no count is read"))]
pub(crate) enum Count {
    /// Request body bytes received.
    Received(u64),
    BlobPushed,
    ManifestPushed,
    UploadStarted,
    UploadCancelled,
    #[cfg(feature = "daemon")]
    UploadsPurged(usize),
}

/// Where things are counted; clones count in the same place.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counter {
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<Metrics>,
}

#[cfg_attr(not(feature = "metrics"), expect(unused_variables, reason = "the metrics are all it counts in"))]
impl Counter {
    /// Counts in the metrics `options` name.
    pub(crate) fn new(options: &ServerOptions) -> Counter {
        Counter {
            #[cfg(feature = "metrics")]
            metrics: options.metrics.clone(),
        }
    }

    pub(crate) fn count(&self, what: Count) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            match what {
                Count::Received(bytes) => metrics.received(bytes),
                Count::BlobPushed => metrics.blob_pushed(),
                Count::ManifestPushed => metrics.manifest_pushed(),
                Count::UploadStarted => metrics.upload_started(),
                Count::UploadCancelled => metrics.upload_cancelled(),
                #[cfg(feature = "daemon")]
                Count::UploadsPurged(count) => metrics.uploads_purged(count),
            }
        }
    }

    /// One answered request: its route, method and status, how long it took, and the body
    /// bytes sent when the answer says.
    pub(crate) fn request(&self, route: &'static str, method: &str, status: u16, took: Duration, sent: Option<u64>) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.request(route, method, status, took);
            if let Some(bytes) = sent {
                metrics.sent(bytes);
            }
        }
    }

    /// A scheduled retention run ended: `(tags, manifests, skipped)` deletions, or `None`
    /// when it failed.
    #[cfg(all(feature = "daemon", feature = "policy"))]
    pub(crate) fn retention_finished(&self, deleted: Option<(u64, u64, u64)>, dry_run: bool) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.retention_finished(deleted, dry_run);
        }
    }

    /// One garbage collection: its outcome and what it deleted.
    #[cfg(feature = "daemon")]
    pub(crate) fn gc_finished(
        &self,
        outcome: Result<&wharf_registry::GcReport, &wharf_registry::Error>,
        dry_run: bool,
        took: Duration,
    ) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.gc_finished(outcome, dry_run, took);
        }
    }
}
