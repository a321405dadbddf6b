//! The pull-through cache against an upstream wharf-server served on loopback, its requests
//! counted: what is fetched once, what is served from the cache, tags checked after their
//! ttl, the cache serving while the upstream is down, a corrupt upstream blob refused, and
//! sixteen requests for one uncached blob making one transfer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use wharf_client::{Client, Retry};
use wharf_mirror::{BlobFetch, CacheRoute, Error, PullThrough, Upstream};
use wharf_oci::{Digest, RepositoryName};
use wharf_registry::{ManifestReference, Registry, RegistryOptions, Repository};
use wharf_testing::http::image_manifest;
use wharf_testing::images::content;

/// Requests an upstream answered: all of them, and blob GETs.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    blob_gets: AtomicU64,
    manifest_gets: AtomicU64,
}

/// Serves `router` on a free loopback port, counting requests; stops when the handle drops.
struct Served {
    host: String,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(router: Router) -> Served {
    let counts = Arc::new(Counts::default());
    let counting = counts.clone();
    let router = router.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        let counts = counting.clone();
        async move {
            counts.requests.fetch_add(1, Ordering::SeqCst);
            let path = request.uri().path();
            if request.method() == axum::http::Method::GET {
                if path.contains("/blobs/") {
                    counts.blob_gets.fetch_add(1, Ordering::SeqCst);
                } else if path.contains("/manifests/") {
                    counts.manifest_gets.fetch_add(1, Ordering::SeqCst);
                }
            }
            next.run(request).await
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Served { host, counts, task }
}

/// An upstream wharf-server over memory, and its registry to push into.
async fn upstream() -> (Registry, Served) {
    let (registry, router) = wharf_testing::http::app(wharf_server::ServerOptions::default());
    (registry, serve(router).await)
}

async fn blob(repository: &Repository, data: Vec<u8>) -> (Digest, usize) {
    let digest = Digest::sha256(&data);
    let size = data.len();
    repository.put_blob(&digest, futures::stream::iter([Ok(Bytes::from(data))])).await.unwrap();
    (digest, size)
}

/// An image with a layer of `layer_size` bytes, tagged `tag`: its manifest's and layer's digests.
async fn image(repository: &Repository, seed: &str, layer_size: usize, tag: &str) -> (Digest, Digest, Vec<u8>) {
    let config = blob(repository, format!("{{\"seed\":\"{seed}\"}}").into_bytes()).await;
    let layer_bytes = content(seed, layer_size);
    let layer = blob(repository, layer_bytes.clone()).await;
    let raw = image_manifest((config.0.as_str(), config.1), &[(layer.0.as_str(), layer.1)], None);
    let manifest = repository.put_manifest(&tag.parse().unwrap(), Bytes::from(raw), None).await.unwrap();
    (manifest, layer.0, layer_bytes)
}

fn client(host: &str) -> Client {
    let retry = Retry { attempts: 1, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20) };
    Client::builder().plain_http(host).retry(retry).connect_timeout(Duration::from_secs(2)).build().unwrap()
}

fn cache(upstreams: Vec<Upstream>) -> (Registry, PullThrough) {
    let registry = Registry::new(Arc::new(wharf_storage::MemoryDriver::new()), RegistryOptions::default());
    let mirror = PullThrough::new(&registry, upstreams);
    (registry, mirror)
}

fn name(text: &str) -> RepositoryName {
    text.parse().unwrap()
}

fn tag(text: &str) -> ManifestReference {
    text.parse().unwrap()
}

/// The bytes a fetch answers with: streamed, or read from the cache.
async fn bytes_of(fetch: BlobFetch, registry: &Registry, route: &CacheRoute, digest: &Digest) -> Vec<u8> {
    match fetch {
        BlobFetch::Streaming { stream, .. } => stream
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .unwrap(),
        BlobFetch::Cached => {
            let (_, stream) = registry.repository(&route.local).read_blob(digest, 0).await.unwrap();
            stream
                .try_fold(Vec::new(), |mut all, chunk| async move {
                    all.extend_from_slice(&chunk);
                    Ok(all)
                })
                .await
                .unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_once_then_served_from_the_cache() {
    let (origin, served) = upstream().await;
    let (manifest, layer, layer_bytes) =
        image(&origin.repository(&name("library/alpine")), "alpine", 300_000, "3.20").await;
    let (registry, mirror) = cache(vec![Upstream::new("docker.io", &served.host, client(&served.host))]);
    let route = mirror.route(&name("library/alpine"), None).unwrap();

    assert_eq!(mirror.manifest(&route, &tag("3.20")).await.unwrap(), manifest);
    let fetch = mirror.blob(&route, &layer).await.unwrap();
    assert!(matches!(fetch, BlobFetch::Streaming { size: 300_000, .. }), "{fetch:?}");
    assert_eq!(bytes_of(fetch, &registry, &route, &layer).await, layer_bytes);
    let requests = served.counts.requests.load(Ordering::SeqCst);

    // Again: from the cache, the upstream not asked (the tag is within its ttl).
    assert_eq!(mirror.manifest(&route, &tag("3.20")).await.unwrap(), manifest);
    assert_eq!(mirror.manifest(&route, &ManifestReference::Digest(manifest.clone())).await.unwrap(), manifest);
    let fetch = mirror.blob(&route, &layer).await.unwrap();
    assert!(matches!(fetch, BlobFetch::Cached));
    assert_eq!(bytes_of(fetch, &registry, &route, &layer).await, layer_bytes);
    assert_eq!(served.counts.requests.load(Ordering::SeqCst), requests);
    let stored = registry.repository(&name("library/alpine")).get_manifest(&tag("3.20")).await.unwrap();
    assert_eq!(stored.digest, manifest);

    // Nothing upstream by that name: not found, nothing cached.
    let missing = mirror.manifest(&route, &tag("9.99")).await.unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
    let unknown = mirror.blob(&route, &Digest::sha256(b"no such blob")).await.unwrap_err();
    assert!(matches!(unknown, Error::NotFound { .. }), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_requests_for_one_uncached_blob_make_one_transfer() {
    let (origin, served) = upstream().await;
    let (_, layer, layer_bytes) = image(&origin.repository(&name("big")), "big", 8 << 20, "latest").await;
    let (registry, mirror) = cache(vec![Upstream::new("origin", &served.host, client(&served.host))]);
    let route = mirror.route(&name("big"), None).unwrap();
    let fetches = futures::future::join_all((0..16).map(|_| {
        let (mirror, route, layer, registry) = (mirror.clone(), route.clone(), layer.clone(), registry.clone());
        tokio::spawn(async move {
            let fetch = mirror.blob(&route, &layer).await.unwrap();
            let streamed = matches!(fetch, BlobFetch::Streaming { .. });
            (streamed, bytes_of(fetch, &registry, &route, &layer).await)
        })
    }))
    .await;
    let mut streamed = 0;
    for fetch in fetches {
        let (was_streamed, bytes) = fetch.unwrap();
        streamed += usize::from(was_streamed);
        assert!(bytes == layer_bytes, "a request got other bytes ({} of them)", bytes.len());
    }
    assert_eq!(streamed, 1, "one request streams, the others wait for it");
    assert_eq!(served.counts.blob_gets.load(Ordering::SeqCst), 1, "one transfer from upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_checked_after_their_ttl_and_served_while_the_upstream_is_down() {
    let (origin, served) = upstream().await;
    let app = origin.repository(&name("team/app"));
    let (first, _, _) = image(&app, "first", 1000, "stable").await;
    let (registry, mirror) =
        cache(vec![Upstream::new("origin", &served.host, client(&served.host)).with_ttl(Duration::ZERO)]);
    let route = mirror.route(&name("team/app"), None).unwrap();
    assert_eq!(mirror.manifest(&route, &tag("stable")).await.unwrap(), first);

    // The tag unchanged: a HEAD, no manifest download.
    let gets = served.counts.manifest_gets.load(Ordering::SeqCst);
    assert_eq!(mirror.manifest(&route, &tag("stable")).await.unwrap(), first);
    assert_eq!(served.counts.manifest_gets.load(Ordering::SeqCst), gets);

    // Moved upstream: seen at once with a ttl of zero, and kept.
    let (second, _, _) = image(&app, "second", 1000, "stable").await;
    assert_eq!(mirror.manifest(&route, &tag("stable")).await.unwrap(), second);
    let cached = registry.repository(&name("team/app")).resolve(&tag("stable")).await.unwrap();
    assert_eq!(cached, second);

    // A cache with a long ttl does not ask.
    let (_, patient) = cache(vec![Upstream::new("origin", &served.host, client(&served.host))]);
    let route_long = patient.route(&name("team/app"), None).unwrap();
    assert_eq!(patient.manifest(&route_long, &tag("stable")).await.unwrap(), second);
    image(&app, "third", 1000, "stable").await;
    assert_eq!(patient.manifest(&route_long, &tag("stable")).await.unwrap(), second);

    // The upstream down: what is cached is served; what is not, fails by name.
    drop(served);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(mirror.manifest(&route, &tag("stable")).await.unwrap(), second);
    let error = mirror.manifest(&route, &tag("other")).await.unwrap_err();
    assert!(matches!(error, Error::Upstream { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_upstream_blob_is_refused_and_not_cached() {
    // An upstream that answers every blob with bytes other than its digest's.
    let wrong = Bytes::from(content("not the blob", 5000));
    let asked = Digest::sha256(&content("the blob", 5000));
    let body = wrong.clone();
    let router = Router::new().fallback(move |request: Request| {
        let body = body.clone();
        async move {
            let mut response = axum::response::Response::new(axum::body::Body::from(body.clone()));
            if request.method() == axum::http::Method::HEAD {
                *response.body_mut() = axum::body::Body::empty();
            }
            response.headers_mut().insert("content-length", body.len().into());
            response
        }
    });
    let served = serve(router).await;
    let (registry, mirror) = cache(vec![Upstream::new("bad", &served.host, client(&served.host))]);
    let route = mirror.route(&name("x"), None).unwrap();
    let BlobFetch::Streaming { stream, .. } = mirror.blob(&route, &asked).await.unwrap() else {
        panic!("an uncached blob streams")
    };
    let items: Vec<std::io::Result<Bytes>> = stream.collect().await;
    let last = items.last().unwrap();
    assert!(
        last.as_ref().is_err_and(|e| e.to_string().contains(&format!("digest mismatch: expected {asked}"))),
        "{last:?}"
    );
    let received: usize = items.iter().filter_map(|item| item.as_ref().ok()).map(Bytes::len).sum();
    assert!(received < wrong.len(), "the client never gets the whole of a corrupt blob");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(registry.repository(&name("x")).stat_blob(&asked).await.is_err(), "a corrupt blob is not kept");
    // Asked again: fetched again (and refused again), not served from the cache.
    assert!(matches!(mirror.blob(&route, &asked).await.unwrap(), BlobFetch::Streaming { .. }));
}

#[test]
fn requests_are_routed_by_ns_then_prefix_then_the_root() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = runtime.enter();
    let plain = |host: &str| Client::builder().plain_http(host).build().unwrap();
    let (_, mirror) = cache(vec![
        Upstream::new("docker.io", "registry-1.docker.io", plain("registry-1.docker.io")).with_prefix("hub"),
        Upstream::new("quay.io", "quay.io", plain("quay.io")).with_prefix("/quay/"),
        Upstream::new("origin", "origin.example", plain("origin.example")),
    ]);
    let route = |repository: &str, ns: Option<&str>| {
        let route = mirror.route(&name(repository), ns).unwrap();
        (mirror.upstream(&route).name.clone(), route.local.to_string(), route.remote)
    };
    assert_eq!(
        route("library/alpine", Some("docker.io")),
        ("docker.io".into(), "hub/library/alpine".into(), "library/alpine".into())
    );
    assert_eq!(
        route("hub/library/alpine", None),
        ("docker.io".into(), "hub/library/alpine".into(), "library/alpine".into())
    );
    assert_eq!(route("quay/coreos/etcd", None), ("quay.io".into(), "quay/coreos/etcd".into(), "coreos/etcd".into()));
    assert_eq!(route("hubert/app", None), ("origin".into(), "hubert/app".into(), "hubert/app".into()));
    assert_eq!(route("team/app", Some("ghcr.io")), ("origin".into(), "team/app".into(), "team/app".into()));
    let (_, only_prefixed) = cache(vec![Upstream::new("docker.io", "h", plain("h")).with_prefix("hub")]);
    assert_eq!(only_prefixed.route(&name("team/app"), None), None, "a repository of the registry's own");
}

/// An image of a shared base layer and a layer of its own, tagged `tag`.
async fn layered(repository: &Repository, base: &[u8], seed: &str, tag: &str) -> (Digest, Digest) {
    let config = blob(repository, format!("{{\"seed\":\"{seed}\"}}").into_bytes()).await;
    let base = blob(repository, base.to_vec()).await;
    let own = blob(repository, content(seed, 4000)).await;
    let raw =
        image_manifest((config.0.as_str(), config.1), &[(base.0.as_str(), base.1), (own.0.as_str(), own.1)], None);
    (repository.put_manifest(&tag.parse().unwrap(), Bytes::from(raw), None).await.unwrap(), own.0)
}

/// Caches image `tag` of `repository` and its blobs through `mirror`.
async fn cache_image(mirror: &PullThrough, repository: &str, tag: &str) -> CacheRoute {
    let route = mirror.route(&name(repository), None).unwrap();
    let digest = mirror.manifest(&route, &self::tag(tag)).await.unwrap();
    let stored = mirror_registry_manifest(mirror, &route, &digest).await;
    for descriptor in stored.layers() {
        if let BlobFetch::Streaming { stream, .. } = mirror.blob(&route, &descriptor.digest).await.unwrap() {
            stream.try_for_each(|_| async { Ok(()) }).await.unwrap();
        }
    }
    route
}

async fn mirror_registry_manifest(mirror: &PullThrough, route: &CacheRoute, digest: &Digest) -> wharf_oci::Manifest {
    let upstream = mirror.upstream(route);
    upstream.client.repository(&upstream.host, &route.remote).manifest(digest.as_str()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_leaves_shared_and_pinned_content() {
    let (origin, served) = upstream().await;
    let base = content("shared base", 6000);
    let (_, old_own) = layered(&origin.repository(&name("team/old")), &base, "old", "v1").await;
    let (_, pinned_own) = layered(&origin.repository(&name("team/pinned")), &base, "pinned", "keep").await;
    let (_, new_own) = layered(&origin.repository(&name("team/new")), &base, "new", "v1").await;
    let ttl = Duration::from_secs(2);
    let (registry, mirror) = cache(vec![Upstream::new("origin", &served.host, client(&served.host)).with_ttl(ttl)]);
    let mirror = mirror.with_pinned(&["team/pinned:keep".to_owned()]).unwrap();
    cache_image(&mirror, "team/old", "v1").await;
    cache_image(&mirror, "team/pinned", "keep").await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let fresh = cache_image(&mirror, "team/new", "v1").await;

    let expired = mirror.expire(std::time::SystemTime::now()).await.unwrap();
    assert_eq!((expired.tags, expired.manifests), (1, 1), "only the old image goes");
    assert!(registry.repository(&name("team/old")).resolve(&tag("v1")).await.is_err());
    assert!(registry.repository(&name("team/pinned")).resolve(&tag("keep")).await.is_ok());
    let mut gc = wharf_registry::GcOptions::default();
    gc.grace_period = Duration::ZERO;
    gc.clock_slack = Duration::ZERO;
    registry.collect_garbage(&gc).await.unwrap();

    // The old image's own layer is collected; the base it shared, and the pinned image's
    // layers, stay and are served.
    let held = |digest: &Digest| {
        let (registry, digest) = (registry.clone(), digest.clone());
        async move { registry.repository(&name("team/new")).link_blob(&digest).await.is_ok() }
    };
    assert!(!held(&old_own).await, "the expired image's own layer is collected");
    assert!(held(&pinned_own).await);
    let base_digest = Digest::sha256(&base);
    assert!(matches!(mirror.blob(&fresh, &base_digest).await.unwrap(), BlobFetch::Cached));
    assert_eq!(bytes_of(BlobFetch::Cached, &registry, &fresh, &base_digest).await, base);
    assert!(matches!(mirror.blob(&fresh, &new_own).await.unwrap(), BlobFetch::Cached));

    // What expired is fetched again when asked for.
    let old = mirror.route(&name("team/old"), None).unwrap();
    mirror.manifest(&old, &tag("v1")).await.unwrap();
    assert!(matches!(mirror.blob(&old, &old_own).await.unwrap(), BlobFetch::Streaming { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_brings_the_chosen_tags_in_before_anyone_asks() {
    let (origin, served) = upstream().await;
    let app = origin.repository(&name("team/app"));
    let (v1, v1_layer, _) = image(&app, "v1", 5000, "v1.0.0").await;
    let (_, dev_layer, _) = image(&app, "dev", 5000, "dev").await;
    // An index of two images, tagged as a release.
    let (amd64, amd64_layer, _) = image(&app, "amd64", 3000, "tmp-amd64").await;
    let (arm64, arm64_layer, _) = image(&app, "arm64", 3000, "tmp-arm64").await;
    let mut children = Vec::new();
    for (digest, arch) in [(&amd64, "amd64"), (&arm64, "arm64")] {
        let size = app.get_manifest(&ManifestReference::Digest(digest.clone())).await.unwrap().content.len();
        children.push(serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                                         "size": size, "platform": {"os": "linux", "architecture": arch}}));
    }
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}))
    .unwrap();
    app.put_manifest(&tag("v2.0.0"), Bytes::from(index), None).await.unwrap();

    let (registry, mirror) =
        cache(vec![Upstream::new("origin", &served.host, client(&served.host)).with_prefix("edge")]);
    let route = mirror.route(&name("edge/team/app"), None).unwrap();
    let releases = wharf_policy::TagSelector::from_value(serde_json::json!({"semver": "*"}), "tags").unwrap();
    let synced = mirror.sync(&route, Some(&releases)).await.unwrap();
    assert_eq!((synced.tags, synced.manifests), (2, 4), "v1.0.0, and v2.0.0 with its two images: {synced:?}");
    let local = registry.repository(&name("edge/team/app"));
    assert_eq!(local.resolve(&tag("v1.0.0")).await.unwrap(), v1);
    assert!(local.resolve(&tag("dev")).await.is_err(), "dev is no release");
    for layer in [&v1_layer, &amd64_layer, &arm64_layer] {
        assert!(local.stat_blob(layer).await.is_ok(), "{layer} is in the cache");
    }
    assert!(local.stat_blob(&dev_layer).await.is_err());

    // Again: nothing fetched. Then the upstream goes away, and the site has its images.
    assert_eq!(mirror.sync(&route, Some(&releases)).await.unwrap().blobs, 0);
    drop(served);
    assert_eq!(mirror.manifest(&route, &tag("v1.0.0")).await.unwrap(), v1);
    assert!(matches!(mirror.blob(&route, &amd64_layer).await.unwrap(), BlobFetch::Cached));
}

/// What a streamed fetch gave its client: the bytes that came, and whether it ended well.
async fn streamed(fetch: BlobFetch) -> (usize, Result<(), String>) {
    let BlobFetch::Streaming { stream, .. } = fetch else { panic!("an uncached blob streams") };
    let items: Vec<std::io::Result<Bytes>> = stream.collect().await;
    let received = items.iter().filter_map(|item| item.as_ref().ok()).map(Bytes::len).sum();
    let outcome = items.iter().find_map(|item| item.as_ref().err()).map_or(Ok(()), |e| Err(e.to_string()));
    (received, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_cut_midway_resumes_from_where_it_was_cut() {
    let (origin, served) = upstream().await;
    let (_, layer, layer_bytes) = image(&origin.repository(&name("library/alpine")), "cut", 1 << 20, "3.20").await;
    let proxy = wharf_testing::proxy::FaultProxy::start(served.host.parse().unwrap()).await;
    let (registry, mirror) = cache(vec![Upstream::new("docker.io", proxy.host(), client(&proxy.host()))]);
    let route = mirror.route(&name("library/alpine"), None).unwrap();
    let before = proxy.bytes(wharf_testing::proxy::Direction::Downstream);
    // The connection that carries the layer is cut halfway through it.
    proxy.cut_after(wharf_testing::proxy::Direction::Downstream, 1 << 19);
    let fetch = mirror.blob(&route, &layer).await.unwrap();
    assert_eq!(bytes_of(fetch, &registry, &route, &layer).await, layer_bytes);
    let carried = proxy.bytes(wharf_testing::proxy::Direction::Downstream) - before;
    assert!(carried < (1 << 20) + (1 << 18), "the rest asked for, not the whole again: {carried} bytes");
    assert!(proxy.connections() >= 2, "a new connection for the rest");
    wharf_testing::eventually("the layer kept", Duration::from_secs(5), async || {
        registry.repository(&name("library/alpine")).stat_blob(&layer).await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_lost_midway_fails_the_clients_and_keeps_nothing() {
    // An upstream that, while `lost`, sends half of a blob and breaks off, then answers 503.
    let whole = Bytes::from(content("lost midway", 1 << 20));
    let digest = Digest::sha256(&whole);
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (body, down) = (whole.clone(), lost.clone());
    let router = Router::new().fallback(move |request: Request| {
        let (body, down) = (body.clone(), down.load(Ordering::SeqCst));
        async move {
            let ranged = request.headers().contains_key("range");
            let mut response = if request.method() == axum::http::Method::HEAD {
                axum::response::Response::new(axum::body::Body::empty())
            } else if down && ranged {
                let mut refused = axum::response::Response::new(axum::body::Body::empty());
                *refused.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
                return refused;
            } else if down {
                let half = body.slice(..body.len() / 2);
                let chunks: Vec<std::io::Result<Bytes>> = vec![Ok(half), Err(std::io::Error::other("lost"))];
                axum::response::Response::new(axum::body::Body::from_stream(futures::stream::iter(chunks)))
            } else {
                axum::response::Response::new(axum::body::Body::from(body.clone()))
            };
            response.headers_mut().insert("content-length", body.len().into());
            response
        }
    });
    let served = serve(router).await;
    let (registry, mirror) = cache(vec![Upstream::new("lossy", &served.host, client(&served.host))]);
    let route = mirror.route(&name("x"), None).unwrap();
    // A second request joins the transfer under way and hears how it ended.
    let (first, second) = futures::join!(mirror.blob(&route, &digest), async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        mirror.blob(&route, &digest).await
    });
    let (received, outcome) = streamed(first.unwrap()).await;
    assert!(outcome.is_err() && received < whole.len(), "{received} bytes, {outcome:?}");
    match second {
        Err(Error::Transfer { reason, .. }) => assert!(!reason.is_empty()),
        // Had it come after the transfer ended, it would have made one of its own, which fails
        // the same way.
        Ok(fetch) => assert!(streamed(fetch).await.1.is_err()),
        Err(other) => panic!("{other}"),
    }
    assert!(registry.repository(&name("x")).stat_blob(&digest).await.is_err(), "nothing half kept");
    // The upstream back: a client that saw the failure asks again and gets it whole.
    lost.store(false, Ordering::SeqCst);
    let fetch = mirror.blob(&route, &digest).await.unwrap();
    assert_eq!(bytes_of(fetch, &registry, &route, &digest).await, whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_at_each_step_of_a_fetch_keeps_nothing_half_written() {
    use wharf_storage::{Fault, FaultInjector, Operation};
    let (origin, served) = upstream().await;
    let (_, layer, layer_bytes) = image(&origin.repository(&name("library/alpine")), "store", 300_000, "3.20").await;
    for operation in [Operation::Writer, Operation::Write, Operation::Commit, Operation::PutContent] {
        let faulty = Arc::new(FaultInjector::new(wharf_storage::MemoryDriver::new()));
        let registry = Registry::new(faulty.clone(), RegistryOptions::default());
        let mirror = PullThrough::new(&registry, vec![Upstream::new("docker.io", &served.host, client(&served.host))]);
        let route = mirror.route(&name("library/alpine"), None).unwrap();
        faulty.inject(Fault::fail(operation).times(1));
        // The store failing before the transfer begins fails the request; failing during it
        // ends the client's stream in an error: never a whole answer from a blob not kept.
        let (received, outcome) = match mirror.blob(&route, &layer).await {
            Ok(fetch) => streamed(fetch).await,
            Err(e) => (0, Err(e.to_string())),
        };
        let kept = registry.repository(&name("library/alpine")).stat_blob(&layer).await.is_ok();
        if operation != Operation::PutContent {
            assert!(outcome.is_err(), "{operation:?}: the fault reached the fetch");
        }
        match outcome {
            Ok(()) => assert!(received == layer_bytes.len() && kept, "{operation:?}: a whole answer, and kept"),
            Err(reason) => {
                assert!(received < layer_bytes.len(), "{operation:?}: {reason}");
                assert!(!kept, "{operation:?}: a failed fetch keeps nothing");
            }
        }
        // The store works again: the blob comes whole.
        let fetch = mirror.blob(&route, &layer).await.unwrap();
        assert_eq!(bytes_of(fetch, &registry, &route, &layer).await, layer_bytes, "{operation:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mirrors_on_one_store_fetching_one_blob_at_once() {
    let (origin, served) = upstream().await;
    let (_, layer, layer_bytes) = image(&origin.repository(&name("library/alpine")), "two", 1 << 20, "3.20").await;
    let store: Arc<dyn wharf_storage::StorageDriver> = Arc::new(wharf_storage::MemoryDriver::new());
    let instance = || {
        let registry = Registry::new(store.clone(), RegistryOptions::default());
        let mirror = PullThrough::new(&registry, vec![Upstream::new("docker.io", &served.host, client(&served.host))]);
        (registry, mirror)
    };
    let ((a_registry, a), (b_registry, b)) = (instance(), instance());
    let route = a.route(&name("library/alpine"), None).unwrap();
    let (from_a, from_b) = futures::join!(
        async { bytes_of(a.blob(&route, &layer).await.unwrap(), &a_registry, &route, &layer).await },
        async { bytes_of(b.blob(&route, &layer).await.unwrap(), &b_registry, &route, &layer).await },
    );
    assert_eq!(from_a, layer_bytes);
    assert_eq!(from_b, layer_bytes);
    // One blob in the store, whole, whichever instance placed it.
    let (_, stream) = a_registry.repository(&name("library/alpine")).read_blob(&layer, 0).await.unwrap();
    let stored: Vec<Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(stored.concat(), layer_bytes);
}
