//! Retention on an embedded registry (wharf-policy's `registry` feature, which the facade
//! turns on), end to end: the inventory read from a filesystem root, a plan made and carried
//! out with an audit line per deletion, the same plan again deleting nothing, two processes
//! carrying out one plan at once, and what changed between planning and applying left alone.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream;
use wharf::oci::{Digest, media_type};
use wharf::policy::registry::{AuditEntry, apply, inventory};
use wharf::policy::{Decision, InUse, Policy, Timestamp, plan};
use wharf::registry::{ManifestReference, Registry, RegistryOptions, Repository};
use wharf::storage::FilesystemDriver;
use wharf_testing::http::image_manifest;

async fn blob(repository: &Repository, data: &[u8]) -> (Digest, usize) {
    let digest = Digest::sha256(data);
    repository.put_blob(&digest, stream::iter([Ok(Bytes::copy_from_slice(data))])).await.unwrap();
    (digest, data.len())
}

/// An image with a layer of its own; tagged `tag` when given. Returns its digest and size.
async fn image(repository: &Repository, seed: &str, tag: Option<&str>) -> (Digest, usize) {
    let (config, config_size) = blob(repository, format!("{{\"seed\":\"{seed}\"}}").as_bytes()).await;
    let (layer, layer_size) = blob(repository, format!("layer of {seed}").as_bytes()).await;
    let raw = image_manifest((config.as_str(), config_size), &[(layer.as_str(), layer_size)], None);
    let size = raw.len();
    let reference = tag.map_or_else(|| ManifestReference::Digest(Digest::sha256(&raw)), |t| t.parse().unwrap());
    (repository.put_manifest(&reference, Bytes::from(raw), None).await.unwrap(), size)
}

/// A cosign-style signature of `subject`.
async fn signature(repository: &Repository, subject: &(Digest, usize), seed: &str) -> Digest {
    let (config, config_size) = blob(repository, b"{}").await;
    let (payload, payload_size) = blob(repository, seed.as_bytes()).await;
    let mut raw: serde_json::Value = serde_json::from_slice(&image_manifest(
        (config.as_str(), config_size),
        &[(payload.as_str(), payload_size)],
        Some((subject.0.as_str(), subject.1)),
    ))
    .unwrap();
    raw["artifactType"] = "application/vnd.dev.cosign.artifact.sig.v1+json".into();
    raw["config"]["mediaType"] = media_type::OCI_EMPTY.into();
    let raw = serde_json::to_vec(&raw).unwrap();
    repository.put_manifest(&ManifestReference::Digest(Digest::sha256(&raw)), Bytes::from(raw), None).await.unwrap()
}

async fn index(repository: &Repository, children: &[&(Digest, usize)], tag: &str) -> Digest {
    let manifests: Vec<serde_json::Value> = children
        .iter()
        .enumerate()
        .map(|(i, (digest, size))| {
            let architecture = ["amd64", "arm64"][i % 2];
            serde_json::json!({"mediaType": media_type::OCI_IMAGE_MANIFEST, "digest": digest, "size": size,
                "platform": {"os": "linux", "architecture": architecture}})
        })
        .collect();
    let raw = serde_json::to_vec(
        &serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_IMAGE_INDEX, "manifests": manifests}),
    )
    .unwrap();
    repository.put_manifest(&tag.parse().unwrap(), Bytes::from(raw), None).await.unwrap()
}

fn has(repository: &Repository, digest: &Digest) -> impl std::future::Future<Output = bool> {
    let (repository, digest) = (repository.clone(), digest.clone());
    async move { repository.get_manifest(&ManifestReference::Digest(digest)).await.is_ok() }
}

const POLICY: &str = "version: 1
rules:
  - name: releases
    tags: { semver: '*' }
    keep: { newest: 2, by: version }
  - name: old-releases
    tags: { semver: '*' }
    delete: { pushed_older_than: 30d }
  - name: dev
    tags: { glob: '*-dev' }
    delete: { pushed_older_than: 30d }
