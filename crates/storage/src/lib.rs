//! The byte store under a registry: one [`StorageDriver`] trait, with in-memory, filesystem
//! and S3 backends that behave alike.
//!
//! The semantics follow CNCF Distribution's storage drivers, so a registry can keep
//! Distribution's layout on top: paths like `/docker/registry/v2/blobs/…`, whole-file reads
//! and writes, and resumable streaming writers whose content becomes visible only on commit.
//! This crate knows nothing of OCI.
//!
//! ```
//! use bytes::Bytes;
//! use futures::TryStreamExt;
//! use wharf_storage::{MemoryDriver, StorageDriver, StorageDriverExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> wharf_storage::Result<()> {
//! let driver = MemoryDriver::new();
//! driver.put_content("/greeting", Bytes::from_static(b"hello")).await?;
//!
//! // A streaming writer: nothing is visible until commit, and a closed writer can be resumed.
//! let mut writer = driver.writer("/upload/data", false).await?;
//! writer.write(Bytes::from_static(b"first part, ")).await?;
//! writer.close().await?;
//! let mut writer = driver.writer("/upload/data", true).await?;
//! assert_eq!(writer.size(), 12);
//! writer.write(Bytes::from_static(b"second part")).await?;
//! writer.commit().await?;
//!
//! assert_eq!(driver.read_all("/upload/data", 0).await?, "first part, second part");
//! let names: Vec<_> = driver.walk("/", None).map_ok(|info| info.path).try_collect().await?;
//! assert_eq!(names, ["/greeting", "/upload/data"]);
//! # Ok(())
//! # }
//! ```
//!
//! # Contract
//! Every backend, and every third-party driver that passes the `testsuite` module (feature
//! `testsuite`), behaves as follows.
//! - **Paths** are `/`-separated, absolute, of segments made of `[A-Za-z0-9._-]` (not `.` or
//!   `..`); anything else is [`Error::InvalidPath`]. The root `/` is accepted where a
//!   directory is meant (`list`, `walk`, `stat`).
//! - **Directories** are implied by the files below them: there are no empty directories, and
//!   a directory disappears with its last file.
//! - **`put_content`** replaces a file atomically: a reader sees the old content or the new one,
//!   never a mix, also after a crash.
//! - **`put_scratch`** is `put_content` without the durability: a crash may leave the file
//!   old, new, empty or missing, never a mix.
//! - **Writers** stage their content out of sight. `close` keeps it for a later
//!   `writer(path, true)` (from this process or another, after a restart too, though a crash
//!   may lose its end); `commit` publishes it at `path` durably, replacing what was there
//!   (`commit_to` at another path, where the backend can); `cancel` discards it. `writer(path,
//!   false)` discards any staged content and starts empty; `writer(path, true)` resumes the
//!   staged content, or starts empty when only an empty committed file is there, and is
//!   [`Error::NotFound`] otherwise. One path has one staged write at a time: two writers open
//!   on the same path at once share it (the filesystem backend's staged file), so callers
//!   give each concurrent write a path of its own, as a registry does with upload ids.
//! - **`delete`** is recursive and also discards writes staged under the path; `/a` never
//!   touches `/ab`. A missing path is [`Error::NotFound`].
//! - **Conditional writes** ([`put_if`](StorageDriver::put_if)) are atomic against every
//!   other conditional write of the same path, from this process or another: of two
//!   create-only writes one wins and the other is [`Error::AlreadyExists`]; of two
//!   update-if-unchanged writes against the same [`Version`] one wins and the other is
//!   [`Error::Precondition`]. A file's version changes whenever its content does. They are
//!   what several processes on one store coordinate through (leases), never a service
//!   beside it.
//! - **`walk`** yields the files (not directories) below a path in byte-wise lexical order of
//!   their paths, starting after `start_after` when given, so a listing can be paged without
//!   reading what came before.

use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

mod config;
mod error;
#[cfg(feature = "fault-injection")]
mod fault;
#[cfg(feature = "fs")]
mod fs;
mod memory;
mod path;
#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use crate::config::{FilesystemConfig, InMemoryConfig, S3Config, StorageConfig};
pub use crate::error::{BoxError, Error, Result};
#[cfg(feature = "fault-injection")]
pub use crate::fault::{Fault, FaultInjector, Gate, Operation};
#[cfg(feature = "fs")]
pub use crate::fs::FilesystemDriver;
pub use crate::memory::MemoryDriver;
pub use crate::path::{validate_dir_path, validate_path};
#[cfg(feature = "s3")]
pub use crate::s3::{AbandonedUpload, S3Driver};

