//! Token authentication: bearer JWTs verified against a JSON web key set, with their
//! `access` claims enforced per repository and action.

use wharf_testing::http as common;
use wharf_testing::peers;

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use common::{Target, app, sha256};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use wharf_server::{ServerOptions, TokenAuth};

/// A signing key and its JWKS entry.
struct Signer {
    key: EncodingKey,
    jwk: serde_json::Value,
}

fn signer(kid: &str) -> Signer {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    Signer { key: EncodingKey::from_ec_der(pkcs8.as_ref()), jwk }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

impl Signer {
    /// A token granting `access` (`[(type, name, [actions])]`).
    fn token(&self, access: &[(&str, &str, &[&str])], tweak: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut claims = serde_json::json!({
            "iss": "wharf-test-issuer", "sub": "tester", "aud": "wharf-registry",
            "exp": now() + 300, "nbf": now() - 10, "iat": now(),
            "access": access.iter().map(|(kind, name, actions)| serde_json::json!({"type": kind, "name": name, "actions": actions})).collect::<Vec<_>>(),
        });
        tweak(&mut claims);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = self.jwk["kid"].as_str().map(str::to_owned);
        format!("Bearer {}", jsonwebtoken::encode(&header, &claims, &self.key).unwrap())
    }
}

fn token_auth(signer: &Signer) -> TokenAuth {
    let jwks = serde_json::json!({ "keys": [signer.jwk] }).to_string();
    TokenAuth::new("https://auth.example.com/token", "wharf-registry", "wharf-test-issuer", None, Some(&jwks)).unwrap()
}

fn challenge(reply: &common::Reply) -> String {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.error_code(), "UNAUTHORIZED");
    reply.header("www-authenticate").expect("a challenge").to_owned()
}

