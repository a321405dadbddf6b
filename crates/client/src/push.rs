//! Blob and manifest uploads that continue where they stopped: after a failed request the
//! client asks the server how far the upload got and sends only the rest, so no blob is
//! sent twice from the start because one connection was lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};
use wharf_oci::{Descriptor, Digest, Manifest};

use crate::auth::Scope;
use crate::client::{Call, Client};
use crate::error::{Error, Result};
use crate::repository::{Repository, header_str, manifest_path};

/// The bytes of a blob to push, from any offset: an upload that stopped part-way asks for
/// the rest from where the server says it got to.
pub trait BlobSource: Send + Sync {
    /// The blob's bytes from `offset` to the end.
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<BoxStream<'static, Result<Bytes>>>>;
}

impl BlobSource for Bytes {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<BoxStream<'static, Result<Bytes>>>> {
        let rest = usize::try_from(offset).ok().and_then(|offset| self.get(offset..)).map(|_| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            self.slice(start..)
        });
        Box::pin(async move {
            let rest = rest.ok_or_else(|| Error::Protocol {
                what: "blob source".into(),
                reason: format!("offset {offset} is past the blob's end"),
            })?;
            Ok(futures::stream::once(async move { Ok(rest) }).boxed())
        })
    }
}

/// A blob in a registry as the source of a push elsewhere: read from any offset with a
/// `Range` request; the target checks the whole against its digest.
#[derive(Debug, Clone)]
pub struct RegistryBlob {
    /// Where the blob is.
    pub repository: Repository,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

impl BlobSource for RegistryBlob {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<BoxStream<'static, Result<Bytes>>>> {
        Box::pin(async move { Ok(self.repository.pull_blob_from(&self.digest, self.size, offset).boxed()) })
    }
}

/// How a blob got to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The target had it already.
    Skipped,
    /// The target linked it from another repository of its own.
    Mounted,
    /// Its bytes were sent.
    Uploaded {
        /// Bytes sent, counting any sent again after a failure.
        sent: u64,
        /// How many times the upload continued after a failed request.
        resumes: u32,
    },
}

/// How blobs are sent: one request, or chunks of a bounded size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    /// Blobs up to this size go in one `PUT`; larger ones in `PATCH`es, then a `PUT`.
    pub monolithic_max: u64,
    /// The largest request body to send, when something in front of the registry caps
    /// them; `None` to stream a blob in one `PATCH`. A 413 answer sets it for the host.
    pub max_chunk: Option<u64>,
}

impl Default for UploadOptions {
    fn default() -> UploadOptions {
        UploadOptions { monolithic_max: 8 << 20, max_chunk: None }
    }
}

/// The smallest chunk a 413 can bring the size down to.
const MIN_CHUNK: u64 = 64 << 10;

impl Repository {
    /// Reads blob `digest` of `size` bytes from `offset`, without checking the digest
    /// (a push's target checks the whole).
    pub(crate) fn pull_blob_from(&self, digest: &Digest, size: u64, offset: u64) -> crate::pull::BlobPull {
        crate::pull::BlobPull::from_offset(self, digest, size, offset)
    }

    /// Pushes blob `descriptor` from `source`: skipped when the repository has it, mounted
    /// from `mount_from` (a repository on the same registry) when given, or from wherever
    /// the registry holds it when it mounts without `from`; otherwise uploaded, continuing
    /// from the server's offset after any failed request. The push waits for a place among
    /// the host's transfers ([`ClientBuilder::transfers_per_host`](crate::ClientBuilder::transfers_per_host));
    /// reading `source` takes none.
    ///
    /// # Errors
    /// The last failure when the upload made no progress through the retry policy's
    /// attempts; [`Error::Status`] when the registry refuses the digest.
    pub async fn push_blob(
        &self,
        descriptor: &Descriptor,
        source: &dyn BlobSource,
        mount_from: Option<&str>,
    ) -> Result<BlobOutcome> {
        let _slots = self.client.transfer_slots(&[&self.host]).await;
        self.push_blob_in_slot(descriptor, source, mount_from).await
    }

