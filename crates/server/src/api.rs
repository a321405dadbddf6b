//! The handlers: one dispatch over [`Route`] and the method, each endpoint a method of
//! [`Api`].

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use wharf_oci::{Digest, Manifest, RepositoryName, media_type};
use wharf_registry::{ManifestReference, Registry, Repository};
use wharf_storage::RedirectMethod;

use crate::ServerOptions;
use crate::error::{ApiError, ErrorCode};
use crate::observe::{Metrics, health_answer};
use crate::route::Route;
use crate::serve::ClientAddress;
use crate::token::Scope;

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

type ApiResult = Result<Response, ApiError>;

pub(crate) struct Api {
    registry: Registry,
    options: ServerOptions,
}

/// Every request comes here.
pub(crate) async fn handle(State(api): State<Arc<Api>>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client = request.extensions().get::<ConnectInfo<ClientAddress>>().map(|info| info.0.0);
    let mut user = None;
    // Read once: the handler, the metrics and the audit log all want it.
    let route = match path.strip_prefix(api.options.prefix.as_str()) {
        Some(below) => Route::parse(below),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no endpoint at {path}: the API is below {}", api.options.prefix),
        )),
    };
    let mut response = if path == "/debug/health" {
        let (status, report) = health_answer(api.options.health.as_ref(), api.registry.driver().name());
        json_response(status, &report)
    } else {
        api.dispatch(&route, request, &mut user).await.unwrap_or_else(IntoResponse::into_response)
    };
    let route = route.ok();
    let headers = response.headers_mut();
    headers.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    for (name, value) in &api.options.headers {
        headers.append(name.clone(), value.clone());
    }

    let status = response.status();
    if let Some(metrics) = &api.options.metrics {
        metrics.request(
            route.as_ref().map_or("unknown", Route::kind),
            method.as_str(),
            status.as_u16(),
            started.elapsed(),
        );
        if method != Method::HEAD
            && let Some(length) =
                response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok())
        {
            metrics.sent(length);
        }
    }
    if let Some(action) = audit_action(route.as_ref(), &method, status) {
        let (repository, reference) = route.as_ref().map(Route::subject).unwrap_or_default();
        let digest = response.headers().get(CONTENT_DIGEST).and_then(|v| v.to_str().ok()).unwrap_or("-");
        // An upload's id means nothing later: a pushed blob is named by its digest.
        let reference = match route {
            Some(Route::Upload { .. } | Route::Uploads { .. }) => digest,
            _ => reference.unwrap_or("-"),
        };
        tracing::info!(
            target: "wharf::audit",
            user = user.as_deref().unwrap_or("-"),
            client = %client.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            action,
            repository = repository.unwrap_or("-"),
            reference,
            digest,
            status = status.as_u16(),
            method = %method,
            "{action}"
        );
    }
    response
}

/// What a request needs a token to grant.
fn needed_scopes(route: &Route, method: &Method, query: Option<&str>) -> Vec<Scope> {
    let on = |name: &RepositoryName, actions: &[&'static str]| -> Vec<Scope> {
        actions.iter().map(|action| Scope::repository(name.as_str(), action)).collect()
    };
    let reads = matches!(*method, Method::GET | Method::HEAD);
    match route {
        Route::Base => Vec::new(),
        Route::Catalog => vec![Scope { kind: "registry", name: "catalog".into(), action: "*" }],
        Route::Blob { name, .. } | Route::Manifest { name, .. } if *method == Method::DELETE => on(name, &["delete"]),
        Route::Blob { name, .. }
        | Route::Manifest { name, .. }
        | Route::Tags { name }
        | Route::Referrers { name, .. }
            if reads =>
        {
            on(name, &["pull"])
        }
        Route::Uploads { name } => {
            let mut needs = on(name, &["pull", "push"]);
            let query = Query::parse(query);
            if let (Some(_), Some(from)) = (query.get("mount"), query.get("from")) {
                needs.push(Scope::repository(from, "pull"));
            }
            needs
        }
        Route::Blob { name, .. }
        | Route::Manifest { name, .. }
        | Route::Tags { name }
        | Route::Referrers { name, .. }
        | Route::Upload { name, .. } => on(name, &["pull", "push"]),
    }
}

