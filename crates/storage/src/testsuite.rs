//! The behaviours every [`StorageDriver`] owes, as one suite any backend (ours or a third
//! party's) runs from a short test:
//!
//! ```no_run
//! # async fn demo() {
//! let driver = wharf_storage::MemoryDriver::new();
//! wharf_storage::testsuite::run_all(&driver).await;
//! # }
//! ```
//!
//! Each case is also a `pub async fn` of its own. A case works below a directory of its own
//! (`/wharf-testsuite/<case>`), panics on the first failure with the case's name and what
//! differed, and leaves the store as it found it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::{Durability, Error, FileInfo, Precondition, RedirectMethod, StorageDriver, StorageDriverExt};

const MIB: usize = 1 << 20;

/// Sizes the suite works with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SuiteOptions {
    /// The size of the large streaming write and read; default 24 MiB (above S3's multipart
    /// thresholds, small enough for seconds).
    pub large_size: usize,
    /// How many readers and writers the concurrency cases run at once; default 16.
    pub concurrency: usize,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions { large_size: 24 * MIB, concurrency: 16 }
    }
}

impl SuiteOptions {
    /// Sets [`SuiteOptions::large_size`].
    pub fn with_large_size(mut self, bytes: usize) -> SuiteOptions {
        self.large_size = bytes;
        self
    }

    /// Sets [`SuiteOptions::concurrency`].
    pub fn with_concurrency(mut self, tasks: usize) -> SuiteOptions {
        self.concurrency = tasks;
        self
    }
}

/// Runs every case with the default [`SuiteOptions`].
pub async fn run_all(driver: &dyn StorageDriver) {
    run_all_with(driver, &SuiteOptions::default()).await;
}

/// Runs every case.
pub async fn run_all_with(driver: &dyn StorageDriver, options: &SuiteOptions) {
    valid_paths(driver).await;
    invalid_paths(driver).await;
    write_read_small(driver).await;
    write_read_non_utf8(driver).await;
    write_read_one_mib(driver).await;
    write_read_large_stream(driver, options.large_size).await;
    empty_file(driver).await;
    truncating_overwrite(driver).await;
    put_content_repeated(driver).await;
    put_scratch(driver).await;
    read_missing(driver).await;
    reader_offsets(driver).await;
    writer_content_invisible_until_commit(driver).await;
    append_resume_large_chunks(driver).await;
    append_resume_small_chunks(driver).await;
    append_resume_after_zero_byte_write(driver).await;
    append_without_staged_content(driver).await;
    writer_cancel(driver).await;
    writer_commit_to(driver).await;
    writer_restart_replaces_staged(driver).await;
    list(driver).await;
    rename(driver).await;
    rename_overwrite(driver).await;
    rename_missing(driver).await;
    delete_file(driver).await;
    delete_folder(driver).await;
    delete_missing(driver).await;
    delete_spares_prefix_siblings(driver).await;
    delete_discards_staged_writes(driver).await;
    stat(driver).await;
    concurrent_readers(driver, options.concurrency).await;
    concurrent_writers(driver, options.concurrency).await;
    concurrent_create_and_delete(driver, options.concurrency).await;
    conditional_writes(driver).await;
    conditional_races(driver, options.concurrency).await;
    conditional_counter(driver, options.concurrency.min(8)).await;
    walk_order(driver).await;
    walk_start_after(driver).await;
    walk_many(driver).await;
    bulk_calls(driver).await;
    redirect_urls(driver).await;
}

/// Deterministic bytes, different for each `seed`, that are not valid UTF-8.
pub fn test_data(seed: u64, len: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = BytesMut::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out.freeze()
}

struct Case<'a> {
    driver: &'a dyn StorageDriver,
    name: &'static str,
    root: String,
}

impl<'a> Case<'a> {
    async fn start(driver: &'a dyn StorageDriver, name: &'static str) -> Case<'a> {
        let root = format!("/wharf-testsuite/{name}");
        // A previous failed run may have left something behind.
        match driver.delete(&root).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => panic!("[{name}] clearing {root} before the case: {e}"),
        }
        Case { driver, name, root }
    }

    fn path(&self, relative: &str) -> String {
        format!("{}/{relative}", self.root)
    }

    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!("[{} on {}] {what}", self.name, self.driver.name())
    }

    fn ok<T>(&self, what: &str, result: crate::Result<T>) -> T {
        result.unwrap_or_else(|e| self.fail(format!("{what}: {e}")))
    }

    fn expect_not_found<T: std::fmt::Debug>(&self, what: &str, result: crate::Result<T>) {
        match result {
            Err(Error::NotFound { .. }) => {}
            other => self.fail(format!("{what}: expected NotFound, got {other:?}")),
        }
    }

    async fn put(&self, relative: &str, content: impl Into<Bytes>) {
        let path = self.path(relative);
        self.ok(&format!("put_content {path}"), self.driver.put_content(&path, content.into()).await);
    }

    async fn expect_content(&self, relative: &str, expected: &[u8]) {
        let path = self.path(relative);
        let content = self.ok(&format!("get_content {path}"), self.driver.get_content(&path).await);
        if content != expected {
            self.fail(format!("{path}: read {} bytes that differ from the {} written", content.len(), expected.len()));
        }
        let streamed = self.ok(&format!("reader {path}"), self.driver.read_all(&path, 0).await);
        if streamed != expected {
            self.fail(format!(
                "{path}: streamed {} bytes that differ from the {} written",
                streamed.len(),
                expected.len()
            ));
        }
    }

    async fn write_in_chunks(&self, relative: &str, data: &Bytes, chunk: usize) {
        let path = self.path(relative);
        let mut writer = self.ok("writer", self.driver.writer(&path, false).await);
        for part in data.chunks(chunk.max(1)) {
            self.ok("write", writer.write(data.slice_ref(part)).await);
        }
        if writer.size() != data.len() as u64 {
            self.fail(format!("writer size {} after writing {}", writer.size(), data.len()));
        }
        self.ok("commit", writer.commit().await);
    }

    async fn walk(&self, dir: &str, start_after: Option<&str>) -> Vec<FileInfo> {
        let walked = self.driver.walk(dir, start_after).try_collect().await;
        self.ok(&format!("walk {dir}"), walked)
    }

    /// Deletes the case's directory and checks nothing of it is left.
    async fn finish(self) {
        match self.driver.delete(&self.root).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => self.fail(format!("deleting {}: {e}", self.root)),
        }
        let left = self.walk(&self.root, None).await;
        if !left.is_empty() {
            self.fail(format!("left behind: {:?}", left.iter().map(|f| &f.path).collect::<Vec<_>>()));
        }
        if self.driver.exists(&self.root).await.unwrap_or(true) {
            self.fail(format!("{} still exists", self.root));
        }
    }
}