    /// [`Repository::push_blob`] for a caller that holds the host's place already.
    pub(crate) async fn push_blob_in_slot(
        &self,
        descriptor: &Descriptor,
        source: &dyn BlobSource,
        mount_from: Option<&str>,
    ) -> Result<BlobOutcome> {
        let digest = &descriptor.digest;
        if self.blob_size(digest).await? == Some(descriptor.size) {
            return Ok(BlobOutcome::Skipped);
        }
        let mut location = match self.start_upload(digest, mount_from).await? {
            Started::Mounted => return Ok(BlobOutcome::Mounted),
            Started::Upload { location, min_chunk } => {
                self.client.learn_min_chunk(&self.host, min_chunk);
                location
            }
        };
        let size = descriptor.size;
        // The bytes read from the source are the bytes put in requests.
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let counted = Metered {
            source,
            meter: Arc::new(move |length, _| {
                counter.fetch_add(length, Ordering::Relaxed);
            }),
        };
        let source: &dyn BlobSource = &counted;
        let mut offset = 0;
        let mut resumes = 0;
        let mut fruitless = 0;
        loop {
            let options = self.client.upload_options(&self.host);
            let handed_before = sent.load(Ordering::Relaxed);
            let step =
                if offset == 0 && size <= options.monolithic_max && options.max_chunk.is_none_or(|max| size <= max) {
                    self.put_whole(&location, digest, size, source).await
                } else {
                    self.send_rest(&location, digest, size, offset, options.max_chunk, source).await
                };
            let Err(Failed { error, body_length, retry }) = step else {
                return Ok(BlobOutcome::Uploaded { sent: sent.load(Ordering::Relaxed), resumes });
            };
            if !retry {
                return Err(error);
            }
            if let Some(length) = body_length.filter(|&length| length > MIN_CHUNK) {
                // Something in front of the registry refused the body's size.
                let cap = (length / 2).max(MIN_CHUNK);
                tracing::info!(host = %self.host, cap, "request body too large; sending chunks");
                self.client.learn_max_chunk(&self.host, cap);
            }
            fruitless += 1;
            if fruitless > self.client.inner.retry.attempts {
                return Err(error);
            }
            tracing::info!(blob = %digest, error = %error, "upload failed; asking where it stands");
            let handed = sent.load(Ordering::Relaxed) > handed_before;
            let Some((reached, now_at)) = self.where_it_stands(&location, digest, offset, handed).await? else {
                return Ok(BlobOutcome::Mounted);
            };
            if reached > offset {
                fruitless = 0;
            }
            offset = reached.min(size);
            location = now_at;
            resumes += 1;
        }
    }

