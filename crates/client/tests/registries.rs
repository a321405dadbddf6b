//! The client against real servers on loopback ports: wharf-server (anonymous, and with
//! token authentication whose tokens expire during a transfer), Debian's docker-registry with
//! htpasswd over TLS, nginx with its default 1 MiB body limit in front, a proxy that cuts
//! connections and answers 429 and 503, and servers that answer wrongly on purpose.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use wharf_client::{
    BlobOutcome, BlobSource, Client, ConfigFiles, CopyOptions, Credential, Error, PlatformSpec, Platforms, Retry,
    StaticCredentials, UploadOptions, copy,
};
use wharf_oci::{Descriptor, Digest, Manifest, media_type};
use wharf_registry::{IndexChildren, RegistryOptions};
use wharf_server::ServerOptions;
use wharf_testing::http::{app, app_with, image_manifest};
use wharf_testing::images::content;
use wharf_testing::peers::{self, Distribution, has_peer};
use wharf_testing::proxy::{Direction, FaultProxy};
use wharf_testing::tokens::token_registry;

/// Serves `router` on a free loopback port; returns `127.0.0.1:<port>`.
async fn serve(router: Router) -> (String, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (address.to_string(), address)
}

/// A wharf-server over memory, deletes on.
async fn wharf_server() -> (String, SocketAddr) {
    let (_, router) = app(ServerOptions::default().with_delete_enabled(true));
    serve(router).await
}

fn quick_retries() -> Retry {
    Retry { attempts: 5, base_delay: Duration::from_millis(20), max_delay: Duration::from_millis(1500) }
}

fn plain_client(host: &str, options: UploadOptions) -> Client {
    Client::builder().plain_http(host).retry(quick_retries()).upload_options(options).build().unwrap()
}

fn blob(seed: &str, len: usize) -> (Descriptor, Bytes) {
    let data = Bytes::from(content(seed, len));
    (Descriptor::new(media_type::OCI_LAYER_TAR, Digest::sha256(&data), data.len() as u64), data)
}

async fn pulled(repository: &wharf_client::Repository, descriptor: &Descriptor) -> (Vec<u8>, u32) {
    let mut pull = repository.pull_blob(&descriptor.digest, Some(descriptor.size));
    let mut bytes = Vec::new();
    while let Some(chunk) = pull.next().await {
        bytes.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("pulling {}: {e}", descriptor.digest)));
    }
    (bytes, pull.resumes())
}

/// Pushes a config, `layers` and an image manifest tagged `tag`; returns the manifest.
async fn push_image(repository: &wharf_client::Repository, tag: &str, layers: &[(Descriptor, Bytes)]) -> Manifest {
    let config = Bytes::from(format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"tag\":\"{tag}\"}}"));
    let config_descriptor = Descriptor::new(media_type::OCI_IMAGE_CONFIG, Digest::sha256(&config), config.len() as u64);
    repository.push_blob(&config_descriptor, &config, None).await.unwrap();
    for (descriptor, data) in layers {
        repository.push_blob(descriptor, data, None).await.unwrap();
    }
    let digests: Vec<(String, usize)> = layers.iter().map(|(d, data)| (d.digest.to_string(), data.len())).collect();
    let layer_refs: Vec<(&str, usize)> = digests.iter().map(|(d, n)| (d.as_str(), *n)).collect();
    let raw = image_manifest((config_descriptor.digest.as_str(), config.len()), &layer_refs, None);
    let manifest = Manifest::parse(raw, Some(media_type::OCI_IMAGE_MANIFEST)).unwrap();
    assert_eq!(repository.push_manifest(tag, &manifest).await.unwrap(), *manifest.digest());
    manifest
}

