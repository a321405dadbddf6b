//! The S3 backend: driver paths are object keys below `rootdirectory`, as in Distribution's
//! `s3` driver, so a bucket Distribution wrote is served as it is.
//!
//! A writer uploads its content as a multipart upload in parts of `chunksize` bytes. What is
//! left over when it is closed (less than a part, possibly under S3's 5 MiB minimum) is kept
//! in a *tail* object under `<rootdirectory>/.wharf+staging/tails/` (a key no driver path can
//! name), with the offset it starts at in its metadata. Resuming finds the upload with
//! ListMultipartUploads, its parts with ListParts, and reads the tail back; so a write
//! survives a restart without ever making a part smaller than S3 allows, and nothing is
//! visible at the path before commit. A write that never filled a part is committed with one
//! PutObject (zero-byte objects included).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier, ServerSideEncryption, StorageClass,
};
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::config::S3Config;
use crate::error::{Error, Result};
use crate::path::{dir_prefix, validate_dir_path, validate_path};
use crate::{ByteStream, Durability, FileInfo, FileWriter, Precondition, RedirectMethod, StorageDriver, Version};

const NAME: &str = "s3";
const STAGING: &str = ".wharf+staging/tails";
const OFFSET_KEY: &str = "wharf-offset";
const UPLOAD_KEY: &str = "wharf-upload-id";
/// How long a presigned URL stays valid (Distribution's choice).
const REDIRECT_EXPIRY: Duration = Duration::from_secs(20 * 60);
/// DeleteObjects takes at most this many keys.
const DELETE_BATCH: usize = 1000;

/// A store in an S3 bucket. Clones share the client.
#[derive(Clone)]
pub struct S3Driver {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: S3Config,
    /// `rootdirectory` with a trailing '/', or empty.
    root: String,
}

impl fmt::Debug for S3Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Driver")
            .field("bucket", &self.inner.config.bucket)
            .field("root", &self.inner.root)
            .field("endpoint", &self.inner.config.region_endpoint)
            .finish()
    }
}

/// A multipart upload nobody finished: a writer closed and never resumed, or a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbandonedUpload {
    /// The driver path the upload was writing.
    pub path: String,
    /// S3's id of the upload.
    pub upload_id: String,
    /// When it was started.
    pub initiated: SystemTime,
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone)]
struct Part {
    number: i32,
    e_tag: Option<String>,
    size: u64,
}

impl Part {
    fn completed(&self) -> CompletedPart {
        CompletedPart::builder().part_number(self.number).set_e_tag(self.e_tag.clone()).build()
    }
}

/// What a resumed writer continues from.
struct Staged {
    upload_id: Option<String>,
    parts: Vec<Part>,
    parts_size: u64,
    tail: BytesMut,
}

fn backend<E, R>(operation: &'static str, path: &str, e: SdkError<E, R>) -> Error
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    Error::backend(NAME, operation, path, DisplayErrorContext(&e).to_string())
}

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|response| response.status().as_u16())
}

fn is_not_found<E>(e: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(e.code(), Some("NoSuchKey" | "NotFound" | "NoSuchUpload")) || status(e) == Some(404)
}

fn system_time(time: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    time.and_then(|t| SystemTime::try_from(*t).ok()).unwrap_or(SystemTime::UNIX_EPOCH)
}