/// How many single calls the bulk methods' default implementations keep in flight.
pub(crate) const BULK_CONCURRENCY: usize = 16;

/// `Some` for a success, `None` for [`Error::NotFound`].
fn found<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What [`StorageDriver::stat`] and [`StorageDriver::walk`] report about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The path, as the driver's paths are written (`/a/b`).
    pub path: String,
    /// The size in bytes; 0 for a directory.
    pub size: u64,
    /// When the file was last written; for a directory, what the backend knows (possibly the
    /// time of the call).
    pub modified: SystemTime,
    /// Whether the path is a directory (has files below it) rather than a file.
    pub is_dir: bool,
}

/// A version of a file's content, as [`StorageDriver::get_versioned`] reads it and
/// [`Precondition::Matches`] compares it: an opaque tag that differs whenever the content
/// does (S3's ETag; a digest of the content on the filesystem; a generation in memory).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(String);

impl Version {
    /// Wraps a backend's tag.
    pub fn new(tag: impl Into<String>) -> Version {
        Version(tag.into())
    }

    /// The backend's tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a conditional write ([`StorageDriver::put_if`]) requires of the file it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Precondition {
    /// No file is at the path (create-only; `If-None-Match: *` on S3).
    Absent,
    /// The file is there with this version (update-if-unchanged; `If-Match` on S3).
    Matches(Version),
}

/// How durable a write must be when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// As [`StorageDriver::put_content`]: on disk when the call returns.
    Durable,
    /// As [`StorageDriver::put_scratch`]: a crash may leave the old content, the new, an
    /// empty file or none, never a mix. For state a crash may lose harmlessly (a lease).
    Scratch,
}

/// The HTTP method a redirect URL is signed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedirectMethod {
    /// Fetching the content.
    Get,
    /// Asking for its size and headers only.
    Head,
}

