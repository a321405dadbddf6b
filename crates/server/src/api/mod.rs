//! The handlers: one dispatch over [`Route`] and the method, each endpoint a method of
//! [`Api`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use wharf_oci::{Digest, Manifest, RepositoryName, media_type};
use wharf_registry::{ManifestReference, Registry, Repository};
use wharf_storage::RedirectMethod;

use crate::ServerOptions;
use crate::count::{Count, Counter};
use crate::error::{ApiError, ErrorCode};
use crate::health::health_answer;
use crate::layer::Answered;
use crate::route::Route;
use crate::token::Scope;

mod blobs;
#[cfg(feature = "mirror")]
mod events;
mod listings;
mod manifests;
#[cfg(feature = "mirror")]
mod mirror;
mod parse;
mod uploads;

pub(crate) use parse::byte_range;
use parse::{
    Query, Urls, accepts, content_length, content_range, encode_query, header_value, limit, parse_digest,
    parse_reference,
};

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
pub(crate) const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

type ApiResult = Result<Response, ApiError>;

pub(crate) struct Api {
    registry: Registry,
    options: ServerOptions,
    counter: Counter,
    #[cfg(feature = "mirror")]
    mirror: Option<mirror::Mirror>,
    /// What names this process in its events.
    #[cfg(feature = "mirror")]
    instance: String,
}

/// Every request comes here.
pub(crate) async fn handle(State(api): State<Arc<Api>>, request: Request) -> Response {
    let path = request.uri().path();
    let mut user = None;
    // Read once: the handler and the layer that counts and audits (through `Answered`).
    let route = match path.strip_prefix(api.options.prefix.as_str()) {
        Some(below) => Route::parse(below),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no endpoint at {path}: the API is below {}", api.options.prefix),
        )),
    };
    #[cfg(feature = "mirror")]
    let asked =
        (api.options.notifier.is_some() || api.options.replicator.is_some()).then(|| events::Asked::of(&request));
    let mut response = if path == "/debug/health" {
        let (status, report) = health_answer(api.options.health.as_ref(), api.registry.driver().name());
        json_response(status, &report)
    } else {
        api.dispatch(&route, request, &mut user).await.unwrap_or_else(IntoResponse::into_response)
    };
    #[cfg(feature = "mirror")]
    if let (Some(asked), Ok(route)) = (&asked, &route) {
        api.notify(route, asked, &events::Answer::of(&response), user.as_deref()).await;
    }
    let headers = response.headers_mut();
    headers.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    for (name, value) in &api.options.headers {
        headers.append(name.clone(), value.clone());
    }
    response.extensions_mut().insert(Answered { route: route.ok(), user });
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

impl Api {
    pub(crate) fn new(registry: Registry, options: ServerOptions) -> Api {
        let counter = Counter::new(&options);
        #[cfg(feature = "mirror")]
        let mirror = options.proxy.as_ref().map(|proxy| mirror::Mirror::new(&registry, proxy));
        Api {
            registry,
            options,
            counter,
            #[cfg(feature = "mirror")]
            mirror,
            #[cfg(feature = "mirror")]
            instance: uuid::Uuid::new_v4().simple().to_string(),
        }
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
        #[cfg(feature = "mirror")]
        if let Some(answer) = self.through_mirror(route, &method, request.headers(), request.uri().query(), &urls).await
        {
            return answer;
        }
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
                self.count(Count::UploadCancelled);
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
        let counter = self.counter.clone();
        body.into_data_stream()
            .inspect_ok(move |chunk| counter.count(Count::Received(chunk.len() as u64)))
            .map_err(|e| wharf_storage::Error::ContentFailed { source: Box::new(e) })
    }

    fn repository(&self, name: &RepositoryName) -> Repository {
        self.registry.repository(name)
    }

    fn count(&self, what: Count) {
        self.counter.count(what);
    }

    fn check_delete_enabled(&self) -> Result<(), ApiError> {
        if self.options.delete_enabled {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::Unsupported, "deletion is disabled (storage.delete.enabled is false)"))
        }
    }
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
