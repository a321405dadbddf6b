//! The spec's workflows (pull, push, content discovery, content management) and bad input,
//! written from the distribution spec's text, against the router in process and over TCP.

use wharf_testing::http as common;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use common::content::{blob_pushes, content_kinds};
use common::workflows::{bad_input, deletes_refused, discovery, management, pull, push, read_only};
use common::{RunningServer, Target, app, location, push_image, sha256};
use wharf_server::ServerOptions;

/// Runs a workflow on a fresh registry, in process and over TCP.
macro_rules! workflow {
    ($name:ident, $options:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn in_process() {
                let (_, router) = app($options);
                super::$name(&Target::in_process(router)).await;
            }

            #[tokio::test]
            async fn over_tcp() {
                let (_, router) = app($options);
                super::$name(&Target::over_tcp(router).await).await;
            }
        }
    };
}

workflow!(pull, ServerOptions::default());
workflow!(push, ServerOptions::default());
workflow!(discovery, ServerOptions::default());
workflow!(management, ServerOptions::default().with_delete_enabled(true));
workflow!(deletes_refused, ServerOptions::default());
workflow!(content_kinds, ServerOptions::default().with_delete_enabled(true));
workflow!(blob_pushes, ServerOptions::default().with_delete_enabled(true));
workflow!(bad_input, ServerOptions::default().with_delete_enabled(true));
workflow!(read_only, ServerOptions::default().with_read_only(true));
workflow!(auth_matrix, ServerOptions::default().with_delete_enabled(true).with_htpasswd(Some(users())));

fn users() -> wharf_server::Htpasswd {
    let hash = bcrypt::hash("right", 4).expect("bcrypt");
    wharf_server::Htpasswd::parse("Wharf", &format!("user:{hash}\n"), "test").expect("htpasswd")
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Every route refuses anonymous clients and wrong passwords, and serves the right ones.
async fn auth_matrix(target: &Target) {
    let digest = sha256(b"x");
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "/v2/".into()),
        (Method::GET, "/v2/_catalog".into()),
        (Method::GET, format!("/v2/a/blobs/{digest}")),
        (Method::HEAD, format!("/v2/a/blobs/{digest}")),
        (Method::DELETE, format!("/v2/a/blobs/{digest}")),
        (Method::POST, "/v2/a/blobs/uploads/".into()),
        (Method::GET, "/v2/a/blobs/uploads/some-id".into()),
        (Method::PATCH, "/v2/a/blobs/uploads/some-id".into()),
        (Method::PUT, format!("/v2/a/blobs/uploads/some-id?digest={digest}")),
        (Method::DELETE, "/v2/a/blobs/uploads/some-id".into()),
        (Method::GET, "/v2/a/manifests/latest".into()),
        (Method::HEAD, "/v2/a/manifests/latest".into()),
        (Method::PUT, "/v2/a/manifests/latest".into()),
        (Method::DELETE, "/v2/a/manifests/latest".into()),
        (Method::GET, "/v2/a/tags/list".into()),
        (Method::GET, format!("/v2/a/referrers/{digest}")),
        (Method::GET, "/v2/no/such/endpoint".into()),
    ];
    let wrong = basic("user", "wrong");
    let unknown = basic("nobody", "right");
    let right = basic("user", "right");
    for (method, path) in &routes {
        for headers in [vec![], vec![("authorization", wrong.as_str())], vec![("authorization", unknown.as_str())]] {
            let reply = target.send(method.clone(), path, &headers, Bytes::new()).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path} with {headers:?}");
            if *method != Method::HEAD {
                assert_eq!(reply.error_code(), "UNAUTHORIZED");
            }
            assert_eq!(reply.header("www-authenticate"), Some("Basic realm=\"Wharf\""));
        }
    }
    // The refused requests stored nothing: not even the repository exists.
    let tags = target.send(Method::GET, "/v2/a/tags/list", &[("authorization", right.as_str())], Bytes::new()).await;
    assert_eq!(tags.error_code(), "NAME_UNKNOWN");
    for (method, path) in &routes {
        let reply = target.send(method.clone(), path, &[("authorization", right.as_str())], Bytes::new()).await;
        assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path} with the right password");
    }
}

