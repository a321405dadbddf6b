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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::config::DEFAULT_MAX_THREADS;
use crate::error::{Error, Result};
use crate::path::{dir_prefix, validate_dir_path, validate_path};
use crate::{ByteStream, Durability, FileInfo, FileWriter, Precondition, StorageDriver, Version};

mod place;
mod pool;
mod read;
mod walk;
mod write;

use place::{content_version, is_visible, sync_dir};
use pool::run_blocking;
use read::{BufferPool, PooledChunk};
use walk::{Pending, Walk};
use write::FsWriter;

const NAME: &str = "filesystem";
const STAGING_DIR: &str = ".wharf+staging";
/// Reads are served in chunks of this size...
const READ_CHUNK: usize = 1 << 20;
/// ...with this many read ahead of the consumer. A pull keeps three threads busy (the
/// reading one, the socket's and the client), and this much slack lets the reader run ahead
/// while the others have the cores. Smaller and larger chunks, several chunks per trip to the
/// pool, reading on the socket's thread, two reads in flight and a pool thread kept for the
/// whole pull were all measured slower or no faster (`benches/README.md`).
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
    /// Calls on the blocking pool now: while there are any, the disk may be busy, and short
    /// calls go there too rather than hold up a runtime thread.
    pooled: AtomicUsize,
    buffers: Arc<BufferPool>,
    /// Folders scratch writes created and nothing has synced the entry of yet.
    unsynced: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

/// How many unsynced folders [`Inner::note_unsynced`] keeps note of.
const MAX_UNSYNCED: usize = 1024;

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
                pooled: AtomicUsize::new(0),
                buffers: Arc::default(),
                unsynced: std::sync::Mutex::default(),
            }),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
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
        self.blocking("list", path, move |inner| list_dir(inner, &owned)).await
    }

    async fn list_many(&self, paths: Vec<String>) -> Result<Vec<Option<Vec<String>>>> {
        for path in &paths {
            validate_dir_path(NAME, path)?;
        }
        self.bulk("list", paths, String::as_str, |inner, path| match list_dir(inner, &path) {
            Ok(children) => Ok(Some(children)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
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

/// The visible entries of folder `path`, sorted; `NotFound` for a missing or empty folder
/// (but the root).
fn list_dir(inner: &Inner, path: &str) -> io::Result<Vec<String>> {
    let prefix = dir_prefix(path);
    let mut children = Vec::new();
    for entry in fs::read_dir(inner.full(path))? {
        let name = entry?.file_name();
        if let Some(name) = name.to_str().filter(|name| is_visible(name)) {
            children.push(format!("{prefix}{name}"));
        }
    }
    if children.is_empty() && path != "/" {
        return Err(io::ErrorKind::NotFound.into());
    }
    children.sort_unstable();
    Ok(children)
}