impl S3Driver {
    /// Connects to the configured bucket. Credentials are the configured keys, else the
    /// standard AWS chain (environment, profile, instance role…).
    ///
    /// # Errors
    /// [`Error::Config`] for an unusable setting (an endpoint that is not a URL).
    pub async fn new(config: S3Config) -> Result<S3Driver> {
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).region(Region::new(config.region.clone()));
        if let (Some(access), Some(secret)) = (&config.access_key, &config.secret_key) {
            loader = loader.credentials_provider(Credentials::new(access, secret, None, None, "wharf-config"));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.force_path_style)
            // S3-compatible servers vary in their support of the newer checksums; content is
            // verified by digest above this layer anyway.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &config.region_endpoint {
            let endpoint = if endpoint.contains("://") {
                endpoint.clone()
            } else {
                format!("{}://{endpoint}", if config.secure { "https" } else { "http" })
            };
            url::Url::parse(&endpoint)
                .map_err(|e| Error::Config(format!("storage.s3.regionendpoint: {endpoint:?} is not a URL: {e}")))?;
            builder = builder.endpoint_url(endpoint);
        }
        let root = match config.root_directory.trim_matches('/') {
            "" => String::new(),
            root => format!("{root}/"),
        };
        Ok(S3Driver { inner: Arc::new(Inner { client: Client::from_conf(builder.build()), config, root }) })
    }

    /// The S3 client, for operations this driver does not cover (creating the bucket, say).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Multipart uploads below the root started before `older_than`: writes that were closed
    /// and never resumed, or cut short by a crash. They cost storage until aborted.
    ///
    /// # Errors
    /// [`Error::Backend`] when listing fails.
    pub async fn abandoned_uploads(&self, older_than: SystemTime) -> Result<Vec<AbandonedUpload>> {
        let uploads = self.inner.uploads(&self.inner.root, "/").await?;
        Ok(uploads
            .into_iter()
            .filter(|u| u.initiated < older_than)
            .filter(|u| validate_path(NAME, &u.path).is_ok())
            .collect())
    }

    /// Aborts an abandoned upload and drops its tail.
    ///
    /// # Errors
    /// [`Error::Backend`] when S3 refuses.
    pub async fn abort_upload(&self, upload: &AbandonedUpload) -> Result<()> {
        self.inner.abort(&upload.path, &upload.upload_id).await?;
        self.inner.delete_tail(&upload.path).await
    }
}

impl Inner {
    fn key(&self, path: &str) -> String {
        format!("{}{}", self.root, &path[1..])
    }

    /// The key prefix of everything below directory `path` (the whole root for `/`).
    fn dir_key(&self, path: &str) -> String {
        if path == "/" { self.root.clone() } else { format!("{}/", self.key(path)) }
    }

    fn path_of(&self, key: &str) -> Option<String> {
        let path = format!("/{}", key.strip_prefix(&self.root)?);
        validate_path(NAME, &path).is_ok().then_some(path)
    }

    fn tail_key(&self, path: &str) -> String {
        format!("{}{STAGING}{path}", self.root)
    }

    async fn head(&self, path: &str) -> Result<Option<(u64, SystemTime)>> {
        let key = self.key(path);
        match self.client.head_object().bucket(&self.config.bucket).key(&key).send().await {
            Ok(head) => Ok(Some((
                head.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                system_time(head.last_modified()),
            ))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend("stat", path, e)),
        }
    }

    async fn put(&self, path: &str, key: &str, content: Bytes, metadata: &[(&str, String)]) -> Result<()> {
        self.put_object(key, content, metadata).send().await.map_err(|e| backend("put", path, e))?;
        Ok(())
    }

    fn put_object(
        &self,
        key: &str,
        content: Bytes,
        metadata: &[(&str, String)],
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.config.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .body(S3Body::from(content));
        if self.config.encrypt {
            request = request.server_side_encryption(ServerSideEncryption::Aes256);
        }
        if self.config.storage_class != "NONE" && !key.contains(STAGING) {
            request = request.storage_class(StorageClass::from(self.config.storage_class.as_str()));
        }
        for (name, value) in metadata {
            request = request.metadata(*name, value);
        }
        request
    }

