//! A driver wrapper that fails or delays chosen operations, for testing error paths.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{Error, Result};
use crate::{ByteStream, Durability, FileInfo, FileWriter, Precondition, RedirectMethod, StorageDriver, Version};

/// The operations a [`Fault`] can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`StorageDriver::get_content`] and [`StorageDriver::get_versioned`].
    GetContent,
    /// [`StorageDriver::put_if`].
    PutIf,
    /// [`StorageDriver::put_content`] and [`StorageDriver::put_scratch`].
    PutContent,
    /// [`StorageDriver::reader`].
    Reader,
    /// [`StorageDriver::writer`].
    Writer,
    /// [`FileWriter::write`].
    Write,
    /// [`FileWriter::close`].
    Close,
    /// [`FileWriter::commit`] and [`FileWriter::commit_to`].
    Commit,
    /// [`FileWriter::cancel`].
    Cancel,
    /// [`StorageDriver::stat`].
    Stat,
    /// [`StorageDriver::list`].
    List,
    /// [`StorageDriver::rename`] (matched against its source path).
    Rename,
    /// [`StorageDriver::delete`].
    Delete,
    /// [`StorageDriver::walk`].
    Walk,
    /// [`StorageDriver::redirect_url`].
    RedirectUrl,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One rule of a fault schedule: which calls it hits and what it does to them.
///
/// ```
/// use std::time::Duration;
/// use wharf_storage::{Fault, Operation};
///
/// // The third commit of anything under /uploads fails, once.
/// let fault = Fault::fail(Operation::Commit).on_paths_containing("/uploads/").after(2).times(1);
/// // Every read is slowed down.
/// let slow = Fault::delay(Operation::Reader, Duration::from_millis(5));
/// ```
#[derive(Debug, Clone)]
pub struct Fault {
    operation: Operation,
    path_contains: Option<String>,
    skip: usize,
    times: Option<usize>,
    effect: Effect,
}

#[derive(Debug, Clone)]
enum Effect {
    Fail,
    Delay(Duration),
    Panic,
    Hold(Gate),
}

/// A point where the calls a [`Fault::hold`] hits wait until the test opens it: the test
/// learns when a call got there, does what should happen meanwhile, and lets it go on. Clones
/// share the gate.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use wharf_storage::{Fault, FaultInjector, Gate, MemoryDriver, Operation, StorageDriver};
///
/// let driver = Arc::new(FaultInjector::new(MemoryDriver::new()));
/// let gate = Gate::new();
/// driver.inject(Fault::hold(Operation::Stat, &gate).times(1));
/// let stat = tokio::spawn({
///     let driver = driver.clone();
///     async move { driver.stat("/a").await }
/// });
/// gate.reached().await; // the stat waits here
/// driver.put_content("/a", "written meanwhile".into()).await.unwrap();
/// gate.open();
/// assert_eq!(stat.await.unwrap().unwrap().size, 17);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Gate {
    /// Calls that got to the gate, and whether it is open.
    state: Arc<tokio::sync::watch::Sender<(usize, bool)>>,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Gate {
        Gate { state: Arc::new(tokio::sync::watch::channel((0, false)).0) }
    }

    /// Waits until a call has got to the gate.
    pub async fn reached(&self) {
        let mut state = self.state.subscribe();
        // The sender lives in `self`: the wait ends only when a call arrives.
        let _ = state.wait_for(|(arrived, _)| *arrived > 0).await;
    }

    /// Lets every call at the gate, and every later one, through.
    pub fn open(&self) {
        self.state.send_modify(|(_, open)| *open = true);
    }

    async fn pass(&self) {
        self.state.send_modify(|(arrived, _)| *arrived = arrived.saturating_add(1));
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|(_, open)| *open).await;
    }
}

impl Fault {
    /// Fails every call of `operation` with [`Error::Injected`].
    pub fn fail(operation: Operation) -> Fault {
        Fault { operation, path_contains: None, skip: 0, times: None, effect: Effect::Fail }
    }

    /// Panics in every call of `operation`, as a bug in a driver would: for the code that
    /// must outlive a panic below it.
    pub fn panic(operation: Operation) -> Fault {
        Fault { operation, path_contains: None, skip: 0, times: None, effect: Effect::Panic }
    }

    /// Delays every call of `operation` by `delay`, then lets it through.
    pub fn delay(operation: Operation, delay: Duration) -> Fault {
        Fault { operation, path_contains: None, skip: 0, times: None, effect: Effect::Delay(delay) }
    }

    /// Holds every call of `operation` at `gate` until the gate is opened, then lets it
    /// through: for a test that makes something happen at an exact point of another's work.
    pub fn hold(operation: Operation, gate: &Gate) -> Fault {
        Fault { operation, path_contains: None, skip: 0, times: None, effect: Effect::Hold(gate.clone()) }
    }

