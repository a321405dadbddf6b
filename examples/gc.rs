//! `cargo run --release --example gc -- config.yml [--dry-run] [--delete-untagged] [--grace 1h]`
//!
//! Collects garbage in the registry that Distribution's `config.yml` describes (its
//! `storage:` section, with `REGISTRY_*` overrides, as the registry example reads it), and
//! prints what was deleted. Unlike `registry garbage-collect`, it may run while the
//! registry serves pushes, and several may be started at once (from cron on each host, say):
//! one collects, the others exit with status 75 (`EX_TEMPFAIL`) saying another collection
//! is running.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its report")]

use std::time::Duration;

use wharf::registry::{GcOptions, Registry};
use wharf::server::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match collect().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gc: {e}");
            let busy = matches!(e.downcast_ref(), Some(wharf::registry::Error::CollectionInProgress));
            std::process::ExitCode::from(if busy { 75 } else { 1 })
        }
    }
}

async fn collect() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut options = GcOptions::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dry-run" => options.dry_run = true,
            "--delete-untagged" => options.delete_untagged = true,
            "--delete-orphaned-referrers" => options.delete_orphaned_referrers = true,
            "--grace" => {
                let value = args.next().ok_or("--grace needs a duration, such as 1h or 0s")?;
                options.grace_period = humantime::parse_duration(&value)?;
            }
            _ if path.is_none() && !arg.starts_with("--") => path = Some(arg),
            _ => {
                return Err(format!(
                    "unexpected argument {arg:?}; usage: gc config.yml [--dry-run] [--delete-untagged] [--grace 1h]"
                )
                .into());
            }
        }
    }
    let path = path.ok_or("usage: gc config.yml [--dry-run] [--delete-untagged] [--grace 1h]")?;
    let config = Config::from_file(&path)?;
    let registry = Registry::new(config.storage.build().await?, config.registry.clone());

    let started = std::time::Instant::now();
    let report = registry.collect_garbage(&options).await?;
    let verb = if report.dry_run { "would delete" } else { "deleted" };
    for (repository, digest) in &report.manifests_deleted {
        println!("manifest {repository}@{digest}: {verb}");
    }
    for digest in &report.blobs_deleted {
        println!("blob {digest}: {verb}");
    }
    println!(
        "{} manifests kept, {} blobs in use; {verb} {} manifests and {} blobs ({} bytes); {} blobs put back for pushes meanwhile; {:.2?}",
        report.manifests_kept,
        report.blobs_marked,
        report.manifests_deleted.len(),
        report.blobs_deleted.len(),
        report.bytes_freed,
        report.blobs_restored,
        started.elapsed().max(Duration::ZERO),
    );
    Ok(())
}
