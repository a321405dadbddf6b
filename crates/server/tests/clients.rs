//! Real clients over TCP: skopeo pushes a multi-layer image, a two-platform index and an
//! artifact with a subject to a Wharf server, pulls them back, and gets the same bytes.
#![allow(clippy::print_stderr, reason = "a skipped test says so, and why")]

use wharf_testing::images;
use wharf_testing::peers;

use wharf_testing::http as common;

use bytes::Bytes;
use common::RunningServer;
use images::Images;
use peers::{has_peer, skopeo};
use wharf_oci::Digest;
use wharf_registry::ManifestReference;

/// A Wharf server over a filesystem root with deletes on; `http` holds more lines of the
/// `http:` section, `top` more sections.
async fn start(root: &std::path::Path, http: &str, top: &str) -> RunningServer {
    RunningServer::from_yaml(&format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n{http}{top}",
        root.display()
    ))
    .await
}

fn url(running: &RunningServer, repository: &str, tag: &str) -> String {
    format!("docker://{}/{repository}:{tag}", running.address)
}

/// Copies every tag of `images` with skopeo, `--all --preserve-digests` and `options`, from
/// and to where `source` and `destination` say for each tag.
async fn copy_tags(
    images: &Images,
    options: &[String],
    source: impl Fn(&str) -> String,
    destination: impl Fn(&str) -> String,
) {
    for tag in images.tags.keys() {
        let mut args = vec!["copy".to_owned(), "--all".to_owned(), "--preserve-digests".to_owned()];
        args.extend(options.iter().cloned());
        args.push(source(tag));
        args.push(destination(tag));
        skopeo_async(args).await;
    }
}

