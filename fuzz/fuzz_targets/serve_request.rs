//! Whole requests against the router over an in-memory registry: whatever the method, path,
//! range headers and body, the answer is never a server error, and every error carries the
//! spec's JSON body. Each input is several requests against one registry, so later ones
//! meet what earlier ones stored.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use wharf_registry::{Registry, RegistryOptions};
use wharf_server::{ServerOptions, router};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

const METHODS: [Method; 6] = [Method::GET, Method::HEAD, Method::POST, Method::PATCH, Method::PUT, Method::DELETE];

fuzz_target!(|data: &[u8]| {
    let registry = Registry::new(Arc::new(wharf_storage::MemoryDriver::new()), RegistryOptions::default());
    let app = router(registry, ServerOptions::default().with_delete_enabled(true).with_relative_urls(true));
    // Requests are separated by 0xff; each is `method byte, path \n, range \n, content-range \n, body`.
    for request in data.split(|b| *b == 0xff).take(8) {
        let Some((&method, rest)) = request.split_first() else { continue };
        let mut parts = rest.splitn(4, |b| *b == b'\n');
        let (Some(path), range, content_range, body) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(path) = std::str::from_utf8(path) else { continue };
        let mut builder =
            Request::builder().method(METHODS[usize::from(method) % METHODS.len()].clone()).uri(format!("/v2/{path}"));
        if let Some(range) = range.filter(|r| !r.is_empty()) {
            builder = builder.header("range", range);
        }
        if let Some(content_range) = content_range.filter(|r| !r.is_empty()) {
            builder = builder.header("content-range", content_range);
        }
        let Ok(request) = builder.body(Body::from(body.unwrap_or_default().to_vec())) else { continue };
        let (status, body) = runtime().block_on(async {
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            (status, response.into_body().collect().await.unwrap().to_bytes())
        });
        assert!(!status.is_server_error(), "{status}: {}", String::from_utf8_lossy(&body));
        if status.is_client_error() && !body.is_empty() {
            let json: serde_json::Value = serde_json::from_slice(&body).expect("error bodies are JSON");
            assert!(json["errors"][0]["code"].is_string(), "{json}");
        }
    }
});
