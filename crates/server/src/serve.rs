//! Running the API as a program does: the store built from the configuration, an access
//! log, upload purging in the background, and a graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use wharf_registry::{GcOptions, GcReport, Registry};

use crate::count::{Count, Counter};
use crate::health::{Health, health_answer};
use crate::layer::ClientAddress;
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
    /// The TLS certificate, key or client CAs cannot be used.
    #[error("http.tls: {0}")]
    Tls(String),
}

/// A registry server built from a [`Config`].
pub struct Server {
    config: Config,
    registry: Registry,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::Acceptor>,
    counter: Counter,
    health: Option<Health>,
}

impl Server {
    /// Opens the store the configuration names.
    ///
    /// # Errors
    /// [`ServeError::Storage`] when the store cannot be opened.
    pub async fn new(config: Config) -> Result<Server, ServeError> {
        let driver = config.storage.build().await?;
        let options = config.registry.clone();
        Server::with_registry(config, Registry::new(driver, options))
    }

    /// Serves `registry` (over a driver of the embedder's, say) with everything else from
    /// `config`; its `storage` section is not opened.
    ///
    /// # Errors
    /// [`ServeError::Tls`] when the TLS files cannot be loaded.
    pub fn with_registry(config: Config, registry: Registry) -> Result<Server, ServeError> {
        #[cfg(feature = "mirror")]
        #[cfg_attr(not(feature = "metrics"), expect(unused_variables, reason = "the metrics are what read the counts"))]
        let (config, stats) = with_notifier(config, &registry)?;
        #[cfg(feature = "tls")]
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        #[cfg(not(feature = "tls"))]
        if config.tls.is_some() {
            // A `Config` read from text refuses `http.tls` already; this one was built in code.
            return Err(ServeError::Tls("wharf-server was built without its `tls` feature".into()));
        }
        let health = config.storage_health.as_ref().map(|check| Health::new(check.threshold));
        let counter = Counter {
            #[cfg(feature = "metrics")]
            metrics: config.debug.as_ref().and_then(|debug| debug.prometheus_path.as_ref()).map(|_| {
                let metrics = crate::Metrics::new();
                if let Some(health) = &health {
                    metrics.watch(health);
                }
                #[cfg(feature = "mirror")]
                metrics.watch_mirror(stats.clone());
                metrics
            }),
        };
        Ok(Server {
            config,
            registry,
            #[cfg(feature = "tls")]
            tls,
            counter,
            health,
        })
    }

    /// The registry it serves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Collects garbage in the registry it serves, while it serves, and records the run in
    /// the metrics and the log. `storage.maintenance.garbagecollect` calls this on a
    /// schedule; an embedding service may call it when it likes.
    ///
    /// # Errors
    /// What [`Registry::collect_garbage`] returns.
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport, wharf_registry::Error> {
        collect_garbage(&self.registry, &self.counter, options).await
    }

