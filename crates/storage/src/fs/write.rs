//! Writers: staged files appended to, then committed into place.

use super::*;

/// Writes `chunks` in order with as few calls as it takes (one, unless the kernel takes less).
/// Chunks of a chunked request body are often 32 KiB or less: written one by one, each is a
/// system call and the page cache gets small pages for them; written at once, the kernel sees
/// the whole run, as for a large chunk.
pub(super) fn write_chunks(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    for group in chunks.chunks(MAX_PENDING_CHUNKS) {
        let mut slices: Vec<io::IoSlice<'_>> = group.iter().map(|chunk| io::IoSlice::new(chunk)).collect();
        let mut left = &mut slices[..];
        while !left.is_empty() {
            match file.write_vectored(left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => io::IoSlice::advance_slices(&mut left, written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[derive(Debug)]
pub(super) struct FsWriter {
    pub(super) driver: FilesystemDriver,
    pub(super) path: String,
    /// `None` once a failed write left the file in an unknown state.
    pub(super) file: Option<File>,
    pub(super) flushed: u64,
    /// Chunks not yet written, kept as they came (no copy until the kernel's).
    pub(super) pending: Vec<Bytes>,
    pub(super) pending_len: usize,
}

impl FsWriter {
    /// Publishes the staged file at `to` in one blocking call: the last chunks, the sync, the
    /// rename and the folder's sync.
    pub(super) async fn publish(mut self: Box<Self>, to: String) -> Result<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| Error::backend(NAME, "commit", &self.path, io::Error::other("an earlier write failed")))?;
        let chunks = std::mem::take(&mut self.pending);
        let path = self.path.clone();
        self.driver
            .blocking("commit", &self.path, move |inner| {
                write_chunks(&mut file, &chunks)?;
                file.sync_all()?;
                drop(file);
                let staged = inner.staged(&path);
                inner.rename_into_place(&staged, &inner.full(&to))?;
                if let Some(dir) = staged.parent() {
                    inner.prune(dir);
                }
                Ok(())
            })
            .await
    }

    /// Writes the pending chunks, without a sync.
    pub(super) async fn flush(&mut self) -> Result<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| Error::backend(NAME, "write", &self.path, io::Error::other("an earlier write failed")))?;
        let chunks = std::mem::take(&mut self.pending);
        let written = std::mem::take(&mut self.pending_len) as u64;
        let work = move |_: &Inner| {
            write_chunks(&mut file, &chunks)?;
            Ok(file)
        };
        let file = if written < SHORT_WRITE as u64 {
            self.driver.short("write", &self.path, work).await?
        } else {
            self.driver.blocking("write", &self.path, work).await?
        };
        self.file = Some(file);
        self.flushed += written;
        Ok(())
    }
}

#[async_trait]
impl FileWriter for FsWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= WRITE_BUFFER || self.pending.len() >= MAX_PENDING_CHUNKS {
            self.flush().await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.flushed + self.pending_len as u64
    }

    async fn read_back(&mut self, offset: u64) -> Result<ByteStream> {
        let size = self.size();
        if offset > size {
            return Err(Error::InvalidOffset { driver: NAME, path: self.path.clone(), offset, size });
        }
        self.flush().await?;
        let staged = self.driver.inner.staged(&self.path);
        let driver = self.driver.clone();
        let path = self.path.clone();
        // Chunk by chunk up to the writer's size, on the pool, each from a fresh handle.
        let chunks = stream::try_unfold(offset, move |at| {
            let (driver, path, staged) = (driver.clone(), path.clone(), staged.clone());
            async move {
                if at >= size {
                    return Ok(None);
                }
                let len = usize::try_from(size - at).unwrap_or(usize::MAX).min(READ_CHUNK);
                let chunk = driver
                    .blocking("read back", &path, move |_| {
                        let mut file = File::open(&staged)?;
                        file.seek(SeekFrom::Start(at))?;
                        let mut buffer = vec![0; len];
                        file.read_exact(&mut buffer)?;
                        Ok(Bytes::from(buffer))
                    })
                    .await?;
                Ok(Some((chunk, at + len as u64)))
            }
        });
        Ok(chunks.boxed())
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        if self.pending.is_empty() && self.file.is_some() {
            return Ok(());
        }
        // Not synced: the contract lets a crash lose the end of a closed write.
        self.flush().await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let path = self.path.clone();
        self.publish(path).await
    }

    async fn commit_to(self: Box<Self>, path: &str) -> Result<bool> {
        validate_path(NAME, path)?;
        self.publish(path.to_owned()).await?;
        Ok(true)
    }

    async fn cancel(mut self: Box<Self>) -> Result<()> {
        drop(self.file.take());
        let path = self.path.clone();
        self.driver
            .short("cancel", &self.path, move |inner| {
                let staged = inner.staged(&path);
                match fs::remove_file(&staged) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                if let Some(dir) = staged.parent() {
                    inner.prune(dir);
                }
                Ok(())
            })
            .await
    }
}
