//! Blobs: GET and HEAD (with ranges and redirects), mounts, deletion.

use super::*;

impl Api {
    pub(super) async fn get_blob(
        &self,
        name: &RepositoryName,
        digest: &str,
        head: bool,
        headers: &HeaderMap,
    ) -> ApiResult {
        let digest = parse_digest(digest)?;
        let repository = self.repository(name);
        if self.options.redirect {
            let method = if head { RedirectMethod::Head } else { RedirectMethod::Get };
            if let Some(url) = repository.blob_url(&digest, method).await? {
                let mut response = empty(StatusCode::TEMPORARY_REDIRECT);
                response.headers_mut().insert(header::LOCATION, header_value(url.as_str())?);
                response.headers_mut().insert(CONTENT_DIGEST, header_value(digest.as_str())?);
                return Ok(response);
            }
        }
        let info = repository.stat_blob(&digest).await?;
        let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
            Some(text) => byte_range(text, info.size)?,
            None => None,
        };
        let (status, start, length) = match range {
            Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
            None => (StatusCode::OK, 0, info.size),
        };
        let mut response = if head {
            empty(status)
        } else {
            let (_, stream) = repository.read_blob(&digest, start).await?;
            let mut response = Response::new(Body::from_stream(limit(stream, length)));
            *response.status_mut() = status;
            response
        };
        let out = response.headers_mut();
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        out.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        out.insert(CONTENT_DIGEST, header_value(digest.as_str())?);
        out.insert(header::ETAG, header_value(&format!("\"{digest}\""))?);
        out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if status == StatusCode::PARTIAL_CONTENT {
            let range = format!("bytes {start}-{}/{}", start + length - 1, info.size);
            out.insert(header::CONTENT_RANGE, header_value(&range)?);
        }
        Ok(response)
    }

    pub(super) async fn delete_blob(&self, name: &RepositoryName, digest: &str) -> ApiResult {
        self.check_delete_enabled()?;
        let digest = parse_digest(digest)?;
        self.repository(name).delete_blob(&digest).await?;
        let mut response = empty(StatusCode::ACCEPTED);
        response.headers_mut().insert(CONTENT_DIGEST, header_value(digest.as_str())?);
        Ok(response)
    }
}