/// skopeo, off the async workers (the server runs on them).
async fn skopeo_async(args: Vec<String>) {
    tokio::task::spawn_blocking(move || skopeo(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .expect("skopeo task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_round_trip() {
    if !has_peer("skopeo", "skopeo_round_trip") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (layout, root, out) = (work.path().join("layout"), work.path().join("root"), work.path().join("pulled"));
    let images = Images::standard();
    images.write_layout(&layout);
    let running = start(&root, "", "").await;
    let plain = ["--dest-tls-verify=false".to_owned()];
    copy_tags(&images, &plain, |tag| format!("oci:{}:{tag}", layout.display()), |tag| url(&running, "team/app", tag))
        .await;
    // What the server stored is what was pushed.
    let repository = running.registry.repository(&"team/app".parse().unwrap());
    for (tag, raw) in &images.tags {
        let stored = repository.get_manifest(&ManifestReference::Tag(tag.parse().unwrap())).await.unwrap();
        assert_eq!(stored.content, Bytes::from(raw.clone()), "{tag}");
    }
    // The artifact is listed among its subject's referrers.
    let subject = Digest::sha256(&images.tags["image"]);
    let referrers = repository.referrers(&subject, None).await.unwrap();
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].digest, Digest::sha256(&images.tags["sbom"]));

    let plain = ["--src-tls-verify=false".to_owned()];
    copy_tags(&images, &plain, |tag| url(&running, "team/app", tag), |tag| format!("oci:{}:{tag}", out.display()))
        .await;
    running.stop().await;
    images.check_layout(&out);
}

/// Runs skopeo and returns whether it succeeded, for the runs that must fail.
async fn skopeo_succeeds(args: Vec<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("skopeo")
            .arg("--insecure-policy")
            .args(&args)
            .output()
            .expect("skopeo runs")
            .status
            .success()
    })
    .await
    .expect("skopeo task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_over_tls_with_htpasswd() {
    if !has_peer("skopeo", "skopeo_over_tls_with_htpasswd") || !has_peer("openssl", "skopeo_over_tls_with_htpasswd") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // The guide's command, with the address as a subject alternative name (Go clients
    // check names there only).
    self_signed(
        dir,
        "domain",
        "rsa:4096",
        "/CN=127.0.0.1",
        &["-sha256", "-days", "365", "-addext", "subjectAltName=IP:127.0.0.1"],
    );
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("domain.crt"), certs.join("ca.crt")).unwrap();
    let hash = bcrypt::hash("wharf-pass", 5).unwrap();
    std::fs::write(dir.join("htpasswd"), format!("pusher:{hash}\n")).unwrap();

    let http = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        dir.join("domain.crt").display(),
        dir.join("domain.key").display()
    );
    let top = format!("auth:\n  htpasswd:\n    realm: Wharf\n    path: {}\n", dir.join("htpasswd").display());
    let running = start(&dir.join("root"), &http, &top).await;
    let layout = dir.join("layout");
    let images = Images::standard();
    images.write_layout(&layout);
    let cert_dir = certs.display().to_string();
    let secure = [format!("--dest-cert-dir={cert_dir}"), "--dest-creds=pusher:wharf-pass".to_owned()];
    copy_tags(
        &images,
        &secure,
        |tag| format!("oci:{}:{tag}", layout.display()),
        |tag| url(&running, "secure/app", tag),
    )
    .await;
    // Without credentials, with wrong ones, or without trusting the certificate: refused.
    let out = dir.join("pulled");
    let pull = |extra: Vec<String>| {
        let mut args = vec!["copy".to_owned(), "--all".to_owned(), "--preserve-digests".to_owned()];
        args.extend(extra);
        args.push(url(&running, "secure/app", "image"));
        args.push(format!("oci:{}:image", dir.join("refused").display()));
        args
    };
    assert!(!skopeo_succeeds(pull(vec![format!("--src-cert-dir={cert_dir}")])).await, "anonymous pull succeeded");
    assert!(
        !skopeo_succeeds(pull(vec![format!("--src-cert-dir={cert_dir}"), "--src-creds=pusher:wrong".into()])).await,
        "pull with a wrong password succeeded"
    );
    assert!(
        !skopeo_succeeds(pull(vec!["--src-creds=pusher:wharf-pass".into()])).await,
        "untrusted certificate accepted"
    );
    let secure = [format!("--src-cert-dir={cert_dir}"), "--src-creds=pusher:wharf-pass".to_owned()];
    copy_tags(&images, &secure, |tag| url(&running, "secure/app", tag), |tag| format!("oci:{}:{tag}", out.display()))
        .await;
    running.stop().await;
    images.check_layout(&out);
}

