//! The filesystem backend against the driver suite, and what only it has: a layout on disk
//! that Distribution shares, durability across a restart, and hidden staging.

use std::path::Path;

use bytes::Bytes;
use futures::TryStreamExt;
use wharf_storage::{
    Error, FileInfo, FilesystemConfig, FilesystemDriver, StorageConfig, StorageDriver, StorageDriverExt, testsuite,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FilesystemDriver::new(dir.path()).unwrap();
    testsuite::run_all(&driver).await;
    assert_only_staging_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_suite_with_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FilesystemDriver::with_max_threads(dir.path(), 1).unwrap();
    testsuite::run_all_with(&driver, &testsuite::SuiteOptions::default().with_large_size(4 << 20)).await;
}

/// On a runtime with one thread, where short calls cannot run in place, every call goes to the
/// blocking pool.
#[tokio::test(flavor = "current_thread")]
async fn passes_the_suite_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FilesystemDriver::new(dir.path()).unwrap();
    testsuite::run_all_with(&driver, &testsuite::SuiteOptions::default().with_large_size(4 << 20)).await;
    assert_only_staging_left(dir.path());
}

/// What the suite leaves on disk: at most the empty staging folders.
fn assert_only_staging_left(root: &Path) {
    let left: Vec<_> = walkdir(root).into_iter().filter(|p| p.is_file()).collect();
    assert!(left.is_empty(), "files left on disk: {left:?}");
    let top: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(top.iter().all(|name| name == ".wharf+staging"), "left at the root: {top:?}");
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        }
        out.push(path);
    }
    out
}

#[tokio::test]
async fn resumes_after_restart_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig::Filesystem(FilesystemConfig::new(dir.path()));
    let data = testsuite::test_data(2, 9 << 20);
    let path = "/docker/registry/v2/repositories/app/_uploads/u1/data";
    {
        let driver = config.build().await.unwrap();
        let mut writer = driver.writer(path, false).await.unwrap();
        writer.write(data.slice(..7 << 20)).await.unwrap();
        writer.close().await.unwrap();
    }
    let driver = config.build().await.unwrap();
    let mut writer = driver.writer(path, true).await.unwrap();
    assert_eq!(writer.size(), 7 << 20);
    writer.write(data.slice(7 << 20..)).await.unwrap();
    writer.commit().await.unwrap();
    assert_eq!(driver.read_all(path, 0).await.unwrap(), data);
}

#[tokio::test]
async fn files_sit_where_distribution_puts_them() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FilesystemDriver::new(dir.path()).unwrap();
    let link = "/docker/registry/v2/repositories/app/_layers/sha256/abc/link";
    driver.put_content(link, Bytes::from_static(b"sha256:abc")).await.unwrap();
    let on_disk = dir.path().join("docker/registry/v2/repositories/app/_layers/sha256/abc/link");
    assert_eq!(std::fs::read(on_disk).unwrap(), b"sha256:abc");

    // And what another program wrote there is read as it is.
    let foreign = dir.path().join("docker/registry/v2/blobs/sha256/ab/abc/data");
    std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    std::fs::write(&foreign, b"blob").unwrap();
    assert_eq!(driver.get_content("/docker/registry/v2/blobs/sha256/ab/abc/data").await.unwrap(), "blob");
}

#[tokio::test]
async fn staging_is_invisible_and_unaddressable() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FilesystemDriver::new(dir.path()).unwrap();
    let mut writer = driver.writer("/a/staged", false).await.unwrap();
    writer.write(Bytes::from_static(b"pending")).await.unwrap();
    writer.close().await.unwrap();
    driver.put_content("/b", Bytes::from_static(b"x")).await.unwrap();
    assert!(dir.path().join(".wharf+staging/files/a/staged").exists());
    assert_eq!(driver.list("/").await.unwrap(), ["/b"]);
    let walked: Vec<FileInfo> = driver.walk("/", None).try_collect().await.unwrap();
    assert_eq!(walked.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["/b"]);
    assert!(matches!(driver.get_content("/.wharf+staging/files/a/staged").await, Err(Error::InvalidPath { .. })));
    // Files with names a path cannot have (lost+found, editor backups) are skipped too.
    std::fs::write(dir.path().join("lost+found"), b"").unwrap();
    assert_eq!(driver.list("/").await.unwrap(), ["/b"]);
}