    /// Multipart uploads whose key is `path`'s, or below it when `scope` is `"/"`-terminated.
    async fn uploads(&self, prefix: &str, scope: &str) -> Result<Vec<AbandonedUpload>> {
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.config.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| backend("list uploads", prefix, e))?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let wanted = if scope == "/" { key.starts_with(prefix) } else { key == prefix };
                if let (true, Some(path)) = (wanted, self.path_of(key)) {
                    found.push(AbandonedUpload {
                        path,
                        upload_id: id.to_owned(),
                        initiated: system_time(upload.initiated()),
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(found)
    }

    async fn abort(&self, path: &str, upload_id: &str) -> Result<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.config.bucket)
            .key(self.key(path))
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend("abort upload", path, e)),
        }
    }

    async fn delete_tail(&self, path: &str) -> Result<()> {
        let key = self.tail_key(path);
        match self.client.delete_object().bucket(&self.config.bucket).key(&key).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend("delete tail", path, e)),
        }
    }

    /// Discards a staged write at `path`: its multipart uploads and its tail.
    async fn discard_staged(&self, path: &str) -> Result<bool> {
        let uploads = self.uploads(&self.key(path), "").await?;
        for upload in &uploads {
            self.abort(path, &upload.upload_id).await?;
        }
        let had_tail = self.read_tail(path).await?.is_some();
        if had_tail {
            self.delete_tail(path).await?;
        }
        Ok(had_tail || !uploads.is_empty())
    }

    /// The tail object of a staged write: its bytes, the offset they start at, the upload id.
    async fn read_tail(&self, path: &str) -> Result<Option<(Bytes, u64, Option<String>)>> {
        let key = self.tail_key(path);
        let object = match self.client.get_object().bucket(&self.config.bucket).key(&key).send().await {
            Ok(object) => object,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(backend("read tail", path, e)),
        };
        let metadata = object.metadata().cloned().unwrap_or_default();
        let offset = metadata
            .get(OFFSET_KEY)
            .and_then(|o| o.parse().ok())
            .ok_or_else(|| Error::backend(NAME, "read tail", path, format!("tail object {key} has no offset")))?;
        let upload_id = metadata.get(UPLOAD_KEY).filter(|id| !id.is_empty()).cloned();
        let bytes = object.body.collect().await.map_err(|e| Error::backend(NAME, "read tail", path, e))?;
        Ok(Some((bytes.into_bytes(), offset, upload_id)))
    }

    async fn list_parts(&self, path: &str, upload_id: &str) -> Result<Vec<Part>> {
        let mut parts = Vec::new();
        let mut marker = None::<String>;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.config.bucket)
                .key(self.key(path))
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| backend("list parts", path, e))?;
            for part in page.parts() {
                parts.push(Part {
                    number: part.part_number().unwrap_or(0),
                    e_tag: part.e_tag().map(str::to_owned),
                    size: part.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                });
            }
            marker = page.next_part_number_marker().map(str::to_owned);
            if page.is_truncated() != Some(true) || marker.is_none() {
                break;
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Finds what a closed writer left at `path`, if anything.
    async fn staged(&self, path: &str) -> Result<Option<Staged>> {
        let tail = self.read_tail(path).await?;
        let mut uploads = self.uploads(&self.key(path), "").await?;
        uploads.sort_by_key(|u| u.initiated);
        let upload = match tail.as_ref().and_then(|(_, _, id)| id.as_ref()) {
            Some(id) => uploads.iter().find(|u| &u.upload_id == id),
            None => uploads.last(),
        };
        let (upload_id, parts) = match upload {
            Some(upload) => (Some(upload.upload_id.clone()), self.list_parts(path, &upload.upload_id).await?),
            None => (None, Vec::new()),
        };
        if tail.is_none() && upload_id.is_none() {
            return Ok(None);
        }
        // Parts are numbered from 1 without gaps; a gap means a part upload never finished,
        // and what follows it cannot be used.
        let parts: Vec<Part> =
            parts.into_iter().enumerate().take_while(|(i, p)| p.number == *i as i32 + 1).map(|(_, p)| p).collect();
        let parts_size: u64 = parts.iter().map(|p| p.size).sum();
        // The tail starts where the parts ended when it was written; a part uploaded after it
        // (a close cut short) may already hold some or all of its bytes.
        let tail = match tail {
            Some((bytes, offset, _)) if offset <= parts_size => {
                let skip = ((parts_size - offset) as usize).min(bytes.len());
                BytesMut::from(&bytes[skip..])
            }
            Some((_, offset, _)) => {
                return Err(Error::backend(
                    NAME,
                    "resume",
                    path,
                    format!("tail starts at {offset} but the parts hold only {parts_size} bytes"),
                ));
            }
            None => BytesMut::new(),
        };
        Ok(Some(Staged { upload_id, parts, parts_size, tail }))
    }

    async fn list_keys(&self, prefix: &str, start_after: Option<String>) -> Result<Vec<(String, u64, SystemTime)>> {
        let mut keys = Vec::new();
        let mut token = None::<String>;
        let mut start_after = start_after;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(prefix)
                .set_start_after(start_after.take())
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| backend("list", prefix, e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    let size = object.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
                    keys.push((key.to_owned(), size, system_time(object.last_modified())));
                }
            }
            token = page.next_continuation_token().map(str::to_owned);
            if page.is_truncated() != Some(true) || token.is_none() {
                break;
            }
        }
        Ok(keys)
    }

    async fn delete_keys(&self, path: &str, keys: Vec<String>) -> Result<()> {
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::backend(NAME, "delete", path, e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::backend(NAME, "delete", path, e))?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.config.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| backend("delete", path, e))?;
            if let Some(failed) = output.errors().first() {
                return Err(Error::backend(
                    NAME,
                    "delete",
                    path,
                    format!("{}: {}", failed.key().unwrap_or("?"), failed.message().unwrap_or("refused")),
                ));
            }
        }
        Ok(())
    }

    async fn copy(&self, from: &str, to: &str, size: u64) -> Result<()> {
        let source = format!("{}/{}", self.config.bucket, self.key(from));
        if size <= self.config.multipart_copy_threshold_size {
            let mut request =
                self.client.copy_object().bucket(&self.config.bucket).key(self.key(to)).copy_source(&source);
            if self.config.encrypt {
                request = request.server_side_encryption(ServerSideEncryption::Aes256);
            }
            request.send().await.map_err(|e| backend("copy", from, e))?;
            return Ok(());
        }
        let mut create = self.client.create_multipart_upload().bucket(&self.config.bucket).key(self.key(to));
        if self.config.encrypt {
            create = create.server_side_encryption(ServerSideEncryption::Aes256);
        }
        let upload_id = create
            .send()
            .await
            .map_err(|e| backend("copy", from, e))?
            .upload_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::backend(NAME, "copy", from, "no upload id"))?;
        let chunk = self.config.multipart_copy_chunk_size;
        let ranges: Vec<(i32, u64, u64)> =
            (0..size.div_ceil(chunk)).map(|i| (i as i32 + 1, i * chunk, ((i + 1) * chunk).min(size) - 1)).collect();
        let copied: Result<Vec<CompletedPart>> = stream::iter(ranges)
            .map(|(number, first, last)| {
                let (source, upload_id, key) = (&source, &upload_id, self.key(to));
                async move {
                    let output = self
                        .client
                        .upload_part_copy()
                        .bucket(&self.config.bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .copy_source(source)
                        .copy_source_range(format!("bytes={first}-{last}"))
                        .send()
                        .await
                        .map_err(|e| backend("copy part", from, e))?;
                    let e_tag = output.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned);
                    Ok(CompletedPart::builder().part_number(number).set_e_tag(e_tag).build())
                }
            })
            .buffered(self.config.multipart_copy_max_concurrency)
            .try_collect()
            .await;
        let parts = match copied {
            Ok(parts) => parts,
            Err(e) => {
                let _ = self.abort(to, &upload_id).await;
                return Err(e);
            }
        };
        self.client
            .complete_multipart_upload()
            .bucket(&self.config.bucket)
            .key(self.key(to))
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| backend("complete copy", from, e))?;
        Ok(())
    }
}