/// Paths of every allowed character and shape are accepted.
pub async fn valid_paths(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "valid_paths").await;
    for relative in ["a", "A.b_c-D", "0/1/2/3/4/5/6/7/8/9", ".hidden", "a..b", "_uploads/x-y_z.data", &"n".repeat(200)]
    {
        case.put(relative, Bytes::from(relative.to_owned())).await;
        case.expect_content(relative, relative.as_bytes()).await;
    }
    case.finish().await;
}

/// Malformed paths are refused with `InvalidPath` by every operation, and nothing is stored.
pub async fn invalid_paths(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "invalid_paths").await;
    for path in
        ["", "relative", "/", "//a", "/a/", "/a//b", "/a/./b", "/a/../b", "/sp ace", "/ü", "/a:b", "/a\\b", "/a?b"]
    {
        let refused = |what: &str, result: Result<(), Error>| match result {
            Err(Error::InvalidPath { .. }) => {}
            other => case.fail(format!("{what}({path:?}): expected InvalidPath, got {other:?}")),
        };
        refused("put_content", driver.put_content(path, Bytes::from_static(b"x")).await);
        refused("put_scratch", driver.put_scratch(path, Bytes::from_static(b"x")).await);
        refused("get_content", driver.get_content(path).await.map(drop));
        refused("reader", driver.reader(path, 0).await.map(drop));
        refused("writer", driver.writer(path, false).await.map(drop));
        refused("delete", driver.delete(path).await);
        refused("rename", driver.rename(path, &case.path("x")).await);
        if path != "/" {
            refused("stat", driver.stat(path).await.map(drop));
            refused("list", driver.list(path).await.map(drop));
        }
    }
    if !case.walk("/wharf-testsuite/invalid_paths", None).await.is_empty() {
        case.fail("an invalid path stored something");
    }
    case.finish().await;
}

/// A small text file round-trips.
pub async fn write_read_small(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "write_read_small").await;
    case.put("small", &b"hello, registry"[..]).await;
    case.expect_content("small", b"hello, registry").await;
    case.finish().await;
}

/// Bytes that are not UTF-8 round-trip unchanged.
pub async fn write_read_non_utf8(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "write_read_non_utf8").await;
    let data: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
    case.put("binary", data.clone()).await;
    case.expect_content("binary", &data).await;
    case.finish().await;
}

/// 1 MiB through `put_content` and through a writer.
pub async fn write_read_one_mib(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "write_read_one_mib").await;
    let data = test_data(1, MIB);
    case.put("put", data.clone()).await;
    case.expect_content("put", &data).await;
    case.write_in_chunks("streamed", &data, 64 * 1024).await;
    case.expect_content("streamed", &data).await;
    case.finish().await;
}

/// A large stream of `size` bytes, written in uneven chunks and read back.
pub async fn write_read_large_stream(driver: &dyn StorageDriver, size: usize) {
    let case = Case::start(driver, "write_read_large_stream").await;
    let data = test_data(2, size);
    let path = case.path("large");
    // Uneven chunk sizes, so no backend gets only aligned parts.
    let chunks: Vec<crate::Result<Bytes>> = {
        let mut chunks = Vec::new();
        let mut at = 0;
        let mut step = 777_777;
        while at < data.len() {
            let end = (at + step).min(data.len());
            chunks.push(Ok(data.slice(at..end)));
            at = end;
            step = step * 3 % 3_000_017 + 1;
        }
        chunks
    };
    let written = case.ok("write_stream", driver.write_stream(&path, stream::iter(chunks).boxed()).await);
    if written != size as u64 {
        case.fail(format!("wrote {written} of {size} bytes"));
    }
    let info = case.ok("stat", driver.stat(&path).await);
    if info.size != size as u64 || info.is_dir {
        case.fail(format!("stat after writing {size} bytes: {info:?}"));
    }
    let read = case.ok("read_all", driver.read_all(&path, 0).await);
    if read != data {
        case.fail(format!("read {} bytes that differ from the {size} written", read.len()));
    }
    case.finish().await;
}

/// Zero-byte files, by `put_content` and by a writer, exist and read as empty.
pub async fn empty_file(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "empty_file").await;
    case.put("put", Bytes::new()).await;
    case.expect_content("put", b"").await;
    let path = case.path("written");
    let writer = case.ok("writer", driver.writer(&path, false).await);
    case.ok("commit", writer.commit().await);
    case.expect_content("written", b"").await;
    let info = case.ok("stat", driver.stat(&path).await);
    if info.size != 0 || info.is_dir {
        case.fail(format!("stat of an empty file: {info:?}"));
    }
    case.finish().await;
}

/// A shorter write replaces a longer file entirely, by both ways of writing.
pub async fn truncating_overwrite(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "truncating_overwrite").await;
    case.put("file", test_data(3, 4096)).await;
    case.put("file", &b"short"[..]).await;
    case.expect_content("file", b"short").await;
    case.write_in_chunks("file", &test_data(4, 10_000), 1000).await;
    case.write_in_chunks("file", &Bytes::from_static(b"tiny"), 2).await;
    case.expect_content("file", b"tiny").await;
    case.finish().await;
}

