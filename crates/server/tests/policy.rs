//! Tag policies at push: naming rules and immutable tags refused with 403 `DENIED` and the
//! rule's message, through the router, between two registries on one store pushing the same
//! immutable tag at once, and to skopeo over HTTP with the policy named in `config.yml`.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use wharf_policy::Policy;
use wharf_registry::{ManifestReference, Registry, RegistryOptions};
use wharf_server::{ServerOptions, router};
use wharf_storage::FilesystemDriver;
use wharf_testing::http::{RunningServer, Target, image_manifest, push_blob, sha256};
use wharf_testing::images::Images;
use wharf_testing::peers::has_peer;

const POLICY: &str = "version: 1
immutable:
  - repositories: ['prod/**']
    tags: { semver: '*' }
naming:
  - repositories: ['prod/**']
    tags: { any: [ { semver: '*' }, { regex: 'git-[0-9a-f]{7,40}' } ] }
    message: 'tags in prod/ are vX.Y.Z or git-<sha>'
";

/// A manifest of a config and a layer of its own (pushed), not yet put.
async fn manifest(target: &Target, name: &str, seed: &str) -> Vec<u8> {
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let layer = format!("layer {seed}");
    let config_digest = push_blob(target, name, config.as_bytes()).await;
    let layer_digest = push_blob(target, name, layer.as_bytes()).await;
    image_manifest((&config_digest, config.len()), &[(&layer_digest, layer.len())], None)
}

async fn put(target: &Target, name: &str, reference: &str, manifest: &[u8]) -> (StatusCode, String, String) {
    let reply = target
        .send(
            Method::PUT,
            &format!("/v2/{name}/manifests/{reference}"),
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            manifest.to_vec(),
        )
        .await;
    if reply.status.is_success() {
        return (reply.status, String::new(), String::new());
    }
    (reply.status, reply.error_code(), reply.json()["errors"][0]["message"].to_string())
}