    /// Plans the tag policy's retention rules over the registry it serves and, unless
    /// `dry_run`, carries the plan out, writing an audit line (`wharf::audit`) per deletion
    /// and counting the run in the metrics. `policy.retention` calls this on a schedule.
    ///
    /// # Errors
    /// [`wharf_policy::Error`] when there is no policy, the in-use list cannot be read, or
    /// the registry cannot be read or changed.
    #[cfg(feature = "policy")]
    pub async fn apply_retention(
        &self,
        in_use: Option<&std::path::Path>,
        dry_run: bool,
    ) -> Result<wharf_policy::registry::Applied, wharf_policy::Error> {
        let policy = self.config.server.policy.clone().ok_or_else(|| wharf_policy::Error::Policy {
            place: "policy.file".into(),
            reason: "the configuration names no policy".into(),
        })?;
        apply_retention(&self.registry, &policy, in_use, dry_run, &self.counter).await
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The API router, with the access log when it is on.
    pub fn router(&self) -> Router {
        let mut options = self.config.server.clone();
        options.https = self.config.tls.is_some();
        #[cfg(feature = "metrics")]
        options.metrics.clone_from(&self.counter.metrics);
        options.health.clone_from(&self.health);
        let app = router(self.registry.clone(), options);
        if self.config.log.access_log { app.layer(middleware::from_fn(access_log)) } else { app }
    }

    /// The debug address's routes: `/debug/health`, and the metrics when Prometheus is on.
    fn debug_router(&self) -> Router {
        let health = self.health.clone();
        let driver = self.registry.driver().name();
        let app = Router::new().route(
            "/debug/health",
            axum::routing::get(move || {
                let (status, report) = health_answer(health.as_ref(), driver);
                async move { (status, axum::Json(report)) }
            }),
        );
        #[cfg(feature = "metrics")]
        if let (Some(metrics), Some(path)) =
            (self.counter.metrics.clone(), self.config.debug.as_ref().and_then(|d| d.prometheus_path.clone()))
        {
            return app.route(
                &path,
                axum::routing::get(move || {
                    let text = metrics.encode();
                    async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text) }
                }),
            );
        }
        app
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
            let (registry, counter) = (self.registry.clone(), self.counter.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(purging.interval);
                loop {
                    every.tick().await;
                    match registry.purge_uploads(purging.age, purging.dry_run).await {
                        Ok(purged) => {
                            for upload in &purged {
                                tracing::info!(repository = %upload.repository, id = %upload.id, dry_run = purging.dry_run, "purged an old upload");
                            }
                            if !purging.dry_run {
                                counter.count(Count::UploadsPurged(purged.len()));
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "upload purging failed"),
                    }
                }
            })
        });
        let collecting = self.config.garbage_collection.clone().map(|schedule| {
            let (registry, counter) = (self.registry.clone(), self.counter.clone());
            let mut options = GcOptions::default();
            options.dry_run = schedule.dry_run;
            options.delete_untagged = schedule.delete_untagged;
            options.grace_period = schedule.grace_period;
            tokio::spawn(async move {
                let start = tokio::time::Instant::now() + schedule.interval;
                let mut every = tokio::time::interval_at(start, schedule.interval);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    // A failed run is logged and counted, and so is a run that panicked: the
                    // next one tries again.
                    let run = std::panic::AssertUnwindSafe(collect_garbage(&registry, &counter, &options));
                    if let Err(panic) = futures::FutureExt::catch_unwind(run).await {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        tracing::error!(panic = %message, "garbage collection panicked; the schedule goes on");
                    }
                }
            })
        });
        #[cfg(feature = "policy")]
        let retaining = match (&self.config.retention, &self.config.server.policy) {
            (Some(schedule), Some(policy)) => {
                let (registry, counter, policy, schedule) =
                    (self.registry.clone(), self.counter.clone(), policy.clone(), schedule.clone());
                Some(tokio::spawn(async move {
                    let start = tokio::time::Instant::now() + schedule.interval;
                    let mut every = tokio::time::interval_at(start, schedule.interval);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        every.tick().await;
                        let run =
                            apply_retention(&registry, &policy, schedule.in_use.as_deref(), schedule.dry_run, &counter);
                        if futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await.is_err() {
                            tracing::error!("retention panicked; the schedule goes on");
                        }
                    }
                }))
            }
            _ => None,
        };
        #[cfg(not(feature = "policy"))]
        let retaining: Option<tokio::task::JoinHandle<()>> = None;
        #[cfg(feature = "mirror")]
        let registry = &self.registry;
        #[cfg(feature = "mirror")]
        let syncing: Vec<tokio::task::JoinHandle<()>> = self
            .config
            .server
            .proxy
            .iter()
            .flat_map(|proxy| proxy.syncs.iter().map(move |sync| (proxy.cache(registry), sync.clone())))
            .map(|(cache, sync)| {
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(sync.interval);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        every.tick().await;
                        for repository in &sync.repositories {
                            let Some(route) = repository
                                .parse()
                                .ok()
                                .and_then(|name: wharf_oci::RepositoryName| cache.route(&name, Some(&sync.upstream)))
                            else {
                                continue;
                            };
                            match cache.sync(&route, sync.tags.as_ref()).await {
                                Ok(synced) => tracing::info!(upstream = %sync.upstream, %repository, ?synced, "synced into the cache"),
                                Err(e) => tracing::warn!(upstream = %sync.upstream, %repository, error = %e, "a sync into the cache failed"),
                            }
                        }
                    }
                })
            })
            .collect();
        #[cfg(feature = "mirror")]
        let expiring = self.config.server.proxy.as_ref().map(|proxy| {
            let (cache, interval) = (proxy.cache(&self.registry), proxy.expiry_interval);
            tokio::spawn(async move {
                let mut every = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    match cache.expire(std::time::SystemTime::now()).await {
                        Ok(expired) => tracing::info!(
                            tags = expired.tags,
                            manifests = expired.manifests,
                            "the pull-through cache's expiry: blobs are left to garbage collection"
                        ),
                        Err(e) => tracing::warn!(error = %e, "the pull-through cache's expiry failed"),
                    }
                }
            })
        });
        #[cfg(not(feature = "mirror"))]
        let expiring: Option<tokio::task::JoinHandle<()>> = None;
        #[cfg(feature = "mirror")]
        let notifying = self
            .config
            .server
            .notifier
            .clone()
            .map(|notifier| tokio::spawn(notifier.run(std::time::Duration::from_millis(500))));
        #[cfg(not(feature = "mirror"))]
        let notifying: Option<tokio::task::JoinHandle<()>> = None;
        #[cfg(feature = "mirror")]
        let replicating = self.config.server.replicator.clone().map(|replicator| {
            let sync = self.config.replication.as_ref().and_then(|r| r.sync_interval);
            let (poll, backoff) = (std::time::Duration::from_millis(500), std::time::Duration::from_secs(5));
            tokio::spawn(replicator.run(poll, backoff, sync))
        });
        #[cfg(not(feature = "mirror"))]
        let replicating: Option<tokio::task::JoinHandle<()>> = None;
        let checks = match (&self.health, &self.config.storage_health) {
            (Some(health), Some(check)) => Some(health.spawn_checks(self.registry.clone(), check.interval)),
            _ => None,
        };
        let debug = match &self.config.debug {
            Some(settings) => {
                let listener = TcpListener::bind(settings.addr)
                    .await
                    .map_err(|e| std::io::Error::new(e.kind(), format!("http.debug.addr {}: {e}", settings.addr)))?;
                let (address, metrics) = (settings.addr, settings.prometheus_path.clone());
                tracing::info!(%address, ?metrics, "debug server listening");
                let app = self.debug_router();
                Some(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::warn!(error = %e, "the debug server stopped");
                    }
                }))
            }
            None => None,
        };
        let drain = self.config.drain_timeout;
        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = self.router().into_make_service_with_connect_info::<ClientAddress>();
        let incoming = Incoming {
            tcp: listener,
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
            handshakes: JoinSet::new(),
        };
        let serving = axum::serve(incoming, app).with_graceful_shutdown(async move {
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
        for task in
            [purging, collecting, retaining, expiring, notifying, replicating, checks, debug].into_iter().flatten()
        {
            task.abort();
        }
        #[cfg(feature = "mirror")]
        for task in syncing {
            task.abort();
        }
        #[cfg(feature = "mirror")]
        if let Some(notifier) = &self.config.server.notifier {
            notifier.release().await;
        }
        #[cfg(feature = "mirror")]
        if let Some(replicator) = &self.config.server.replicator {
            replicator.release().await;
        }
        Ok(result?)
    }
}