/// Rewriting the same path many times keeps the last content.
pub async fn put_content_repeated(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "put_content_repeated").await;
    for round in 0..20u64 {
        case.put("file", test_data(round, 100 + round as usize * 37)).await;
    }
    case.expect_content("file", &test_data(19, 100 + 19 * 37)).await;
    case.finish().await;
}

/// `put_scratch` writes and replaces whole files as `put_content` does, creating folders,
/// and its files list, rename and delete like any other.
pub async fn put_scratch(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "put_scratch").await;
    let path = case.path("deep/folder/state");
    for round in 0..5u64 {
        let content = test_data(round, 10 + round as usize * 1000);
        if let Err(e) = driver.put_scratch(&path, content.clone()).await {
            case.fail(format!("put_scratch, round {round}: {e}"));
        }
        case.expect_content("deep/folder/state", &content).await;
    }
    case.put("deep/folder/other", "x").await;
    if driver.list(&case.path("deep/folder")).await.ok() != Some(vec![case.path("deep/folder/other"), path.clone()]) {
        case.fail("the scratch file is not listed beside the other");
    }
    if let Err(e) = driver.rename(&path, &case.path("moved")).await {
        case.fail(format!("rename of a scratch file: {e}"));
    }
    case.expect_content("moved", &test_data(4, 4010)).await;
    case.finish().await;
}

/// Reading what is not there is `NotFound`, by every reading operation.
pub async fn read_missing(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "read_missing").await;
    let path = case.path("missing");
    case.expect_not_found("get_content", driver.get_content(&path).await);
    case.expect_not_found("reader", driver.reader(&path, 0).await.map(drop));
    case.expect_not_found("stat", driver.stat(&path).await);
    case.expect_not_found("list", driver.list(&path).await);
    case.put("dir/file", &b"x"[..]).await;
    case.expect_not_found("get_content of a directory", driver.get_content(&case.path("dir")).await);
    case.finish().await;
}

/// Readers start at 0, in the middle, at the end (empty), and refuse past the end.
pub async fn reader_offsets(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "reader_offsets").await;
    let data = test_data(5, 3 * MIB + 123);
    case.put("file", data.clone()).await;
    let path = case.path("file");
    for offset in [0, 1, MIB - 1, MIB, 2 * MIB + 7, data.len() - 1, data.len()] {
        let read = case.ok(&format!("reader at {offset}"), driver.read_all(&path, offset as u64).await);
        if read != data[offset..] {
            case.fail(format!("reader at {offset}: {} bytes that differ", read.len()));
        }
    }
    match driver.reader(&path, data.len() as u64 + 1).await {
        Err(Error::InvalidOffset { offset, size, .. })
            if offset == data.len() as u64 + 1 && size == data.len() as u64 => {}
        other => case.fail(format!("reader past the end: expected InvalidOffset, got {:?}", other.map(drop))),
    }
    case.finish().await;
}

/// What a writer wrote is not visible before commit, closed or not.
pub async fn writer_content_invisible_until_commit(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "writer_content_invisible_until_commit").await;
    let path = case.path("file");
    let mut writer = case.ok("writer", driver.writer(&path, false).await);
    case.ok("write", writer.write(test_data(6, 1000)).await);
    case.expect_not_found("get_content while writing", driver.get_content(&path).await);
    case.ok("close", writer.close().await);
    case.expect_not_found("get_content after close", driver.get_content(&path).await);
    case.expect_not_found("stat after close", driver.stat(&path).await);
    if !case.walk(&case.root, None).await.is_empty() {
        case.fail("walk shows content that was closed but not committed");
    }
    // An older committed version stays readable while a new one is being written.
    case.put("file", &b"old"[..]).await;
    let mut writer = case.ok("writer", driver.writer(&path, true).await);
    case.ok("write", writer.write(Bytes::from_static(b"more")).await);
    case.expect_content("file", b"old").await;
    case.ok("commit", writer.commit().await);
    let mut expected = test_data(6, 1000).to_vec();
    expected.extend_from_slice(b"more");
    case.expect_content("file", &expected).await;
    case.finish().await;
}

async fn append_resume(case: &Case<'_>, data: &Bytes, chunk: usize, stops: &[usize]) {
    let path = case.path("resumed");
    let mut writer = case.ok("writer", case.driver.writer(&path, false).await);
    let mut written = 0;
    for &stop in stops.iter().chain([&data.len()]) {
        while written < stop {
            let end = (written + chunk).min(stop);
            case.ok("write", writer.write(data.slice(written..end)).await);
            written = end;
        }
        if stop == data.len() {
            break;
        }
        case.ok("close", writer.close().await);
        writer = case.ok(&format!("writer(append) after {stop} bytes"), case.driver.writer(&path, true).await);
        if writer.size() != stop as u64 {
            case.fail(format!("resumed writer reports size {} after {stop} bytes", writer.size()));
        }
    }
    case.ok("commit", writer.commit().await);
    let read = case.ok("read_all", case.driver.read_all(&path, 0).await);
    if read != data {
        case.fail(format!(
            "resumed write read back as {} bytes that differ from the {} written",
            read.len(),
            data.len()
        ));
    }
}

/// Close and resume with chunks of several MiB (S3 parts, whole and partial).
pub async fn append_resume_large_chunks(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "append_resume_large_chunks").await;
    let data = test_data(7, 17 * MIB + 5);
    append_resume(&case, &data, 3 * MIB + 1, &[6 * MIB + 2, 7 * MIB, 13 * MIB + 100]).await;
    case.finish().await;
}

/// Close and resume with chunks of a few bytes, many times.
pub async fn append_resume_small_chunks(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "append_resume_small_chunks").await;
    let data = test_data(8, 10_000);
    append_resume(&case, &data, 7, &[1, 100, 1000, 1001, 5000, 9999]).await;
    case.finish().await;
}

