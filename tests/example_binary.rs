//! The spec workflows against `examples/registry.rs` as users run it: a process started
//! with a Distribution config file, spoken to over TCP, stopped with SIGTERM.
#![allow(clippy::print_stderr, reason = "the two-instance test reports its time and its collections")]

use wharf_testing::http as common;
use wharf_testing::peers;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use axum::http::{Method, StatusCode};
use common::Target;
use common::content::{blob_pushes, content_kinds};
use common::workflows::{bad_input, deletes_refused, discovery, management, pull, push, read_only};

/// An example of this package, which `cargo test` builds beside this test's binary.
fn example_binary(example: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("the target folder").join("examples").join(example);
    assert!(path.exists(), "{} is missing: `cargo test` builds the {example} example", path.display());
    path
}

/// The example serving a fresh root with `storage_extra` in its `storage:` section; stopped
/// with SIGTERM on `stop`, killed if dropped.
struct Example {
    child: Child,
    port: u16,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Example {
    fn start(binary: &PathBuf, storage_extra: &str) -> Example {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            format!("  filesystem:\n    rootdirectory: {}\n{storage_extra}", dir.path().join("root").display());
        Example::start_in(binary, dir, &storage, "")
    }

    /// The example with `storage` as its `storage:` section and `sections` after `http:`, its
    /// config and log in `dir`.
    fn start_in(binary: &PathBuf, dir: tempfile::TempDir, storage: &str, sections: &str) -> Example {
        let port = peers::free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n{storage}http:\n  addr: 127.0.0.1:{port}\n  relativeurls: true\n{sections}"
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .expect("the example starts");
        peers::wait_for_port(port, "the registry example");
        Example { child, port, config, dir }
    }

    fn target(&self) -> Target {
        Target::remote(format!("http://127.0.0.1:{}", self.port))
    }

    /// SIGTERM, and a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "the example exited with {exit} after SIGTERM");
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_workflows_against_the_example() {
    let binary = example_binary("registry");
    let deletes = "  delete:\n    enabled: true\n";
    // Each workflow wants a registry of its own.
    for (name, extra) in [
        ("pull", deletes),
        ("push", deletes),
        ("discovery", deletes),
        ("management", deletes),
        ("bad_input", deletes),
        ("content_kinds", deletes),
        ("blob_pushes", deletes),
        ("deletes_refused", ""),
        ("read_only", "  maintenance:\n    readonly:\n      enabled: true\n"),
    ] {
        let example = Example::start(&binary, extra);
        let target = example.target();
        match name {
            "pull" => pull(&target).await,
            "push" => push(&target).await,
            "discovery" => discovery(&target).await,
            "management" => management(&target).await,
            "bad_input" => bad_input(&target).await,
            "content_kinds" => content_kinds(&target).await,
            "blob_pushes" => blob_pushes(&target).await,
            "deletes_refused" => deletes_refused(&target).await,
            _ => read_only(&target).await,
        }
        example.stop();
    }
}

/// Runs the gc example on `config` with `args`; returns what it printed.
fn run_gc(binary: &PathBuf, config: &PathBuf, args: &[&str]) -> String {
    let output = Command::new(binary).arg(config).args(args).output().expect("the gc example runs");
    assert!(
        output.status.success(),
        "gc {args:?} exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_example_collects_while_the_registry_serves() {
    let (registry, gc) = (example_binary("registry"), example_binary("gc"));
    let example = Example::start(&registry, "  delete:\n    enabled: true\n");
    let target = example.target();
    let (kept, kept_digest) = common::push_image(&target, "team/app", "stable", 1).await;
    let (_, dropped_digest) = common::push_image(&target, "team/app", "old", 2).await;
    let loose = common::push_blob(&target, "team/app", b"a blob no manifest uses").await;
    let reply = target.send(Method::DELETE, "/v2/team/app/manifests/old", &[], Vec::new()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "tag delete: {:?}", reply.body);
    let kept_blobs: Vec<String> = serde_json::from_slice::<serde_json::Value>(&kept).unwrap()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_owned())
        .collect();
    // All of that was pushed two hours ago, as far as the collector can tell; a blob pushed
    // just now is inside the grace period.
    let status = Command::new("find")
        .arg(example.dir.path().join("root"))
        .args(["-exec", "touch", "-d", "2 hours ago", "{}", "+"])
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = common::push_blob(&target, "team/app", b"a blob pushed just now").await;

    // A dry run names what would go and deletes nothing.
    let report = run_gc(&gc, &example.config, &["--dry-run", "--delete-untagged"]);
    assert!(report.contains(&format!("manifest team/app@{dropped_digest}: would delete")), "{report}");
    assert!(report.contains(&format!("blob {loose}: would delete")), "{report}");
    assert!(!report.contains(&kept_digest) && !report.contains(&fresh), "{report}");
    let head = |digest: String| {
        let target = &target;
        async move { target.send(Method::HEAD, &format!("/v2/team/app/blobs/{digest}"), &[], Vec::new()).await.status }
    };
    assert_eq!(head(loose.clone()).await, StatusCode::OK);

    // The real run, while the registry serves.
    let report = run_gc(&gc, &example.config, &["--delete-untagged"]);
    assert!(report.contains(&format!("manifest team/app@{dropped_digest}: deleted")), "{report}");
    assert!(report.contains(&format!("blob {loose}: deleted")), "{report}");
    // The untagged image's config and layer, its manifest, and the loose blob.
    assert!(report.contains("deleted 1 manifests and 4 blobs"), "{report}");
    assert_eq!(head(loose).await, StatusCode::NOT_FOUND);
    assert_eq!(head(fresh).await, StatusCode::OK);
    let reply = target.get(&format!("/v2/team/app/manifests/{dropped_digest}")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = target.get("/v2/team/app/manifests/stable").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, kept);
    for digest in kept_blobs {
        assert_eq!(head(digest).await, StatusCode::OK);
    }
    // The registry goes on taking pushes.
    common::push_image(&target, "team/app", "next", 3).await;
    example.stop();
}

/// The `storage:` section of a fresh root in the test S3 bucket (moto, from `scripts/test`),
/// or `None` after saying why, a failure under `WHARF_REQUIRE_PEERS=1`.
async fn s3_storage(test: &str) -> Option<String> {
    let config = peers::s3_config(test)?;
    peers::s3_driver(config.clone()).await;
    let field = |value: &Option<String>| value.clone().expect("set by s3_config");
    Some(format!(
        "  s3:\n    region: {}\n    bucket: {}\n    regionendpoint: {}\n    forcepathstyle: true\n    accesskey: {}\n    secretkey: {}\n    rootdirectory: /{}\n",
        config.region,
        config.bucket,
        field(&config.region_endpoint),
        field(&config.access_key),
        field(&config.secret_key),
        config.root_directory,
    ))
}

/// Pushes an image of a config, a shared base layer and a layer of its own under `tag`;
/// returns every blob of it with its content.
async fn push_layered(target: &Target, name: &str, tag: &str, base: &[u8]) -> Vec<(String, Vec<u8>)> {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"tag\":\"{tag}\"}}").into_bytes();
    let own: Vec<u8> = tag.bytes().cycle().take(40_000).collect();
    let mut blobs = Vec::new();
    for data in [&config, &base.to_vec(), &own] {
        blobs.push((common::push_blob(target, name, data).await, data.clone()));
    }
    let layers: Vec<(&str, usize)> = blobs[1..].iter().map(|(d, data)| (d.as_str(), data.len())).collect();
    let manifest = common::image_manifest((&blobs[0].0, config.len()), &layers, None);
    blobs.push((common::put_manifest(target, name, tag, &manifest).await, manifest));
    blobs
}

/// Pushed images: (repository, tag, blobs and manifest).
type Pushed = Vec<(String, String, Vec<(String, Vec<u8>)>)>;

/// Two images from `side` in `round`, one of them into a repository both sides push to,
/// each over one of `bases`.
async fn push_images(target: &Target, side: &str, round: usize, bases: &[Vec<u8>]) -> Pushed {
    let mut pushed = Vec::new();
    for i in [2 * round, 2 * round + 1] {
        let name = if i % 2 == 0 { "team/shared".to_owned() } else { format!("team/{side}") };
        let tag = format!("{side}-{i}");
        let blobs = push_layered(target, &name, &tag, &bases[i % bases.len()]).await;
        pushed.push((name, tag, blobs));
    }
    pushed
}

/// Two registry processes on one bucket, each collecting on a schedule, and the gc example
/// run again and again meanwhile: images sharing base layers pushed to both at once are whole
/// on both afterwards, byte for byte, while blobs no image uses are collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_bucket() {
    let test = "two_instances_on_one_bucket";
    let (registry, gc) = (example_binary("registry"), example_binary("gc"));
    let Some(s3) = s3_storage(test).await else { return };
    let started = std::time::Instant::now();
    let grace = std::time::Duration::from_secs(5);
    let storage = format!(
        "{s3}  redirect:\n    disable: true\n  maintenance:\n    garbagecollect:\n      interval: 1s\n      grace: {}s\n",
        grace.as_secs()
    );
    let (a, b) = (
        Example::start_in(&registry, tempfile::tempdir().unwrap(), &storage, ""),
        Example::start_in(&registry, tempfile::tempdir().unwrap(), &storage, ""),
    );
    let (on_a, on_b) = (a.target(), b.target());
    let mut orphans = Vec::new();
    for i in 0..4u8 {
        orphans.push(common::push_blob(&on_a, "team/loose", &[i; 3000]).await);
    }
    let orphaned_at = std::time::Instant::now();

