//! Interoperation with CNCF Distribution 2.8.2 (Debian's `docker-registry`) through skopeo,
//! both ways: what Distribution stored opens in Wharf, and what Wharf stored Distribution
//! serves, byte for byte.
#![allow(clippy::print_stderr, reason = "a skipped test says so, and why")]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{TryStreamExt, stream};
use serde_json::{Value, json};
use wharf_oci::{Digest, Manifest, media_type};
use wharf_registry::{ManifestReference, Registry, RegistryOptions};
use wharf_storage::FilesystemDriver;

/// Whether `program` is installed; says why the test is skipped when not, and fails under
/// `WHARF_REQUIRE_PEERS=1`.
fn has_peer(program: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("WHARF_REQUIRE_PEERS").as_deref() != Ok("1"),
            "{test}: WHARF_REQUIRE_PEERS=1 but {program} is not installed (scripts/test installs it)"
        );
        let _ = writeln!(std::io::stderr(), "skipped {test}: needs {program} (scripts/test installs it)");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `docker-registry serve` over a root folder, on a free 127.0.0.1 port; stopped on drop.
struct Distribution {
    child: Child,
    port: u16,
    _config: tempfile::TempDir,
}

impl Distribution {
    fn serve(root: &Path) -> Distribution {
        let config = tempfile::tempdir().unwrap();
        let port = free_port();
        let file = config.path().join("config.yml");
        std::fs::write(
            &file,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                root.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&file)
            // Its S3 driver panics when this is set; unset it for any driver.
            .env_remove("AWS_CA_BUNDLE")
            // Its log (every 404 a client's probe gets is an "error" line) stays in a file.
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(config.path().join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry starts");
        let distribution = Distribution { child, port, _config: config };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen on {port} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        distribution
    }

    fn url(&self, repository: &str, tag: &str) -> String {
        format!("docker://127.0.0.1:{}/{repository}:{tag}", self.port)
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skopeo(args: &[&str]) {
    let output = Command::new("skopeo").arg("--insecure-policy").args(args).output().expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Deterministic bytes for test content.
fn content(seed: &str, len: usize) -> Vec<u8> {
    let seed = Digest::sha256(seed.as_bytes()).hex().bytes().fold(7u64, |s, b| s.wrapping_mul(31) ^ u64::from(b));
    wharf_storage::testsuite::test_data(seed, len).to_vec()
}

/// What a set of images is made of: every blob by digest, and the manifest of each tag.
#[derive(Default)]
struct Images {
    blobs: BTreeMap<Digest, Vec<u8>>,
    tags: BTreeMap<String, Vec<u8>>,
}

impl Images {
    fn add_blob(&mut self, data: Vec<u8>) -> (Digest, usize) {
        let digest = Digest::sha256(&data);
        let size = data.len();
        self.blobs.insert(digest.clone(), data);
        (digest, size)
    }

    fn image(&mut self, seed: &str, layers: usize, platform: &str) -> (Digest, usize) {
        let (architecture, os) = platform.split_once('/').unwrap();
        let layers: Vec<(Digest, usize)> =
            (0..layers).map(|i| self.add_blob(content(&format!("{seed}-layer-{i}"), 3000 + i * 1000))).collect();
        let config = json!({
            "architecture": architecture, "os": os,
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>()},
            "config": {}
        });
        let (config_digest, config_size) = self.add_blob(serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_IMAGE_MANIFEST,
            "config": {"mediaType": media_type::OCI_IMAGE_CONFIG, "digest": config_digest.to_string(), "size": config_size},
            "layers": layers.iter().map(|(d, s)| json!({"mediaType": media_type::OCI_LAYER_TAR, "digest": d.to_string(), "size": s})).collect::<Vec<_>>(),
            "annotations": {"org.example.seed": seed},
        });
        self.add_blob(serde_json::to_vec_pretty(&manifest).unwrap())
    }

    /// A multi-layer image, a two-platform index and an artifact referring to the image.
    fn standard() -> Images {
        let mut images = Images::default();
        let (image, image_size) = images.image("multi-layer", 3, "amd64/linux");
        images.tags.insert("image".into(), images.blobs[&image].clone());
        let children: Vec<Value> = ["amd64/linux", "arm64/linux"]
            .iter()
            .map(|platform| {
                let (digest, size) = images.image(&format!("index-{platform}"), 1, platform);
                let (architecture, os) = platform.split_once('/').unwrap();
                json!({"mediaType": media_type::OCI_IMAGE_MANIFEST, "digest": digest.to_string(), "size": size,
                       "platform": {"architecture": architecture, "os": os}})
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": media_type::OCI_IMAGE_INDEX, "manifests": children});
        let (index_digest, _) = images.add_blob(serde_json::to_vec(&index).unwrap());
        images.tags.insert("index".into(), images.blobs[&index_digest].clone());
        let (empty, _) = images.add_blob(b"{}".to_vec());
        let (sbom, sbom_size) = images.add_blob(b"{\"spdxVersion\":\"SPDX-2.3\"}".to_vec());
        let artifact = json!({
            "schemaVersion": 2, "mediaType": media_type::OCI_IMAGE_MANIFEST,
            "artifactType": "application/spdx+json",
            "config": {"mediaType": media_type::OCI_EMPTY, "digest": empty.to_string(), "size": 2},
            "layers": [{"mediaType": "application/spdx+json", "digest": sbom.to_string(), "size": sbom_size}],
            "subject": {"mediaType": media_type::OCI_IMAGE_MANIFEST, "digest": image.to_string(), "size": image_size},
        });
        let (artifact_digest, _) = images.add_blob(serde_json::to_vec(&artifact).unwrap());
        images.tags.insert("sbom".into(), images.blobs[&artifact_digest].clone());
        images
    }

    /// Writes an OCI image layout folder holding every tag.
    fn write_layout(&self, dir: &Path) {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        for (digest, data) in &self.blobs {
            std::fs::write(dir.join("blobs/sha256").join(digest.hex()), data).unwrap();
        }
        let manifests: Vec<Value> = self
            .tags
            .iter()
            .map(|(tag, raw)| {
                let manifest = Manifest::parse(raw.clone(), None).unwrap();
                json!({"mediaType": manifest.media_type(), "digest": manifest.digest().to_string(), "size": raw.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}})
            })
            .collect();
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }
}

fn registry_over(root: &Path) -> Registry {
    Registry::new(Arc::new(FilesystemDriver::new(root).unwrap()), RegistryOptions::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_what_distribution_stored() {
    if !has_peer("docker-registry", "reads_what_distribution_stored")
        || !has_peer("skopeo", "reads_what_distribution_stored")
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (layout, root) = (work.path().join("layout"), work.path().join("root"));
    let images = Images::standard();
    images.write_layout(&layout);
    {
        let distribution = Distribution::serve(&root);
        for tag in images.tags.keys() {
            let source = format!("oci:{}:{tag}", layout.display());
            skopeo(&[
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
                &source,
                &distribution.url("team/app", tag),
            ]);
        }
    }

    let registry = registry_over(&root);
    let repository = registry.repository(&"team/app".parse().unwrap());
    let mut tags = repository.tags(None, None).await.unwrap();
    tags.sort();
    assert_eq!(tags, images.tags.keys().cloned().collect::<Vec<_>>());
    for (tag, raw) in &images.tags {
        let stored = repository.get_manifest(&ManifestReference::Tag(tag.clone())).await.unwrap();
        assert_eq!(stored.content, raw[..], "manifest of {tag} differs");
        assert_eq!(stored.digest, Digest::sha256(raw));
        let manifest = Manifest::parse(stored.content.clone(), None).unwrap();
        let mut pending: Vec<Manifest> = vec![manifest];
        while let Some(manifest) = pending.pop() {
            for reference in manifest.references().filter(|d| Some(*d) != manifest.subject()) {
                if manifest.kind().is_index() {
                    let child =
                        repository.get_manifest(&ManifestReference::Digest(reference.digest.clone())).await.unwrap();
                    assert_eq!(child.content, images.blobs[&reference.digest][..]);
                    pending.push(Manifest::parse(child.content, None).unwrap());
                    continue;
                }
                let (info, stream) = repository.read_blob(&reference.digest, 0).await.unwrap();
                let read: Vec<Bytes> = stream.try_collect().await.unwrap();
                let read = read.concat();
                assert_eq!(info.size, reference.size);
                assert_eq!(Digest::sha256(&read), reference.digest, "blob of {tag} does not match its digest");
                assert_eq!(read, images.blobs[&reference.digest]);
            }
        }
    }
    assert!(registry.catalog(None, None).await.unwrap().iter().any(|n| n.as_str() == "team/app"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_serves_what_wharf_stored() {
    if !has_peer("docker-registry", "distribution_serves_what_wharf_stored")
        || !has_peer("skopeo", "distribution_serves_what_wharf_stored")
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let images = Images::standard();
    let registry = registry_over(&root);
    let repository = registry.repository(&"team/app".parse().unwrap());
    // Blobs first, in two chunks each (a resumed upload), then manifests children first.
    for (digest, data) in &images.blobs {
        let upload = repository.start_upload().await.unwrap();
        let half = data.len() / 2;
        let first = stream::iter(vec![Ok(Bytes::copy_from_slice(&data[..half]))]);
        repository.append_upload(&upload.id, Some(0), first).await.unwrap();
        let rest = stream::iter(vec![Ok(Bytes::copy_from_slice(&data[half..]))]);
        repository.finish_upload(&upload.id, digest, Some(rest)).await.unwrap();
    }
    let index = Manifest::parse(images.tags["index"].clone(), None).unwrap();
    for child in index.manifests() {
        let raw = Bytes::from(images.blobs[&child.digest].clone());
        repository.put_manifest(&ManifestReference::Digest(child.digest.clone()), raw, None).await.unwrap();
    }
    for (tag, raw) in &images.tags {
        repository.put_manifest(&ManifestReference::Tag(tag.clone()), Bytes::from(raw.clone()), None).await.unwrap();
    }

    let distribution = Distribution::serve(&root);
    let out = work.path().join("pulled");
    for tag in images.tags.keys() {
        let destination = format!("oci:{}:{tag}", out.display());
        skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            &distribution.url("team/app", tag),
            &destination,
        ]);
    }
    drop(distribution);
    // Every blob and manifest came back byte for byte.
    let pulled_index: Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    for entry in pulled_index["manifests"].as_array().unwrap() {
        let tag = entry["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap();
        let digest: Digest = entry["digest"].as_str().unwrap().parse().unwrap();
        assert_eq!(digest, Digest::sha256(&images.tags[tag]), "{tag} came back as another manifest");
    }
    let pulled: Vec<PathBuf> =
        std::fs::read_dir(out.join("blobs/sha256")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(pulled.len(), images.blobs.len());
    for path in pulled {
        let digest: Digest = format!("sha256:{}", path.file_name().unwrap().to_str().unwrap()).parse().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), images.blobs[&digest], "{digest} differs");
    }
}
