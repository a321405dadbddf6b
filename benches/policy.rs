//! Planning a retention policy over a generated inventory: `cargo bench --bench policy --
//! [repositories] [tags per repository]` (default 1,000 × 1,000). Prints the time to plan
//! (the median of three), and the process's peak RSS before and after planning.

#![allow(clippy::print_stdout, reason = "a benchmark prints its measurements")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wharf::oci::Digest;
use wharf::policy::{BlobRecord, InUse, Inventory, ManifestRecord, Policy, RepositoryInventory, TagRecord, Timestamp};

const POLICY: &str = "version: 1
rules:
  - name: releases
    tags: { semver: '>=1.0.0' }
    keep: { newest: 3, per: major, by: version }
  - name: dev-builds
    tags: { glob: '*-dev' }
    delete: { pushed_older_than: 30d }
  - name: recently-used
    keep: { pulled_within: 14d }
untagged: { delete_older_than: 1d }
limits: { max_delete_fraction: 0.9, grace: 1h }
";

/// Peak resident memory of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn generate(repositories: usize, tags: usize, now: Timestamp) -> Inventory {
    let base = BlobRecord { digest: Digest::sha256(b"base layer"), size: 30 << 20 };
    let day = |n: u64| now.minus(Duration::from_secs(n * 86_400));
    let mut inventory = Inventory::default();
    for r in 0..repositories {
        let mut repository = RepositoryInventory { name: format!("team{}/app{r}", r % 10), ..Default::default() };
        for t in 0..tags {
            let digest = Digest::sha256(format!("{r}/{t}").as_bytes());
            let age = (t % 400) as u64;
            repository.manifests.push(ManifestRecord {
                digest: digest.clone(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                artifact_type: None,
                size: 1200,
                blobs: vec![
                    base.clone(),
                    BlobRecord { digest: Digest::sha256(format!("layer {r}/{t}").as_bytes()), size: 2 << 20 },
                ],
                pushed: day(age),
                pulled: (t % 7 == 0).then(|| day(age / 10)),
                subject: None,
                children: Vec::new(),
                annotations: BTreeMap::new(),
            });
            // Releases across three majors, dev builds, and feature tags.
            let name = match t % 3 {
                0 => format!("v{}.{}.{}", t % 3 + t / 300, (t / 10) % 10, t % 10),
                1 => format!("feature-{t}-dev"),
                _ => format!("build-{t}"),
            };
            repository.tags.push(TagRecord { name, digest, pushed: day(age), pulled: None });
        }
        inventory.repositories.push(repository);
    }
    inventory
}

fn main() {
    let numbers: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (repositories, tags) = (numbers.first().copied().unwrap_or(1000), numbers.get(1).copied().unwrap_or(1000));
    let now: Timestamp = "2026-12-07T00:00:00Z".parse().expect("a time");
    let policy = Policy::from_yaml(POLICY).expect("the policy");
    let inventory = generate(repositories, tags, now);
    let before = peak_rss_mib();
    let mut times = Vec::new();
    let mut deleted = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let plan = wharf::policy::plan(&inventory, &policy, &InUse::default(), now);
        times.push(started.elapsed());
        deleted = plan.summary.tags_deleted;
        drop(plan);
    }
    times.sort();
    println!(
        "plan of {repositories} repositories x {tags} tags: {:.3} s (median of 3; {deleted} tags deleted); peak RSS {before:.0} MiB with the inventory, {:.0} MiB after planning",
        times[1].as_secs_f64(),
        peak_rss_mib()
    );
}
