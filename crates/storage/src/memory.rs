//! The in-memory backend, for tests and for embedding a throwaway registry.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{Error, Result};
use crate::path::{dir_prefix, validate_dir_path, validate_path};
use crate::{ByteStream, Durability, FileInfo, FileWriter, Precondition, StorageDriver, Version};

const NAME: &str = "inmemory";
/// Reads are handed out in slices of this size (the data is not copied).
const READ_CHUNK: usize = 1 << 20;
/// How many entries a walk takes from the map at a time, so the lock is held briefly.
const WALK_BATCH: usize = 512;

/// A store in memory. Clones share the same content, which is how a test "restarts" it: a
/// new handle sees what the old one closed or committed.
#[derive(Debug, Clone, Default)]
pub struct MemoryDriver {
    state: Arc<RwLock<State>>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<String, File>,
    staged: HashMap<String, Bytes>,
    /// The generation the next write gets: every file written has one of its own.
    next_generation: u64,
}

#[derive(Debug, Clone)]
struct File {
    data: Bytes,
    modified: SystemTime,
    /// Tells this write's content from every other's at the path, as its [`Version`].
    generation: u64,
}

impl File {
    fn version(&self) -> Version {
        Version::new(self.generation.to_string())
    }
}

impl MemoryDriver {
    /// An empty store.
    pub fn new() -> MemoryDriver {
        MemoryDriver::default()
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.write().unwrap_or_else(PoisonError::into_inner))
    }
}

impl State {
    /// Writes a file, with a generation of its own.
    fn insert(&mut self, path: String, data: Bytes) -> &File {
        self.next_generation += 1;
        let file = File { data, modified: SystemTime::now(), generation: self.next_generation };
        self.files.insert(path.clone(), file);
        &self.files[&path]
    }

    fn has_children(&self, dir: &str) -> bool {
        let prefix = dir_prefix(dir);
        self.files
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|(path, _)| path.starts_with(&prefix))
    }
}

#[async_trait]
impl StorageDriver for MemoryDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        validate_path(NAME, path)?;
        self.read(|s| s.files.get(path).map(|f| f.data.clone())).ok_or_else(|| Error::not_found(NAME, path))
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<()> {
        validate_path(NAME, path)?;
        self.write(|s| s.insert(path.to_owned(), content).generation);
        Ok(())
    }

    async fn get_versioned(&self, path: &str) -> Result<(Bytes, Version)> {
        validate_path(NAME, path)?;
        self.read(|s| s.files.get(path).map(|f| (f.data.clone(), f.version())))
            .ok_or_else(|| Error::not_found(NAME, path))
    }

    async fn put_if(
        &self,
        path: &str,
        content: Bytes,
        precondition: Precondition,
        _durability: Durability,
    ) -> Result<Version> {
        validate_path(NAME, path)?;
        self.write(|s| {
            let current = s.files.get(path).map(File::version);
            match (&precondition, current) {
                (Precondition::Absent, None) => {}
                (Precondition::Absent, Some(_)) => {
                    return Err(Error::AlreadyExists { driver: NAME, path: path.to_owned() });
                }
                (Precondition::Matches(expected), Some(current)) if *expected == current => {}
                (Precondition::Matches(_), _) => {
                    return Err(Error::Precondition { driver: NAME, path: path.to_owned() });
                }
            }
            Ok(s.insert(path.to_owned(), content).version())
        })
    }

    async fn reader(&self, path: &str, offset: u64) -> Result<ByteStream> {
        validate_path(NAME, path)?;
        let data = self.get_content(path).await?;
        let size = data.len() as u64;
        if offset > size {
            return Err(Error::InvalidOffset { driver: NAME, path: path.to_owned(), offset, size });
        }
        let rest = data.slice(offset as usize..);
        let chunks: Vec<Result<Bytes>> = (0..rest.len())
            .step_by(READ_CHUNK)
            .map(|start| Ok(rest.slice(start..(start + READ_CHUNK).min(rest.len()))))
            .collect();
        Ok(stream::iter(chunks).boxed())
    }

    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>> {
        validate_path(NAME, path)?;
        let parts = self.write(|s| {
            if !append {
                s.staged.remove(path);
                return Ok(Vec::new());
            }
            match (s.staged.get(path), s.files.get(path)) {
                (Some(staged), _) => Ok(vec![staged.clone()]),
                (None, Some(file)) if file.data.is_empty() => Ok(Vec::new()),
                _ => Err(Error::not_found(NAME, path)),
            }
        })?;
        let len = parts.iter().map(Bytes::len).sum();
        Ok(Box::new(MemoryWriter { driver: self.clone(), path: path.to_owned(), parts, len }))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        validate_dir_path(NAME, path)?;
        self.read(|s| {
            if let Some(file) = s.files.get(path) {
                return Ok(FileInfo {
                    path: path.to_owned(),
                    size: file.data.len() as u64,
                    modified: file.modified,
                    is_dir: false,
                });
            }
            if path == "/" || s.has_children(path) {
                return Ok(FileInfo { path: path.to_owned(), size: 0, modified: SystemTime::now(), is_dir: true });
            }
            Err(Error::not_found(NAME, path))
        })
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        validate_dir_path(NAME, path)?;
        let prefix = dir_prefix(path);
        let children = self.read(|s| {
            let mut children = std::collections::BTreeSet::new();
            let below = s.files.range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded));
            for (file, _) in below.take_while(|(file, _)| file.starts_with(&prefix)) {
                let rest = &file[prefix.len()..];
                children.insert(&file[..prefix.len() + rest.find('/').unwrap_or(rest.len())]);
            }
            let children: Vec<String> = children.into_iter().map(str::to_owned).collect();
            children
        });
        if children.is_empty() && path != "/" {
            return Err(Error::not_found(NAME, path));
        }
        Ok(children)
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        validate_path(NAME, from)?;
        validate_path(NAME, to)?;
        self.write(|s| {
            let file = s.files.remove(from).ok_or_else(|| Error::not_found(NAME, from))?;
            s.insert(to.to_owned(), file.data);
            Ok(())
        })
    }

    async fn delete(&self, path: &str) -> Result<()> {
        validate_path(NAME, path)?;
        let prefix = dir_prefix(path);
        self.write(|s| {
            let mut found = s.files.remove(path).is_some() | s.staged.remove(path).is_some();
            let below: Vec<String> = s
                .files
                .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                .take_while(|(file, _)| file.starts_with(&prefix))
                .map(|(file, _)| file.clone())
                .collect();
            found |= !below.is_empty();
            for file in below {
                s.files.remove(&file);
            }
            let staged_before = s.staged.len();
            s.staged.retain(|staged, _| !staged.starts_with(&prefix));
            found |= s.staged.len() != staged_before;
            if found { Ok(()) } else { Err(Error::not_found(NAME, path)) }
        })
    }

    fn walk(&self, path: &str, start_after: Option<&str>) -> BoxStream<'static, Result<FileInfo>> {
        if let Err(e) = validate_dir_path(NAME, path) {
            return stream::once(async move { Err(e) }).boxed();
        }
        let prefix = dir_prefix(path);
        // The first key to look at: the later of the directory's start and `start_after`.
        let cursor = match start_after {
            Some(after) if after >= prefix.as_str() => Bound::Excluded(after.to_owned()),
            _ => Bound::Included(prefix.clone()),
        };
        let driver = self.clone();
        stream::unfold(Some(cursor), move |cursor| {
            let driver = driver.clone();
            let prefix = prefix.clone();
            async move {
                let cursor = cursor?;
                let batch: Vec<FileInfo> = driver.read(|s| {
                    s.files
                        .range::<String, _>((cursor, Bound::Unbounded))
                        .take_while(|(file, _)| file.starts_with(&prefix))
                        .take(WALK_BATCH)
                        .map(|(file, f)| FileInfo {
                            path: file.clone(),
                            size: f.data.len() as u64,
                            modified: f.modified,
                            is_dir: false,
                        })
                        .collect()
                });
                let next = match batch.last() {
                    Some(last) if batch.len() == WALK_BATCH => Some(Bound::Excluded(last.path.clone())),
                    Some(_) => None,
                    None => return None,
                };
                Some((stream::iter(batch.into_iter().map(Ok)), next))
            }
        })
        .flatten()
        .boxed()
    }
}

