//! Server-side copies: one CopyObject, or a multipart copy for big objects.

use super::*;

impl Inner {
    pub(super) fn copy_source(&self, from: &str) -> String {
        format!("{}/{}", self.config.bucket, self.key(from))
    }

    /// One CopyObject of `from` to `to` (for objects up to 5 GiB).
    pub(super) fn copy_object(
        &self,
        from: &str,
        to: &str,
    ) -> aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder {
        let request =
            self.client.copy_object().bucket(&self.config.bucket).key(self.key(to)).copy_source(self.copy_source(from));
        if self.config.encrypt { request.server_side_encryption(ServerSideEncryption::Aes256) } else { request }
    }

    /// Copies `from` to `to` for a bulk move: one CopyObject, or, for an object too big for
    /// one, a multipart copy. Answers whether `from` was there.
    pub(super) async fn copy_for_move(&self, from: &str, to: &str) -> Result<bool> {
        match self.copy_object(from, to).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) if status(&e) == Some(400) && matches!(e.code(), Some("InvalidRequest" | "EntityTooLarge")) => {
                match self.head(from).await? {
                    Some((size, _)) => self.copy(from, to, size).await.map(|()| true),
                    None => Ok(false),
                }
            }
            Err(e) => Err(backend("copy", from, e)),
        }
    }

    pub(super) async fn copy(&self, from: &str, to: &str, size: u64) -> Result<()> {
        let source = self.copy_source(from);
        if size <= self.config.multipart_copy_threshold_size {
            self.copy_object(from, to).send().await.map_err(|e| backend("copy", from, e))?;
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
