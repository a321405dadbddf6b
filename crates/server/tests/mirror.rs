//! The registry as a pull-through cache (`proxy:`) in front of Debian's `docker-registry`:
//! skopeo pulls through it, the second after the upstream stopped; pushes refused.
#![cfg(feature = "mirror")]

use std::path::Path;

use wharf_oci::Digest;
use wharf_testing::http::RunningServer;
use wharf_testing::images::Images;
use wharf_testing::peers::{Distribution, has_peer, skopeo};

async fn run_skopeo(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("skopeo").arg("--insecure-policy").args(&args).output().unwrap()
    })
    .await
    .unwrap()
}

/// The blobs of the OCI layout at `out`, by digest, each checked against its digest.
fn layout_blobs(out: &Path) -> std::collections::BTreeMap<Digest, Vec<u8>> {
    std::fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let digest: Digest = format!("sha256:{}", path.file_name().unwrap().to_str().unwrap()).parse().unwrap();
            let data = std::fs::read(&path).unwrap();
            assert_eq!(Digest::sha256(&data), digest);
            (digest, data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_through_the_mirror_and_again_with_the_upstream_stopped() {
    if !has_peer("skopeo", "skopeo_pulls_through_the_mirror")
        || !has_peer("docker-registry", "skopeo_pulls_through_the_mirror")
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let images = Images::runnable("image");
    images.write_layout(&layout);
    let upstream = Distribution::start("", "");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:image", layout.display()),
        &upstream.url("team/app", "v1"),
    ]);
    let mirror = RunningServer::from_yaml(&format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\nproxy:\n  remoteurl: http://{}\n  ttl: 0s\n",
        work.path().join("root").display(),
        upstream.host()
    ))
    .await;
    let pull = |from: &str, out: &Path| {
        vec![
            "copy".to_owned(),
            "--src-tls-verify=false".to_owned(),
            format!("docker://{from}/team/app:v1"),
            format!("oci:{}:image", out.display()),
        ]
    };
    let direct = work.path().join("direct");
    let pulled = run_skopeo(pull(&upstream.host(), &direct)).await;
    assert!(pulled.status.success(), "{}", String::from_utf8_lossy(&pulled.stderr));
    let expected = layout_blobs(&direct);
    assert!(expected.len() >= 3, "a manifest, a config and a layer");
    let first = work.path().join("first");
    let pulled = run_skopeo(pull(&mirror.address.to_string(), &first)).await;
    assert!(pulled.status.success(), "{}", String::from_utf8_lossy(&pulled.stderr));
    assert_eq!(layout_blobs(&first), expected, "the mirror serves what the upstream does");

    // podman too: the image it pulls through the mirror is the upstream's (its id is its
    // config's digest).
    if has_peer("podman", "skopeo_pulls_through_the_mirror") {
        let (dir, remote) = (work.path().join("podman"), format!("docker://{}/team/app:v1", mirror.address));
        let id = tokio::task::spawn_blocking(move || {
            wharf_testing::peers::podman(&dir, &["pull", "--quiet", "--tls-verify=false", &remote])
        })
        .await
        .unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(direct.join("index.json")).unwrap()).unwrap();
        let manifest: Digest = index["manifests"][0]["digest"].as_str().unwrap().parse().unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&expected[&manifest]).unwrap();
        assert_eq!(
            format!("sha256:{}", id.trim_start_matches("sha256:")),
            manifest["config"]["digest"].as_str().unwrap()
        );
    }

    // A mirrored repository takes no pushes.
    let pushed = run_skopeo(vec![
        "copy".to_owned(),
        "--dest-tls-verify=false".to_owned(),
        format!("oci:{}:image", layout.display()),
        format!("docker://{}/team/app:pushed", mirror.address),
    ])
    .await;
    assert!(!pushed.status.success());
    let said = String::from_utf8_lossy(&pushed.stderr);
    assert!(said.contains("mirrors") && said.contains("proxy.allowpush"), "{said}");
    // The upstream stopped: the cache answers, the tag as it was last seen.
    drop(upstream);
    let second = work.path().join("second");
    let pulled = run_skopeo(pull(&mirror.address.to_string(), &second)).await;
    assert!(pulled.status.success(), "{}", String::from_utf8_lossy(&pulled.stderr));
    assert_eq!(layout_blobs(&second), expected);

    mirror.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_pulling_one_uncached_layer_make_one_upstream_transfer() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::StreamExt as _;
    use sha2::Digest as _;

    // The upstream: wharf-server over a filesystem root, its blob GETs counted and slowed.
    let work = tempfile::tempdir().unwrap();
    let driver = wharf_storage::FilesystemDriver::new(work.path().join("upstream")).unwrap();
    let origin = wharf_registry::Registry::new(Arc::new(driver), wharf_registry::RegistryOptions::default());
    let layer = bytes::Bytes::from(wharf_testing::images::content("herd", 256 << 20));
    let digest = Digest::sha256(&layer);
    let repository = origin.repository(&"big/layer".parse().unwrap());
    repository.put_blob(&digest, futures::stream::iter([Ok(layer.clone())])).await.unwrap();
    drop(layer);
    let blob_gets = Arc::new(AtomicU64::new(0));
    let counted = blob_gets.clone();
    let router = wharf_server::router(origin, wharf_server::ServerOptions::default()).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let counted = counted.clone();
            async move {
                if request.method() == axum::http::Method::GET && request.uri().path().contains("/blobs/") {
                    counted.fetch_add(1, Ordering::SeqCst);
                    // Slow to start: every client's request reaches the mirror before the
                    // first byte comes back.
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                next.run(request).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let mirror = RunningServer::from_yaml(&format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\nproxy:\n  remoteurl: http://{upstream}\n",
        work.path().join("mirror").display(),
    ))
    .await;

    let url = format!("http://{}/v2/big/layer/blobs/{digest}", mirror.address);
    let client = reqwest::Client::new();
    let pulls = (0..16).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let mut hasher = sha2::Sha256::new();
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                hasher.update(chunk.unwrap());
            }
            format!("sha256:{}", hex::encode(hasher.finalize()))
        })
    });
    for pulled in futures::future::join_all(pulls).await {
        assert_eq!(pulled.unwrap(), digest.as_str(), "a client got other bytes");
    }
    assert_eq!(blob_gets.load(Ordering::SeqCst), 1, "one transfer from upstream for sixteen clients");
    mirror.stop().await;
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_of_a_registry_with_token_authentication() {
    let upstream = wharf_testing::tokens::token_registry(std::time::Duration::from_secs(60), false).await;
    let repository = upstream.registry.repository(&"team/app".parse().unwrap());
    let layer = bytes::Bytes::from(wharf_testing::images::content("token layer", 100_000));
    let config = bytes::Bytes::from_static(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
    for data in [&layer, &config] {
        repository.put_blob(&Digest::sha256(data), futures::stream::iter([Ok(data.clone())])).await.unwrap();
    }
    let (layer_digest, config_digest) = (Digest::sha256(&layer), Digest::sha256(&config));
    let raw = wharf_testing::http::image_manifest(
        (config_digest.as_str(), config.len()),
        &[(layer_digest.as_str(), layer.len())],
        None,
    );
    repository.put_manifest(&"v1".parse().unwrap(), bytes::Bytes::from(raw.clone()), None).await.unwrap();

    let work = tempfile::tempdir().unwrap();
    let start = |password: &str, root: &str| {
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\nproxy:\n  remoteurl: http://{}\n  username: alice\n  password: {password}\n",
            work.path().join(root).display(),
            upstream.host
        );
        async move { RunningServer::from_yaml(&yaml).await }
    };
    let mirror = start("secret", "good").await;
    let client = reqwest::Client::new();
    let get = |host: std::net::SocketAddr, path: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{host}/v2/team/app/{path}"))
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap()
        }
    };
    let manifest = get(mirror.address, "manifests/v1".to_owned()).await;
    assert_eq!(manifest.status(), 200);
    assert_eq!(manifest.bytes().await.unwrap(), raw, "the manifest's exact bytes");
    let blob = get(mirror.address, format!("blobs/{layer_digest}")).await;
    assert_eq!(blob.status(), 200);
    assert_eq!(blob.bytes().await.unwrap(), layer);
    assert!(upstream.issued.load(std::sync::atomic::Ordering::SeqCst) > 0, "the mirror got tokens");

    // Wrong credentials: the mirror says why it cannot answer.
    let refused = start("wrong", "bad").await;
    let answer = get(refused.address, "manifests/v1".to_owned()).await;
    assert_eq!(answer.status(), 503);
    let said = answer.text().await.unwrap();
    assert!(said.contains("UNAVAILABLE") && said.to_lowercase().contains("unauthorized"), "{said}");
    mirror.stop().await;
    refused.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_chosen_by_prefix_and_by_ns() {
    // Two upstreams, each with its own image under the same name.
    let mut hosts = Vec::new();
    let mut layers = Vec::new();
    for seed in ["first", "second"] {
        let (registry, router) = wharf_testing::http::app(wharf_server::ServerOptions::default());
        let repository = registry.repository(&"library/alpine".parse().unwrap());
        let layer = bytes::Bytes::from(wharf_testing::images::content(seed, 10_000));
        repository.put_blob(&Digest::sha256(&layer), futures::stream::iter([Ok(layer.clone())])).await.unwrap();
        let raw = wharf_testing::http::image_manifest(
            (Digest::sha256(&layer).as_str(), layer.len()),
            &[(Digest::sha256(&layer).as_str(), layer.len())],
            None,
        );
        repository.put_manifest(&"3.20".parse().unwrap(), bytes::Bytes::from(raw), None).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        hosts.push(listener.local_addr().unwrap().to_string());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        layers.push(layer);
    }
    let work = tempfile::tempdir().unwrap();
    let mirror = RunningServer::from_yaml(&format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\nproxy:\n  upstreams:\n    - {{name: first.example, remoteurl: 'http://{}', prefix: first}}\n    - {{name: second.example, remoteurl: 'http://{}', prefix: second}}\n",
        work.path().join("root").display(),
        hosts[0],
        hosts[1]
    ))
    .await;
    let client = reqwest::Client::new();
    let blob = |path: String| {
        let client = client.clone();
        async move { client.get(format!("http://{}/v2/{path}", mirror.address)).send().await.unwrap() }
    };
    for (index, layer) in layers.iter().enumerate() {
        let digest = Digest::sha256(layer);
        let prefix = ["first", "second"][index];
        let by_prefix = blob(format!("{prefix}/library/alpine/blobs/{digest}")).await;
        assert_eq!(by_prefix.bytes().await.unwrap(), layer, "by the prefix {prefix}");
        let by_ns = blob(format!("library/alpine/blobs/{digest}?ns={prefix}.example")).await;
        assert_eq!(by_ns.bytes().await.unwrap(), layer, "by ns={prefix}.example");
    }
    // Neither prefix nor ns: a repository of the registry's own, which has nothing.
    let own = blob(format!("library/alpine/blobs/{}", Digest::sha256(&layers[0]))).await;
    assert_eq!(own.status(), 404);
    // The one at the other upstream's prefix does not have the first's layer.
    let wrong = blob(format!("second/library/alpine/blobs/{}", Digest::sha256(&layers[0]))).await;
    assert_eq!(wrong.status(), 404);
    mirror.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstreams_releases_synced_into_the_cache_on_a_schedule() {
    let (origin, router) = wharf_testing::http::app(wharf_server::ServerOptions::default());
    let app = origin.repository(&"team/app".parse().unwrap());
    for tag in ["v1.0.0", "dev"] {
        let layer = bytes::Bytes::from(wharf_testing::images::content(tag, 5000));
        let digest = Digest::sha256(&layer);
        app.put_blob(&digest, futures::stream::iter([Ok(layer.clone())])).await.unwrap();
        let raw = wharf_testing::http::image_manifest(
            (digest.as_str(), layer.len()),
            &[(digest.as_str(), layer.len())],
            None,
        );
        app.put_manifest(&tag.parse().unwrap(), bytes::Bytes::from(raw), None).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let work = tempfile::tempdir().unwrap();
    let mirror = RunningServer::from_yaml(&format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\nproxy:\n  upstreams:\n    - name: origin\n      remoteurl: http://{upstream}\n      prefix: edge\n      sync: {{repositories: [team/app], tags: {{semver: '*'}}, interval: 1s}}\n",
        work.path().join("root").display()
    ))
    .await;
    let cached = mirror.registry.repository(&"edge/team/app".parse().unwrap());
    let v1 = app.resolve(&"v1.0.0".parse().unwrap()).await.unwrap();
    // The manifest comes first, then its blobs: done when all are there.
    wharf_testing::eventually("the release synced into the cache", std::time::Duration::from_secs(10), async || {
        let Ok(stored) = cached.get_manifest(&"v1.0.0".parse().unwrap()).await else { return false };
        let blobs: Vec<Digest> =
            wharf_oci::Manifest::parse(stored.content, None).unwrap().references().map(|d| d.digest.clone()).collect();
        let mut all = stored.digest == v1;
        for blob in &blobs {
            all &= cached.stat_blob(blob).await.is_ok();
        }
        all
    })
    .await;
    assert!(cached.resolve(&"dev".parse().unwrap()).await.is_err(), "dev is no release");
    mirror.stop().await;
}
