//! Test images: a multi-layer image, a two-platform index and an artifact with a subject,
//! written as an OCI image layout for skopeo, and checked byte for byte when they come back.
//! Shared by the tests of several crates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use wharf_oci::{Digest, Manifest, media_type};

/// Deterministic bytes for test content.
pub fn content(seed: &str, len: usize) -> Vec<u8> {
    let seed = Digest::sha256(seed.as_bytes()).hex().bytes().fold(7u64, |s, b| s.wrapping_mul(31) ^ u64::from(b));
    wharf_storage::testsuite::test_data(seed, len).to_vec()
}

/// What a set of images is made of: every blob by digest, and the manifest of each tag.
#[derive(Default)]
pub struct Images {
    /// Every blob (configs, layers, manifests), by digest.
    pub blobs: BTreeMap<Digest, Vec<u8>>,
    /// The manifest of each tag.
    pub tags: BTreeMap<String, Vec<u8>>,
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
        let config = json!({"architecture": architecture, "os": os, "config": {}});
        self.add_image(config, &layers, json!({"annotations": {"org.example.seed": seed}}))
    }

    /// An image manifest over `layers` (tar layers already added) and `config` (given its
    /// `rootfs`), with `extra` fields; both blobs added.
    fn add_image(
        &mut self,
        mut config: serde_json::Value,
        layers: &[(Digest, usize)],
        extra: serde_json::Value,
    ) -> (Digest, usize) {
        config["rootfs"] =
            json!({"type": "layers", "diff_ids": layers.iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>()});
        let (config_digest, config_size) = self.add_blob(serde_json::to_vec(&config).unwrap());
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_IMAGE_MANIFEST,
            "config": {"mediaType": media_type::OCI_IMAGE_CONFIG, "digest": config_digest.to_string(), "size": config_size},
            "layers": layers.iter().map(|(d, s)| json!({"mediaType": media_type::OCI_LAYER_TAR, "digest": d.to_string(), "size": s})).collect::<Vec<_>>(),
        });
        if let serde_json::Value::Object(extra) = extra {
            for (key, value) in extra {
                manifest[key] = value;
            }
        }
        self.add_blob(serde_json::to_vec_pretty(&manifest).unwrap())
    }

    /// A multi-layer image, a two-platform index and an artifact referring to the image.
    pub fn standard() -> Images {
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

    /// One image, tagged `large`, with a layer of `size` bytes.
    pub fn large(size: usize) -> Images {
        let mut images = Images::default();
        let layer = images.add_blob(content("large-layer", size));
        let config = json!({"architecture": "amd64", "os": "linux", "config": {}});
        let (image, _) = images.add_image(config, &[layer], json!({}));
        images.tags.insert("large".into(), images.blobs[&image].clone());
        images
    }

    /// Writes an OCI image layout folder holding every tag.
    pub fn write_layout(&self, dir: &Path) {
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

    /// Checks that an OCI layout pulled from a registry holds every tag as the same manifest,
    /// and every blob byte for byte.
    pub fn check_layout(&self, out: &Path) {
        let pulled_index: Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        for entry in pulled_index["manifests"].as_array().unwrap() {
            let tag = entry["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap();
            let digest: Digest = entry["digest"].as_str().unwrap().parse().unwrap();
            assert_eq!(digest, Digest::sha256(&self.tags[tag]), "{tag} came back as another manifest");
        }
        let pulled: Vec<PathBuf> =
            std::fs::read_dir(out.join("blobs/sha256")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(pulled.len(), self.blobs.len());
        for path in pulled {
            let digest: Digest = format!("sha256:{}", path.file_name().unwrap().to_str().unwrap()).parse().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), self.blobs[&digest], "{digest} differs");
        }
    }
}

/// A tar archive (ustar) holding one file, as a real image layer needs.
pub fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let fields: [(usize, String); 5] = [
        (100, "0000644\0".to_owned()),
        (108, "0000000\0".to_owned()),
        (116, "0000000\0".to_owned()),
        (124, format!("{:011o}\0", content.len())),
        (136, "00000000000\0".to_owned()),
    ];
    for (offset, text) in fields {
        header[offset..offset + text.len()].copy_from_slice(text.as_bytes());
    }
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is of the header with its own field read as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut archive = header.to_vec();
    archive.extend_from_slice(content);
    archive.resize(archive.len().div_ceil(512) * 512, 0);
    archive.extend_from_slice(&[0u8; 1024]);
    archive
}

