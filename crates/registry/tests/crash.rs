//! Crash safety: a writer process pushing through the registry is killed with SIGKILL at
//! random moments (mid-chunk, around commits, mid-manifest); after each kill a fresh registry
//! finds no partial blob or manifest, every blob matches its digest, and every interrupted
//! upload either resumes to the right blob or is reported as abandoned.
//!
//! The test binary is its own writer: run with `WHARF_CRASH_WRITER_ROOT` set, it writes until
//! killed. Every size, chunk and kill delay comes from one seed, printed at the start;
//! `WHARF_SEED=<seed>` runs the same ones again (where the kills land still depends on the
//! machine's timing).
#![allow(clippy::print_stdout, reason = "a test without the harness reports its own result")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{TryStreamExt, stream};
use wharf_oci::{Digest, Manifest, media_type};
use wharf_registry::{Error, ManifestReference, Registry, RegistryOptions, layout};
use wharf_storage::{FileInfo, FilesystemDriver};

const WRITER_ROOT: &str = "WHARF_CRASH_WRITER_ROOT";
const SEED: &str = "WHARF_SEED";
const REPOSITORY: &str = "crash/app";
const ROUNDS: usize = 10;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let seed = match std::env::var(SEED) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{SEED}={text:?} is not a number")),
        Err(_) => SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    if let Ok(root) = std::env::var(WRITER_ROOT) {
        runtime.block_on(write_until_killed(PathBuf::from(root), seed));
        return;
    }
    println!("crash test with {SEED}={seed}");
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let mut totals = Totals::default();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(WRITER_ROOT, &root)
            .env(SEED, random(seed, round as u64).to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(30 + random(seed, ROUNDS as u64 + round as u64) % 400);
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        runtime.block_on(check(&root, &mut totals));
    }
    assert!(totals.blobs > 0, "the writer never stored a blob: nothing was tested");
    println!(
        "crash safety after {ROUNDS} kills: {} blobs and {} manifests intact, {} uploads resumed, {} abandoned",
        totals.blobs, totals.manifests, totals.resumed, totals.abandoned
    );
}

/// The `n`th number drawn from `seed`.
fn random(seed: u64, n: u64) -> u64 {
    let mut state = seed ^ n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    state
}

/// Deterministic content of `len` bytes for `seed`.
fn content(seed: u64, len: usize) -> Bytes {
    wharf_storage::testsuite::test_data(seed, len)
}

/// The lease a killed writer leaves on its upload ends this long after its last renewal.
const LEASE_TERM: Duration = Duration::from_millis(300);

fn registry(root: &Path) -> Registry {
    let options = RegistryOptions::default().with_upload_lease_term(LEASE_TERM);
    Registry::new(Arc::new(FilesystemDriver::new(root).unwrap()), options)
}

fn journal(root: &Path) -> PathBuf {
    root.with_extension("journal")
}