    // The gc example, again and again while the pushes go on: each run collects or finds
    // another collection going on.
    let stop_gc = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_runs = {
        let (gc, config, stop) = (gc.clone(), a.config.clone(), stop_gc.clone());
        tokio::task::spawn_blocking(move || {
            let mut outcomes = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let output = Command::new(&gc).arg(&config).args(["--grace", "5s"]).output().expect("gc runs");
                let stderr = String::from_utf8_lossy(&output.stderr);
                match output.status.code() {
                    Some(0) => outcomes.0 += 1,
                    Some(75) if stderr.contains("another garbage collection is running") => outcomes.1 += 1,
                    _ => panic!("gc exited with {}: {stderr}", output.status),
                }
            }
            outcomes
        })
    };

    // Pushes to both at once, round after round, until the orphans are gone: a collection
    // re-checks links written within its clock slack (a minute) before it deletes, so that
    // takes a little over a minute.
    let bases: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; 300_000]).collect();
    let deadline = orphaned_at + grace + std::time::Duration::from_secs(120);
    let (mut pushed, mut round) = (Vec::new(), 0);
    loop {
        let (from_a, from_b) =
            futures::join!(push_images(&on_a, "a", round, &bases), push_images(&on_b, "b", round, &bases));
        pushed.extend(from_a.into_iter().chain(from_b));
        round += 1;
        let mut left = 0;
        for orphan in &orphans {
            let reply = on_b.send(Method::HEAD, &format!("/v2/team/loose/blobs/{orphan}"), &[], Vec::new()).await;
            if reply.status != StatusCode::NOT_FOUND {
                left += 1;
            }
        }
        if left == 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(a.dir.path().join("registry.log")).unwrap_or_default();
            panic!("{left} orphans never collected; the log of one instance:\n{log}");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    stop_gc.store(true, std::sync::atomic::Ordering::Relaxed);
    let (collected, skipped) = gc_runs.await.unwrap();

    // Everything pushed, whole, from both.
    for (name, tag, blobs) in &pushed {
        for target in [&on_a, &on_b] {
            let manifest = target.get(&format!("/v2/{name}/manifests/{tag}")).await;
            assert_eq!(manifest.status, StatusCode::OK, "{name}:{tag}");
            assert_eq!(common::sha256(&manifest.body), blobs.last().unwrap().0, "{name}:{tag}");
            for (digest, data) in &blobs[..blobs.len() - 1] {
                let blob = target.get(&format!("/v2/{name}/blobs/{digest}")).await;
                assert_eq!(blob.status, StatusCode::OK, "{name}:{tag} {digest}");
                assert!(blob.body == data.as_slice(), "{name}:{tag} {digest} served other bytes");
            }
        }
    }
    let log = std::fs::read_to_string(a.dir.path().join("registry.log")).unwrap()
        + &std::fs::read_to_string(b.dir.path().join("registry.log")).unwrap();
    let finished = log.matches("garbage collection finished").count();
    assert!(finished > 0, "no scheduled collection finished:\n{log}");
    eprintln!(
        "{test}: {:.1} s; scheduled collections finished {finished}, skipped {}; gc example collected {collected} times, found another running {skipped} times",
        started.elapsed().as_secs_f64(),
        log.matches("garbage collection skipped").count()
    );
    a.stop();
    b.stop();
}