/// What the audit log calls a request: pushes, pulls and deletes that succeeded, and every
/// refusal of who asks or of what is allowed. `None` for the rest (listings, uploads' steps,
/// misses).
fn audit_action(route: Option<&Route>, method: &Method, status: StatusCode) -> Option<&'static str> {
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::METHOD_NOT_ALLOWED) {
        return Some("refused");
    }
    if !status.is_success() {
        return None;
    }
    match (route?, method) {
        (Route::Manifest { .. } | Route::Blob { .. }, &Method::GET) => Some("pull"),
        (Route::Manifest { .. }, &Method::PUT) => Some("push"),
        (Route::Upload { .. }, &Method::PUT) | (Route::Uploads { .. }, &Method::POST)
            if status == StatusCode::CREATED =>
        {
            Some("push")
        }
        (Route::Manifest { .. } | Route::Blob { .. }, &Method::DELETE) => Some("delete"),
        _ => None,
    }
}

impl Api {
    pub(crate) fn new(registry: Registry, options: ServerOptions) -> Api {
        Api { registry, options }
    }

    async fn dispatch(
        &self,
        route: &Result<Route, ApiError>,
        request: Request,
        user: &mut Option<String>,
    ) -> ApiResult {
        // Who asks comes first: an anonymous client learns nothing, not even what exists.
        if let Some(htpasswd) = &self.options.htpasswd {
            *user = Some(htpasswd.authenticate(request.headers()).await?.user);
        }
        if let Some(health) = &self.options.health
            && let Some(failure) = health.failure()
        {
            return Err(ApiError::new(ErrorCode::Unavailable, format!("the registry's storage is failing: {failure}")));
        }
        if let Some(token) = &self.options.token {
            // The scope is asked for even of a path that names nothing, so that a client
            // without a token learns nothing either.
            let needs = route
                .as_ref()
                .map(|route| needed_scopes(route, request.method(), request.uri().query()))
                .unwrap_or_default();
            *user = Some(token.authorize(request.headers(), &needs)?.user);
        }
        let route = route.as_ref().map_err(Clone::clone)?;
        let method = request.method().clone();
        let writes = !matches!(method, Method::GET | Method::HEAD);
        if writes && self.options.read_only && *route != Route::Base {
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                "the registry is in read-only mode (storage.maintenance.readonly)",
            ));
        }
        let urls = Urls::new(&self.options, request.headers());
        match (route, method) {
            (Route::Base, Method::GET | Method::HEAD) => Ok(json_response(StatusCode::OK, &serde_json::json!({}))),
            (Route::Catalog, Method::GET) => self.catalog(&urls, request.uri().query()).await,
            (Route::Blob { name, digest }, method @ (Method::GET | Method::HEAD)) => {
                self.get_blob(name, digest, method == Method::HEAD, request.headers()).await
            }
            (Route::Blob { name, digest }, Method::DELETE) => self.delete_blob(name, digest).await,
            (Route::Uploads { name }, Method::POST) => self.start_upload(&urls, name, request).await,
            (Route::Upload { name, id }, Method::GET) => self.upload_status(&urls, name, id).await,
            (Route::Upload { name, id }, Method::PATCH) => self.patch_upload(&urls, name, id, request).await,
            (Route::Upload { name, id }, Method::PUT) => self.finish_upload(&urls, name, id, request).await,
            (Route::Upload { name, id }, Method::DELETE) => {
                self.repository(name).cancel_upload(id).await?;
                self.count(Metrics::upload_cancelled);
                Ok(empty(StatusCode::NO_CONTENT))
            }
            (Route::Manifest { name, reference }, method @ (Method::GET | Method::HEAD)) => {
                self.get_manifest(name, reference, method == Method::HEAD, request.headers()).await
            }
            (Route::Manifest { name, reference }, Method::PUT) => {
                self.put_manifest(&urls, name, reference, request).await
            }
            (Route::Manifest { name, reference }, Method::DELETE) => self.delete_manifest(name, reference).await,
            (Route::Tags { name }, Method::GET) => self.tags(&urls, name, request.uri().query()).await,
            (Route::Referrers { name, digest }, Method::GET) => {
                self.referrers(name, digest, request.uri().query()).await
            }
            (_, method) => Err(ApiError::new(
                ErrorCode::Unsupported,
                format!("{method} is not supported on {}", request.uri().path()),
            )),
        }
    }

    /// A request body as the registry takes content: a stream of chunks as they arrive,
    /// counted as they pass.
    fn body(&self, body: Body) -> impl Stream<Item = wharf_storage::Result<Bytes>> + Send + Unpin + use<> {
        let metrics = self.options.metrics.clone();
        body.into_data_stream()
            .inspect_ok(move |chunk| {
                if let Some(metrics) = &metrics {
                    metrics.received(chunk.len() as u64);
                }
            })
            .map_err(|e| wharf_storage::Error::ContentFailed { source: Box::new(e) })
    }

    fn repository(&self, name: &RepositoryName) -> Repository {
        self.registry.repository(name)
    }

    fn count(&self, what: fn(&Metrics)) {
        if let Some(metrics) = &self.options.metrics {
            what(metrics);
        }
    }

    fn check_delete_enabled(&self) -> Result<(), ApiError> {
        if self.options.delete_enabled {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::Unsupported, "deletion is disabled (storage.delete.enabled is false)"))
        }
    }

    // ----- blobs -----

    async fn get_blob(&self, name: &RepositoryName, digest: &str, head: bool, headers: &HeaderMap) -> ApiResult {
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

    async fn delete_blob(&self, name: &RepositoryName, digest: &str) -> ApiResult {
        self.check_delete_enabled()?;
        let digest = parse_digest(digest)?;
        self.repository(name).delete_blob(&digest).await?;
        let mut response = empty(StatusCode::ACCEPTED);
        response.headers_mut().insert(CONTENT_DIGEST, header_value(digest.as_str())?);
        Ok(response)
    }

    // ----- uploads -----

    async fn start_upload(&self, urls: &Urls, name: &RepositoryName, request: Request) -> ApiResult {
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
            self.count(Metrics::upload_started);
            repository.put_blob(&digest, body).await?;
            self.count(Metrics::blob_pushed);
            return blob_created(urls, name, &digest);
        }
        let upload = repository.start_upload().await?;
        self.count(Metrics::upload_started);
        upload_response(StatusCode::ACCEPTED, urls, name, &upload.id, 0)
    }

    async fn upload_status(&self, urls: &Urls, name: &RepositoryName, id: &str) -> ApiResult {
        let status = self.repository(name).upload_status(id).await?;
        upload_response(StatusCode::NO_CONTENT, urls, name, id, status.size)
    }

    async fn patch_upload(&self, urls: &Urls, name: &RepositoryName, id: &str, request: Request) -> ApiResult {
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

    async fn finish_upload(&self, urls: &Urls, name: &RepositoryName, id: &str, request: Request) -> ApiResult {
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
        self.count(Metrics::blob_pushed);
        blob_created(urls, name, &digest)
    }

    // ----- manifests -----

    async fn get_manifest(&self, name: &RepositoryName, reference: &str, head: bool, headers: &HeaderMap) -> ApiResult {
        // A name that can be no tag names no manifest: unknown, as the conformance suite
        // expects of a GET or HEAD (a push with it is refused as TAG_INVALID).
        let reference = parse_reference(reference).map_err(|e| match e.code {
            ErrorCode::TagInvalid => ApiError::new(
                ErrorCode::ManifestUnknown,
                format!("manifest {reference:?} is not in repository {name}: it is neither a tag nor a digest"),
            ),
            _ => e,
        })?;
        let repository = self.repository(name);
        let stored = repository.get_manifest(&reference).await?;
        if !accepts(headers, &stored.media_type) {
            return Err(ApiError::new(
                ErrorCode::ManifestUnknown,
                format!(
                    "manifest {reference} is a {}, which the request's Accept header does not list",
                    stored.media_type
                ),
            ));
        }
        if !head {
            repository.record_pull(&stored.digest);
        }
        let length = stored.content.len();
        let mut response = if head { empty(StatusCode::OK) } else { Response::new(Body::from(stored.content)) };
        let out = response.headers_mut();
        out.insert(header::CONTENT_TYPE, header_value(&stored.media_type)?);
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        out.insert(CONTENT_DIGEST, header_value(stored.digest.as_str())?);
        out.insert(header::ETAG, header_value(&format!("\"{}\"", stored.digest))?);
        Ok(response)
    }

    async fn put_manifest(&self, urls: &Urls, name: &RepositoryName, reference: &str, request: Request) -> ApiResult {
        let reference = parse_reference(reference)?;
        // The spec's tag parameters (`?tag=a&tag=b`): tags the manifest gets once stored,
        // each checked before anything is.
        let tags: Vec<String> = Query::parse(request.uri().query()).all("tag").map(str::to_owned).collect();
        for tag in &tags {
            wharf_oci::validate_tag(tag).map_err(|e| ApiError::new(ErrorCode::TagInvalid, e.to_string()))?;
        }
        let limit = self.registry.options().max_manifest_bytes;
        let too_large = |size: String| {
            ApiError::new(ErrorCode::ManifestTooLarge, format!("manifest of {size} bytes is over the limit of {limit}"))
        };
        if let Some(length) = content_length(request.headers())?
            && length > limit
        {
            return Err(too_large(length.to_string()));
        }
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // Read no further than the limit: a larger body is refused without being read whole.
        let read_limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let content = axum::body::to_bytes(request.into_body(), read_limit)
            .await
            .map_err(|_| too_large(format!("more than {limit}")))?;
        let subject = Manifest::parse(content.clone(), content_type.as_deref())
            .ok()
            .and_then(|manifest| manifest.subject().map(|s| s.digest.clone()));
        if let Some(metrics) = &self.options.metrics {
            metrics.received(content.len() as u64);
        }
        let repository = self.repository(name);
        let digest = repository.put_manifest(&reference, content, content_type.as_deref()).await?;
        for tag in &tags {
            repository.tag(tag, &digest).await?;
        }
        self.count(Metrics::manifest_pushed);
        let mut response = empty(StatusCode::CREATED);
        let out = response.headers_mut();
        for tag in &tags {
            out.append(OCI_TAG, header_value(tag)?);
        }
        out.insert(header::LOCATION, header_value(&urls.url(&format!("/v2/{name}/manifests/{digest}")))?);
        out.insert(CONTENT_DIGEST, header_value(digest.as_str())?);
        if let Some(subject) = subject {
            out.insert(OCI_SUBJECT, header_value(subject.as_str())?);
        }
        Ok(response)
    }

    async fn delete_manifest(&self, name: &RepositoryName, reference: &str) -> ApiResult {
        self.check_delete_enabled()?;
        let repository = self.repository(name);
        match parse_reference(reference)? {
            ManifestReference::Tag(tag) => repository.untag(&tag).await?,
            ManifestReference::Digest(digest) => repository.delete_manifest(&digest).await?,
        }
        Ok(empty(StatusCode::ACCEPTED))
    }

    // ----- listings -----

    async fn tags(&self, urls: &Urls, name: &RepositoryName, query: Option<&str>) -> ApiResult {
        let query = Query::parse(query);
        let (n, last) = (query.page_size()?, query.get("last"));
        let n = match (n, self.options.max_tags) {
            (Some(n), Some(max)) => Some(n.min(max)),
            (n, max) => n.or(max),
        };
        let repository = self.repository(name);
        // One more than asked tells whether a next page exists.
        let mut tags = repository.tags(n.map(|n| n.saturating_add(1)), last).await?;
        if tags.is_empty() && last.is_none() && !repository.exists().await? {
            return Err(ApiError::new(ErrorCode::NameUnknown, format!("repository {name} is not known")));
        }
        let more = n.is_some_and(|n| tags.len() > n);
        if let Some(n) = n {
            tags.truncate(n);
        }
        let mut response = json_response(StatusCode::OK, &serde_json::json!({ "name": name.as_str(), "tags": tags }));
        if more && let (Some(n), Some(last)) = (n, tags.last()) {
            let next = format!("/v2/{name}/tags/list?n={n}&last={}", encode_query(last));
            response.headers_mut().insert(header::LINK, header_value(&format!("<{}>; rel=\"next\"", urls.url(&next)))?);
        }
        Ok(response)
    }

    async fn catalog(&self, urls: &Urls, query: Option<&str>) -> ApiResult {
        let query = Query::parse(query);
        let n = query.page_size()?.unwrap_or(self.options.max_catalog_entries).min(self.options.max_catalog_entries);
        let last = match query.get("last") {
            Some(last) => {
                Some(last.parse::<RepositoryName>().map_err(|e| ApiError::new(ErrorCode::NameInvalid, e.to_string()))?)
            }
            None => None,
        };
        let mut names = self.registry.catalog(Some(n.saturating_add(1)), last.as_ref()).await?;
        let more = names.len() > n;
        names.truncate(n);
        let names: Vec<&str> = names.iter().map(RepositoryName::as_str).collect();
        let mut response = json_response(StatusCode::OK, &serde_json::json!({ "repositories": names }));
        if more && let Some(last) = names.last() {
            let next = format!("/v2/_catalog?n={n}&last={}", encode_query(last));
            response.headers_mut().insert(header::LINK, header_value(&format!("<{}>; rel=\"next\"", urls.url(&next)))?);
        }
        Ok(response)
    }

    async fn referrers(&self, name: &RepositoryName, digest: &str, query: Option<&str>) -> ApiResult {
        let digest = parse_digest(digest)?;
        let query = Query::parse(query);
        let artifact_type = query.get("artifactType");
        let descriptors = self.repository(name).referrers(&digest, artifact_type).await?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_IMAGE_INDEX,
            "manifests": descriptors,
        });
        let mut response = json_response(StatusCode::OK, &index);
        let out = response.headers_mut();
        out.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type::OCI_IMAGE_INDEX));
        if artifact_type.is_some() {
            out.insert(OCI_FILTERS_APPLIED, HeaderValue::from_static("artifactType"));
        }
        Ok(response)
    }
}