/// The staging area keeps the folders above a finished write (a repository's `_uploads`), so
/// the next write does not create them again; they never count as content.
#[tokio::test]
async fn staging_keeps_folders_but_they_hold_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FilesystemDriver::new(dir.path()).unwrap();
    let mut writer = driver.writer("/repo/_uploads/one/data", false).await.unwrap();
    writer.write(Bytes::from_static(b"blob")).await.unwrap();
    assert!(writer.commit_to("/blobs/ab/data").await.unwrap());
    assert!(dir.path().join(".wharf+staging/files/repo/_uploads").is_dir());
    assert!(!dir.path().join(".wharf+staging/files/repo/_uploads/one").exists());
    // A kept folder is no staged write: deleting it finds nothing, resuming it finds nothing.
    assert!(matches!(driver.delete("/repo").await, Err(Error::NotFound { .. })));
    let mut writer = driver.writer("/x/y/z", false).await.unwrap();
    writer.write(Bytes::from_static(b"gone")).await.unwrap();
    writer.cancel().await.unwrap();
    assert!(matches!(driver.writer("/x/y", true).await, Err(Error::NotFound { .. })));
    // A file may go where a kept folder is.
    let mut writer = driver.writer("/x/y", false).await.unwrap();
    writer.write(Bytes::from_static(b"file")).await.unwrap();
    writer.commit().await.unwrap();
    assert_eq!(driver.get_content("/x/y").await.unwrap(), "file");
    assert_eq!(driver.get_content("/blobs/ab/data").await.unwrap(), "blob");
}

/// Read buffers are reused: a short read after long ones shows its own bytes only.
#[tokio::test]
async fn reused_read_buffers_show_only_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FilesystemDriver::new(dir.path()).unwrap();
    let long: Vec<u8> = (0..5 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    driver.put_content("/long", Bytes::from(long.clone())).await.unwrap();
    driver.put_content("/short", Bytes::from_static(b"short")).await.unwrap();
    for _ in 0..3 {
        assert_eq!(driver.read_all("/long", 0).await.unwrap(), long);
        assert_eq!(driver.read_all("/short", 0).await.unwrap(), "short");
        assert_eq!(driver.read_all("/long", 1024 * 1024 + 3).await.unwrap(), long[1024 * 1024 + 3..]);
    }
}

/// Many small chunks (as a chunked request body brings) are written together: thousands of
/// them, across several flushes and a close and resume, land in order.
#[tokio::test]
async fn small_chunks_land_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FilesystemDriver::new(dir.path()).unwrap();
    let mut expected = Vec::new();
    let mut writer = driver.writer("/small", false).await.unwrap();
    for i in 0..5000usize {
        let chunk: Vec<u8> = (0..(i * 7919) % 701 + 1).map(|j| (i + j) as u8).collect();
        expected.extend_from_slice(&chunk);
        writer.write(Bytes::from(chunk)).await.unwrap();
        if i == 2500 {
            writer.close().await.unwrap();
            writer = driver.writer("/small", true).await.unwrap();
        }
    }
    assert_eq!(writer.size(), expected.len() as u64);
    writer.commit().await.unwrap();
    assert!(driver.read_all("/small", 0).await.unwrap() == expected, "the stored bytes differ from those written");
}

#[tokio::test]
async fn emptied_directories_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FilesystemDriver::new(dir.path()).unwrap();
    driver.put_content("/a/b/c/file", Bytes::from_static(b"x")).await.unwrap();
    driver.put_content("/a/keep", Bytes::from_static(b"x")).await.unwrap();
    driver.delete("/a/b/c/file").await.unwrap();
    assert!(!dir.path().join("a/b").exists());
    assert!(dir.path().join("a/keep").exists());
    driver.rename("/a/keep", "/z/moved").await.unwrap();
    assert!(!dir.path().join("a").exists());
}

#[tokio::test]
async fn a_root_that_cannot_be_created_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = FilesystemDriver::new(file.join("root")).unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(FilesystemDriver::with_max_threads(dir.path(), 0).is_err());
}

