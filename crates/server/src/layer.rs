//! The tower layer around the API that watches each answer: it counts the request in the
//! metrics, when they are on, and writes the audit line of what was pushed, pulled, deleted or
//! refused.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;

use crate::api::CONTENT_DIGEST;
use crate::count::Counter;
use crate::route::Route;

/// The client's address, as the audit and access logs show it: what the server that accepted
/// the connection puts in the request's `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddress(pub(crate) SocketAddr);

/// What the API tells the layer of a request it answered, in the response's extensions: the
/// route it read from the path and who asked, so that neither is worked out twice.
#[derive(Debug, Clone)]
pub(crate) struct Answered {
    pub(crate) route: Option<Route>,
    pub(crate) user: Option<String>,
}

/// The layer: [`Watched`] around the service it wraps.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    pub(crate) counter: Counter,
}

impl<S> tower_layer::Layer<S> for Watch {
    type Service = Watched<S>;

    fn layer(&self, inner: S) -> Watched<S> {
        Watched { inner, counter: self.counter.clone() }
    }
}

/// A service whose answers are counted and audited.
#[derive(Debug, Clone)]
pub(crate) struct Watched<S> {
    inner: S,
    counter: Counter,
}

impl<S> tower_service::Service<Request> for Watched<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Watching<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let seen = Seen {
            started: Instant::now(),
            method: request.method().clone(),
            client: request.extensions().get::<ConnectInfo<ClientAddress>>().map(|info| info.0.0),
            counter: self.counter.clone(),
        };
        Watching { inner: self.inner.call(request), seen: Some(seen) }
    }
}

pin_project_lite::pin_project! {
    /// The answer on its way, and what was seen of the request.
    pub(crate) struct Watching<F> {
        #[pin]
        inner: F,
        seen: Option<Seen>,
    }
}

/// What the layer keeps of a request until its answer.
struct Seen {
    started: Instant,
    method: Method,
    client: Option<SocketAddr>,
    counter: Counter,
}

impl<F, E> Future for Watching<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(seen) = this.seen.take() {
            seen.answered(&mut response);
        }
        Poll::Ready(Ok(response))
    }
}

impl Seen {
    /// Counts the request and writes its audit line.
    fn answered(self, response: &mut Response) {
        let Seen { started, method, client, counter } = self;
        let Answered { route, user } =
            response.extensions_mut().remove::<Answered>().unwrap_or(Answered { route: None, user: None });
        let status = response.status();
        let sent = if method == Method::HEAD {
            None
        } else {
            response.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok())
        };
        counter.request(
            route.as_ref().map_or("unknown", Route::kind),
            method.as_str(),
            status.as_u16(),
            started.elapsed(),
            sent,
        );
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