/// `config` with a notifier for its `notifications.endpoints` and a replicator for its
/// `replication`, queueing in `registry`'s store, unless it has them already.
#[cfg(feature = "mirror")]
fn with_notifier(
    mut config: Config,
    registry: &Registry,
) -> Result<(Config, std::sync::Arc<wharf_mirror::Stats>), ServeError> {
    let instance = uuid::Uuid::new_v4().simple().to_string();
    let stats = std::sync::Arc::new(wharf_mirror::Stats::default());
    if let (Some(replication), None) = (&config.replication, &config.server.replicator) {
        let replicator = wharf_mirror::replicate::Replicator::new(registry, replication.rules.clone(), &instance)
            .map_err(|e| ServeError::Io(std::io::Error::other(format!("replication: {e}"))))?
            .with_stats(stats.clone());
        config.server.replicator = Some(replicator);
    }
    if !config.notifications.is_empty() && config.server.notifier.is_none() {
        let notifier =
            wharf_mirror::notify::Notifier::new(registry.driver().clone(), config.notifications.clone(), &instance)
                .map_err(|e| ServeError::Io(std::io::Error::other(format!("notifications: {e}"))))?
                .with_stats(stats.clone());
        config.server.notifier = Some(notifier);
    }
    Ok((config, stats))
}