impl Images {
    /// An image a container engine can unpack: tar layers, and a config naming them.
    pub fn runnable(tag: &str) -> Images {
        let mut images = Images::default();
        let layers: Vec<(Digest, usize)> = (0..2)
            .map(|i| images.add_blob(tar_with_file(&format!("file{i}.txt"), format!("{tag} layer {i}\n").as_bytes())))
            .collect();
        let config = json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/file0.txt"]}});
        let (manifest_digest, _) = images.add_image(config, &layers, json!({}));
        images.tags.insert(tag.to_owned(), images.blobs[&manifest_digest].clone());
        images
    }
}

/// Blob `data`, stored in `repository` through the embedded API (no request, no event).
pub async fn store_blob(repository: &wharf_registry::Repository, data: Vec<u8>) -> (Digest, usize) {
    let digest = Digest::sha256(&data);
    let size = data.len();
    let chunk: wharf_storage::Result<bytes::Bytes> = Ok(bytes::Bytes::from(data));
    repository.put_blob(&digest, futures::stream::iter([chunk])).await.expect("a blob stored");
    (digest, size)
}

/// An image of two layers of `size` bytes each made from `seed`, stored in `repository`
/// through the embedded API, tagged `tag` when given: its manifest's digest and size.
pub async fn store_image(
    repository: &wharf_registry::Repository,
    seed: &str,
    size: usize,
    tag: Option<&str>,
) -> (Digest, usize) {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
    let config = store_blob(repository, config.into_bytes()).await;
    let one = store_blob(repository, content(&format!("{seed} one"), size)).await;
    let two = store_blob(repository, content(&format!("{seed} two"), size)).await;
    let raw = crate::http::image_manifest(
        (config.0.as_str(), config.1),
        &[(one.0.as_str(), one.1), (two.0.as_str(), two.1)],
        None,
    );
    let reference = match tag {
        Some(tag) => tag.parse().expect("a tag"),
        None => wharf_registry::ManifestReference::Digest(Digest::sha256(&raw)),
    };
    let size = raw.len();
    (repository.put_manifest(&reference, bytes::Bytes::from(raw), None).await.expect("an image stored"), size)
}

/// A cosign-style signature of `subject` whose payload is `payload`, stored by digest in
/// `repository` through the embedded API: its digest.
pub async fn store_signature(
    repository: &wharf_registry::Repository,
    subject: &(Digest, usize),
    payload: &str,
) -> Digest {
    let (empty, _) = store_blob(repository, b"{}".to_vec()).await;
    let (payload, payload_size) = store_blob(repository, payload.as_bytes().to_vec()).await;
    let mut signature: Value = serde_json::from_slice(&crate::http::image_manifest(
        (empty.as_str(), 2),
        &[(payload.as_str(), payload_size)],
        Some((subject.0.as_str(), subject.1)),
    ))
    .expect("json");
    signature["artifactType"] = "application/vnd.dev.cosign.artifact.sig.v1+json".into();
    signature["config"]["mediaType"] = media_type::OCI_EMPTY.into();
    let raw = serde_json::to_vec(&signature).expect("json");
    let reference = wharf_registry::ManifestReference::Digest(Digest::sha256(&raw));
    repository.put_manifest(&reference, bytes::Bytes::from(raw), None).await.expect("a signature stored")
}

/// An index of `images` (each a manifest's digest and size, with its `os/architecture`),
/// stored under `tag` through the embedded API: its digest.
pub async fn store_index(
    repository: &wharf_registry::Repository,
    images: &[(&(Digest, usize), &str)],
    tag: &str,
) -> Digest {
    let manifests: Vec<Value> = images
        .iter()
        .map(|((digest, size), platform)| {
            let (os, architecture) = platform.split_once('/').expect("os/architecture");
            json!({"mediaType": media_type::OCI_IMAGE_MANIFEST, "digest": digest, "size": size, "platform": {"os": os, "architecture": architecture}})
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": media_type::OCI_IMAGE_INDEX, "manifests": manifests});
    let raw = serde_json::to_vec(&index).expect("json");
    repository.put_manifest(&tag.parse().expect("a tag"), bytes::Bytes::from(raw), None).await.expect("an index stored")
}
