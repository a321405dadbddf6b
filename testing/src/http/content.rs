//! Every kind of content the OCI conformance suite pushes (plain and uncompressed images, a
//! manifest near the 4 MiB limit, indexes nested and empty, artifacts, subjects present and
//! missing, `data` fields, non-distributable layers, unknown fields, sha512 throughout), each
//! taken through the suite's steps: push, list, HEAD, pull, referrers, delete.

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Target, location, sha256, sha512};

const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const LAYER_NONDISTRIBUTABLE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
const EXAMPLE_1: &str = "application/vnd.example.oci.conformance.one";
const EXAMPLE_2: &str = "application/vnd.example.oci.conformance.two";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn digest(self, data: &[u8]) -> String {
        match self {
            Algorithm::Sha256 => sha256(data),
            Algorithm::Sha512 => sha512(data),
        }
    }
}

/// A manifest of a data set.
struct ManifestToPush {
    media_type: String,
    bytes: Vec<u8>,
    /// Pushed by digest when `None`.
    tag: Option<String>,
    /// The digest of its subject.
    subject: Option<String>,
}

/// One data set: blobs to push, then manifests in order (children before parents).
struct Content {
    algorithm: Algorithm,
    blobs: Vec<(String, Vec<u8>)>,
    manifests: Vec<ManifestToPush>,
    seed: u64,
}

impl Content {
    fn new(algorithm: Algorithm, seed: u64) -> Content {
        Content { algorithm, blobs: Vec::new(), manifests: Vec::new(), seed }
    }

    /// Bytes that differ from every other call's.
    fn random(&mut self, len: usize) -> Vec<u8> {
        self.seed += 1;
        let mut state = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// A blob pushed with the data set; its descriptor.
    fn blob(&mut self, media_type: &str, data: Vec<u8>) -> Value {
        let digest = self.algorithm.digest(&data);
        let descriptor = json!({"mediaType": media_type, "digest": digest, "size": data.len()});
        self.blobs.push((digest, data));
        descriptor
    }

    /// A manifest pushed with the data set; its descriptor.
    fn manifest(&mut self, mut body: Value, tag: Option<&str>) -> Value {
        let media_type = body["mediaType"].as_str().expect("mediaType").to_owned();
        let subject = body.get("subject").map(|s| s["digest"].as_str().expect("subject digest").to_owned());
        if subject.is_none() {
            body.as_object_mut().expect("object").remove("subject");
        }
        let bytes = serde_json::to_vec_pretty(&body).expect("json");
        let digest = self.algorithm.digest(&bytes);
        let mut descriptor = json!({"mediaType": media_type, "digest": digest, "size": bytes.len()});
        if let Some(artifact_type) = body.get("artifactType") {
            descriptor["artifactType"] = artifact_type.clone();
        }
        self.manifests.push(ManifestToPush { media_type, bytes, tag: tag.map(str::to_owned), subject });
        descriptor
    }

    /// An image: a config for `platform` and `layers` random layers of `layer_type`.
    fn image(&mut self, layers: usize, layer_type: &str, extra: Value, tag: Option<&str>) -> Value {
        let layers: Vec<Value> = (0..layers)
            .map(|_| {
                let data = self.random(1500);
                self.blob(layer_type, data)
            })
            .collect();
        let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}});
        let config = self.blob(CONFIG, serde_json::to_vec(&config).expect("json"));
        let mut body = json!({"schemaVersion": 2, "mediaType": IMAGE, "config": config, "layers": layers});
        merge(&mut body, extra);
        self.manifest(body, tag)
    }

    /// An artifact: the empty config, and one layer of `layer_type`.
    fn artifact(&mut self, artifact_type: &str, layer_type: &str, extra: Value, tag: Option<&str>) -> Value {
        let config = self.blob(EMPTY_JSON, b"{}".to_vec());
        let data = self.random(300);
        let layer = self.blob(layer_type, data);
        let mut body = json!({
            "schemaVersion": 2, "mediaType": IMAGE, "artifactType": artifact_type, "config": config, "layers": [layer],
        });
        merge(&mut body, extra);
        self.manifest(body, tag)
    }

    fn index(&mut self, manifests: Vec<Value>, extra: Value, tag: Option<&str>) -> Value {
        let mut body = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests});
        merge(&mut body, extra);
        self.manifest(body, tag)
    }

    /// An index of two images, for amd64 and arm64.
    fn platform_index(&mut self, extra: Value, tag: Option<&str>) -> Value {
        let children = ["amd64", "arm64"]
            .into_iter()
            .map(|architecture| {
                let mut child = self.image(2, LAYER_GZIP, json!({}), None);
                child["platform"] = json!({"os": "linux", "architecture": architecture});
                child
            })
            .collect();
        self.index(children, extra, tag)
    }
}