/// Runs the copy example; returns its exit code, output and errors.
async fn run_copy(args: Vec<String>) -> (i32, String, String) {
    let binary = example_binary("copy");
    let output = tokio::task::spawn_blocking(move || Command::new(binary).args(&args).output().expect("copy runs"))
        .await
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_example_copies_and_says_what_failed() {
    let (_, source_app) = common::app(wharf::server::ServerOptions::default());
    let source = Target::over_tcp(source_app).await;
    let (_, target_app) = common::app(wharf::server::ServerOptions::default());
    let target = Target::over_tcp(target_app).await;
    let host = |target: &Target| match target {
        Target::Tcp { base, .. } => base.trim_start_matches("http://").to_owned(),
        Target::Router(_) => unreachable!("over TCP"),
    };
    let (source_host, target_host) = (host(&source), host(&target));
    let (manifest, digest) = common::push_image(&source, "team/app", "v1", 7).await;
    let insecure = ["--src-tls-verify=false".to_owned(), "--dest-tls-verify=false".to_owned()];
    let copy_args = |from: String, to: String| {
        let mut args = vec![from, to];
        args.extend(insecure.iter().cloned());
        args
    };

    // A copy, then the same again: the second sends nothing.
    let (code, out, err) = run_copy(copy_args(
        format!("docker://{source_host}/team/app:v1"),
        format!("docker://{target_host}/copied/app:v1"),
    ))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("copied {digest}")) && out.contains("blobs sent 2"), "{out}");
    assert!(err.contains("sent"), "a line per blob when not on a terminal: {err}");
    let pulled = target.get("/v2/copied/app/manifests/v1").await;
    assert_eq!(pulled.body, manifest);
    let (code, out, err) = run_copy(copy_args(
        format!("docker://{source_host}/team/app:v1"),
        format!("docker://{target_host}/copied/app:v1"),
    ))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("blobs sent 0") && out.contains("skipped 2"), "{out}");

    // Into an OCI layout.
    let dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:v1", dir.path().join("export").display());
    let (code, out, err) = run_copy(copy_args(format!("docker://{source_host}/team/app:v1"), layout)).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(dir.path().join("export/index.json").exists());

    // What went wrong, named, and a failing exit status.
    let (code, _, err) =
        run_copy(copy_args(format!("docker://{source_host}/team/app:absent"), format!("docker://{target_host}/x:y")))
            .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("MANIFEST_UNKNOWN"), "{err}");
    let (code, _, err) = run_copy(vec!["docker://".into(), format!("docker://{target_host}/x:y")]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("image address"), "{err}");
    let (code, _, err) = run_copy(vec!["only-one".into()]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("usage"), "{err}");
}