#[tokio::test]
async fn scopes_are_enforced_per_repository_and_action() {
    let signer = signer("key-1");
    let (_, router) = app(ServerOptions::default().with_delete_enabled(true).with_token(Some(token_auth(&signer))));
    let target = Target::in_process(router);
    let manifest_path = "/v2/team/app/manifests/latest";

    // No token: the challenge says where to get one and for what.
    let reply = target.get(manifest_path).await;
    assert_eq!(
        challenge(&reply),
        "Bearer realm=\"https://auth.example.com/token\",service=\"wharf-registry\",scope=\"repository:team/app:pull\""
    );
    let reply = target.send(Method::POST, "/v2/team/app/blobs/uploads/", &[], Bytes::new()).await;
    assert!(challenge(&reply).ends_with("scope=\"repository:team/app:pull,push\""));
    let reply = target.get("/v2/_catalog").await;
    assert!(challenge(&reply).ends_with("scope=\"registry:catalog:*\""));
    // `/v2/` needs a valid token and no scope.
    assert!(!challenge(&target.get("/v2/").await).contains("scope="));

    let pull = signer.token(&[("repository", "team/app", &["pull"])], |_| {});
    let push = signer.token(&[("repository", "team/app", &["pull", "push"])], |_| {});
    let everything = signer.token(&[("repository", "team/app", &["*"]), ("registry", "catalog", &["*"])], |_| {});
    let other = signer.token(&[("repository", "team/other", &["pull", "push", "delete"])], |_| {});
    let with = |token: &str| vec![("authorization", token.to_owned())];
    let send = async |method: Method, path: &str, token: &str, body: Vec<u8>| {
        let headers = with(token);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        target.send(method, path, &headers, body).await
    };

    assert_eq!(send(Method::GET, "/v2/", &pull, vec![]).await.status, StatusCode::OK);
    // Pull grants reads only.
    assert_eq!(send(Method::GET, manifest_path, &pull, vec![]).await.status, StatusCode::NOT_FOUND);
    let refused = send(Method::POST, "/v2/team/app/blobs/uploads/", &pull, vec![]).await;
    assert!(challenge(&refused).contains("error=\"insufficient_scope\""));
    // Push grants uploads, not deletes.
    let digest = sha256(b"layer");
    let pushed =
        send(Method::POST, &format!("/v2/team/app/blobs/uploads/?digest={digest}"), &push, b"layer".to_vec()).await;
    assert_eq!(pushed.status, StatusCode::CREATED);
    let refused = send(Method::DELETE, &format!("/v2/team/app/blobs/{digest}"), &push, vec![]).await;
    assert!(challenge(&refused).contains("scope=\"repository:team/app:delete\""));
    // A token for another repository grants nothing here; the catalog needs its own scope.
    challenge(&send(Method::GET, manifest_path, &other, vec![]).await);
    challenge(&send(Method::GET, "/v2/_catalog", &push, vec![]).await);
    assert_eq!(send(Method::GET, "/v2/_catalog", &everything, vec![]).await.status, StatusCode::OK);
    assert_eq!(
        send(Method::DELETE, &format!("/v2/team/app/blobs/{digest}"), &everything, vec![]).await.status,
        StatusCode::ACCEPTED
    );

    // Mounting needs pull on the source as well.
    let mount = format!("/v2/team/other/blobs/uploads/?mount={digest}&from=team/app");
    let refused = send(Method::POST, &mount, &other, vec![]).await;
    assert!(challenge(&refused).contains("repository:team/app:pull"));
    // A mount without `from` would reach past the scopes: it becomes an upload instead.
    let anonymous = send(Method::POST, &format!("/v2/team/other/blobs/uploads/?mount={digest}"), &other, vec![]).await;
    assert_eq!(anonymous.status, StatusCode::ACCEPTED);
    let blob = send(Method::GET, &format!("/v2/team/other/blobs/{digest}"), &other, vec![]).await;
    assert_eq!(blob.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_tokens_are_refused() {
    let trusted = signer("key-1");
    let stranger = signer("key-1");
    let (_, router) = app(ServerOptions::default().with_token(Some(token_auth(&trusted))));
    let target = Target::in_process(router);
    let access: &[(&str, &str, &[&str])] = &[("repository", "a", &["pull"])];
    let cases = [
        ("expired", trusted.token(access, |c| c["exp"] = (now() - 600).into())),
        ("not yet valid", trusted.token(access, |c| c["nbf"] = (now() + 600).into())),
        ("another issuer", trusted.token(access, |c| c["iss"] = "someone-else".into())),
        ("another service", trusted.token(access, |c| c["aud"] = "another-registry".into())),
        ("an untrusted key", stranger.token(access, |_| {})),
        ("no expiry", trusted.token(access, |c| c.as_object_mut().unwrap().retain(|k, _| k != "exp"))),
        ("garbage", "Bearer not.a.token".to_owned()),
    ];
    for (what, token) in cases {
        let reply =
            target.send(Method::GET, "/v2/a/tags/list", &[("authorization", token.as_str())], Bytes::new()).await;
        assert!(challenge(&reply).contains("error=\"invalid_token\""), "a token with {what} was accepted");
    }
    let good = trusted.token(access, |_| {});
    let reply = target.send(Method::GET, "/v2/a/tags/list", &[("authorization", good.as_str())], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "a good token was refused");
    // Basic credentials are no token.
    let basic =
        target.send(Method::GET, "/v2/a/tags/list", &[("authorization", "Basic dXNlcjpwYXNz")], Bytes::new()).await;
    challenge(&basic);
}

/// `rootcertbundle`: the token server's certificate, made by openssl, verifies its RS256
/// tokens; the server loads it from Distribution's configuration.
#[tokio::test]
async fn root_certificate_bundle_from_the_configuration() {
    if !peers::has_peer("openssl", "root_certificate_bundle_from_the_configuration") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("openssl")
        .args(["req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout"])
        .arg(dir.path().join("token.key"))
        .args(["-x509", "-days", "2", "-out"])
        .arg(dir.path().join("token.crt"))
        .args(["-subj", "/CN=token-issuer"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let yaml = format!(
        "version: 0.1\nstorage: {{inmemory: {{}}}}\nauth:\n  token:\n    realm: https://auth.example.com/token\n    service: wharf-registry\n    issuer: wharf-test-issuer\n    rootcertbundle: {}\n",
        dir.path().join("token.crt").display()
    );
    let config = wharf_server::Config::from_yaml(&yaml, "test", Vec::new()).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let registry = wharf_registry::Registry::new(
        std::sync::Arc::new(wharf_storage::MemoryDriver::new()),
        wharf_registry::RegistryOptions::default(),
    );
    let target = Target::in_process(wharf_server::router(registry, config.server));
    let key = EncodingKey::from_rsa_pem(&std::fs::read(dir.path().join("token.key")).unwrap()).unwrap();
    let claims = serde_json::json!({
        "iss": "wharf-test-issuer", "aud": "wharf-registry", "sub": "ci", "exp": now() + 300,
        "access": [{"type": "repository", "name": "a", "actions": ["pull"]}],
    });
    let token = format!("Bearer {}", jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap());
    let reply = target.send(Method::GET, "/v2/a/tags/list", &[("authorization", token.as_str())], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{:?}", String::from_utf8_lossy(&reply.body));
    let reply = target.send(Method::GET, "/v2/b/tags/list", &[("authorization", token.as_str())], Bytes::new()).await;
    challenge(&reply);
}