/// The writer: uploads blobs in chunks, pushes manifests, forever. Before an upload receives
/// anything, its id and content seed go to a journal, so the checker can resume it.
async fn write_until_killed(root: PathBuf, seed: u64) {
    let registry = registry(&root);
    let repository = registry.repository(&REPOSITORY.parse().unwrap());
    let mut journal = std::fs::OpenOptions::new().create(true).append(true).open(journal(&root)).unwrap();
    for i in 0u64.. {
        let seed = random(seed, i);
        let len = (seed % (3 << 20)) as usize + 1;
        let data = content(seed, len);
        let digest = Digest::sha256(&data);
        let upload = repository.start_upload().await.unwrap();
        writeln!(journal, "{} {seed} {len}", upload.id).unwrap();
        journal.sync_all().unwrap();
        let mut at = 0;
        while at < len {
            let end = (at + 200_000 + (random(seed, at as u64) % 800_000) as usize).min(len);
            if end == len {
                let last = stream::iter(vec![Ok(data.slice(at..end))]);
                repository.finish_upload(&upload.id, &digest, Some(last)).await.unwrap();
            } else {
                let chunk = stream::iter(vec![Ok(data.slice(at..end))]);
                repository.append_upload(&upload.id, Some(at as u64), chunk).await.unwrap();
            }
            at = end;
        }
        let config = Bytes::from(format!(r#"{{"round":{i},"seed":{seed}}}"#));
        let config_digest = Digest::sha256(&config);
        repository.put_blob(&config_digest, stream::iter(vec![Ok(config.clone())])).await.unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{digest}","size":{len}}}]}}"#,
            media_type::OCI_IMAGE_MANIFEST,
            media_type::OCI_IMAGE_CONFIG,
            config.len(),
            media_type::OCI_LAYER_TAR
        );
        repository
            .put_manifest(&ManifestReference::Tag(format!("t{seed}").parse().unwrap()), Bytes::from(manifest), None)
            .await
            .unwrap();
    }
}

#[derive(Default)]
struct Totals {
    blobs: usize,
    manifests: usize,
    resumed: usize,
    abandoned: usize,
}

/// What a fresh process finds after a kill.
async fn check(root: &Path, totals: &mut Totals) {
    let registry = registry(root);
    let driver = registry.driver().clone();
    let repository = registry.repository(&REPOSITORY.parse().unwrap());

    // Interrupted uploads resume to the right blob, or say they cannot.
    let entries = std::fs::read_to_string(journal(root)).unwrap_or_default();
    for line in entries.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [id, seed, len] = fields[..] else { continue };
        let (seed, len): (u64, usize) = (seed.parse().unwrap(), len.parse().unwrap());
        let status = match repository.upload_status(id).await {
            Ok(status) => status,
            Err(Error::UploadUnknown { .. }) => continue, // finished before the kill
            Err(e) => panic!("status of upload {id}: {e}"),
        };
        let data = content(seed, len);
        // The killed writer's lease holds the upload until its term ends.
        let deadline = std::time::Instant::now() + LEASE_TERM * 10;
        let finished = loop {
            let rest = stream::iter(vec![Ok(data.slice(status.size as usize..))]);
            match repository.finish_upload(id, &Digest::sha256(&data), Some(rest)).await {
                Err(Error::UploadInUse { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(LEASE_TERM / 10).await;
                }
                finished => break finished,
            }
        };
        match finished {
            Ok(blob) => {
                assert_eq!(blob.size, len as u64);
                totals.resumed += 1;
            }
            Err(Error::UploadAbandoned { .. }) => {
                repository.cancel_upload(id).await.unwrap();
                totals.abandoned += 1;
            }
            // The kill lost bytes the upload's end was written over (a closed write need not
            // be durable): the stored bytes were hashed, and refused.
            Err(Error::DigestMismatch { .. }) => totals.abandoned += 1,
            Err(e) => panic!("resuming upload {id} at {} of {len} bytes: {e}", status.size),
        }
    }

    // Every visible blob is whole.
    let blobs: Vec<FileInfo> = driver.walk(&layout::blobs(), None).try_collect().await.unwrap();
    for blob in blobs.iter().filter(|b| b.path.ends_with("/data")) {
        let mut parts = blob.path.rsplit('/').skip(1);
        let (hex, _, algorithm) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
        let expected: Digest = format!("{algorithm}:{hex}").parse().unwrap();
        let data = driver.get_content(&blob.path).await.unwrap();
        assert_eq!(Digest::sha256(&data), expected, "{} is not whole", blob.path);
    }
    totals.blobs = blobs.len();

    // Every visible manifest is whole and has what it references.
    let tags = repository.tags(None, None).await.unwrap();
    for tag in &tags {
        let stored = repository.get_manifest(&ManifestReference::Tag(tag.parse().unwrap())).await.unwrap();
        assert_eq!(Digest::sha256(&stored.content), stored.digest);
        let manifest = Manifest::parse(stored.content, None).unwrap();
        for reference in manifest.references() {
            let info = repository.stat_blob(&reference.digest).await.unwrap();
            assert_eq!(info.size, reference.size);
        }
    }
    totals.manifests = tags.len();
}
