//! The server's Prometheus metrics (the `metrics` feature), served on the debug address.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use wharf_registry::GcReport;

use crate::health::Health;

/// The labels of a request count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: String,
    status: u16,
}

/// The label of a request duration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// The label of a garbage collection run.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
    dry_run: bool,
}

/// The server's counters, in Prometheus' text format at `http.debug.prometheus.path`.
/// Clones share the counters.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

struct MetricsInner {
    registry: prometheus_client::registry::Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    bytes_received: Counter,
    bytes_sent: Counter,
    blobs_pushed: Counter,
    manifests_pushed: Counter,
    uploads_started: Counter,
    uploads_cancelled: Counter,
    uploads_purged: Counter,
    storage_healthy: Gauge,
    health: OnceLock<Health>,
    gc_runs: Family<OutcomeLabels, Counter>,
    gc_duration: Histogram,
    gc_manifests_deleted: Counter,
    gc_blobs_deleted: Counter,
    gc_bytes_freed: Counter,
    gc_blobs_restored: Counter,
    gc_last_success: Gauge,
    retention_runs: Family<OutcomeLabels, Counter>,
    retention_tags_deleted: Counter,
    retention_manifests_deleted: Counter,
    retention_skipped: Counter,
    /// Notifications and replication, read from their counts at every scrape.
    #[cfg(feature = "mirror")]
    mirror: OnceLock<Arc<wharf_mirror::Stats>>,
    #[cfg(feature = "mirror")]
    mirror_counters: [Counter; 5],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh counters.
    pub fn new() -> Metrics {
        let mut r = prometheus_client::registry::Registry::with_prefix("wharf");
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 4.0, 10))
        });
        let storage_healthy = Gauge::default();
        storage_healthy.set(1);
        let health = OnceLock::new();
        #[cfg(feature = "mirror")]
        let mirror_counters = [
            ("notifications_delivered", "Events delivered to notification endpoints"),
            ("notification_failures", "Notification deliveries that failed (each tried again)"),
            ("replications", "Pushes and deletions replicated to a target"),
            ("replication_failures", "Replications that failed (each tried again)"),
            ("replication_blobs_copied", "Blobs uploaded to replication targets"),
        ]
        .map(|(name, help)| add(&mut r, name, help, Counter::default()));
        let inner = MetricsInner {
            #[cfg(feature = "mirror")]
            mirror: OnceLock::new(),
            #[cfg(feature = "mirror")]
            mirror_counters,
            requests: add(&mut r, "http_requests", "Requests answered, by route, method and status", Family::default()),
            durations: add(&mut r, "http_request_duration_seconds", "Time to answer, by route", durations),
            bytes_received: add(&mut r, "http_received_bytes", "Request body bytes received", Counter::default()),
            bytes_sent: add(&mut r, "http_sent_bytes", "Response body bytes sent", Counter::default()),
            blobs_pushed: add(&mut r, "blobs_pushed", "Uploads completed into blobs", Counter::default()),
            manifests_pushed: add(&mut r, "manifests_pushed", "Manifests stored", Counter::default()),
            uploads_started: add(
                &mut r,
                "uploads_started",
                "Uploads opened (monolithic pushes included)",
                Counter::default(),
            ),
            uploads_cancelled: add(
                &mut r,
                "uploads_cancelled",
                "Uploads cancelled by their client",
                Counter::default(),
            ),
            uploads_purged: add(
                &mut r,
                "uploads_purged",
                "Abandoned uploads removed by upload purging",
                Counter::default(),
            ),
            storage_healthy: add(&mut r, "storage_healthy", "1 while the storage health check passes", storage_healthy),
            gc_runs: add(&mut r, "gc_runs", "Garbage collections run, by outcome", Family::default()),
            retention_runs: add(&mut r, "retention_runs", "Scheduled retention runs, by outcome", Family::default()),
            retention_tags_deleted: add(&mut r, "retention_tags_deleted", "Tags retention deleted", Counter::default()),
            retention_manifests_deleted: add(
                &mut r,
                "retention_manifests_deleted",
                "Manifests retention deleted",
                Counter::default(),
            ),
            retention_skipped: add(
                &mut r,
                "retention_skipped",
                "Deletions retention planned and did not make, the registry having changed since the plan",
                Counter::default(),
            ),
            gc_duration: add(
                &mut r,
                "gc_duration_seconds",
                "Time a garbage collection took",
                Histogram::new(exponential_buckets(0.01, 4.0, 10)),
            ),
            gc_manifests_deleted: add(
                &mut r,
                "gc_manifests_deleted",
                "Manifests garbage collection deleted",
                Counter::default(),
            ),
            gc_blobs_deleted: add(&mut r, "gc_blobs_deleted", "Blobs garbage collection deleted", Counter::default()),
            gc_bytes_freed: add(&mut r, "gc_freed_bytes", "Bytes the deleted blobs held", Counter::default()),
            gc_blobs_restored: add(
                &mut r,
                "gc_blobs_restored",
                "Blobs set aside and put back because a push needed them",
                Counter::default(),
            ),
            gc_last_success: add(
                &mut r,
                "gc_last_success_timestamp_seconds",
                "When the last garbage collection that did not fail ended (Unix time)",
                Gauge::default(),
            ),
            health,
            registry: r,
        };
        Metrics { inner: Arc::new(inner) }
    }

    /// Counts one answered request.
    pub(crate) fn request(&self, route: &'static str, method: &str, status: u16, took: Duration) {
        let labels = RequestLabels { route, method: method.to_owned(), status };
        self.inner.requests.get_or_create(&labels).inc();
        self.inner.durations.get_or_create(&RouteLabels { route }).observe(took.as_secs_f64());
    }

    pub(crate) fn received(&self, bytes: u64) {
        self.inner.bytes_received.inc_by(bytes);
    }

    pub(crate) fn sent(&self, bytes: u64) {
        self.inner.bytes_sent.inc_by(bytes);
    }

    pub(crate) fn blob_pushed(&self) {
        self.inner.blobs_pushed.inc();
    }

    pub(crate) fn manifest_pushed(&self) {
        self.inner.manifests_pushed.inc();
    }

    pub(crate) fn upload_started(&self) {
        self.inner.uploads_started.inc();
    }

    pub(crate) fn upload_cancelled(&self) {
        self.inner.uploads_cancelled.inc();
    }

    /// Counts uploads removed by upload purging; a service that purges on a schedule of its
    /// own (with [`Registry::purge_uploads`](wharf_registry::Registry::purge_uploads)) calls it.
    pub fn uploads_purged(&self, count: usize) {
        self.inner.uploads_purged.inc_by(count as u64);
    }

    /// Records a garbage collection that took `took`: its outcome, and what it deleted.
    /// A dry run counts as a run, but deletes nothing.
    pub fn gc_finished(&self, outcome: Result<&GcReport, &wharf_registry::Error>, dry_run: bool, took: Duration) {
        let inner = &self.inner;
        inner.gc_duration.observe(took.as_secs_f64());
        let report = match outcome {
            Ok(report) => report,
            Err(_) => {
                inner.gc_runs.get_or_create(&OutcomeLabels { outcome: "failed", dry_run }).inc();
                return;
            }
        };
        inner.gc_runs.get_or_create(&OutcomeLabels { outcome: "ok", dry_run }).inc();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        inner.gc_last_success.set(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
        if !report.dry_run {
            inner.gc_manifests_deleted.inc_by(report.manifests_deleted.len() as u64);
            inner.gc_blobs_deleted.inc_by(report.blobs_deleted.len() as u64);
            inner.gc_bytes_freed.inc_by(report.bytes_freed);
            inner.gc_blobs_restored.inc_by(report.blobs_restored as u64);
        }
    }

    /// Records a scheduled retention run: its outcome, and what it deleted (nothing when a
    /// dry run, or `None` when it failed).
    pub fn retention_finished(&self, deleted: Option<(u64, u64, u64)>, dry_run: bool) {
        let inner = &self.inner;
        let Some((tags, manifests, skipped)) = deleted else {
            inner.retention_runs.get_or_create(&OutcomeLabels { outcome: "failed", dry_run }).inc();
            return;
        };
        inner.retention_runs.get_or_create(&OutcomeLabels { outcome: "ok", dry_run }).inc();
        inner.retention_tags_deleted.inc_by(tags);
        inner.retention_manifests_deleted.inc_by(manifests);
        inner.retention_skipped.inc_by(skipped);
    }

    /// Reports `health` as `wharf_storage_healthy` from now on (the first check given is
    /// kept; without one the gauge stays 1).
    pub fn watch(&self, health: &Health) {
        let _ = self.inner.health.set(health.clone());
    }

    /// Reports the counts of notifications and replication as `wharf_notifications_*` and
    /// `wharf_replication*` from now on.
    #[cfg(feature = "mirror")]
    pub fn watch_mirror(&self, stats: Arc<wharf_mirror::Stats>) {
        let _ = self.inner.mirror.set(stats);
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        if let Some(health) = self.inner.health.get() {
            self.inner.storage_healthy.set(i64::from(health.is_healthy()));
        }
        #[cfg(feature = "mirror")]
        if let Some(stats) = self.inner.mirror.get() {
            use std::sync::atomic::Ordering::Relaxed;
            let counts = [
                &stats.notifications_delivered,
                &stats.notification_failures,
                &stats.replications,
                &stats.replication_failures,
                &stats.replicated_blobs,
            ];
            for (counter, count) in self.inner.mirror_counters.iter().zip(counts) {
                counter.inner().store(count.load(Relaxed), Relaxed);
            }
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }
}

/// Registers `metric` under `name` and hands it back (clones share the value).
fn add<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut prometheus_client::registry::Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}
