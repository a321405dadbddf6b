//! Storage throughput: `put_content`/`get_content` and streaming write/read, on the memory
//! and filesystem backends, for 1 KiB, 1 MiB and 64 MiB.
//!
//! `cargo bench --bench storage`; `scripts/bench-storage` runs it next to `dd` and `cat` on
//! the same disk. The filesystem store lives under `target/`, on the disk of the checkout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::TryStreamExt;
use wharf::storage::{FilesystemDriver, MemoryDriver, StorageDriver};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const SIZES: [(usize, &str); 3] = [(KIB, "1 KiB"), (MIB, "1 MiB"), (64 * MIB, "64 MiB")];
/// Streams are written in chunks of this size, as an upload's request body arrives.
const CHUNK: usize = MIB;

fn drivers() -> Vec<(&'static str, Arc<dyn StorageDriver>, Option<tempfile::TempDir>)> {
    std::fs::create_dir_all("target").expect("target/ exists in a checkout");
    let dir = tempfile::tempdir_in("target").expect("a temporary folder under target/");
    let fs = FilesystemDriver::new(dir.path()).expect("a filesystem store");
    vec![("memory", Arc::new(MemoryDriver::new()), None), ("fs", Arc::new(fs), Some(dir))]
}

fn storage(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for (name, driver, _dir) in drivers() {
        let mut group = c.benchmark_group(format!("storage/{name}"));
        for (size, label) in SIZES {
            let data = Bytes::from((0..size).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>());
            group.throughput(Throughput::Bytes(size as u64));
            if size >= 64 * MIB {
                group.sample_size(10).measurement_time(Duration::from_secs(10));
            } else {
                group.sample_size(30).measurement_time(Duration::from_secs(3));
            }
            let path = format!("/bench/{label}").replace(' ', "-");
            // A request body arrives as a sequence of fresh, cache-warm buffers: streams repeat
            // one chunk, as `dd bs=1M` repeats its buffer.
            let chunk = data.slice(..size.min(CHUNK));

            // Writes go to a fresh path each time, as uploads do; the file is deleted outside
            // the timed part (as `dd` is timed once its output file is open).
            group.bench_with_input(BenchmarkId::new("put_content", label), &data, |b, data| {
                b.to_async(&runtime).iter_custom(|iterations| {
                    timed_writes(driver.clone(), iterations, {
                        let data = data.clone();
                        move |driver, path| {
                            let data = data.clone();
                            async move { driver.put_content(&path, data).await.unwrap() }
                        }
                    })
                });
            });
            group.bench_with_input(BenchmarkId::new("stream_write", label), &chunk, |b, chunk| {
                b.to_async(&runtime).iter_custom(|iterations| {
                    timed_writes(driver.clone(), iterations, {
                        let chunk = chunk.clone();
                        move |driver, path| {
                            let chunk = chunk.clone();
                            async move {
                                let mut writer = driver.writer(&path, false).await.unwrap();
                                for _ in 0..size / chunk.len() {
                                    writer.write(chunk.clone()).await.unwrap();
                                }
                                writer.commit().await.unwrap();
                            }
                        }
                    })
                });
            });

            runtime.block_on(driver.put_content(&path, data.clone())).unwrap();
            group.bench_with_input(BenchmarkId::new("get_content", label), &data, |b, _| {
                b.to_async(&runtime).iter(|| driver.get_content(&path));
            });
            group.bench_with_input(BenchmarkId::new("stream_read", label), &data, |b, _| {
                b.to_async(&runtime).iter(|| async {
                    let stream = driver.reader(&path, 0).await.unwrap();
                    let read: usize = stream.try_fold(0, |n, chunk| async move { Ok(n + chunk.len()) }).await.unwrap();
                    assert_eq!(read, size);
                });
            });
        }
        group.finish();
    }
}

/// Runs `write` for `iterations` fresh paths and returns the time spent writing only.
async fn timed_writes<F, Fut>(driver: Arc<dyn StorageDriver>, iterations: u64, write: F) -> Duration
where
    F: Fn(Arc<dyn StorageDriver>, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut total = Duration::ZERO;
    for i in 0..iterations {
        let path = format!("/bench/fresh/{i}");
        let started = Instant::now();
        write(driver.clone(), path.clone()).await;
        total += started.elapsed();
        driver.delete(&path).await.unwrap();
    }
    total
}

criterion_group!(benches, storage);
criterion_main!(benches);