/// One retention run: the registry's inventory, the policy's plan at this moment (nothing
/// named in the in-use list, read afresh, deleted), and unless `dry_run` the plan carried
/// out with an audit line per deletion.
#[cfg(feature = "policy")]
async fn apply_retention(
    registry: &Registry,
    policy: &wharf_policy::Policy,
    in_use: Option<&std::path::Path>,
    dry_run: bool,
    counter: &Counter,
) -> Result<wharf_policy::registry::Applied, wharf_policy::Error> {
    let started = Instant::now();
    let outcome = async {
        let in_use = match in_use {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| wharf_policy::Error::InUse {
                    line: 0,
                    reason: format!("cannot read {}: {e}", path.display()),
                })?;
                wharf_policy::InUse::parse(&text)?
            }
            None => wharf_policy::InUse::default(),
        };
        let inventory = wharf_policy::registry::inventory(registry).await?;
        let now = wharf_policy::Timestamp(std::time::SystemTime::now());
        // Planning a large registry takes the CPU for a while: off the runtime's threads.
        let planning = policy.clone();
        let plan = tokio::task::spawn_blocking(move || wharf_policy::plan(&inventory, &planning, &in_use, now))
            .await
            .map_err(|e| wharf_policy::Error::Registry { what: "planning".to_owned(), reason: e.to_string() })?;
        for refused in plan.repositories.iter().filter_map(|r| r.refused.as_ref().map(|why| (&r.name, why))) {
            tracing::warn!(repository = %refused.0, reason = %refused.1, "retention refused for a repository");
        }
        if dry_run {
            tracing::info!(
                tags = plan.summary.tags_deleted,
                manifests = plan.summary.manifests_deleted,
                reclaimed_bytes = plan.summary.reclaimed_bytes,
                "retention dry run: what the plan would delete"
            );
            return Ok(wharf_policy::registry::Applied::default());
        }
        wharf_policy::registry::apply(&plan, registry, &mut |entry| {
            tracing::info!(
                target: "wharf::audit",
                user = "retention",
                action = entry.action,
                repository = %entry.repository,
                reference = entry.tag.as_deref().unwrap_or("-"),
                digest = %entry.digest,
                rule = entry.rule.as_deref().unwrap_or("-"),
                reason = %entry.reason,
                "retention {}",
                entry.action
            );
        })
        .await
    }
    .await;
    let took = started.elapsed();
    match &outcome {
        Ok(applied) => {
            counter
                .retention_finished(Some((applied.tags_deleted, applied.manifests_deleted, applied.skipped)), dry_run);
            tracing::info!(
                dry_run,
                tags_deleted = applied.tags_deleted,
                manifests_deleted = applied.manifests_deleted,
                skipped = applied.skipped,
                took = ?took,
                "retention finished"
            );
        }
        Err(e) => {
            counter.retention_finished(None, dry_run);
            tracing::warn!(error = %e, took = ?took, "retention failed");
        }
    }
    outcome
}

async fn collect_garbage(
    registry: &Registry,
    counter: &Counter,
    options: &GcOptions,
) -> Result<GcReport, wharf_registry::Error> {
    let started = Instant::now();
    let outcome = registry.collect_garbage(options).await;
    let took = started.elapsed();
    counter.gc_finished(outcome.as_ref(), options.dry_run, took);
    match &outcome {
        Ok(report) => tracing::info!(
            dry_run = report.dry_run,
            manifests_deleted = report.manifests_deleted.len(),
            blobs_deleted = report.blobs_deleted.len(),
            bytes_freed = report.bytes_freed,
            blobs_restored = report.blobs_restored,
            manifests_kept = report.manifests_kept,
            blobs_marked = report.blobs_marked,
            took = ?took,
            "garbage collection finished"
        ),
        Err(wharf_registry::Error::CollectionInProgress) => {
            tracing::info!(took = ?took, "garbage collection skipped: another is running on this storage");
        }
        Err(e) => tracing::warn!(error = %e, took = ?took, "garbage collection failed"),
    }
    outcome
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A connection, plain or TLS.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// What `run` accepts connections from: TCP, with TLS handshakes done side by side so that
/// a slow client does not hold up the others.
struct Incoming {
    tcp: TcpListener,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::Acceptor>,
    handshakes: JoinSet<Option<(Box<dyn Connection>, SocketAddr)>>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Incoming>> for ClientAddress {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Incoming>) -> ClientAddress {
        ClientAddress(*stream.remote_addr())
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Box<dyn Connection>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => {
                    let (stream, address) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors and the like: wait, rather than spin.
                            tracing::warn!(error = %e, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    #[cfg(feature = "tls")]
                    if let Some(acceptor) = self.tls.clone() {
                        self.handshakes.spawn(async move {
                            let tls = crate::tls::handshake(acceptor, stream, address).await?;
                            Some((Box::new(tls) as Box<dyn Connection>, address))
                        });
                        continue;
                    }
                    return (Box::new(stream), address);
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
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
    let client = request.extensions().get::<ConnectInfo<ClientAddress>>().map(|info| info.0.0.to_string());
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
