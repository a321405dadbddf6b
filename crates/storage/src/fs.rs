//! The filesystem backend: driver paths map to files below a root directory, as in
//! Distribution's `filesystem` driver, so an existing `/var/lib/registry` is served as it is.
//!
//! ```text
//! <root>/
//! ├── docker/registry/v2/…          driver path /docker/registry/v2/… (committed files)
//! └── .wharf+staging/               not addressable: '+' is not allowed in driver paths
//!     ├── files/docker/registry/…   content of writers not yet committed, under their path
//!     └── tmp/                      put_content's temporary files
//! ```
//!
//! Every change is written to a temporary or staged file, fsynced, renamed into place, and the
//! directory fsynced, so a crash leaves the old file or the new one; `put_scratch` and a
//! writer's `close` skip the fsyncs, as the contract lets them. Emptied directories are
//! removed, so the tree looks like the other backends' (no empty directories).
//!
//! At most `maxthreads` blocking calls run at a time. Those that sync, and the reads and
//! writes of large runs of data, go to tokio's blocking pool, where they overlap with the
//! caller's other work. A short call (a stat, an open, a small read or write, a removal) made
//! while no other call is in flight runs on the calling thread: a trip to the pool and back
//! costs two thread wake-ups, often more than the call itself, and one client pushing layer
//! after layer waits for each of them. Under concurrent load, and on a runtime with a single
//! thread, every call goes to the pool, so no runtime thread is held up by the disk while
//! others wait for it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::config::DEFAULT_MAX_THREADS;
use crate::error::{Error, Result};
use crate::path::{dir_prefix, validate_dir_path, validate_path};
use crate::{ByteStream, Durability, FileInfo, FileWriter, Precondition, StorageDriver, Version};

const NAME: &str = "filesystem";
const STAGING_DIR: &str = ".wharf+staging";
/// Reads are served in chunks of this size...
const READ_CHUNK: usize = 1 << 20;
/// ...with this many read ahead of the consumer. A pull keeps three threads busy on the
/// loopback bench (the reading one, the socket's and the client), and this much slack lets
/// the reader run ahead while the others have the cores: a 1 GiB pull from the page cache
/// took 0.25-0.27 s against 0.30-0.32 s with 2 (medians of 10-12 pulls, in turns).
///
/// Slower, in medians of 8-10 pulls taken in turns with these settings (0.25-0.27 s): chunks
/// of 64-512 KiB (0.28-0.78 s) or 2-4 MiB (0.33-0.40 s) for about the same memory, several
/// chunks per trip to the pool (0.28-0.32 s), reading on the socket's thread (0.35 s). No
/// faster: two reads in flight at once, or one pool thread kept for the whole pull (which a
/// slow client would then hold).
const READ_AHEAD: usize = 4;
/// Writers gather this much before handing it to the blocking pool.
const WRITE_BUFFER: usize = 1 << 20;
/// ...or this many chunks, so that a trickle of tiny writes does not pile up (and all fit in
/// one vectored write: 1024 is Linux's limit).
const MAX_PENDING_CHUNKS: usize = 1024;
/// A write of less than this is short: written on the calling thread (see the module's docs).
const SHORT_WRITE: usize = 256 << 10;
/// Bulk calls hand this many paths to each blocking call...
const BULK_BATCH: usize = 128;
/// ...with this many such calls at once.
const BULK_JOBS: usize = 16;

/// A store in a directory tree. Clones share the root and the limit on blocking calls.
#[derive(Debug, Clone)]
pub struct FilesystemDriver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    permits: Semaphore,
    max_threads: usize,
    buffers: Arc<BufferPool>,
    /// Folders scratch writes created and nothing has synced the entry of yet.
    unsynced: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

/// How many unsynced folders [`Inner::note_unsynced`] keeps note of.
const MAX_UNSYNCED: usize = 1024;

/// How many spare read buffers the driver keeps.
const SPARE_BUFFERS: usize = 4;

/// Read buffers the driver reuses: a chunk handed to a reader comes back here when its last
/// handle drops (once the socket has sent it). A stream of large reads then keeps touching the
/// same few buffers. Buffers freshly allocated for each chunk were slower, and spread spare
/// memory over one allocator arena per blocking thread: in the bench, a 1 GiB pull after a
/// burst of small requests peaked at 42 MiB that way, 14 MiB with the pool, as fast.
#[derive(Debug, Default)]
struct BufferPool {
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// A buffer of `READ_CHUNK` bytes: zeroed when new, old content when reused.
    fn take(&self) -> Vec<u8> {
        let spare = self.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        spare.unwrap_or_else(|| vec![0; READ_CHUNK])
    }
}

