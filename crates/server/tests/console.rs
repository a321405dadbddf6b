//! The console's pages over a registry with fixture content: a two-platform index, a signed
//! image with an SBOM, untagged manifests and a hostile annotation; the catalog's filter and
//! pages; who sees what under htpasswd and tokens.
#![cfg(feature = "console")]

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use wharf_oci::{Digest, media_type};
use wharf_registry::{ManifestReference, Registry, Repository};
use wharf_server::ServerOptions;
use wharf_testing::http::{Reply, Target, app};
use wharf_testing::images::{store_blob, store_image, store_index, store_signature};

/// What the fixtures stored, to look for in the pages.
struct Fixtures {
    index: Digest,
    amd64: Digest,
    signed: Digest,
    signature: Digest,
    sbom: Digest,
    untagged: Digest,
}

/// A referrer of `subject` with `artifact_type`, stored by digest.
async fn store_artifact(repository: &Repository, subject: &(Digest, usize), artifact_type: &str) -> Digest {
    let (empty, _) = store_blob(repository, b"{}".to_vec()).await;
    let (payload, size) = store_blob(repository, format!("{artifact_type} of {}", subject.0).into_bytes()).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_IMAGE_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": media_type::OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": payload, "size": size}],
        "subject": {"mediaType": media_type::OCI_IMAGE_MANIFEST, "digest": subject.0, "size": subject.1},
    });
    let raw = serde_json::to_vec(&manifest).unwrap();
    repository.put_manifest(&ManifestReference::Digest(Digest::sha256(&raw)), Bytes::from(raw), None).await.unwrap()
}

async fn fixtures(registry: &Registry) -> Fixtures {
    let app = registry.repository(&"team/app".parse().unwrap());
    // A two-platform index.
    let amd64 = store_image(&app, "amd64", 3000, None).await;
    let arm64 = store_image(&app, "arm64", 3000, None).await;
    let index = store_index(&app, &[(&amd64, "linux/amd64"), (&arm64, "linux/arm64")], "multi").await;
    // A signed image with an SBOM.
    let signed = store_image(&app, "signed", 5000, Some("v1.0.0")).await;
    let signature = store_signature(&app, &signed, "signed v1.0.0").await;
    let sbom = store_artifact(&app, &signed, "application/spdx+json").await;
    // An image no tag names.
    let (untagged, _) = store_image(&app, "untagged", 1000, None).await;
    // An image whose annotation and config hold markup.
    let config = store_blob(&app, br#"{"architecture":"amd64","os":"linux"}"#.to_vec()).await;
    let layer = store_blob(&app, b"hostile layer".to_vec()).await;
    let hostile = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_IMAGE_MANIFEST,
        "config": {"mediaType": media_type::OCI_IMAGE_CONFIG, "digest": config.0, "size": config.1},
        "layers": [{"mediaType": media_type::OCI_LAYER_TAR, "digest": layer.0, "size": layer.1}],
        "annotations": {"org.example.note": "<script>alert('annotation')</script>", "<b>key</b>": "x"},
    });
    app.put_manifest(&"hostile".parse().unwrap(), Bytes::from(serde_json::to_vec(&hostile).unwrap()), None)
        .await
        .unwrap();
    // Other repositories, for the catalog.
    for name in ["team/db", "other/tool"] {
        store_image(&registry.repository(&name.parse().unwrap()), name, 500, Some("latest")).await;
    }
    Fixtures { index, amd64: amd64.0, signed: signed.0, signature, sbom, untagged }
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