/// A writer closed after writing nothing can be resumed.
pub async fn append_resume_after_zero_byte_write(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "append_resume_after_zero_byte_write").await;
    let path = case.path("file");
    let mut writer = case.ok("writer", driver.writer(&path, false).await);
    case.ok("empty write", writer.write(Bytes::new()).await);
    case.ok("close", writer.close().await);
    let mut writer = case.ok("writer(append) after zero bytes", driver.writer(&path, true).await);
    if writer.size() != 0 {
        case.fail(format!("resumed empty writer reports size {}", writer.size()));
    }
    case.ok("write", writer.write(Bytes::from_static(b"content")).await);
    case.ok("commit", writer.commit().await);
    case.expect_content("file", b"content").await;
    case.finish().await;
}

/// `writer(path, true)` with nothing staged: `NotFound`, unless an empty file is committed.
pub async fn append_without_staged_content(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "append_without_staged_content").await;
    case.expect_not_found("writer(append) of a missing path", driver.writer(&case.path("none"), true).await);
    case.put("full", &b"content"[..]).await;
    case.expect_not_found(
        "writer(append) of a committed non-empty file",
        driver.writer(&case.path("full"), true).await,
    );
    case.put("empty", Bytes::new()).await;
    let mut writer = case.ok("writer(append) of an empty file", driver.writer(&case.path("empty"), true).await);
    case.ok("write", writer.write(Bytes::from_static(b"now")).await);
    case.ok("commit", writer.commit().await);
    case.expect_content("empty", b"now").await;
    case.finish().await;
}

/// A cancelled writer leaves nothing, and the committed file stays as it was.
pub async fn writer_cancel(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "writer_cancel").await;
    let path = case.path("file");
    let mut writer = case.ok("writer", driver.writer(&path, false).await);
    case.ok("write", writer.write(test_data(9, 6 * MIB)).await);
    case.ok("close", writer.close().await);
    let mut writer = case.ok("writer(append)", driver.writer(&path, true).await);
    case.ok("write", writer.write(Bytes::from_static(b"x")).await);
    case.ok("cancel", writer.cancel().await);
    case.expect_not_found("writer(append) after cancel", driver.writer(&path, true).await);
    case.expect_not_found("get_content after cancel", driver.get_content(&path).await);
    case.put("file", &b"kept"[..]).await;
    let mut writer = case.ok("writer", driver.writer(&path, false).await);
    case.ok("write", writer.write(Bytes::from_static(b"dropped")).await);
    case.ok("cancel", writer.cancel().await);
    case.expect_content("file", b"kept").await;
    case.finish().await;
}

/// `commit_to` publishes a resumed write at another path (or, where the backend cannot, at
/// its own, saying so), replacing what was there, and leaves nothing staged; a bad target
/// path is refused before anything is published.
pub async fn writer_commit_to(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "writer_commit_to").await;
    let (path, target) = (case.path("upload/data"), case.path("blobs/ab/data"));
    let content = test_data(11, 3 * MIB + 17);
    let mut writer = case.ok("writer", driver.writer(&path, false).await);
    case.ok("write", writer.write(content.slice(..MIB)).await);
    case.ok("close", writer.close().await);
    let writer = case.ok("writer(append)", driver.writer(&path, true).await);
    match writer.commit_to("/not a path").await {
        Err(Error::InvalidPath { .. }) => {}
        other => case.fail(format!("commit_to a bad path: expected InvalidPath, got {other:?}")),
    }
    let mut writer = case.ok("writer(append) after the refusal", driver.writer(&path, true).await);
    if writer.size() != MIB as u64 {
        case.fail(format!("the refused commit_to changed the staged size to {}", writer.size()));
    }
    case.ok("write", writer.write(content.slice(MIB..)).await);
    case.put("blobs/ab/data", &b"an older copy"[..]).await;
    if !case.ok("commit_to", writer.commit_to(&target).await) {
        // The backend published at the writer's path: the caller moves it.
        case.ok("rename", driver.rename(&path, &target).await);
    }
    case.expect_content("blobs/ab/data", &content).await;
    case.expect_not_found("get_content of the writer's path", driver.get_content(&path).await);
    case.expect_not_found("writer(append) after commit_to", driver.writer(&path, true).await);
    case.finish().await;
}

/// `writer(path, false)` discards what an earlier writer closed.
pub async fn writer_restart_replaces_staged(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "writer_restart_replaces_staged").await;
    let path = case.path("file");
    let mut writer = case.ok("writer", driver.writer(&path, false).await);
    case.ok("write", writer.write(Bytes::from_static(b"stale")).await);
    case.ok("close", writer.close().await);
    let mut writer = case.ok("writer", driver.writer(&path, false).await);
    if writer.size() != 0 {
        case.fail(format!("a fresh writer reports size {}", writer.size()));
    }
    case.ok("write", writer.write(Bytes::from_static(b"fresh")).await);
    case.ok("commit", writer.commit().await);
    case.expect_content("file", b"fresh").await;
    case.finish().await;
}

/// `list` gives direct children only, sorted, as full paths.
pub async fn list(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "list").await;
    for relative in ["dir/b", "dir/a", "dir/sub/deep/file", "dir/sub/other", "dir-sibling/x", "top"] {
        case.put(relative, Bytes::from_static(b".")).await;
    }
    let listed = case.ok("list", driver.list(&case.path("dir")).await);
    let expected = [case.path("dir/a"), case.path("dir/b"), case.path("dir/sub")];
    if listed != expected {
        case.fail(format!("list dir: {listed:?}, expected {expected:?}"));
    }
    let listed = case.ok("list", driver.list(&case.root).await);
    let expected = [case.path("dir"), case.path("dir-sibling"), case.path("top")];
    if listed != expected {
        case.fail(format!("list root: {listed:?}, expected {expected:?}"));
    }
    let root = case.ok("list /", driver.list("/").await);
    if !root.contains(&"/wharf-testsuite".to_owned()) {
        case.fail(format!("list / lacks /wharf-testsuite: {root:?}"));
    }
    case.expect_not_found("list of a file", driver.list(&case.path("top")).await);
    case.finish().await;
}