fn merge(body: &mut Value, extra: Value) {
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            body[key] = value;
        }
    }
}

/// The data sets, named as the suite names them.
fn data_sets() -> Vec<(&'static str, Content)> {
    let mut sets = Vec::new();
    let mut add = |name: &'static str, algorithm: Algorithm, build: &dyn Fn(&mut Content)| {
        let mut content = Content::new(algorithm, sets.len() as u64 * 1000);
        build(&mut content);
        sets.push((name, content));
    };
    add("image", Algorithm::Sha256, &|c| {
        c.image(2, LAYER_GZIP, json!({}), Some("image"));
    });
    add("image-uncompressed", Algorithm::Sha256, &|c| {
        c.image(2, LAYER_TAR, json!({}), Some("image-uncompressed"));
    });
    add("large-manifest", Algorithm::Sha256, &|c| {
        let annotations: serde_json::Map<String, Value> =
            (0..390).map(|i| (format!("large-annotation-{i}"), json!("A".repeat(10_000)))).collect();
        c.image(1, LAYER_GZIP, json!({"annotations": annotations}), Some("large-manifest"));
    });
    add("index", Algorithm::Sha256, &|c| {
        c.platform_index(json!({}), Some("index"));
    });
    add("nested-index", Algorithm::Sha256, &|c| {
        let first = c.platform_index(json!({}), None);
        let second = c.platform_index(json!({}), None);
        c.index(vec![first, second], json!({}), Some("index-of-index"));
    });
    add("empty-index", Algorithm::Sha256, &|c| {
        c.index(Vec::new(), json!({}), Some("empty-index"));
    });
    add("artifact", Algorithm::Sha256, &|c| {
        c.artifact(EXAMPLE_1, EXAMPLE_1, json!({}), Some("artifact"));
    });
    add("artifact-index", Algorithm::Sha256, &|c| {
        let children =
            vec![c.artifact(EXAMPLE_1, EXAMPLE_1, json!({}), None), c.artifact(EXAMPLE_1, EXAMPLE_1, json!({}), None)];
        c.index(children, json!({"artifactType": EXAMPLE_1}), Some("artifact-index"));
    });
    add("artifact-without-layers", Algorithm::Sha256, &|c| {
        let config = c.blob(EMPTY_JSON, b"{}".to_vec());
        let body = json!({
            "schemaVersion": 2, "mediaType": IMAGE, "artifactType": EXAMPLE_1, "config": config, "layers": [config],
        });
        c.manifest(body, Some("artifact-without-layers"));
    });
    add("artifacts-with-subject", Algorithm::Sha256, &|c| {
        let subject = c.image(2, LAYER_GZIP, json!({}), Some("image"));
        c.image(1, LAYER_GZIP, json!({"subject": subject}), None);
        let note = json!({"org.opencontainers.conformance": "hello conformance test"});
        c.artifact(EXAMPLE_1, EXAMPLE_1, json!({"subject": subject, "annotations": note}), Some("tagged-artifact1"));
        c.artifact(EXAMPLE_2, "application/octet-stream", json!({"subject": subject}), Some("tagged-artifact2"));
    });
    add("index-with-subject", Algorithm::Sha256, &|c| {
        let subject = c.platform_index(json!({}), Some("index"));
        c.platform_index(json!({"subject": subject, "artifactType": EXAMPLE_1}), Some("tagged-artifact"));
    });
    add("missing-subject", Algorithm::Sha256, &|c| {
        let subject = json!({"mediaType": IMAGE, "size": 123, "digest": sha256(b"missing content")});
        c.artifact(EXAMPLE_1, EXAMPLE_1, json!({"subject": subject}), Some("tagged-artifact"));
    });
    add("data-field", Algorithm::Sha256, &|c| {
        use base64::Engine as _;
        let data = c.random(200);
        let mut layer = c.blob(LAYER_GZIP, data.clone());
        layer["data"] = json!(base64::engine::general_purpose::STANDARD.encode(&data));
        let config = c.blob(CONFIG, br#"{"architecture":"amd64","os":"linux"}"#.to_vec());
        let body = json!({"schemaVersion": 2, "mediaType": IMAGE, "config": config, "layers": [layer]});
        c.manifest(body, Some("data-field"));
    });
    add("non-distributable-layers", Algorithm::Sha256, &|c| {
        let foreign = sha256(b"a layer served elsewhere");
        let layer = json!({
            "mediaType": LAYER_NONDISTRIBUTABLE, "digest": foreign, "size": 123_456,
            "urls": [format!("https://store.example.com/blobs/sha256/{}", &foreign[7..])],
        });
        let data = c.random(700);
        let ordinary = c.blob(LAYER_GZIP, data);
        let config = c.blob(CONFIG, br#"{"architecture":"amd64","os":"linux"}"#.to_vec());
        let body = json!({"schemaVersion": 2, "mediaType": IMAGE, "config": config, "layers": [layer, ordinary]});
        c.manifest(body, Some("non-distributable-image"));
    });
    add("custom-fields", Algorithm::Sha256, &|c| {
        let mut children = Vec::new();
        for architecture in ["amd64", "arm64"] {
            let config = json!({"architecture": architecture, "os": "linux", "org.example.custom": {"x": [1, 2]}});
            let config = c.blob(CONFIG, serde_json::to_vec(&config).expect("json"));
            let data = c.random(400);
            let layer = c.blob(LAYER_GZIP, data);
            let body = json!({
                "schemaVersion": 2, "mediaType": IMAGE, "config": config, "layers": [layer],
                "org.example.unknown": "a field no spec defines",
            });
            let mut child = c.manifest(body, None);
            child["platform"] = json!({"os": "linux", "architecture": architecture});
            children.push(child);
        }
        c.index(children, json!({"org.example.unknown": 42}), Some("custom-fields"));
    });
    add("no-layers", Algorithm::Sha256, &|c| {
        c.image(0, LAYER_GZIP, json!({}), Some("no-layers"));
    });
    // Manifests with another algorithm than the canonical one are pushed by digest only.
    add("sha512", Algorithm::Sha512, &|c| {
        c.platform_index(json!({}), None);
    });
    sets
}

/// Pushes every data set and takes it through the suite's steps.
pub async fn content_kinds(target: &Target) {
    let repository = "conformance/repo1";
    for (name, content) in data_sets() {
        // Push: blobs, then manifests, each answered as the spec says.
        for (digest, data) in &content.blobs {
            let reply = target
                .send(Method::POST, &format!("/v2/{repository}/blobs/uploads/?digest={digest}"), &[], data.clone())
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{name}: blob {digest}: {:?}", reply.body);
            assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()), "{name}");
        }
        let mut digests = Vec::new();
        for ManifestToPush { media_type, bytes, tag, subject } in &content.manifests {
            let digest = content.algorithm.digest(bytes);
            let reference = tag.clone().unwrap_or_else(|| digest.clone());
            let reply = target
                .send(
                    Method::PUT,
                    &format!("/v2/{repository}/manifests/{reference}"),
                    &[("content-type", media_type)],
                    bytes.clone(),
                )
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{name}: manifest {reference}: {:?}", reply.body);
            assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()), "{name}");
            assert!(reply.header("location").is_some(), "{name}: no Location");
            assert_eq!(reply.header("oci-subject"), subject.as_deref(), "{name}: OCI-Subject");
            digests.push(digest);
        }

        // List: every tag is there.
        let tags = target.get(&format!("/v2/{repository}/tags/list")).await.json();
        for tag in content.manifests.iter().filter_map(|m| m.tag.as_ref()) {
            assert!(tags["tags"].as_array().is_some_and(|t| t.contains(&json!(tag))), "{name}: {tag} in {tags}");
        }

        // HEAD and pull: the same bytes, digest, type and length, by digest and by tag.
        for (ManifestToPush { media_type, bytes, tag, .. }, digest) in content.manifests.iter().zip(&digests) {
            for reference in std::iter::once(digest).chain(tag) {
                let path = format!("/v2/{repository}/manifests/{reference}");
                let accept = [("accept", media_type.as_str())];
                let head = target.send(Method::HEAD, &path, &accept, Bytes::new()).await;
                assert_eq!(head.status, StatusCode::OK, "{name}: HEAD {reference}");
                assert_eq!(head.header("content-length"), Some(bytes.len().to_string().as_str()), "{name}");
                let reply = target.send(Method::GET, &path, &accept, Bytes::new()).await;
                assert_eq!(reply.status, StatusCode::OK, "{name}: GET {reference}");
                assert!(reply.body == bytes.as_slice(), "{name}: {reference} came back changed");
                assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()), "{name}");
                assert_eq!(reply.header("content-type"), Some(media_type.as_str()), "{name}");
            }
        }
        for (digest, data) in &content.blobs {
            let reply = target.get(&format!("/v2/{repository}/blobs/{digest}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{name}: blob {digest}");
            assert!(reply.body == data.as_slice(), "{name}: blob {digest} came back changed");
            assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()), "{name}");
        }

        // Referrers: every manifest with a subject is listed with its artifact type and
        // annotations, and the filter keeps only the type asked for.
        for (ManifestToPush { bytes, subject, .. }, digest) in content.manifests.iter().zip(&digests) {
            let Some(subject) = subject else { continue };
            let manifest: Value = serde_json::from_slice(bytes).expect("json");
            let artifact_type = manifest
                .get("artifactType")
                .or_else(|| manifest.get("config").map(|c| &c["mediaType"]))
                .cloned()
                .unwrap_or(Value::Null);
            let reply = target.get(&format!("/v2/{repository}/referrers/{subject}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{name}: referrers of {subject}");
            assert_eq!(reply.header("content-type"), Some(INDEX), "{name}");
            let listed = reply.json()["manifests"].as_array().cloned().unwrap_or_default();
            let entry = listed
                .iter()
                .find(|d| d["digest"] == json!(digest))
                .unwrap_or_else(|| panic!("{name}: {digest} not among the referrers of {subject}: {listed:?}"));
            assert_eq!(entry["size"], json!(bytes.len()), "{name}");
            assert_eq!(entry["artifactType"], artifact_type, "{name}");
            if let Some(annotations) = manifest.get("annotations") {
                assert_eq!(&entry["annotations"], annotations, "{name}");
            }
            // Encoded as clients encode query values: a `+` would read as a space.
            let filter = artifact_type.as_str().expect("an artifact type").replace('+', "%2B");
            let filtered = target.get(&format!("/v2/{repository}/referrers/{subject}?artifactType={filter}")).await;
            assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"), "{name}");
            let kept = filtered.json()["manifests"].as_array().cloned().unwrap_or_default();
            assert!(kept.iter().any(|d| d["digest"] == json!(digest)), "{name}: filtered out");
            assert!(kept.iter().all(|d| d["artifactType"] == artifact_type), "{name}: filter kept others");
        }

        // Delete: tags, then manifests from the top down, then blobs; each is gone after.
        for tag in content.manifests.iter().filter_map(|m| m.tag.as_ref()) {
            let reply =
                target.send(Method::DELETE, &format!("/v2/{repository}/manifests/{tag}"), &[], Bytes::new()).await;
            assert_eq!(reply.status, StatusCode::ACCEPTED, "{name}: delete tag {tag}: {:?}", reply.body);
            let gone = target.get(&format!("/v2/{repository}/manifests/{tag}")).await;
            assert_eq!((gone.status, gone.error_code().as_str()), (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"));
        }
        for digest in digests.iter().rev() {
            let path = format!("/v2/{repository}/manifests/{digest}");
            let reply = target.send(Method::DELETE, &path, &[], Bytes::new()).await;
            assert_eq!(reply.status, StatusCode::ACCEPTED, "{name}: delete {digest}: {:?}", reply.body);
            assert_eq!(target.get(&path).await.status, StatusCode::NOT_FOUND, "{name}: {digest} stayed");
        }
        for (digest, _) in &content.blobs {
            let path = format!("/v2/{repository}/blobs/{digest}");
            let reply = target.send(Method::DELETE, &path, &[], Bytes::new()).await;
            // A blob two manifests of one data set share is deleted once.
            assert!(matches!(reply.status, StatusCode::ACCEPTED | StatusCode::NOT_FOUND), "{name}: delete {digest}");
            assert_eq!(target.get(&path).await.status, StatusCode::NOT_FOUND, "{name}: blob {digest} stayed");
        }
    }
}

/// The suite's blob pushes, for each algorithm: POST only, POST then PUT, one chunk, a stream,
/// three chunks with the last in the PUT, out of order, mounts (named, anonymous, missing), a
/// cancelled upload, the empty blob; and a manifest whose bytes do not match its digest.
pub async fn blob_pushes(target: &Target) {
    let repository = "conformance/repo1";
    let other = "conformance/repo2";
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let mut content = Content::new(algorithm, 77 + algorithm as u64);
        let mut fresh = |len: usize| {
            let data = content.random(len);
            (algorithm.digest(&data), data)
        };
        let created = |reply: &super::Reply, what: &str, digest: &str| {
            assert_eq!(reply.status, StatusCode::CREATED, "{what}: {:?}", reply.body);
            assert_eq!(reply.header("docker-content-digest"), Some(digest), "{what}");
            assert!(reply.header("location").is_some(), "{what}: no Location");
        };
        let uploads = format!("/v2/{repository}/blobs/uploads/");

        let (digest, data) = fresh(512);
        let reply = target.send(Method::POST, &format!("{uploads}?digest={digest}"), &[], data.clone()).await;
        created(&reply, "post only", &digest);

        let (digest, data) = fresh(512);
        let started = target.send(Method::POST, &uploads, &[], Bytes::new()).await;
        assert_eq!(started.status, StatusCode::ACCEPTED);
        let reply = target.send(Method::PUT, &with_digest(&location(&started), &digest), &[], data.clone()).await;
        created(&reply, "post+put", &digest);

        // Three chunks of at least the minimum chunk length, the last one in the PUT.
        let (digest, data) = fresh(1024 * 3 - 5);
        let started = target.send(Method::POST, &uploads, &[], Bytes::new()).await;
        let mut at = location(&started);
        for range in [0..1024, 1024..2048] {
            let content_range = format!("{}-{}", range.start, range.end - 1);
            let reply = target
                .send(
                    Method::PATCH,
                    &at,
                    &[("content-range", &content_range), ("content-type", "application/octet-stream")],
                    data[range.clone()].to_vec(),
                )
                .await;
            assert_eq!(reply.status, StatusCode::ACCEPTED, "chunk {content_range}: {:?}", reply.body);
            assert_eq!(reply.header("range"), Some(format!("0-{}", range.end - 1).as_str()));
            at = location(&reply);
        }
        // Out of order: a chunk past the end is refused and changes nothing.
        let reply = target.send(Method::PATCH, &at, &[("content-range", "2500-2599")], data[2500..2600].to_vec()).await;
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
        let last = format!("2048-{}", data.len() - 1);
        let reply = target
            .send(Method::PUT, &with_digest(&at, &digest), &[("content-range", &last)], data[2048..].to_vec())
            .await;
        created(&reply, "chunked, last chunk in the PUT", &digest);
        assert!(target.get(&format!("/v2/{repository}/blobs/{digest}")).await.body == data.as_slice());

        // Mounts: from a repository that has the blob, anonymous, and from one that has not.
        let reply = target
            .send(
                Method::POST,
                &format!("/v2/{other}/blobs/uploads/?mount={digest}&from={repository}"),
                &[],
                Bytes::new(),
            )
            .await;
        created(&reply, "mount", &digest);
        let (missing, _) = fresh(10);
        let reply = target
            .send(
                Method::POST,
                &format!("/v2/{other}/blobs/uploads/?mount={missing}&from={repository}"),
                &[],
                Bytes::new(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "mount missing");
        let reply =
            target.send(Method::POST, &format!("/v2/{other}/blobs/uploads/?mount={missing}"), &[], Bytes::new()).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "anonymous mount of a missing blob");
        // Without `from`: any copy the registry holds.
        let third = "conformance/repo3";
        let reply =
            target.send(Method::POST, &format!("/v2/{third}/blobs/uploads/?mount={digest}"), &[], Bytes::new()).await;
        created(&reply, "anonymous mount", &digest);
        assert!(target.get(&format!("/v2/{third}/blobs/{digest}")).await.body == data.as_slice());

        // A cancelled upload is gone, and left nothing behind.
        let (digest, data) = fresh(512);
        let started = target.send(Method::POST, &uploads, &[], Bytes::new()).await;
        let at = location(&started);
        let reply = target.send(Method::PATCH, &at, &[], data).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        let reply = target.send(Method::DELETE, &location(&reply), &[], Bytes::new()).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        assert_eq!(target.get(&at).await.error_code(), "BLOB_UPLOAD_UNKNOWN");
        assert_eq!(target.get(&format!("/v2/{repository}/blobs/{digest}")).await.status, StatusCode::NOT_FOUND);

        // The empty blob.
        let digest = algorithm.digest(b"");
        let reply = target.send(Method::POST, &format!("{uploads}?digest={digest}"), &[], Bytes::new()).await;
        created(&reply, "empty blob", &digest);
        let reply = target.get(&format!("/v2/{repository}/blobs/{digest}")).await;
        assert_eq!((reply.status, reply.body.len()), (StatusCode::OK, 0));

        // Bytes that do not match their digest, by every way of pushing: refused at the end,
        // and nothing stored.
        for way in ["post only", "post+put", "chunked", "chunked, last chunk in the PUT", "stream"] {
            let (digest, mut data) = fresh(1024 * 3 - 5);
            data.extend_from_slice(b"oh no");
            let reply = if way == "post only" {
                target.send(Method::POST, &format!("{uploads}?digest={digest}"), &[], data.clone()).await
            } else {
                let mut at = location(&target.send(Method::POST, &uploads, &[], Bytes::new()).await);
                let last = match way {
                    "post+put" => data.clone(),
                    "stream" => {
                        at = location(&target.send(Method::PATCH, &at, &[], data.clone()).await);
                        Vec::new()
                    }
                    _ => {
                        let whole = way == "chunked";
                        let end = if whole { data.len() } else { 2048 };
                        for start in (0..end).step_by(1024) {
                            let stop = (start + 1024).min(end);
                            let range = format!("{start}-{}", stop - 1);
                            let reply = target
                                .send(Method::PATCH, &at, &[("content-range", &range)], data[start..stop].to_vec())
                                .await;
                            assert_eq!(reply.status, StatusCode::ACCEPTED, "{way}: chunk {range}");
                            at = location(&reply);
                        }
                        if whole { Vec::new() } else { data[2048..].to_vec() }
                    }
                };
                target.send(Method::PUT, &with_digest(&at, &digest), &[], last).await
            };
            assert_eq!(
                (reply.status, reply.error_code().as_str()),
                (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
                "{way}"
            );
            assert_eq!(target.get(&format!("/v2/{repository}/blobs/{digest}")).await.status, StatusCode::NOT_FOUND);
        }
    }

    // A manifest pushed by a digest its bytes do not have (whitespace added): refused, and
    // nothing is stored under either digest.
    let mut content = Content::new(Algorithm::Sha256, 5);
    content.image(1, LAYER_GZIP, json!({}), None);
    for (digest, data) in &content.blobs {
        let reply = target
            .send(Method::POST, &format!("/v2/{repository}/blobs/uploads/?digest={digest}"), &[], data.clone())
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let ManifestToPush { media_type, bytes, .. } = &content.manifests[0];
    let digest = sha256(bytes);
    let mut changed = bytes.clone();
    changed.extend_from_slice(b"  ");
    let path = format!("/v2/{repository}/manifests/{digest}");
    let reply = target.send(Method::PUT, &path, &[("content-type", media_type)], changed.clone()).await;
    assert_eq!((reply.status, reply.error_code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    assert_eq!(target.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        target.get(&format!("/v2/{repository}/manifests/{}", sha256(&changed))).await.status,
        StatusCode::NOT_FOUND
    );
    // A reference that is neither a digest nor a tag, and manifests that are not there.
    let bad = format!("/v2/{repository}/manifests/sha256:baddigeststring");
    let reply = target.send(Method::PUT, &bad, &[("content-type", media_type)], bytes.clone()).await;
    assert_eq!((reply.status, reply.error_code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    assert_eq!(target.get(&bad).await.status, StatusCode::BAD_REQUEST);
    for missing in [sha256(b"no such manifest"), "missing-tag".to_owned()] {
        let reply = target.get(&format!("/v2/{repository}/manifests/{missing}")).await;
        assert_eq!((reply.status, reply.error_code().as_str()), (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"));
    }
}

fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}
