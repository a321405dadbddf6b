//! Leases kept in the store itself: one holder at a time for a piece of work (an upload, a
//! collection), across every process that shares the store, built on conditional writes.
//!
//! A lease is one small file. Its record names the holder and when the lease ends; taking a
//! free (create-only) or ended (update-if-unchanged) lease and renewing one are conditional
//! writes of that record, so of two processes racing for it exactly one wins. Releasing one
//! well inside its term removes the file: no one else can have it then. A holder that crashes
//! blocks no one for longer than the lease's term: after it ends, the next taker writes over
//! it, and the record then says so (`taken_over`), for work that must check what an absent
//! holder may have left half done.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wharf_storage::{Durability, Precondition, StorageDriver, Version};

/// How often a taker that lost a race for a free lease looks again before it gives up.
const ATTEMPTS: usize = 4;

/// The record in a lease's file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// Who holds it (a random id per holding).
    holder: String,
    /// When it ends, in milliseconds since the Unix epoch.
    expires_ms: u64,
    /// Whether its holder gave it up.
    #[serde(default)]
    released: bool,
    /// Whether the lease was ever taken from a holder that had not given it up (it crashed,
    /// stalled or was cancelled): carried from each record to the next.
    #[serde(default)]
    taken_over: bool,
}

/// Why a lease could not be had or kept.
#[derive(Debug)]
pub(crate) enum LeaseError {
    /// Another holder has it.
    Held,
    /// The store failed.
    Storage(wharf_storage::Error),
}

impl From<wharf_storage::Error> for LeaseError {
    fn from(e: wharf_storage::Error) -> LeaseError {
        LeaseError::Storage(e)
    }
}

/// A lease this process holds. Dropped without [`release`](Lease::release), it is released
/// in a task of its own and marked taken over, since whatever held it stopped midway.
#[derive(Debug)]
pub(crate) struct Lease {
    driver: Arc<dyn StorageDriver>,
    path: String,
    term: Duration,
    record: Record,
    version: Version,
    /// Whether the lease is given up already (or lost), so that dropping it does nothing.
    settled: bool,
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When a lease taken or renewed at `now` for `term` ends, in milliseconds since the epoch
/// (the farthest time there is, for a term too long to add).
fn expiry(now: SystemTime, term: Duration) -> u64 {
    now.checked_add(term).map_or(u64::MAX, millis)
}

fn from_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)).unwrap_or(SystemTime::UNIX_EPOCH)
}

impl Record {
    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

impl Lease {
    /// Takes the lease at `path` for `term`, when it is free, released or ended.
    pub(crate) async fn acquire(
        driver: Arc<dyn StorageDriver>,
        path: String,
        term: Duration,
    ) -> Result<Lease, LeaseError> {
        let holder = uuid::Uuid::new_v4().to_string();
        // Most leases are free: the first try creates one without reading what is there.
        let (mut precondition, mut taken_over) = (Precondition::Absent, false);
        for _ in 0..ATTEMPTS {
            let now = SystemTime::now();
            let record = Record { holder: holder.clone(), expires_ms: expiry(now, term), released: false, taken_over };
            match driver.put_if(&path, record.encode(), precondition, Durability::Scratch).await {
                Ok(version) => return Ok(Lease { driver, path, term, record, version, settled: false }),
                // It is there, or another taker won this round: look at what it says.
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
            (precondition, taken_over) = match driver.get_versioned(&path).await {
                Ok((content, version)) => match serde_json::from_slice::<Record>(&content) {
                    Ok(current) if !current.released && from_millis(current.expires_ms) > SystemTime::now() => {
                        return Err(LeaseError::Held);
                    }
                    Ok(current) => (Precondition::Matches(version), current.taken_over || !current.released),
                    // A record a crash left torn: its holder is gone.
                    Err(_) => (Precondition::Matches(version), true),
                },
                Err(e) if e.is_not_found() => (Precondition::Absent, false),
                Err(e) => return Err(e.into()),
            };
        }
        Err(LeaseError::Held)
    }

    /// How long until the lease ends, by this process's clock.
    fn time_left(&self) -> Duration {
        from_millis(self.record.expires_ms).duration_since(SystemTime::now()).unwrap_or_default()
    }

    /// Whether the lease was ever taken from a holder that had not given it up.
    pub(crate) fn was_taken_over(&self) -> bool {
        self.record.taken_over
    }

    /// Confirms the lease is still this holder's, renewing it once half its term is gone.
    /// Called before each step that must not happen once another holder may have it.
    pub(crate) async fn confirm(&mut self) -> Result<(), LeaseError> {
        if self.time_left() > self.term / 2 {
            return Ok(());
        }
        self.renew().await
    }

    /// Lets the lease go without writing to it again, for when its file goes with its folder
    /// (writing it after would bring the folder back).
    pub(crate) fn abandon(&mut self) {
        self.settled = true;
    }

    /// Extends the lease by its term from now, if no one took it meanwhile.
    pub(crate) async fn renew(&mut self) -> Result<(), LeaseError> {
        let mut record = self.record.clone();
        record.expires_ms = expiry(SystemTime::now(), self.term);
        self.write(record).await
    }

    /// Gives the lease up for the next taker (nothing to do once abandoned).
    pub(crate) async fn release(mut self) -> Result<(), LeaseError> {
        if self.settled {
            return Ok(());
        }
        // Well inside its term no one else can have taken it: removing the file frees it in
        // one cheap call. A lease that was ever taken over keeps its record, which says so.
        if !self.record.taken_over && self.time_left() > self.term / 2 {
            match self.driver.delete(&self.path).await {
                Ok(()) => {
                    self.settled = true;
                    return Ok(());
                }
                Err(e) if e.is_not_found() => {
                    self.settled = true;
                    return Ok(());
                }
                // Released by writing the record instead.
                Err(_) => {}
            }
        }
        let mut record = self.record.clone();
        record.released = true;
        self.write(record).await
    }

    async fn write(&mut self, record: Record) -> Result<(), LeaseError> {
        let precondition = Precondition::Matches(self.version.clone());
        match self.driver.put_if(&self.path, record.encode(), precondition, Durability::Scratch).await {
            Ok(version) => {
                self.settled = record.released;
                self.record = record;
                self.version = version;
                Ok(())
            }
            Err(e) if e.is_conflict() => {
                // Someone took it after it ended: it is theirs now.
                self.settled = true;
                Err(LeaseError::Held)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The work under the lease stopped midway (its future was dropped): free it for the
        // next taker now, rather than at the end of its term, marked as taken over so that the
        // next holder checks what this one left.
        let mut record = self.record.clone();
        record.released = true;
        record.taken_over = true;
        let (driver, path, version) = (self.driver.clone(), self.path.clone(), self.version.clone());
        drop(runtime.spawn(async move {
            let _ = driver.put_if(&path, record.encode(), Precondition::Matches(version), Durability::Scratch).await;
        }));
    }
}
