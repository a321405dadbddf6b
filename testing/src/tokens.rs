//! A registry with token authentication and the token server it trusts, for tests of
//! clients, mirrors and replication that must get and renew tokens.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use wharf_server::{ServerOptions, TokenAuth};

/// A token server for the tests: grants what is asked to `alice:secret`, signing tokens
/// that the registry accepts for `lifetime` while telling the client they last a minute,
/// so they expire in the middle of a transfer.
#[derive(Clone)]
struct TokenServer {
    key: Arc<jsonwebtoken::EncodingKey>,
    lifetime: Duration,
    issued: Arc<AtomicU64>,
    garbage: bool,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn issue_token(
    State(server): State<TokenServer>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> axum::response::Response {
    use base64::Engine as _;
    if server.garbage {
        return (StatusCode::OK, "<html>this is no token</html>").into_response();
    }
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:secret"));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, "{\"details\":\"wrong credentials\"}").into_response();
    }
    let scopes: Vec<String> =
        query.iter().filter(|(name, _)| name == "scope").map(|(_, scope)| scope.clone()).collect();
    let token = sign(&server, &scopes);
    axum::Json(serde_json::json!({"token": token, "expires_in": 60})).into_response()
}

/// A token granting the access `scopes` name, valid at the registry for the server's lifetime.
fn sign(server: &TokenServer, scopes: &[String]) -> String {
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .flat_map(|scope| scope.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|scope| {
            let mut parts = scope.rsplitn(2, ':');
            let actions = parts.next()?;
            let (kind, name) = parts.next()?.split_once(':')?;
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let exp = now() + server.lifetime.as_secs();
    let claims = serde_json::json!({
        "iss": "wharf-test-issuer", "sub": "alice", "aud": "wharf-registry",
        "exp": exp, "nbf": now() - 10, "iat": now(), "access": access,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("key-1".into());
    let token = jsonwebtoken::encode(&header, &claims, &server.key).unwrap();
    server.issued.fetch_add(1, Ordering::Relaxed);
    token
}

/// The OAuth2 side: a refresh token (docker's `identitytoken`) exchanged for an access token.
async fn refresh_token(State(server): State<TokenServer>, body: String) -> axum::response::Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || form.get("refresh_token").map(String::as_str) != Some("refresh-for-alice")
        || !form.contains_key("client_id")
    {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"invalid_grant\"}").into_response();
    }
    let scopes: Vec<String> = form.get("scope").cloned().into_iter().collect();
    let token = sign(&server, &scopes);
    axum::Json(serde_json::json!({"access_token": token, "expires_in": 60, "scope": form.get("scope")})).into_response()
}

/// A wharf-server over memory with token authentication, deletes on, and its token server
/// (which grants what is asked to `alice:secret`), both on loopback.
pub struct TokenRegistry {
    /// Where the registry listens: `127.0.0.1:<port>`.
    pub host: String,
    /// Tokens issued so far.
    pub issued: Arc<AtomicU64>,
    /// What the registry serves.
    pub registry: wharf_registry::Registry,
}

/// Starts a [`TokenRegistry`] whose tokens the registry accepts for `lifetime` (the client
/// is told a minute); a `garbage` token server answers with no token at all. The servers run
/// on the test's runtime.
pub async fn token_registry(lifetime: Duration, garbage: bool) -> TokenRegistry {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine as _;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": "key-1", "alg": "ES256", "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    let issued = Arc::new(AtomicU64::new(0));
    let server = TokenServer {
        key: Arc::new(jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref())),
        lifetime,
        issued: issued.clone(),
        garbage,
    };
    let token_host =
        serve(Router::new().route("/token", get(issue_token).post(refresh_token)).with_state(server)).await;
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    let realm = format!("http://{token_host}/token");
    let auth = TokenAuth::new(&realm, "wharf-registry", "wharf-test-issuer", None, Some(&jwks)).unwrap();
    let (registry, router) =
        crate::http::app(ServerOptions::default().with_delete_enabled(true).with_token(Some(auth)));
    let host = serve(router).await;
    TokenRegistry { host, issued, registry }
}

/// Serves `router` on a free loopback port; returns `127.0.0.1:<port>`.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    host
}