fn run_retention(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let output = Command::new(example_binary("retention")).args(args).output().expect("retention runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

/// Pushes an image with a layer of its own to `repository` of the filesystem root; tagged
/// `tag` when given. Returns its digest.
async fn push_to_root(registry: &wharf::registry::Registry, repository: &str, seed: &str, tag: Option<&str>) -> String {
    use wharf::oci::Digest;
    let repository = registry.repository(&repository.parse().unwrap());
    let mut refs = Vec::new();
    // Built long ago, as a registry read over HTTP can tell.
    for data in [format!("{{\"seed\":\"{seed}\",\"created\":\"2026-01-01T00:00:00Z\"}}"), format!("layer of {seed}")] {
        let digest = Digest::sha256(data.as_bytes());
        let body = futures::stream::iter([Ok(bytes::Bytes::from(data.clone()))]);
        repository.put_blob(&digest, body).await.unwrap();
        refs.push((digest.to_string(), data.len()));
    }
    let raw = common::image_manifest((&refs[0].0, refs[0].1), &[(&refs[1].0, refs[1].1)], None);
    let reference = match tag {
        Some(tag) => tag.parse().unwrap(),
        None => wharf::registry::ManifestReference::Digest(Digest::sha256(&raw)),
    };
    repository.put_manifest(&reference, bytes::Bytes::from(raw), None).await.unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_example_plans_explains_exports_and_applies() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let driver = wharf::storage::FilesystemDriver::new(&root).unwrap();
    let registry =
        wharf::registry::Registry::new(std::sync::Arc::new(driver), wharf::registry::RegistryOptions::default());
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        push_to_root(&registry, "team/app", version, Some(&format!("v{version}"))).await;
    }
    push_to_root(&registry, "team/app", "feature", Some("feature-dev")).await;
    let orphan = push_to_root(&registry, "team/app", "orphan", None).await;
    let policy = work.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - {name: releases, tags: {semver: '*'}, keep: {newest: 2, by: version}}\n  - {name: old-releases, tags: {semver: '*'}, delete: {pushed_older_than: 30d}}\n  - {name: dev, tags: {glob: '*-dev'}, delete: {pushed_older_than: 30d}}\nuntagged: {delete_older_than: 1d}\n",
    )
    .unwrap();
    let later = humantime::format_rfc3339(std::time::SystemTime::now() + std::time::Duration::from_secs(40 * 86_400))
        .to_string();
    let (inventory_file, plan_file) = (work.path().join("inventory.json"), work.path().join("plan.json"));
    let os = |text: &str| std::ffi::OsString::from(text);
    let base = [os("--policy"), policy.clone().into(), os("--now"), os(&later)];
    let with = |extra: &[std::ffi::OsString]| {
        let all: Vec<std::ffi::OsString> = base.iter().chain(extra).cloned().collect();
        let refs: Vec<&std::ffi::OsStr> = all.iter().map(|a| a.as_os_str()).collect();
        run_retention(&refs)
    };

    // A dry run on the registry, its inventory saved; the same plan offline from the file.
    let (status, planned, stderr) = with(&[
        os("--registry"),
        root.clone().into(),
        os("--format"),
        os("json"),
        os("--export-inventory"),
        inventory_file.clone().into(),
    ]);
    assert_eq!(status, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&planned).unwrap();
    let deleted: Vec<&str> = plan["repositories"][0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["decision"] == "delete")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, ["feature-dev", "v1.0.0"]);
    assert_eq!(plan["summary"]["manifests_deleted"], 3, "{planned}");
    let (status, offline, stderr) =
        with(&[os("--inventory"), inventory_file.clone().into(), os("--format"), os("json")]);
    assert_eq!((status, offline), (0, planned.clone()), "{stderr}");
    std::fs::write(&plan_file, &planned).unwrap();

    // The table, and one tag explained.
    let (status, table, _) = with(&[os("--inventory"), inventory_file.clone().into()]);
    assert_eq!(status, 0);
    assert!(table.contains("team/app: 2 of 4 tags deleted"), "{table}");
    assert!(table.contains("total: 2 tags and 3 manifests deleted"), "{table}");
    let (status, explained, _) =
        with(&[os("--inventory"), inventory_file.into(), os("--explain"), os("team/app:v1.0.0")]);
    assert_eq!(status, 0);
    assert!(explained.contains("team/app:v1.0.0 ("), "{explained}");
    assert!(explained.contains("is deleted: pushed more than 30d ago"), "{explained}");
    assert!(
        explained.contains("rule releases (Keep): selects it, but does not hold: not among the newest 2 by version")
    );

    // The saved plan applied: an audit line per deletion; applied again, nothing.
    let (status, applied, stderr) =
        with(&[os("--registry"), root.clone().into(), os("--apply"), plan_file.clone().into()]);
    assert_eq!(status, 0, "{stderr}");
    let audit: Vec<serde_json::Value> =
        applied.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(audit.len(), 5, "{applied}");
    assert!(audit.iter().any(|a| a["action"] == "delete-manifest" && a["digest"] == orphan.as_str()));
    assert!(stderr.contains("applied: 2 tags and 3 manifests deleted"), "{stderr}");
    let app = registry.repository(&"team/app".parse().unwrap());
    assert_eq!(app.tags(None, None).await.unwrap(), ["v1.1.0", "v2.0.0"]);
    let (status, again, stderr) = with(&[os("--registry"), root.into(), os("--apply"), plan_file.into()]);
    assert_eq!(status, 0);
    assert!(!again.lines().any(|l| l.starts_with('{')), "{again}");
    assert!(
        stderr.contains("applied: 0 tags and 0 manifests deleted, 0 skipped as changed since the plan, 5 already gone")
    );

    // A policy with a mistake says where.
    std::fs::write(&policy, "version: 1\nrules:\n  - {name: x, tags: {regex: '('}, delete: {}}\n").unwrap();
    let (status, _, stderr) = with(&[os("--inventory"), work.path().join("inventory.json").into()]);
    assert_eq!(status, 1);
    assert!(stderr.starts_with("retention: policy: rules[0] (x).tags.regex: bad regex"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_example_over_http() {
    let work = tempfile::tempdir().unwrap();
    let driver = wharf::storage::FilesystemDriver::new(work.path().join("root")).unwrap();
    let registry =
        wharf::registry::Registry::new(std::sync::Arc::new(driver), wharf::registry::RegistryOptions::default());
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        push_to_root(&registry, "team/app", version, Some(&format!("v{version}"))).await;
    }
    push_to_root(&registry, "team/app", "feature", Some("feature-dev")).await;
    push_to_root(&registry, "tools/lint", "lint", Some("old-dev")).await;
    let router =
        wharf::server::router(registry.clone(), wharf::server::ServerOptions::default().with_delete_enabled(true));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let policy = work.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - {name: releases, tags: {semver: '*'}, keep: {newest: 2, by: version}}\n  - {name: dev, tags: {glob: '*-dev'}, delete: {pushed_older_than: 30d}}\ndefault: delete\n",
    )
    .unwrap();
    let inventory_file = work.path().join("inventory.json");
    let args = move |extra: &[&str]| {
        let mut all =
            vec!["--policy".to_owned(), policy.display().to_string(), "--now".into(), "2026-12-07T00:00:00Z".into()];
        all.extend(extra.iter().map(|a| (*a).to_owned()));
        all
    };
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
            run_retention(&refs)
        })
        .await
        .unwrap()
    };
    let url = format!("http://{host}/team");

    // A dry run below the prefix, its inventory saved.
    let exported = inventory_file.display().to_string();
    let (status, planned, stderr) =
        run(args(&["--registry", &url, "--format", "json", "--export-inventory", &exported])).await;
    assert_eq!(status, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&planned).unwrap();
    assert_eq!(plan["repositories"].as_array().unwrap().len(), 1, "only team/: {planned}");
    let deleted: Vec<&str> = plan["repositories"][0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["decision"] == "delete")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, ["feature-dev", "v1.0.0"]);
    let inventory: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&inventory_file).unwrap()).unwrap();
    assert_eq!(inventory["repositories"][0]["tags"][0]["pushed"], "2026-01-01T00:00:00Z");

    // Applied over HTTP: an audit line per deletion; tools/ untouched.
    let (status, applied, stderr) = run(args(&["--registry", &url, "--apply"])).await;
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(applied.lines().filter(|l| l.starts_with('{')).count(), 4, "{applied}");
    assert!(stderr.contains("applied: 2 tags and 2 manifests deleted"), "{stderr}");
    let app = registry.repository(&"team/app".parse().unwrap());
    assert_eq!(app.tags(None, None).await.unwrap(), ["v1.1.0", "v2.0.0"]);
    let tools = registry.repository(&"tools/lint".parse().unwrap());
    assert_eq!(tools.tags(None, None).await.unwrap(), ["old-dev"]);

    // An address that is neither a path nor HTTP says so.
    let (status, _, stderr) = run(args(&["--registry", "ftp://example.com", "--apply"])).await;
    assert_eq!(status, 1);
    assert!(stderr.contains("ftp:// is not http:// or https://"), "{stderr}");
}