    /// Only calls whose path contains `fragment`.
    pub fn on_paths_containing(mut self, fragment: impl Into<String>) -> Fault {
        self.path_contains = Some(fragment.into());
        self
    }

    /// Lets the first `calls` matching calls through untouched.
    pub fn after(mut self, calls: usize) -> Fault {
        self.skip = calls;
        self
    }

    /// Hits at most `calls` calls, then stops.
    pub fn times(mut self, calls: usize) -> Fault {
        self.times = Some(calls);
        self
    }
}

#[derive(Debug, Default)]
struct Schedule {
    faults: Vec<(Fault, usize)>,
    injected: usize,
}

/// Wraps a driver and applies a schedule of [`Fault`]s to its calls (and to the calls of the
/// writers it opens). Clones share the schedule.
#[derive(Debug, Clone)]
pub struct FaultInjector<D> {
    inner: Arc<D>,
    schedule: Arc<Mutex<Schedule>>,
}

impl<D: StorageDriver> FaultInjector<D> {
    /// Wraps `driver` with an empty schedule: every call goes through.
    pub fn new(driver: D) -> FaultInjector<D> {
        FaultInjector { inner: Arc::new(driver), schedule: Arc::default() }
    }

    /// Adds a rule; rules are checked in the order they were added.
    pub fn inject(&self, fault: Fault) {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner).faults.push((fault, 0));
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner).faults.clear();
    }

    /// How many calls were failed (or made to panic) so far.
    pub fn injected(&self) -> usize {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner).injected
    }

    /// The wrapped driver.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

/// Applies the schedule to one call: waits for delays, and fails when a failing rule hits.
async fn check(schedule: &Mutex<Schedule>, driver: &'static str, operation: Operation, path: &str) -> Result<()> {
    let mut delay = Duration::ZERO;
    let (mut fail, mut panic) = (false, false);
    let mut gates = Vec::new();
    {
        let mut schedule = schedule.lock().unwrap_or_else(PoisonError::into_inner);
        for (fault, seen) in &mut schedule.faults {
            let matches = fault.operation == operation
                && fault.path_contains.as_deref().is_none_or(|fragment| path.contains(fragment));
            if !matches {
                continue;
            }
            *seen += 1;
            let hit = *seen - 1;
            if hit < fault.skip || fault.times.is_some_and(|times| hit - fault.skip >= times) {
                continue;
            }
            match &fault.effect {
                Effect::Delay(d) => delay += *d,
                Effect::Fail => fail = true,
                Effect::Panic => panic = true,
                Effect::Hold(gate) => gates.push(gate.clone()),
            }
        }
        if fail || panic {
            schedule.injected += 1;
        }
    }
    assert!(!panic, "injected panic in {operation} of {path} ({driver})");
    for gate in gates {
        gate.pass().await;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if fail { Err(Error::Injected { driver, operation, path: path.to_owned() }) } else { Ok(()) }
}

#[async_trait]
impl<D: StorageDriver> StorageDriver for FaultInjector<D> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        check(&self.schedule, self.name(), Operation::GetContent, path).await?;
        self.inner.get_content(path).await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<()> {
        check(&self.schedule, self.name(), Operation::PutContent, path).await?;
        self.inner.put_content(path, content).await
    }

    async fn put_scratch(&self, path: &str, content: Bytes) -> Result<()> {
        check(&self.schedule, self.name(), Operation::PutContent, path).await?;
        self.inner.put_scratch(path, content).await
    }

    async fn get_versioned(&self, path: &str) -> Result<(Bytes, Version)> {
        check(&self.schedule, self.name(), Operation::GetContent, path).await?;
        self.inner.get_versioned(path).await
    }

    async fn put_if(
        &self,
        path: &str,
        content: Bytes,
        precondition: Precondition,
        durability: Durability,
    ) -> Result<Version> {
        check(&self.schedule, self.name(), Operation::PutIf, path).await?;
        self.inner.put_if(path, content, precondition, durability).await
    }

    async fn reader(&self, path: &str, offset: u64) -> Result<ByteStream> {
        check(&self.schedule, self.name(), Operation::Reader, path).await?;
        self.inner.reader(path, offset).await
    }

    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>> {
        check(&self.schedule, self.name(), Operation::Writer, path).await?;
        let inner = self.inner.writer(path, append).await?;
        Ok(Box::new(FaultyWriter {
            inner,
            schedule: self.schedule.clone(),
            driver: self.name(),
            path: path.to_owned(),
        }))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        check(&self.schedule, self.name(), Operation::Stat, path).await?;
        self.inner.stat(path).await
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        check(&self.schedule, self.name(), Operation::List, path).await?;
        self.inner.list(path).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        check(&self.schedule, self.name(), Operation::Rename, from).await?;
        self.inner.rename(from, to).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        check(&self.schedule, self.name(), Operation::Delete, path).await?;
        self.inner.delete(path).await
    }

    fn walk(&self, path: &str, start_after: Option<&str>) -> BoxStream<'static, Result<FileInfo>> {
        let schedule = self.schedule.clone();
        let (driver, owned) = (self.name(), path.to_owned());
        let inner = self.inner.walk(path, start_after);
        stream::once(async move { check(&schedule, driver, Operation::Walk, &owned).await })
            .flat_map(move |checked| match checked {
                Ok(()) => stream::empty().boxed(),
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            })
            .chain(inner)
            .take_while({
                // Once the fault was reported, stop rather than walk on.
                let mut failed = false;
                move |item| {
                    let go_on = !failed;
                    failed |= item.is_err();
                    futures::future::ready(go_on)
                }
            })
            .boxed()
    }

    async fn redirect_url(&self, path: &str, method: RedirectMethod) -> Result<Option<url::Url>> {
        check(&self.schedule, self.name(), Operation::RedirectUrl, path).await?;
        self.inner.redirect_url(path, method).await
    }
}

