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
//!
//! Bulk calls take few requests: `walk` reads a thousand keys a ListObjectsV2 page,
//! `rename_many` is one CopyObject a file plus one DeleteObjects a thousand sources, and
//! `delete_files` one DeleteObjects a thousand files.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
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
use crate::{
    BULK_CONCURRENCY, ByteStream, Durability, FileInfo, FileWriter, Precondition, RedirectMethod, StorageDriver,
    Version,
};

mod copy;
mod list;
mod writer;

use writer::{S3Writer, Staged};

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

    /// This driver with `interceptor` added to its client, to count, trace or refuse the
    /// requests it sends. The driver it is made from keeps its own client.
    #[must_use]
    pub fn with_interceptor(&self, interceptor: impl aws_sdk_s3::config::Intercept + 'static) -> S3Driver {
        let config = self.inner.client.config().to_builder().interceptor(interceptor).build();
        S3Driver {
            inner: Arc::new(Inner {
                client: Client::from_conf(config),
                config: self.inner.config.clone(),
                root: self.inner.root.clone(),
            }),
        }
    }

    /// Multipart uploads below the root started before `older_than`: writes that were closed
    /// and never resumed, or cut short by a crash. They cost storage until aborted.
    ///
    /// # Errors
    /// [`Error::Backend`] when listing fails.
    pub async fn abandoned_uploads(&self, older_than: SystemTime) -> Result<Vec<AbandonedUpload>> {
        let uploads = self.inner.uploads(&self.inner.root, |_| true).await?;
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
        let mut pages = inner.object_pages(&prefix, true, None);
        while let Some(page) = pages.try_next().await? {
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
        let key = inner.key(path);
        let (at, below) = inner.names(&key).await?;
        inner.delete_tree(path, &key, at, below).await?;
        // Staged writes at the path and below it: their uploads and tails.
        let below_key = format!("{key}/");
        let staged = inner.uploads(&key, |k| k == key || k.starts_with(&below_key)).await?;
        for upload in &staged {
            inner.abort(&upload.path, &upload.upload_id).await?;
        }
        let tail_key = inner.tail_key(path);
        let (tail_at, tails_below) = inner.names(&tail_key).await?;
        inner.delete_tree(path, &tail_key, tail_at, tails_below).await?;
        if at || below || !staged.is_empty() || tail_at || tails_below {
            Ok(())
        } else {
            Err(Error::not_found(NAME, path))
        }
    }

    /// CopyObject for each move, a DeleteObjects for each thousand sources copied. Between
    /// the two a file is at both paths.
    async fn rename_many(&self, moves: Vec<(String, String)>) -> Result<Vec<bool>> {
        for (from, to) in &moves {
            validate_path(NAME, from)?;
            validate_path(NAME, to)?;
        }
        let inner = &self.inner;
        let copied: Vec<Result<bool>> = stream::iter(moves.clone())
            .map(|(from, to)| {
                let inner = inner.clone();
                async move {
                    if from == to {
                        inner.head(&from).await.map(|found| found.is_some())
                    } else {
                        inner.copy_for_move(&from, &to).await
                    }
                }
            })
            .buffered(BULK_CONCURRENCY)
            .collect()
            .await;
        // The sources of every copy made go, even when another copy failed.
        let sources: Vec<String> = moves
            .iter()
            .zip(&copied)
            .filter(|((from, to), copied)| from != to && matches!(copied, Ok(true)))
            .map(|((from, _), _)| inner.key(from))
            .collect();
        let deleted = inner.delete_keys("/", sources).await;
        let found = copied.into_iter().collect::<Result<Vec<bool>>>()?;
        deleted?;
        Ok(found)
    }

    /// DeleteObjects, a thousand paths a request.
    async fn delete_files(&self, paths: Vec<String>) -> Result<()> {
        for path in &paths {
            validate_path(NAME, path)?;
        }
        let keys = paths.iter().map(|path| self.inner.key(path)).collect();
        self.inner.delete_keys("/", keys).await
    }

    fn walk(&self, path: &str, start_after: Option<&str>) -> BoxStream<'static, Result<FileInfo>> {
        if let Err(e) = validate_dir_path(NAME, path) {
            return stream::once(async move { Err(e) }).boxed();
        }
        let inner = self.inner.clone();
        let prefix = inner.dir_key(path);
        let start =
            start_after.filter(|after| *after != "/").map(|after| inner.key(after)).filter(|key| key >= &prefix);
        inner
            .object_pages(&prefix, false, start)
            .map_ok(move |page| {
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
                stream::iter(files)
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