/// Builds the URLs of `Location` and `Link`: paths with `http.relativeurls`, else absolute
/// URLs on `http.host` or on the host the client (or the proxy in front) addressed.
struct Urls {
    base: String,
}

impl Urls {
    fn new(options: &ServerOptions, headers: &HeaderMap) -> Urls {
        let host = if options.relative_urls {
            String::new()
        } else if let Some(host) = &options.host {
            host.trim_end_matches('/').to_owned()
        } else {
            let text = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned())
            };
            let scheme =
                text("x-forwarded-proto").unwrap_or_else(|| if options.https { "https" } else { "http" }.to_owned());
            match text("x-forwarded-host").or_else(|| text("host")) {
                Some(host) => format!("{scheme}://{host}"),
                None => String::new(),
            }
        };
        Urls { base: format!("{host}{}", options.prefix) }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The query parameters, decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        Query(url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `n`, the page size: a non-negative number.
    fn page_size(&self) -> Result<Option<usize>, ApiError> {
        match self.get("n") {
            None => Ok(None),
            Some(n) => n.parse().map(Some).map_err(|_| {
                ApiError::new(ErrorCode::PaginationNumberInvalid, format!("n must be a non-negative number, not {n:?}"))
            }),
        }
    }
}

fn encode_query(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    text.parse().map_err(|e: wharf_oci::Error| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))
}

