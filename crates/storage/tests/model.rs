//! Random sequences of operations give the same results on each backend as on a plain
//! `BTreeMap` model of the contract.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures::TryStreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use wharf_storage::{Error, MemoryDriver, StorageDriver, StorageDriverExt};

const ROOT: &str = "/model";

#[derive(Debug, Clone)]
enum End {
    Close,
    Commit,
    Cancel,
}

#[derive(Debug, Clone)]
enum Op {
    Put(String, Vec<u8>),
    Get(String),
    Delete(String),
    Rename(String, String),
    Stat(String),
    List(String),
    Walk(String, Option<String>),
    Write { path: String, append: bool, data: Vec<u8>, end: End },
}

fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![Just("a"), Just("b"), Just("a-b"), Just("a.b"), Just("c")];
    prop::collection::vec(segment, 1..4).prop_map(|segments| format!("{ROOT}/{}", segments.join("/")))
}

fn dir() -> impl Strategy<Value = String> {
    prop_oneof![Just(ROOT.to_owned()), path()]
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

fn op() -> impl Strategy<Value = Op> {
    let end = prop_oneof![Just(End::Close), Just(End::Commit), Just(End::Cancel)];
    prop_oneof![
        3 => (path(), data()).prop_map(|(p, d)| Op::Put(p, d)),
        2 => path().prop_map(Op::Get),
        1 => path().prop_map(Op::Delete),
        1 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => dir().prop_map(Op::Stat),
        1 => dir().prop_map(Op::List),
        1 => (dir(), prop::option::of(path())).prop_map(|(d, a)| Op::Walk(d, a)),
        3 => (path(), any::<bool>(), data(), end).prop_map(|(path, append, data, end)| Op::Write { path, append, data, end }),
    ]
}

/// What the contract says, with nothing but maps.
#[derive(Default)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    staged: BTreeMap<String, Vec<u8>>,
}

/// A result reduced to what can be compared across backends.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Content(Vec<u8>),
    Stat { size: u64, is_dir: bool },
    Paths(Vec<String>),
    NotFound,
}

fn below(prefix: &str, path: &str) -> bool {
    path.starts_with(&format!("{prefix}/"))
}

impl Model {
    /// A file at `path` would clash with a directory or a file above it (which a filesystem
    /// cannot hold, and the contract leaves open): such operations are not generated.
    fn clashes(&self, path: &str) -> bool {
        let taken = self.files.keys().chain(self.staged.keys());
        taken.into_iter().any(|other| other != path && (below(other, path) || below(path, other)))
    }

    fn is_dir(&self, dir: &str) -> bool {
        dir == "/" || self.files.keys().any(|f| below(dir, f))
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Put(path, data) => {
                self.files.insert(path.clone(), data.clone());
                Outcome::Done
            }
            Op::Get(path) => self.files.get(path).map_or(Outcome::NotFound, |d| Outcome::Content(d.clone())),
            Op::Delete(path) => {
                let before = self.files.len() + self.staged.len();
                self.files.retain(|f, _| f != path && !below(path, f));
                self.staged.retain(|f, _| f != path && !below(path, f));
                if before == self.files.len() + self.staged.len() { Outcome::NotFound } else { Outcome::Done }
            }
            Op::Rename(from, to) => match self.files.remove(from) {
                Some(data) => {
                    self.files.insert(to.clone(), data);
                    Outcome::Done
                }
                None => Outcome::NotFound,
            },
            Op::Stat(path) => match self.files.get(path) {
                Some(data) => Outcome::Stat { size: data.len() as u64, is_dir: false },
                None if self.is_dir(path) => Outcome::Stat { size: 0, is_dir: true },
                None => Outcome::NotFound,
            },
            Op::List(dir) => {
                let children: BTreeSet<String> = self
                    .files
                    .keys()
                    .filter(|f| below(dir, f))
                    .map(|f| {
                        let rest = &f[dir.len() + 1..];
                        format!("{dir}/{}", rest.split('/').next().unwrap_or_default())
                    })
                    .collect();
                if children.is_empty() { Outcome::NotFound } else { Outcome::Paths(children.into_iter().collect()) }
            }
            Op::Walk(dir, after) => Outcome::Paths(
                self.files
                    .keys()
                    .filter(|f| below(dir, f) && after.as_ref().is_none_or(|a| f.as_str() > a.as_str()))
                    .cloned()
                    .collect(),
            ),
            Op::Write { path, append, data, end } => {
                let mut buffer = if *append {
                    match (self.staged.get(path), self.files.get(path)) {
                        (Some(staged), _) => staged.clone(),
                        (None, Some(file)) if file.is_empty() => Vec::new(),
                        _ => return Outcome::NotFound,
                    }
                } else {
                    self.staged.remove(path);
                    Vec::new()
                };
                buffer.extend_from_slice(data);
                match end {
                    End::Close => {
                        self.staged.insert(path.clone(), buffer);
                    }
                    End::Commit => {
                        self.staged.remove(path);
                        self.files.insert(path.clone(), buffer);
                    }
                    End::Cancel => {
                        self.staged.remove(path);
                    }
                }
                Outcome::Done
            }
        }
    }

    fn allows(&self, op: &Op) -> bool {
        match op {
            Op::Put(path, _) | Op::Write { path, .. } => !self.clashes(path),
            Op::Rename(from, to) => from == to || !self.clashes(to) || !self.files.contains_key(from),
            _ => true,
        }
    }
}