fn app(registry: Registry) -> axum::Router {
    let options = ServerOptions::default().with_delete_enabled(true).with_policy(Policy::from_yaml(POLICY).unwrap());
    router(registry, options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naming_and_immutability_at_push_and_delete() {
    let registry = Registry::new(Arc::new(wharf_storage::MemoryDriver::new()), RegistryOptions::default());
    let target = Target::in_process(app(registry.clone()));
    let first = manifest(&target, "prod/api", "first").await;
    let second = manifest(&target, "prod/api", "second").await;

    // A name the rule does not allow: refused with its message, and nothing stored.
    let (status, code, message) = put(&target, "prod/api", "latest", &first).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    assert!(message.contains("tags in prod/ are vX.Y.Z or git-<sha>") && message.contains("naming[0]"), "{message}");
    let by_digest =
        target.send(Method::HEAD, &format!("/v2/prod/api/manifests/{}", sha256(&first)), &[], Vec::new()).await;
    assert_eq!(by_digest.status, StatusCode::NOT_FOUND, "a refused push stores nothing");
    let (status, code, _) =
        put(&target, "prod/api", &format!("{}?tag=v1.0.0&tag=latest", sha256(&first)), &first).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"), "one bad ?tag= refuses the push");
    let tags = target.get("/v2/prod/api/tags/list").await;
    assert!(tags.status == StatusCode::NOT_FOUND || tags.json()["tags"].as_array().is_none_or(|t| t.is_empty()));

    // An immutable tag is created, pushed again as it is, never moved or deleted.
    assert_eq!(put(&target, "prod/api", "v1.0.0", &first).await.0, StatusCode::CREATED);
    assert_eq!(put(&target, "prod/api", "v1.0.0", &first).await.0, StatusCode::CREATED);
    let (status, code, message) = put(&target, "prod/api", "v1.0.0", &second).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    assert!(message.contains("is immutable"), "{message}");
    let (status, _, _) = put(&target, "prod/api", &format!("{}?tag=v1.0.0", sha256(&second)), &second).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(put(&target, "prod/api", "git-0123abc", &second).await.0, StatusCode::CREATED);
    assert_eq!(put(&target, "prod/api", "git-0123abc", &first).await.0, StatusCode::CREATED, "not a version: mutable");
    let current = registry.repository(&"prod/api".parse().unwrap());
    assert_eq!(
        current.resolve(&ManifestReference::Tag("v1.0.0".parse().unwrap())).await.unwrap().to_string(),
        sha256(&first)
    );
    for path in ["/v2/prod/api/manifests/v1.0.0".to_owned(), format!("/v2/prod/api/manifests/{}", sha256(&first))] {
        let reply = target.send(Method::DELETE, &path, &[], Vec::new()).await;
        assert_eq!((reply.status, reply.error_code().as_str()), (StatusCode::FORBIDDEN, "DENIED"), "{path}");
    }
    let reply = target.send(Method::DELETE, "/v2/prod/api/manifests/git-0123abc", &[], Vec::new()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);

    // Other repositories: no rule.
    let other = manifest(&target, "team/app", "other").await;
    assert_eq!(put(&target, "team/app", "latest", &other).await.0, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registries_on_one_store_push_one_immutable_tag_at_once() {
    let root = tempfile::tempdir().unwrap();
    let open = || Registry::new(Arc::new(FilesystemDriver::new(root.path()).unwrap()), RegistryOptions::default());
    let (one, two) = (Target::in_process(app(open())), Target::in_process(app(open())));
    for round in 0..12 {
        let tag = format!("v1.0.{round}");
        let a = manifest(&one, "prod/race", &format!("a{round}")).await;
        let b = manifest(&two, "prod/race", &format!("b{round}")).await;
        let (left, right) = tokio::join!(put(&one, "prod/race", &tag, &a), put(&two, "prod/race", &tag, &b));
        let statuses = [left.0, right.0];
        assert!(
            statuses.contains(&StatusCode::CREATED) && statuses.contains(&StatusCode::FORBIDDEN),
            "round {round}: {left:?} {right:?}"
        );
        let winner = if left.0 == StatusCode::CREATED { &a } else { &b };
        let reply = one.get(&format!("/v2/prod/race/manifests/{tag}")).await;
        assert_eq!(reply.header("docker-content-digest"), Some(sha256(winner).as_str()), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_refused_by_the_configured_policy() {
    if !has_peer("skopeo", "skopeo_pushes_refused_by_the_configured_policy") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let policy = work.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let running = RunningServer::from_yaml(&format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\npolicy:\n  file: {}\n",
        work.path().join("root").display(),
        policy.display()
    ))
    .await;
    let layout = work.path().join("layout");
    Images::standard().write_layout(&layout);
    let other = work.path().join("other");
    Images::runnable("other").write_layout(&other);
    let push = |from: &std::path::Path, tag: &str, to: &str| {
        let args = vec![
            "--insecure-policy".to_owned(),
            "copy".to_owned(),
            "--dest-tls-verify=false".to_owned(),
            format!("oci:{}:{tag}", from.display()),
            format!("docker://{}/{to}", running.address),
        ];
        async move {
            tokio::task::spawn_blocking(move || std::process::Command::new("skopeo").args(&args).output().unwrap())
                .await
                .unwrap()
        }
    };
    let refused = push(&layout, "image", "prod/api:latest").await;
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("tags in prod/ are vX.Y.Z or git-<sha>"), "{said}");
    let pushed = push(&layout, "image", "prod/api:v1.0.0").await;
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let repository = running.registry.repository(&"prod/api".parse().unwrap());
    let v1 = ManifestReference::Tag("v1.0.0".parse().unwrap());
    let first = repository.resolve(&v1).await.unwrap();
    let moved = push(&other, "other", "prod/api:v1.0.0").await;
    assert!(!moved.status.success());
    assert!(
        String::from_utf8_lossy(&moved.stderr).contains("is immutable"),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    assert_eq!(repository.resolve(&v1).await.unwrap(), first, "the immutable tag did not move");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_a_schedule_while_serving() {
    let work = tempfile::tempdir().unwrap();
    let policy = work.path().join("policy.yaml");
    std::fs::write(&policy, "version: 1\nrules:\n  - {name: dev, tags: {glob: '*-dev'}, delete: {}}\n").unwrap();
    let in_use = work.path().join("in-use.txt");
    std::fs::write(&in_use, "team/app:deployed-dev\n").unwrap();
    let debug_port = wharf_testing::peers::free_port();
    let running = RunningServer::from_yaml(&format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\n  debug:\n    addr: 127.0.0.1:{debug_port}\n    prometheus:\n      enabled: true\n      path: /metrics\npolicy:\n  file: {}\n  retention:\n    interval: 1s\n    inuse: {}\n",
        work.path().join("root").display(),
        policy.display(),
        in_use.display()
    ))
    .await;
    let target = Target::remote(format!("http://{}", running.address));
    for (tag, seed) in [("a-dev", "a"), ("deployed-dev", "deployed"), ("v1", "v1")] {
        let raw = manifest(&target, "team/app", seed).await;
        assert_eq!(put(&target, "team/app", tag, &raw).await.0, StatusCode::CREATED);
    }
    let repository = running.registry.repository(&"team/app".parse().unwrap());
    wharf_testing::eventually("retention deletes a-dev", std::time::Duration::from_secs(15), async || {
        repository.tags(None, None).await.unwrap() == ["deployed-dev", "v1"]
    })
    .await;
    let untagged = sha256(&manifest(&target, "team/app", "a").await);
    let gone = target.send(Method::HEAD, &format!("/v2/team/app/manifests/{untagged}"), &[], Vec::new()).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "a-dev's manifest went with its tag");
    // The runs are in the metrics: one tag and one manifest deleted in all.
    let metrics = Target::remote(format!("http://127.0.0.1:{debug_port}"));
    wharf_testing::eventually("the retention metrics", std::time::Duration::from_secs(10), async || {
        let text = String::from_utf8_lossy(&metrics.get("/metrics").await.body).into_owned();
        text.contains("wharf_retention_runs_total{outcome=\"ok\"")
            && text.contains("wharf_retention_tags_deleted_total 1\n")
            && text.contains("wharf_retention_manifests_deleted_total 1\n")
    })
    .await;
    running.stop().await;
}
