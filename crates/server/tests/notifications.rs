//! Notifications from the server (`notifications.endpoints`) to an endpoint served by the
//! test: the events of a skopeo push and pull as Distribution names them, and, with the
//! endpoint down while the registry restarts, every event delivered once it is back.
#![cfg(feature = "mirror")]

use std::time::Duration;

use wharf_testing::events::Listener;
use wharf_testing::http::RunningServer;
use wharf_testing::images::Images;
use wharf_testing::peers::{has_peer, skopeo};

async fn server(root: &std::path::Path, url: &str) -> RunningServer {
    RunningServer::from_yaml(&format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\nnotifications:\n  events: {{includereferences: true}}\n  endpoints:\n    - name: listener\n      url: {url}\n      headers: {{Authorization: [Bearer listener-token]}}\n      timeout: 1s\n      threshold: 2\n      backoff: 100ms\n      ignore: {{actions: [mount]}}\n",
        root.display()
    ))
    .await
}

/// The (action, media type, tag) of each event whose target is `digest`.
fn about(events: &[serde_json::Value], digest: &str) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| e["target"]["digest"] == digest)
        .map(|e| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (text(&e["action"]), text(&e["target"]["mediaType"]), text(&e["target"]["tag"]))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_and_a_pull_notified_and_nothing_lost_across_a_restart() {
    if !has_peer("skopeo", "a_push_and_a_pull_notified") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (listener, url) = Listener::serve().await;
    let root = work.path().join("root");
    let running = server(&root, &url).await;
    let layout = work.path().join("layout");
    let images = Images::runnable("v1");
    images.write_layout(&layout);
    let address = running.address;
    let (from, to) = (format!("oci:{}:v1", layout.display()), format!("docker://{address}/team/app:v1"));
    let pulled = format!("oci:{}:v1", work.path().join("pulled").display());
    tokio::task::spawn_blocking(move || {
        skopeo(&["copy", "--dest-tls-verify=false", &from, &to]);
        skopeo(&["copy", "--src-tls-verify=false", &to, &pulled]);
    })
    .await
    .unwrap();
    // skopeo compresses the layout's layers as it pushes: what was pushed is what the
    // registry holds.
    let stored = |registry: &wharf_registry::Registry, tag: &str| {
        let repository = registry.repository(&"team/app".parse().unwrap());
        let tag = tag.to_owned();
        async move {
            let stored = repository.get_manifest(&tag.parse().unwrap()).await.unwrap();
            let manifest = wharf_oci::Manifest::parse(stored.content, None).unwrap();
            let blobs: Vec<String> = manifest.references().map(|d| d.digest.to_string()).collect();
            (stored.digest.to_string(), blobs)
        }
    };
    let (manifest, blobs) = stored(&running.registry, "v1").await;
    let media_type = "application/vnd.oci.image.manifest.v1+json".to_owned();
    wharf_testing::eventually("the push and the pull notified", Duration::from_secs(10), async || {
        about(&listener.events(), &manifest).len() >= 2
    })
    .await;
    let events = listener.events();
    let seen = about(&events, &manifest);
    assert!(seen.contains(&("push".to_owned(), media_type.clone(), "v1".to_owned())), "{seen:?}");
    assert!(seen.contains(&("pull".to_owned(), media_type.clone(), "v1".to_owned())), "{seen:?}");
    let push = events.iter().find(|e| e["action"] == "push" && e["target"]["digest"] == manifest.as_str()).unwrap();
    assert_eq!(push["target"]["repository"], "team/app");
    assert_eq!(push["request"]["method"], "PUT");
    assert!(push["request"]["useragent"].as_str().unwrap().contains("skopeo"), "{push}");
    assert!(!push["source"]["instanceID"].as_str().unwrap().is_empty());
    // With events.includereferences, what the manifest references.
    let references: Vec<&str> =
        push["target"]["references"].as_array().unwrap().iter().map(|r| r["digest"].as_str().unwrap()).collect();
    assert_eq!(references, blobs.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!push["id"].as_str().unwrap().is_empty() && !push["timestamp"].as_str().unwrap().is_empty());
    for blob in &blobs {
        let seen = about(&events, blob);
        assert!(seen.iter().any(|(action, ..)| action == "push"), "{blob}: {seen:?}");
        assert!(seen.iter().any(|(action, ..)| action == "pull"), "{blob}: {seen:?}");
    }

    // The endpoint goes down; a push comes; the registry restarts; the endpoint comes back.
    listener.set_up(false);
    let other = Images::runnable("v2");
    let layout2 = work.path().join("layout2");
    other.write_layout(&layout2);
    let (from, to) = (format!("oci:{}:v2", layout2.display()), format!("docker://{address}/team/app:v2"));
    tokio::task::spawn_blocking(move || skopeo(&["copy", "--dest-tls-verify=false", &from, &to])).await.unwrap();
    let (v2, blobs) = stored(&running.registry, "v2").await;
    running.stop().await;
    let before = listener.events().len();
    let restarted = server(&root, &url).await;
    listener.set_up(true);
    wharf_testing::eventually("the push made while the endpoint was down", Duration::from_secs(30), async || {
        !about(&listener.events(), &v2).is_empty()
    })
    .await;
    let events = listener.events();
    assert_eq!(about(&events[before..], &v2), [("push".to_owned(), media_type, "v2".to_owned())]);
    for blob in &blobs {
        assert!(about(&events[before..], blob).iter().any(|(action, ..)| action == "push"), "{blob}");
    }
    // Every envelope as Distribution sends it, with the endpoint's headers.
    let headers = listener.headers();
    assert!(!headers.is_empty());
    for (content_type, authorization) in headers {
        assert_eq!(content_type, "application/vnd.docker.distribution.events.v1+json");
        assert_eq!(authorization, "Bearer listener-token");
    }
    restarted.stop().await;
}