/// The PyPI `oras` SDK, in the virtualenv the test script makes.
fn oras_python() -> Option<std::path::PathBuf> {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/peers-venv/bin/python");
    let found = python.exists()
        && std::process::Command::new(&python)
            .args(["-c", "import oras.client"])
            .output()
            .is_ok_and(|o| o.status.success());
    if found {
        return Some(python);
    }
    let _ = wharf_testing::skip(
        "oras_push_pull_and_referrers",
        "the PyPI oras SDK is not in target/peers-venv (scripts/test installs it)",
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oras_push_pull_and_referrers() {
    let Some(python) = oras_python() else { return };
    let work = tempfile::tempdir().unwrap();
    let running = start(&work.path().join("root"), "", "").await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/oras_round_trip.py");
    let (host, dir) = (running.address.to_string(), work.path().to_path_buf());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python).arg(script).arg(host).arg(dir).output().expect("python runs")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "oras script failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the script prints JSON");
    assert_eq!(seen["pulled"], serde_json::json!(["hello from oras\n"]));
    assert_eq!(seen["pulled_referrer"], serde_json::json!(["a signature of the artifact\n"]));
    assert_eq!(seen["referrer_subject"], seen["artifact"]);
    assert_eq!(seen["referrers"], serde_json::json!([seen["referrer"].clone()]));
    // The server stored exactly the bytes it serves.
    let repository = running.registry.repository(&"oras/demo".parse().unwrap());
    let stored = repository.get_manifest(&ManifestReference::Tag("v1".parse().unwrap())).await.unwrap();
    assert_eq!(stored.digest.to_string(), seen["artifact"].as_str().unwrap());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_push_and_pull() {
    if !has_peer("podman", "podman_push_and_pull") || !has_peer("skopeo", "podman_push_and_pull") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    let running = start(&dir.join("root"), "", "").await;
    let images = Images::runnable("v1");
    images.write_layout(&dir.join("layout"));
    let remote = format!("{}/podman/app:v1", running.address);
    let (id, pulled_id) = {
        let (dir, remote) = (dir.clone(), remote.clone());
        tokio::task::spawn_blocking(move || {
            // Into podman's storage with skopeo: `podman pull oci:` names the image after its
            // folder, which a temporary folder's name does not suit.
            let layout = format!("oci:{}:v1", dir.join("layout").display());
            let storage = format!(
                "containers-storage:[vfs@{}+{}]localhost/app:v1",
                dir.join("storage").display(),
                dir.join("run").display()
            );
            skopeo(&["copy", &layout, &storage]);
            let id = peers::podman(&dir, &["images", "--quiet", "--no-trunc", "localhost/app:v1"]);
            let id = id.trim_start_matches("sha256:").to_owned();
            peers::podman(&dir, &["push", "--quiet", "--tls-verify=false", &id, &format!("docker://{remote}")]);
            peers::podman(&dir, &["rmi", "--force", &id]);
            let pulled_id =
                peers::podman(&dir, &["pull", "--quiet", "--tls-verify=false", &format!("docker://{remote}")]);
            let pulled_id = pulled_id.trim_start_matches("sha256:").to_owned();
            (id, pulled_id)
        })
        .await
        .unwrap()
    };
    // The image came back as itself: its id is its config's digest.
    assert_eq!(pulled_id, id);
    let repository = running.registry.repository(&"podman/app".parse().unwrap());
    let stored = repository.get_manifest(&ManifestReference::Tag("v1".parse().unwrap())).await.unwrap();
    let manifest = wharf_oci::Manifest::parse(stored.content, None).unwrap();
    let config = manifest.references().next().unwrap().digest.clone();
    assert_eq!(config.hex(), id, "the stored manifest's config is not the image podman pushed");
    running.stop().await;
}

/// `openssl req -x509` with a fresh key: `<name>.key` and `<name>.crt` in `dir`.
fn self_signed(dir: &std::path::Path, name: &str, key_type: &str, subject: &str, extra: &[&str]) {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    let mut args = vec!["req", "-newkey", key_type, "-nodes", "-keyout", &key, "-x509", "-out", &crt, "-subj", subject];
    args.extend_from_slice(extra);
    peers::openssl(dir, &args);
}

/// `http.tls.clientcas` and `minimumtls`: only clients with a certificate from the CA get
/// in, and only over TLS 1.3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_minimum_tls() {
    if !has_peer("skopeo", "client_certificates_and_minimum_tls")
        || !has_peer("openssl", "client_certificates_and_minimum_tls")
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    self_signed(dir, "domain", "rsa:2048", "/CN=127.0.0.1", &["-days", "2", "-addext", "subjectAltName=IP:127.0.0.1"]);
    self_signed(dir, "clients-ca", "rsa:2048", "/CN=wharf test client CA", &["-days", "2"]);
    peers::openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=ci-robot",
        ],
    );
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    peers::openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "clients-ca.crt",
            "-CAkey",
            "clients-ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "client.cert",
            "-extfile",
            "client.ext",
        ],
    );
    // Two certificate folders for skopeo: one trusting the server only, one with the client's
    // certificate too.
    let (anonymous, identified) = (dir.join("anonymous"), dir.join("identified"));
    for folder in [&anonymous, &identified] {
        std::fs::create_dir_all(folder).unwrap();
        std::fs::copy(dir.join("domain.crt"), folder.join("server.crt")).unwrap();
    }
    std::fs::copy(dir.join("client.cert"), identified.join("client.cert")).unwrap();
    std::fs::copy(dir.join("client.key"), identified.join("client.key")).unwrap();

    let http = format!(
        "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n    minimumtls: tls1.3\n",
        dir.join("domain.crt").display(),
        dir.join("domain.key").display(),
        dir.join("clients-ca.crt").display()
    );
    let running = start(&dir.join("root"), &http, "").await;
    let images = Images::runnable("v1");
    images.write_layout(&dir.join("layout"));
    let push = |cert_dir: &std::path::Path| {
        vec![
            "copy".to_owned(),
            format!("--dest-cert-dir={}", cert_dir.display()),
            format!("oci:{}:v1", dir.join("layout").display()),
            url(&running, "mtls/app", "v1"),
        ]
    };
    assert!(!skopeo_succeeds(push(&anonymous)).await, "a client without a certificate got in");
    skopeo_async(push(&identified)).await;
    let repository = running.registry.repository(&"mtls/app".parse().unwrap());
    assert!(repository.get_manifest(&ManifestReference::Tag("v1".parse().unwrap())).await.is_ok());

    // A TLS 1.2 client is turned away at the handshake.
    let address = running.address.to_string();
    let (cert, key) = (dir.join("client.cert"), dir.join("client.key"));
    let tls12 = tokio::task::spawn_blocking(move || {
        std::process::Command::new("openssl")
            .args(["s_client", "-tls1_2", "-connect", &address, "-cert"])
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl runs")
    })
    .await
    .unwrap();
    assert!(!tls12.status.success(), "a TLS 1.2 handshake succeeded: {}", String::from_utf8_lossy(&tls12.stdout));
    running.stop().await;
}