#[async_trait]
impl StorageDriver for S3Driver {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        validate_path(NAME, path)?;
        let inner = &self.inner;
        match inner.client.get_object().bucket(&inner.config.bucket).key(inner.key(path)).send().await {
            Ok(object) => {
                Ok(object.body.collect().await.map_err(|e| Error::backend(NAME, "read", path, e))?.into_bytes())
            }
            Err(e) if is_not_found(&e) => Err(Error::not_found(NAME, path)),
            Err(e) => Err(backend("read", path, e)),
        }
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<()> {
        validate_path(NAME, path)?;
        self.inner.put(path, &self.inner.key(path), content, &[]).await
    }

    async fn get_versioned(&self, path: &str) -> Result<(Bytes, Version)> {
        validate_path(NAME, path)?;
        let inner = &self.inner;
        match inner.client.get_object().bucket(&inner.config.bucket).key(inner.key(path)).send().await {
            Ok(object) => {
                let version = object
                    .e_tag()
                    .map(Version::new)
                    .ok_or_else(|| Error::backend(NAME, "read", path, "the object has no ETag"))?;
                let content = object.body.collect().await.map_err(|e| Error::backend(NAME, "read", path, e))?;
                Ok((content.into_bytes(), version))
            }
            Err(e) if is_not_found(&e) => Err(Error::not_found(NAME, path)),
            Err(e) => Err(backend("read", path, e)),
        }
    }