fn parse_reference(text: &str) -> Result<ManifestReference, ApiError> {
    if text.contains(':') {
        Ok(ManifestReference::Digest(parse_digest(text)?))
    } else {
        wharf_oci::validate_tag(text).map_err(|e| ApiError::new(ErrorCode::TagInvalid, e.to_string()))?;
        Ok(ManifestReference::Tag(text.to_owned()))
    }
}

fn header_value(text: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(text)
        .map_err(|_| ApiError::new(ErrorCode::Unknown, format!("{text:?} cannot be sent as a header value")))
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut response = (status, axum::Json(value)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn blob_created(urls: &Urls, name: &RepositoryName, digest: &Digest) -> ApiResult {
    let mut response = empty(StatusCode::CREATED);
    let out = response.headers_mut();
    out.insert(header::LOCATION, header_value(&urls.url(&format!("/v2/{name}/blobs/{digest}")))?);
    out.insert(CONTENT_DIGEST, header_value(digest.as_str())?);
    Ok(response)
}

fn upload_response(status: StatusCode, urls: &Urls, name: &RepositoryName, id: &str, size: u64) -> ApiResult {
    let mut response = empty(status);
    let out = response.headers_mut();
    out.insert(header::LOCATION, header_value(&urls.url(&format!("/v2/{name}/blobs/uploads/{id}")))?);
    out.insert(UPLOAD_UUID, header_value(id)?);
    // Distribution's form: the last byte's offset, `0-0` while empty.
    out.insert(header::RANGE, header_value(&format!("0-{}", size.saturating_sub(1)))?);
    Ok(response)
}

/// The first `length` bytes of a stream.
fn limit(
    stream: wharf_storage::ByteStream,
    length: u64,
) -> impl Stream<Item = wharf_storage::Result<Bytes>> + Send + 'static {
    stream.scan(length, |left, chunk| {
        let item = match chunk {
            _ if *left == 0 => None,
            Ok(mut bytes) => {
                if bytes.len() as u64 > *left {
                    bytes.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                }
                *left -= bytes.len() as u64;
                Some(Ok(bytes))
            }
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(item)
    })
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => {
            value.to_str().ok().and_then(|v| v.trim().parse().ok()).map(Some).ok_or_else(|| {
                ApiError::new(ErrorCode::SizeInvalid, format!("Content-Length {value:?} is not a number"))
            })
        }
    }
}

/// `Content-Range: <start>-<end>` of a chunk (inclusive; `bytes ` and `/<total>` tolerated).
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else { return Ok(None) };
    let invalid =
        || ApiError::new(ErrorCode::BlobUploadInvalid, format!("Content-Range {value:?} is not <start>-<end>"));
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let text = text.strip_prefix("bytes").map_or(text, |t| t.trim_start_matches(['=', ' ']));
    let text = text.split('/').next().unwrap_or(text);
    let (start, end) = text.split_once('-').ok_or_else(invalid)?;
    let (start, end): (u64, u64) =
        (start.trim().parse().map_err(|_| invalid())?, end.trim().parse().map_err(|_| invalid())?);
    if end < start {
        return Err(ApiError::new(
            ErrorCode::RangeInvalid,
            format!("Content-Range {start}-{end} ends before it starts"),
        ));
    }
    Ok(Some((start, end)))
}

