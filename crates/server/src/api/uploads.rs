//! Uploads: POST (monolithic or opening a session), PATCH chunks, PUT to finish, GET, DELETE.

use super::*;

impl Api {
    pub(super) async fn start_upload(&self, urls: &Urls, name: &RepositoryName, request: Request) -> ApiResult {
        let query = Query::parse(request.uri().query());
        let repository = self.repository(name);
        if let Some(mount) = query.get("mount") {
            // A mount that cannot be made falls back to an upload, as the spec allows.
            let mounted = match (mount.parse::<Digest>().ok(), query.get("from")) {
                (Some(digest), Some(from)) => match from.parse::<RepositoryName>() {
                    Ok(from) => repository.mount_blob(&digest, &from).await.is_ok().then_some(digest),
                    Err(_) => None,
                },
                // Without `from`, any copy the registry holds will do, where every client
                // that may push may also read everything: not under token scopes, which
                // grant repositories one by one.
                (Some(digest), None) if self.options.token.is_none() => {
                    repository.link_blob(&digest).await.is_ok().then_some(digest)
                }
                _ => None,
            };
            if let Some(digest) = mounted {
                return blob_created(urls, name, &digest);
            }
        } else if let Some(digest) = query.get("digest") {
            let digest = parse_digest(digest)?;
            let body = self.body(request.into_body());
            self.count(Count::UploadStarted);
            repository.put_blob(&digest, body).await?;
            self.count(Count::BlobPushed);
            return blob_created(urls, name, &digest);
        }
        let upload = repository.start_upload().await?;
        self.count(Count::UploadStarted);
        upload_response(StatusCode::ACCEPTED, urls, name, &upload.id, 0)
    }

    pub(super) async fn upload_status(&self, urls: &Urls, name: &RepositoryName, id: &str) -> ApiResult {
        let status = self.repository(name).upload_status(id).await?;
        upload_response(StatusCode::NO_CONTENT, urls, name, id, status.size)
    }

    pub(super) async fn patch_upload(
        &self,
        urls: &Urls,
        name: &RepositoryName,
        id: &str,
        request: Request,
    ) -> ApiResult {
        let repository = self.repository(name);
        let offset = match content_range(request.headers())? {
            Some((start, end)) => {
                // `end` is at least `start`; a span of every u64 has no length that fits one.
                let span = (end - start).checked_add(1);
                if let Some(length) = content_length(request.headers())?
                    && span != Some(length)
                {
                    let span = span.map_or_else(|| "2^64".to_owned(), |span| span.to_string());
                    return Err(ApiError::new(
                        ErrorCode::SizeInvalid,
                        format!("Content-Range {start}-{end} is {span} bytes, Content-Length is {length}"),
                    ));
                }
                Some(start)
            }
            None => None,
        };
        let status = repository.append_upload(id, offset, self.body(request.into_body())).await?;
        upload_response(StatusCode::ACCEPTED, urls, name, id, status.size)
    }

    pub(super) async fn finish_upload(
        &self,
        urls: &Urls,
        name: &RepositoryName,
        id: &str,
        request: Request,
    ) -> ApiResult {
        let query = Query::parse(request.uri().query());
        let digest = query
            .get("digest")
            .ok_or_else(|| ApiError::new(ErrorCode::DigestInvalid, "the digest query parameter is missing"))?;
        let digest = parse_digest(digest)?;
        let repository = self.repository(name);
        if let Some((start, _)) = content_range(request.headers())? {
            let status = repository.upload_status(id).await?;
            if status.size != start {
                return Err(wharf_registry::Error::UploadOffset {
                    id: id.to_owned(),
                    expected: status.size,
                    offset: start,
                }
                .into());
            }
        }
        let has_body = content_length(request.headers())?.is_none_or(|length| length > 0);
        let body = has_body.then(|| self.body(request.into_body()));
        repository.finish_upload(id, &digest, body).await?;
        self.count(Count::BlobPushed);
        blob_created(urls, name, &digest)
    }
}
