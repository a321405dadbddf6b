//! The spec's workflows, written from the spec's text: each takes a target (the router in
//! process, a server over TCP, or the example binary) serving a fresh registry.

use axum::http::{Method, StatusCode};
use bytes::Bytes;

use super::{Target, image_manifest, location, push_blob, push_image, sha256, sha512};

/// The pull workflow: the base endpoint, manifests by tag and digest with content
/// negotiation, blobs whole and in ranges, and what is not there.
pub async fn pull(target: &Target) {
    let base = target.get("/v2/").await;
    assert_eq!(base.status, StatusCode::OK);
    assert_eq!(base.header("docker-distribution-api-version"), Some("registry/2.0"));

    let (manifest, digest) = push_image(target, "team/app", "v1", 7).await;
    for reference in ["v1", digest.as_str()] {
        let reply = target.get(&format!("/v2/team/app/manifests/{reference}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", target.name());
        assert_eq!(reply.body, manifest);
        assert_eq!(reply.header("content-type"), Some("application/vnd.oci.image.manifest.v1+json"));
        assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()));
        let head = target.send(Method::HEAD, &format!("/v2/team/app/manifests/{reference}"), &[], Bytes::new()).await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.header("content-length"), Some(manifest.len().to_string().as_str()));
        assert!(head.body.is_empty());
    }
    // Content negotiation: an Accept that lists other types only gets no manifest.
    let refused = target
        .send(
            Method::GET,
            "/v2/team/app/manifests/v1",
            &[("accept", "application/vnd.docker.distribution.manifest.v2+json")],
            Bytes::new(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(refused.error_code(), "MANIFEST_UNKNOWN");
    let accepted = target
        .send(
            Method::GET,
            "/v2/team/app/manifests/v1",
            &[(
                "accept",
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
            )],
            Bytes::new(),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK);

    // Blobs, whole and in ranges.
    let layer = vec![7u8; 1007];
    let layer_digest = sha256(&layer);
    let reply = target.get(&format!("/v2/team/app/blobs/{layer_digest}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, layer);
    assert_eq!(reply.header("docker-content-digest"), Some(layer_digest.as_str()));
    let head = target.send(Method::HEAD, &format!("/v2/team/app/blobs/{layer_digest}"), &[], Bytes::new()).await;
    assert_eq!((head.status, head.header("content-length")), (StatusCode::OK, Some("1007")));
    let part = target
        .send(Method::GET, &format!("/v2/team/app/blobs/{layer_digest}"), &[("range", "bytes=10-19")], Bytes::new())
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, layer[10..20]);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/1007"));
    for bad in ["bytes=500-0", "bytes=1007-", "bytes=2000-3000"] {
        let reply = target
            .send(Method::GET, &format!("/v2/team/app/blobs/{layer_digest}"), &[("range", bad)], Bytes::new())
            .await;
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(reply.error_code(), "RANGE_INVALID");
    }

    // What is not there.
    let missing = target.get("/v2/team/app/manifests/v2").await;
    assert_eq!((missing.status, missing.error_code().as_str()), (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"));
    let missing = target.get(&format!("/v2/team/app/blobs/{}", sha256(b"nothing"))).await;
    assert_eq!((missing.status, missing.error_code().as_str()), (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"));
    // A blob of another repository is not this one's.
    let other = target.get(&format!("/v2/team/other/blobs/{layer_digest}")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

/// The push workflow: blob uploads monolithic, chunked and out of order, and manifests.
pub async fn push(target: &Target) {
    // POST then PUT with the whole content.
    let data = b"posted then put".to_vec();
    let start = target.send(Method::POST, "/v2/p/blobs/uploads/", &[], Bytes::new()).await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    assert!(start.header("docker-upload-uuid").is_some());
    assert_eq!(start.header("range"), Some("0-0"));
    let put = target
        .send(
            Method::PUT,
            &format!("{}?digest={}", location(&start), sha256(&data)),
            &[("content-type", "application/octet-stream")],
            data.clone(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    assert_eq!(location(&put), format!("/v2/p/blobs/{}", sha256(&data)));
    assert_eq!(target.get(&location(&put)).await.body, data);

    // Chunked: three PATCHes with Content-Range, then a PUT without a body.
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let start = target.send(Method::POST, "/v2/p/blobs/uploads/", &[], Bytes::new()).await;
    let mut at = location(&start);
    for (i, chunk) in data.chunks(10_000).enumerate() {
        let range = format!("{}-{}", i * 10_000, i * 10_000 + chunk.len() - 1);
        let reply = target
            .send(
                Method::PATCH,
                &at,
                &[("content-range", &range), ("content-type", "application/octet-stream")],
                chunk.to_vec(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "chunk {i}: {:?}", reply.body);
        assert_eq!(reply.header("range"), Some(format!("0-{}", (i + 1) * 10_000 - 1).as_str()));
        at = location(&reply);
    }
    // Out of order: 416 with the range the upload has.
    let reply = target.send(Method::PATCH, &at, &[("content-range", "5-9")], vec![0u8; 5]).await;
    assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(reply.error_code(), "RANGE_INVALID");
    assert_eq!(reply.header("range"), Some("0-29999"));
    // The status says where to go on; the upload is unharmed.
    let status = target.get(&at).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), Some("0-29999"));
    let put = target.send(Method::PUT, &format!("{at}?digest={}", sha256(&data)), &[], Bytes::new()).await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    assert_eq!(target.get(&format!("/v2/p/blobs/{}", sha256(&data))).await.body, data);

    // Streamed: PATCH without Content-Range, then PUT with the last chunk.
    let start = target.send(Method::POST, "/v2/p/blobs/uploads/", &[], Bytes::new()).await;
    let reply = target.send(Method::PATCH, &location(&start), &[], b"streamed ".to_vec()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let put = target
        .send(
            Method::PUT,
            &format!("{}?digest={}", location(&reply), sha256(b"streamed content")),
            &[],
            b"content".to_vec(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);

    // A wrong digest: 400, nothing visible.
    let start = target.send(Method::POST, "/v2/p/blobs/uploads/", &[], Bytes::new()).await;
    let put = target
        .send(Method::PUT, &format!("{}?digest={}", location(&start), sha256(b"other")), &[], b"this".to_vec())
        .await;
    assert_eq!((put.status, put.error_code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    assert_eq!(target.get(&format!("/v2/p/blobs/{}", sha256(b"this"))).await.status, StatusCode::NOT_FOUND);

    // Empty blob, and sha512.
    push_blob(target, "p", b"").await;
    let digest = sha512(b"long digest");
    let reply =
        target.send(Method::POST, &format!("/v2/p/blobs/uploads/?digest={digest}"), &[], b"long digest".to_vec()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(target.get(&format!("/v2/p/blobs/{digest}")).await.body, &b"long digest"[..]);

    // Mount from another repository: 201; from one without the blob: an upload instead.
    let mounted = target
        .send(Method::POST, &format!("/v2/q/blobs/uploads/?mount={}&from=p", sha256(&data)), &[], Bytes::new())
        .await;
    assert_eq!(mounted.status, StatusCode::CREATED);
    assert_eq!(target.get(&format!("/v2/q/blobs/{}", sha256(&data))).await.body, data);
    let fallback = target
        .send(Method::POST, &format!("/v2/q/blobs/uploads/?mount={}&from=nobody", sha256(b"x")), &[], Bytes::new())
        .await;
    assert_eq!(fallback.status, StatusCode::ACCEPTED);
    assert!(fallback.header("docker-upload-uuid").is_some());
    let cancel = target.send(Method::DELETE, &location(&fallback), &[], Bytes::new()).await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT);
    assert_eq!(target.get(&location(&fallback)).await.error_code(), "BLOB_UPLOAD_UNKNOWN");

    // A manifest without layers, pushed by digest (sha512 too), and one with a missing blob.
    let config = push_blob(target, "p", b"{}").await;
    let manifest = image_manifest((&config, 2), &[], None);
    for digest in [sha256(&manifest), sha512(&manifest)] {
        let reply = target
            .send(
                Method::PUT,
                &format!("/v2/p/manifests/{digest}"),
                &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
                manifest.clone(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{digest}: {:?}", reply.body);
        assert_eq!(target.get(&format!("/v2/p/manifests/{digest}")).await.body, manifest);
    }
    // Pushed by digest with the spec's tag parameters: tagged at once, one OCI-Tag each; a
    // bad tag among them stores nothing.
    let tagged = image_manifest((&config, 2), &[(&config, 2)], None);
    let by_digest = format!("/v2/p/manifests/{}", sha256(&tagged));
    let content_type = [("content-type", "application/vnd.oci.image.manifest.v1+json")];
    let refused =
        target.send(Method::PUT, &format!("{by_digest}?tag=ok&tag=-bad"), &content_type, tagged.clone()).await;
    assert_eq!((refused.status, refused.error_code().as_str()), (StatusCode::BAD_REQUEST, "TAG_INVALID"));
    assert_eq!(target.get(&by_digest).await.status, StatusCode::NOT_FOUND);
    let reply = target.send(Method::PUT, &format!("{by_digest}?tag=one&tag=two"), &content_type, tagged.clone()).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let announced: Vec<&str> = reply.headers.get_all("oci-tag").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(announced, ["one", "two"]);
    for tag in ["one", "two"] {
        assert_eq!(target.get(&format!("/v2/p/manifests/{tag}")).await.body, tagged, "tag {tag}");
    }
    let dangling = image_manifest((&config, 2), &[(&sha256(b"never pushed"), 12)], None);
    let reply = target
        .send(
            Method::PUT,
            "/v2/p/manifests/broken",
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            dangling,
        )
        .await;
    assert_eq!((reply.status, reply.error_code().as_str()), (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"));
}

/// The content discovery workflow: tag lists with pagination, referrers and their filter.
pub async fn discovery(target: &Target) {
    let mut digests = Vec::new();
    for (i, tag) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        digests.push(push_image(target, "d", tag, i as u8).await.1);
    }
    let all = target.get("/v2/d/tags/list").await;
    assert_eq!(all.json(), serde_json::json!({"name": "d", "tags": ["a", "b", "c", "d", "e"]}));
    let page = target.get("/v2/d/tags/list?n=2").await;
    assert_eq!(page.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(page.header("link"), Some("</v2/d/tags/list?n=2&last=b>; rel=\"next\""));
    let page = target.get("/v2/d/tags/list?n=2&last=b").await;
    assert_eq!(page.json()["tags"], serde_json::json!(["c", "d"]));
    let page = target.get("/v2/d/tags/list?n=2&last=d").await;
    assert_eq!(page.json()["tags"], serde_json::json!(["e"]));
    assert_eq!(page.header("link"), None);
    let page = target.get("/v2/d/tags/list?last=c").await;
    assert_eq!(page.json()["tags"], serde_json::json!(["d", "e"]));
    let none = target.get("/v2/d/tags/list?n=0").await;
    assert_eq!((none.json()["tags"].clone(), none.header("link")), (serde_json::json!([]), None));
    let unknown = target.get("/v2/nothing/tags/list").await;
    assert_eq!((unknown.status, unknown.error_code().as_str()), (StatusCode::NOT_FOUND, "NAME_UNKNOWN"));
    let bad = target.get("/v2/d/tags/list?n=-1").await;
    assert_eq!((bad.status, bad.error_code().as_str()), (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"));

    // Referrers of an image: an SBOM and a signature-like artifact.
    let subject = &digests[0];
    let subject_size = target.get(&format!("/v2/d/manifests/{subject}")).await.body.len();
    let config = push_blob(target, "d", b"{}").await;
    let sbom = image_manifest((&config, 2), &[], Some((subject, subject_size)));
    let reply = target
        .send(
            Method::PUT,
            &format!("/v2/d/manifests/{}", sha256(&sbom)),
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            sbom.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.header("oci-subject"), Some(subject.as_str()));
    let referrers = target.get(&format!("/v2/d/referrers/{subject}")).await;
    assert_eq!(referrers.status, StatusCode::OK);
    assert_eq!(referrers.header("content-type"), Some("application/vnd.oci.image.index.v1+json"));
    let index = referrers.json();
    assert_eq!(index["manifests"][0]["digest"], sha256(&sbom));
    assert_eq!(index["manifests"][0]["artifactType"], "application/vnd.example.sbom");
    assert_eq!(index["manifests"][0]["size"], sbom.len());
    let filtered = target.get(&format!("/v2/d/referrers/{subject}?artifactType=application/vnd.example.sbom")).await;
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(filtered.json()["manifests"].as_array().map(Vec::len), Some(1));
    let other = target.get(&format!("/v2/d/referrers/{subject}?artifactType=application/vnd.other")).await;
    assert_eq!(other.json()["manifests"], serde_json::json!([]));
    // A subject the registry does not have: an empty index, not a 404.
    let missing = target.get(&format!("/v2/d/referrers/{}", sha256(b"absent"))).await;
    assert_eq!((missing.status, missing.json()["manifests"].clone()), (StatusCode::OK, serde_json::json!([])));

    // The catalog, paged.
    push_image(target, "e/f", "x", 9).await;
    let catalog = target.get("/v2/_catalog").await;
    assert_eq!(catalog.json(), serde_json::json!({"repositories": ["d", "e/f"]}));
    let page = target.get("/v2/_catalog?n=1").await;
    assert_eq!(page.json()["repositories"], serde_json::json!(["d"]));
    assert_eq!(page.header("link"), Some("</v2/_catalog?n=1&last=d>; rel=\"next\""));
    assert_eq!(target.get("/v2/_catalog?n=1&last=d").await.json()["repositories"], serde_json::json!(["e/f"]));
}

/// The content management workflow: deleting tags, manifests and blobs.
pub async fn management(target: &Target) {
    let (_, first) = push_image(target, "m", "one", 1).await;
    let (_, second) = push_image(target, "m", "two", 2).await;
    let reply = target
        .send(
            Method::PUT,
            "/v2/m/manifests/also",
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            target.get(&format!("/v2/m/manifests/{second}")).await.body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);

    // A tag goes, its manifest stays.
    assert_eq!(
        target.send(Method::DELETE, "/v2/m/manifests/one", &[], Bytes::new()).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(target.get("/v2/m/manifests/one").await.status, StatusCode::NOT_FOUND);
    assert_eq!(target.get(&format!("/v2/m/manifests/{first}")).await.status, StatusCode::OK);
    // A manifest goes with every tag on it.
    assert_eq!(
        target.send(Method::DELETE, &format!("/v2/m/manifests/{second}"), &[], Bytes::new()).await.status,
        StatusCode::ACCEPTED
    );
    for gone in ["two", "also", second.as_str()] {
        assert_eq!(target.get(&format!("/v2/m/manifests/{gone}")).await.error_code(), "MANIFEST_UNKNOWN");
    }
    assert_eq!(target.get("/v2/m/tags/list").await.json()["tags"], serde_json::json!([]));
    let again = target.send(Method::DELETE, &format!("/v2/m/manifests/{second}"), &[], Bytes::new()).await;
    assert_eq!((again.status, again.error_code().as_str()), (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"));
    // A blob goes from the repository.
    let blob = sha256(&[1u8; 1001]);
    assert_eq!(
        target.send(Method::DELETE, &format!("/v2/m/blobs/{blob}"), &[], Bytes::new()).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(target.get(&format!("/v2/m/blobs/{blob}")).await.error_code(), "BLOB_UNKNOWN");
    let again = target.send(Method::DELETE, &format!("/v2/m/blobs/{blob}"), &[], Bytes::new()).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

/// Deletes answered 405 `UNSUPPORTED` when the registry does not allow them.
pub async fn deletes_refused(target: &Target) {
    let (_, digest) = push_image(target, "r", "keep", 3).await;
    let blob = sha256(&[3u8; 1003]);
    for path in ["/v2/r/manifests/keep".to_owned(), format!("/v2/r/manifests/{digest}"), format!("/v2/r/blobs/{blob}")]
    {
        let reply = target.send(Method::DELETE, &path, &[], Bytes::new()).await;
        assert_eq!(
            (reply.status, reply.error_code().as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            "{path}"
        );
    }
    assert_eq!(target.get("/v2/r/manifests/keep").await.status, StatusCode::OK);
    assert_eq!(target.get(&format!("/v2/r/blobs/{blob}")).await.status, StatusCode::OK);
}

/// Writes refused while the registry is read-only, reads still served.
pub async fn read_only(target: &Target) {
    for (method, path) in [
        (Method::POST, "/v2/ro/blobs/uploads/"),
        (Method::PUT, "/v2/ro/manifests/latest"),
        (Method::DELETE, "/v2/ro/manifests/latest"),
        (Method::PATCH, "/v2/ro/blobs/uploads/abc"),
    ] {
        let reply = target.send(method.clone(), path, &[], Bytes::new()).await;
        assert_eq!(
            (reply.status, reply.error_code().as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            "{method} {path}"
        );
    }
    assert_eq!(target.get("/v2/").await.status, StatusCode::OK);
}

/// A request that must be refused: method, path, headers, body, status, error code.
pub type BadRequest<'a> = (Method, String, Vec<(&'a str, &'a str)>, Vec<u8>, StatusCode, &'a str);

/// Malformed requests, each refused with its status and OCI error code, storing nothing.
pub async fn bad_input(target: &Target) {
    let (manifest, digest) = push_image(target, "ok", "v1", 5).await;
    let catalog_before = target.get("/v2/_catalog").await.body;

    let cases: Vec<BadRequest<'_>> = vec![
        (Method::GET, "/v2/UPPER/manifests/v1".into(), vec![], vec![], StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, "/v2/ok/../etc/manifests/v1".into(), vec![], vec![], StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, "/v2/ok/%2e%2e/manifests/v1".into(), vec![], vec![], StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::PUT, "/v2/ok%2F..%2Fother/manifests/v1".into(), vec![], manifest.clone(), StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, "/v2/ok/blobs/sha256:short".into(), vec![], vec![], StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::GET, "/v2/ok/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".into(), vec![], vec![], StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::GET, "/v2/ok/manifests/sha256:short".into(), vec![], vec![], StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::PUT, "/v2/ok/manifests/-dash".into(), vec![], b"{}".to_vec(), StatusCode::BAD_REQUEST, "TAG_INVALID"),
        (Method::GET, "/v2/ok/manifests/bad:digest".into(), vec![], vec![], StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::GET, "/v2/ok/manifests/-bad-tag".into(), vec![], vec![], StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        (Method::GET, "/v2/ok/manifests/.INVALID_MANIFEST_NAME".into(), vec![], vec![], StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        (Method::PUT, "/v2/ok/manifests/-bad-tag".into(), vec![("content-type", "application/vnd.oci.image.manifest.v1+json")], manifest.clone(), StatusCode::BAD_REQUEST, "TAG_INVALID"),
        (Method::GET, "/v2/ok/tags/list?n=18446744073709551616".into(), vec![], vec![], StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"),
        (Method::POST, "/v2/ok/blobs/uploads/?digest=sha256:zz".into(), vec![], b"x".to_vec(), StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::PUT, "/v2/ok/manifests/v1".into(), vec![("content-type", "application/vnd.oci.image.manifest.v1+json")], b"{not json".to_vec(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (Method::PUT, "/v2/ok/manifests/v1".into(), vec![("content-type", "application/vnd.oci.image.manifest.v1+json")], br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:00","size":1,"mediaType":"x/y"},"layers":[]}"#.to_vec(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (Method::PUT, format!("/v2/ok/manifests/{}", sha256(b"other")), vec![("content-type", "application/vnd.oci.image.manifest.v1+json")], manifest.clone(), StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::PUT, "/v2/ok/manifests/v1".into(), vec![("content-type", "application/vnd.oci.image.manifest.v1+json"), ("expect", "100-continue")], vec![b' '; 4 * 1024 * 1024 + 1], StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
        (Method::GET, "/v2/ok/blobs/uploads/..".into(), vec![], vec![], StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        (Method::GET, "/v2/ok/blobs/uploads/%2e%2e%2f%2e%2e".into(), vec![], vec![], StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        (Method::GET, "/v2/ok/nothing/here".into(), vec![], vec![], StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::POST, "/v2/ok/manifests/v1".into(), vec![], vec![], StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
    ];
    for (method, path, headers, body, status, code) in cases {
        let reply = target.send(method.clone(), &path, &headers, body).await;
        assert_eq!((reply.status, reply.error_code().as_str()), (status, code), "{} {method} {path}", target.name());
    }

    // Malformed Content-Range and ranges on an upload: the upload stays as it was.
    let start = target.send(Method::POST, "/v2/ok/blobs/uploads/", &[], Bytes::new()).await;
    let at = location(&start);
    let first = target.send(Method::PATCH, &at, &[("content-range", "0-3")], b"abcd".to_vec()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    for (range, status, code) in [
        ("four-five", StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
        ("9-4", StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
        ("4-9", StatusCode::BAD_REQUEST, "SIZE_INVALID"),
        // A span of every u64: its length fits none, and is refused, not wrapped.
        ("0-18446744073709551615", StatusCode::BAD_REQUEST, "SIZE_INVALID"),
    ] {
        let reply = target.send(Method::PATCH, &at, &[("content-range", range)], b"ef".to_vec()).await;
        assert_eq!((reply.status, reply.error_code().as_str()), (status, code), "Content-Range {range}");
    }
    assert_eq!(target.get(&at).await.header("range"), Some("0-3"));
    let done = target.send(Method::PUT, &format!("{at}?digest={}", sha256(b"abcdef")), &[], b"ef".to_vec()).await;
    assert_eq!(done.status, StatusCode::CREATED);

    // HEAD of a name that is no tag is unknown too; the largest page size lists everything.
    let head = target.send(Method::HEAD, "/v2/ok/manifests/.INVALID_MANIFEST_NAME", &[], Bytes::new()).await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    let all = target.get(&format!("/v2/ok/tags/list?n={}", u64::MAX)).await;
    assert_eq!((all.status, all.json()["tags"].clone()), (StatusCode::OK, serde_json::json!(["v1"])));
    assert_eq!(all.header("link"), None);

    // Nothing stored changed.
    assert_eq!(target.get("/v2/_catalog").await.body, catalog_before);
    assert_eq!(target.get("/v2/ok/manifests/v1").await.body, manifest);
    assert_eq!(target.get("/v2/ok/tags/list").await.json()["tags"], serde_json::json!(["v1"]));
    assert_eq!(target.get(&format!("/v2/ok/manifests/{digest}")).await.status, StatusCode::OK);
}
