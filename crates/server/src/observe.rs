//! What operators watch: Prometheus metrics, the storage health check, and the audit log.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use wharf_registry::{GcReport, Registry};

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
    gc_runs: Family<OutcomeLabels, Counter>,
    gc_duration: Histogram,
    gc_manifests_deleted: Counter,
    gc_blobs_deleted: Counter,
    gc_bytes_freed: Counter,
    gc_blobs_restored: Counter,
    gc_last_success: Gauge,
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
        let inner = MetricsInner {
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

    pub(crate) fn uploads_purged(&self, count: usize) {
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

    /// The text exposition.
    pub fn encode(&self) -> String {
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

/// The storage health check of `health.storagedriver`: after `threshold` failed checks in a
/// row the registry reports itself down (503) until a check passes again.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    threshold: u32,
    failures: AtomicU32,
    last_error: Mutex<Option<String>>,
}

impl Health {
    /// A check that reports down after `threshold` failures in a row.
    pub fn new(threshold: u32) -> Health {
        Health {
            inner: Arc::new(HealthInner {
                threshold: threshold.max(1),
                failures: AtomicU32::new(0),
                last_error: Mutex::new(None),
            }),
        }
    }

    /// Records one check's outcome.
    pub fn record(&self, outcome: Result<(), String>, metrics: Option<&Metrics>) {
        match outcome {
            Ok(()) => {
                if self.inner.failures.swap(0, Ordering::Relaxed) >= self.inner.threshold {
                    tracing::info!("storage health check passes again");
                }
                *self.inner.last_error.lock().unwrap_or_else(PoisonError::into_inner) = None;
            }
            Err(e) => {
                let failures = self.inner.failures.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(error = %e, failures, threshold = self.inner.threshold, "storage health check failed");
                *self.inner.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
            }
        }
        if let Some(metrics) = metrics {
            metrics.inner.storage_healthy.set(i64::from(self.is_healthy()));
        }
    }

    /// Whether the registry is up: fewer than `threshold` failures in a row.
    pub fn is_healthy(&self) -> bool {
        self.inner.failures.load(Ordering::Relaxed) < self.inner.threshold
    }

    /// The failure that makes the registry down, if it is.
    pub fn failure(&self) -> Option<String> {
        if self.is_healthy() {
            None
        } else {
            self.inner.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
        }
    }

    /// Checks the store every `interval` (a stat of its root, as Distribution does), until
    /// the task is aborted.
    pub fn spawn_checks(
        &self,
        registry: Registry,
        interval: Duration,
        metrics: Option<Metrics>,
    ) -> tokio::task::JoinHandle<()> {
        let health = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(interval);
            loop {
                every.tick().await;
                let outcome =
                    match tokio::time::timeout(interval.max(Duration::from_secs(1)), registry.driver().stat("/")).await
                    {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) if e.is_not_found() => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("the store did not answer within {interval:?}")),
                    };
                health.record(outcome, metrics.as_ref());
            }
        })
    }

    /// `/debug/health`'s body: `{}` when up, else the failing check and its error.
    pub fn report(&self, driver: &str) -> serde_json::Value {
        match self.failure() {
            None => serde_json::json!({}),
            Some(error) => serde_json::json!({ format!("storagedriver_{driver}"): error }),
        }
    }
}

/// The status and body of `/debug/health`: `200 {}` without a check or while it passes, else
/// `503` and the failing check.
pub(crate) fn health_answer(health: Option<&Health>, driver: &str) -> (axum::http::StatusCode, serde_json::Value) {
    match health {
        Some(health) if !health.is_healthy() => (axum::http::StatusCode::SERVICE_UNAVAILABLE, health.report(driver)),
        _ => (axum::http::StatusCode::OK, serde_json::json!({})),
    }
}
