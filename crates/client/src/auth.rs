//! Answering a registry's challenge: what a host asked for (nothing, `Basic` or a `Bearer`
//! token from a token server), and the tokens fetched for it, cached per set of scopes
//! until shortly before they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use crate::challenge::Challenge;
use crate::credentials::{Credential, CredentialSource};
use crate::error::{Error, Result};

/// How long a token lives when its server does not say (the distribution token spec's 60 s).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A token is renewed when less than this share of its life is left, so a request never
/// leaves with a token that expires on the way.
const RENEW_WHEN_LEFT: u32 = 10;

/// The client id sent with OAuth2 token requests.
const CLIENT_ID: &str = "wharf";

/// Access to one repository, as a token server's `scope` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    /// `repository:<name>:pull`.
    pub fn pull(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:pull"))
    }

    /// `repository:<name>:pull,push`.
    pub fn push(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:pull,push"))
    }

    /// `repository:<name>:delete`.
    pub fn delete(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:delete"))
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Scope {
        Scope("registry:catalog:*".into())
    }

    /// A scope as the server wrote it (in a challenge's `scope`).
    pub fn raw(scope: &str) -> Scope {
        Scope(scope.to_owned())
    }

    /// The scope's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a host asked for when it last refused a request.
#[derive(Debug, Clone)]
enum Scheme {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// A token and when it should be renewed.
#[derive(Debug, Clone)]
struct Token {
    value: String,
    renew_at: Instant,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// The authentication state shared by every request of a client.
#[derive(Debug)]
pub(crate) struct Auth {
    credentials: Arc<dyn CredentialSource>,
    http: reqwest::Client,
    schemes: Mutex<HashMap<String, Scheme>>,
    tokens: Mutex<HashMap<(String, Vec<Scope>), TokenSlot>>,
}

impl Auth {
    pub(crate) fn new(credentials: Arc<dyn CredentialSource>, http: reqwest::Client) -> Auth {
        Auth { credentials, http, schemes: Mutex::default(), tokens: Mutex::default() }
    }

    /// The `Authorization` to send to `host` for `scopes`, from what the host asked for
    /// before; `None` while it has asked for nothing.
    pub(crate) async fn authorization(&self, host: &str, scopes: &[Scope]) -> Result<Option<HeaderValue>> {
        let scheme = self.schemes.lock().unwrap_or_else(PoisonError::into_inner).get(host).cloned();
        match scheme {
            None => Ok(None),
            Some(Scheme::Basic) => match self.credential(host).await? {
                Some(Credential::Basic { username, password }) => Ok(Some(basic_header(&username, &password))),
                Some(Credential::RegistryToken(token)) => Ok(Some(bearer_header(&token)?)),
                Some(Credential::IdentityToken(_)) | None => Ok(None),
            },
            Some(Scheme::Bearer { realm, service }) => {
                let token = self.token(host, scopes, &realm, service.as_deref()).await?;
                Ok(Some(bearer_header(&token)?))
            }
        }
    }

    /// Learns from a 401's challenges what `host` asks for, and forgets the token that was
    /// refused. Returns whether a retry can succeed (the host named a scheme the client can
    /// answer and there is something new to send).
    pub(crate) fn challenged(&self, host: &str, scopes: &[Scope], header: Option<&str>) -> Result<bool> {
        let Some(header) = header else { return Ok(false) };
        let challenges = Challenge::parse_all(header)?;
        let scheme = if let Some(bearer) = challenges.iter().find(|c| c.is("Bearer")) {
            let realm = bearer.param("realm").ok_or_else(|| Error::Challenge {
                header: header.chars().take(200).collect(),
                reason: "a Bearer challenge without a realm".into(),
            })?;
            Scheme::Bearer { realm: realm.to_owned(), service: bearer.param("service").map(str::to_owned) }
        } else if challenges.iter().any(|c| c.is("Basic")) {
            Scheme::Basic
        } else {
            return Ok(false);
        };
        let mut schemes = self.schemes.lock().unwrap_or_else(PoisonError::into_inner);
        let known = schemes.insert(host.to_owned(), scheme.clone());
        drop(schemes);
        let had_token =
            self.tokens.lock().unwrap_or_else(PoisonError::into_inner).remove(&token_key(host, scopes)).is_some();
        // A first challenge always deserves a try; a repeated Basic one means the password
        // was refused; a repeated Bearer one is worth one new token.
        Ok(match (known, scheme) {
            (None, _) => true,
            (Some(_), Scheme::Basic) => false,
            (Some(_), Scheme::Bearer { .. }) => had_token,
        })
    }

    async fn credential(&self, host: &str) -> Result<Option<Credential>> {
        self.credentials.credential(host).await
    }

    /// A token for `scopes` on `host`: the cached one while it is fresh, otherwise one new
    /// from `realm` (one request at a time per host and scopes).
    async fn token(&self, host: &str, scopes: &[Scope], realm: &str, service: Option<&str>) -> Result<String> {
        let slot = {
            let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
            tokens.entry(token_key(host, scopes)).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(token) = slot.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(token.value.clone());
        }
        let token = self.fetch_token(host, scopes, realm, service).await?;
        let value = token.value.clone();
        *slot = Some(token);
        Ok(value)
    }

    async fn fetch_token(&self, host: &str, scopes: &[Scope], realm: &str, service: Option<&str>) -> Result<Token> {
        let fail = |reason: String| Error::Token { realm: realm.to_owned(), reason };
        let url = reqwest::Url::parse(realm).map_err(|e| fail(format!("not an address: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail("not an http(s) address".into()));
        }
        let scope = scopes.iter().map(Scope::as_str).collect::<Vec<_>>();
        let started = Instant::now();
        let request = match self.credential(host).await? {
            Some(Credential::RegistryToken(token)) => {
                return Ok(Token { value: token, renew_at: started + Duration::from_secs(u64::from(u32::MAX)) });
            }
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
                form.push(("client_id", CLIENT_ID));
                let joined = scope.join(" ");
                if let Some(service) = service {
                    form.push(("service", service));
                }
                if !joined.is_empty() {
                    form.push(("scope", joined.as_str()));
                }
                let body = serde_urlencoded_form(&form);
                self.http
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            credential => {
                let mut url = url.clone();
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = service {
                        query.append_pair("service", service);
                    }
                    for scope in &scope {
                        query.append_pair("scope", scope);
                    }
                    if let Some(Credential::Basic { username, .. }) = &credential {
                        query.append_pair("account", username);
                    }
                }
                let request = self.http.get(url);
                match credential {
                    Some(Credential::Basic { username, password }) => request.basic_auth(username, Some(password)),
                    _ => request,
                }
            }
        };
        let response = request.send().await.map_err(|e| fail(format!("cannot reach it: {e}")))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| fail(format!("answer cut short: {e}")))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(fail(format!("answered {status}: {}", text.trim().chars().take(200).collect::<String>())));
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| fail(format!("not a token answer: {e}")))?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("the answer holds no token".into()))?;
        bearer_header(&value).map_err(|_| fail("the token is not a header value".into()))?;
        let lifetime = answer.expires_in.filter(|&s| s > 0).map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        let renew_at = started + lifetime.saturating_sub(lifetime / RENEW_WHEN_LEFT);
        Ok(Token { value, renew_at })
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

fn token_key(host: &str, scopes: &[Scope]) -> (String, Vec<Scope>) {
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    (host.to_owned(), scopes)
}

fn basic_header(username: &str, password: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

fn bearer_header(token: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::Token { realm: String::new(), reason: "the token is not a header value".into() })?;
    value.set_sensitive(true);
    Ok(value)
}

fn serde_urlencoded_form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}
