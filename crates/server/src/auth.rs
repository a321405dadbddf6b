//! Who may use the API: `auth.htpasswd` (HTTP basic against bcrypt entries).
//!
//! Every request, `/v2/` included, must carry valid credentials; anything else is answered
//! `401 UNAUTHORIZED` with a `WWW-Authenticate` challenge, before the path is even read.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::error::{ApiError, ErrorCode};

/// A user who proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name.
    pub user: String,
}

/// Users and their bcrypt hashes, read from an htpasswd file.
#[derive(Clone)]
pub struct Htpasswd {
    realm: String,
    users: Arc<HashMap<String, String>>,
    /// Digests of credentials already verified, so that bcrypt (slow on purpose) runs once
    /// per user and password rather than once per request.
    verified: Arc<Mutex<HashSet<[u8; 32]>>>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd").field("realm", &self.realm).field("users", &self.users.len()).finish_non_exhaustive()
    }
}

/// Why an htpasswd file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HtpasswdError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `user:bcrypt-hash`.
    #[error("{path} line {line}: {message}")]
    Entry {
        /// The file.
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

impl Htpasswd {
    /// Reads `path`, whose lines are `user:$2y$…` (bcrypt, the only kind Distribution takes).
    ///
    /// # Errors
    /// [`HtpasswdError`] naming the file and line.
    pub fn from_file(realm: &str, path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read { path: shown.clone(), source })?;
        Htpasswd::parse(realm, &text, &shown)
    }

    /// Reads htpasswd text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`HtpasswdError::Entry`] for a line that is not `user:bcrypt-hash`.
    pub fn parse(realm: &str, text: &str, origin: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = |message: &str| HtpasswdError::Entry {
                path: origin.to_owned(),
                line: number + 1,
                message: message.to_owned(),
            };
            let (user, hash) = line.split_once(':').ok_or_else(|| entry("expected user:hash"))?;
            if user.is_empty() {
                return Err(entry("the user name is empty"));
            }
            if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) || hash.len() != 60 {
                return Err(entry("only bcrypt hashes ($2y$…, as `htpasswd -B` writes) are supported"));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Htpasswd { realm: realm.to_owned(), users: Arc::new(users), verified: Arc::default() })
    }

    /// The user the request's basic credentials prove, or the 401 to answer.
    ///
    /// # Errors
    /// `UNAUTHORIZED` with a `Basic` challenge for missing, malformed or wrong credentials.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, ApiError> {
        let challenge = |message: &str| {
            let value = format!("Basic realm=\"{}\"", self.realm.replace('"', "'"));
            ApiError::new(ErrorCode::Unauthorized, message).with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Basic")),
            )
        };
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Err(challenge("authentication required"));
        };
        let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
            return Err(challenge("expected basic credentials"));
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| challenge("malformed basic credentials"))?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| challenge("malformed basic credentials"))?;
        let Some(hash) = self.users.get(user).cloned() else {
            return Err(challenge("invalid user name or password"));
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user)
            .chain_update([0])
            .chain_update(password)
            .chain_update([0])
            .chain_update(&hash)
            .finalize()
            .into();
        if self.verified.lock().unwrap_or_else(PoisonError::into_inner).contains(&key) {
            return Ok(Identity { user: user.to_owned() });
        }
        let password = password.to_owned();
        let valid = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if !valid {
            return Err(challenge("invalid user name or password"));
        }
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() > 10_000 {
            verified.clear();
        }
        verified.insert(key);
        Ok(Identity { user: user.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {value}")).unwrap());
        headers
    }

    #[tokio::test]
    async fn checks_bcrypt_entries() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let file = Htpasswd::parse("Registry", &format!("# users\nalice:{hash}\n"), "htpasswd").unwrap();
        assert_eq!(file.authenticate(&basic("alice", "s3cret")).await.unwrap().user, "alice");
        // Cached now; still right.
        assert!(file.authenticate(&basic("alice", "s3cret")).await.is_ok());
        for headers in [basic("alice", "wrong"), basic("bob", "s3cret"), HeaderMap::new()] {
            let e = file.authenticate(&headers).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthorized);
            assert_eq!(e.headers[0].1, "Basic realm=\"Registry\"");
        }
    }

    #[test]
    fn refuses_what_is_not_bcrypt() {
        for (text, line) in [
            ("alice", 1),
            ("\nbob:{SHA}abc", 2),
            (":$2y$05$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ12", 1),
        ] {
            match Htpasswd::parse("r", text, "f") {
                Err(HtpasswdError::Entry { line: found, .. }) => assert_eq!(found, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
