//! Running the API as a program does: the store built from the configuration, an access
//! log, upload purging in the background, and a graceful shutdown.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;
use wharf_registry::{Registry, RegistryOptions};

use crate::{Config, router};

/// The configuration used when none is given: filesystem storage in `./registry-data`,
/// listening on 127.0.0.1:5000. `REGISTRY_*` variables apply to it as to a file.
pub const LOCAL_CONFIG: &str = "\
version: 0.1
storage:
  filesystem:
    rootdirectory: ./registry-data
http:
  addr: 127.0.0.1:5000
";

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The store could not be opened.
    #[error("storage: {0}")]
    Storage(#[from] wharf_storage::Error),
    /// Listening or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A registry server built from a [`Config`].
#[derive(Debug)]
pub struct Server {
    config: Config,
    registry: Registry,
}

impl Server {
    /// Opens the store the configuration names.
    ///
    /// # Errors
    /// [`ServeError::Storage`] when the store cannot be opened.
    pub async fn new(config: Config) -> Result<Server, ServeError> {
        let driver = config.storage.build().await?;
        let registry = Registry::new(driver, RegistryOptions::default());
        Ok(Server { config, registry })
    }

    /// The registry it serves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The API router, with the access log when it is on.
    pub fn router(&self) -> Router {
        let mut options = self.config.server.clone();
        options.https = self.config.tls.is_some();
        let app = router(self.registry.clone(), options);
        if self.config.log.access_log { app.layer(middleware::from_fn(access_log)) } else { app }
    }

    /// Serves on `listener` until `shutdown` completes, then lets requests in flight finish
    /// for up to `http.draintimeout`.
    ///
    /// # Errors
    /// [`ServeError::Io`] when serving fails.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let purging = self.config.upload_purging.clone().map(|purging| {
            let registry = self.registry.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(purging.interval);
                loop {
                    every.tick().await;
                    match registry.purge_uploads(purging.age, purging.dry_run).await {
                        Ok(purged) => {
                            for upload in purged {
                                tracing::info!(repository = %upload.repository, id = %upload.id, dry_run = purging.dry_run, "purged an old upload");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "upload purging failed"),
                    }
                }
            })
        });
        let drain = self.config.drain_timeout;
        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = self.router().into_make_service_with_connect_info::<std::net::SocketAddr>();
        let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!(drain_timeout = ?drain, "shutting down: no new connections, finishing requests in flight");
            let _ = stopping.send(());
        });
        let serving = tokio::spawn(async move { serving.await });
        let result = tokio::select! {
            result = serving => result.map_err(std::io::Error::other)?,
            () = drained(stopped, drain) => {
                tracing::warn!("requests still in flight after the drain timeout; stopping anyway");
                Ok(())
            }
        };
        if let Some(purging) = purging {
            purging.abort();
        }
        Ok(result?)
    }
}

/// Completes `drain` after the shutdown began; never if it does not.
async fn drained(stopped: tokio::sync::oneshot::Receiver<()>, drain: Duration) {
    if stopped.await.is_ok() {
        tokio::time::sleep(drain).await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// One line per request: method, path, status, bytes, time taken, client.
async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|info| info.0.to_string());
    let response = next.run(request).await;
    let length =
        response.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(str::to_owned);
    tracing::info!(
        target: "wharf::access",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        bytes = length.as_deref().unwrap_or("-"),
        client = client.as_deref().unwrap_or("-"),
        took_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// Sets up logging as `log:` says: the level, text or JSON lines, and the fixed fields
/// (written on the first line).
pub fn init_logging(log: &crate::LogConfig) {
    let level = match log.level.as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        _ => tracing::Level::INFO,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_max_level(level).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = if log.json { builder.json().try_init() } else { builder.try_init() };
    if !log.fields.is_empty() {
        let fields = serde_json::to_string(&log.fields).unwrap_or_default();
        tracing::info!(fields = %fields, "log fields");
    }
}
