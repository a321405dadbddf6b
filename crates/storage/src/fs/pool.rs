//! The blocking pool: calls within `maxthreads`, short ones in place while the pool is idle,
//! bulk calls in batches.

use super::*;

impl FilesystemDriver {
    /// Runs blocking filesystem work on the blocking pool, within the `maxthreads` limit.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        path: &str,
        work: impl FnOnce(&Inner) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        run_blocking(self.inner.clone(), operation, path, work).await
    }

    /// Runs short blocking work on the calling thread when no call is on the blocking pool
    /// and the runtime has other worker threads to go on with its tasks; on the blocking pool
    /// otherwise (see the module's docs). Short calls on several runtime threads at once all
    /// run in place: a burst of small reads never meets the pool.
    ///
    /// Not `block_in_place`: it hands the thread's share of the runtime to another thread at
    /// each call, so under many connections the process grows hundreds of threads, and its
    /// memory spreads over more of the allocator's per-thread arenas (`benches/README.md`).
    pub(super) async fn short<T: Send + 'static>(
        &self,
        operation: &'static str,
        path: &str,
        work: impl FnOnce(&Inner) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|runtime| runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let idle = self.inner.pooled.load(Ordering::Acquire) == 0;
        if !multi_thread || !idle {
            return self.blocking(operation, path, work).await;
        }
        let _permit = self.inner.permits.acquire().await.map_err(|e| Error::backend(NAME, operation, path, e))?;
        work(&self.inner).map_err(|e| io_error(e, operation, path))
    }

    /// Runs `work` on each item, in batches of [`BULK_BATCH`] per blocking call, a few
    /// batches at a time; results in the order of `items`.
    pub(super) async fn bulk<I: Send + 'static, T: Send + 'static>(
        &self,
        operation: &'static str,
        items: Vec<I>,
        path_of: fn(&I) -> &str,
        work: fn(&Inner, I) -> io::Result<T>,
    ) -> Result<Vec<T>> {
        let mut batches = Vec::with_capacity(items.len().div_ceil(BULK_BATCH));
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            batches.push(items.by_ref().take(BULK_BATCH).collect::<Vec<I>>());
        }
        let done: Vec<Vec<T>> = stream::iter(batches)
            .map(|batch| async move {
                let _permit =
                    self.inner.permits.acquire().await.map_err(|e| Error::backend(NAME, operation, "/", e))?;
                let inner = Pooled::enter(self.inner.clone());
                tokio::task::spawn_blocking(move || {
                    let inner = &inner.0;
                    let mut out = Vec::with_capacity(batch.len());
                    for item in batch {
                        let path = path_of(&item).to_owned();
                        out.push(work(inner, item).map_err(|e| io_error(e, operation, &path))?);
                    }
                    Ok(out)
                })
                .await
                .map_err(|e| Error::backend(NAME, operation, "/", e))?
            })
            .buffered(BULK_JOBS)
            .try_collect()
            .await?;
        Ok(done.into_iter().flatten().collect())
    }
}

pub(super) async fn run_blocking<T: Send + 'static>(
    inner: Arc<Inner>,
    operation: &'static str,
    path: &str,
    work: impl FnOnce(&Inner) -> io::Result<T> + Send + 'static,
) -> Result<T> {
    let _permit = inner.permits.acquire().await.map_err(|e| Error::backend(NAME, operation, path, e))?;
    let pooled = Pooled::enter(inner.clone());
    tokio::task::spawn_blocking(move || work(&pooled.0))
        .await
        .map_err(|e| Error::backend(NAME, operation, path, e))?
        .map_err(|e| io_error(e, operation, path))
}

/// One call on the blocking pool, counted in [`Inner::pooled`] until the work it carries
/// is done (or dropped unrun), whether or not its caller still waits.
pub(super) struct Pooled(Arc<Inner>);

impl Pooled {
    pub(super) fn enter(inner: Arc<Inner>) -> Pooled {
        inner.pooled.fetch_add(1, Ordering::AcqRel);
        Pooled(inner)
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.0.pooled.fetch_sub(1, Ordering::AcqRel);
    }
}