/// A stream of chunks of a file's content.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// A byte store with Distribution's storage-driver semantics; see the crate's
/// [contract](crate#contract).
///
/// Object-safe: registries hold an `Arc<dyn StorageDriver>`.
#[async_trait]
pub trait StorageDriver: Send + Sync + fmt::Debug + 'static {
    /// The backend's name, as errors and logs show it (`inmemory`, `filesystem`, `s3`).
    fn name(&self) -> &'static str;

    /// Reads a whole file.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no file at `path`.
    async fn get_content(&self, path: &str) -> Result<Bytes>;

    /// Writes a whole file, atomically replacing what was there.
    ///
    /// # Errors
    /// [`Error::InvalidPath`], or [`Error::Backend`] when the store fails.
    async fn put_content(&self, path: &str, content: Bytes) -> Result<()>;

    /// Writes a whole file as [`put_content`](Self::put_content) does, except that the write
    /// need not be durable when this returns: after a crash the file may hold its old content,
    /// the new one, or be empty or missing. Readers still never see a mix. For state a crash
    /// may lose harmlessly, such as an upload's progress, where a disk flush per write would
    /// cost more than it saves.
    ///
    /// # Errors
    /// As [`put_content`](Self::put_content).
    async fn put_scratch(&self, path: &str, content: Bytes) -> Result<()> {
        self.put_content(path, content).await
    }

    /// Reads a whole file with the version of the content read, for a later
    /// [`put_if`](Self::put_if) with [`Precondition::Matches`].
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no file at `path`.
    async fn get_versioned(&self, path: &str) -> Result<(Bytes, Version)>;

    /// Writes a whole file if `precondition` holds, atomically against every other
    /// conditional write of the path (see the crate's [contract](crate#contract)); answers
    /// the new content's version.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] for [`Precondition::Absent`] when a file is there;
    /// [`Error::Precondition`] for [`Precondition::Matches`] when the file changed or is
    /// gone. Nothing is written then.
    async fn put_if(
        &self,
        path: &str,
        content: Bytes,
        precondition: Precondition,
        durability: Durability,
    ) -> Result<Version>;

    /// Streams a file's content from `offset`. An offset equal to the size gives an empty
    /// stream.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no file, [`Error::InvalidOffset`] past its end.
    async fn reader(&self, path: &str, offset: u64) -> Result<ByteStream>;

    /// Opens a streaming writer; see the crate's [contract](crate#contract) for `append`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when `append` is set and there is nothing to resume.
    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>>;

    /// Describes a file or directory.
    ///
    /// # Errors
    /// [`Error::NotFound`] when neither exists at `path`.
    async fn stat(&self, path: &str) -> Result<FileInfo>;

    /// The paths of the direct children of a directory, sorted. The root of an empty store
    /// has none.
    ///
    /// # Errors
    /// [`Error::NotFound`] when `path` is not a directory.
    async fn list(&self, path: &str) -> Result<Vec<String>>;

    /// Moves a file, replacing whatever is at `to`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no file at `from`.
    async fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Deletes a file or a directory with everything below it, and writes staged below it.
    ///
    /// # Errors
    /// [`Error::NotFound`] when nothing is at `path`.
    async fn delete(&self, path: &str) -> Result<()>;

    /// The files below `path` (a directory, or `/`), in lexical order of their paths, after
    /// `start_after` when given (which need not exist). Walking a missing directory yields
    /// nothing.
    fn walk(&self, path: &str, start_after: Option<&str>) -> BoxStream<'static, Result<FileInfo>>;

    /// Describes several paths at once, `None` for those with nothing at them. Backends that
    /// can answer in fewer calls than one per path do.
    ///
    /// # Errors
    /// The first error other than [`Error::NotFound`].
    async fn stat_many(&self, paths: Vec<String>) -> Result<Vec<Option<FileInfo>>> {
        for path in &paths {
            path::validate_dir_path(self.name(), path)?;
        }
        stream::iter(paths)
            .map(|path| async move { found(self.stat(&path).await) })
            .buffered(BULK_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Lists several folders at once, each as [`list`](Self::list) does, `None` for those
    /// with nothing below them. Backends that can answer in fewer calls than one per folder
    /// do.
    ///
    /// # Errors
    /// The first error other than [`Error::NotFound`].
    async fn list_many(&self, paths: Vec<String>) -> Result<Vec<Option<Vec<String>>>> {
        for path in &paths {
            path::validate_dir_path(self.name(), path)?;
        }
        stream::iter(paths)
            .map(|path| async move { found(self.list(&path).await) })
            .buffered(BULK_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Moves several files, each as [`rename`](Self::rename) does, except that the moves need
    /// not be durable when this returns: after a crash each file is at its old path, at its
    /// new one, or (on backends that move by copying) at both. For bulk moves that a crash may
    /// undo harmlessly, such as setting garbage aside. Answers, for each move, whether its
    /// source was found.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] for any bad path, before anything is moved; then the first
    /// error other than [`Error::NotFound`], with the moves already made left made.
    async fn rename_many(&self, moves: Vec<(String, String)>) -> Result<Vec<bool>> {
        for (from, to) in &moves {
            path::validate_path(self.name(), from)?;
            path::validate_path(self.name(), to)?;
        }
        stream::iter(moves)
            .map(|(from, to)| async move { found(self.rename(&from, &to).await).map(|done| done.is_some()) })
            .buffered(BULK_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Deletes several paths, each as [`delete`](Self::delete) does. Answers, for each path,
    /// whether anything was there.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] for any bad path, before anything is deleted; then the first
    /// error other than [`Error::NotFound`], with the deletions already made left made.
    async fn delete_many(&self, paths: Vec<String>) -> Result<Vec<bool>> {
        for path in &paths {
            path::validate_path(self.name(), path)?;
        }
        stream::iter(paths)
            .map(|path| async move { found(self.delete(&path).await).map(|done| done.is_some()) })
            .buffered(BULK_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Deletes the files at `paths`: files, not folders, with no staged writes (what a
    /// collection set aside, say). A path with nothing at it is not an error. Backends that
    /// delete many files in one call do.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] for any bad path, before anything is deleted; then the first
    /// error other than [`Error::NotFound`], with the deletions already made left made.
    async fn delete_files(&self, paths: Vec<String>) -> Result<()> {
        self.delete_many(paths).await.map(drop)
    }

    /// A URL a client can fetch the file from directly, where the backend has one (a
    /// presigned S3 URL); `None` otherwise.
    ///
    /// # Errors
    /// [`Error::InvalidPath`], or [`Error::Backend`] when signing fails.
    async fn redirect_url(&self, path: &str, method: RedirectMethod) -> Result<Option<url::Url>> {
        path::validate_path(self.name(), path)?;
        let _ = method;
        Ok(None)
    }
}

/// A streaming writer from [`StorageDriver::writer`].
///
/// Dropping a writer without `close`, `commit` or `cancel` loses what was written since it
/// was opened, the way a process crash would; what an earlier `close` kept stays.
#[async_trait]
pub trait FileWriter: Send + fmt::Debug {
    /// Appends a chunk.
    ///
    /// # Errors
    /// [`Error::Backend`] when the store fails; the writer should then be cancelled.
    async fn write(&mut self, data: Bytes) -> Result<()>;

    /// The size of everything written so far, staged content included.
    fn size(&self) -> u64;

    /// Streams the writer's content from `offset` to [`size`](Self::size), staged content
    /// included, where the backend can read back what it has not published (the filesystem
    /// and memory backends can; S3 cannot read the parts of an unfinished upload).
    ///
    /// # Errors
    /// [`Error::InvalidOffset`] past the size; [`Error::Backend`] when the store fails or
    /// cannot read staged content back.
    async fn read_back(&mut self, offset: u64) -> Result<ByteStream> {
        let _ = offset;
        Err(Error::backend("writer", "read back", "", "staged content cannot be read back"))
    }

    /// Keeps what was written, out of sight, for a later `writer(path, true)`, from this
    /// process or another. It need not be durable: after a crash the staged content may be
    /// shorter than what was written, or hold zeros past the last commit's flush, so a caller
    /// that resumes after a crash checks what it finds (a registry verifies the digest at the
    /// end). [`commit`](Self::commit) is what makes content durable.
    ///
    /// # Errors
    /// [`Error::Backend`] when the store fails.
    async fn close(self: Box<Self>) -> Result<()>;

    /// Publishes the content at the writer's path, replacing what was there.
    ///
    /// # Errors
    /// [`Error::Backend`] when the store fails; nothing is published then.
    async fn commit(self: Box<Self>) -> Result<()>;

    /// Publishes the content at `path` instead of the writer's own path, where the backend
    /// can do that in one step, and answers whether it did. A backend that cannot (S3, whose
    /// uploads are bound to their key) publishes at the writer's own path as
    /// [`commit`](Self::commit) does and answers `false`, for the caller to move the file.
    /// Either way the writer's staged content is gone, and what was published is durable.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] for a bad `path`, before anything is published; otherwise as
    /// [`commit`](Self::commit).
    async fn commit_to(self: Box<Self>, path: &str) -> Result<bool> {
        validate_path("writer", path)?;
        self.commit().await?;
        Ok(false)
    }

    /// Discards the content, staged parts included.
    ///
    /// # Errors
    /// [`Error::Backend`] when the staged content could not be removed.
    async fn cancel(self: Box<Self>) -> Result<()>;
}

/// Conveniences on every [`StorageDriver`].
#[async_trait]
pub trait StorageDriverExt: StorageDriver {
    /// Reads a file from `offset` to its end into one buffer.
    ///
    /// # Errors
    /// As [`StorageDriver::reader`], and any error of the stream.
    async fn read_all(&self, path: &str, offset: u64) -> Result<Bytes> {
        let mut stream = self.reader(path, offset).await?;
        let mut out = BytesMut::new();
        while let Some(chunk) = stream.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Whether a file or directory exists at `path`.
    ///
    /// # Errors
    /// Any error of [`StorageDriver::stat`] other than [`Error::NotFound`].
    async fn exists(&self, path: &str) -> Result<bool> {
        match self.stat(path).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes a whole stream through a writer and commits it; returns the size written.
    ///
    /// # Errors
    /// Any error of the stream or the writer; the writer is cancelled then.
    async fn write_stream(&self, path: &str, mut stream: ByteStream) -> Result<u64> {
        let mut writer = self.writer(path, false).await?;
        while let Some(chunk) = stream.next().await {
            let written = match chunk {
                Ok(chunk) => writer.write(chunk).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                // The first error is the one worth reporting.
                let _ = writer.cancel().await;
                return Err(e);
            }
        }
        let size = writer.size();
        writer.commit().await?;
        Ok(size)
    }
}

impl<D: StorageDriver + ?Sized> StorageDriverExt for D {}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
