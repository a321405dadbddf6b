//! Durability you can check: a push to the filesystem backend, recorded under `strace -f`,
//! makes every rename of durable content (blobs, links) durable before the push has its
//! answer: the target's folder is synced after the rename, and so is the folder holding each
//! folder created for it. Scratch state (an upload's start time and hash states) may skip
//! the syncs, as the storage contract lets it.
//!
//! The test runs itself as the pushing child under strace (`WHARF_DURABILITY_ROOT` set),
//! then reads the trace.
#![allow(clippy::print_stderr, reason = "a skipped test says so, and why")]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream;
use wharf_oci::Digest;
use wharf_registry::{ManifestReference, Registry, RegistryOptions};
use wharf_storage::FilesystemDriver;

const CHILD_ROOT: &str = "WHARF_DURABILITY_ROOT";
/// A path the child looks up once its push has its answer: where the trace's "before" ends.
const ANSWERED: &str = "PUSH-ANSWERED";

/// One system call of the trace that matters here.
#[derive(Debug)]
enum Call {
    Mkdir(PathBuf),
    Rename(PathBuf),
    Fsync(PathBuf),
    Answered,
}

/// Reads `strace -f -y` lines: `PID name(args) = result`, successful calls only.
fn parse(trace: &str) -> Vec<Call> {
    let quoted = |args: &str| -> Vec<String> { args.split('"').skip(1).step_by(2).map(str::to_owned).collect() };
    let mut calls = Vec::new();
    // A call another thread interrupted comes in two lines: `name(args <unfinished ...>`,
    // then `<... name resumed>rest) = result`.
    let mut unfinished: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    for line in trace.lines() {
        let Some((pid, call)) = line.split_once(' ') else { continue };
        let call = call.trim_start();
        if let Some(head) = call.strip_suffix("<unfinished ...>") {
            unfinished.insert(pid, head.to_owned());
            continue;
        }
        let joined;
        let call = match call.strip_prefix("<... ").and_then(|c| c.split_once(" resumed>")) {
            Some((_, tail)) => {
                let Some(head) = unfinished.remove(pid) else { continue };
                joined = format!("{head}{tail}");
                joined.as_str()
            }
            None => call,
        };
        let Some((name, rest)) = call.split_once('(') else { continue };
        // The marker is looked up and not found: that call counts whatever it answered.
        if matches!(name, "newfstatat" | "statx") && rest.contains(ANSWERED) {
            calls.push(Call::Answered);
            continue;
        }
        if rest.contains("= -1") {
            continue;
        }
        match name {
            "mkdir" | "mkdirat" => calls.extend(quoted(rest).into_iter().next().map(|p| Call::Mkdir(p.into()))),
            "rename" | "renameat" | "renameat2" => {
                calls.extend(quoted(rest).into_iter().nth(1).map(|p| Call::Rename(p.into())));
            }
            "fsync" | "fdatasync" => {
                if let (Some(start), Some(end)) = (rest.find('<'), rest.find('>')) {
                    calls.push(Call::Fsync(PathBuf::from(&rest[start + 1..end])));
                }
            }
            _ => {}
        }
    }
    calls
}

fn is_durable_content(root: &Path, target: &Path) -> bool {
    let relative = target.strip_prefix(root).unwrap_or(target).to_string_lossy().into_owned();
    !relative.starts_with(".wharf+staging") && !relative.contains("/_uploads/")
}

async fn push(root: &Path) {
    let registry = Registry::new(Arc::new(FilesystemDriver::new(root).unwrap()), RegistryOptions::default());
    let repository = registry.repository(&"team/app".parse().unwrap());
    let layer = Bytes::from_static(b"a layer that must survive a power loss");
    let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let (layer_digest, config_digest) = (Digest::sha256(&layer), Digest::sha256(&config));
    // A blob in two requests (an upload resumed), another in one.
    let upload = repository.start_upload().await.unwrap();
    repository.append_upload(&upload.id, Some(0), stream::iter(vec![Ok(layer.slice(..10))])).await.unwrap();
    let rest = stream::iter(vec![Ok(layer.slice(10..))]);
    repository.finish_upload(&upload.id, &layer_digest, Some(rest)).await.unwrap();
    repository.put_blob(&config_digest, stream::iter(vec![Ok(config.clone())])).await.unwrap();
    let manifest = common::image_manifest(&config_digest, config.len(), &[(&layer_digest, layer.len())]);
    let tag = ManifestReference::Tag("v1".parse().unwrap());
    repository.put_manifest(&tag, Bytes::from(manifest), None).await.unwrap();
    let _ = std::fs::metadata(root.join(ANSWERED));
}

#[test]
fn a_filesystem_push_is_durable_before_its_answer() {
    if let Ok(root) = std::env::var(CHILD_ROOT) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(push(Path::new(&root)));
        return;
    }
    if !wharf_testing::peers::has_peer("strace", "a_filesystem_push_is_durable_before_its_answer") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap().join("root");
    let trace = dir.path().join("trace");
    let status = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=mkdir,mkdirat,rename,renameat,renameat2,fsync,fdatasync,newfstatat,statx",
        ])
        .arg("-o")
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args(["a_filesystem_push_is_durable_before_its_answer", "--exact", "--test-threads=1"])
        .env(CHILD_ROOT, &root)
        .status()
        .unwrap();
    assert!(status.success(), "the traced push failed");
    let calls = parse(&std::fs::read_to_string(&trace).unwrap());
    let answered = calls.iter().position(|c| matches!(c, Call::Answered)).expect("the push never answered");
    let mut created: Vec<(usize, PathBuf)> = Vec::new();
    let mut checked = 0;
    for (at, call) in calls[..answered].iter().enumerate() {
        match call {
            // The root is the operator's (the driver creates it once, when it starts).
            Call::Mkdir(dir) if dir.starts_with(&root) && *dir != root => created.push((at, dir.clone())),
            Call::Rename(target) if target.starts_with(&root) && is_durable_content(&root, target) => {
                let synced: HashSet<&PathBuf> = calls[at..answered]
                    .iter()
                    .filter_map(|c| if let Call::Fsync(p) = c { Some(p) } else { None })
                    .collect();
                let folder = target.parent().unwrap().to_path_buf();
                assert!(synced.contains(&folder), "{} renamed, its folder never synced", target.display());
                // Each folder on its way: synced into its parent after it was made (by this
                // rename's write or an earlier one's), before the answer.
                for (made, dir) in created.iter().filter(|(when, dir)| *when < at && target.starts_with(dir)) {
                    let holder = dir.parent().unwrap().to_path_buf();
                    let synced_since =
                        calls[*made..answered].iter().any(|c| matches!(c, Call::Fsync(p) if *p == holder));
                    assert!(
                        synced_since,
                        "{} was created for {}, and {} was never synced",
                        dir.display(),
                        target.display(),
                        holder.display()
                    );
                }
                checked += 1;
            }
            _ => {}
        }
    }
    // Two blobs, their links, the manifest's revision and its tag links.
    assert!(checked >= 6, "only {checked} durable renames before the answer: the trace shows too little");
    assert!(
        created.iter().any(|(_, dir)| dir.ends_with("blobs")),
        "the push created no blob folders: the test shows nothing about created folders"
    );
}