/// Events queued by a registry killed (SIGKILL) while its endpoint was down are delivered, in
/// the order of their pushes, by the registry started again on the same root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_outlive_a_killed_registry() {
    let binary = example_binary("registry");
    let (listener, url) = wharf_testing::events::Listener::serve().await;
    listener.set_up(false);
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("  filesystem:\n    rootdirectory: {}\n", dir.path().join("root").display());
    let notifications = format!(
        "notifications:\n  endpoints:\n    - name: listener\n      url: {url}\n      timeout: 1s\n      threshold: 1\n      backoff: 100ms\n"
    );
    let mut example = Example::start_in(&binary, dir, &storage, &notifications);
    let target = example.target();
    let mut pushed = Vec::new();
    for (seed, tag) in (1..).zip(["one", "two", "three"]) {
        let (_, digest) = common::push_image(&target, "team/app", tag, seed).await;
        pushed.push(digest);
    }
    // Killed while it tries to deliver them, its lease on the queue held.
    example.child.kill().unwrap();
    example.child.wait().unwrap();
    assert!(listener.events().is_empty(), "the endpoint was down");
    let dir = std::mem::replace(&mut example.dir, tempfile::tempdir().unwrap());
    drop(example);
    listener.set_up(true);
    let again = Example::start_in(&binary, dir, &storage, &notifications);
    // The dead instance's lease on the queue runs out (15 s) before the new one delivers.
    let pushes = |events: &[serde_json::Value]| {
        let mut digests: Vec<String> = Vec::new();
        let tagged = |e: &&serde_json::Value| e["target"]["tag"].as_str().is_some_and(|tag| !tag.is_empty());
        for event in events.iter().filter(|e| e["action"] == "push").filter(tagged) {
            let digest = event["target"]["digest"].as_str().unwrap_or_default().to_owned();
            if !digests.contains(&digest) {
                digests.push(digest);
            }
        }
        digests
    };
    wharf_testing::eventually("the three pushes delivered", std::time::Duration::from_secs(60), async || {
        pushes(&listener.events()).len() == 3
    })
    .await;
    assert_eq!(pushes(&listener.events()), pushed, "in the order they were pushed");
    again.stop();
}

