//! The storage health check of `health.storagedriver`, and `/debug/health`'s answer.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wharf_registry::Registry;

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
    pub fn record(&self, outcome: Result<(), String>) {
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
    pub fn spawn_checks(&self, registry: Registry, interval: Duration) -> tokio::task::JoinHandle<()> {
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
                health.record(outcome);
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