/// A `Range: bytes=…` request on content of `size` bytes: the inclusive span to send, `None`
/// to send everything (a form this server does not serve, such as several ranges).
///
/// # Errors
/// `RANGE_INVALID` (416) for a range that starts past the end or ends before it starts.
pub(crate) fn byte_range(text: &str, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let unsatisfiable = || {
        ApiError::new(ErrorCode::RangeInvalid, format!("range {text:?} is outside the content's {size} bytes"))
            .with_header(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).unwrap_or(HeaderValue::from_static("bytes */0")),
            )
    };
    let Some(spec) = text.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else { return Ok(None) };
    let (start, end) = (start.trim(), end.trim());
    let span = match (start.parse::<u64>(), end.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end && start < size => (start, end.min(size - 1)),
        (Ok(_), Ok(_)) => return Err(unsatisfiable()),
        (Ok(start), Err(_)) if end.is_empty() && start < size => (start, size - 1),
        (Ok(_), Err(_)) if end.is_empty() => return Err(unsatisfiable()),
        (Err(_), Ok(suffix)) if start.is_empty() && suffix > 0 && size > 0 => (size - suffix.min(size), size - 1),
        (Err(_), Ok(_)) if start.is_empty() => return Err(unsatisfiable()),
        _ => return Ok(None),
    };
    Ok(Some(span))
}

