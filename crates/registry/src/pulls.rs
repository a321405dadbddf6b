//! When each manifest was last pulled, for tag policies ("delete what nobody pulled for 90
//! days"), written at most once per manifest per interval.
//!
//! Pulls are counted in memory and written in batches by [`Registry::flush_pulls`] (which
//! [`Registry::spawn_pull_flusher`] calls on a timer), each to
//! `repositories/<name>/_wharf/pulls/<alg>/<hex>`, an entry Distribution ignores.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use wharf_oci::{Digest, RepositoryName};

use crate::error::Result;
use crate::{Registry, Repository, layout};

/// How many pull times a flush writes at once.
const FLUSH_CONCURRENCY: usize = 16;

/// The pull times not yet written, and when each was last written.
#[derive(Debug, Default)]
pub(crate) struct PullLog {
    entries: Mutex<HashMap<(RepositoryName, Digest), PullEntry>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct PullEntry {
    written: Option<SystemTime>,
    pending: Option<SystemTime>,
}

fn pull_path(name: &RepositoryName, digest: &Digest) -> String {
    format!("{}/_wharf/pulls/{}/{}", layout::repository(name), digest.algorithm(), digest.hex())
}

impl Repository {
    /// Notes that a manifest was pulled now. Cheap: nothing is written until the next flush,
    /// and only when the last written time is older than the interval.
    pub fn record_pull(&self, digest: &Digest) {
        let Some(interval) = self.registry.inner.options.pull_tracking_interval else { return };
        let now = SystemTime::now();
        let mut entries = self.registry.inner.pulls.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry((self.name.clone(), digest.clone())).or_default();
        let due = entry.written.is_none_or(|written| now.duration_since(written).unwrap_or_default() >= interval);
        if due {
            entry.pending = Some(now);
        }
    }

    /// When the manifest was last pulled, as far as this registry or the store knows.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn last_pulled(&self, digest: &Digest) -> Result<Option<SystemTime>> {
        let in_memory = {
            let entries = self.registry.inner.pulls.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries.get(&(self.name.clone(), digest.clone())).and_then(|e| e.pending.or(e.written))
        };
        if in_memory.is_some() {
            return Ok(in_memory);
        }
        match self.registry.inner.driver.get_content(&pull_path(&self.name, digest)).await {
            Ok(text) => Ok(humantime::parse_rfc3339_weak(String::from_utf8_lossy(&text).trim()).ok()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl Repository {
    /// When any manifest of the repository was last pulled, as far as this registry or the
    /// store knows: one walk of its pull times, not one read per manifest.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn last_pull(&self) -> Result<Option<SystemTime>> {
        let in_memory = {
            let entries = self.registry.inner.pulls.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries
                .iter()
                .filter(|((name, _), _)| *name == self.name)
                .filter_map(|(_, e)| e.pending.or(e.written))
                .max()
        };
        let dir = format!("{}/_wharf/pulls", layout::repository(&self.name));
        let files: Vec<wharf_storage::FileInfo> = self.registry.inner.driver.walk(&dir, None).try_collect().await?;
        // Each file holds the time of a pull (its own time is when it was written).
        let times: Vec<Option<SystemTime>> = futures::stream::iter(files)
            .map(|file| async move {
                match self.registry.inner.driver.get_content(&file.path).await {
                    Ok(text) => Ok(humantime::parse_rfc3339_weak(String::from_utf8_lossy(&text).trim()).ok()),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(FLUSH_CONCURRENCY)
            .try_collect()
            .await?;
        let stored = times.into_iter().flatten().max();
        Ok(in_memory.max(stored))
    }
}

impl Registry {
    /// Writes the pull times noted since the last flush, several at once; returns how many
    /// were written. A pull time is soft state (a crash may lose the latest without harm), so
    /// each is written as scratch, without a disk flush of its own.
    ///
    /// # Errors
    /// The first storage error, after every other time was tried; each time that could not
    /// be written is kept for the next flush.
    pub async fn flush_pulls(&self) -> Result<usize> {
        let due: Vec<((RepositoryName, Digest), SystemTime)> = {
            let mut entries = self.inner.pulls.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries.iter_mut().filter_map(|(key, entry)| entry.pending.take().map(|time| (key.clone(), time))).collect()
        };
        let writes = futures::stream::iter(due).map(|((name, digest), time)| async move {
            let text = humantime::format_rfc3339_seconds(time).to_string();
            let result = self.inner.driver.put_scratch(&pull_path(&name, &digest), Bytes::from(text)).await;
            ((name, digest), time, result)
        });
        let results: Vec<_> = writes.buffer_unordered(FLUSH_CONCURRENCY).collect().await;
        let mut written = 0;
        let mut first_error = None;
        let mut entries = self.inner.pulls.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, time, result) in results {
            let entry = entries.entry(key).or_default();
            match result {
                Ok(()) => {
                    entry.written = Some(time);
                    written += 1;
                }
                Err(e) => {
                    // A pull noted meanwhile is newer: keep that one.
                    entry.pending = entry.pending.or(Some(time));
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(written),
        }
    }

    /// Flushes pull times every `every` on the current tokio runtime until the returned
    /// handle is aborted or the runtime stops.
    pub fn spawn_pull_flusher(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // A failed write is retried at the next tick.
                let _ = registry.flush_pulls().await;
            }
        })
    }
}