/// A read buffer whose first `filled` bytes were read, lent out as `Bytes`; back to its pool
/// when dropped.
struct PooledChunk {
    data: Vec<u8>,
    filled: usize,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.filled]
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        if data.len() == READ_CHUNK {
            let mut spare = self.pool.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if spare.len() < SPARE_BUFFERS {
                spare.push(data);
            }
        }
    }
}

impl FilesystemDriver {
    /// A driver over `root` (created when missing), with Distribution's default of 100
    /// blocking calls at a time.
    ///
    /// # Errors
    /// [`Error::Backend`] when `root` cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> Result<FilesystemDriver> {
        FilesystemDriver::with_max_threads(root, DEFAULT_MAX_THREADS)
    }

    /// A driver over `root` allowing `max_threads` blocking calls at a time.
    ///
    /// # Errors
    /// [`Error::Config`] for `max_threads == 0`; [`Error::Backend`] when `root` cannot be created.
    pub fn with_max_threads(root: impl Into<PathBuf>, max_threads: usize) -> Result<FilesystemDriver> {
        if max_threads == 0 {
            return Err(Error::Config("storage.filesystem.maxthreads must be at least 1".into()));
        }
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| Error::backend(NAME, "create root", &root.display().to_string(), e))?;
        Ok(FilesystemDriver {
            inner: Arc::new(Inner {
                root,
                permits: Semaphore::new(max_threads),
                max_threads,
                buffers: Arc::default(),
                unsynced: std::sync::Mutex::default(),
            }),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Runs blocking filesystem work on the blocking pool, within the `maxthreads` limit.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        path: &str,
        work: impl FnOnce(&Inner) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        run_blocking(self.inner.clone(), operation, path, work).await
    }

    /// Runs short blocking work on the calling thread when no other call is in flight and the
    /// runtime has other worker threads to go on with its tasks; on the blocking pool otherwise
    /// (see the module's docs).
    ///
    /// `block_in_place` was tried instead: it hands the thread's share of the runtime to
    /// another thread at each call, so under 64 connections asking for manifests the process
    /// grew to 515 threads, and its memory doubled as allocations spread over more of the
    /// allocator's per-thread arenas.
    async fn short<T: Send + 'static>(
        &self,
        operation: &'static str,
        path: &str,
        work: impl FnOnce(&Inner) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|runtime| runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let idle = self.inner.permits.available_permits() == self.inner.max_threads;
        if !multi_thread || !idle {
            return self.blocking(operation, path, work).await;
        }
        let _permit = self.inner.permits.acquire().await.map_err(|e| Error::backend(NAME, operation, path, e))?;
        work(&self.inner).map_err(|e| io_error(e, operation, path))
    }

    /// Runs `work` on each item, in batches of [`BULK_BATCH`] per blocking call, a few
    /// batches at a time; results in the order of `items`.
    async fn bulk<I: Send + 'static, T: Send + 'static>(
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
                let inner = self.inner.clone();
                tokio::task::spawn_blocking(move || {
                    let mut out = Vec::with_capacity(batch.len());
                    for item in batch {
                        let path = path_of(&item).to_owned();
                        out.push(work(&inner, item).map_err(|e| io_error(e, operation, &path))?);
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

impl FilesystemDriver {
    /// Writes a whole file through a temporary one and a rename; `durable` syncs the file
    /// before the rename and its folder after.
    async fn write_whole(&self, path: &str, content: Bytes, durable: bool) -> Result<()> {
        validate_path(NAME, path)?;
        let owned = path.to_owned();
        let work = move |inner: &Inner| {
            let (temp, mut file) = inner.temp_file()?;
            let written = file.write_all(&content).and_then(|()| if durable { file.sync_all() } else { Ok(()) });
            drop(file);
            let placed = written.and_then(|()| {
                let target = inner.full(&owned);
                if durable { inner.rename_into_place(&temp, &target) } else { inner.move_into_place(&temp, &target) }
            });
            if placed.is_err() {
                let _ = fs::remove_file(&temp);
            }
            placed
        };
        // A durable write waits for the disk: on the pool, it overlaps with the caller's
        // other writes.
        if durable { self.blocking("write", path, work).await } else { self.short("write", path, work).await }
    }
}

async fn run_blocking<T: Send + 'static>(
    inner: Arc<Inner>,
    operation: &'static str,
    path: &str,
    work: impl FnOnce(&Inner) -> io::Result<T> + Send + 'static,
) -> Result<T> {
    let _permit = inner.permits.acquire().await.map_err(|e| Error::backend(NAME, operation, path, e))?;
    let task_inner = inner.clone();
    tokio::task::spawn_blocking(move || work(&task_inner))
        .await
        .map_err(|e| Error::backend(NAME, operation, path, e))?
        .map_err(|e| io_error(e, operation, path))
}

/// Whether an error says there is nothing at a path (or a file where a folder was expected).
fn is_missing(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

fn io_error(e: io::Error, operation: &'static str, path: &str) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => {
            Error::not_found(NAME, path)
        }
        _ => Error::backend(NAME, operation, path, e),
    }
}

impl Inner {
    fn full(&self, path: &str) -> PathBuf {
        if path == "/" { self.root.clone() } else { self.root.join(&path[1..]) }
    }

    fn staged(&self, path: &str) -> PathBuf {
        self.root.join(STAGING_DIR).join("files").join(&path[1..])
    }

    fn temp_file(&self) -> io::Result<(PathBuf, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = self.root.join(STAGING_DIR).join("tmp");
        fs::create_dir_all(&dir)?;
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let name = format!("{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = dir.join(name);
        let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok((path, file))
    }

    /// Renames `from` to `to`, creating `to`'s directory; retried when a concurrent removal of
    /// an emptied directory takes that directory away in between.
    ///
    /// Durable when it returns: the target's folder is synced, and so is the folder holding
    /// each folder the rename created (a new `blobs/sha256/ab/<hex>/` is an entry in `ab/`,
    /// which a power loss could otherwise lose with the blob in it).
    fn rename_into_place(&self, from: &Path, to: &Path) -> io::Result<()> {
        let created = self.place(from, to)?;
        self.make_durable(to, created)
    }

    /// Renames `from` to `to`, creating the target's folder when missing, without waiting for
    /// the rename to be durable. The folders it created are noted, for the first durable
    /// write below them to sync.
    fn move_into_place(&self, from: &Path, to: &Path) -> io::Result<()> {
        let created = self.place(from, to)?;
        self.note_unsynced(created);
        Ok(())
    }

    /// Syncs the folder of `to`, which a rename or link just wrote, and the folders holding
    /// each folder on its way that is not durable yet: those `created` for it, and those a
    /// scratch write created before (a durable file is no more durable than its path).
    fn make_durable(&self, to: &Path, created: Vec<PathBuf>) -> io::Result<()> {
        let dir = to.parent().unwrap_or(&self.root);
        // A folder another call emptied and removed meanwhile (a collection took the file away
        // as soon as it was in place) has nothing left to make durable.
        let sync_dir = |dir: &Path| match sync_dir(dir) {
            Err(e) if is_missing(&e) => Ok(()),
            other => other,
        };
        sync_dir(dir)?;
        let mut pending = created;
        {
            let mut unsynced = self.unsynced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !unsynced.is_empty() {
                for ancestor in dir.ancestors().take_while(|a| *a != self.root && a.starts_with(&self.root)) {
                    if unsynced.remove(ancestor) && !pending.iter().any(|p| p == ancestor) {
                        pending.push(ancestor.to_path_buf());
                    }
                }
            }
        }
        for folder in &pending {
            sync_dir(folder.parent().unwrap_or(&self.root))?;
        }
        Ok(())
    }

    /// Notes folders a scratch write created, for [`make_durable`](Self::make_durable). Past
    /// [`MAX_UNSYNCED`] (folders of finished uploads are never written below again) the
    /// oldest notes are synced and dropped, so the notes stay small.
    fn note_unsynced(&self, created: Vec<PathBuf>) {
        if created.is_empty() {
            return;
        }
        let staging = self.root.join(STAGING_DIR);
        let mut unsynced = self.unsynced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        unsynced.extend(created.into_iter().filter(|dir| !dir.starts_with(&staging)));
        if unsynced.len() > MAX_UNSYNCED {
            for folder in unsynced.drain() {
                // A folder removed since needs nothing.
                let _ = sync_dir(folder.parent().unwrap_or(&self.root));
            }
        }
    }

    /// Renames `from` to `to`, creating the target's folder when missing; the folders it
    /// created, outermost first.
    fn place(&self, from: &Path, to: &Path) -> io::Result<Vec<PathBuf>> {
        let dir = to.parent().unwrap_or(&self.root);
        let mut created = Vec::new();
        let mut attempts = 0;
        loop {
            match fs::rename(from, to) {
                Ok(()) => return Ok(created),
                // The target's folder is missing, or a task removing it emptied took it away
                // (even from under create_dir_all): create it and try again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 10 && from.exists() => {
                    attempts += 1;
                    match create_dirs(dir, &self.root, &mut created) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Places `temp` at `to` only when nothing is there, through a hard link (which never
    /// replaces), creating `to`'s folder; `temp` is removed either way.
    fn link_into_place(&self, temp: &Path, to: &Path, durable: bool) -> io::Result<()> {
        let dir = to.parent().unwrap_or(&self.root);
        let mut created = Vec::new();
        let mut attempts = 0;
        let linked = loop {
            match fs::hard_link(temp, to) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 10 => {
                    attempts += 1;
                    match create_dirs(dir, &self.root, &mut created) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => break Err(e),
                        _ => {}
                    }
                }
                result => break result,
            }
        };
        let _ = fs::remove_file(temp);
        linked?;
        if durable {
            self.make_durable(to, created)
        } else {
            self.note_unsynced(created);
            Ok(())
        }
    }

    /// Replaces the file at `target` with `content` if its content still has version
    /// `expected`. Writers of one path take turns through an exclusive lock on the file they
    /// found there; one that finds the path replaced while it waited looks again.
    fn replace_if_matches(
        &self,
        target: &Path,
        content: &[u8],
        expected: &Version,
        durable: bool,
    ) -> io::Result<Option<Version>> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let mut file = match File::open(target) {
                Ok(file) => file,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            file.lock()?;
            let held = file.metadata()?;
            match fs::metadata(target) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {}
                Ok(_) => continue,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
            let mut current = Vec::new();
            file.read_to_end(&mut current)?;
            if content_version(&current) != *expected {
                return Ok(None);
            }
            let (temp, mut out) = self.temp_file()?;
            let written = out.write_all(content).and_then(|()| if durable { out.sync_all() } else { Ok(()) });
            drop(out);
            let placed = written.and_then(|()| {
                if durable { self.rename_into_place(&temp, target) } else { self.move_into_place(&temp, target) }
            });
            if placed.is_err() {
                let _ = fs::remove_file(&temp);
            }
            placed?;
            // The lock goes with `file`, now that the new content is in place.
            return Ok(Some(content_version(content)));
        }
    }

    /// Deletes a file or folder, and what is staged under its path; whether anything was
    /// there. Not synced: a deletion undone by a crash loses nothing (Distribution does not
    /// sync deletions either), and a sync would cost a disk flush each.
    fn remove(&self, path: &str) -> io::Result<bool> {
        let mut found = false;
        for (target, staged) in [(self.full(path), false), (self.staged(path), true)] {
            let removed = match fs::symlink_metadata(&target) {
                // The staging area keeps empty folders: only staged files count as found.
                Ok(metadata) if metadata.is_dir() => {
                    let held = !staged || holds_files(&target)?;
                    fs::remove_dir_all(&target).map(|()| held)
                }
                Ok(_) => fs::remove_file(&target).map(|()| true),
                Err(e) => Err(e),
            };
            match removed {
                Ok(held) => {
                    found |= held;
                    if let Some(dir) = target.parent() {
                        self.prune(dir);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Moves a file without syncing; `false` when there is no file at `from`.
    fn move_file(&self, from: &str, to: &str) -> io::Result<bool> {
        let source = self.full(from);
        match fs::symlink_metadata(&source) {
            Ok(metadata) if !metadata.is_dir() => {}
            Ok(_) => return Ok(false),
            Err(e) if is_missing(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        match self.move_into_place(&source, &self.full(to)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        if let Some(dir) = source.parent() {
            self.prune(dir);
        }
        Ok(true)
    }

    /// Creates (or truncates) `path`, creating its directory; retried when a concurrent
    /// removal of an emptied directory takes that directory away in between.
    fn create_in_place(&self, path: &Path) -> io::Result<File> {
        let dir = path.parent().unwrap_or(&self.root);
        let mut attempts = 0;
        loop {
            if let Err(e) = fs::create_dir_all(dir) {
                if e.kind() == io::ErrorKind::NotFound && attempts < 10 {
                    attempts += 1;
                    continue;
                }
                return Err(e);
            }
            match OpenOptions::new().write(true).create(true).truncate(true).open(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 10 => attempts += 1,
                // An empty folder the staging area kept where this file goes: it yields.
                Err(e) if e.kind() == io::ErrorKind::IsADirectory && attempts < 10 => {
                    attempts += 1;
                    fs::remove_dir(path).map_err(|_| e)?;
                }
                result => return result,
            }
        }
    }

    /// Removes the empty directories from `dir` up to the root. Below the staging root only
    /// `dir` itself goes: the folders above it (a repository's `_uploads`, say) are kept for
    /// the next write, which would otherwise create the whole chain again; there are no more
    /// of them than folders written to.
    fn prune(&self, mut dir: &Path) {
        let staging_files = self.root.join(STAGING_DIR).join("files");
        let staged = dir.starts_with(&staging_files);
        while dir != self.root && dir != staging_files && dir.starts_with(&self.root) {
            if fs::remove_dir(dir).is_err() || staged {
                break;
            }
            match dir.parent() {
                Some(up) => dir = up,
                None => break,
            }
        }
    }
}

/// Whether a folder has a file anywhere below it.
fn holds_files(dir: &Path) -> io::Result<bool> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() || holds_files(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The version of a file's content: a digest of it, so that it differs whenever the content
/// does, in every process.
fn content_version(content: &[u8]) -> Version {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(content);
    Version::new(digest[..16].iter().map(|byte| format!("{byte:02x}")).collect::<String>())
}

/// Creates `dir` and its missing parents up to `root`, noting each folder it created
/// (outermost first) in `created`.
fn create_dirs(dir: &Path, root: &Path, created: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while at != root && !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(up) => at = up,
            None => break,
        }
    }
    for folder in missing.into_iter().rev() {
        match fs::create_dir(&folder) {
            Ok(()) => created.push(folder),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn is_visible(name: &str) -> bool {
    validate_path(NAME, &format!("/{name}")).is_ok()
}

fn file_info(path: String, metadata: &fs::Metadata) -> FileInfo {
    FileInfo {
        path,
        size: if metadata.is_dir() { 0 } else { metadata.len() },
        modified: metadata.modified().unwrap_or_else(|_| SystemTime::now()),
        is_dir: metadata.is_dir(),
    }
}

#[async_trait]
impl StorageDriver for FilesystemDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        validate_path(NAME, path)?;
        let owned = path.to_owned();
        self.short("read", path, move |inner| fs::read(inner.full(&owned)).map(Bytes::from)).await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<()> {
        self.write_whole(path, content, true).await
    }

    async fn put_scratch(&self, path: &str, content: Bytes) -> Result<()> {
        self.write_whole(path, content, false).await
    }

    async fn get_versioned(&self, path: &str) -> Result<(Bytes, Version)> {
        let content = self.get_content(path).await?;
        let version = content_version(&content);
        Ok((content, version))
    }

    async fn put_if(
        &self,
        path: &str,
        content: Bytes,
        precondition: Precondition,
        durability: Durability,
    ) -> Result<Version> {
        validate_path(NAME, path)?;
        let owned = path.to_owned();
        let durable = durability == Durability::Durable;
        let work = move |inner: &Inner| match precondition {
            Precondition::Absent => {
                let (temp, mut file) = inner.temp_file()?;
                let written = file.write_all(&content).and_then(|()| if durable { file.sync_all() } else { Ok(()) });
                drop(file);
                if let Err(e) = written {
                    let _ = fs::remove_file(&temp);
                    return Err(e);
                }
                match inner.link_into_place(&temp, &inner.full(&owned), durable) {
                    Ok(()) => Ok(Ok(content_version(&content))),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        Ok(Err(Error::AlreadyExists { driver: NAME, path: owned }))
                    }
                    Err(e) => Err(e),
                }
            }
            Precondition::Matches(expected) => {
                let replaced = inner.replace_if_matches(&inner.full(&owned), &content, &expected, durable)?;
                Ok(replaced.ok_or(Error::Precondition { driver: NAME, path: owned }))
            }
        };
        // A durable write waits for the disk: on the pool, as for put_content. A scratch one is
        // short (another writer holds a path's lock only while it replaces the file).
        if durable {
            self.blocking("conditional write", path, work).await?
        } else {
            self.short("conditional write", path, work).await?
        }
    }

    async fn reader(&self, path: &str, offset: u64) -> Result<ByteStream> {
        validate_path(NAME, path)?;
        let owned = path.to_owned();
        let file = self
            .short("open", path, move |inner| {
                let mut file = File::open(inner.full(&owned))?;
                let metadata = file.metadata()?;
                if metadata.is_dir() {
                    return Err(io::ErrorKind::IsADirectory.into());
                }
                let size = metadata.len();
                if offset <= size {
                    file.seek(SeekFrom::Start(offset))?;
                }
                Ok((file, size))
            })
            .await;
        let (file, size) = file?;
        if offset > size {
            return Err(Error::InvalidOffset { driver: NAME, path: path.to_owned(), offset, size });
        }
        // A task reads ahead of the consumer, so that the disk (or page cache) and the
        // socket work at the same time; it stops when the stream is dropped.
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes>>(READ_AHEAD);
        let inner = self.inner.clone();
        let path = path.to_owned();
        tokio::spawn(async move {
            let (mut file, mut remaining) = (file, size - offset);
            while remaining > 0 {
                let want = remaining.min(READ_CHUNK as u64) as usize;
                let mut buffer = inner.buffers.take();
                let pool = inner.buffers.clone();
                let read = run_blocking(inner.clone(), "read", &path, move |_| {
                    let mut filled = 0;
                    while filled < want {
                        match file.read(&mut buffer[filled..want])? {
                            0 => break,
                            n => filled += n,
                        }
                    }
                    Ok((file, Bytes::from_owner(PooledChunk { data: buffer, filled, pool })))
                })
                .await;
                let chunk = match read {
                    Ok((returned, chunk)) => {
                        file = returned;
                        chunk
                    }
                    Err(e) => {
                        let _ = sender.send(Err(e)).await;
                        return;
                    }
                };
                // The file shrank under us: a reader must not take what there is for the whole.
                if chunk.is_empty() {
                    let shrank = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the file ended {remaining} bytes short of the {size} it had when opened"),
                    );
                    let _ = sender.send(Err(Error::backend(NAME, "read", &path, shrank))).await;
                    return;
                }
                remaining -= chunk.len() as u64;
                if sender.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        Ok(stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) })
            .boxed())
    }

    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>> {
        validate_path(NAME, path)?;
        let owned = path.to_owned();
        let (file, size) = self
            .short("open writer", path, move |inner| {
                let staged = inner.staged(&owned);
                if append {
                    match OpenOptions::new().append(true).open(&staged) {
                        Ok(file) => {
                            let size = file.metadata()?.len();
                            return Ok((file, size));
                        }
                        // Nothing staged (an empty folder the staging area kept is nothing).
                        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::IsADirectory) => {
                            let committed = fs::metadata(inner.full(&owned))?;
                            if committed.is_dir() || committed.len() != 0 {
                                return Err(io::ErrorKind::NotFound.into());
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                let file = inner.create_in_place(&staged)?;
                Ok((file, 0))
            })
            .await?;
        Ok(Box::new(FsWriter {
            driver: self.clone(),
            path: path.to_owned(),
            file: Some(file),
            flushed: size,
            pending: Vec::new(),
            pending_len: 0,
        }))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        validate_dir_path(NAME, path)?;
        let owned = path.to_owned();
        self.short("stat", path, move |inner| {
            let metadata = fs::metadata(inner.full(&owned))?;
            Ok(file_info(owned, &metadata))
        })
        .await
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        validate_dir_path(NAME, path)?;
        let owned = path.to_owned();
        // Not a short call: a folder may hold thousands of entries (a repository's tags).
        self.blocking("list", path, move |inner| {
            let prefix = dir_prefix(&owned);
            let mut children = Vec::new();
            for entry in fs::read_dir(inner.full(&owned))? {
                let name = entry?.file_name();
                if let Some(name) = name.to_str().filter(|name| is_visible(name)) {
                    children.push(format!("{prefix}{name}"));
                }
            }
            if children.is_empty() && owned != "/" {
                return Err(io::ErrorKind::NotFound.into());
            }
            children.sort_unstable();
            Ok(children)
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        validate_path(NAME, from)?;
        validate_path(NAME, to)?;
        let (from_owned, to_owned) = (from.to_owned(), to.to_owned());
        self.blocking("rename", from, move |inner| {
            let source = inner.full(&from_owned);
            if fs::metadata(&source)?.is_dir() {
                // No file there: what every backend answers for a directory.
                return Err(io::ErrorKind::NotFound.into());
            }
            inner.rename_into_place(&source, &inner.full(&to_owned))?;
            if let Some(dir) = source.parent() {
                // The move is durable once the source's folder no longer names the file
                // either; a folder another call emptied and removed meanwhile names nothing.
                match sync_dir(dir) {
                    Err(e) if !is_missing(&e) => return Err(e),
                    _ => {}
                }
                inner.prune(dir);
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        validate_path(NAME, path)?;
        let owned = path.to_owned();
        self.short(
            "delete",
            path,
            move |inner| {
                if inner.remove(&owned)? { Ok(()) } else { Err(io::ErrorKind::NotFound.into()) }
            },
        )
        .await
    }

    async fn stat_many(&self, paths: Vec<String>) -> Result<Vec<Option<FileInfo>>> {
        for path in &paths {
            validate_dir_path(NAME, path)?;
        }
        self.bulk("stat", paths, String::as_str, |inner, path| match fs::metadata(inner.full(&path)) {
            Ok(metadata) => Ok(Some(file_info(path, &metadata))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn rename_many(&self, moves: Vec<(String, String)>) -> Result<Vec<bool>> {
        for (from, to) in &moves {
            validate_path(NAME, from)?;
            validate_path(NAME, to)?;
        }
        self.bulk("rename", moves, |(from, _)| from.as_str(), |inner, (from, to)| inner.move_file(&from, &to)).await
    }

    async fn delete_many(&self, paths: Vec<String>) -> Result<Vec<bool>> {
        for path in &paths {
            validate_path(NAME, path)?;
        }
        self.bulk("delete", paths, String::as_str, |inner, path| inner.remove(&path)).await
    }

    fn walk(&self, path: &str, start_after: Option<&str>) -> BoxStream<'static, Result<FileInfo>> {
        if let Err(e) = validate_dir_path(NAME, path) {
            return stream::once(async move { Err(e) }).boxed();
        }
        let walk = Arc::new(Walk { root: path.to_owned(), start_after: start_after.map(str::to_owned) });
        // What is left to visit, smallest on top. Each blocking call takes the stack, visits
        // folders until it has a batch of files, and hands the stack back.
        let stack = vec![Pending::Dir(path.to_owned())];
        stream::try_unfold((self.inner.clone(), walk, stack), |(inner, walk, stack)| async move {
            if stack.is_empty() {
                return Ok(None);
            }
            let task_walk = walk.clone();
            let (files, stack) =
                run_blocking(inner.clone(), "walk", &walk.root, move |inner| task_walk.step(inner, stack)).await?;
            Ok(Some((stream::iter(files.into_iter().map(Ok)), (inner, walk, stack))))
        })
        .try_flatten()
        .boxed()
    }
}

enum Pending {
    Dir(String),
    File(FileInfo),
}

struct Walk {
    root: String,
    start_after: Option<String>,
}

impl Walk {
    /// Files a blocking call gathers before handing them out.
    const BATCH: usize = 1024;

    /// Visits from the top of `stack` until a batch of files is found or nothing is left.
    fn step(&self, inner: &Inner, mut stack: Vec<Pending>) -> io::Result<(Vec<FileInfo>, Vec<Pending>)> {
        let mut files = Vec::new();
        while files.len() < Self::BATCH {
            match stack.pop() {
                None => break,
                Some(Pending::File(info)) => files.push(info),
                Some(Pending::Dir(dir)) => {
                    let mut children = self.children(inner, &dir)?;
                    children.reverse();
                    stack.extend(children);
                }
            }
        }
        Ok((files, stack))
    }

    /// The entries of `dir` still to visit, in the order that makes file paths come out in
    /// lexical order: a directory sorts as its name followed by '/'. Folders are told apart
    /// by the directory entry's type, so only files cost a `stat`.
    fn children(&self, inner: &Inner, dir: &str) -> io::Result<Vec<Pending>> {
        let entries = match fs::read_dir(inner.full(dir)) {
            Ok(entries) => entries,
            // A directory removed while walking, or a walk of a file: nothing below.
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let prefix = dir_prefix(dir);
        let mut children = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().filter(|name| is_visible(name)).map(str::to_owned) else {
                continue;
            };
            let path = format!("{prefix}{name}");
            // A symbolic link counts as what it points to (a registry root may link its
            // `blobs` folder elsewhere).
            let (is_dir, linked) = match entry.file_type() {
                Ok(kind) if kind.is_symlink() => match fs::metadata(entry.path()) {
                    Ok(metadata) => (metadata.is_dir(), Some(metadata)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
                Ok(kind) => (kind.is_dir(), None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let sort_key = if is_dir { format!("{path}/") } else { path.clone() };
            if let Some(after) = &self.start_after {
                // Skip what sorts entirely at or before `start_after`.
                let skip = if is_dir {
                    sort_key.as_str() <= after.as_str() && !after.starts_with(&sort_key)
                } else {
                    path.as_str() <= after.as_str()
                };
                if skip {
                    continue;
                }
            }
            let pending = if is_dir {
                Pending::Dir(path)
            } else {
                match linked.map_or_else(|| entry.metadata(), Ok) {
                    Ok(metadata) => Pending::File(file_info(path, &metadata)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            };
            children.push((sort_key, pending));
        }
        children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(children.into_iter().map(|(_, pending)| pending).collect())
    }
}

/// Writes `chunks` in order with as few calls as it takes (one, unless the kernel takes less).
/// Chunks of a chunked request body are often 32 KiB or less: written one by one, each is a
/// system call and the page cache gets small pages for them; written at once, the kernel sees
/// the whole run, as for a large chunk.
fn write_chunks(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    for group in chunks.chunks(MAX_PENDING_CHUNKS) {
        let mut slices: Vec<io::IoSlice<'_>> = group.iter().map(|chunk| io::IoSlice::new(chunk)).collect();
        let mut left = &mut slices[..];
        while !left.is_empty() {
            match file.write_vectored(left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => io::IoSlice::advance_slices(&mut left, written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[derive(Debug)]
struct FsWriter {
    driver: FilesystemDriver,
    path: String,
    /// `None` once a failed write left the file in an unknown state.
    file: Option<File>,
    flushed: u64,
    /// Chunks not yet written, kept as they came (no copy until the kernel's).
    pending: Vec<Bytes>,
    pending_len: usize,
}

impl FsWriter {
    /// Publishes the staged file at `to` in one blocking call: the last chunks, the sync, the
    /// rename and the folder's sync.
    async fn publish(mut self: Box<Self>, to: String) -> Result<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| Error::backend(NAME, "commit", &self.path, io::Error::other("an earlier write failed")))?;
        let chunks = std::mem::take(&mut self.pending);
        let path = self.path.clone();
        self.driver
            .blocking("commit", &self.path, move |inner| {
                write_chunks(&mut file, &chunks)?;
                file.sync_all()?;
                drop(file);
                let staged = inner.staged(&path);
                inner.rename_into_place(&staged, &inner.full(&to))?;
                if let Some(dir) = staged.parent() {
                    inner.prune(dir);
                }
                Ok(())
            })
            .await
    }

    /// Writes the pending chunks, without a sync.
    async fn flush(&mut self) -> Result<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| Error::backend(NAME, "write", &self.path, io::Error::other("an earlier write failed")))?;
        let chunks = std::mem::take(&mut self.pending);
        let written = std::mem::take(&mut self.pending_len) as u64;
        let work = move |_: &Inner| {
            write_chunks(&mut file, &chunks)?;
            Ok(file)
        };
        let file = if written < SHORT_WRITE as u64 {
            self.driver.short("write", &self.path, work).await?
        } else {
            self.driver.blocking("write", &self.path, work).await?
        };
        self.file = Some(file);
        self.flushed += written;
        Ok(())
    }
}

#[async_trait]
impl FileWriter for FsWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= WRITE_BUFFER || self.pending.len() >= MAX_PENDING_CHUNKS {
            self.flush().await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.flushed + self.pending_len as u64
    }

    async fn read_back(&mut self, offset: u64) -> Result<ByteStream> {
        let size = self.size();
        if offset > size {
            return Err(Error::InvalidOffset { driver: NAME, path: self.path.clone(), offset, size });
        }
        self.flush().await?;
        let staged = self.driver.inner.staged(&self.path);
        let driver = self.driver.clone();
        let path = self.path.clone();
        // Chunk by chunk up to the writer's size, on the pool, each from a fresh handle.
        let chunks = stream::try_unfold(offset, move |at| {
            let (driver, path, staged) = (driver.clone(), path.clone(), staged.clone());
            async move {
                if at >= size {
                    return Ok(None);
                }
                let len = usize::try_from(size - at).unwrap_or(usize::MAX).min(READ_CHUNK);
                let chunk = driver
                    .blocking("read back", &path, move |_| {
                        let mut file = File::open(&staged)?;
                        file.seek(SeekFrom::Start(at))?;
                        let mut buffer = vec![0; len];
                        file.read_exact(&mut buffer)?;
                        Ok(Bytes::from(buffer))
                    })
                    .await?;
                Ok(Some((chunk, at + len as u64)))
            }
        });
        Ok(chunks.boxed())
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        if self.pending.is_empty() && self.file.is_some() {
            return Ok(());
        }
        // Not synced: the contract lets a crash lose the end of a closed write.
        self.flush().await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let path = self.path.clone();
        self.publish(path).await
    }

    async fn commit_to(self: Box<Self>, path: &str) -> Result<bool> {
        validate_path(NAME, path)?;
        self.publish(path.to_owned()).await?;
        Ok(true)
    }

    async fn cancel(mut self: Box<Self>) -> Result<()> {
        drop(self.file.take());
        let path = self.path.clone();
        self.driver
            .short("cancel", &self.path, move |inner| {
                let staged = inner.staged(&path);
                match fs::remove_file(&staged) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                if let Some(dir) = staged.parent() {
                    inner.prune(dir);
                }
                Ok(())
            })
            .await
    }
}
