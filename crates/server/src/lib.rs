//! The OCI Distribution API v1.1 as an axum [`Router`] over a [`wharf_registry::Registry`],
//! for a service to serve on its own or mount inside its app.
//!
//! ```
//! # async fn demo() {
//! use std::sync::Arc;
//! use wharf_registry::{Registry, RegistryOptions};
//! use wharf_server::{ServerOptions, router};
//!
//! let registry = Registry::new(Arc::new(wharf_storage::MemoryDriver::new()), RegistryOptions::default());
//! let app = router(registry, ServerOptions::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # drop(listener); let _ = app;
//! // axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! Every endpoint of the spec (end-1 … end-14) and Distribution's `/v2/_catalog` are served;
//! every error is answered with the spec's JSON body and status. Request bodies are streamed
//! to the store as they arrive, and blobs are streamed back in the store's chunks.
//!
//! A mount with `from` needs the blob in that repository (and, under token authentication,
//! pull access to it). A mount without `from` links any copy the registry holds, except under
//! token authentication, whose scopes grant repositories one by one: there it becomes an
//! ordinary upload, as the spec allows.

mod api;
mod auth;
mod config;
mod error;
mod observe;
mod route;
mod serve;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue};

pub use crate::auth::{Htpasswd, HtpasswdError, Identity};
pub use crate::config::{
    Config, ConfigError, DebugConfig, GarbageCollection, LogConfig, StorageHealth, TlsConfig, UploadPurging,
};
pub use crate::error::{ApiError, ErrorCode};
pub use crate::observe::{Health, Metrics};
pub use crate::route::Route;
pub use crate::serve::{LOCAL_CONFIG, LogLines, ServeError, Server, init_logging, shutdown_signal};
pub use crate::token::{Scope, TokenAuth};

/// How the API behaves; the parts of Distribution's `config.yml` that shape it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Whether manifests, tags and blobs may be deleted (`storage.delete.enabled`); off by
    /// default, as in Distribution.
    pub delete_enabled: bool,
    /// Refuse every write (`storage.maintenance.readonly.enabled`).
    pub read_only: bool,
    /// Send clients to the store's own URLs for blobs where it has them
    /// (`storage.redirect.disable` turns this off).
    pub redirect: bool,
    /// Answer `Location` with paths rather than absolute URLs (`http.relativeurls`).
    pub relative_urls: bool,
    /// The externally reachable base URL (`http.host`); else taken from the request's
    /// `X-Forwarded-Proto`/`X-Forwarded-Host` or `Host`.
    pub host: Option<String>,
    /// The path the API is served below (`http.prefix`), without a trailing slash.
    pub prefix: String,
    /// Whether the server speaks TLS, for absolute URLs built from `Host`.
    pub https: bool,
    /// The most repositories one catalog page holds (`catalog.maxentries`, default 1000).
    pub max_catalog_entries: usize,
    /// The most tags one tag list holds (`tags.maxtags`), unlimited by default.
    pub max_tags: Option<usize>,
    /// Headers added to every response (`http.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Users who may use the API (`auth.htpasswd`); anyone when `None`.
    pub htpasswd: Option<Htpasswd>,
    /// Bearer tokens from a token server (`auth.token`); none needed when `None`.
    pub token: Option<TokenAuth>,
    /// Where requests are counted, when metrics are on.
    pub metrics: Option<Metrics>,
    /// The storage health check; while it fails, every request is answered 503.
    pub health: Option<Health>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            delete_enabled: false,
            read_only: false,
            redirect: true,
            relative_urls: false,
            host: None,
            prefix: String::new(),
            https: false,
            max_catalog_entries: 1000,
            max_tags: None,
            headers: Vec::new(),
            htpasswd: None,
            token: None,
            metrics: None,
            health: None,
        }
    }
}

impl ServerOptions {
    /// Sets [`ServerOptions::delete_enabled`].
    #[must_use]
    pub fn with_delete_enabled(mut self, enabled: bool) -> ServerOptions {
        self.delete_enabled = enabled;
        self
    }

    /// Sets [`ServerOptions::read_only`].
    #[must_use]
    pub fn with_read_only(mut self, read_only: bool) -> ServerOptions {
        self.read_only = read_only;
        self
    }

    /// Sets [`ServerOptions::relative_urls`].
    #[must_use]
    pub fn with_relative_urls(mut self, relative: bool) -> ServerOptions {
        self.relative_urls = relative;
        self
    }

    /// Sets [`ServerOptions::prefix`] (a trailing slash is dropped).
    #[must_use]
    pub fn with_prefix(mut self, prefix: &str) -> ServerOptions {
        self.prefix = prefix.trim_end_matches('/').to_owned();
        self
    }

    /// Sets [`ServerOptions::max_catalog_entries`].
    #[must_use]
    pub fn with_max_catalog_entries(mut self, entries: usize) -> ServerOptions {
        self.max_catalog_entries = entries;
        self
    }

    /// Sets [`ServerOptions::htpasswd`].
    #[must_use]
    pub fn with_htpasswd(mut self, htpasswd: Option<Htpasswd>) -> ServerOptions {
        self.htpasswd = htpasswd;
        self
    }

    /// Sets [`ServerOptions::token`].
    #[must_use]
    pub fn with_token(mut self, token: Option<TokenAuth>) -> ServerOptions {
        self.token = token;
        self
    }

    /// Sets [`ServerOptions::max_tags`].
    #[must_use]
    pub fn with_max_tags(mut self, tags: Option<usize>) -> ServerOptions {
        self.max_tags = tags;
        self
    }
}

/// The distribution API over `registry`: a router that answers every path (paths outside
/// the API get a `404` with the JSON error body).
pub fn router(registry: wharf_registry::Registry, options: ServerOptions) -> Router {
    let api = Arc::new(api::Api::new(registry, options));
    Router::new().fallback(api::handle).with_state(api)
}