/// The README's nginx block, as written, in front of a server answering as it does by
/// default: nginx (Debian's) terminates TLS on another port and sends `Host` without it;
/// skopeo pushes through it, layers over nginx's default body limit included, and pulls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_through_nginx_terminating_tls() {
    let test = "skopeo_through_nginx_terminating_tls";
    if !has_peer("skopeo", test) || !has_peer("openssl", test) || !has_peer("nginx", test) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    self_signed(
        dir,
        "registry",
        "rsa:2048",
        "/CN=127.0.0.1",
        &["-days", "1", "-addext", "subjectAltName=IP:127.0.0.1"],
    );
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("registry.crt"), certs.join("ca.crt")).unwrap();
    let running = start(&dir.join("root"), "", "").await;

    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let block = readme.split("```nginx\n").nth(1).and_then(|rest| rest.split("```").next()).expect("an nginx block");
    let port = peers::free_port();
    let block = [
        ("listen 8443 ssl;", format!("listen 127.0.0.1:{port} ssl;")),
        ("http://127.0.0.1:5000", format!("http://{}", running.address)),
        ("/etc/nginx/certs/registry.crt", dir.join("registry.crt").display().to_string()),
        ("/etc/nginx/certs/registry.key", dir.join("registry.key").display().to_string()),
    ]
    .iter()
    .fold(block.to_owned(), |block, (from, to)| {
        assert!(block.contains(from), "the README's block has {from}");
        block.replace(from, to)
    });
    // One process as the test's user, everything it writes in the test's folder.
    let _nginx = peers::Nginx::start(&dir.join("nginx"), port, &block);

    let mut images = Images::standard();
    let large = Images::large(3 << 20);
    images.blobs.extend(large.blobs);
    images.tags.extend(large.tags);
    let layout = dir.join("layout");
    images.write_layout(&layout);
    let proxied = |tag: &str| format!("docker://127.0.0.1:{port}/team/proxied:{tag}");
    let cert_dir = certs.display().to_string();
    copy_tags(
        &images,
        &[format!("--dest-cert-dir={cert_dir}")],
        |tag| format!("oci:{}:{tag}", layout.display()),
        proxied,
    )
    .await;
    let out = dir.join("pulled");
    copy_tags(&images, &[format!("--src-cert-dir={cert_dir}")], proxied, |tag| format!("oci:{}:{tag}", out.display()))
        .await;
    running.stop().await;
    images.check_layout(&out);
}