/// Behind a reverse proxy: `Location` follows RFC 7239 `Forwarded`, else `X-Forwarded-Proto`
/// and `X-Forwarded-Host`; with nothing forwarded it is a path (which every client resolves
/// against the URL it used), unless `http.relativeurls: false` asks for `Host`; `http.host`
/// wins over all of them; `http.prefix` moves the API; `http.headers` are sent.
#[tokio::test]
async fn urls_prefix_and_headers() {
    let registry = wharf_registry::Registry::new(
        std::sync::Arc::new(wharf_storage::MemoryDriver::new()),
        wharf_registry::RegistryOptions::default(),
    );
    let target = Target::in_process(wharf_server::router(registry.clone(), ServerOptions::default()));
    let post = async |headers: &[(&str, &str)]| {
        let reply = target.send(Method::POST, "/v2/p/blobs/uploads/", headers, Bytes::new()).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        location(&reply)
    };
    let proxied = post(&[
        ("host", "10.0.0.5:5000"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "registry.example.com"),
    ])
    .await;
    assert!(proxied.starts_with("https://registry.example.com/v2/p/blobs/uploads/"), "{proxied}");
    let standard = post(&[
        ("host", "10.0.0.5:5000"),
        ("forwarded", "for=192.0.2.1;proto=https;host=\"registry.example.com:8443\", for=10.0.0.1"),
        ("x-forwarded-host", "other.example.com"),
    ])
    .await;
    assert!(standard.starts_with("https://registry.example.com:8443/v2/p/blobs/uploads/"), "{standard}");
    // What nginx's `proxy_set_header Host $host` sends, with no port and no scheme: a path.
    let plain = post(&[("host", "127.0.0.1"), ("x-forwarded-for", "127.0.0.1")]).await;
    assert!(plain.starts_with("/v2/p/blobs/uploads/"), "{plain}");
    // A forwarded host that is no bare authority is not taken.
    let odd = post(&[("host", "10.0.0.5:5000"), ("x-forwarded-host", "evil.example.com/x?")]).await;
    assert!(odd.starts_with("/v2/p/blobs/uploads/"), "{odd}");

    let absolute =
        Target::in_process(wharf_server::router(registry.clone(), ServerOptions::default().with_relative_urls(false)));
    let direct = absolute.send(Method::POST, "/v2/p/blobs/uploads/", &[("host", "10.0.0.5:5000")], Bytes::new()).await;
    assert!(location(&direct).starts_with("http://10.0.0.5:5000/v2/p/blobs/uploads/"), "{}", location(&direct));
    let relative =
        Target::in_process(wharf_server::router(registry.clone(), ServerOptions::default().with_relative_urls(true)));
    let reply = relative
        .send(Method::POST, "/v2/p/blobs/uploads/", &[("x-forwarded-host", "registry.example.com")], Bytes::new())
        .await;
    assert!(location(&reply).starts_with("/v2/p/blobs/uploads/"), "{}", location(&reply));

    let mut options = ServerOptions::default().with_prefix("/registry/");
    options.host = Some("https://public.example.com".into());
    options.headers = vec![(
        axum::http::HeaderName::from_static("x-content-type-options"),
        axum::http::HeaderValue::from_static("nosniff"),
    )];
    let target = Target::in_process(wharf_server::router(registry, options));
    let reply = target
        .send(
            Method::POST,
            "/registry/v2/p/blobs/uploads/",
            &[("x-forwarded-host", "ignored.example.com")],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(
        location(&reply).starts_with("https://public.example.com/registry/v2/p/blobs/uploads/"),
        "{}",
        location(&reply)
    );
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    let outside = target.get("/v2/").await;
    assert_eq!((outside.status, outside.error_code().as_str()), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    assert_eq!(outside.header("x-content-type-options"), Some("nosniff"));
}

/// `catalog.maxentries` and `tags.maxtags` bound every page, asked for or not.
#[tokio::test]
async fn listing_limits() {
    let (_, router) = app(ServerOptions::default().with_max_catalog_entries(2).with_max_tags(Some(2)));
    let target = Target::in_process(router);
    for (repository, tag, seed) in [("a", "t1", 1), ("a", "t2", 2), ("a", "t3", 3), ("b", "x", 4), ("c", "x", 5)] {
        push_image(&target, repository, tag, seed).await;
    }
    let catalog = target.get("/v2/_catalog?n=100").await;
    assert_eq!(catalog.json()["repositories"], serde_json::json!(["a", "b"]));
    assert_eq!(catalog.header("link"), Some("</v2/_catalog?n=2&last=b>; rel=\"next\""));
    let tags = target.get("/v2/a/tags/list").await;
    assert_eq!(tags.json()["tags"], serde_json::json!(["t1", "t2"]));
    assert_eq!(tags.header("link"), Some("</v2/a/tags/list?n=2&last=t2>; rel=\"next\""));
}

/// Sparse manifests over HTTP, as `validation.manifests` configures them: refused by default,
/// accepted with `indexes.platforms: none` and `images.blobs: none`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_manifests_follow_the_configuration() {
    let absent = sha256(b"never pushed");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": wharf_oci::media_type::OCI_IMAGE_INDEX,
        "manifests": [{"mediaType": wharf_oci::media_type::OCI_IMAGE_MANIFEST, "digest": absent, "size": 10,
                       "platform": {"os": "linux", "architecture": "arm64"}}],
    }))
    .unwrap();
    let image = common::image_manifest((&absent, 12), &[(&sha256(b"no layer"), 8)], None);
    let put = async |target: &Target, tag: &str, body: &[u8], media_type: &str| {
        target
            .send(Method::PUT, &format!("/v2/s/manifests/{tag}"), &[("content-type", media_type)], body.to_vec())
            .await
    };
    for (yaml, accepted) in [
        ("", false),
        ("validation:\n  manifests:\n    indexes:\n      platforms: none\n    images:\n      blobs: none\n", true),
    ] {
        let running = RunningServer::from_yaml(&format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage:\n  inmemory: {{}}\nhttp:\n  addr: 127.0.0.1:0\n{yaml}"
        ))
        .await;
        let target = Target::remote(format!("http://{}", running.address));
        let index_reply = put(&target, "index", &index, wharf_oci::media_type::OCI_IMAGE_INDEX).await;
        let image_reply = put(&target, "image", &image, wharf_oci::media_type::OCI_IMAGE_MANIFEST).await;
        for reply in [&index_reply, &image_reply] {
            if accepted {
                assert_eq!(reply.status, StatusCode::CREATED, "{yaml}");
            } else {
                assert_eq!(
                    (reply.status, reply.error_code().as_str()),
                    (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
                );
            }
        }
        running.stop().await;
    }
}