untagged: { delete_older_than: 1d }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_carried_out_on_a_filesystem_registry() {
    let root = tempfile::tempdir().unwrap();
    let registry = Registry::new(Arc::new(FilesystemDriver::new(root.path()).unwrap()), RegistryOptions::default());
    let app = registry.repository(&"team/app".parse().unwrap());
    let mut releases = Vec::new();
    for version in ["1.0.0", "1.1.0", "1.2.0", "2.0.0"] {
        releases.push(image(&app, version, Some(&format!("v{version}"))).await);
    }
    let signed = signature(&app, &releases[0], "sig of 1.0.0").await;
    let amd64 = image(&app, "amd64", None).await;
    let arm64 = image(&app, "arm64", None).await;
    let multi = index(&app, &[&amd64, &arm64], "multi-dev").await;
    let orphan = image(&app, "orphan", None).await;
    let tools = registry.repository(&"tools".parse().unwrap());
    let kept_tool = image(&tools, "tool", Some("stable")).await;

    // The inventory is what was pushed.
    let found = inventory(&registry).await.unwrap();
    let names: Vec<&str> = found.repositories.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["team/app", "tools"]);
    let team = &found.repositories[0];
    assert_eq!(team.tags.len(), 5);
    assert_eq!(team.manifests.len(), 9);
    let index_record = team.manifests.iter().find(|m| m.digest == multi).unwrap();
    assert_eq!(index_record.children, [amd64.0.clone(), arm64.0.clone()]);
    let signature_record = team.manifests.iter().find(|m| m.digest == signed).unwrap();
    assert_eq!(signature_record.subject.as_ref(), Some(&releases[0].0));
    assert_eq!(signature_record.artifact_type.as_deref(), Some("application/vnd.dev.cosign.artifact.sig.v1+json"));
    assert_eq!(team.manifests.iter().find(|m| m.digest == releases[1].0).unwrap().blobs.len(), 2);
    assert_eq!(team.manifests.iter().find(|m| m.digest == releases[1].0).unwrap().artifact_type, None);

    // Forty days on: the two newest releases stay; the rest, the old dev index with its
    // images, the signature of a deleted release and the orphan go.
    let later = Timestamp(SystemTime::now() + Duration::from_secs(40 * 86_400));
    let policy = Policy::from_yaml(POLICY).unwrap();
    let planned = plan(&found, &policy, &InUse::default(), later);
    let decided: Vec<(&str, Decision)> =
        planned.repositories[0].tags.iter().map(|t| (t.name.as_str(), t.decision)).collect();
    assert_eq!(
        decided,
        [
            ("multi-dev", Decision::Delete),
            ("v1.0.0", Decision::Delete),
            ("v1.1.0", Decision::Delete),
            ("v1.2.0", Decision::Keep),
            ("v2.0.0", Decision::Keep)
        ]
    );
    assert_eq!(planned.summary.manifests_deleted, 7);
    let mut lines: Vec<AuditEntry> = Vec::new();
    let applied = apply(&planned, &registry, &mut |entry| lines.push(entry.clone())).await.unwrap();
    assert_eq!((applied.tags_deleted, applied.manifests_deleted, applied.skipped), (3, 7, 0), "{lines:?}");
    assert_eq!(lines.len(), 10);
    // The run is on record, for the console's storage page.
    let records = registry.maintenance_records().await.unwrap();
    assert_eq!(
        records.iter().map(|r| (r.kind.as_str(), r.summary.as_str())).collect::<Vec<_>>(),
        [("retention", "retention: 3 tags and 7 manifests deleted, 0 skipped, 0 already gone")]
    );
    assert!(lines.iter().all(|l| l.repository == "team/app" && l.action.starts_with("delete-")));
    let tag_line = lines.iter().find(|l| l.tag.as_deref() == Some("v1.0.0")).unwrap();
    assert_eq!(
        (tag_line.rule.as_deref(), tag_line.reason.as_str()),
        (Some("old-releases"), "pushed more than 30d ago")
    );
    let index_first = lines.iter().position(|l| l.digest == multi && l.action == "delete-manifest").unwrap();
    let child_after = lines.iter().position(|l| l.digest == amd64.0 && l.action == "delete-manifest").unwrap();
    assert!(index_first < child_after, "an index goes before its children");
    assert_eq!(app.tags(None, None).await.unwrap(), ["v1.2.0", "v2.0.0"]);
    for gone in [&releases[0].0, &releases[1].0, &signed, &multi, &amd64.0, &arm64.0, &orphan.0] {
        assert!(!has(&app, gone).await, "{gone} is still there");
    }
    for kept in [&releases[2].0, &releases[3].0] {
        assert!(has(&app, kept).await);
    }
    assert!(has(&tools, &kept_tool.0).await);

    // The same plan again deletes nothing.
    let mut again = Vec::new();
    let second = apply(&planned, &registry, &mut |entry| again.push(entry.clone())).await.unwrap();
    assert_eq!((second.tags_deleted, second.manifests_deleted, second.skipped, second.already_gone), (0, 0, 0, 10));
    assert!(again.is_empty());
    // And a new plan for what is left has nothing to delete.
    let replanned = plan(&inventory(&registry).await.unwrap(), &policy, &InUse::default(), later);
    assert_eq!(replanned.summary.tags_deleted + replanned.summary.manifests_deleted, 0, "{}", replanned.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_changed_since_the_plan_is_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let registry = Registry::new(Arc::new(FilesystemDriver::new(root.path()).unwrap()), RegistryOptions::default());
    let app = registry.repository(&"team/app".parse().unwrap());
    let old = image(&app, "old", Some("old-dev")).await;
    let moved = image(&app, "moved", Some("moved-dev")).await;
    let signed_later = image(&app, "signed-later", Some("signed-dev")).await;
    let later = Timestamp(SystemTime::now() + Duration::from_secs(40 * 86_400));
    let planned =
        plan(&inventory(&registry).await.unwrap(), &Policy::from_yaml(POLICY).unwrap(), &InUse::default(), later);
    assert_eq!(planned.summary.tags_deleted, 3);

    // Meanwhile: a tag moves to a new image, and a signature arrives for another.
    let new = image(&app, "new", None).await;
    app.tag("moved-dev", &new.0).await.unwrap();
    let signature = signature(&app, &signed_later, "arrived after the plan").await;

    let mut lines = Vec::new();
    let applied = apply(&planned, &registry, &mut |entry| lines.push(entry.clone())).await.unwrap();
    assert_eq!((applied.tags_deleted, applied.manifests_deleted, applied.skipped), (2, 2, 2), "{lines:?}");
    let skips: Vec<&AuditEntry> = lines.iter().filter(|l| l.action == "skip").collect();
    assert!(skips.iter().any(|l| l.tag.as_deref() == Some("moved-dev") && l.reason.contains("points at")), "{skips:?}");
    assert!(skips.iter().any(|l| l.digest == signed_later.0 && l.reason.contains(signature.as_str())), "{skips:?}");
    assert!(!has(&app, &old.0).await);
    assert!(has(&app, &new.0).await && has(&app, &signed_later.0).await && has(&app, &signature).await);
    assert_eq!(app.tags(None, None).await.unwrap(), ["moved-dev"]);
    // The moved tag's old image goes all the same: nothing names it any more.
    assert!(!has(&app, &moved.0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registries_on_one_root_apply_one_plan_at_once() {
    let root = tempfile::tempdir().unwrap();
    let open = || Registry::new(Arc::new(FilesystemDriver::new(root.path()).unwrap()), RegistryOptions::default());
    let app = open().repository(&"team/app".parse().unwrap());
    let mut doomed = Vec::new();
    for n in 0..12 {
        doomed.push(image(&app, &format!("dev{n}"), Some(&format!("b{n}-dev"))).await);
    }
    let kept = image(&app, "release", Some("v1.0.0")).await;
    let later = Timestamp(SystemTime::now() + Duration::from_secs(40 * 86_400));
    let (one, two) = (open(), open());
    let planned = plan(&inventory(&one).await.unwrap(), &Policy::from_yaml(POLICY).unwrap(), &InUse::default(), later);
    assert_eq!((planned.summary.tags_deleted, planned.summary.manifests_deleted), (12, 12));
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let (mut tell_first, mut tell_second) =
        (|entry: &AuditEntry| first.push(entry.clone()), |entry: &AuditEntry| second.push(entry.clone()));
    let (a, b) = tokio::join!(apply(&planned, &one, &mut tell_first), apply(&planned, &two, &mut tell_second));
    let (a, b) = (a.unwrap(), b.unwrap());
    // Every deletion made once between them, the rest found already gone; nothing skipped.
    assert_eq!((a.tags_deleted + b.tags_deleted, a.manifests_deleted + b.manifests_deleted), (12, 12), "{a:?} {b:?}");
    assert_eq!(a.skipped + b.skipped, 0);
    assert_eq!(first.len() + second.len(), 24);
    assert_eq!(app.tags(None, None).await.unwrap(), ["v1.0.0"]);
    for gone in &doomed {
        assert!(!has(&app, &gone.0).await);
    }
    assert!(has(&app, &kept.0).await);
}

/// An image whose config says it was built at `created`, tagged `tag` when given.
async fn dated_image(repository: &Repository, seed: &str, created: &str, tag: Option<&str>) -> (Digest, usize) {
    let config = serde_json::json!({"created": created, "architecture": "amd64", "os": "linux", "seed": seed});
    let (config, config_size) = blob(repository, &serde_json::to_vec(&config).unwrap()).await;
    let (layer, layer_size) = blob(repository, format!("layer of {seed}").as_bytes()).await;
    let raw = image_manifest((config.as_str(), config_size), &[(layer.as_str(), layer_size)], None);
    let size = raw.len();
    let reference = tag.map_or_else(|| ManifestReference::Digest(Digest::sha256(&raw)), |t| t.parse().unwrap());
    (repository.put_manifest(&reference, Bytes::from(raw), None).await.unwrap(), size)
}

/// Serves `registry` through wharf-server on a free loopback port, deletes on; the task
/// ends with the test's runtime.
async fn serve(registry: &Registry) -> String {
    let router =
        wharf::server::router(registry.clone(), wharf::server::ServerOptions::default().with_delete_enabled(true));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    host
}

fn http_client(host: &str) -> wharf::client::Client {
    wharf::client::Client::builder().plain_http(host).build().unwrap()
}

fn time(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_carried_out_over_http() {
    let root = tempfile::tempdir().unwrap();
    let registry = Registry::new(Arc::new(FilesystemDriver::new(root.path()).unwrap()), RegistryOptions::default());
    let app = registry.repository(&"team/app".parse().unwrap());
    let mut releases = Vec::new();
    for (version, created) in
        [("1.0.0", "2026-01-01"), ("1.1.0", "2026-02-01"), ("1.2.0", "2026-11-30"), ("2.0.0", "2026-12-01")]
    {
        releases.push(dated_image(&app, version, &format!("{created}T00:00:00Z"), Some(&format!("v{version}"))).await);
    }
    let signed = signature(&app, &releases[0], "sig of 1.0.0").await;
    let amd64 = dated_image(&app, "amd64", "2026-03-01T00:00:00Z", None).await;
    let arm64 = dated_image(&app, "arm64", "2026-03-02T00:00:00.123456789Z", None).await;
    let multi = index(&app, &[&amd64, &arm64], "multi-dev").await;
    let orphan = dated_image(&app, "orphan", "2026-01-01T00:00:00Z", None).await;
    let tools = registry.repository(&"tools".parse().unwrap());
    image(&tools, "tool", Some("stable")).await;
    let host = serve(&registry).await;
    let client = http_client(&host);
    let now = time("2026-12-07T00:00:00Z");

    // Over HTTP, below the prefix `team`: what the embedded registry holds, but for the
    // untagged image nothing names, and with times from the configs.
    let remote = wharf::policy::remote::inventory(&client, &host, Some("team"), now).await.unwrap();
    let names: Vec<&str> = remote.repositories.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["team/app"]);
    let embedded = inventory(&registry).await.unwrap();
    let (over_http, in_place) = (&remote.repositories[0], &embedded.repositories[0]);
    let tags = |r: &wharf::policy::RepositoryInventory| -> Vec<(String, Digest)> {
        r.tags.iter().map(|t| (t.name.clone(), t.digest.clone())).collect()
    };
    assert_eq!(tags(over_http), tags(in_place));
    let shape = |m: &wharf::policy::ManifestRecord| {
        (
            m.digest.clone(),
            m.media_type.clone(),
            m.artifact_type.clone(),
            m.size,
            m.blobs.clone(),
            m.subject.clone(),
            m.children.clone(),
        )
    };
    let expected: Vec<_> = in_place.manifests.iter().filter(|m| m.digest != orphan.0).map(shape).collect();
    assert_eq!(over_http.manifests.iter().map(shape).collect::<Vec<_>>(), expected);
    let pushed = |digest: &Digest| over_http.manifests.iter().find(|m| &m.digest == digest).unwrap().pushed;
    assert_eq!(pushed(&releases[0].0), time("2026-01-01T00:00:00Z"));
    assert_eq!(pushed(&multi), time("2026-03-02T00:00:00.123456789Z"), "an index is as new as its newest child");
    assert_eq!(pushed(&signed), now, "a manifest that tells no time counts as new");
    assert!(
        over_http.manifests.iter().all(|m| m.pulled.is_none()) && over_http.tags.iter().all(|t| t.pulled.is_none())
    );

    // The plan: the two newest releases stay; the old ones, the signature of a deleted
    // release and the dev index with its images go.
    let planned = plan(&remote, &Policy::from_yaml(POLICY).unwrap(), &InUse::default(), now);
    let decided: Vec<(&str, Decision)> =
        planned.repositories[0].tags.iter().map(|t| (t.name.as_str(), t.decision)).collect();
    assert_eq!(
        decided,
        [
            ("multi-dev", Decision::Delete),
            ("v1.0.0", Decision::Delete),
            ("v1.1.0", Decision::Delete),
            ("v1.2.0", Decision::Keep),
            ("v2.0.0", Decision::Keep)
        ]
    );
    assert_eq!(planned.summary.manifests_deleted, 6);

    // Meanwhile the dev tag moves: it is skipped, and its old index goes all the same.
    let moved_to = dated_image(&app, "new dev", "2026-12-06T00:00:00Z", Some("multi-dev")).await;
    let mut lines: Vec<AuditEntry> = Vec::new();
    let applied =
        wharf::policy::remote::apply(&planned, &client, &host, &mut |entry| lines.push(entry.clone())).await.unwrap();
    assert_eq!((applied.tags_deleted, applied.manifests_deleted, applied.skipped), (2, 6, 1), "{lines:?}");
    assert!(lines.iter().any(|l| l.action == "skip" && l.tag.as_deref() == Some("multi-dev")), "{lines:?}");
    let index_first = lines.iter().position(|l| l.digest == multi && l.action == "delete-manifest").unwrap();
    let child_after = lines.iter().position(|l| l.digest == amd64.0 && l.action == "delete-manifest").unwrap();
    assert!(index_first < child_after, "an index goes before its children");
    assert_eq!(app.tags(None, None).await.unwrap(), ["multi-dev", "v1.2.0", "v2.0.0"]);
    for gone in [&releases[0].0, &releases[1].0, &signed, &multi, &amd64.0, &arm64.0] {
        assert!(!has(&app, gone).await, "{gone} is still there");
    }
    for kept in [&releases[2].0, &releases[3].0, &moved_to.0, &orphan.0] {
        assert!(has(&app, kept).await);
    }

    // The same plan again deletes nothing.
    let mut again = Vec::new();
    let second =
        wharf::policy::remote::apply(&planned, &client, &host, &mut |entry| again.push(entry.clone())).await.unwrap();
    assert_eq!((second.tags_deleted, second.manifests_deleted), (0, 0), "{again:?}");
    assert_eq!(second.already_gone, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_carried_out_on_distribution() {
    if !wharf_testing::peers::has_peer("docker-registry", "plans_carried_out_on_distribution") {
        return;
    }
    // Distribution's layout written in place, then served by Distribution itself.
    let root = tempfile::tempdir().unwrap();
    let registry = Registry::new(Arc::new(FilesystemDriver::new(root.path()).unwrap()), RegistryOptions::default());
    let app = registry.repository(&"team/app".parse().unwrap());
    let old = dated_image(&app, "1.0.0", "2026-01-01T00:00:00Z", Some("v1.0.0")).await;
    let kept = dated_image(&app, "1.2.0", "2026-01-15T00:00:00Z", Some("v1.2.0")).await;
    app.tag("stale-dev", &kept.0).await.unwrap();
    let newest = dated_image(&app, "2.0.0", "2026-12-01T00:00:00Z", Some("v2.0.0")).await;
    let distribution = wharf_testing::peers::Distribution::serve(root.path());
    let host = distribution.host();
    let client = http_client(&host);
    let now = time("2026-12-07T00:00:00Z");

    let remote = wharf::policy::remote::inventory(&client, &host, None, now).await.unwrap();
    assert_eq!(remote.repositories.len(), 1);
    assert_eq!(remote.repositories[0].tags.len(), 4);
    let planned = plan(&remote, &Policy::from_yaml(POLICY).unwrap(), &InUse::default(), now);
    let deleted: Vec<&str> = planned.repositories[0]
        .tags
        .iter()
        .filter(|t| t.decision == Decision::Delete)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(deleted, ["stale-dev", "v1.0.0"]);

    let mut lines: Vec<AuditEntry> = Vec::new();
    let applied =
        wharf::policy::remote::apply(&planned, &client, &host, &mut |entry| lines.push(entry.clone())).await.unwrap();
    let mut left = client.repository(&host, "team/app").tags().await.unwrap();
    left.sort();
    assert!(applied.manifests_deleted == 1 && !left.contains(&"v1.0.0".to_owned()), "{applied:?} {lines:?} {left:?}");
    assert!(client.repository(&host, "team/app").manifest_descriptor(old.0.as_str()).await.unwrap().is_none());
    for digest in [&kept.0, &newest.0] {
        assert!(client.repository(&host, "team/app").manifest_descriptor(digest.as_str()).await.unwrap().is_some());
    }
    // Distribution deletes no tag alone (it answers DIGEST_INVALID): v1.0.0 went with its
    // manifest, and stale-dev stays, with the reason, as its manifest is kept.
    assert_eq!((applied.tags_deleted, applied.skipped), (1, 1), "{lines:?}");
    let line = |tag: &str| lines.iter().find(|l| l.tag.as_deref() == Some(tag)).unwrap();
    assert_eq!(line("v1.0.0").action, "delete-tag");
    assert!(line("v1.0.0").reason.ends_with("(with its manifest)"), "{lines:?}");
    assert_eq!(line("stale-dev").action, "skip");
    assert!(line("stale-dev").reason.contains("cannot delete a tag alone"), "{lines:?}");
    assert_eq!(left, ["stale-dev", "v1.2.0", "v2.0.0"]);
}

/// A registry over memory served by wharf-server, with twelve old dev images and a release
/// in `team/app`; with the plan that deletes the dev images, and the release's digest.
async fn served_dev_images() -> (Registry, String, wharf::policy::Plan, Vec<Digest>, Digest) {
    let (registry, router) =
        wharf_testing::http::app(wharf::server::ServerOptions::default().with_delete_enabled(true));
    let app = registry.repository(&"team/app".parse().unwrap());
    let mut doomed = Vec::new();
    for n in 0..12 {
        doomed.push(dated_image(&app, &format!("dev{n}"), "2026-01-01T00:00:00Z", Some(&format!("b{n}-dev"))).await.0);
    }
    let kept = dated_image(&app, "release", "2026-01-01T00:00:00Z", Some("v1.0.0")).await.0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let now = time("2026-12-07T00:00:00Z");
    let remote = wharf::policy::remote::inventory(&http_client(&host), &host, None, now).await.unwrap();
    let planned = plan(&remote, &Policy::from_yaml(POLICY).unwrap(), &InUse::default(), now);
    assert_eq!((planned.summary.tags_deleted, planned.summary.manifests_deleted), (12, 12));
    (registry, host, planned, doomed, kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_apply_one_plan_at_once_over_http() {
    let (registry, host, planned, doomed, kept) = served_dev_images().await;
    let (one, two) = (http_client(&host), http_client(&host));
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let (mut tell_first, mut tell_second) =
        (|entry: &AuditEntry| first.push(entry.clone()), |entry: &AuditEntry| second.push(entry.clone()));
    let (a, b) = tokio::join!(
        wharf::policy::remote::apply(&planned, &one, &host, &mut tell_first),
        wharf::policy::remote::apply(&planned, &two, &host, &mut tell_second)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // Every deletion made once between them, the rest found already gone; nothing skipped.
    assert_eq!((a.tags_deleted + b.tags_deleted, a.manifests_deleted + b.manifests_deleted), (12, 12), "{a:?} {b:?}");
    assert_eq!(a.skipped + b.skipped, 0, "{first:?} {second:?}");
    let app = registry.repository(&"team/app".parse().unwrap());
    assert_eq!(app.tags(None, None).await.unwrap(), ["v1.0.0"]);
    for gone in &doomed {
        assert!(!has(&app, gone).await);
    }
    assert!(has(&app, &kept).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_while_applying_over_http() {
    use wharf_testing::proxy::{Direction, FaultProxy};
    let quick = wharf::client::Retry {
        attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    };
    let through =
        |proxy: &FaultProxy| wharf::client::Client::builder().plain_http(&proxy.host()).retry(quick).build().unwrap();
    // The answers' bytes of a whole run, to cut at points spread over it.
    let (_, host, planned, _, _) = served_dev_images().await;
    let proxy = FaultProxy::start(host.parse().unwrap()).await;
    wharf::policy::remote::apply(&planned, &through(&proxy), &proxy.host(), &mut |_| {}).await.unwrap();
    let total = proxy.bytes(Direction::Downstream);
    let mut failed = 0;
    for step in 1..=8u64 {
        let (registry, host, planned, doomed, kept) = served_dev_images().await;
        let proxy = FaultProxy::start(host.parse().unwrap()).await;
        for cut in 0..4 {
            proxy.cut_at(Direction::Downstream, total * step / 9 + cut * 97);
        }
        let client = through(&proxy);
        let mut lines = Vec::new();
        let cut_run =
            wharf::policy::remote::apply(&planned, &client, &proxy.host(), &mut |e| lines.push(e.clone())).await;
        let app = registry.repository(&"team/app".parse().unwrap());
        failed += u32::from(cut_run.is_err());
        assert!(has(&app, &kept).await, "step {step}: the kept release is gone ({cut_run:?})");
        assert!(lines.iter().all(|l| l.action != "skip"), "step {step}: {lines:?}");
        // Run again, whole (straight to the server: cuts the first run did not reach are left
        // behind in the proxy): the plan is carried out, and nothing kept is touched.
        let rerun = wharf::policy::remote::apply(&planned, &http_client(&host), &host, &mut |_| {}).await.unwrap();
        assert_eq!(rerun.skipped, 0, "step {step}");
        assert_eq!(app.tags(None, None).await.unwrap(), ["v1.0.0"], "step {step}: {cut_run:?}");
        for gone in &doomed {
            assert!(!has(&app, gone).await, "step {step}");
        }
        assert!(has(&app, &kept).await);
    }
    assert!(failed > 0, "no cut made a run fail: the faults missed the traffic");
}