    /// Asks the server how far the upload at `location` got after a failed request, and
    /// where to continue: `None` when the blob turned up meanwhile. The server may still be
    /// taking in a request whose connection the client saw cut; when the bytes it reports
    /// have not moved past `offset` though some were `handed` to that request, it is asked
    /// again after a pause. An upload the server no longer knows starts anew.
    async fn where_it_stands(
        &self,
        location: &str,
        digest: &Digest,
        offset: u64,
        handed: bool,
    ) -> Result<Option<(u64, String)>> {
        let retry = self.client.inner.retry;
        let mut status = None;
        for attempt in 0..3 {
            tokio::time::sleep(retry.delay(attempt, None)).await;
            match self.upload_status(location).await {
                Ok((reached, now_at)) => {
                    let moved = reached > offset;
                    status = Some((reached, now_at));
                    if moved || !handed {
                        break;
                    }
                }
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                    return match self.start_upload(digest, None).await? {
                        Started::Upload { location, .. } => Ok(Some((0, location))),
                        Started::Mounted => Ok(None),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        Ok(status)
    }

    /// `POST` a mount of `digest`, from `mount_from` when given and otherwise from wherever
    /// the registry holds it (an anonymous mount), which becomes a new upload where the
    /// registry cannot mount. A registry that refuses a mount without `from` outright is
    /// asked again for a plain upload.
    async fn start_upload(&self, digest: &Digest, mount_from: Option<&str>) -> Result<Started> {
        let mut scopes = self.push_scope();
        let query = match mount_from {
            Some(from) => {
                scopes.push(Scope::pull(from));
                format!("?mount={digest}&from={from}")
            }
            None => format!("?mount={digest}"),
        };
        let call = self.call(Method::POST, &format!("{}/blobs/uploads/{query}", self.name), scopes);
        let response = self.client.send(&call, |r| r.header(CONTENT_LENGTH, "0")).await?;
        if mount_from.is_none() && response.status().is_client_error() {
            tracing::debug!(host = %self.host, status = %response.status(), "mount without from refused");
            return self.start_plain_upload().await;
        }
        self.started(&call, response).await
    }

    /// `POST` a new upload.
    async fn start_plain_upload(&self) -> Result<Started> {
        let call = self.call(Method::POST, &format!("{}/blobs/uploads/", self.name), self.push_scope());
        let response = self.client.send(&call, |r| r.header(CONTENT_LENGTH, "0")).await?;
        self.started(&call, response).await
    }

    /// What the answer to a `POST` of an upload says: mounted, or where to send the bytes.
    async fn started(&self, call: &Call<'_>, response: reqwest::Response) -> Result<Started> {
        let response = Client::expect(call, response, &[StatusCode::ACCEPTED, StatusCode::CREATED]).await?;
        if response.status() == StatusCode::CREATED {
            return Ok(Started::Mounted);
        }
        let min_chunk = header_str(response.headers(), "oci-chunk-min-length").and_then(|v| v.parse().ok());
        Ok(Started::Upload { location: self.location(call, response.headers())?, min_chunk })
    }

    /// The absolute address of an upload from a `Location` header.
    fn location(&self, call: &Call<'_>, headers: &reqwest::header::HeaderMap) -> Result<String> {
        let location = header_str(headers, LOCATION.as_str())
            .ok_or_else(|| Error::Protocol { what: call.url.clone(), reason: "no Location header".into() })?;
        reqwest::Url::parse(&call.url)
            .and_then(|base| base.join(location))
            .map(String::from)
            .map_err(|e| Error::Protocol { what: call.url.clone(), reason: format!("Location {location:?}: {e}") })
    }

    /// `GET` an upload: how many bytes it holds, and its address now.
    async fn upload_status(&self, location: &str) -> Result<(u64, String)> {
        let call = Call::new(Method::GET, &self.host, location.to_owned(), self.push_scope());
        let response = self.client.send(&call, |r| r).await?;
        let response = Client::expect(&call, response, &[StatusCode::NO_CONTENT, StatusCode::OK]).await?;
        let reached = header_str(response.headers(), RANGE.as_str())
            .and_then(crate::headers::upload_offset)
            .ok_or_else(|| Error::Protocol { what: call.url.clone(), reason: "no valid Range header".into() })?;
        let location = self.location(&call, response.headers()).unwrap_or_else(|_| location.to_owned());
        Ok((reached, location))
    }

    /// One `PUT` with the whole blob.
    async fn put_whole(
        &self,
        location: &str,
        digest: &Digest,
        size: u64,
        source: &dyn BlobSource,
    ) -> Result<(), Failed> {
        let url = with_digest(location, digest);
        let call = Call::new(Method::PUT, &self.host, url, self.push_scope()).once();
        let body = Body::stream(source.open(0).await.map_err(Failed::fatal)?);
        let response = self
            .client
            .send(&call, |r| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .body(body.request_body())
            })
            .await
            .map_err(|e| Failed::retry(e, None))?;
        finish(&call, response, size).await
    }

    /// `PATCH`es from `offset` to the end (in chunks of `max_chunk` when given), then the
    /// closing `PUT`.
    async fn send_rest(
        &self,
        location: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
        max_chunk: Option<u64>,
        source: &dyn BlobSource,
    ) -> Result<(), Failed> {
        let mut location = location.to_owned();
        let mut offset = offset;
        if offset < size {
            let mut stream = source.open(offset).await.map_err(Failed::fatal)?;
            match max_chunk {
                None => {
                    let length = size - offset;
                    location = self.patch(&location, offset, length, Body::stream(stream)).await?;
                }
                Some(max) => {
                    let mut pending = bytes::BytesMut::new();
                    while offset < size {
                        let want = usize::try_from(max.min(size - offset)).unwrap_or(usize::MAX);
                        while pending.len() < want {
                            match stream.next().await {
                                Some(chunk) => pending.extend_from_slice(&chunk.map_err(Failed::fatal)?),
                                None => break,
                            }
                        }
                        if pending.is_empty() {
                            break;
                        }
                        let chunk = pending.split_to(want.min(pending.len())).freeze();
                        let length = chunk.len() as u64;
                        location = self.patch(&location, offset, length, Body::Chunk(chunk)).await?;
                        offset += length;
                    }
                }
            }
        }
        let call = Call::new(Method::PUT, &self.host, with_digest(&location, digest), self.push_scope());
        let response =
            self.client.send(&call, |r| r.header(CONTENT_LENGTH, "0")).await.map_err(|e| Failed::retry(e, None))?;
        finish(&call, response, 0).await
    }

    /// One `PATCH` of `length` bytes at `offset`; the upload's address after it.
    async fn patch(&self, location: &str, offset: u64, length: u64, body: Body) -> Result<String, Failed> {
        let call = Call::new(Method::PATCH, &self.host, location.to_owned(), self.push_scope()).once();
        let end = offset + length - 1;
        let response = self
            .client
            .send(&call, |r| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, length)
                    .header(CONTENT_RANGE, format!("{offset}-{end}"))
                    .body(body.request_body())
            })
            .await
            .map_err(|e| Failed::retry(e, None))?;
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let error = crate::client::status_error(&call, response).await;
            return Err(Failed::retry(error, Some(length)));
        }
        if response.status() != StatusCode::ACCEPTED {
            let status = response.status();
            let error = crate::client::status_error(&call, response).await;
            return Err(if status.is_server_error() || status == StatusCode::RANGE_NOT_SATISFIABLE {
                Failed::retry(error, None)
            } else {
                Failed::fatal(error)
            });
        }
        self.location(&call, response.headers()).map_err(Failed::fatal)
    }

    /// Pushes `manifest` under `reference` (a tag, or its digest), its bytes exactly as
    /// they are. Children (blobs, the manifests of an index) must be there already.
    ///
    /// # Errors
    /// [`Error::Status`] naming what the registry refused (`MANIFEST_BLOB_UNKNOWN`, …);
    /// [`Error::DigestMismatch`] when the registry files it under another digest.
    pub async fn push_manifest(&self, reference: &str, manifest: &Manifest) -> Result<Digest> {
        let call = self.call(Method::PUT, &manifest_path(&self.name, reference), self.push_scope());
        let raw = manifest.raw().clone();
        let media_type = manifest.media_type().to_owned();
        let response =
            self.client.send(&call, |r| r.header(CONTENT_TYPE, media_type.as_str()).body(raw.clone())).await?;
        let response = Client::expect(&call, response, &[StatusCode::CREATED, StatusCode::OK]).await?;
        let digest = manifest.digest().clone();
        let subject_seen = response.headers().contains_key("oci-subject");
        if let Some(answered) = header_str(response.headers(), crate::repository::DOCKER_CONTENT_DIGEST)
            .and_then(|d| d.parse::<Digest>().ok())
            .filter(|d| d.algorithm() == digest.algorithm())
            && answered != digest
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest {}/{}:{reference} as filed", self.host, self.name),
                expected: digest.to_string(),
                actual: answered.to_string(),
            });
        }
        if let Some(subject) = manifest.subject()
            && !subject_seen
        {
            // No referrers API: keep the tag schema's index up to date.
            self.add_fallback_referrer(&subject.digest, manifest.descriptor()).await?;
        }
        Ok(digest)
    }

    /// Adds `referrer` to the index tagged `<alg>-<hex>` for `subject`, as registries
    /// without the referrers API are read.
    async fn add_fallback_referrer(&self, subject: &Digest, referrer: Descriptor) -> Result<()> {
        let mut manifests = self.fallback_referrers(subject).await?;
        if manifests.iter().any(|d| d.digest == referrer.digest) {
            return Ok(());
        }
        manifests.push(referrer);
        self.put_fallback_referrers(subject, &manifests).await
    }

    /// Takes `referrer` out of the index tagged `<alg>-<hex>` for `subject`, when it is
    /// listed there.
    pub(crate) async fn remove_fallback_referrer(&self, subject: &Digest, referrer: &Digest) -> Result<()> {
        let mut manifests = self.fallback_referrers(subject).await?;
        let before = manifests.len();
        manifests.retain(|d| &d.digest != referrer);
        if manifests.len() == before {
            return Ok(());
        }
        self.put_fallback_referrers(subject, &manifests).await
    }

    /// Pushes `manifests` as the index tagged `<alg>-<hex>` for `subject`.
    async fn put_fallback_referrers(&self, subject: &Digest, manifests: &[Descriptor]) -> Result<()> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": wharf_oci::media_type::OCI_IMAGE_INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index)
            .map_err(|e| Error::Protocol { what: "referrers index".into(), reason: e.to_string() })?;
        let call = self.call(
            Method::PUT,
            &manifest_path(&self.name, &crate::repository::fallback_tag(subject)),
            self.push_scope(),
        );
        let raw = Bytes::from(bytes);
        let response = self
            .client
            .send(&call, |r| r.header(CONTENT_TYPE, wharf_oci::media_type::OCI_IMAGE_INDEX).body(raw.clone()))
            .await?;
        Client::expect(&call, response, &[StatusCode::CREATED, StatusCode::OK]).await?;
        Ok(())
    }
}

