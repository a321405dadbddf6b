//! Writers: multipart uploads in parts of `chunksize`, the tail kept between writes, and
//! what a resumed writer finds.

use super::*;

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone)]
pub(super) struct Part {
    number: i32,
    e_tag: Option<String>,
    size: u64,
}

impl Part {
    pub(super) fn completed(&self) -> CompletedPart {
        CompletedPart::builder().part_number(self.number).set_e_tag(self.e_tag.clone()).build()
    }
}

/// What a resumed writer continues from.
pub(super) struct Staged {
    pub(super) upload_id: Option<String>,
    pub(super) parts: Vec<Part>,
    pub(super) parts_size: u64,
    pub(super) tail: BytesMut,
}

impl Inner {
    /// Multipart uploads whose key starts with `prefix` and passes `wanted`. (The SDK has no
    /// paginator for ListMultipartUploads: its pages are marked by key and upload id.)
    pub(super) async fn uploads(&self, prefix: &str, wanted: impl Fn(&str) -> bool) -> Result<Vec<AbandonedUpload>> {
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
                if let (true, Some(path)) = (wanted(key), self.path_of(key)) {
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

    pub(super) async fn abort(&self, path: &str, upload_id: &str) -> Result<()> {
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

    pub(super) async fn delete_tail(&self, path: &str) -> Result<()> {
        let key = self.tail_key(path);
        match self.client.delete_object().bucket(&self.config.bucket).key(&key).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend("delete tail", path, e)),
        }
    }

    /// Multipart uploads of `path` itself.
    pub(super) async fn uploads_of(&self, path: &str) -> Result<Vec<AbandonedUpload>> {
        let key = self.key(path);
        self.uploads(&key, |k| k == key).await
    }

    /// Discards a staged write at `path`: its multipart uploads and its tail.
    pub(super) async fn discard_staged(&self, path: &str) -> Result<bool> {
        let uploads = self.uploads_of(path).await?;
        for upload in &uploads {
            self.abort(path, &upload.upload_id).await?;
        }
        let tail_key = self.tail_key(path);
        let had_tail = match self.client.head_object().bucket(&self.config.bucket).key(&tail_key).send().await {
            Ok(_) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(backend("stat tail", path, e)),
        };
        if had_tail {
            self.delete_tail(path).await?;
        }
        Ok(had_tail || !uploads.is_empty())
    }

    /// The tail object of a staged write: its bytes, the offset they start at, the upload id.
    pub(super) async fn read_tail(&self, path: &str) -> Result<Option<(Bytes, u64, Option<String>)>> {
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

    pub(super) async fn list_parts(&self, path: &str, upload_id: &str) -> Result<Vec<Part>> {
        let mut parts = Vec::new();
        let mut pages = self
            .client
            .list_parts()
            .bucket(&self.config.bucket)
            .key(self.key(path))
            .upload_id(upload_id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| backend("list parts", path, e))?;
            for part in page.parts() {
                parts.push(Part {
                    number: part.part_number().unwrap_or(0),
                    e_tag: part.e_tag().map(str::to_owned),
                    size: part.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                });
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Finds what a closed writer left at `path`, if anything.
    pub(super) async fn staged(&self, path: &str) -> Result<Option<Staged>> {
        let tail = self.read_tail(path).await?;
        let mut uploads = self.uploads_of(path).await?;
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
}

pub(super) struct S3Writer {
    pub(super) driver: S3Driver,
    pub(super) path: String,
    pub(super) staged: Staged,
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
    pub(super) fn inner(&self) -> &Inner {
        &self.driver.inner
    }

    pub(super) async fn upload_id(&mut self) -> Result<String> {
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
    pub(super) async fn upload_part(&mut self, len: usize) -> Result<()> {
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

    pub(super) async fn upload_full_parts(&mut self) -> Result<()> {
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
        // The content is published: a tail left behind is cleared by the next write or delete
        // of the path, and is no reason to report the commit failed.
        if let Err(e) = inner.delete_tail(&self.path).await {
            tracing::warn!(path = %self.path, error = %e, "could not delete the tail of a committed write");
        }
        Ok(())
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        let inner = &self.driver.inner;
        if let Some(upload_id) = &self.staged.upload_id {
            inner.abort(&self.path, upload_id).await?;
        }
        inner.discard_staged(&self.path).await.map(drop)
    }
}
