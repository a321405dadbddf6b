//! Replication from the server (`replication:`) to Debian's `docker-registry`: a skopeo push
//! of a release copied there, with its image's bytes, and a push the rules do not take left;
//! and what was stored without a push (no event) copied on the schedule, with its signature.
#![cfg(feature = "mirror")]

use std::time::Duration;

use wharf_testing::http::RunningServer;
use wharf_testing::images::{Images, store_image, store_signature};
use wharf_testing::peers::{Distribution, has_peer, skopeo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_pushed_to_the_registry_are_replicated() {
    if !has_peer("skopeo", "releases_pushed_to_the_registry_are_replicated")
        || !has_peer("docker-registry", "releases_pushed_to_the_registry_are_replicated")
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let target = Distribution::start("", "");
    let debug_port = wharf_testing::peers::free_port();
    let running = RunningServer::from_yaml(&format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\n  debug:\n    addr: 127.0.0.1:{debug_port}\n    prometheus:\n      enabled: true\n      path: /metrics\nreplication:\n  rules:\n    - name: releases\n      repositories: ['team/**']\n      tags: {{semver: '*'}}\n      targets:\n        - {{name: dr, url: 'http://{}', prefix: dr}}\n",
        work.path().join("root").display(),
        target.host()
    ))
    .await;
    let layout = work.path().join("layout");
    Images::runnable("v1").write_layout(&layout);
    let address = running.address;
    let push = |tag: &'static str| {
        let from = format!("oci:{}:v1", layout.display());
        let to = format!("docker://{address}/team/app:{tag}");
        tokio::task::spawn_blocking(move || skopeo(&["copy", "--dest-tls-verify=false", &from, &to]))
    };
    push("v1.0.0").await.unwrap();
    push("dev").await.unwrap();
    let here =
        running.registry.repository(&"team/app".parse().unwrap()).resolve(&"v1.0.0".parse().unwrap()).await.unwrap();
    let client = wharf_client::Client::builder().plain_http(&target.host()).build().unwrap();
    let remote = client.repository(&target.host(), "dr/team/app");
    wharf_testing::eventually("the release replicated", Duration::from_secs(20), async || {
        remote.manifest_descriptor("v1.0.0").await.ok().flatten().is_some_and(|d| d.digest == here)
    })
    .await;
    // Its layers are there, byte for byte.
    let manifest = remote.manifest("v1.0.0").await.unwrap();
    for layer in manifest.layers() {
        let bytes = remote.blob_bytes(&layer.digest, 1 << 20).await.unwrap();
        assert_eq!(wharf_oci::Digest::sha256(&bytes), layer.digest);
    }
    // `dev` is no release: never copied.
    assert!(remote.manifest_descriptor("dev").await.unwrap().is_none());
    // The release signed afterwards (by digest, with its subject): the signature follows.
    let server = wharf_testing::http::Target::remote(format!("http://{address}"));
    let empty = wharf_testing::http::push_blob(&server, "team/app", b"{}").await;
    let payload = wharf_testing::http::push_blob(&server, "team/app", b"signed").await;
    let subject = usize::try_from(remote.manifest_descriptor(here.as_str()).await.unwrap().unwrap().size).unwrap();
    let signature = wharf_testing::http::image_manifest((&empty, 2), &[(&payload, 6)], Some((here.as_str(), subject)));
    let signed = wharf_testing::http::sha256(&signature);
    wharf_testing::http::put_manifest(&server, "team/app", &signed, &signature).await;
    wharf_testing::eventually("the signature replicated", Duration::from_secs(20), async || {
        remote.referrers(&here, None).await.is_ok_and(|r| r.iter().any(|d| d.digest.as_str() == signed))
    })
    .await;
    // The replication in the metrics (counted once its queue has recorded it).
    let scrape =
        async || reqwest::get(format!("http://127.0.0.1:{debug_port}/metrics")).await.unwrap().text().await.unwrap();
    wharf_testing::eventually("the replication counted", Duration::from_secs(10), async || {
        scrape().await.contains("wharf_replications_total 2")
    })
    .await;
    let metrics = scrape().await;
    assert!(metrics.contains("wharf_replication_failures_total 0"), "{metrics}");
    let blobs = metrics.lines().find(|l| l.starts_with("wharf_replication_blobs_copied_total ")).unwrap();
    assert!(blobs.ends_with(" 5"), "a config and two layers, then the signature's two: {blobs}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_no_push_announced_is_replicated_on_the_schedule() {
    if !has_peer("docker-registry", "what_no_push_announced_is_replicated_on_the_schedule") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let target = Distribution::start("", "");
    let running = RunningServer::from_yaml(&format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\nreplication:\n  interval: 1s\n  rules:\n    - name: releases\n      repositories: ['team/**']\n      tags: {{semver: '*'}}\n      targets:\n        - {{name: dr, url: 'http://{}'}}\n",
        work.path().join("root").display(),
        target.host()
    ))
    .await;
    // Stored through the embedded API, as a restore or another tool would: no request, so no
    // event, only the schedule finds them.
    let app = running.registry.repository(&"team/app".parse().unwrap());
    let release = store_image(&app, "release", 2000, Some("v2.1.0")).await;
    let signature = store_signature(&app, &release, "release signed").await;
    store_image(&app, "dev", 2000, Some("dev")).await;
    let client = wharf_client::Client::builder().plain_http(&target.host()).build().unwrap();
    let remote = client.repository(&target.host(), "team/app");
    wharf_testing::eventually("the release and its signature replicated", Duration::from_secs(20), async || {
        remote.manifest_descriptor("v2.1.0").await.ok().flatten().is_some_and(|d| d.digest == release.0)
            && remote.referrers(&release.0, None).await.is_ok_and(|r| r.iter().any(|d| d.digest == signature))
    })
    .await;
    assert!(remote.manifest_descriptor("dev").await.unwrap().is_none(), "dev is no release");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_over_tls_with_credentials() {
    let test = "replicated_over_tls_with_credentials";
    if !has_peer("docker-registry", test) || !has_peer("openssl", test) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    wharf_testing::peers::self_signed_for_loopback(dir, "target");
    let hash = bcrypt::hash("replica-pass", 5).unwrap();
    std::fs::write(dir.join("htpasswd"), format!("replicator:{hash}\n")).unwrap();
    let (crt, key) = (dir.join("target.crt"), dir.join("target.key"));
    let tls = format!("  tls:\n    certificate: {}\n    key: {}\n", crt.display(), key.display());
    let auth = format!("auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n", dir.join("htpasswd").display());
    let target = Distribution::start(&tls, &auth);
    let running = RunningServer::from_yaml(&format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\nreplication:\n  rules:\n    - name: all\n      targets:\n        - name: dr\n          url: 'https://{}'\n          username: replicator\n          password: replica-pass\n          tls: {{rootcas: ['{}']}}\n",
        dir.join("root").display(),
        target.host(),
        crt.display()
    ))
    .await;
    let server = wharf_testing::http::Target::remote(format!("http://{}", running.address));
    let (_, digest) = wharf_testing::http::push_image(&server, "team/app", "v1", 7).await;
    let credentials = wharf_client::StaticCredentials::new()
        .with(&target.host(), wharf_client::Credential::basic("replicator", "replica-pass"));
    let client = wharf_client::Client::builder()
        .root_certificates(&std::fs::read(&crt).unwrap())
        .unwrap()
        .credentials(credentials)
        .build()
        .unwrap();
    let remote = client.repository(&target.host(), "team/app");
    wharf_testing::eventually("the image replicated over TLS", Duration::from_secs(20), async || {
        remote.manifest_descriptor("v1").await.ok().flatten().is_some_and(|d| d.digest.as_str() == digest)
    })
    .await;
    running.stop().await;
}
