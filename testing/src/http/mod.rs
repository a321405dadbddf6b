//! A client for the spec workflows that talks to the router in process or to a server over
//! TCP, the same way, and the workflows themselves.

pub mod content;
pub mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::Digest as _;
use tower::ServiceExt;
use wharf_registry::{Registry, RegistryOptions};
use wharf_server::{ServerOptions, router};

/// An answer, read whole.
pub struct Reply {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl Reply {
    /// The value of header `name`, if it is there and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The OCI error code of an error body (and checks the body is the spec's JSON).
    pub fn error_code(&self) -> String {
        let body: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)));
        let code = body["errors"][0]["code"].as_str().unwrap_or_else(|| panic!("no error code in {body}"));
        assert!(body["errors"][0]["message"].is_string(), "no message in {body}");
        code.to_owned()
    }

    /// The body as JSON (and checks it is).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Where requests go.
pub enum Target {
    /// The router, called in process.
    Router(Router),
    /// A server over TCP at `base`, stopped with the target when it was started by it.
    Tcp {
        /// `http://` and the server's address.
        base: String,
        /// The client requests go through.
        client: reqwest::Client,
        /// The server the target started, stopped with it.
        _server: Option<tokio::task::JoinHandle<()>>,
    },
}

impl Target {
    /// The router `app`, called in process.
    pub fn in_process(app: Router) -> Target {
        Target::Router(app)
    }

    /// Serves `app` on a free loopback port; the server stops when the target is dropped.
    pub async fn over_tcp(app: Router) -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Target::Tcp { base: format!("http://{address}"), client: reqwest::Client::new(), _server: Some(server) }
    }

    /// A server running elsewhere, at `base` (`http://127.0.0.1:5000`).
    pub fn remote(base: String) -> Target {
        Target::Tcp { base, client: reqwest::Client::new(), _server: None }
    }

    /// How requests go, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Router(_) => "in process",
            Target::Tcp { .. } => "over TCP",
        }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        let body = body.into();
        match self {
            Target::Router(app) => {
                let mut request = Request::builder().method(method).uri(path);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                if !body.is_empty() && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
                    request = request.header("content-length", body.len());
                }
                let response =
                    app.clone().oneshot(request.body(Body::from(body)).expect("request")).await.expect("router");
                let (parts, body) = response.into_parts();
                let body = body.collect().await.expect("body").to_bytes();
                Reply { status: parts.status, headers: parts.headers, body }
            }
            // HTTP clients resolve `..` and `%2e%2e` before sending; the raw request line
            // keeps them.
            // So does a client that waits for `100 Continue` before sending its body.
            Target::Tcp { base, .. }
                if path.contains("/..")
                    || path.to_ascii_lowercase().contains("%2e")
                    || headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("expect") && *v == "100-continue") =>
            {
                raw_request(base, &method, path, headers, &body).await
            }
            Target::Tcp { base, client, .. } => {
                // Absolute URLs (a Location) are followed as they are.
                let url = if path.starts_with("http") { path.to_owned() } else { format!("{base}{path}") };
                let mut request = client.request(method, url);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                let response = request.body(body).send().await.expect("send");
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await.expect("body");
                Reply { status, headers, body }
            }
        }
    }

    /// A GET of `path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }
}

/// Sends one HTTP/1.1 request as written, path untouched, and reads the whole answer.
async fn raw_request(base: &str, method: &Method, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    if headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("expect") && *v == "100-continue") {
        // The body goes only after `100 Continue`; a final answer comes instead when the
        // server refuses without reading it.
        let mut buffer = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = stream.read(&mut buffer).await.expect("read");
            assert!(read > 0, "the connection closed before an answer");
            answer.extend_from_slice(&buffer[..read]);
        }
        if answer.starts_with(b"HTTP/1.1 100") {
            answer.clear();
            stream.write_all(body).await.expect("write body");
        }
    } else {
        stream.write_all(body).await.expect("write body");
    }
    stream.read_to_end(&mut answer).await.expect("read");
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(name.trim().as_bytes()),
                axum::http::HeaderValue::from_str(value.trim()),
            )
        {
            headers.append(name, value);
        }
    }
    Reply {
        status: StatusCode::from_u16(status).expect("status code"),
        headers,
        body: Bytes::copy_from_slice(&answer[split + 4..]),
    }
}