/// `rename` moves content and leaves nothing at the source.
pub async fn rename(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "rename").await;
    let data = test_data(10, 70 * 1024);
    case.put("from/file", data.clone()).await;
    case.ok("rename", driver.rename(&case.path("from/file"), &case.path("to/deeper/file")).await);
    case.expect_content("to/deeper/file", &data).await;
    case.expect_not_found("source after rename", driver.get_content(&case.path("from/file")).await);
    case.expect_not_found("emptied source directory", driver.stat(&case.path("from")).await);
    case.finish().await;
}

/// `rename` over an existing file replaces it.
pub async fn rename_overwrite(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "rename_overwrite").await;
    case.put("a", &b"new content"[..]).await;
    case.put("b", test_data(11, 5000)).await;
    case.ok("rename", driver.rename(&case.path("a"), &case.path("b")).await);
    case.expect_content("b", b"new content").await;
    case.expect_not_found("source after rename", driver.get_content(&case.path("a")).await);
    case.finish().await;
}

/// `rename` of a missing file is `NotFound` and creates nothing.
pub async fn rename_missing(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "rename_missing").await;
    case.expect_not_found("rename", driver.rename(&case.path("missing"), &case.path("target")).await);
    case.expect_not_found("target", driver.stat(&case.path("target")).await);
    case.finish().await;
}

/// Deleting a file removes it and nothing else.
pub async fn delete_file(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "delete_file").await;
    case.put("dir/gone", &b"x"[..]).await;
    case.put("dir/kept", &b"y"[..]).await;
    case.ok("delete", driver.delete(&case.path("dir/gone")).await);
    case.expect_not_found("deleted file", driver.get_content(&case.path("dir/gone")).await);
    case.expect_content("dir/kept", b"y").await;
    case.finish().await;
}

/// Deleting a directory removes everything below it.
pub async fn delete_folder(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "delete_folder").await;
    for relative in ["dir/a", "dir/b/c", "dir/b/d/e", "other"] {
        case.put(relative, Bytes::from_static(b".")).await;
    }
    case.ok("delete", driver.delete(&case.path("dir")).await);
    case.expect_not_found("stat of deleted directory", driver.stat(&case.path("dir")).await);
    let left: Vec<String> = case.walk(&case.root, None).await.into_iter().map(|f| f.path).collect();
    if left != [case.path("other")] {
        case.fail(format!("after deleting dir: {left:?}"));
    }
    case.finish().await;
}

/// Deleting a missing path is `NotFound`.
pub async fn delete_missing(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "delete_missing").await;
    case.expect_not_found("delete", driver.delete(&case.path("missing")).await);
    case.expect_not_found("delete below a file", {
        case.put("file", &b"x"[..]).await;
        driver.delete(&case.path("file/below")).await
    });
    case.finish().await;
}

/// Deleting `/a` spares `/ab`, `/a.b` and `/a-b`.
pub async fn delete_spares_prefix_siblings(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "delete_spares_prefix_siblings").await;
    for relative in ["a", "ab", "a.b", "a-b", "dir/x", "dirx/y", "dir.z/w"] {
        case.put(relative, Bytes::from(relative.to_owned())).await;
    }
    case.ok("delete file a", driver.delete(&case.path("a")).await);
    case.ok("delete dir", driver.delete(&case.path("dir")).await);
    for relative in ["ab", "a.b", "a-b", "dirx/y", "dir.z/w"] {
        case.expect_content(relative, relative.as_bytes()).await;
    }
    case.finish().await;
}

/// Deleting a directory also discards writes staged below it.
pub async fn delete_discards_staged_writes(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "delete_discards_staged_writes").await;
    let path = case.path("upload/data");
    case.put("upload/startedat", &b"now"[..]).await;
    let mut writer = case.ok("writer", driver.writer(&path, false).await);
    case.ok("write", writer.write(test_data(12, 1000)).await);
    case.ok("close", writer.close().await);
    case.ok("delete", driver.delete(&case.path("upload")).await);
    case.expect_not_found("writer(append) after delete", driver.writer(&path, true).await);
    case.finish().await;
}

/// `stat` tells files from directories, with sizes and times.
pub async fn stat(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "stat").await;
    let before = std::time::SystemTime::now() - Duration::from_secs(300);
    case.put("dir/file", test_data(13, 4321)).await;
    let file = case.ok("stat file", driver.stat(&case.path("dir/file")).await);
    if file.is_dir || file.size != 4321 || file.path != case.path("dir/file") || file.modified < before {
        case.fail(format!("stat of a file: {file:?}"));
    }
    let dir = case.ok("stat dir", driver.stat(&case.path("dir")).await);
    if !dir.is_dir || dir.path != case.path("dir") {
        case.fail(format!("stat of a directory: {dir:?}"));
    }
    let root = case.ok("stat /", driver.stat("/").await);
    if !root.is_dir {
        case.fail(format!("stat of the root: {root:?}"));
    }
    case.finish().await;
}

/// Many readers of the same and of different files at once.
pub async fn concurrent_readers(driver: &dyn StorageDriver, readers: usize) {
    let case = Case::start(driver, "concurrent_readers").await;
    let files: Vec<Bytes> = (0..4).map(|i| test_data(20 + i, 300_000 + i as usize * 1000)).collect();
    for (i, data) in files.iter().enumerate() {
        case.put(&format!("file{i}"), data.clone()).await;
    }
    let reads = (0..readers).map(|r| {
        let (path, expected) = (case.path(&format!("file{}", r % files.len())), files[r % files.len()].clone());
        async move { (driver.read_all(&path, (r * 13) as u64).await, expected, r * 13) }
    });
    for (read, expected, offset) in futures::future::join_all(reads).await {
        if case.ok("concurrent read", read) != expected[offset..] {
            case.fail("a concurrent reader got different bytes");
        }
    }
    case.finish().await;
}