fn outcome<T>(result: Result<T, Error>, ok: impl FnOnce(T) -> Outcome) -> Result<Outcome, String> {
    match result {
        Ok(value) => Ok(ok(value)),
        Err(Error::NotFound { .. }) => Ok(Outcome::NotFound),
        Err(e) => Err(e.to_string()),
    }
}

async fn run(driver: &dyn StorageDriver, op: &Op) -> Result<Outcome, String> {
    match op {
        Op::Put(path, data) => outcome(driver.put_content(path, Bytes::from(data.clone())).await, |()| Outcome::Done),
        Op::Get(path) => outcome(driver.get_content(path).await, |b| Outcome::Content(b.to_vec())),
        Op::Delete(path) => outcome(driver.delete(path).await, |()| Outcome::Done),
        Op::Rename(from, to) => outcome(driver.rename(from, to).await, |()| Outcome::Done),
        Op::Stat(path) => outcome(driver.stat(path).await, |info| Outcome::Stat {
            size: if info.is_dir { 0 } else { info.size },
            is_dir: info.is_dir,
        }),
        Op::List(dir) => outcome(driver.list(dir).await, Outcome::Paths),
        Op::Walk(dir, after) => {
            let walked: Result<Vec<_>, Error> = driver.walk(dir, after.as_deref()).try_collect().await;
            outcome(walked, |files| Outcome::Paths(files.into_iter().map(|f| f.path).collect()))
        }
        Op::Write { path, append, data, end } => {
            let mut writer = match driver.writer(path, *append).await {
                Ok(writer) => writer,
                Err(e) => return outcome(Err::<(), _>(e), |()| Outcome::Done),
            };
            writer.write(Bytes::from(data.clone())).await.map_err(|e| e.to_string())?;
            let ended = match end {
                End::Close => writer.close().await,
                End::Commit => writer.commit().await,
                End::Cancel => writer.cancel().await,
            };
            outcome(ended, |()| Outcome::Done)
        }
    }
}

async fn check(driver: &dyn StorageDriver, ops: &[Op]) -> Result<(), TestCaseError> {
    match driver.delete(ROOT).await {
        Ok(()) | Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(TestCaseError::fail(format!("clearing {ROOT}: {e}"))),
    }
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        if !model.allows(op) {
            continue;
        }
        let expected = model.apply(op);
        let actual = run(driver, op).await.map_err(|e| TestCaseError::fail(format!("step {i} {op:?}: {e}")))?;
        prop_assert_eq!(&actual, &expected, "step {} {:?} on {}", i, op, driver.name());
    }
    // Finally the whole store agrees, file by file.
    let walked: Vec<String> = driver
        .walk(ROOT, None)
        .map_ok(|f| f.path)
        .try_collect()
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(walked, model.files.keys().cloned().collect::<Vec<_>>());
    for (path, data) in &model.files {
        let read = driver.read_all(path, 0).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&read[..], &data[..], "content of {}", path);
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn run_model(driver: &dyn StorageDriver, cases: u32) {
    run_model_on(&runtime(), driver, cases);
}

fn run_model_on(runtime: &tokio::runtime::Runtime, driver: &dyn StorageDriver, cases: u32) {
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| runtime.block_on(check(driver, &ops)));
    if let Err(e) = result {
        panic!("{}: {e}", driver.name());
    }
}

#[test]
fn memory_matches_the_model() {
    run_model(&MemoryDriver::new(), 256);
}

#[test]
fn filesystem_matches_the_model() {
    let dir = tempfile::tempdir().unwrap();
    run_model(&wharf_storage::FilesystemDriver::new(dir.path()).unwrap(), 128);
}

#[cfg(feature = "s3")]
#[test]
fn s3_matches_the_model() {
    let Some(config) = wharf_testing::peers::s3_config("s3_matches_the_model") else { return };
    let runtime = runtime();
    let driver = runtime.block_on(wharf_testing::peers::s3_driver(config));
    run_model_on(&runtime, &driver, 12);
}
