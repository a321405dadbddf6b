//! What operators rely on: the storage health check, Prometheus metrics on the debug
//! address, the audit log, and a graceful shutdown.

use wharf_testing::http as common;
use wharf_testing::peers;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use common::{RunningServer, Target, push_image};
use wharf_registry::{Registry, RegistryOptions};
use wharf_server::{Config, Health, Metrics, ServerOptions, router};
use wharf_storage::{Fault, FaultInjector, MemoryDriver, Operation};

/// Polls `check` until it holds, for at most 10 s.
async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    wharf_testing::eventually(what, Duration::from_secs(10), check).await;
}

#[tokio::test]
async fn failing_storage_makes_the_registry_unavailable_until_it_recovers() {
    let driver = FaultInjector::new(MemoryDriver::new());
    let registry = Registry::new(Arc::new(driver.clone()), RegistryOptions::default());
    let health = Health::new(3);
    let mut options = ServerOptions::default();
    options.health = Some(health.clone());
    let target = Target::in_process(router(registry.clone(), options));
    let checks = health.spawn_checks(registry, Duration::from_millis(10));
    assert_eq!(target.get("/v2/").await.status, StatusCode::OK);

    driver.inject(Fault::fail(Operation::Stat));
    eventually("503 after three failed checks", async || {
        target.get("/v2/").await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let reply = target.get("/v2/some/app/tags/list").await;
    assert_eq!((reply.status, reply.error_code().as_str()), (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"));
    let report = target.get("/debug/health").await;
    assert_eq!(report.status, StatusCode::SERVICE_UNAVAILABLE);
    let failure = report.json()["storagedriver_inmemory"].as_str().unwrap_or_default().to_owned();
    assert!(failure.contains("injected fault"), "{}", report.json());

    driver.clear();
    eventually("recovery", async || target.get("/v2/").await.status == StatusCode::OK).await;
    assert_eq!(target.get("/debug/health").await.json(), serde_json::json!({}));
    checks.abort();
}

#[tokio::test]
async fn metrics_count_requests_and_bytes() {
    let registry = Registry::new(Arc::new(MemoryDriver::new()), RegistryOptions::default());
    let metrics = Metrics::new();
    let mut options = ServerOptions::default().with_relative_urls(true);
    options.metrics = Some(metrics.clone());
    let target = Target::in_process(router(registry, options));
    let (manifest, _) = push_image(&target, "m", "v1", 1).await;
    assert_eq!(target.get("/v2/m/manifests/v1").await.body, manifest);
    assert_eq!(target.get("/v2/m/manifests/v2").await.status, StatusCode::NOT_FOUND);

    let text = metrics.encode();
    for line in [
        "wharf_http_requests_total{route=\"manifest\",method=\"PUT\",status=\"201\"} 1",
        "wharf_http_requests_total{route=\"manifest\",method=\"GET\",status=\"200\"} 1",
        "wharf_http_requests_total{route=\"manifest\",method=\"GET\",status=\"404\"} 1",
        "wharf_http_requests_total{route=\"uploads\",method=\"POST\",status=\"201\"} 2",
        "wharf_blobs_pushed_total 2",
        "wharf_manifests_pushed_total 1",
        "wharf_uploads_started_total 2",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    let received = counter(&text, "wharf_http_received_bytes_total");
    let config_and_layer = r#"{"architecture":"amd64","os":"linux","seed":1}"#.len() + 1001;
    assert_eq!(received, (config_and_layer + manifest.len()) as u64);
    assert!(counter(&text, "wharf_http_sent_bytes_total") >= manifest.len() as u64);
}

fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Log lines written while a test runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn audit_log_has_a_json_line_per_push_pull_delete_and_refusal() {
    let captured = Captured::default();
    let writer = captured.clone();
    let config = Config::from_yaml(
        "storage: {inmemory: {}}\nlog: {formatter: json, fields: {service: registry, environment: test}}",
        "test",
        Vec::new(),
    )
    .unwrap();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .event_format(wharf_server::LogLines::new(&config.log))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let registry = Registry::new(Arc::new(MemoryDriver::new()), RegistryOptions::default());
    let hash = bcrypt::hash("pw", 4).unwrap();
    let options = ServerOptions::default()
        .with_relative_urls(true)
        .with_delete_enabled(true)
        .with_htpasswd(Some(wharf_server::Htpasswd::parse("r", &format!("ann:{hash}"), "test").unwrap()));
    let target = Target::in_process(router(registry, options));
    let auth = format!("Basic {}", base64_encode("ann:pw"));
    let config = b"{}".to_vec();
    let digest = common::sha256(&config);
    let headers = [("authorization", auth.as_str())];
    let pushed = target.send(Method::POST, &format!("/v2/a/blobs/uploads/?digest={digest}"), &headers, config).await;
    assert_eq!(pushed.status, StatusCode::CREATED);
    assert_eq!(
        target.send(Method::GET, &format!("/v2/a/blobs/{digest}"), &headers, Bytes::new()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        target.send(Method::DELETE, &format!("/v2/a/blobs/{digest}"), &headers, Bytes::new()).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(target.get(&format!("/v2/a/blobs/{digest}")).await.status, StatusCode::UNAUTHORIZED);
    // Listings are not audited.
    target.send(Method::GET, "/v2/a/tags/list", &headers, Bytes::new()).await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .filter(|line: &serde_json::Value| line["target"] == "wharf::audit")
        .collect();
    let actions: Vec<(&str, &str, u64)> = lines
        .iter()
        .map(|l| (l["action"].as_str().unwrap(), l["user"].as_str().unwrap(), l["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(actions, [("push", "ann", 201), ("pull", "ann", 200), ("delete", "ann", 202), ("refused", "-", 401)]);
    for line in &lines {
        assert!(line["time"].is_string(), "{line}");
        assert_eq!(line["level"], "info", "{line}");
        assert_eq!(line["repository"], "a", "{line}");
        assert_eq!(line["reference"], digest.as_str(), "{line}");
        // `log.fields` are on every line.
        assert_eq!(
            (line["service"].as_str(), line["environment"].as_str()),
            (Some("registry"), Some("test")),
            "{line}"
        );
    }
    assert_eq!(lines[0]["digest"], digest.as_str());
    assert_eq!(lines[0]["msg"], "push");
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `http.debug` on `port`, with the Prometheus metrics at `/metrics`.
fn debug_section(port: u16) -> String {
    format!("  debug:\n    addr: 127.0.0.1:{port}\n    prometheus:\n      enabled: true\n      path: /metrics\n")
}

/// The whole server over TCP: metrics and health on the debug address, and a shutdown that
/// lets a request in flight finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_with_debug_address_and_graceful_shutdown() {
    let work = tempfile::tempdir().unwrap();
    let debug_port = peers::free_port();
    let yaml = format!(
        "version: 0.1\nlog: {{accesslog: {{disabled: true}}}}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\n  draintimeout: 5s\n{}health:\n  storagedriver:\n    enabled: true\n    interval: 1s\n    threshold: 2\n",
        work.path().display(),
        debug_section(debug_port)
    );
    let mut running = RunningServer::from_yaml(&yaml).await;
    let address = running.address;
    let client = reqwest::Client::new();
    eventually("the debug address", async || {
        client.get(format!("http://127.0.0.1:{debug_port}/debug/health")).send().await.is_ok()
    })
    .await;
    assert_eq!(client.get(format!("http://{address}/v2/")).send().await.unwrap().status(), 200);
    let metrics =
        client.get(format!("http://127.0.0.1:{debug_port}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("wharf_http_requests_total{route=\"base\",method=\"GET\",status=\"200\"} 1"), "{metrics}");
    assert!(metrics.contains("wharf_storage_healthy 1"), "{metrics}");
    let health = client.get(format!("http://127.0.0.1:{debug_port}/debug/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // A slow upload is in flight when the shutdown begins; it completes.
    let data = vec![7u8; 256 * 1024];
    let digest = common::sha256(&data);
    let (sender, body) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let upload = {
        let client = client.clone();
        let stream =
            futures::stream::unfold(body, |mut body| async move { body.recv().await.map(|item| (item, body)) });
        tokio::spawn(async move {
            client
                .post(format!("http://{address}/v2/slow/blobs/uploads/?digest={digest}"))
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    sender.send(Ok(data[..1024].to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.begin_stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are refused now.
    assert!(
        client.get(format!("http://{address}/v2/")).send().await.is_err(),
        "a new request was served after the shutdown began"
    );
    sender.send(Ok(data[1024..].to_vec())).await.unwrap();
    drop(sender);
    assert_eq!(upload.await.unwrap().unwrap(), 201);
    running.stop().await;
}

/// `storage.maintenance.uploadpurging`: uploads older than `age` are removed in the
/// background, every `interval`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_uploads_are_purged() {
    let work = tempfile::tempdir().unwrap();
    let yaml = format!(
        "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    uploadpurging:\n      enabled: true\n      age: 1s\n      interval: 1s\n      dryrun: false\nhttp:\n  addr: 127.0.0.1:0\n  relativeurls: true\n",
        work.path().display()
    );
    let running = RunningServer::from_yaml(&yaml).await;
    let address = running.address;
    let target = Target::remote(format!("http://{address}"));
    let started = target.send(Method::POST, "/v2/p/blobs/uploads/", &[], Bytes::new()).await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let upload = common::location(&started);
    assert_eq!(target.get(&upload).await.status, StatusCode::NO_CONTENT);
    // Start times are written to the second: the purge may take up to age + interval + 1 s.
    eventually("the upload's purge", async || target.get(&upload).await.status == StatusCode::NOT_FOUND).await;
    assert_eq!(target.get(&upload).await.error_code(), "BLOB_UPLOAD_UNKNOWN");
    running.stop().await;
}

/// `storage.maintenance.garbagecollect`: the server collects garbage on a schedule while it
/// serves, and the debug address counts the runs, what they deleted, and the uploads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_gc_and_upload_figures_in_metrics() {
    let work = tempfile::tempdir().unwrap();
    let debug_port = peers::free_port();
    let yaml = format!(
        "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      age: 1s\n      interval: 1s\n    garbagecollect:\n      enabled: true\n      interval: 1s\n      deleteuntagged: true\nhttp:\n  addr: 127.0.0.1:0\n  relativeurls: true\n{}",
        work.path().display(),
        debug_section(debug_port)
    );
    let running = RunningServer::from_yaml(&yaml).await;
    let target = Target::remote(format!("http://{}", running.address));
    let (manifest, _) = push_image(&target, "team/app", "stable", 1).await;
    let loose = b"a blob no manifest uses";
    let loose_digest = common::push_blob(&target, "team/app", loose).await;
    let cancelled = target.send(Method::POST, "/v2/team/app/blobs/uploads/", &[], Bytes::new()).await;
    let reply = target.send(Method::DELETE, &common::location(&cancelled), &[], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let abandoned = target.send(Method::POST, "/v2/team/app/blobs/uploads/", &[], Bytes::new()).await;
    assert_eq!(abandoned.status, StatusCode::ACCEPTED);
    // Everything pushed so far is made two hours old, past the default grace period. The
    // collector runs meanwhile and may move a file away under `find`: `-c` keeps `touch` from
    // creating it again, and a run that finds the blob too new simply leaves it for the next.
    let _ = std::process::Command::new("find")
        .arg(work.path())
        .args(["-exec", "touch", "-c", "-d", "2 hours ago", "{}", "+"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();

    let blob = format!("/v2/team/app/blobs/{loose_digest}");
    eventually("the loose blob's collection", async || {
        target.send(Method::HEAD, &blob, &[], Bytes::new()).await.status == StatusCode::NOT_FOUND
    })
    .await;
    let client = reqwest::Client::new();
    let metrics_url = format!("http://127.0.0.1:{debug_port}/metrics");
    let mut text = String::new();
    // The blob goes in the middle of a run, whose figures are counted when it ends (the bytes
    // freed after the rest).
    eventually("the purge of the abandoned upload and the end of the run that took the blob", async || {
        text = client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
        text.contains("wharf_uploads_purged_total 1")
            && text.lines().any(|line| line.starts_with("wharf_gc_freed_bytes_total ") && !line.ends_with(" 0"))
    })
    .await;
    for line in [
        "wharf_uploads_started_total 5",
        "wharf_uploads_cancelled_total 1",
        "wharf_gc_runs_total{outcome=\"ok\",dry_run=\"false\"}",
        "wharf_gc_duration_seconds_count",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert!(!text.contains("outcome=\"failed\""), "{text}");
    assert_eq!(counter(&text, "wharf_gc_blobs_deleted_total"), 1, "{text}");
    assert_eq!(counter(&text, "wharf_gc_freed_bytes_total"), loose.len() as u64, "{text}");
    assert_eq!(counter(&text, "wharf_gc_manifests_deleted_total"), 0, "{text}");
    assert!(counter(&text, "wharf_gc_last_success_timestamp_seconds") > 1_700_000_000, "{text}");
    // The tagged image is whole.
    assert_eq!(target.get("/v2/team/app/manifests/stable").await.body, manifest);
    running.stop().await;
}

/// What a client is told when things go wrong that are not its request's fault: a body cut
/// short is the client's (400, nothing logged as a failure); a damaged store is the server's
/// (500), told with an id to quote and without the store's paths or words.
#[tokio::test]
async fn failures_are_told_without_internals() {
    use tower::ServiceExt as _;
    let registry = Registry::new(Arc::new(MemoryDriver::new()), RegistryOptions::default());
    let app = router(registry.clone(), ServerOptions::default());
    let target = Target::in_process(app.clone());

    let start = target.send(Method::POST, "/v2/team/app/blobs/uploads/", &[], Bytes::new()).await;
    let at = common::location(&start);
    let body = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"a first chunk")),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the client went away")),
    ]);
    let request = axum::http::Request::builder()
        .method(Method::PATCH)
        .uri(&at)
        .body(axum::body::Body::from_stream(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // What arrived is kept, for the client to go on from.
    assert_eq!(target.get(&at).await.header("range"), Some("0-12"));

    push_image(&target, "team/app", "v1", 3).await;
    let link = wharf_registry::layout::tag_current(&"team/app".parse().unwrap(), "v1");
    registry.driver().put_content(&link, Bytes::from_static(b"not a digest")).await.unwrap();
    let reply = target.get("/v2/team/app/manifests/v1").await;
    assert_eq!((reply.status, reply.error_code().as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"));
    let id = reply.header("x-request-id").expect("a request id").to_owned();
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(text.contains(&id), "{text}");
    assert!(!text.contains("/docker/registry") && !text.contains("not a digest"), "internals told: {text}");
}

/// A scheduled collection that panics is logged, and the next one runs on time: an orphan is
/// collected by a later run although the first panicked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_collection_that_panics_does_not_end_the_schedule() {
    let driver = FaultInjector::new(MemoryDriver::new());
    driver.inject(Fault::panic(Operation::PutIf).on_paths_containing("/_wharf/gc/").times(1));
    let registry = Registry::new(Arc::new(driver.clone()), RegistryOptions::default());
    let orphan = wharf_oci::Digest::sha256(b"orphan");
    wharf_storage::StorageDriver::put_content(
        &driver,
        &wharf_registry::layout::blob_data(&orphan),
        Bytes::from_static(b"orphan"),
    )
    .await
    .unwrap();
    let yaml =
        "storage:\n  inmemory: {}\n  maintenance:\n    garbagecollect:\n      interval: 100ms\n      grace: 0s\n";
    let config = Config::from_yaml(yaml, "test", Vec::new()).unwrap();
    let server = wharf_server::Server::with_registry(config, registry.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));
    eventually("the first run's panic", async || driver.injected() == 1).await;
    eventually("a later run collecting the orphan", async || {
        registry.driver().stat(&wharf_registry::layout::blob_data(&orphan)).await.is_err()
    })
    .await;
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
