//! A durable queue of events per endpoint, in the registry's store, shared by every instance
//! that serves it: an event is in the queue once `push` returns, and stays until delivered.
//!
//! Events are numbered: each is written create-only at the next free number (a hint file
//! says where to start looking), so that numbers are never given twice, whichever instances
//! push at once. One instance at a time delivers, holding a lease in the store; it delivers
//! in number order and records the last number delivered. Delivered events are deleted once
//! they are old enough that no instance still holds a hint from before them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use wharf_storage::{Durability, Precondition, StorageDriver};

use super::event::Event;

/// Where the queues live in the store.
const ROOT: &str = "/wharf/notifications";

/// Digits of an event's number in its file name: lexical order is number order.
const DIGITS: usize = 20;

/// How long a delivered event is kept before it is deleted.
const KEEP_DELIVERED: Duration = Duration::from_secs(600);

/// One endpoint's queue.
#[derive(Debug, Clone)]
pub struct Queue {
    driver: Arc<dyn StorageDriver>,
    root: String,
}

/// A queued event and its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Its place in the queue.
    pub number: u64,
    /// The event.
    pub event: Event,
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Queue {
    /// The queue of endpoint `name` (letters, digits, `.`, `_` and `-`) in `driver`.
    ///
    /// # Errors
    /// When the name holds anything else, in words.
    pub fn new(driver: Arc<dyn StorageDriver>, name: &str) -> Result<Queue, String> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(format!("endpoint name {name:?}: letters, digits, '.', '_' and '-' only"));
        }
        Ok(Queue { driver, root: format!("{ROOT}/{name}") })
    }

    fn event_path(&self, number: u64) -> String {
        format!("{}/events/{number:0DIGITS$}", self.root)
    }

    fn number_of(path: &str) -> Option<u64> {
        path.rsplit('/').next()?.parse().ok()
    }

    async fn read_number(&self, file: &str) -> wharf_storage::Result<Option<u64>> {
        match self.driver.get_content(&format!("{}/{file}", self.root)).await {
            Ok(text) => Ok(std::str::from_utf8(&text).ok().and_then(|t| t.trim().parse().ok())),
            Err(wharf_storage::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Appends `event`; it is durable in the store when this returns. Answers its number.
    ///
    /// # Errors
    /// Storage errors; the event is not queued then.
    pub async fn push(&self, event: &Event) -> wharf_storage::Result<u64> {
        let body = Bytes::from(serde_json::to_vec(event).unwrap_or_default());
        let hint = self.read_number("next").await?;
        let delivered = self.read_number("delivered").await?;
        // The numbers come from files in the store: checked, never wrapped.
        let exhausted = || wharf_storage::Error::ContentFailed {
            source: format!("the queue {} has used every number", self.root).into(),
        };
        let after_delivered = match delivered {
            Some(d) => d.checked_add(1).ok_or_else(exhausted)?,
            None => 0,
        };
        let mut number = hint.unwrap_or(0).max(after_delivered);
        loop {
            match self
                .driver
                .put_if(&self.event_path(number), body.clone(), Precondition::Absent, Durability::Durable)
                .await
            {
                Ok(_) => break,
                Err(e) if e.is_conflict() => number = number.checked_add(1).ok_or_else(exhausted)?,
                Err(e) => return Err(e),
            }
        }
        // The hint only saves probing: a lost race leaves it behind, which costs a probe.
        let _ = self
            .driver
            .put_scratch(&format!("{}/next", self.root), Bytes::from(number.saturating_add(1).to_string()))
            .await;
        Ok(number)
    }

    /// Up to `limit` events not delivered yet, oldest first.
    ///
    /// # Errors
    /// Storage errors; an event that does not read is an error naming it.
    pub async fn pending(&self, limit: usize) -> wharf_storage::Result<Vec<Queued>> {
        let after = self.read_number("delivered").await?.map(|d| self.event_path(d));
        let files: Vec<wharf_storage::FileInfo> =
            self.driver.walk(&format!("{}/events", self.root), after.as_deref()).take(limit).try_collect().await?;
        let mut queued = Vec::with_capacity(files.len());
        for file in files {
            let Some(number) = Queue::number_of(&file.path) else { continue };
            let bytes = match self.driver.get_content(&file.path).await {
                Ok(bytes) => bytes,
                // Delivered and deleted by another instance meanwhile.
                Err(wharf_storage::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let event = serde_json::from_slice(&bytes).map_err(|e| wharf_storage::Error::ContentFailed {
                source: format!("queued event {}: {e}", file.path).into(),
            })?;
            queued.push(Queued { number, event });
        }
        Ok(queued)
    }

    /// Records that everything up to `number` is delivered, and deletes what was delivered
    /// long enough ago.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn delivered(&self, number: u64) -> wharf_storage::Result<()> {
        self.driver.put_content(&format!("{}/delivered", self.root), Bytes::from(number.to_string())).await?;
        let old = SystemTime::now() - KEEP_DELIVERED;
        let done: Vec<String> = self
            .driver
            .walk(&format!("{}/events", self.root), None)
            .try_take_while(|file| {
                let delivered = Queue::number_of(&file.path).is_some_and(|n| n <= number);
                async move { Ok(delivered) }
            })
            .try_filter(|file| futures::future::ready(file.modified < old))
            .map_ok(|file| file.path)
            .try_collect()
            .await?;
        if !done.is_empty() {
            self.driver.delete_many(done).await?;
        }
        Ok(())
    }

    /// Gives up the lease `instance` holds, so that another instance delivers at once rather
    /// than after the lease's term (a process stopping gracefully).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn release(&self, instance: &str) -> wharf_storage::Result<()> {
        let path = format!("{}/lease", self.root);
        match self.driver.get_versioned(&path).await {
            Ok((held, version)) if String::from_utf8_lossy(&held).split(' ').next() == Some(instance) => {
                // Expired at once, unless another instance took it meanwhile.
                let expired = Bytes::from(format!("{instance} 0"));
                match self.driver.put_if(&path, expired, Precondition::Matches(version), Durability::Scratch).await {
                    Err(e) if !e.is_conflict() => Err(e),
                    _ => Ok(()),
                }
            }
            Ok(_) | Err(wharf_storage::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes or renews the lease that lets `instance` deliver, for `term`; whether it holds
    /// it now.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn lease(&self, instance: &str, term: Duration) -> wharf_storage::Result<bool> {
        let path = format!("{}/lease", self.root);
        let mine = Bytes::from(format!("{instance} {}", now_seconds().saturating_add(term.as_secs())));
        let precondition = match self.driver.get_versioned(&path).await {
            Ok((held, version)) => {
                let text = String::from_utf8_lossy(&held);
                let (holder, until) = text.split_once(' ').unwrap_or(("", "0"));
                if holder != instance && until.trim().parse::<u64>().unwrap_or(0) > now_seconds() {
                    return Ok(false);
                }
                Precondition::Matches(version)
            }
            Err(wharf_storage::Error::NotFound { .. }) => Precondition::Absent,
            Err(e) => return Err(e),
        };
        match self.driver.put_if(&path, mine, precondition, Durability::Scratch).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }
}
