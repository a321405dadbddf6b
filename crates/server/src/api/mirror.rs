//! Mirrored repositories (`proxy`): reads go through the pull-through cache, which fills the
//! registry's store from the upstream, and are answered from the store; an uncached blob is
//! streamed as it arrives. Pushes and deletes are refused unless `proxy.allowpush` says.

use wharf_mirror::{BlobFetch, CacheRoute, PullThrough};

use super::*;

/// The cache, and whether mirrored repositories take pushes.
pub(crate) struct Mirror {
    pub(crate) cache: PullThrough,
    pub(crate) allow_push: bool,
}

impl Mirror {
    pub(crate) fn new(registry: &Registry, proxy: &crate::Proxy) -> Mirror {
        Mirror { cache: proxy.cache(registry), allow_push: proxy.allow_push }
    }
}

/// The API's error for a mirror's, `unknown` for what the upstream does not have.
fn mirror_error(error: wharf_mirror::Error, unknown: ErrorCode) -> ApiError {
    match error {
        wharf_mirror::Error::NotFound { .. } => ApiError::new(unknown, error.to_string()),
        wharf_mirror::Error::Registry(e) => e.into(),
        other => ApiError::new(ErrorCode::Unavailable, other.to_string()),
    }
}

impl Api {
    /// The answer to a request for a mirrored repository, or `None` when the repository is
    /// the registry's own (or the request is a write the mirror lets through).
    pub(super) async fn through_mirror(
        &self,
        route: &Route,
        method: &Method,
        headers: &HeaderMap,
        query: Option<&str>,
        urls: &Urls,
    ) -> Option<ApiResult> {
        let mirror = self.mirror.as_ref()?;
        let name = match route {
            Route::Blob { name, .. }
            | Route::Manifest { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. }
            | Route::Uploads { name }
            | Route::Upload { name, .. } => name,
            Route::Base | Route::Catalog => return None,
        };
        let cache = mirror.cache.route(name, Query::parse(query).get("ns"))?;
        let reads = matches!(*method, Method::GET | Method::HEAD);
        if !reads {
            if mirror.allow_push {
                return None;
            }
            let upstream = &mirror.cache.upstream(&cache).name;
            return Some(Err(ApiError::new(
                ErrorCode::Unsupported,
                format!(
                    "{name} mirrors {upstream}: a mirrored repository takes no pushes or deletes (proxy.allowpush)"
                ),
            )));
        }
        let head = *method == Method::HEAD;
        Some(match route {
            Route::Manifest { reference, .. } => match parse_reference(reference) {
                Ok(parsed) => match mirror.cache.manifest(&cache, &parsed).await {
                    Ok(_) => self.get_manifest(&cache.local, reference, head, headers).await,
                    Err(e) => Err(mirror_error(e, ErrorCode::ManifestUnknown)),
                },
                // The local handler names what is wrong with it.
                Err(_) => self.get_manifest(&cache.local, reference, head, headers).await,
            },
            Route::Blob { digest, .. } => self.mirrored_blob(&mirror.cache, &cache, digest, head, headers).await,
            Route::Tags { .. } => self.tags(urls, &cache.local, query).await,
            Route::Referrers { digest, .. } => self.referrers(&cache.local, digest, query).await,
            _ => return None,
        })
    }

    async fn mirrored_blob(
        &self,
        mirror: &PullThrough,
        cache: &CacheRoute,
        digest: &str,
        head: bool,
        headers: &HeaderMap,
    ) -> ApiResult {
        let parsed = parse_digest(digest)?;
        if head {
            let size = mirror.blob_size(cache, &parsed).await.map_err(|e| mirror_error(e, ErrorCode::BlobUnknown))?;
            return blob_response(empty(StatusCode::OK), &parsed, size);
        }
        match mirror.blob(cache, &parsed).await.map_err(|e| mirror_error(e, ErrorCode::BlobUnknown))? {
            BlobFetch::Cached => self.get_blob(&cache.local, digest, head, headers).await,
            BlobFetch::Streaming { size, stream } => {
                blob_response(Response::new(Body::from_stream(stream)), &parsed, size)
            }
        }
    }
}

fn blob_response(mut response: Response, digest: &Digest, size: u64) -> ApiResult {
    let out = response.headers_mut();
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    out.insert(CONTENT_DIGEST, header_value(digest.as_str())?);
    out.insert(header::ETAG, header_value(&format!("\"{digest}\""))?);
    Ok(response)
}