    /// `If-None-Match: *` or `If-Match: <ETag>` on PutObject, which S3 checks atomically
    /// (412 when the condition fails, 409 when another conditional write of the key is in
    /// flight). Every S3 write is durable.
    async fn put_if(
        &self,
        path: &str,
        content: Bytes,
        precondition: Precondition,
        _durability: Durability,
    ) -> Result<Version> {
        validate_path(NAME, path)?;
        let inner = &self.inner;
        let request = inner.put_object(&inner.key(path), content, &[]);
        let request = match &precondition {
            Precondition::Absent => request.if_none_match("*"),
            Precondition::Matches(version) => request.if_match(version.as_str()),
        };
        match request.send().await {
            Ok(output) => output
                .e_tag()
                .map(Version::new)
                .ok_or_else(|| Error::backend(NAME, "conditional put", path, "the answer has no ETag")),
            Err(e)
                if matches!(status(&e), Some(409 | 412))
                    || (matches!(precondition, Precondition::Matches(_)) && is_not_found(&e)) =>
            {
                Err(match precondition {
                    Precondition::Absent => Error::AlreadyExists { driver: NAME, path: path.to_owned() },
                    Precondition::Matches(_) => Error::Precondition { driver: NAME, path: path.to_owned() },
                })
            }
            Err(e) => Err(backend("conditional put", path, e)),
        }
    }