async fn page(target: &Target, path: &str) -> String {
    let reply = target.get(path).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", text(&reply));
    assert!(reply.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{path}");
    text(&reply)
}

fn query(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn pages_show_the_fixtures_and_escape_what_storage_holds() {
    let (registry, router) = app(ServerOptions::default());
    let fixtures = fixtures(&registry).await;
    let target = Target::in_process(router);

    // The catalog: every repository, with its tag count.
    let catalog = page(&target, "/ui/").await;
    for name in ["team/app", "team/db", "other/tool"] {
        assert!(catalog.contains(&format!("?name={}", query(name))), "{name}: {catalog}");
    }
    let filtered = page(&target, "/ui/?q=team").await;
    assert!(filtered.contains("2 repositories") && !filtered.contains(&query("other/tool")), "{filtered}");
    // `/ui` leads there too.
    assert_eq!(target.get("/ui").await.status, StatusCode::SEE_OTHER);

    // The repository: its tags with their platforms and badges.
    let repository = page(&target, &format!("/ui/repository?name={}", query("team/app"))).await;
    for tag in ["multi", "v1.0.0", "hostile"] {
        assert!(repository.contains(&format!("<td>{tag}</td>")), "{tag}: {repository}");
    }
    assert!(repository.contains("linux/amd64, linux/arm64"), "the index's platforms: {repository}");
    assert!(repository.contains(r#"class="badge signed""#) && repository.contains(r#"class="badge sbom""#));
    assert!(!repository.contains(&fixtures.untagged.to_string()), "untagged manifests only on request");
    let untagged = page(&target, &format!("/ui/repository?name={}&untagged=1", query("team/app"))).await;
    assert!(untagged.contains(&fixtures.untagged.to_string()), "{untagged}");
    // Sorted by size, largest first: the signed image's 5000-byte layers lead.
    let by_size = page(&target, &format!("/ui/repository?name={}&sort=size", query("team/app"))).await;
    let position = |text: &str, tag: &str| text.find(&format!("<td>{tag}</td>")).unwrap();
    assert!(position(&by_size, "v1.0.0") < position(&by_size, "hostile"), "{by_size}");

    // The index: its platforms, each linked; the pull commands.
    let index = page(&target, &format!("/ui/manifest?name={}&digest={}", query("team/app"), fixtures.index)).await;
    assert!(index.contains(&format!("digest={}", query(fixtures.amd64.as_str()))), "a link to each child: {index}");
    assert!(index.contains("linux/arm64"));
    assert!(index.contains("/team/app:multi") && index.contains(&format!("/team/app@{}", fixtures.index)));

    // The signed image: its referrers as a tree.
    let signed = page(&target, &format!("/ui/manifest?name={}&digest={}", query("team/app"), fixtures.signed)).await;
    assert!(signed.contains(&fixtures.signature.to_string()) && signed.contains(&fixtures.sbom.to_string()));
    assert!(signed.contains("application/spdx+json"));

    // The hostile annotation shows as text.
    let hostile_digest =
        registry.repository(&"team/app".parse().unwrap()).resolve(&"hostile".parse().unwrap()).await.unwrap();
    let hostile = page(&target, &format!("/ui/manifest?name={}&digest={}", query("team/app"), hostile_digest)).await;
    assert!(hostile.contains("&lt;script&gt;alert('annotation')&lt;/script&gt;"), "{hostile}");
    assert!(hostile.contains("&lt;b&gt;key&lt;/b&gt;"));
    assert!(!hostile.contains("<script>alert"), "markup from storage is never markup: {hostile}");

    // Storage: a bar for each repository, the largest first; nothing on record yet.
    assert!(page(&target, "/ui/storage").await.contains("No collection or retention run is on record"));
    let mut collect = wharf_registry::GcOptions::default();
    collect.grace_period = std::time::Duration::ZERO;
    registry.collect_garbage(&collect).await.unwrap();
    let storage = page(&target, "/ui/storage").await;
    assert!(storage.contains("garbage collection: "), "what the collection did: {storage}");
    assert_eq!(storage.matches("<rect").count(), 3, "{storage}");
    assert!(storage.find("team/app").unwrap() < storage.find("other/tool").unwrap());

    // What is not there, or not a name, is a 404 page.
    for path in [
        format!("/ui/repository?name={}", query("no/such")),
        "/ui/repository?name=BAD%20NAME".to_owned(),
        format!("/ui/manifest?name={}&digest=sha256:{}", query("team/app"), "0".repeat(64)),
        format!("/ui/manifest?name={}&digest=nonsense", query("team/app")),
    ] {
        assert_eq!(target.get(&path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    // Pages run no script but the filter's, and load nothing from elsewhere.
    let reply = target.get("/ui/").await;
    let policy = reply.header("content-security-policy").expect("a content security policy");
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'sha256-"), "{policy}");
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    // The stylesheet, and the page weight.
    let style = target.get("/ui/style.css").await;
    assert!(style.header("content-type").is_some_and(|t| t.starts_with("text/css")));
    assert!(repository.len() + style.body.len() < 100 << 10);
}

#[tokio::test]
async fn the_retention_preview_plans_and_applies_nothing() {
    let (registry, router) = app(ServerOptions::default());
    fixtures(&registry).await;
    let target = Target::in_process(router);
    let form = page(&target, "/ui/retention").await;
    assert!(form.contains("<textarea"), "{form}");
    let policy = "version: 1\nrules:\n  - name: drop-multi\n    repositories: ['team/**']\n    tags: { glob: 'multi' }\n    delete: {}\nlimits: { grace: 0s, max_delete_fraction: 1.0 }\n";
    let body = format!("policy={}", query(policy));
    let reply = target
        .send(Method::POST, "/ui/retention", &[("content-type", "application/x-www-form-urlencoded")], body)
        .await;
    let preview = text(&reply);
    assert_eq!(reply.status, StatusCode::OK, "{preview}");
    assert!(preview.contains(r#"<tr class="delete">"#), "deletions highlighted: {preview}");
    assert!(preview.contains("drop-multi"), "{preview}");
    // Nothing was applied.
    let app = registry.repository(&"team/app".parse().unwrap());
    for tag in ["multi", "hostile", "v1.0.0"] {
        app.resolve(&tag.parse().unwrap()).await.unwrap();
    }
    assert!(registry.maintenance_records().await.unwrap().is_empty(), "a preview is no run");
    // A bad policy is named, not applied.
    let reply = target
        .send(
            Method::POST,
            "/ui/retention",
            &[("content-type", "application/x-www-form-urlencoded")],
            "policy=retention%3A%207",
        )
        .await;
    assert!(text(&reply).contains("The policy is not valid"), "{}", text(&reply));
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn only_what_the_credentials_may_pull_is_shown() {
    // htpasswd: nothing without the right password.
    let hash = bcrypt::hash("secret", 4).unwrap();
    let htpasswd = wharf_server::Htpasswd::parse("console", &format!("alice:{hash}\n"), "test").unwrap();
    let (registry, router) = app(ServerOptions::default().with_htpasswd(Some(htpasswd)));
    fixtures(&registry).await;
    let target = Target::in_process(router);
    let wrong = basic("alice", "wrong");
    for path in ["/ui/", "/ui/repository?name=team%2Fapp", "/ui/storage", "/ui/retention"] {
        for headers in [vec![], vec![("authorization", wrong.as_str())]] {
            let reply = target.send(Method::GET, path, &headers, Bytes::new()).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
            assert!(reply.header("www-authenticate").is_some_and(|c| c.starts_with("Basic ")), "{path}");
            assert!(!text(&reply).contains("team/app") && !text(&reply).contains("team/db"), "{path}");
        }
    }
    let right = basic("alice", "secret");
    let reply = target.send(Method::GET, "/ui/", &[("authorization", right.as_str())], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(text(&reply).contains("team%2Fapp"));

    // Tokens: a token that may pull team/db sees team/db alone.
    let tokens = wharf_testing::tokens::token_registry(std::time::Duration::from_secs(60), false).await;
    fixtures(&tokens.registry).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", tokens.host);
    let anonymous = http.get(url("/ui/")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let realm = challenge.split("realm=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_owned();
    assert!(!anonymous.text().await.unwrap().contains("team/"));
    let answer = http
        .get(format!("{realm}?service=wharf-registry&scope=repository:team/db:pull"))
        .header("authorization", basic("alice", "secret"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let bearer = format!("Bearer {}", answer["token"].as_str().unwrap());
    let get = |path: &str| http.get(url(path)).header("authorization", bearer.clone()).send();
    let catalog = get("/ui/").await.unwrap().text().await.unwrap();
    assert!(catalog.contains("1 repository") && catalog.contains("team%2Fdb"), "{catalog}");
    assert!(!catalog.contains("team%2Fapp") && !catalog.contains("other%2Ftool"), "{catalog}");
    assert_eq!(get("/ui/repository?name=team%2Fapp").await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(get("/ui/repository?name=team%2Fdb").await.unwrap().status(), StatusCode::OK);
    let storage = get("/ui/storage").await.unwrap().text().await.unwrap();
    assert_eq!(storage.matches("<rect").count(), 1, "{storage}");
    // A forged token: nothing.
    let forged = http.get(url("/ui/")).header("authorization", "Bearer not.a.token").send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_catalog_pages_through_every_repository() {
    let (registry, router) = app(ServerOptions::default());
    let mut names: Vec<String> = (0..120).map(|i| format!("many/r{i:03}")).collect();
    names.push("other/one".to_owned());
    for name in &names {
        store_image(&registry.repository(&name.parse().unwrap()), name, 10, Some("v1")).await;
    }
    let target = Target::in_process(router);
    // Unfiltered and filtered, the Next links lead through every repository once, in order.
    for (filter, expected) in [("", names.clone()), ("many/", names[..120].to_vec())] {
        let mut seen = Vec::new();
        let mut path = format!("/ui/?q={}", query(filter));
        loop {
            let html = page(&target, &path).await;
            for row in html.split("<tr data-name=\"").skip(1) {
                seen.push(row.split('"').next().unwrap().to_owned());
            }
            match html.split("rel=\"next\" href=\"").nth(1) {
                Some(rest) => path = rest.split('"').next().unwrap().replace("&amp;", "&"),
                None => break,
            }
        }
        let mut sorted = expected.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "filter {filter:?}");
        if !filter.is_empty() {
            assert!(page(&target, &format!("/ui/?q={}", query(filter))).await.contains("120 repositories"));
        }
    }
}

#[tokio::test]
async fn the_servers_own_policy_is_offered_by_name() {
    let policy = "version: 1\nrules:\n  - name: server-rule\n    tags: { glob: 'latest' }\n    delete: {}\nlimits: { grace: 0s, max_delete_fraction: 1.0 }\n";
    let mut options = ServerOptions::default();
    options.policy = Some(std::sync::Arc::new(wharf_policy::Policy::from_yaml(policy).unwrap()));
    let (registry, router) = app(options);
    fixtures(&registry).await;
    let target = Target::in_process(router);
    let form = page(&target, "/ui/retention").await;
    assert!(form.contains("the server&#39;s policy") || form.contains("the server's policy"), "{form}");
    let preview = page(&target, &format!("/ui/retention?known={}", query("the server's policy (policy:)"))).await;
    assert!(preview.contains("server-rule") && preview.contains(r#"<tr class="delete">"#), "{preview}");
    let unknown = page(&target, "/ui/retention?known=nonsense").await;
    assert!(unknown.contains("the server knows no policy"), "{unknown}");
    // The GET form of a preview applies nothing either.
    registry.repository(&"team/db".parse().unwrap()).resolve(&"latest".parse().unwrap()).await.unwrap();
}
