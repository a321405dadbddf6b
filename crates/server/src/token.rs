//! `auth.token`: bearer tokens (JWTs) issued by a token server, as Distribution takes them.
//!
//! A request without a token is answered `401` with a `Bearer` challenge naming the realm
//! (the token server), the service, and the scope the request needs
//! (`repository:<name>:pull,push`), which is what clients ask the token server for. A token
//! must be signed by a trusted key (from `rootcertbundle` certificates or a `jwks` file),
//! be issued by `issuer` for `service`, be within its validity, and grant in its `access`
//! claim every action the request needs.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::auth::Identity;
use crate::error::{ApiError, ErrorCode};

/// One permission a request needs: `repository:team/app:push`, `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository` or `registry`.
    pub kind: &'static str,
    /// The repository name, or `catalog`.
    pub name: String,
    /// `pull`, `push`, `delete` or `*`.
    pub action: &'static str,
}

impl Scope {
    /// An action on a repository.
    pub fn repository(name: &str, action: &'static str) -> Scope {
        Scope { kind: "repository", name: name.to_owned(), action }
    }
}

/// What `auth.token` says, with the trusted keys loaded.
#[derive(Clone)]
pub struct TokenAuth {
    realm: String,
    service: String,
    issuer: String,
    keys: Arc<Vec<TrustedKey>>,
}

struct TrustedKey {
    id: Option<String>,
    key: DecodingKey,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth")
            .field("realm", &self.realm)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// The claims Distribution's token servers write.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    access: Vec<Access>,
}

#[derive(Debug, Deserialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    actions: Vec<String>,
}

/// Signature algorithms a token may use: public-key ones only (a shared secret is not
/// something Distribution's configuration can hold).
const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl TokenAuth {
    /// Trusts the keys of the certificates in `root_certificates` (PEM) and of `jwks` (a
    /// JSON web key set).
    ///
    /// # Errors
    /// A message saying which certificate or key cannot be used, or that there is none.
    pub fn new(
        realm: &str,
        service: &str,
        issuer: &str,
        root_certificates: Option<&str>,
        jwks: Option<&str>,
    ) -> Result<TokenAuth, String> {
        let mut keys = Vec::new();
        if let Some(pem) = root_certificates {
            for (index, block) in pem_blocks(pem, "CERTIFICATE").into_iter().enumerate() {
                let key = DecodingKey::from_rsa_pem(block.as_bytes())
                    .or_else(|_| DecodingKey::from_ec_pem(block.as_bytes()))
                    .or_else(|_| DecodingKey::from_ed_pem(block.as_bytes()))
                    .map_err(|e| format!("certificate {} of rootcertbundle: {e}", index + 1))?;
                keys.push(TrustedKey { id: None, key });
            }
        }
        if let Some(jwks) = jwks {
            let set: JwkSet = serde_json::from_str(jwks).map_err(|e| format!("jwks: {e}"))?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                    format!("jwks key {}: {e}", jwk.common.key_id.as_deref().unwrap_or("without a kid"))
                })?;
                keys.push(TrustedKey { id: jwk.common.key_id.clone(), key });
            }
        }
        if keys.is_empty() {
            return Err("no trusted key: rootcertbundle or jwks must hold at least one".into());
        }
        Ok(TokenAuth {
            realm: realm.to_owned(),
            service: service.to_owned(),
            issuer: issuer.to_owned(),
            keys: Arc::new(keys),
        })
    }

    /// Checks the request's bearer token against what it needs.
    ///
    /// # Errors
    /// `UNAUTHORIZED` with a challenge carrying the scope: no token, an invalid one, or one
    /// that does not grant every scope.
    pub fn authorize(&self, headers: &HeaderMap, needs: &[Scope]) -> Result<Identity, ApiError> {
        let token = bearer(headers);
        let Some(token) = token else {
            return Err(self.challenge(needs, None, "authentication required"));
        };
        let claims = self.verify(token).map_err(|e| self.challenge(needs, Some("invalid_token"), &e))?;
        for need in needs {
            let granted = claims.access.iter().any(|access| {
                access.kind == need.kind
                    && access.name == need.name
                    && access.actions.iter().any(|a| a == need.action || a == "*")
            });
            if !granted {
                let message = format!("the token does not grant {}:{}:{}", need.kind, need.name, need.action);
                return Err(self.challenge(needs, Some("insufficient_scope"), &message));
            }
        }
        Ok(Identity { user: if claims.sub.is_empty() { "-".to_owned() } else { claims.sub } })
    }

    /// Who the request's bearer token names, and the repositories it lets them pull.
    ///
    /// # Errors
    /// `UNAUTHORIZED` with a challenge: no token, or an invalid one.
    pub fn pulls(&self, headers: &HeaderMap) -> Result<(Identity, Vec<String>), ApiError> {
        let token = bearer(headers);
        let Some(token) = token else {
            return Err(self.challenge(&[], None, "authentication required"));
        };
        let claims = self.verify(token).map_err(|e| self.challenge(&[], Some("invalid_token"), &e))?;
        let names = claims
            .access
            .iter()
            .filter(|a| a.kind == "repository" && a.actions.iter().any(|action| action == "pull" || action == "*"))
            .map(|a| a.name.clone())
            .collect();
        Ok((Identity { user: if claims.sub.is_empty() { "-".to_owned() } else { claims.sub } }, names))
    }

    fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(format!("tokens signed with {:?} are not accepted", header.alg));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        // A key id picks its key; without one (or an unknown one) every trusted key is tried.
        let named: Vec<&TrustedKey> = self.keys.iter().filter(|k| header.kid.is_some() && k.id == header.kid).collect();
        let candidates: Vec<&TrustedKey> = if named.is_empty() { self.keys.iter().collect() } else { named };
        let mut last = String::from("no trusted key verifies its signature");
        for candidate in candidates {
            match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    match e.kind() {
                        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {}
                        _ => last = e.to_string(),
                    }
                }
            }
        }
        Err(last)
    }

    fn challenge(&self, needs: &[Scope], error: Option<&str>, message: &str) -> ApiError {
        let mut value = format!("Bearer realm=\"{}\",service=\"{}\"", self.realm, self.service);
        let scope = scope_text(needs);
        if !scope.is_empty() {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error=\"{error}\""));
        }
        ApiError::new(ErrorCode::Unauthorized, message).with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer")),
        )
    }
}

