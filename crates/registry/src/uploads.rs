//! Uploads: started, resumed chunk by chunk, finished into a blob whose bytes are its digest's, purged when abandoned.

use std::time::SystemTime;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use wharf_oci::{Algorithm, Digest, Digester, RepositoryName};

use crate::{BlobInfo, Error, Repository, Result, layout, lease};

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    /// The upload's id, as in `/v2/<name>/blobs/uploads/<id>`.
    pub id: String,
    /// How many bytes it holds; the next chunk starts here.
    pub size: u64,
}

/// An upload removed (or, in a dry run, to be removed) by [`Registry::purge_uploads`](crate::Registry::purge_uploads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedUpload {
    /// Its repository.
    pub repository: RepositoryName,
    /// Its id.
    pub id: String,
    /// When it started.
    pub started: SystemTime,
}

/// Where an upload's content is once its digest is verified.
pub(crate) enum Verified {
    /// Still in the upload's writer, to be published where the blob goes.
    Staged(Box<dyn wharf_storage::FileWriter>),
    /// Published at the upload's own data path.
    Published,
}

fn new_upload_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Repository {
    /// Starts an upload.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn start_upload(&self) -> Result<UploadStatus> {
        let id = new_upload_id();
        let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        // An upload's state is scratch: a crash may lose it, and the client starts over. Its
        // start time and its (empty) data are written at once.
        let (stamped, opened) = futures::future::join(
            self.driver().put_scratch(&layout::upload_started_at(&self.name, &id), Bytes::from(started)),
            async { self.driver().writer(&layout::upload_data(&self.name, &id), false).await?.close().await },
        )
        .await;
        if let Err(e) = stamped.and(opened) {
            let _ = self.driver().delete(&layout::upload_dir(&self.name, &id)).await;
            return Err(e.into());
        }
        Ok(UploadStatus { id, size: 0 })
    }

    /// How far an upload has come.
    ///
    /// # Errors
    /// [`Error::UploadUnknown`] when there is no such upload.
    pub async fn upload_status(&self, id: &str) -> Result<UploadStatus> {
        let writer = self.open_upload(id).await?;
        Ok(UploadStatus { id: id.to_owned(), size: writer.size() })
    }

    /// Appends a chunk to an upload. `offset`, when given, must be the upload's size.
    ///
    /// When the stream fails midway, what arrived is kept (with its hash state), so the client
    /// can ask for the status and go on from there.
    ///
    /// # Errors
    /// [`Error::UploadUnknown`], [`Error::UploadOffset`] (nothing is written then),
    /// [`Error::UploadAbandoned`], or the stream's or the store's error.
    pub async fn append_upload<S>(&self, id: &str, offset: Option<u64>, chunk: S) -> Result<UploadStatus>
    where
        S: Stream<Item = wharf_storage::Result<Bytes>> + Send + Unpin,
    {
        let mut lease = self.lease_upload(id).await?;
        let appended = async {
            let (mut writer, mut digester) = self.resume_upload(id, offset).await?;
            let received = self.receive(id, writer.as_mut(), &mut digester, chunk, &mut lease).await;
            // What arrived is kept, failure or not, unless another request may have the upload
            // now: then this writer is dropped, and what it wrote since it opened with it.
            self.confirm(id, &mut lease).await?;
            // The state first, so that a state exists for every size the data can be found at.
            let state_path = layout::upload_hash_state(&self.name, id, Algorithm::Sha256, digester.len());
            self.driver().put_scratch(&state_path, Bytes::from(digester.save_state())).await?;
            let size = writer.size();
            writer.close().await?;
            received?;
            Ok(UploadStatus { id: id.to_owned(), size })
        }
        .await;
        self.release_upload(id, lease, &appended).await;
        appended
    }

    /// Completes an upload with its last chunk (if any): the content is verified against
    /// `expected`, and becomes the blob in this repository.
    ///
    /// The content's digest comes from the hash state the upload's requests kept, which only
    /// one request at a time writes (through the upload's lease). When the lease was ever
    /// taken from a request that did not finish (its process crashed or stalled, its future was
    /// dropped), the state may not describe the stored bytes: the bytes are then read back
    /// and hashed before anything is published.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] (the upload is discarded), [`Error::UploadUnknown`],
    /// [`Error::UploadInUse`], or the stream's or the store's error.
    pub async fn finish_upload<S>(&self, id: &str, expected: &Digest, last_chunk: Option<S>) -> Result<BlobInfo>
    where
        S: Stream<Item = wharf_storage::Result<Bytes>> + Send + Unpin,
    {
        let mut lease = self.lease_upload(id).await?;
        let finished = self.finish_leased(id, expected, last_chunk, &mut lease).await;
        self.release_upload(id, lease, &finished).await;
        finished
    }

    async fn finish_leased<S>(
        &self,
        id: &str,
        expected: &Digest,
        last_chunk: Option<S>,
        lease: &mut lease::Lease,
    ) -> Result<BlobInfo>
    where
        S: Stream<Item = wharf_storage::Result<Bytes>> + Send + Unpin,
    {
        // Whether the registry has the blob already is asked while the upload is reopened.
        let (resumed, existing) =
            futures::future::join(self.resume_upload(id, None), self.registry.blob_size(expected)).await;
        let (mut writer, mut digester) = resumed?;
        let existing = existing?.is_some();
        if let Some(chunk) = last_chunk
            && let Err(e) = self.receive(id, writer.as_mut(), &mut digester, chunk, lease).await
        {
            if !matches!(e, Error::UploadInUse { .. }) {
                lease.abandon();
                let _ = writer.cancel().await;
                let _ = self.discard_upload(id).await;
            }
            return Err(e);
        }
        self.confirm(id, lease).await?;
        let size = writer.size();
        let content = if expected.algorithm() == Algorithm::Sha256 && !lease.was_taken_over() {
            let actual = digester.finalize();
            if actual != *expected {
                lease.abandon();
                let _ = writer.cancel().await;
                let _ = self.discard_upload(id).await;
                return Err(Error::DigestMismatch { expected: expected.clone(), actual });
            }
            Verified::Staged(writer)
        } else {
            // The saved state is sha256's, or may not describe the stored bytes: hash what was
            // published at the upload's own path, before it becomes the blob.
            writer.commit().await?;
            let mut other = Digester::new(expected.algorithm());
            let mut stream = self.driver().reader(&layout::upload_data(&self.name, id), 0).await?;
            while let Some(chunk) = stream.try_next().await? {
                other.update(&chunk);
            }
            if let Err(wharf_oci::Error::DigestMismatch { actual, .. }) = other.verify(expected) {
                lease.abandon();
                let _ = self.discard_upload(id).await;
                return Err(Error::DigestMismatch { expected: expected.clone(), actual });
            }
            Verified::Published
        };
        let upload_dir = layout::upload_dir(&self.name, id);
        let link = layout::layer_link(&self.name, expected);
        // Write, then verify: a garbage collection may set the blob aside at any time.
        if existing {
            // The registry has these bytes: link them, and keep ours only if a collection
            // took the other copy meanwhile.
            self.registry.write_link(&link, expected).await?;
            if self.registry.blob_size(expected).await?.is_none() {
                self.place_blob(id, expected, content).await?;
            } else if let Verified::Staged(writer) = content {
                writer.cancel().await?;
            }
            lease.abandon();
            self.driver().delete(&upload_dir).await?;
        } else {
            // The blob and its link are written at once, so that their disk flushes overlap.
            // Until the blob is in place the link points at nothing, which reads as an unknown
            // blob, as it did before.
            let (placed, linked) = futures::future::join(
                self.place_blob(id, expected, content),
                self.registry.write_link(&link, expected),
            )
            .await;
            if let Err(e) = placed {
                if linked.is_ok() {
                    let _ = self.driver().delete(&layout::layer_dir(&self.name, expected)).await;
                }
                return Err(e);
            }
            linked?;
            // The upload's data is the blob now, so the upload reads as unknown already; its
            // start time, lease and hash states go after the answer.
            lease.abandon();
            self.discard_leftovers(upload_dir).await;
            if self.registry.blob_size(expected).await?.is_none() {
                // Ours was taken: the client uploads again.
                return Err(Error::BlobUnknown { repository: self.name.clone(), digest: expected.clone() });
            }
        }
        Ok(BlobInfo { digest: expected.clone(), size })
    }

    /// Takes the upload's lease: one request at a time writes to an upload.
    async fn lease_upload(&self, id: &str) -> Result<lease::Lease> {
        check_upload_id(&self.name, id)?;
        let path = layout::upload_lease(&self.name, id);
        let term = self.registry.inner.options.upload_lease_term;
        match lease::Lease::acquire(self.driver().clone(), path, term).await {
            Ok(lease) => Ok(lease),
            // The lease of an upload that finished a moment ago may outlive it: the upload is
            // unknown then, not busy.
            Err(lease::LeaseError::Held) => match self.open_upload(id).await {
                Ok(_) => Err(Error::UploadInUse { id: id.to_owned() }),
                Err(e) => Err(e),
            },
            Err(lease::LeaseError::Storage(e)) => Err(e.into()),
        }
    }

    /// Confirms the upload's lease is still this request's (renewing it as it goes).
    pub(crate) async fn confirm(&self, id: &str, lease: &mut lease::Lease) -> Result<()> {
        match lease.confirm().await {
            Ok(()) => Ok(()),
            Err(lease::LeaseError::Held) => Err(Error::UploadInUse { id: id.to_owned() }),
            Err(lease::LeaseError::Storage(e)) => Err(e.into()),
        }
    }

    /// Gives the upload's lease up after a request. When the upload turned out not to exist,
    /// the lease's file goes, so that it leaves no folder behind.
    async fn release_upload<T>(&self, id: &str, lease: lease::Lease, outcome: &Result<T>) {
        if matches!(outcome, Err(Error::UploadUnknown { .. })) {
            let mut lease = lease;
            lease.abandon();
            let _ = self.driver().delete(&layout::upload_lease(&self.name, id)).await;
            return;
        }
        // A lease that cannot be released ends with its term.
        let _ = lease.release().await;
    }

    /// Abandons an upload and everything it received.
    ///
    /// # Errors
    /// [`Error::UploadUnknown`] when there is no such upload.
    pub async fn cancel_upload(&self, id: &str) -> Result<()> {
        // Checked first: a malformed id names no folder to clear up.
        check_upload_id(&self.name, id)?;
        // An upload is known by its data: what is left of a finished one may outlive it for a
        // moment (see `discard_leftovers`).
        if let Err(e) = self.open_upload(id).await {
            if matches!(e, Error::UploadUnknown { .. }) {
                let _ = self.driver().delete(&layout::upload_dir(&self.name, id)).await;
            }
            return Err(e);
        }
        self.discard_upload(id).await
    }

    /// Removes an upload's folder: its data, start time and hash states.
    async fn discard_upload(&self, id: &str) -> Result<()> {
        check_upload_id(&self.name, id)?;
        match self.driver().delete(&layout::upload_dir(&self.name, id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => {
                Err(Error::UploadUnknown { repository: self.name.clone(), id: id.to_owned() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the folder of an upload whose data is gone (placed as a blob), in a task of its
    /// own where there is a Tokio runtime, so the client has its answer without waiting for the
    /// folder removals. Should that fail, or the process stop first, purging removes what is
    /// left, as for any upload that was abandoned.
    async fn discard_leftovers(&self, upload_dir: String) {
        let driver = self.driver().clone();
        let removal = async move {
            let _ = driver.delete(&upload_dir).await;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(removal)),
            Err(_) => removal.await,
        }
    }

    /// Makes an upload's verified content the blob, replacing any copy already there.
    async fn place_blob(&self, id: &str, digest: &Digest, content: Verified) -> Result<()> {
        let blob = layout::blob_data(digest);
        let published_here = match content {
            Verified::Staged(writer) => writer.commit_to(&blob).await?,
            Verified::Published => false,
        };
        if !published_here {
            self.driver().rename(&layout::upload_data(&self.name, id), &blob).await?;
        }
        Ok(())
    }

    async fn open_upload(&self, id: &str) -> Result<Box<dyn wharf_storage::FileWriter>> {
        check_upload_id(&self.name, id)?;
        match self.driver().writer(&layout::upload_data(&self.name, id), true).await {
            Ok(writer) => Ok(writer),
            Err(e) if e.is_not_found() => {
                Err(Error::UploadUnknown { repository: self.name.clone(), id: id.to_owned() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reopens an upload's data and its hash state at the data's size. When no state was saved
    /// at that size (a request was stopped midway, after some of its bytes reached the store),
    /// the largest saved state below it is taken, and the bytes after it are read back from
    /// the store and hashed, as Distribution does.
    async fn resume_upload(
        &self,
        id: &str,
        offset: Option<u64>,
    ) -> Result<(Box<dyn wharf_storage::FileWriter>, Digester)> {
        let mut writer = self.open_upload(id).await?;
        let size = writer.size();
        if let Some(offset) = offset.filter(|&offset| offset != size) {
            // Dropping the writer unused leaves the upload as it was.
            return Err(Error::UploadOffset { id: id.to_owned(), expected: size, offset });
        }
        if size == 0 {
            return Ok((writer, Digester::new(Algorithm::Sha256)));
        }
        let abandoned = |reason: String| Error::UploadAbandoned { id: id.to_owned(), size, reason };
        let state_path = layout::upload_hash_state(&self.name, id, Algorithm::Sha256, size);
        let (mut digester, from) = match self.driver().get_content(&state_path).await {
            Ok(state) => (Digester::restore_state(&state).map_err(|e| abandoned(e.to_string()))?, size),
            Err(e) if e.is_not_found() => match self.saved_state_below(id, size).await? {
                Some((at, state)) => (Digester::restore_state(&state).map_err(|e| abandoned(e.to_string()))?, at),
                None => (Digester::new(Algorithm::Sha256), 0),
            },
            Err(e) => return Err(e.into()),
        };
        if digester.len() != from {
            return Err(abandoned(format!("the hash state saved at {from} bytes covers {}", digester.len())));
        }
        if from < size {
            let mut gap = writer
                .read_back(from)
                .await
                .map_err(|e| abandoned(format!("no hash state at {size} bytes, and the bytes after {from}: {e}")))?;
            while let Some(chunk) = gap.try_next().await? {
                digester.update(&chunk);
            }
            if digester.len() != size {
                return Err(abandoned(format!("read back {} of {size} bytes", digester.len())));
            }
        }
        Ok((writer, digester))
    }

    /// The largest hash state saved below `size` bytes, with its offset.
    async fn saved_state_below(&self, id: &str, size: u64) -> Result<Option<(u64, Bytes)>> {
        let dir = layout::upload_hash_states(&self.name, id, Algorithm::Sha256);
        let saved = match self.driver().list(&dir).await {
            Ok(paths) => paths,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut offsets: Vec<u64> = saved
            .iter()
            .filter_map(|path| path.rsplit('/').next()?.parse().ok())
            .filter(|&offset| offset < size)
            .collect();
        offsets.sort_unstable();
        while let Some(offset) = offsets.pop() {
            match self.driver().get_content(&layout::upload_hash_state(&self.name, id, Algorithm::Sha256, offset)).await
            {
                Ok(state) => return Ok(Some((offset, state))),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    async fn receive<S>(
        &self,
        id: &str,
        writer: &mut dyn wharf_storage::FileWriter,
        digester: &mut Digester,
        mut chunk: S,
        lease: &mut lease::Lease,
    ) -> Result<()>
    where
        S: Stream<Item = wharf_storage::Result<Bytes>> + Send + Unpin,
    {
        while let Some(bytes) = chunk.next().await {
            let bytes = bytes?;
            self.confirm(id, lease).await?;
            writer.write(bytes.clone()).await?;
            digester.update(&bytes);
        }
        Ok(())
    }
}

/// Upload ids are path segments: refuse anything that could name another path.
fn check_upload_id(repository: &RepositoryName, id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid { Ok(()) } else { Err(Error::UploadUnknown { repository: repository.clone(), id: id.to_owned() }) }
}