/// Whether an `Accept` header (any number of them, comma-separated, with parameters) lets
/// the client take `media_type`. No `Accept` takes anything.
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut listed = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|entry| entry.split(';').next().unwrap_or(entry).trim())
        .filter(|entry| !entry.is_empty())
        .peekable();
    if listed.peek().is_none() {
        return true;
    }
    listed.any(|entry| entry == media_type || entry == "*/*" || entry == "application/*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-200", 100).unwrap(), Some((90, 99)));
        assert_eq!(byte_range("bytes=90-", 100).unwrap(), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100).unwrap(), Some((90, 99)));
        assert_eq!(byte_range("bytes=-1000", 100).unwrap(), Some((0, 99)));
        assert_eq!(byte_range("bytes=0-1,5-6", 100).unwrap(), None);
        assert_eq!(byte_range("items=0-1", 100).unwrap(), None);
        for bad in ["bytes=500-0", "bytes=100-", "bytes=100-200", "bytes=-0"] {
            let e = byte_range(bad, 100).unwrap_err();
            assert_eq!(e.code, ErrorCode::RangeInvalid, "{bad}");
        }
    }

    proptest::proptest! {
        /// A served span lies within the content; a range inside it is served as asked.
        #[test]
        fn byte_ranges_stay_inside(start in 0u64..200, end in 0u64..200, size in 0u64..150, suffix in proptest::bool::ANY) {
            let text = if suffix { format!("bytes=-{end}") } else { format!("bytes={start}-{end}") };
            match byte_range(&text, size) {
                Ok(Some((first, last))) => {
                    proptest::prop_assert!(first <= last && last < size, "{text} on {size}: {first}-{last}");
                    if !suffix && end < size {
                        proptest::prop_assert_eq!((first, last), (start, end));
                    }
                }
                Ok(None) => proptest::prop_assert!(false, "{text} was ignored"),
                Err(e) => {
                    proptest::prop_assert_eq!(e.code, ErrorCode::RangeInvalid);
                    proptest::prop_assert!(suffix || start > end || start >= size);
                }
            }
        }

        /// Any Content-Range text gives a span, a refusal naming it, or nothing.
        #[test]
        fn content_ranges_never_panic(text in "[ -~]{0,24}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&text) {
                headers.insert(header::CONTENT_RANGE, value);
                match content_range(&headers) {
                    Ok(Some((start, end))) => proptest::prop_assert!(start <= end),
                    Ok(None) => proptest::prop_assert!(false, "a header was present"),
                    Err(e) => proptest::prop_assert!(matches!(e.code, ErrorCode::BlobUploadInvalid | ErrorCode::RangeInvalid)),
                }
            }
        }
    }

    #[test]
    fn accept_lists() {
        let mut headers = HeaderMap::new();
        assert!(accepts(&headers, media_type::OCI_IMAGE_MANIFEST));
        headers
            .append(header::ACCEPT, HeaderValue::from_static("application/vnd.docker.distribution.manifest.v2+json"));
        assert!(!accepts(&headers, media_type::OCI_IMAGE_MANIFEST));
        headers.append(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json; q=0.5, text/plain"),
        );
        assert!(accepts(&headers, media_type::OCI_IMAGE_MANIFEST));
    }
}