/// `repository:a:pull,push repository:b:pull`: the scopes, actions of one resource joined.
fn scope_text(needs: &[Scope]) -> String {
    let mut resources: Vec<(String, Vec<&str>)> = Vec::new();
    for need in needs {
        let resource = format!("{}:{}", need.kind, need.name);
        match resources.iter_mut().find(|(r, _)| *r == resource) {
            Some((_, actions)) if !actions.contains(&need.action) => actions.push(need.action),
            Some(_) => {}
            None => resources.push((resource, vec![need.action])),
        }
    }
    resources
        .iter()
        .map(|(resource, actions)| format!("{resource}:{}", actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The PEM blocks of one kind in a bundle.
fn pem_blocks(text: &str, label: &str) -> Vec<String> {
    let (begin, end) = (format!("-----BEGIN {label}-----"), format!("-----END {label}-----"));
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let Some(stop) = rest[start..].find(&end) else { break };
        blocks.push(rest[start..start + stop + end.len()].to_owned());
        rest = &rest[start + stop + end.len()..];
    }
    blocks
}

/// The request's bearer token, if it sends one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_grouped_by_resource() {
        let needs = [
            Scope::repository("a", "pull"),
            Scope::repository("a", "push"),
            Scope::repository("b", "pull"),
            Scope::repository("a", "pull"),
        ];
        assert_eq!(scope_text(&needs), "repository:a:pull,push repository:b:pull");
    }

    #[test]
    fn refuses_a_configuration_without_keys() {
        let e = TokenAuth::new("https://auth", "registry", "issuer", Some("not a certificate"), None).unwrap_err();
        assert!(e.contains("no trusted key"), "{e}");
        let e = TokenAuth::new("https://auth", "registry", "issuer", None, Some("{\"keys\": [{\"kty\": \"RSA\"}]}"))
            .unwrap_err();
        assert!(e.starts_with("jwks"), "{e}");
    }
}
