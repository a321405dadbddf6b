//! An endpoint for a registry's notifications, served by a test: every event it received, in
//! order, the headers they came with, and a switch that makes it answer 503 as if it were down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;

/// What the endpoint received. It starts up.
pub struct Listener {
    events: Mutex<Vec<serde_json::Value>>,
    /// The `Content-Type` and `Authorization` of each envelope taken.
    headers: Mutex<Vec<(String, String)>>,
    up: AtomicBool,
}

impl Listener {
    /// Serves a new endpoint on a free port of 127.0.0.1 for as long as the test's runtime
    /// runs: the listener, and the URL that reaches it.
    pub async fn serve() -> (Arc<Listener>, String) {
        let listener =
            Arc::new(Listener { events: Mutex::default(), headers: Mutex::default(), up: AtomicBool::new(true) });
        let taker = listener.clone();
        let router = Router::new().fallback(move |request: Request| {
            let listener = taker.clone();
            async move { listener.take(request).await }
        });
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("http://{}/events", tcp.local_addr().expect("its address"));
        tokio::spawn(async move { axum::serve(tcp, router).await.expect("the endpoint serves") });
        (listener, url)
    }

    async fn take(&self, request: Request) -> StatusCode {
        if !self.up.load(Ordering::SeqCst) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let headers = {
            let header =
                |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            (header("content-type"), header("authorization"))
        };
        let Ok(body) = axum::body::to_bytes(request.into_body(), usize::MAX).await else {
            return StatusCode::BAD_REQUEST;
        };
        let Some(events) = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|envelope| envelope.get("events").and_then(|events| events.as_array().cloned()))
        else {
            return StatusCode::BAD_REQUEST;
        };
        self.headers.lock().expect("not poisoned").push(headers);
        self.events.lock().expect("not poisoned").extend(events);
        StatusCode::OK
    }

    /// Answers (`true`) or refuses every request with 503 (`false`).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// Every event received so far, in order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.events.lock().expect("not poisoned").clone()
    }

    /// The `Content-Type` and `Authorization` of every envelope taken so far.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.headers.lock().expect("not poisoned").clone()
    }
}
