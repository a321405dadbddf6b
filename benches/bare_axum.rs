//! The reference row of `scripts/bench-vs-distribution`'s manifest GETs: a bare axum handler
//! answering every request with the bytes of one file, with a manifest's headers, on the
//! given port. `bare_axum <port> <file> <media type> <digest>`; what a registry's request path
//! costs is what it answers slower than this.
//!
//! Run as a bench (`cargo bench --bench bare_axum -- …`), it serves until killed.

use std::net::SocketAddr;

use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [port, file, media_type, digest] = args.as_slice() else {
        // `cargo bench` without arguments runs every bench: this one has nothing to measure alone.
        return;
    };
    let body = bytes::Bytes::from(std::fs::read(file).expect("the manifest file"));
    let media_type = HeaderValue::from_str(media_type).expect("a media type");
    let digest = HeaderValue::from_str(digest).expect("a digest");
    let app = axum::Router::new().fallback(move || {
        let (body, media_type, digest) = (body.clone(), media_type.clone(), digest.clone());
        async move {
            (
                [
                    (header::CONTENT_TYPE, media_type),
                    (header::HeaderName::from_static("docker-content-digest"), digest.clone()),
                    (header::ETAG, digest),
                ],
                body,
            )
                .into_response()
        }
    });
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("a port");
    let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