/// Many writers at once: to different files, and racing on one file (one of them wins whole).
pub async fn concurrent_writers(driver: &dyn StorageDriver, writers: usize) {
    let case = Case::start(driver, "concurrent_writers").await;
    let writes = (0..writers).map(|w| {
        let (own, shared) = (case.path(&format!("own/{w}")), case.path("shared"));
        let data = test_data(40 + w as u64, 100_000 + w * 10);
        async move {
            let mut writer = driver.writer(&own, false).await?;
            for chunk in data.chunks(30_000) {
                writer.write(data.slice_ref(chunk)).await?;
            }
            writer.commit().await?;
            driver.put_content(&shared, data).await
        }
    });
    for result in futures::future::join_all(writes).await {
        case.ok("concurrent write", result);
    }
    for w in 0..writers {
        case.expect_content(&format!("own/{w}"), &test_data(40 + w as u64, 100_000 + w * 10)).await;
    }
    let shared = case.ok("read shared", driver.get_content(&case.path("shared")).await);
    let whole = (0..writers).any(|w| shared == test_data(40 + w as u64, 100_000 + w * 10));
    if !whole {
        case.fail("racing writers left a mix rather than one writer's content");
    }
    case.finish().await;
}

/// Files come and go in one folder at once: creating a file never fails because another
/// task's delete emptied (and removed) the folder a moment before.
pub async fn concurrent_create_and_delete(driver: &dyn StorageDriver, tasks: usize) {
    let case = Case::start(driver, "concurrent_create_and_delete").await;
    let work = (0..tasks).map(|task| {
        let dir = case.path("shared/dir");
        async move {
            for round in 0..8 {
                let staged = format!("{dir}/{task}-{round}/data");
                let mut writer = driver.writer(&staged, false).await?;
                writer.write(Bytes::from_static(b"chunk")).await?;
                writer.close().await?;
                let mut writer = driver.writer(&staged, true).await?;
                writer.write(Bytes::from_static(b"more")).await?;
                writer.commit().await?;
                driver.put_content(&format!("{dir}/{task}-{round}/meta"), Bytes::from_static(b"m")).await?;
                driver.delete(&format!("{dir}/{task}-{round}")).await?;
            }
            Ok::<(), Error>(())
        }
    });
    for result in futures::future::join_all(work).await {
        case.ok("create and delete", result);
    }
    case.expect_not_found("the emptied folder", driver.stat(&case.path("shared")).await);
    case.finish().await;
}

/// Create-only and update-if-unchanged writes: each applies only when its condition holds,
/// the version follows the content, and a failed condition writes nothing.
pub async fn conditional_writes(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "conditional_writes").await;
    for (file, durability) in [("durable", Durability::Durable), ("scratch", Durability::Scratch)] {
        let path = case.path(file);
        let put = |content: &'static [u8], precondition| {
            driver.put_if(&path, Bytes::from_static(content), precondition, durability)
        };
        let first = case.ok("create-only on a missing file", put(b"one", Precondition::Absent).await);
        match put(b"two", Precondition::Absent).await {
            Err(Error::AlreadyExists { .. }) => {}
            other => case.fail(format!("a second create-only write: expected AlreadyExists, got {other:?}")),
        }
        case.expect_content(file, b"one").await;
        let (content, version) = case.ok("get_versioned", driver.get_versioned(&path).await);
        if content != "one" || version != first {
            case.fail(format!("get_versioned read {content:?} at {version}, after writing \"one\" at {first}"));
        }
        let second = case.ok("update-if-unchanged", put(b"two", Precondition::Matches(first.clone())).await);
        if second == first {
            case.fail(format!("the version stayed {first} when the content changed"));
        }
        match put(b"three", Precondition::Matches(first.clone())).await {
            Err(Error::Precondition { .. }) => {}
            other => case.fail(format!("an update against a stale version: expected Precondition, got {other:?}")),
        }
        case.expect_content(file, b"two").await;
        case.ok("put_content", driver.put_content(&path, Bytes::from_static(b"plain")).await);
        match put(b"four", Precondition::Matches(second)).await {
            Err(Error::Precondition { .. }) => {}
            other => case.fail(format!("an update after a plain write: expected Precondition, got {other:?}")),
        }
        case.ok("delete", driver.delete(&path).await);
        match put(b"five", Precondition::Matches(first)).await {
            Err(Error::Precondition { .. }) => {}
            other => case.fail(format!("an update of a deleted file: expected Precondition, got {other:?}")),
        }
        case.expect_not_found("the file an update did not write", driver.stat(&path).await);
    }
    case.finish().await;
}

/// Many conditional writes of one path at once: exactly one create-only write wins, and of
/// the updates made against the same version exactly one wins, whole.
pub async fn conditional_races(driver: &dyn StorageDriver, writers: usize) {
    let case = Case::start(driver, "conditional_races").await;
    let path = case.path("contended");
    let content = |w: usize| Bytes::from(format!("writer {w}"));
    let creates = (0..writers).map(|w| driver.put_if(&path, content(w), Precondition::Absent, Durability::Scratch));
    let created = futures::future::join_all(creates).await;
    let winners: Vec<usize> = (0..writers).filter(|&w| created[w].is_ok()).collect();
    for result in &created {
        if let Err(e) = result
            && !matches!(e, Error::AlreadyExists { .. })
        {
            case.fail(format!("a losing create-only write: expected AlreadyExists, got {e}"));
        }
    }
    if winners.len() != 1 {
        case.fail(format!("{} of {writers} racing create-only writes won", winners.len()));
    }
    let (_, version) = case.ok("get_versioned", driver.get_versioned(&path).await);
    let updates = (0..writers).map(|w| {
        let precondition = Precondition::Matches(version.clone());
        driver.put_if(&path, content(100 + w), precondition, Durability::Durable)
    });
    let updated = futures::future::join_all(updates).await;
    let winners: Vec<usize> = (0..writers).filter(|&w| updated[w].is_ok()).collect();
    for result in &updated {
        if let Err(e) = result
            && !matches!(e, Error::Precondition { .. })
        {
            case.fail(format!("a losing update: expected Precondition, got {e}"));
        }
    }
    if winners.len() != 1 {
        case.fail(format!("{} of {writers} racing updates against one version won", winners.len()));
    }
    case.expect_content("contended", &content(100 + winners[0])).await;
    case.finish().await;
}

