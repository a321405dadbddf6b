//! Blob downloads that survive a lost connection: the bytes already received are kept, the
//! rest asked for with a `Range` request from the byte reached, and the whole checked
//! against its digest at the end.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt as _};
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{Method, StatusCode};
use wharf_oci::{Digest, Digester};

use crate::client::{Client, TransferSlots};
use crate::error::{Error, Result};
use crate::repository::{Repository, header_str};

/// How many times in a row a download may be cut without a byte getting through before
/// it gives up.
const MAX_FRUITLESS_RESUMES: u32 = 5;

/// A blob's bytes as they arrive. The last item is an error when the bytes do not hash to
/// the digest, so a consumer commits what it wrote only once the stream has ended cleanly.
pub struct BlobPull {
    inner: BoxStream<'static, Result<Bytes>>,
    resumes: Arc<AtomicU32>,
}

impl std::fmt::Debug for BlobPull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobPull").field("resumes", &self.resumes()).finish_non_exhaustive()
    }
}

impl BlobPull {
    /// How many times the download was resumed after a lost connection.
    pub fn resumes(&self) -> u32 {
        self.resumes.load(Ordering::Relaxed)
    }

    /// The count behind [`BlobPull::resumes`], readable after the stream is handed on.
    pub(crate) fn resume_counter(&self) -> Arc<AtomicU32> {
        self.resumes.clone()
    }
}

impl Stream for BlobPull {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl BlobPull {
    /// The bytes of blob `digest` from `offset` on, unchecked: whoever reads them checks
    /// the whole (a push's target).
    pub(crate) fn from_offset(repository: &Repository, digest: &Digest, size: u64, offset: u64) -> BlobPull {
        BlobPull::start(repository, digest, Some(size), offset, false, false)
    }

    fn start(
        repository: &Repository,
        digest: &Digest,
        size: Option<u64>,
        offset: u64,
        verify: bool,
        takes_slot: bool,
    ) -> BlobPull {
        let resumes = Arc::new(AtomicU32::new(0));
        let state = Download {
            repository: repository.clone(),
            digest: digest.clone(),
            size,
            offset,
            verify,
            skip: 0,
            digester: Digester::new(digest.algorithm()),
            body: None,
            fruitless: 0,
            resumes: resumes.clone(),
            done: false,
            takes_slot,
            slots: None,
        };
        BlobPull { inner: futures::stream::try_unfold(state, Download::next).boxed(), resumes }
    }
}

impl Repository {
    /// Downloads blob `digest`; `size`, when known (from a descriptor), is enforced. The
    /// download waits for a place among the host's transfers
    /// ([`ClientBuilder::transfers_per_host`](crate::ClientBuilder::transfers_per_host))
    /// when first polled, and gives it back when it ends or is dropped.
    pub fn pull_blob(&self, digest: &Digest, size: Option<u64>) -> BlobPull {
        BlobPull::start(self, digest, size, 0, true, true)
    }

    /// [`Repository::pull_blob`] without the check against the digest, for a caller that
    /// hashes the bytes itself (a store that keeps a blob only when it hashes to its
    /// digest), so that they are hashed once. The size, when given, is still enforced.
    pub fn pull_blob_unverified(&self, digest: &Digest, size: Option<u64>) -> BlobPull {
        BlobPull::start(self, digest, size, 0, false, true)
    }

    /// [`Repository::pull_blob`] for a caller that holds the host's place already.
    pub(crate) fn pull_blob_in_slot(&self, digest: &Digest, size: Option<u64>) -> BlobPull {
        BlobPull::start(self, digest, size, 0, true, false)
    }
}

struct Download {
    repository: Repository,
    digest: Digest,
    size: Option<u64>,
    /// Where the next byte handed to the consumer is in the blob.
    offset: u64,
    /// Whether the bytes are checked against the digest (only when read from the start).
    verify: bool,
    /// Bytes to drop from the start of the current answer (a server that ignored `Range`).
    skip: u64,
    digester: Digester,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    /// Resumes since the last byte got through.
    fruitless: u32,
    resumes: Arc<AtomicU32>,
    done: bool,
    /// Whether the download waits for a place among its host's transfers.
    takes_slot: bool,
    slots: Option<TransferSlots>,
}

impl Download {
    fn what(&self) -> String {
        format!("blob {}/{}@{}", self.repository.host, self.repository.name, self.digest)
    }

