//! Throughput of the streaming `Digester`, sha256 and sha512, on 1 MiB and 64 MiB buffers.
//!
//! `cargo bench --bench digest`; `scripts/bench-digest` runs it next to `openssl speed`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wharf::oci::{Algorithm, Digester};

const MIB: usize = 1024 * 1024;

fn digester(c: &mut Criterion) {
    let mut group = c.benchmark_group("digester");
    for size in [MIB, 64 * MIB] {
        // Not all zeros, so no hardware shortcut can flatter the figure.
        let data: Vec<u8> = (0..size).map(|i| (i.wrapping_mul(31) >> 3) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        if size > MIB {
            group.sample_size(10).measurement_time(Duration::from_secs(8));
        }
        for algorithm in Algorithm::ALL {
            let id = BenchmarkId::new(algorithm.as_str(), format!("{} MiB", size / MIB));
            group.bench_with_input(id, &data, |b, data| {
                b.iter(|| {
                    let mut digester = Digester::new(algorithm);
                    // Fed in 1 MiB chunks, as an upload arrives.
                    for chunk in data.chunks(MIB) {
                        digester.update(chunk);
                    }
                    black_box(digester.finalize())
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, digester);
criterion_main!(benches);