    async fn reader(&self, path: &str, offset: u64) -> Result<ByteStream> {
        validate_path(NAME, path)?;
        let inner = &self.inner;
        let request = inner.client.get_object().bucket(&inner.config.bucket).key(inner.key(path));
        let request = if offset > 0 { request.range(format!("bytes={offset}-")) } else { request };
        let object = match request.send().await {
            Ok(object) => object,
            Err(e) if is_not_found(&e) => return Err(Error::not_found(NAME, path)),
            // A range starting at or past the end: S3 answers 416; tell the two apart.
            Err(e) if e.code() == Some("InvalidRange") || status(&e) == Some(416) => {
                let (size, _) = inner.head(path).await?.ok_or_else(|| Error::not_found(NAME, path))?;
                if offset == size {
                    return Ok(stream::empty().boxed());
                }
                return Err(Error::InvalidOffset { driver: NAME, path: path.to_owned(), offset, size });
            }
            Err(e) => return Err(backend("read", path, e)),
        };
        let path = path.to_owned();
        Ok(stream::try_unfold(object.body, move |mut body| {
            let path = path.clone();
            async move {
                match body.try_next().await {
                    Ok(Some(chunk)) => Ok(Some((chunk, body))),
                    Ok(None) => Ok(None),
                    Err(e) => Err(Error::backend(NAME, "read", &path, e)),
                }
            }
        })
        .boxed())
    }

    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>> {
        validate_path(NAME, path)?;
        let staged = if append {
            match self.inner.staged(path).await? {
                Some(staged) => staged,
                None => match self.inner.head(path).await? {
                    Some((0, _)) => Staged { upload_id: None, parts: Vec::new(), parts_size: 0, tail: BytesMut::new() },
                    _ => return Err(Error::not_found(NAME, path)),
                },
            }
        } else {
            self.inner.discard_staged(path).await?;
            Staged { upload_id: None, parts: Vec::new(), parts_size: 0, tail: BytesMut::new() }
        };
        Ok(Box::new(S3Writer { driver: self.clone(), path: path.to_owned(), staged }))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        validate_dir_path(NAME, path)?;
        if path != "/"
            && let Some((size, modified)) = self.inner.head(path).await?
        {
            return Ok(FileInfo { path: path.to_owned(), size, modified, is_dir: false });
        }
        let inner = &self.inner;
        let below = inner
            .client
            .list_objects_v2()
            .bucket(&inner.config.bucket)
            .prefix(inner.dir_key(path))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| backend("stat", path, e))?;
        if path == "/" || !below.contents().is_empty() {
            return Ok(FileInfo { path: path.to_owned(), size: 0, modified: SystemTime::now(), is_dir: true });
        }
        Err(Error::not_found(NAME, path))
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        validate_dir_path(NAME, path)?;
        let inner = &self.inner;
        let prefix = inner.dir_key(path);
        let parent = dir_prefix(path);
        let mut children = BTreeSet::new();
        let mut token = None::<String>;
        loop {
            let page = inner
                .client
                .list_objects_v2()
                .bucket(&inner.config.bucket)
                .prefix(&prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| backend("list", path, e))?;
            let files = page.contents().iter().filter_map(|o| o.key());
            let dirs = page.common_prefixes().iter().filter_map(|p| p.prefix()).map(|p| p.trim_end_matches('/'));
            for key in files.chain(dirs) {
                // A key with an empty segment (`<dir>//x`) lists as a prefix shorter than the
                // folder's: it names no path.
                let Some(name) = key.strip_prefix(prefix.as_str()).filter(|name| !name.is_empty()) else { continue };
                let child = format!("{parent}{name}");
                if validate_path(NAME, &child).is_ok() {
                    children.insert(child);
                }
            }
            token = page.next_continuation_token().map(str::to_owned);
            if page.is_truncated() != Some(true) || token.is_none() {
                break;
            }
        }
        if children.is_empty() && path != "/" {
            return Err(Error::not_found(NAME, path));
        }
        Ok(children.into_iter().collect())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        validate_path(NAME, from)?;
        validate_path(NAME, to)?;
        let (size, _) = self.inner.head(from).await?.ok_or_else(|| Error::not_found(NAME, from))?;
        if from == to {
            return Ok(());
        }
        self.inner.copy(from, to, size).await?;
        self.inner.delete_keys(from, vec![self.inner.key(from)]).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        validate_path(NAME, path)?;
        let inner = &self.inner;
        let mut keys: Vec<String> =
            inner.list_keys(&inner.dir_key(path), None).await?.into_iter().map(|(key, ..)| key).collect();
        if inner.head(path).await?.is_some() {
            keys.push(inner.key(path));
        }
        // Staged writes at the path and below it: their uploads and tails.
        let mut staged = inner.uploads(&inner.key(path), "").await?;
        staged.extend(inner.uploads(&inner.dir_key(path), "/").await?);
        for upload in &staged {
            inner.abort(&upload.path, &upload.upload_id).await?;
        }
        let tail_dir = format!("{}/", inner.tail_key(path));
        let mut tails: Vec<String> = inner.list_keys(&tail_dir, None).await?.into_iter().map(|(key, ..)| key).collect();
        if inner.read_tail(path).await?.is_some() {
            tails.push(inner.tail_key(path));
        }
        let found = !keys.is_empty() || !staged.is_empty() || !tails.is_empty();
        keys.extend(tails);
        inner.delete_keys(path, keys).await?;
        if found { Ok(()) } else { Err(Error::not_found(NAME, path)) }
    }

    fn walk(&self, path: &str, start_after: Option<&str>) -> BoxStream<'static, Result<FileInfo>> {
        if let Err(e) = validate_dir_path(NAME, path) {
            return stream::once(async move { Err(e) }).boxed();
        }
        let inner = self.inner.clone();
        let prefix = inner.dir_key(path);
        let start =
            start_after.filter(|after| *after != "/").map(|after| inner.key(after)).filter(|key| key >= &prefix);
        // Pages of ListObjectsV2, fetched as the stream is read.
        stream::try_unfold(Some((None::<String>, start)), move |state| {
            let (inner, prefix) = (inner.clone(), prefix.clone());
            async move {
                let Some((token, start)) = state else {
                    return Ok(None);
                };
                let page = inner
                    .client
                    .list_objects_v2()
                    .bucket(&inner.config.bucket)
                    .prefix(&prefix)
                    .set_start_after(start)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(|e| backend("walk", &prefix, e))?;
                let files: Vec<Result<FileInfo>> = page
                    .contents()
                    .iter()
                    .filter_map(|object| {
                        let path = inner.path_of(object.key()?)?;
                        Some(Ok(FileInfo {
                            path,
                            size: object.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                            modified: system_time(object.last_modified()),
                            is_dir: false,
                        }))
                    })
                    .collect();
                let next = match (page.is_truncated(), page.next_continuation_token()) {
                    (Some(true), Some(token)) => Some((Some(token.to_owned()), None)),
                    _ => None,
                };
                Ok(Some((stream::iter(files), next)))
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn redirect_url(&self, path: &str, method: RedirectMethod) -> Result<Option<url::Url>> {
        validate_path(NAME, path)?;
        let inner = &self.inner;
        let presigning =
            PresigningConfig::expires_in(REDIRECT_EXPIRY).map_err(|e| Error::backend(NAME, "presign", path, e))?;
        let request = match method {
            RedirectMethod::Get => inner
                .client
                .get_object()
                .bucket(&inner.config.bucket)
                .key(inner.key(path))
                .presigned(presigning)
                .await
                .map_err(|e| backend("presign", path, e))?,
            RedirectMethod::Head => inner
                .client
                .head_object()
                .bucket(&inner.config.bucket)
                .key(inner.key(path))
                .presigned(presigning)
                .await
                .map_err(|e| backend("presign", path, e))?,
        };
        let url = url::Url::parse(request.uri()).map_err(|e| Error::backend(NAME, "presign", path, e))?;
        Ok(Some(url))
    }
}

struct S3Writer {
    driver: S3Driver,
    path: String,
    staged: Staged,
}

impl fmt::Debug for S3Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Writer")
            .field("path", &self.path)
            .field("upload_id", &self.staged.upload_id)
            .field("parts", &self.staged.parts.len())
            .field("size", &self.size())
            .finish()
    }
}