/// Every operation the client has, against `host` as `client` reaches it; `anonymous_mounts`
/// says whether the registry mounts a blob it holds without being told from where.
async fn every_operation(client: &Client, host: &str, anonymous_mounts: bool) {
    let repository = client.repository(host, "team/app");
    // A small blob goes in one PUT; a second push finds it there.
    let (small, small_data) = blob("small", 1000);
    assert_eq!(
        repository.push_blob(&small, &small_data, None).await.unwrap(),
        BlobOutcome::Uploaded { sent: 1000, resumes: 0 }
    );
    assert_eq!(repository.push_blob(&small, &small_data, None).await.unwrap(), BlobOutcome::Skipped);
    // Larger ones stream in one PATCH, or go in chunks when a chunk size is set.
    let (streamed, streamed_data) = blob("streamed", 3 << 20);
    assert!(matches!(
        repository.push_blob(&streamed, &streamed_data, None).await.unwrap(),
        BlobOutcome::Uploaded { .. }
    ));
    assert_eq!(pulled(&repository, &streamed).await.0, streamed_data);

    let manifest =
        push_image(&repository, "v1", &[(small.clone(), small_data.clone()), (streamed.clone(), streamed_data)]).await;
    let by_tag = repository.manifest("v1").await.unwrap();
    assert_eq!(by_tag.raw(), manifest.raw());
    let by_digest = repository.manifest(manifest.digest().as_str()).await.unwrap();
    assert_eq!(by_digest.digest(), manifest.digest());
    let descriptor = repository.manifest_descriptor("v1").await.unwrap().expect("v1 is there");
    assert_eq!((&descriptor.digest, descriptor.size), (manifest.digest(), manifest.raw().len() as u64));
    assert_eq!(repository.manifest_descriptor("v2").await.unwrap(), None);
    let missing = repository.manifest("v2").await.unwrap_err();
    assert!(missing.has_code("MANIFEST_UNKNOWN"), "{missing}");
    assert_eq!(repository.tags().await.unwrap(), vec!["v1".to_owned()]);

    // A mount from the same registry sends nothing.
    let other = client.repository(host, "team/other");
    assert_eq!(other.push_blob(&small, &small_data, Some("team/app")).await.unwrap(), BlobOutcome::Mounted);
    assert_eq!(pulled(&other, &small).await.0, small_data);
    let catalog = client.catalog(host).await.unwrap();
    assert_eq!(catalog, vec!["team/app".to_owned(), "team/other".to_owned()]);
    // Without a repository to mount from, the registry is asked to find the blob itself;
    // one that does not (Distribution) opens an upload instead.
    let third = client.repository(host, "team/third");
    let outcome = third.push_blob(&small, &small_data, None).await.unwrap();
    let expected =
        if anonymous_mounts { BlobOutcome::Mounted } else { BlobOutcome::Uploaded { sent: 1000, resumes: 0 } };
    assert_eq!(outcome, expected);
    assert_eq!(pulled(&third, &small).await.0, small_data);

    // Deletes: the manifest by digest, then a blob.
    repository.delete_manifest(manifest.digest().as_str()).await.unwrap();
    assert_eq!(repository.manifest_descriptor(manifest.digest().as_str()).await.unwrap(), None);
    other.delete_blob(&small.digest).await.unwrap();
    assert_eq!(other.blob_size(&small.digest).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_against_wharf_server() {
    let (host, _) = wharf_server().await;
    let client = plain_client(&host, UploadOptions { monolithic_max: 1 << 20, max_chunk: None });
    every_operation(&client, &host, true).await;
    // The same pushes in chunks of 256 KiB, into a fresh server.
    let (host, _) = wharf_server().await;
    let chunked = plain_client(&host, UploadOptions { monolithic_max: 1 << 20, max_chunk: Some(256 << 10) });
    every_operation(&chunked, &host, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_against_distribution_with_htpasswd_over_tls() {
    let test = "every_operation_against_distribution_with_htpasswd_over_tls";
    if !has_peer("docker-registry", test) || !has_peer("openssl", test) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    peers::self_signed_for_loopback(dir, "registry");
    let hash = bcrypt::hash("wharf-pass", 5).unwrap();
    std::fs::write(dir.join("htpasswd"), format!("pusher:{hash}\n")).unwrap();
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        dir.join("registry.crt").display(),
        dir.join("registry.key").display()
    );
    let auth = format!("auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n", dir.join("htpasswd").display());
    let distribution = Distribution::start(&tls, &auth);
    let host = distribution.host();
    let ca = std::fs::read(dir.join("registry.crt")).unwrap();
    let credentials = StaticCredentials::new().with(&host, Credential::basic("pusher", "wharf-pass"));
    let client = Client::builder()
        .root_certificates(&ca)
        .unwrap()
        .credentials(credentials)
        .retry(quick_retries())
        .upload_options(UploadOptions { monolithic_max: 1 << 20, max_chunk: None })
        .build()
        .unwrap();
    every_operation(&client, &host, false).await;

    // No referrers API there: the tag schema's index is kept up to date on push and delete.
    let signed = client.repository(&host, "team/signed");
    let (_, amd64) = multi_arch(&signed, "multi").await;
    let fallback = format!("sha256-{}", amd64.digest().hex());
    let referrers = signed.referrers(amd64.digest(), None).await.unwrap();
    assert_eq!(referrers.len(), 1, "{referrers:?}");
    assert_eq!(signed.manifest(&fallback).await.unwrap().manifests(), referrers.as_slice());
    signed.delete_manifest(referrers[0].digest.as_str()).await.unwrap();
    assert_eq!(signed.referrers(amd64.digest(), None).await.unwrap(), Vec::new());
    assert!(signed.manifest(&fallback).await.unwrap().manifests().is_empty());
    let chunked = Client::builder()
        .root_certificates(&ca)
        .unwrap()
        .credentials(StaticCredentials::new().with(&host, Credential::basic("pusher", "wharf-pass")))
        .upload_options(UploadOptions { monolithic_max: 1 << 20, max_chunk: Some(256 << 10) })
        .build()
        .unwrap();
    let (layer, data) = blob("distribution-chunks", 1 << 20);
    let repository = chunked.repository(&host, "team/chunks");
    assert!(matches!(repository.push_blob(&layer, &data, None).await.unwrap(), BlobOutcome::Uploaded { .. }));
    assert_eq!(pulled(&repository, &layer).await.0, data);

    // A wrong password, no password, an untrusted certificate: refused, each clearly.
    let wrong = Client::builder()
        .root_certificates(&ca)
        .unwrap()
        .credentials(StaticCredentials::new().with(&host, Credential::basic("pusher", "wrong")))
        .build()
        .unwrap();
    let refused = wrong.repository(&host, "team/chunks").tags().await.unwrap_err();
    assert!(matches!(refused, Error::Unauthorized { .. }), "{refused}");
    let anonymous = Client::builder().root_certificates(&ca).unwrap().build().unwrap();
    let refused = anonymous.repository(&host, "team/chunks").tags().await.unwrap_err();
    assert!(matches!(refused, Error::Unauthorized { .. }), "{refused}");
    let untrusted = Client::builder().retry(Retry::NEVER).build().unwrap();
    let refused = untrusted.repository(&host, "team/chunks").tags().await.unwrap_err();
    assert!(matches!(refused, Error::Transport { .. }), "{refused}");
}

/// A source that hands out its bytes slowly: `pause` between chunks of `chunk` bytes.
struct Slow {
    data: Bytes,
    chunk: usize,
    pause: Duration,
}

impl BlobSource for Slow {
    fn open(
        &self,
        offset: u64,
    ) -> BoxFuture<'_, wharf_client::Result<BoxStream<'static, wharf_client::Result<Bytes>>>> {
        let rest = self.data.slice(usize::try_from(offset).unwrap()..);
        let (chunk, pause) = (self.chunk, self.pause);
        Box::pin(async move {
            let pieces: Vec<Bytes> =
                (0..rest.len()).step_by(chunk).map(|at| rest.slice(at..(at + chunk).min(rest.len()))).collect();
            Ok(futures::stream::iter(pieces)
                .then(move |piece| async move {
                    tokio::time::sleep(pause).await;
                    Ok(piece)
                })
                .boxed())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_authentication_with_tokens_expiring_mid_transfer() {
    // Tokens the registry honours for 1 s (the client is told 60 s).
    let tokens = token_registry(Duration::from_secs(1), false).await;
    let (host, issued) = (tokens.host, tokens.issued);
    let credentials = StaticCredentials::new().with(&host, Credential::basic("alice", "secret"));
    let client = Client::builder()
        .plain_http(&host)
        .credentials(credentials)
        .retry(quick_retries())
        .upload_options(UploadOptions { monolithic_max: 64 << 10, max_chunk: Some(64 << 10) })
        .build()
        .unwrap();
    every_operation(&client, &host, false).await;

    // A push of chunks that takes well over a token's life: every chunk still lands.
    let (layer, data) = blob("slow", 512 << 10);
    let slow = Slow { data: data.clone(), chunk: 32 << 10, pause: Duration::from_millis(250) };
    let repository = client.repository(&host, "team/slow");
    let before = issued.load(Ordering::Relaxed);
    let outcome = repository.push_blob(&layer, &slow, None).await.unwrap();
    assert!(matches!(outcome, BlobOutcome::Uploaded { .. }), "{outcome:?}");
    assert!(issued.load(Ordering::Relaxed) >= before + 2, "the expired token was not renewed");
    assert_eq!(pulled(&repository, &layer).await.0, data);

    // An identity token (an OAuth2 refresh token) is exchanged for access tokens.
    let refreshing = Client::builder()
        .plain_http(&host)
        .credentials(StaticCredentials::new().with(&host, Credential::IdentityToken("refresh-for-alice".into())))
        .build()
        .unwrap();
    assert_eq!(refreshing.repository(&host, "team/slow").blob_size(&layer.digest).await.unwrap(), Some(layer.size));
    let stale = Client::builder()
        .plain_http(&host)
        .credentials(StaticCredentials::new().with(&host, Credential::IdentityToken("revoked".into())))
        .build()
        .unwrap();
    let refused = stale.repository(&host, "team/app").tags().await.unwrap_err();
    assert!(matches!(&refused, Error::Token { reason, .. } if reason.contains("400")), "{refused}");

    // Wrong credentials: the token server's refusal, named.
    let wrong = Client::builder()
        .plain_http(&host)
        .credentials(StaticCredentials::new().with(&host, Credential::basic("alice", "wrong")))
        .build()
        .unwrap();
    let refused = wrong.repository(&host, "team/app").tags().await.unwrap_err();
    assert!(matches!(&refused, Error::Token { reason, .. } if reason.contains("401")), "{refused}");

    // A token server that answers garbage.
    let host = token_registry(Duration::from_secs(60), true).await.host;
    let client = Client::builder().plain_http(&host).build().unwrap();
    let refused = client.repository(&host, "team/app").tags().await.unwrap_err();
    assert!(
        matches!(&refused, Error::Token { realm, reason } if realm.ends_with("/token") && reason.contains("not a token")),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_resume_and_refusals_are_retried() {
    let (host, upstream) = wharf_server().await;
    let proxy = FaultProxy::start(upstream).await;
    let through = proxy.host();
    let direct = plain_client(&host, UploadOptions::default()).repository(&host, "team/faults");
    let (layer, data) = blob("faults", 4 << 20);
    direct.push_blob(&layer, &data, None).await.unwrap();

    // A download cut twice continues from where it was: about one copy crosses the proxy.
    let client = plain_client(&through, UploadOptions { monolithic_max: 1 << 20, max_chunk: None });
    let repository = client.repository(&through, "team/faults");
    proxy.cut_after(Direction::Downstream, 1 << 20);
    proxy.cut_after(Direction::Downstream, 3 << 20);
    let before = proxy.bytes(Direction::Downstream);
    let (bytes, resumes) = pulled(&repository, &layer).await;
    assert_eq!(bytes, data);
    assert!(resumes >= 2, "resumed {resumes} times");
    let carried = proxy.bytes(Direction::Downstream) - before;
    assert!(carried < data.len() as u64 + (256 << 10), "{carried} bytes crossed for a {} byte blob", data.len());

    // An upload cut twice continues from the server's offset.
    let (layer, data) = blob("faults-up", 4 << 20);
    proxy.cut_after(Direction::Upstream, 1 << 20);
    proxy.cut_after(Direction::Upstream, (5 << 20) / 2);
    let before = proxy.bytes(Direction::Upstream);
    let outcome = repository.push_blob(&layer, &data, None).await.unwrap();
    let BlobOutcome::Uploaded { resumes, .. } = outcome else { panic!("{outcome:?}") };
    assert!(resumes >= 2, "resumed {resumes} times");
    let carried = proxy.bytes(Direction::Upstream) - before;
    assert!(carried < data.len() as u64 + (1 << 20), "{carried} bytes crossed for a {} byte blob", data.len());
    assert_eq!(pulled(&direct, &layer).await.0, data);

    // A copy into a layout whose download is cut resumes it, and its progress says so.
    push_image(&direct, "cut", &[(layer.clone(), data.clone())]).await;
    let finished: Arc<Mutex<HashMap<Digest, BlobOutcome>>> = Arc::default();
    let record = finished.clone();
    let progress: Arc<dyn Fn(&wharf_client::Progress) + Send + Sync> = Arc::new(move |event| {
        if let wharf_client::Progress::Finished { digest, outcome, .. } = event {
            record.lock().unwrap().insert(digest.clone(), *outcome);
        }
    });
    let work = tempfile::tempdir().unwrap();
    let from = format!("docker://{through}/team/faults:cut").parse().unwrap();
    let to = format!("oci:{}:cut", work.path().display()).parse().unwrap();
    proxy.cut_after(Direction::Downstream, 2 << 20);
    let options = CopyOptions { progress: Some(progress), ..CopyOptions::default() };
    copy(&client, &from, &client, &to, &options).await.unwrap();
    let outcome = finished.lock().unwrap()[&layer.digest];
    assert!(matches!(outcome, BlobOutcome::Uploaded { resumes: 1.., .. }), "{outcome:?}");
    assert_eq!(std::fs::read(work.path().join("blobs/sha256").join(layer.digest.hex())).unwrap(), data);

    // 503 bursts and 429 with Retry-After are waited out; past the retry budget, named.
    let fresh = || plain_client(&through, UploadOptions::default());
    proxy.refuse_next(3, 503, None);
    assert_eq!(fresh().repository(&through, "team/faults").blob_size(&layer.digest).await.unwrap(), Some(layer.size));
    proxy.refuse_next(1, 429, Some(1));
    assert_eq!(fresh().repository(&through, "team/faults").blob_size(&layer.digest).await.unwrap(), Some(layer.size));
    proxy.refuse_next(3, 503, None);
    let impatient = Client::builder()
        .plain_http(&through)
        .retry(Retry { attempts: 1, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(10) })
        .build()
        .unwrap();
    let refused = impatient.repository(&through, "team/faults").blob_size(&layer.digest).await.unwrap_err();
    assert_eq!(refused.status(), Some(reqwest::StatusCode::SERVICE_UNAVAILABLE), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_through_nginx_with_its_one_mebibyte_body_limit() {
    let test = "pushes_through_nginx_with_its_one_mebibyte_body_limit";
    if !has_peer("nginx", test) {
        return;
    }
    let (_, upstream) = wharf_server().await;
    let work = tempfile::tempdir().unwrap();
    let port = peers::free_port();
    // nginx as it comes: no client_max_body_size, so 1 MiB.
    let server = format!(
        "  server {{\n    listen 127.0.0.1:{port};\n    location /v2/ {{\n      proxy_pass http://{upstream};\n      proxy_set_header Host $http_host;\n      proxy_request_buffering off;\n    }}\n  }}\n"
    );
    let _nginx = peers::Nginx::start(work.path(), port, &server);
    let host = format!("127.0.0.1:{port}");
    let client = plain_client(&host, UploadOptions::default());
    let repository = client.repository(&host, "team/nginx");
    let layers: Vec<_> = (0..2).map(|i| blob(&format!("nginx-{i}"), 5 << 20)).collect();
    // The first 5 MiB body is refused (413); the blob goes again in chunks under 1 MiB, and
    // the host's limit is remembered for the next blob.
    let first = repository.push_blob(&layers[0].0, &layers[0].1, None).await.unwrap();
    assert!(matches!(first, BlobOutcome::Uploaded { resumes: 1.., .. }), "{first:?}");
    let second = repository.push_blob(&layers[1].0, &layers[1].1, None).await.unwrap();
    assert!(matches!(second, BlobOutcome::Uploaded { resumes: 0, .. }), "{second:?}");
    let manifest = push_image(&repository, "v1", &layers).await;
    assert_eq!(repository.manifest("v1").await.unwrap().raw(), manifest.raw());
    for (descriptor, data) in &layers {
        assert_eq!(&pulled(&repository, descriptor).await.0, data);
    }
}

/// A registry that answers with content that is not what it claims.
async fn lying_registry() -> String {
    let good =
        image_manifest(("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 2), &[], None);
    let large = {
        let mut large = good.clone();
        large.truncate(large.len() - 1);
        large.extend_from_slice(b",\"annotations\":{\"pad\":\"");
        large.extend(std::iter::repeat_n(b'x', 8 << 10));
        large.extend_from_slice(b"\"}}");
        large
    };
    let blob_bytes = b"not the bytes!".to_vec();
    // An image whose config is sound and whose layer is served with other bytes.
    let config = b"{}".to_vec();
    let real = Digest::sha256(b"the real bytes");
    let broken = image_manifest((Digest::sha256(&config).as_str(), 2), &[(real.as_str(), 14)], None);
    let routes: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::new(Mutex::new(HashMap::from([
        ("/v2/lies/manifests/broken".to_owned(), broken),
        (format!("/v2/lies/blobs/{}", Digest::sha256(&config)), config),
        ("/v2/lies/manifests/swapped".to_owned(), good.clone()),
        ("/v2/lies/manifests/large".to_owned(), large),
        (format!("/v2/lies/manifests/{}", Digest::sha256(b"something else")), good),
        (format!("/v2/lies/blobs/{}", Digest::sha256(b"the real bytes")), blob_bytes),
    ])));
    let router = Router::new().fallback(move |uri: axum::http::Uri| {
        let routes = routes.clone();
        async move {
            let body = routes.lock().unwrap().get(uri.path()).cloned();
            match body {
                Some(body) if uri.path().ends_with("/swapped") => (
                    StatusCode::OK,
                    [
                        ("content-type", media_type::OCI_IMAGE_MANIFEST),
                        ("docker-content-digest", Digest::sha256(b"another").as_str()),
                    ],
                    body,
                )
                    .into_response(),
                Some(body) if uri.path().contains("/manifests/") => {
                    (StatusCode::OK, [("content-type", media_type::OCI_IMAGE_MANIFEST)], body).into_response()
                }
                Some(body) => (StatusCode::OK, body).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    serve(router).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_and_bad_input_are_named() {
    let host = lying_registry().await;
    let client = Client::builder().plain_http(&host).max_manifest_bytes(4096).retry(Retry::NEVER).build().unwrap();
    let lies = client.repository(&host, "lies");
    let error = lies.manifest("swapped").await.unwrap_err();
    assert!(matches!(error, Error::DigestMismatch { .. }), "{error}");
    let error = lies.manifest(Digest::sha256(b"something else").as_str()).await.unwrap_err();
    assert!(matches!(error, Error::DigestMismatch { .. }), "{error}");
    let error = lies.manifest("large").await.unwrap_err();
    assert!(matches!(error, Error::TooLarge { limit: 4096, .. }), "{error}");
    let real = Digest::sha256(b"the real bytes");
    let mut pull = lies.pull_blob(&real, None);
    let mut last = None;
    while let Some(item) = pull.next().await {
        last = Some(item);
    }
    let error = last.expect("an answer").unwrap_err();
    assert!(matches!(&error, Error::DigestMismatch { expected, .. } if *expected == real.to_string()), "{error}");

    // A copy of that image into a layout fails by name and leaves nothing of it there.
    let work = tempfile::tempdir().unwrap();
    let export = work.path().join("export");
    let error = copy(
        &client,
        &format!("docker://{host}/lies:broken").parse().unwrap(),
        &client,
        &format!("oci:{}:broken", export.display()).parse().unwrap(),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::DigestMismatch { .. }), "{error}");
    let left: Vec<String> = std::fs::read_dir(export.join("blobs/sha256"))
        .map(|entries| entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(!left.iter().any(|name| name == real.hex() || name.starts_with(".partial")), "{left:?}");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(export.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"], serde_json::json!([]), "the image is not named");

    // Addresses that do not parse say why.
    for bad in ["docker://", "docker://127.0.0.1:5000/UPPER:tag", "oci:", "ftp://x/y"] {
        let error = bad.parse::<wharf_client::ImageAddress>().unwrap_err();
        assert!(matches!(error, Error::Address { .. }), "{bad}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_files_and_helpers() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let helpers = dir.join("bin");
    std::fs::create_dir_all(&helpers).unwrap();
    let script = |name: &str, body: &str| {
        let path = helpers.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "good",
        r#"read host; echo "{\"ServerURL\":\"$host\",\"Username\":\"helper-user\",\"Secret\":\"helper-pass\"}""#,
    );
    script("refresh", r#"read host; echo '{"Username":"<token>","Secret":"refresh-token"}'"#);
    script("hang", "sleep 30");
    script("missing", "echo 'credentials not found in native keychain'; exit 1");
    std::fs::write(dir.join("auth.json"), r#"{"auths":{"podman.example:5000":{"auth":"cG9kbWFuOnBhc3M="}}}"#).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOmh1YnBhc3M="},"podman.example:5000":{"auth":"ZG9ja2VyOnBhc3M="}},
           "credHelpers":{"helped.example":"good","refresh.example":"refresh","hang.example":"hang","none.example":"missing"},
           "credsStore":"missing"}"#,
    )
    .unwrap();
    let files = ConfigFiles::from_files([dir.join("auth.json"), dir.join("config.json")])
        .helper_dirs([helpers.clone()])
        .helper_timeout(Duration::from_millis(500));
    use wharf_client::CredentialSource as _;
    // The first file that has the host wins (podman's before docker's).
    assert_eq!(files.credential("podman.example:5000").await.unwrap(), Some(Credential::basic("podman", "pass")));
    assert_eq!(files.credential("docker.io").await.unwrap(), Some(Credential::basic("hub", "hubpass")));
    assert_eq!(
        files.credential("helped.example").await.unwrap(),
        Some(Credential::basic("helper-user", "helper-pass"))
    );
    assert_eq!(
        files.credential("refresh.example").await.unwrap(),
        Some(Credential::IdentityToken("refresh-token".into()))
    );
    assert_eq!(files.credential("none.example").await.unwrap(), None);
    assert_eq!(files.credential("elsewhere.example").await.unwrap(), None);
    let started = std::time::Instant::now();
    let error = files.credential("hang.example").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "the hanging helper was not killed");
    assert!(
        matches!(&error, Error::Credentials { source_name, reason } if source_name.ends_with("docker-credential-hang") && reason.contains("killed")),
        "{error}"
    );
    std::fs::write(dir.join("broken.json"), "{not json").unwrap();
    let error = ConfigFiles::from_files([dir.join("broken.json")]).credential("x").await.unwrap_err();
    assert!(
        matches!(&error, Error::Credentials { source_name, .. } if source_name.ends_with("broken.json")),
        "{error}"
    );
}

/// Runs skopeo off the async threads.
async fn skopeo(args: Vec<String>) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        peers::skopeo(&args);
    })
    .await
    .unwrap();
}

/// An index of two platform images (sharing a layer) and an SBOM referring to the first;
/// returns the index and the amd64 image.
async fn multi_arch(repository: &wharf_client::Repository, tag: &str) -> (Manifest, Manifest) {
    let shared = blob("shared-layer", 200 << 10);
    let amd64 = push_image(repository, "amd64", &[shared.clone(), blob("amd64-layer", 300 << 10)]).await;
    let arm64 =
        push_image(repository, "arm64", &[shared, blob("arm64-layer", 100 << 10), blob("arm64-extra", 10)]).await;
    let entry = |m: &Manifest, arch: &str| {
        serde_json::json!({"mediaType": media_type::OCI_IMAGE_MANIFEST, "digest": m.digest(), "size": m.raw().len(),
            "platform": {"os": "linux", "architecture": arch}})
    };
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_IMAGE_INDEX,
        "manifests": [entry(&amd64, "amd64"), entry(&arm64, "arm64")]});
    let index = Manifest::parse(serde_json::to_vec(&index).unwrap(), Some(media_type::OCI_IMAGE_INDEX)).unwrap();
    repository.push_manifest(tag, &index).await.unwrap();
    // The SBOM: an artifact whose subject is the amd64 image.
    let (sbom, sbom_data) = blob("sbom", 2000);
    let config = Bytes::from_static(b"{}");
    let config_descriptor = Descriptor::new(media_type::OCI_EMPTY, Digest::sha256(&config), 2);
    repository.push_blob(&config_descriptor, &config, None).await.unwrap();
    repository.push_blob(&sbom, &sbom_data, None).await.unwrap();
    let raw = image_manifest(
        (config_descriptor.digest.as_str(), 2),
        &[(sbom.digest.as_str(), sbom_data.len())],
        Some((amd64.digest().as_str(), amd64.raw().len())),
    );
    let sbom_manifest = Manifest::parse(raw, Some(media_type::OCI_IMAGE_MANIFEST)).unwrap();
    repository.push_manifest(sbom_manifest.digest().as_str(), &sbom_manifest).await.unwrap();
    (index, amd64)
}

/// Whether two repositories hold the same manifest under `reference`, byte for byte, with
/// the same children and blobs.
async fn same_image(a: &wharf_client::Repository, b: &wharf_client::Repository, reference: &str) {
    let (left, right) = (a.manifest(reference).await.unwrap(), b.manifest(reference).await.unwrap());
    assert_eq!(left.raw(), right.raw(), "{reference} differs between {} and {}", a.name(), b.name());
    for child in left.manifests() {
        Box::pin(same_image(a, b, child.digest.as_str())).await;
    }
    for blob in left.config().into_iter().chain(left.layers()) {
        assert_eq!(b.blob_size(&blob.digest).await.unwrap(), Some(blob.size), "{} lacks {}", b.name(), blob.digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_match_skopeos() {
    let test = "copies_match_skopeos";
    if !has_peer("skopeo", test) {
        return;
    }
    let (source_host, _) = wharf_server().await;
    let (target_host, _) = wharf_server().await;
    let client =
        Client::builder().plain_http(&source_host).plain_http(&target_host).retry(quick_retries()).build().unwrap();
    let source = client.repository(&source_host, "team/app");
    let (index, amd64) = multi_arch(&source, "multi").await;
    let address = |host: &str, repository: &str, tag: &str| format!("docker://{host}/{repository}:{tag}");
    let parse = |text: String| text.parse::<wharf_client::ImageAddress>().unwrap();
    let everything = CopyOptions { platforms: Platforms::All, referrers: true, ..CopyOptions::default() };

    // Registry to registry: the same manifests and blobs as skopeo's copy, and the SBOM too.
    let from = parse(address(&source_host, "team/app", "multi"));
    let report =
        copy(&client, &from, &client, &parse(address(&target_host, "ours/app", "multi")), &everything).await.unwrap();
    assert_eq!(report.manifest.as_ref().map(|d| &d.digest), Some(index.digest()));
    assert_eq!(report.manifests, 4, "{report:?}");
    // Eight distinct blobs; the layer both images share goes once though they go side by side.
    assert_eq!((report.sent.0, report.skipped.0), (8, 1), "{report:?}");
    skopeo(vec![
        "copy".into(),
        "--all".into(),
        "--preserve-digests".into(),
        "--src-tls-verify=false".into(),
        "--dest-tls-verify=false".into(),
        address(&source_host, "team/app", "multi"),
        address(&target_host, "skopeo/app", "multi"),
    ])
    .await;
    let ours = client.repository(&target_host, "ours/app");
    let theirs = client.repository(&target_host, "skopeo/app");
    same_image(&ours, &theirs, "multi").await;
    same_image(&source, &ours, "multi").await;
    let referrers = ours.referrers(amd64.digest(), None).await.unwrap();
    assert_eq!(referrers.len(), 1, "{referrers:?}");
    same_image(&source, &ours, referrers[0].digest.as_str()).await;

    // Again: nothing to send.
    let again =
        copy(&client, &from, &client, &parse(address(&target_host, "ours/app", "multi")), &everything).await.unwrap();
    assert_eq!(again.sent.0, 0, "{again:?}");
    assert_eq!(again.skipped.0, report.sent.0 + report.skipped.0, "{again:?}");
    // Within one registry, blobs are mounted.
    let mounted = copy(&client, &from, &client, &parse(address(&source_host, "team/mounted", "multi")), &everything)
        .await
        .unwrap();
    assert_eq!((mounted.sent.0, mounted.mounted.0), (0, report.sent.0), "{mounted:?}");

    // One platform: a new index of it alone, its digest reported; the host's: the image alone.
    let arm =
        CopyOptions { platforms: Platforms::Only(vec!["linux/arm64".parse().unwrap()]), ..CopyOptions::default() };
    let report = copy(&client, &from, &client, &parse(address(&target_host, "ours/arm", "v1")), &arm).await.unwrap();
    let filtered = client.repository(&target_host, "ours/arm").manifest("v1").await.unwrap();
    assert_eq!(report.manifest.as_ref().map(|d| &d.digest), Some(filtered.digest()));
    assert_ne!(filtered.digest(), index.digest());
    assert_eq!(filtered.manifests().len(), 1);
    assert_eq!(
        filtered.manifests()[0].platform.as_ref().map(|p| p.architecture().to_string()).as_deref(),
        Some("arm64")
    );
    if PlatformSpec::host() == "linux/amd64".parse().unwrap() {
        copy(&client, &from, &client, &parse(address(&target_host, "ours/host", "v1")), &CopyOptions::default())
            .await
            .unwrap();
        assert_eq!(client.repository(&target_host, "ours/host").manifest("v1").await.unwrap().raw(), amd64.raw());
    }

    // To an OCI layout and back; skopeo reads what copy wrote, and copy what skopeo wrote.
    let work = tempfile::tempdir().unwrap();
    let ours_layout = work.path().join("ours");
    let layout_address = format!("oci:{}:multi", ours_layout.display());
    copy(&client, &from, &client, &parse(layout_address.clone()), &everything).await.unwrap();
    skopeo(vec![
        "copy".into(),
        "--all".into(),
        "--preserve-digests".into(),
        "--dest-tls-verify=false".into(),
        layout_address.clone(),
        address(&target_host, "skopeo/from-layout", "multi"),
    ])
    .await;
    same_image(&source, &client.repository(&target_host, "skopeo/from-layout"), "multi").await;
    copy(
        &client,
        &parse(layout_address),
        &client,
        &parse(address(&target_host, "ours/from-layout", "multi")),
        &everything,
    )
    .await
    .unwrap();
    let back = client.repository(&target_host, "ours/from-layout");
    same_image(&source, &back, "multi").await;
    assert_eq!(back.referrers(amd64.digest(), None).await.unwrap().len(), 1, "the SBOM went through the layout");
    let theirs_layout = format!("oci:{}:multi", work.path().join("theirs").display());
    skopeo(vec![
        "copy".into(),
        "--all".into(),
        "--preserve-digests".into(),
        "--src-tls-verify=false".into(),
        address(&source_host, "team/app", "multi"),
        theirs_layout.clone(),
    ])
    .await;
    copy(
        &client,
        &parse(theirs_layout),
        &client,
        &parse(address(&target_host, "ours/from-skopeo", "multi")),
        &everything,
    )
    .await
    .unwrap();
    same_image(&source, &client.repository(&target_host, "ours/from-skopeo"), "multi").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_from_a_cert_dir() {
    let test = "client_certificates_from_a_cert_dir";
    if !has_peer("docker-registry", test) || !has_peer("openssl", test) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    peers::self_signed_for_loopback(dir, "registry");
    // A CA, and a client certificate it signed.
    peers::openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=wharf-test-ca",
            "-days",
            "1",
        ],
    );
    peers::openssl(
        dir,
        &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=pusher"],
    );
    // Extensions make it a version 3 certificate, the only kind rustls takes.
    std::fs::write(dir.join("client.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n").unwrap();
    peers::openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.cert",
            "-days",
            "1",
            "-extfile",
            "client.ext",
        ],
    );
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
        dir.join("registry.crt").display(),
        dir.join("registry.key").display(),
        dir.join("ca.pem").display()
    );
    let distribution = Distribution::start(&tls, "");
    let host = distribution.host();
    // The folder as docker lays it out: the server's root as a .crt, the client's pair.
    let certs = dir.join("certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("registry.crt"), certs.join("registry.crt")).unwrap();
    std::fs::copy(dir.join("client.cert"), certs.join("client.cert")).unwrap();
    std::fs::copy(dir.join("client.key"), certs.join("client.key")).unwrap();
    let client = Client::builder().cert_dir(&certs).unwrap().retry(Retry::NEVER).build().unwrap();
    let (layer, data) = blob("mtls", 1000);
    let repository = client.repository(&host, "team/mtls");
    assert!(matches!(repository.push_blob(&layer, &data, None).await.unwrap(), BlobOutcome::Uploaded { .. }));
    assert_eq!(pulled(&repository, &layer).await.0, data);
    // Trusting the server without presenting a certificate: refused in the handshake.
    let ca = std::fs::read(dir.join("registry.crt")).unwrap();
    let without = Client::builder().root_certificates(&ca).unwrap().retry(Retry::NEVER).build().unwrap();
    let refused = without.repository(&host, "team/mtls").blob_size(&layer.digest).await.unwrap_err();
    assert!(matches!(refused, Error::Transport { .. }), "{refused}");
    // A key that does not parse is named.
    std::fs::write(certs.join("client.key"), "not a key").unwrap();
    let error = Client::builder().cert_dir(&certs).unwrap_err();
    assert!(matches!(&error, Error::Tls(reason) if reason.contains("client.cert")), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_copies_and_transfers_per_host() {
    let (source_host, _) = wharf_server().await;
    let (strict_host, _) = wharf_server().await;
    let sparse_options = RegistryOptions::default().with_index_children(IndexChildren::None);
    let (sparse_host, _) = serve(app_with(sparse_options, ServerOptions::default()).1).await;
    let client = Client::builder()
        .plain_http(&source_host)
        .plain_http(&strict_host)
        .plain_http(&sparse_host)
        .retry(quick_retries())
        .build()
        .unwrap();
    let source = client.repository(&source_host, "team/app");
    let (index, amd64) = multi_arch(&source, "multi").await;
    let arm64 = index.manifests().iter().find(|d| d.digest != *amd64.digest()).unwrap().digest.clone();
    let arm64_layer = blob("arm64-layer", 100 << 10).0.digest;
    let address = |host: &str, repository: &str| format!("docker://{host}/{repository}:multi");
    let parse = |text: String| text.parse::<wharf_client::ImageAddress>().unwrap();
    let from = parse(address(&source_host, "team/app"));
    let sparse = CopyOptions {
        platforms: Platforms::Sparse(vec!["linux/amd64".parse().unwrap()]),
        referrers: true,
        ..CopyOptions::default()
    };

    // A registry that takes sparse indexes: the original index, its amd64 image (and the
    // SBOM of it), nothing of arm64.
    let report = copy(&client, &from, &client, &parse(address(&sparse_host, "ours/app")), &sparse).await.unwrap();
    assert_eq!(report.manifest.as_ref().map(|d| &d.digest), Some(index.digest()));
    let ours = client.repository(&sparse_host, "ours/app");
    assert_eq!(ours.manifest("multi").await.unwrap().raw(), index.raw());
    same_image(&source, &ours, amd64.digest().as_str()).await;
    assert_eq!(ours.referrers(amd64.digest(), None).await.unwrap().len(), 1);
    assert_eq!(ours.manifest_descriptor(arm64.as_str()).await.unwrap(), None);
    assert_eq!(ours.blob_size(&arm64_layer).await.unwrap(), None);
    // The whole index copied over it fills in what the sparse copy left out.
    let everything = CopyOptions { platforms: Platforms::All, ..CopyOptions::default() };
    copy(&client, &from, &client, &parse(address(&sparse_host, "ours/app")), &everything).await.unwrap();
    same_image(&source, &ours, "multi").await;
    // One that requires every image of an index says so, and gets no index.
    let refused = copy(&client, &from, &client, &parse(address(&strict_host, "ours/app")), &sparse).await.unwrap_err();
    assert!(refused.to_string().contains("refuses a sparse index"), "{refused}");
    let strict = client.repository(&strict_host, "ours/app");
    assert_eq!(strict.manifest_descriptor("multi").await.unwrap(), None);
    // An OCI layout takes one.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("sparse");
    copy(&client, &from, &client, &parse(format!("oci:{}:multi", layout.display())), &sparse).await.unwrap();
    let index_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let named: Vec<&str> =
        index_json["manifests"].as_array().unwrap().iter().filter_map(|d| d["digest"].as_str()).collect();
    assert!(named.contains(&index.digest().as_str()), "{index_json}");
    assert!(layout.join("blobs/sha256").join(amd64.digest().hex()).exists());
    assert!(!layout.join("blobs/sha256").join(arm64.hex()).exists());

    // Two copies at once through one client allowed two transfers per host: never more
    // than two blobs between their start and their end. Without the limit, one copy alone
    // has eight in flight. The target answers each request after 20 ms, as a registry
    // across a network does, so that transfers overlap however busy the machine is.
    let layers: Vec<(Descriptor, Bytes)> = (0..12).map(|i| blob(&format!("many-{i}"), 64 << 10)).collect();
    push_image(&source, "many", &layers).await;
    let from_many = parse(format!("docker://{source_host}/team/app:many"));
    let distant = app(ServerOptions::default()).1.layer(axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            next.run(request).await
        },
    ));
    let (strict_host, _) = serve(distant).await;
    let client =
        Client::builder().plain_http(&source_host).plain_http(&strict_host).retry(quick_retries()).build().unwrap();
    let peak_in_flight = |client: Client, targets: Vec<&'static str>| {
        let strict_host = strict_host.clone();
        let from_many = from_many.clone();
        async move {
            let (in_flight, peak) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            let (counter, highest) = (in_flight.clone(), peak.clone());
            let progress: Arc<dyn Fn(&wharf_client::Progress) + Send + Sync> = Arc::new(move |event| match event {
                wharf_client::Progress::Started { .. } => {
                    highest.fetch_max(counter.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                }
                wharf_client::Progress::Finished { .. } => {
                    counter.fetch_sub(1, Ordering::SeqCst);
                }
                _ => {}
            });
            let options = CopyOptions { concurrency: 8, progress: Some(progress), ..CopyOptions::default() };
            let copies = targets.into_iter().map(|target| {
                let to = format!("docker://{strict_host}/{target}:many").parse::<wharf_client::ImageAddress>().unwrap();
                let (client, from_many, options) = (client.clone(), from_many.clone(), options.clone());
                async move { copy(&client, &from_many, &client, &to, &options).await.unwrap() }
            });
            futures::future::join_all(copies).await;
            peak.load(Ordering::SeqCst)
        }
    };
    let limited = Client::builder()
        .plain_http(&source_host)
        .plain_http(&strict_host)
        .transfers_per_host(2)
        .retry(quick_retries())
        .build()
        .unwrap();
    let peak = peak_in_flight(limited, vec!["limited/a", "limited/b"]).await;
    assert!((1..=2).contains(&peak), "{peak} blobs in flight with a limit of 2");
    let unlimited = peak_in_flight(client.clone(), vec!["unlimited/a"]).await;
    assert!(unlimited > 2, "{unlimited} blobs in flight without a limit");
    for copied in ["limited/a", "limited/b", "unlimited/a"] {
        same_image(&source, &client.repository(&strict_host, copied), "many").await;
    }

    // Eight copies at once into one layout, each under its own tag: every tag is in the
    // index, every blob whole.
    let shared = work.path().join("shared");
    let copies = (0..8).map(|i| {
        let (client, from) = (client.clone(), from.clone());
        let to = parse(format!("oci:{}:tag{i}", shared.display()));
        let options = CopyOptions { platforms: Platforms::All, ..CopyOptions::default() };
        async move { copy(&client, &from, &client, &to, &options).await.unwrap() }
    });
    futures::future::join_all(copies).await;
    let layout = wharf_client::Layout::open(&shared).unwrap();
    for i in 0..8 {
        let tag = format!("tag{i}").parse().unwrap();
        let descriptor = layout.resolve(Some(&wharf_client::LayoutImage::Tag(tag))).unwrap();
        assert_eq!(descriptor.digest, *index.digest());
    }
    let back = client.repository(&strict_host, "from/shared");
    copy(
        &client,
        &parse(format!("oci:{}:tag7", shared.display())),
        &client,
        &parse(address(&strict_host, "from/shared")),
        &CopyOptions { platforms: Platforms::All, ..CopyOptions::default() },
    )
    .await
    .unwrap();
    same_image(&source, &back, "multi").await;
}

/// A registry that refuses a mount without `from` outright (400), as some do, and takes
/// plain uploads: the push asks again without the mount and uploads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_anonymous_mount_becomes_a_plain_upload() {
    let posts: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = posts.clone();
    let router = Router::new().fallback(move |method: axum::http::Method, uri: axum::http::Uri| {
        let seen = seen.clone();
        async move {
            let path = uri.path().to_owned();
            match method.as_str() {
                "HEAD" => StatusCode::NOT_FOUND.into_response(),
                "POST" => {
                    let query = uri.query().unwrap_or_default().to_owned();
                    seen.lock().unwrap().push(query.clone());
                    if query.contains("mount=") {
                        (StatusCode::BAD_REQUEST, r#"{"errors":[{"code":"UNSUPPORTED","message":"no mounts"}]}"#)
                            .into_response()
                    } else {
                        (StatusCode::ACCEPTED, [("location", "/v2/team/app/blobs/uploads/one")]).into_response()
                    }
                }
                "PUT" if path == "/v2/team/app/blobs/uploads/one" => StatusCode::CREATED.into_response(),
                _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
            }
        }
    });
    let (host, _) = serve(router).await;
    let client = plain_client(&host, UploadOptions::default());
    let (layer, data) = blob("refused-mount", 1000);
    let outcome = client.repository(&host, "team/app").push_blob(&layer, &data, None).await.unwrap();
    assert_eq!(outcome, BlobOutcome::Uploaded { sent: 1000, resumes: 0 });
    let posts = posts.lock().unwrap().clone();
    assert_eq!(posts, [format!("mount={}", layer.digest), String::new()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_credential_helper_for_every_host_its_answers_kept() {
    use wharf_client::{CredentialHelper, CredentialSource as _};
    let work = tempfile::tempdir().unwrap();
    let calls = work.path().join("calls");
    let helper = work.path().join("docker-credential-counting");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread host\necho x >> {}\necho \"{{\\\"Username\\\":\\\"user-$host\\\",\\\"Secret\\\":\\\"pass\\\"}}\"\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let called = || std::fs::read_to_string(&calls).map(|t| t.lines().count()).unwrap_or(0);

    let kept = CredentialHelper::new(&helper).lifetime(Duration::from_secs(60));
    for _ in 0..3 {
        let answer = kept.credential("registry.example").await.unwrap();
        assert_eq!(answer, Some(Credential::basic("user-registry.example", "pass")));
    }
    assert_eq!(called(), 1, "asked once within its lifetime");
    kept.credential("other.example").await.unwrap();
    assert_eq!(called(), 2, "each host asked on its own");
    let fresh = CredentialHelper::new(&helper);
    fresh.credential("registry.example").await.unwrap();
    fresh.credential("registry.example").await.unwrap();
    assert_eq!(called(), 4, "without a lifetime, asked every time");
    let missing = CredentialHelper::new(work.path().join("docker-credential-absent"));
    let error = missing.credential("registry.example").await.unwrap_err();
    assert!(error.to_string().contains("docker-credential-absent"), "{error}");
}