/// A registry in memory and a router over it.
pub fn app(options: ServerOptions) -> (Registry, Router) {
    app_with(RegistryOptions::default(), options)
}

/// As [`app`], with the registry's options given.
pub fn app_with(registry_options: RegistryOptions, options: ServerOptions) -> (Registry, Router) {
    let registry = Registry::new(Arc::new(wharf_storage::MemoryDriver::new()), registry_options);
    let app = router(registry.clone(), options.with_relative_urls(true));
    (registry, app)
}

/// The `sha256:` digest of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// The `sha512:` digest of `data`.
pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// The path part of a `Location`.
pub fn location(reply: &Reply) -> String {
    let location = reply.header("location").unwrap_or_else(|| panic!("no Location ({})", reply.status));
    location.to_owned()
}

/// Pushes a blob monolithically; returns its digest.
pub async fn push_blob(target: &Target, name: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let reply = target
        .send(
            Method::POST,
            &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
            &[("content-type", "application/octet-stream")],
            Bytes::copy_from_slice(data),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "monolithic push of {digest}: {:?}", reply.body);
    digest
}

/// An OCI image manifest over a config and layers already pushed.
pub fn image_manifest(config: (&str, usize), layers: &[(&str, usize)], subject: Option<(&str, usize)>) -> Vec<u8> {
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s
        })).collect::<Vec<_>>(),
    });
    if let Some((digest, size)) = subject {
        manifest["subject"] = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size});
        manifest["artifactType"] = serde_json::json!("application/vnd.example.sbom");
    }
    serde_json::to_vec(&manifest).expect("json")
}

/// Pushes config, layers and manifest under `tag`; returns the manifest and its digest.
pub async fn push_image(target: &Target, name: &str, tag: &str, seed: u8) -> (Vec<u8>, String) {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let layer = vec![seed; 1000 + usize::from(seed)];
    let config_digest = push_blob(target, name, &config).await;
    let layer_digest = push_blob(target, name, &layer).await;
    let manifest = image_manifest((&config_digest, config.len()), &[(&layer_digest, layer.len())], None);
    let digest = put_manifest(target, name, tag, &manifest).await;
    (manifest, digest)
}

/// Puts an OCI image manifest under `tag`; returns its digest, as the answer names it.
pub async fn put_manifest(target: &Target, name: &str, tag: &str, manifest: &[u8]) -> String {
    let reply = target
        .send(
            Method::PUT,
            &format!("/v2/{name}/manifests/{tag}"),
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            manifest.to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{name}:{tag}: {:?}", String::from_utf8_lossy(&reply.body));
    let digest = sha256(manifest);
    assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()));
    digest
}

/// A whole `Server` built from configuration text, on a free loopback port (`http.addr` is
/// not used); stopped by `stop`, or aborted on drop.
pub struct RunningServer {
    /// Where it listens.
    pub address: std::net::SocketAddr,
    /// The registry it serves.
    pub registry: Registry,
    server: Option<tokio::task::JoinHandle<Result<(), wharf_server::ServeError>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningServer {
    /// Starts the server that `yaml` configures.
    pub async fn from_yaml(yaml: &str) -> RunningServer {
        let config = wharf_server::Config::from_yaml(yaml, "test", Vec::new()).expect("config");
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let server = wharf_server::Server::new(config).await.expect("server");
        let registry = server.registry().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server.run(listener, async move {
            let _ = stopped.await;
        }));
        RunningServer { address, registry, server: Some(server), stop: Some(stop) }
    }

    /// Begins the graceful shutdown.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits for the server to finish.
    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("serve");
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