/// A mirror killed (SIGKILL) while it streams an uncached layer to its first client, started
/// again on the same root: the layer is served whole and true to its digest, and a pull of
/// the image finds everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_killed_mid_transfer_serves_the_whole_blob_after() {
    let binary = example_binary("registry");
    let upstream = Example::start(&binary, "");
    let origin = upstream.target();
    let layer = wharf_testing::images::content("killed mid-transfer", 24 << 20);
    let layer_digest = common::push_blob(&origin, "team/app", &layer).await;
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = common::push_blob(&origin, "team/app", config).await;
    let manifest = common::image_manifest((&config_digest, config.len()), &[(&layer_digest, layer.len())], None);
    common::put_manifest(&origin, "team/app", "v1", &manifest).await;

    let dir = tempfile::tempdir().unwrap();
    let storage = format!("  filesystem:\n    rootdirectory: {}\n", dir.path().join("root").display());
    let proxy = format!("proxy:\n  remoteurl: http://127.0.0.1:{}\n", upstream.port);
    let mut mirror = Example::start_in(&binary, dir, &storage, &proxy);
    let url = |port: u16| format!("http://127.0.0.1:{port}/v2/team/app/blobs/{layer_digest}");
    let mut response = reqwest::get(url(mirror.port)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.chunk().await.unwrap().is_some_and(|first| !first.is_empty()));
    mirror.child.kill().unwrap();
    mirror.child.wait().unwrap();
    // The first client's answer ends short of the layer: an error, never a whole answer.
    let mut received = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        received += chunk.len();
    }
    assert!(received < layer.len());
    let dir = std::mem::replace(&mut mirror.dir, tempfile::tempdir().unwrap());
    drop(mirror);
    let again = Example::start_in(&binary, dir, &storage, &proxy);
    let whole = reqwest::get(url(again.port)).await.unwrap().bytes().await.unwrap();
    assert_eq!(common::sha256(&whole), layer_digest);
    // And once more, from the cache.
    let cached = reqwest::get(url(again.port)).await.unwrap().bytes().await.unwrap();
    assert_eq!(common::sha256(&cached), layer_digest);
    again.stop();
    upstream.stop();
}