/// Told of each chunk read from a stream: its length, and the offset in the blob after it.
pub(crate) type Meter = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// `stream`, which starts at `offset` in its blob, with `meter` told of every chunk.
pub(crate) fn metered(
    stream: BoxStream<'static, Result<Bytes>>,
    offset: u64,
    meter: Meter,
) -> BoxStream<'static, Result<Bytes>> {
    let mut reached = offset;
    stream
        .inspect_ok(move |chunk| {
            let length = chunk.len() as u64;
            reached = reached.saturating_add(length);
            meter(length, reached);
        })
        .boxed()
}

/// A source whose readers are metered: what a push counts as sent, what a copy reports.
pub(crate) struct Metered<'a> {
    pub(crate) source: &'a dyn BlobSource,
    pub(crate) meter: Meter,
}

impl BlobSource for Metered<'_> {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<BoxStream<'static, Result<Bytes>>>> {
        Box::pin(async move { Ok(metered(self.source.open(offset).await?, offset, self.meter.clone())) })
    }
}

/// A request body: a chunk in memory, sent again as it is when the request loop tries
/// again (after a 401, a 429), or a stream read once. A stream asked for a second time is
/// empty, so the request fails short of its `Content-Length` and the upload asks the
/// server where it stands and reopens the source there.
enum Body {
    Chunk(Bytes),
    Stream(std::sync::Mutex<Option<BoxStream<'static, Result<Bytes>>>>),
}

impl Body {
    fn stream(stream: BoxStream<'static, Result<Bytes>>) -> Body {
        Body::Stream(std::sync::Mutex::new(Some(stream)))
    }