impl S3Writer {
    fn inner(&self) -> &Inner {
        &self.driver.inner
    }

    async fn upload_id(&mut self) -> Result<String> {
        if let Some(id) = &self.staged.upload_id {
            return Ok(id.clone());
        }
        let inner = &self.driver.inner;
        let mut create = inner.client.create_multipart_upload().bucket(&inner.config.bucket).key(inner.key(&self.path));
        if inner.config.encrypt {
            create = create.server_side_encryption(ServerSideEncryption::Aes256);
        }
        if inner.config.storage_class != "NONE" {
            create = create.storage_class(StorageClass::from(inner.config.storage_class.as_str()));
        }
        let id = create
            .send()
            .await
            .map_err(|e| backend("start upload", &self.path, e))?
            .upload_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::backend(NAME, "start upload", &self.path, "no upload id"))?;
        self.staged.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Uploads the first `len` bytes of the tail as the next part.
    async fn upload_part(&mut self, len: usize) -> Result<()> {
        let upload_id = self.upload_id().await?;
        let data = self.staged.tail.split_to(len).freeze();
        let number = self.staged.parts.len() as i32 + 1;
        let inner = &self.driver.inner;
        let output = inner
            .client
            .upload_part()
            .bucket(&inner.config.bucket)
            .key(inner.key(&self.path))
            .upload_id(&upload_id)
            .part_number(number)
            .body(S3Body::from(data))
            .send()
            .await
            .map_err(|e| backend("upload part", &self.path, e))?;
        self.staged.parts.push(Part { number, e_tag: output.e_tag().map(str::to_owned), size: len as u64 });
        self.staged.parts_size += len as u64;
        Ok(())
    }

    async fn upload_full_parts(&mut self) -> Result<()> {
        let chunk = self.inner().config.chunk_size as usize;
        while self.staged.tail.len() >= chunk {
            self.upload_part(chunk).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl FileWriter for S3Writer {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.staged.tail.extend_from_slice(&data);
        self.upload_full_parts().await
    }

    fn size(&self) -> u64 {
        self.staged.parts_size + self.staged.tail.len() as u64
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.upload_full_parts().await?;
        let inner = &self.driver.inner;
        let metadata = [
            (OFFSET_KEY, self.staged.parts_size.to_string()),
            (UPLOAD_KEY, self.staged.upload_id.clone().unwrap_or_default()),
        ];
        let tail = self.staged.tail.clone().freeze();
        inner.put(&self.path, &inner.tail_key(&self.path), tail, &metadata).await
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let inner = self.driver.inner.clone();
        match self.staged.upload_id.clone() {
            // Never filled a part: one plain PutObject (which is also how an empty file works).
            None => {
                let content = std::mem::take(&mut self.staged.tail).freeze();
                inner.put(&self.path, &inner.key(&self.path), content, &[]).await?;
            }
            Some(upload_id) => {
                if !self.staged.tail.is_empty() {
                    let len = self.staged.tail.len();
                    self.upload_part(len).await?;
                }
                let parts: Vec<CompletedPart> = self.staged.parts.iter().map(Part::completed).collect();
                inner
                    .client
                    .complete_multipart_upload()
                    .bucket(&inner.config.bucket)
                    .key(inner.key(&self.path))
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await
                    .map_err(|e| backend("complete upload", &self.path, e))?;
            }
        }
        inner.delete_tail(&self.path).await
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        let inner = &self.driver.inner;
        if let Some(upload_id) = &self.staged.upload_id {
            inner.abort(&self.path, upload_id).await?;
        }
        inner.discard_staged(&self.path).await.map(drop)
    }
}