/// Headless Chromium loads each console page of the example: the rows it shows, no error on
/// its console, and a screenshot of each page in `target/console-screenshots/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let test = "the_console_in_a_real_browser";
    if !peers::has_peer("chromium", test) {
        return;
    }
    let binary = example_binary("registry");
    let example = Example::start(&binary, "");
    let target = example.target();
    let (app_manifest, app_digest) = common::push_image(&target, "team/app", "v1.2.0", 1).await;
    common::push_image(&target, "team/app", "latest", 2).await;
    common::push_image(&target, "team/db", "v15", 3).await;
    // A signature of team/app:v1.2.0.
    let empty = common::push_blob(&target, "team/app", b"{}").await;
    let payload = common::push_blob(&target, "team/app", b"signed").await;
    let mut signature: serde_json::Value = serde_json::from_slice(&common::image_manifest(
        (&empty, 2),
        &[(&payload, 6)],
        Some((&app_digest, app_manifest.len())),
    ))
    .unwrap();
    signature["artifactType"] = "application/vnd.dev.cosign.artifact.sig.v1+json".into();
    let signature = serde_json::to_vec(&signature).unwrap();
    common::put_manifest(&target, "team/app", &common::sha256(&signature), &signature).await;

    let shots = std::env::current_dir().unwrap().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let base = format!("http://127.0.0.1:{}/ui", example.port);
    let pages = [
        ("catalog", format!("{base}/"), vec!["team/app", "team/db", "Filter by name"]),
        ("repository", format!("{base}/repository?name=team%2Fapp"), vec!["v1.2.0", "latest", "signed"]),
        (
            "manifest",
            format!("{base}/manifest?name=team%2Fapp&digest={app_digest}"),
            vec!["docker pull", "application/vnd.dev.cosign.artifact.sig.v1+json", "Layers"],
        ),
        ("storage", format!("{base}/storage"), vec!["<svg", "team/db"]),
        ("retention", format!("{base}/retention"), vec!["<textarea", "Preview"]),
        (
            "retention-preview",
            format!(
                "{base}/retention?policy={}",
                "version%3A%201%0Arules%3A%0A%20%20-%20name%3A%20drop-latest%0A%20%20%20%20tags%3A%20%7Bglob%3A%20latest%7D%0A%20%20%20%20delete%3A%20%7B%7D%0Alimits%3A%20%7Bgrace%3A%200s%2C%20max_delete_fraction%3A%201.0%7D%0A"
            ),
            vec!["drop-latest", r#"<tr class="delete">"#, "would be deleted"],
        ),
    ];
    for (name, url, expected) in pages {
        let chromium = |action: Vec<String>| {
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                Command::new("chromium")
                    .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
                    .arg("--window-size=1280,900")
                    .args(action)
                    .arg(url)
                    .output()
                    .expect("chromium runs")
            })
        };
        let dom = chromium(vec!["--dump-dom".into()]).await.unwrap();
        let text = String::from_utf8_lossy(&dom.stdout);
        let log = String::from_utf8_lossy(&dom.stderr);
        assert!(dom.status.success(), "{name}: chromium failed: {log}");
        for row in expected {
            assert!(text.contains(row), "{name}: {row:?} is not in the page: {text}");
        }
        // What the page's script or markup did wrong shows on the browser's console.
        let errors: Vec<&str> =
            log.lines().filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught") || l.contains("Refused")).collect();
        assert!(errors.is_empty(), "{name}: the browser's console: {errors:?}");
        let shot = shots.join(format!("{name}.png"));
        let taken = chromium(vec![format!("--screenshot={}", shot.display())]).await.unwrap();
        assert!(taken.status.success(), "{name}: {}", String::from_utf8_lossy(&taken.stderr));
        assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000), "{name}: no screenshot at {}", shot.display());
    }
    example.stop();
}