    fn request_body(&self) -> reqwest::Body {
        match self {
            Body::Chunk(bytes) => reqwest::Body::from(bytes.clone()),
            Body::Stream(stream) => {
                let stream = stream.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                let stream = stream.unwrap_or_else(|| futures::stream::empty().boxed());
                reqwest::Body::wrap_stream(stream.map_err(Box::new))
            }
        }
    }
}

enum Started {
    Mounted,
    Upload { location: String, min_chunk: Option<u64> },
}

/// A failed step of an upload: whether asking the server and continuing may help, and the
/// body size refused with 413.
struct Failed {
    error: Error,
    body_length: Option<u64>,
    retry: bool,
}

impl Failed {
    fn retry(error: Error, body_length: Option<u64>) -> Failed {
        let retry = !matches!(error, Error::Unauthorized { .. } | Error::Credentials { .. } | Error::Token { .. });
        Failed { error, body_length, retry }
    }

    fn fatal(error: Error) -> Failed {
        Failed { error, body_length: None, retry: false }
    }
}

/// The closing `PUT`'s answer: 201, or a failure that may pass.
async fn finish(call: &Call<'_>, response: reqwest::Response, body_length: u64) -> Result<(), Failed> {
    let status = response.status();
    if status == StatusCode::CREATED || status == StatusCode::NO_CONTENT {
        return Ok(());
    }
    let error = crate::client::status_error(call, response).await;
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Err(Failed::retry(error, Some(body_length)));
    }
    if status.is_server_error() || status == StatusCode::RANGE_NOT_SATISFIABLE {
        return Err(Failed::retry(error, None));
    }
    Err(Failed::fatal(error))
}

/// An upload address with `digest=` added to its query.
fn with_digest(location: &str, digest: &Digest) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_joins_the_query() {
        let digest = Digest::sha256(b"");
        assert_eq!(
            with_digest("http://h/v2/a/blobs/uploads/u", &digest),
            format!("http://h/v2/a/blobs/uploads/u?digest={digest}")
        );
        assert_eq!(with_digest("http://h/u?_state=x", &digest), format!("http://h/u?_state=x&digest={digest}"));
    }
}