    async fn next(mut self) -> Result<Option<(Bytes, Download)>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.takes_slot && self.slots.is_none() {
                self.slots = Some(self.repository.client.transfer_slots(&[&self.repository.host]).await);
            }
            let Some(body) = self.body.as_mut() else {
                self.body = Some(self.open().await?);
                continue;
            };
            match body.next().await {
                Some(Ok(mut chunk)) => {
                    if self.skip > 0 {
                        let dropped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(chunk.len());
                        let _ = chunk.split_to(dropped);
                        self.skip -= dropped as u64;
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    let end = self.offset.checked_add(chunk.len() as u64).ok_or_else(|| self.too_large(u64::MAX))?;
                    if let Some(size) = self.size.filter(|&size| end > size) {
                        return Err(self.too_large(size));
                    }
                    if self.verify {
                        self.digester.update(&chunk);
                    }
                    self.offset = end;
                    self.fruitless = 0;
                    return Ok(Some((chunk, self)));
                }
                Some(Err(e)) => self.lost(&e.to_string())?,
                None if self.size.is_some_and(|size| self.offset < size) => self.lost("the answer ended early")?,
                None => {
                    self.done = true;
                    let digester = std::mem::replace(&mut self.digester, Digester::new(self.digest.algorithm()));
                    let actual = digester.finalize();
                    if self.verify && actual != self.digest {
                        return Err(Error::DigestMismatch {
                            what: self.what(),
                            expected: self.digest.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn too_large(&self, size: u64) -> Error {
        Error::TooLarge { what: format!("{} (announced size)", self.what()), limit: size }
    }

    /// The connection was lost: the next turn asks for the rest.
    fn lost(&mut self, reason: &str) -> Result<()> {
        self.body = None;
        self.fruitless += 1;
        if self.fruitless > MAX_FRUITLESS_RESUMES {
            return Err(Error::Protocol {
                what: self.what(),
                reason: format!("cut {} times in a row without progress; last: {reason}", self.fruitless),
            });
        }
        self.resumes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(blob = %self.digest, offset = self.offset, reason, "download cut; resuming");
        Ok(())
    }

    /// Asks for the bytes from `offset` on. The request loop retries connections already;
    /// a request cut while its answer was being set up counts as one more fruitless resume.
    async fn open(&mut self) -> Result<BoxStream<'static, reqwest::Result<Bytes>>> {
        loop {
            match self.request().await {
                Err(Error::Transport { source, .. }) => self.lost(&source.to_string())?,
                answer => return answer,
            }
        }
    }

    async fn request(&mut self) -> Result<BoxStream<'static, reqwest::Result<Bytes>>> {
        let repository = &self.repository;
        let call = repository.call(
            Method::GET,
            &format!("{}/blobs/{}", repository.name, self.digest),
            repository.pull_scope(),
        );
        let offset = self.offset;
        let response = repository
            .client
            .send(&call, |r| if offset > 0 { r.header(RANGE, format!("bytes={offset}-")) } else { r })
            .await?;
        let response = Client::expect(&call, response, &[StatusCode::OK, StatusCode::PARTIAL_CONTENT]).await?;
        if response.status() == StatusCode::PARTIAL_CONTENT {
            let range = header_str(response.headers(), CONTENT_RANGE.as_str()).unwrap_or("");
            let start = crate::headers::content_range_start(range);
            if start != Some(offset) {
                return Err(Error::Protocol {
                    what: self.what(),
                    reason: format!("asked for bytes from {offset}, answered Content-Range {range:?}"),
                });
            }
        } else {
            self.skip = offset;
            if self.size.is_none() {
                self.size = response.content_length();
            }
        }
        Ok(response.bytes_stream().boxed())
    }
}