struct FaultyWriter {
    inner: Box<dyn FileWriter>,
    schedule: Arc<Mutex<Schedule>>,
    driver: &'static str,
    path: String,
}

impl fmt::Debug for FaultyWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyWriter").field("inner", &self.inner).finish()
    }
}

#[async_trait]
impl FileWriter for FaultyWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        check(&self.schedule, self.driver, Operation::Write, &self.path).await?;
        self.inner.write(data).await
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    async fn read_back(&mut self, offset: u64) -> Result<ByteStream> {
        check(&self.schedule, self.driver, Operation::Reader, &self.path).await?;
        self.inner.read_back(offset).await
    }

    async fn close(self: Box<Self>) -> Result<()> {
        check(&self.schedule, self.driver, Operation::Close, &self.path).await?;
        self.inner.close().await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        check(&self.schedule, self.driver, Operation::Commit, &self.path).await?;
        self.inner.commit().await
    }

    async fn commit_to(self: Box<Self>, path: &str) -> Result<bool> {
        check(&self.schedule, self.driver, Operation::Commit, &self.path).await?;
        self.inner.commit_to(path).await
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        check(&self.schedule, self.driver, Operation::Cancel, &self.path).await?;
        self.inner.cancel().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryDriver, StorageDriverExt};

    #[tokio::test]
    async fn schedules_skip_hit_and_stop() {
        let driver = FaultInjector::new(MemoryDriver::new());
        driver.inject(Fault::fail(Operation::PutContent).on_paths_containing("/b").after(1).times(2));
        let put = |path: &'static str| {
            let driver = driver.clone();
            async move { driver.put_content(path, Bytes::from_static(b"x")).await }
        };
        put("/a").await.unwrap(); // not matching
        put("/b1").await.unwrap(); // skipped by after(1)
        assert!(matches!(put("/b2").await, Err(Error::Injected { operation: Operation::PutContent, .. })));
        assert!(put("/b3").await.is_err());
        put("/b4").await.unwrap(); // times(2) used up
        assert_eq!(driver.injected(), 2);
        // Nothing failed was stored.
        assert!(!driver.exists("/b2").await.unwrap());
        assert!(driver.exists("/b4").await.unwrap());
    }

    #[tokio::test]
    async fn writer_faults_and_clear() {
        let driver = FaultInjector::new(MemoryDriver::new());
        driver.inject(Fault::fail(Operation::Commit));
        let mut writer = driver.writer("/w", false).await.unwrap();
        writer.write(Bytes::from_static(b"data")).await.unwrap();
        let err = writer.commit().await.unwrap_err();
        assert!(err.to_string().contains("injected fault in Commit of /w"), "{err}");
        assert!(driver.inner().get_content("/w").await.unwrap_err().is_not_found());
        driver.clear();
        let mut writer = driver.writer("/w", false).await.unwrap();
        writer.write(Bytes::from_static(b"data")).await.unwrap();
        writer.commit().await.unwrap();
        assert_eq!(driver.get_content("/w").await.unwrap(), "data");
    }

    #[tokio::test]
    async fn walk_faults_stop_the_stream() {
        use futures::TryStreamExt;
        let driver = FaultInjector::new(MemoryDriver::new());
        driver.put_content("/a", Bytes::new()).await.unwrap();
        driver.inject(Fault::fail(Operation::Walk).times(1));
        let items: Vec<Result<FileInfo>> = driver.walk("/", None).collect().await;
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
        let again: Vec<FileInfo> = driver.walk("/", None).try_collect().await.unwrap();
        assert_eq!(again.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn delays_let_calls_through() {
        let driver = FaultInjector::new(MemoryDriver::new());
        driver.inject(Fault::delay(Operation::Stat, Duration::from_secs(3)));
        let started = tokio::time::Instant::now();
        assert!(driver.stat("/missing").await.unwrap_err().is_not_found());
        assert!(started.elapsed() >= Duration::from_secs(3));
        assert_eq!(driver.injected(), 0);
    }
}
