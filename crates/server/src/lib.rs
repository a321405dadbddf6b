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
//! The default features, `daemon` (with `config`), `tls` and `metrics`, add `Server`,
//! `Config`, TLS and `Metrics`: what a registry program needs and a service nesting the
//! router may leave out.
//!
//! A mount with `from` needs the blob in that repository (and, under token authentication,
//! pull access to it). A mount without `from` links any copy the registry holds, except under
//! token authentication, whose scopes grant repositories one by one: there it becomes an
//! ordinary upload, as the spec allows.

mod api;
mod auth;
#[cfg(feature = "config")]
mod config;
#[cfg(feature = "console")]
mod console;
mod count;
mod error;
mod forwarded;
mod health;
mod layer;
#[cfg(feature = "daemon")]
mod logging;
#[cfg(feature = "metrics")]
mod metrics;
mod route;
#[cfg(feature = "daemon")]
mod serve;
#[cfg(feature = "tls")]
mod tls;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue};

pub use crate::auth::{Htpasswd, HtpasswdError, Identity};
#[cfg(all(feature = "config", feature = "mirror"))]
pub use crate::config::Replication;
#[cfg(all(feature = "config", feature = "policy"))]
pub use crate::config::Retention;
#[cfg(feature = "config")]
pub use crate::config::{
    Config, ConfigError, DebugConfig, GarbageCollection, LogConfig, StorageHealth, TlsConfig, UploadPurging,
};
pub use crate::error::{ApiError, ErrorCode};
pub use crate::health::Health;
#[cfg(feature = "daemon")]
pub use crate::logging::{LogLines, init_logging};
#[cfg(feature = "metrics")]
pub use crate::metrics::Metrics;
pub use crate::route::Route;
#[cfg(feature = "daemon")]
pub use crate::serve::{LOCAL_CONFIG, ServeError, Server, shutdown_signal};
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
    /// How `Location` and `Link` URLs are written (`http.relativeurls`): `Some(true)`, as
    /// paths; `Some(false)`, absolute, on [`host`](Self::host), the host a proxy forwarded or
    /// the request's `Host`; `None` (the default), absolute only on a configured or forwarded
    /// host, as paths otherwise, which every client resolves against the URL it used.
    pub relative_urls: Option<bool>,
    /// The externally reachable base URL (`http.host`); else taken from what the proxy in
    /// front forwarded (RFC 7239 `Forwarded`, or `X-Forwarded-Host` and `X-Forwarded-Proto`).
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
    #[cfg(feature = "metrics")]
    pub metrics: Option<Metrics>,
    /// The storage health check; while it fails, every request is answered 503.
    pub health: Option<Health>,
    /// The tag policy whose naming rules and immutable tags pushes and deletes must respect
    /// (answered 403 `DENIED` with the rule's message).
    #[cfg(feature = "policy")]
    pub policy: Option<std::sync::Arc<wharf_policy::Policy>>,
    /// The pull-through cache: the upstreams whose repositories the registry mirrors
    /// (`proxy`); `None` by default.
    #[cfg(feature = "mirror")]
    pub proxy: Option<Proxy>,
    /// Where events of pushes, pulls, mounts and deletes are queued for notification
    /// endpoints (`notifications`); `None` by default. Its delivery runs apart
    /// ([`Notifier::run`](wharf_mirror::notify::Notifier::run)), as `Server` runs it.
    #[cfg(feature = "mirror")]
    pub notifier: Option<wharf_mirror::notify::Notifier>,
    /// Whether a manifest's events list what it references (`notifications.events.
    /// includereferences`); off by default.
    #[cfg(feature = "mirror")]
    pub event_references: bool,
    /// What queues replications of pushes and deletions (`replication`); `None` by default.
    /// Its work runs apart ([`Replicator::run`](wharf_mirror::replicate::Replicator::run)), as
    /// `Server` runs it.
    #[cfg(feature = "mirror")]
    pub replicator: Option<wharf_mirror::replicate::Replicator>,
    /// Where the console is served (`console.path`, a Wharf key): `/ui` by default; `None`
    /// turns it off (`console.enabled: false`).
    #[cfg(feature = "console")]
    pub console: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            delete_enabled: false,
            read_only: false,
            redirect: true,
            relative_urls: None,
            host: None,
            prefix: String::new(),
            https: false,
            max_catalog_entries: 1000,
            max_tags: None,
            headers: Vec::new(),
            htpasswd: None,
            token: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            health: None,
            #[cfg(feature = "policy")]
            policy: None,
            #[cfg(feature = "mirror")]
            proxy: None,
            #[cfg(feature = "mirror")]
            notifier: None,
            #[cfg(feature = "mirror")]
            event_references: false,
            #[cfg(feature = "mirror")]
            replicator: None,
            #[cfg(feature = "console")]
            console: Some("/ui".to_owned()),
        }
    }
}