/// A file that shrinks while it is read (another tool truncates it) ends its stream with an
/// error, not early as if it were whole: a reader never takes part of a file for all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_shrinks_mid_read_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FilesystemDriver::new(dir.path()).unwrap();
    driver.put_content("/big", testsuite::test_data(9, 16 << 20)).await.unwrap();
    let mut stream = driver.reader("/big", 0).await.unwrap();
    let first = stream.try_next().await.unwrap().expect("a first chunk");
    std::fs::OpenOptions::new().write(true).open(dir.path().join("big")).unwrap().set_len(2 << 20).unwrap();
    let mut read = first.len();
    let ended = loop {
        match stream.try_next().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let err = ended.expect_err("the stream ended quietly");
    assert!(read < 16 << 20, "read the whole file although it shrank");
    assert!(err.to_string().contains("short"), "{err}");
}

/// A folder of the root that is a symlink to another filesystem (`blobs` on a bigger disk, as
/// the walk allows): writes, commits, conditional creates and renames into it work although
/// staging is on the root's filesystem, and leave nothing of their own in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_on_another_filesystem() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let other = match tempfile::tempdir_in("/dev/shm") {
        Ok(other) if other.path().metadata().unwrap().dev() != dir.path().metadata().unwrap().dev() => other,
        found => {
            let _ = wharf_testing::skip(
                "a_folder_on_another_filesystem",
                &format!("/dev/shm is no filesystem of its own here ({found:?})"),
            );
            return;
        }
    };
    std::fs::create_dir_all(dir.path().join("docker/registry/v2")).unwrap();
    std::os::unix::fs::symlink(other.path(), dir.path().join("docker/registry/v2/blobs")).unwrap();
    let driver = FilesystemDriver::new(dir.path()).unwrap();
    let at = |name: &str| format!("/docker/registry/v2/blobs/sha256/ab/{name}/data");

    driver.put_content(&at("put"), Bytes::from_static(b"put")).await.unwrap();
    driver.put_scratch(&at("scratch"), Bytes::from_static(b"scratch")).await.unwrap();
    let created = driver
        .put_if(
            &at("created"),
            Bytes::from_static(b"created"),
            wharf_storage::Precondition::Absent,
            wharf_storage::Durability::Durable,
        )
        .await
        .unwrap();
    let again = driver
        .put_if(
            &at("created"),
            Bytes::from_static(b"again"),
            wharf_storage::Precondition::Absent,
            wharf_storage::Durability::Durable,
        )
        .await;
    assert!(matches!(again, Err(Error::AlreadyExists { .. })), "{again:?}");
    driver
        .put_if(
            &at("created"),
            Bytes::from_static(b"updated"),
            wharf_storage::Precondition::Matches(created),
            wharf_storage::Durability::Durable,
        )
        .await
        .unwrap();
    let data = testsuite::test_data(7, 3 << 20);
    let mut writer = driver.writer(&at("written"), false).await.unwrap();
    writer.write(data.clone()).await.unwrap();
    writer.commit().await.unwrap();
    let mut writer = driver.writer("/docker/registry/v2/repositories/app/_uploads/u/data", false).await.unwrap();
    writer.write(data.clone()).await.unwrap();
    assert!(writer.commit_to(&at("committed")).await.unwrap() || driver.exists(&at("committed")).await.unwrap());
    driver.put_content("/outside", Bytes::from_static(b"moved")).await.unwrap();
    driver.rename("/outside", &at("renamed")).await.unwrap();
    assert!(!driver.exists("/outside").await.unwrap());
    driver.put_content("/outside-1", Bytes::from_static(b"bulk")).await.unwrap();
    let moved = driver.rename_many(vec![("/outside-1".into(), at("bulk"))]).await.unwrap();
    assert_eq!(moved, [true]);

    for (name, content) in [
        ("put", &b"put"[..]),
        ("scratch", b"scratch"),
        ("created", b"updated"),
        ("written", &data[..]),
        ("committed", &data[..]),
        ("renamed", b"moved"),
        ("bulk", b"bulk"),
    ] {
        assert_eq!(driver.get_content(&at(name)).await.unwrap(), content, "{name}");
    }
    let walked: Vec<String> =
        driver.walk("/docker/registry/v2/blobs", None).map_ok(|f| f.path).try_collect().await.unwrap();
    assert_eq!(walked.len(), 7, "{walked:?}");
    // Nothing but the files themselves on the other disk.
    let left: Vec<_> = walkdir(other.path()).into_iter().filter(|p| p.is_file()).collect();
    assert_eq!(left.len(), 7, "{left:?}");
}