/// A write in progress: the chunks as they came (not copied), joined once at the end.
#[derive(Debug)]
struct MemoryWriter {
    driver: MemoryDriver,
    path: String,
    parts: Vec<Bytes>,
    len: usize,
}

impl MemoryWriter {
    /// The content in one piece, copied once (not at all when it came in one chunk).
    fn joined(parts: Vec<Bytes>, len: usize) -> Bytes {
        if parts.len() == 1 {
            return parts.into_iter().next().unwrap_or_default();
        }
        let mut joined = BytesMut::with_capacity(len);
        for part in parts {
            joined.extend_from_slice(&part);
        }
        joined.freeze()
    }
}

#[async_trait]
impl FileWriter for MemoryWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if !data.is_empty() {
            self.len += data.len();
            self.parts.push(data);
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.len as u64
    }

    async fn read_back(&mut self, offset: u64) -> Result<ByteStream> {
        if offset > self.size() {
            return Err(Error::InvalidOffset { driver: NAME, path: self.path.clone(), offset, size: self.size() });
        }
        let mut skip = offset as usize;
        let mut chunks = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            chunks.push(Ok(part.slice(skip..)));
            skip = 0;
        }
        Ok(stream::iter(chunks).boxed())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let MemoryWriter { driver, path, parts, len } = *self;
        let staged = MemoryWriter::joined(parts, len);
        driver.write(|s| s.staged.insert(path, staged));
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let path = self.path.clone();
        self.commit_to(&path).await.map(drop)
    }

    async fn commit_to(self: Box<Self>, to: &str) -> Result<bool> {
        validate_path(NAME, to)?;
        let MemoryWriter { driver, path, parts, len } = *self;
        let data = MemoryWriter::joined(parts, len);
        driver.write(|s| {
            s.staged.remove(&path);
            s.insert(to.to_owned(), data);
        });
        Ok(true)
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        self.driver.write(|s| s.staged.remove(&self.path));
        Ok(())
    }
}