/// What the registry mirrors (`proxy`): its upstreams, and whether a mirrored repository
/// takes pushes.
#[cfg(feature = "mirror")]
#[derive(Debug, Clone)]
pub struct Proxy {
    /// The upstreams, each at the root or below its prefix.
    pub upstreams: Vec<wharf_mirror::Upstream>,
    /// Whether pushes and deletes to a mirrored repository are taken (`proxy.allowpush`, a
    /// Wharf key); refused by default, as Distribution refuses them.
    pub allow_push: bool,
    /// Images the cache never expires, as it names them (`proxy.pinned`, a Wharf key):
    /// `repository:tag` or `repository@digest`.
    pub pinned: Vec<String>,
    /// How often `Server` removes what was not used within its upstream's `ttl`
    /// (`proxy.expiryinterval`, a Wharf key); hourly by default.
    pub expiry_interval: std::time::Duration,
    /// Repositories brought into the cache on a schedule, before anyone asks for them
    /// (`proxy.upstreams[].sync`, a Wharf key).
    pub syncs: Vec<ProxySync>,
}

/// An upstream's repositories that `Server` brings into the cache on a schedule.
#[cfg(feature = "mirror")]
#[derive(Debug, Clone)]
pub struct ProxySync {
    /// The upstream's name.
    pub upstream: String,
    /// Its repositories, as it names them.
    pub repositories: Vec<String>,
    /// Their tags to bring in; all when `None`.
    pub tags: Option<wharf_policy::TagSelector>,
    /// How often.
    pub interval: std::time::Duration,
}

#[cfg(feature = "mirror")]
impl Proxy {
    /// The cache of these upstreams in `registry`'s store.
    pub fn cache(&self, registry: &wharf_registry::Registry) -> wharf_mirror::PullThrough {
        let cache = wharf_mirror::PullThrough::new(registry, self.upstreams.clone());
        match cache.clone().with_pinned(&self.pinned) {
            Ok(pinned) => pinned,
            Err(e) => {
                tracing::warn!(error = %e, "proxy.pinned: no image pinned");
                cache
            }
        }
    }
}

impl ServerOptions {
    /// Sets [`ServerOptions::proxy`].
    #[cfg(feature = "mirror")]
    #[must_use]
    pub fn with_proxy(mut self, proxy: Proxy) -> ServerOptions {
        self.proxy = Some(proxy);
        self
    }

    /// Sets [`ServerOptions::policy`].
    #[cfg(feature = "policy")]
    #[must_use]
    pub fn with_policy(mut self, policy: wharf_policy::Policy) -> ServerOptions {
        self.policy = Some(std::sync::Arc::new(policy));
        self
    }

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

    /// Sets [`ServerOptions::relative_urls`]: always paths, or always absolute URLs.
    #[must_use]
    pub fn with_relative_urls(mut self, relative: bool) -> ServerOptions {
        self.relative_urls = Some(relative);
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
    let watch = layer::Watch { counter: count::Counter::new(&options) };
    #[cfg(feature = "console")]
    let console = options.console.clone().map(|base| {
        let base = format!("/{}", base.trim_matches('/'));
        console::router(registry.clone(), Arc::new(options.clone()), &base)
    });
    let api = Arc::new(api::Api::new(registry, options));
    let app = Router::new().fallback(api::handle).with_state(api);
    #[cfg(feature = "console")]
    let app = match console {
        Some(pages) => pages.merge(app),
        None => app,
    };
    app.layer(watch)
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
