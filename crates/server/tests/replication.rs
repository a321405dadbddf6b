//! Replication from the server (`replication:`) to Debian's `docker-registry`: a skopeo push
//! of a release copied there, with its image's bytes, and a push the rules do not take left.
#![cfg(feature = "mirror")]

use std::time::Duration;

use wharf_testing::http::RunningServer;
use wharf_testing::images::Images;
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
    // The replication in the metrics (counted once its queue has recorded it).
    let scrape =
        async || reqwest::get(format!("http://127.0.0.1:{debug_port}/metrics")).await.unwrap().text().await.unwrap();
    wharf_testing::eventually("the replication counted", Duration::from_secs(10), async || {
        scrape().await.contains("wharf_replications_total 1")
    })
    .await;
    let metrics = scrape().await;
    assert!(metrics.contains("wharf_replication_failures_total 0"), "{metrics}");
    let blobs = metrics.lines().find(|l| l.starts_with("wharf_replication_blobs_copied_total ")).unwrap();
    assert!(blobs.ends_with(" 3"), "a config and two layers: {blobs}");
    running.stop().await;
}