/// A counter that `tasks` tasks each raise `ROUNDS` times by read, update-if-unchanged and
/// retry ends at `tasks * ROUNDS`: no update is lost, as none would be across processes.
pub async fn conditional_counter(driver: &dyn StorageDriver, tasks: usize) {
    const ROUNDS: usize = 4;
    let case = Case::start(driver, "conditional_counter").await;
    let path = case.path("counter");
    case.ok("create", driver.put_if(&path, Bytes::from_static(b"0"), Precondition::Absent, Durability::Scratch).await);
    let raise = (0..tasks).map(|_| {
        let path = path.clone();
        async move {
            let mut raised = 0;
            while raised < ROUNDS {
                let (content, version) = driver.get_versioned(&path).await?;
                let count: usize =
                    std::str::from_utf8(&content).ok().and_then(|c| c.parse().ok()).unwrap_or(usize::MAX);
                let next = Bytes::from((count.saturating_add(1)).to_string());
                match driver.put_if(&path, next, Precondition::Matches(version), Durability::Scratch).await {
                    Ok(_) => raised += 1,
                    Err(e) if e.is_conflict() => tokio::task::yield_now().await,
                    Err(e) => return Err(e),
                }
            }
            Ok::<(), Error>(())
        }
    });
    for result in futures::future::join_all(raise).await {
        case.ok("raise the counter", result);
    }
    case.expect_content("counter", (tasks * ROUNDS).to_string().as_bytes()).await;
    case.finish().await;
}

/// `walk` yields files only, in byte-wise lexical order of their paths.
pub async fn walk_order(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "walk_order").await;
    let relative = ["a", "a-b", "a.b", "a/b", "a/b/c", "a0", "B", "_x/y", "z/z/z/z"];
    // "a" and "a/b" cannot both be files: make "a" a directory's sibling instead.
    let files: Vec<&str> = relative.into_iter().filter(|r| *r != "a" && *r != "a/b").collect();
    for (i, file) in files.iter().enumerate() {
        case.put(file, test_data(i as u64, i)).await;
    }
    let walked = case.walk(&case.root, None).await;
    let mut expected: Vec<String> = files.iter().map(|f| case.path(f)).collect();
    expected.sort();
    let paths: Vec<&String> = walked.iter().map(|f| &f.path).collect();
    if paths != expected.iter().collect::<Vec<_>>() {
        case.fail(format!("walk order {paths:?}, expected {expected:?}"));
    }
    if walked.iter().any(|f| f.is_dir) {
        case.fail("walk yielded a directory");
    }
    for info in &walked {
        let i = files.iter().position(|f| case.path(f) == info.path).unwrap_or_default();
        if info.size != i as u64 {
            case.fail(format!("walk size of {}: {}, expected {i}", info.path, info.size));
        }
    }
    let below: Vec<String> = case.walk(&case.path("a"), None).await.into_iter().map(|f| f.path).collect();
    if below != [case.path("a/b/c")] {
        case.fail(format!("walk of a subdirectory: {below:?}"));
    }
    if !case.walk(&case.path("missing"), None).await.is_empty() {
        case.fail("walk of a missing directory yielded something");
    }
    case.finish().await;
}

/// `walk` with `start_after` resumes after any string, existing or not.
pub async fn walk_start_after(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "walk_start_after").await;
    let files = ["r/a/_layers/x", "r/a/_manifests/y", "r/b/_manifests/z", "r/b.c/_manifests/w", "r/c/d/_layers/v"];
    for file in files {
        case.put(file, Bytes::from_static(b".")).await;
    }
    let all: Vec<String> = {
        let mut all: Vec<String> = files.iter().map(|f| case.path(f)).collect();
        all.sort();
        all
    };
    for start in 0..=all.len() {
        let after = if start == 0 { case.path("r") } else { all[start - 1].clone() };
        let paths: Vec<String> = case.walk(&case.path("r"), Some(&after)).await.into_iter().map(|f| f.path).collect();
        let expected = if start == 0 { &all[..] } else { &all[start..] };
        if paths != expected {
            case.fail(format!("walk after {after}: {paths:?}, expected {expected:?}"));
        }
    }
    // A start that does not exist, between two subtrees.
    let paths: Vec<String> =
        case.walk(&case.path("r"), Some(&case.path("r/b/~"))).await.into_iter().map(|f| f.path).collect();
    let expected: Vec<String> = all.iter().filter(|p| p.as_str() > case.path("r/b/~").as_str()).cloned().collect();
    if paths != expected {
        case.fail(format!("walk after r/b/~: {paths:?}, expected {expected:?}"));
    }
    // A start before the directory means from its beginning.
    if case.walk(&case.path("r"), Some("/")).await.len() != all.len() {
        case.fail("walk after '/' skipped something");
    }
    case.finish().await;
}

