//! Whole requests against the router over an in-memory registry: whatever the method, path,
//! headers and body, the answer is never a server error, and every error carries the spec's
//! JSON body. Each input is several requests against one registry, so later ones meet what
//! earlier ones stored, and `{u}` in a path stands for the upload the last POST opened: its
//! PATCHes and PUTs reach `Content-Range` against `Content-Length` on a real upload.
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

/// The header lines of a request, in order.
const HEADERS: [&str; 4] = ["range", "content-range", "content-length", "forwarded"];

fuzz_target!(|data: &[u8]| {
    let registry = Registry::new(Arc::new(wharf_storage::MemoryDriver::new()), RegistryOptions::default());
    let app = router(registry, ServerOptions::default().with_delete_enabled(true));
    let mut upload = String::from("a/blobs/uploads/none");
    // Requests are separated by 0xff; each is `method byte, path \n`, a line for each of
    // HEADERS (empty for none), then the body.
    for request in data.split(|b| *b == 0xff).take(8) {
        let Some((&method, rest)) = request.split_first() else { continue };
        let mut parts = rest.splitn(HEADERS.len() + 2, |b| *b == b'\n');
        let Some(Ok(path)) = parts.next().map(std::str::from_utf8) else { continue };
        let path = path.replace("{u}", &upload);
        let mut builder =
            Request::builder().method(METHODS[usize::from(method) % METHODS.len()].clone()).uri(format!("/v2/{path}"));
        for name in HEADERS {
            if let Some(value) = parts.next().filter(|v| !v.is_empty()) {
                builder = builder.header(name, value);
            }
        }
        let body = parts.next().unwrap_or_default().to_vec();
        let Ok(request) = builder.body(Body::from(body)) else { continue };
        let (status, location, body) = runtime().block_on(async {
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let location = response.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_owned);
            (status, location, response.into_body().collect().await.unwrap().to_bytes())
        });
        assert!(!status.is_server_error(), "{status}: {}", String::from_utf8_lossy(&body));
        if status.is_client_error() && !body.is_empty() {
            let json: serde_json::Value = serde_json::from_slice(&body).expect("error bodies are JSON");
            assert!(json["errors"][0]["code"].is_string(), "{json}");
        }
        if let Some(opened) =
            location.as_deref().and_then(|l| l.strip_prefix("/v2/")).filter(|l| l.contains("/uploads/"))
        {
            upload = opened.split('?').next().unwrap_or(opened).to_owned();
        }
    }
});
