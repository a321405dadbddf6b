//! The in-memory backend against the driver suite.

use bytes::Bytes;
use wharf_storage::{MemoryDriver, StorageDriver, StorageDriverExt, testsuite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_suite() {
    testsuite::run_all(&MemoryDriver::new()).await;
}

/// A memory store cannot outlive its process; a new handle to the same store stands in for
/// the restart.
#[tokio::test]
async fn resumes_a_write_from_a_new_handle() {
    let driver = MemoryDriver::new();
    let data = testsuite::test_data(1, 9 << 20);
    let mut writer = driver.writer("/uploads/u1/data", false).await.unwrap();
    writer.write(data.slice(..7 << 20)).await.unwrap();
    writer.close().await.unwrap();
    let restarted: Box<dyn StorageDriver> = Box::new(driver.clone());
    drop(driver);
    let mut writer = restarted.writer("/uploads/u1/data", true).await.unwrap();
    assert_eq!(writer.size(), 7 << 20);
    writer.write(data.slice(7 << 20..)).await.unwrap();
    writer.commit().await.unwrap();
    assert_eq!(restarted.read_all("/uploads/u1/data", 0).await.unwrap(), data);
    assert_eq!(restarted.get_content("/uploads/u1/data").await.unwrap(), Bytes::from(data.to_vec()));
}