/// `walk` over more files than a backend returns in one batch or page, from the start and
/// from the middle.
pub async fn walk_many(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "walk_many").await;
    let mut expected: Vec<String> = (0..1100).map(|i| case.path(&format!("d{}/f{i:04}", i % 11))).collect();
    let writes: Vec<String> = expected.clone();
    let written = stream::iter(writes)
        .map(|path| async move { driver.put_content(&path, Bytes::from_static(b".")).await })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await;
    case.ok("put_content", written);
    expected.sort();
    let walked: Vec<String> = case.walk(&case.root, None).await.into_iter().map(|f| f.path).collect();
    if walked != expected {
        case.fail(format!(
            "walk of {} files yielded {}, first difference at {:?}",
            expected.len(),
            walked.len(),
            walked.iter().zip(&expected).position(|(a, b)| a != b)
        ));
    }
    let after = &expected[549];
    let rest: Vec<String> = case.walk(&case.root, Some(after)).await.into_iter().map(|f| f.path).collect();
    if rest != expected[550..] {
        case.fail(format!("walk after {after} yielded {} files, expected {}", rest.len(), expected.len() - 550));
    }
    case.finish().await;
}

/// `stat_many`, `list_many`, `rename_many` and `delete_many` act on each path as the single
/// calls do, and answer in the order asked, `None` or `false` for what is missing;
/// `delete_files` deletes files and passes over missing ones.
pub async fn bulk_calls(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "bulk_calls").await;
    let names: Vec<String> = (0..300).map(|i| format!("from/{i:03}")).collect();
    for (i, name) in names.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        case.put(name, test_data(i as u64, i)).await;
    }
    let stats = case.ok("stat_many", driver.stat_many(names.iter().map(|n| case.path(n)).collect()).await);
    for (i, (name, stat)) in names.iter().zip(&stats).enumerate() {
        match stat {
            None if i % 3 == 0 => {}
            Some(info) if i % 3 != 0 && info.size == i as u64 && info.path == case.path(name) && !info.is_dir => {}
            other => case.fail(format!("stat_many of {name}: {other:?}")),
        }
    }
    let dir = case.ok("stat_many of a folder", driver.stat_many(vec![case.path("from")]).await);
    if !matches!(dir.as_slice(), [Some(info)] if info.is_dir) {
        case.fail(format!("stat_many of a folder: {dir:?}"));
    }
    // Folders listed at once answer as each listed alone; a missing one is `None`.
    let folders = vec![case.path("from"), case.path("nothing-here"), case.path("from/001")];
    let listed = case.ok("list_many", driver.list_many(folders.clone()).await);
    let alone = case.ok("list", driver.list(&case.path("from")).await);
    match listed.as_slice() {
        [Some(from), None, None] if *from == alone && from.len() == 200 => {}
        other => case.fail(format!("list_many of {folders:?}: {} answers, first {:?}", other.len(), other.first())),
    }

    let moves: Vec<(String, String)> =
        names.iter().map(|n| (case.path(n), case.path(&n.replace("from/", "to/a/")))).collect();
    let moved = case.ok("rename_many", driver.rename_many(moves).await);
    for (i, (name, moved)) in names.iter().zip(&moved).enumerate() {
        if *moved != (i % 3 != 0) {
            case.fail(format!("rename_many of {name} answered {moved}"));
        }
        let target = name.replace("from/", "to/a/");
        if i % 3 == 0 {
            case.expect_not_found("a missing file's move target", driver.stat(&case.path(&target)).await);
        } else {
            case.expect_content(&target, &test_data(i as u64, i)).await;
        }
    }
    case.expect_not_found("emptied source folder", driver.stat(&case.path("from")).await);

    let doomed: Vec<String> = names.iter().map(|n| case.path(&n.replace("from/", "to/a/"))).collect();
    let deleted = case.ok("delete_many", driver.delete_many(doomed).await);
    if deleted.iter().enumerate().any(|(i, deleted)| *deleted != (i % 3 != 0)) {
        case.fail(format!("delete_many answered {deleted:?}"));
    }
    case.expect_not_found("emptied folder after delete_many", driver.stat(&case.path("to")).await);

    // Files deleted in bulk; a missing one is no error.
    let files: Vec<String> = (0..5).map(|i| format!("files/{i}")).collect();
    for name in files.iter().skip(1) {
        case.put(name, &b"f"[..]).await;
    }
    case.ok("delete_files", driver.delete_files(files.iter().map(|n| case.path(n)).collect()).await);
    case.expect_not_found("emptied folder after delete_files", driver.stat(&case.path("files")).await);

    // Bad paths are refused before anything is done.
    case.put("kept", &b"k"[..]).await;
    let refused = driver.delete_many(vec![case.path("kept"), "/bad//path".into()]).await;
    if !matches!(refused, Err(Error::InvalidPath { .. })) {
        case.fail(format!("delete_many with a bad path: {refused:?}"));
    }
    case.expect_content("kept", b"k").await;
    let refused = driver.delete_files(vec![case.path("kept"), "relative".into()]).await;
    if !matches!(refused, Err(Error::InvalidPath { .. })) {
        case.fail(format!("delete_files with a bad path: {refused:?}"));
    }
    case.expect_content("kept", b"k").await;
    case.finish().await;
}

/// Redirect URLs: `None` or an http(s) URL for files; `InvalidPath` for bad paths.
pub async fn redirect_urls(driver: &dyn StorageDriver) {
    let case = Case::start(driver, "redirect_urls").await;
    case.put("file", &b"x"[..]).await;
    for method in [RedirectMethod::Get, RedirectMethod::Head] {
        let url = case.ok("redirect_url", driver.redirect_url(&case.path("file"), method).await);
        if let Some(url) = url
            && !matches!(url.scheme(), "http" | "https")
        {
            case.fail(format!("redirect URL with scheme {}: {url}", url.scheme()));
        }
    }
    match driver.redirect_url("relative", RedirectMethod::Get).await {
        Err(Error::InvalidPath { .. }) => {}
        other => case.fail(format!("redirect_url of an invalid path: {other:?}")),
    }
    case.finish().await;
}
