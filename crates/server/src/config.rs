//! Distribution's `config.yml`, with its `REGISTRY_*` environment overrides.
//!
//! A file that runs `registry:2` loads as it is. Keys Wharf does not act on are collected in
//! [`Config::warnings`] (the server logs them at start); a bad value is an error naming its
//! key path and what was expected.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use wharf_registry::{IndexChildren, RegistryOptions};
use wharf_storage::StorageConfig;

use crate::ServerOptions;
use crate::auth::Htpasswd;
use crate::token::TokenAuth;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML.
    #[error("{origin} is not valid YAML: {message}")]
    Syntax {
        /// The file, or `configuration`.
        origin: String,
        /// What the YAML parser said.
        message: String,
    },
    /// A key has a value of the wrong kind or out of range.
    #[error("{key}: {message}")]
    Invalid {
        /// The key's path, such as `http.addr`.
        key: String,
        /// What was expected and what was found.
        message: String,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), message: message.into() }
}

/// `log:`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogConfig {
    /// `log.level`: `error`, `warn`, `info` (default) or `debug`.
    pub level: String,
    /// `log.formatter`: `text` (default) or `json`.
    pub json: bool,
    /// `log.fields`: added to every line.
    pub fields: BTreeMap<String, String>,
    /// Whether requests are logged (`log.accesslog.disabled` turns this off).
    pub access_log: bool,
}

/// `storage.maintenance.uploadpurging`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadPurging {
    /// `age`: uploads older than this go (default 168h).
    pub age: Duration,
    /// `interval`: how often to look (default 24h).
    pub interval: Duration,
    /// `dryrun`: only log what would go.
    pub dry_run: bool,
}

/// `storage.maintenance.garbagecollect`: a Wharf key (Distribution ignores it), for garbage
/// collection in the background while the registry serves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GarbageCollection {
    /// `interval`: how often to collect (default 24h); the first run comes one interval
    /// after start.
    pub interval: Duration,
    /// `dryrun`: only report what would go.
    pub dry_run: bool,
    /// `deleteuntagged`: also delete manifests no tag reaches.
    pub delete_untagged: bool,
    /// `grace`: content written this recently is kept (default 1h).
    pub grace_period: Duration,
}

/// `policy.retention`: a Wharf key (Distribution ignores it), for the tag policy's retention
/// rules carried out in the background while the registry serves.
#[cfg(feature = "policy")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// `interval`: how often to plan and apply (default 24h); the first run comes one
    /// interval after start.
    pub interval: Duration,
    /// `dryrun`: only log what the plan would delete.
    pub dry_run: bool,
    /// `inuse`: the in-use list (what is deployed), read again at every run.
    pub in_use: Option<PathBuf>,
}

/// `http.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// `certificate`: the PEM certificate chain.
    pub certificate: PathBuf,
    /// `key`: the PEM private key.
    pub key: PathBuf,
    /// `clientcas`: CA certificates that client certificates must chain to.
    pub client_cas: Vec<PathBuf>,
    /// `minimumtls`: `tls1.2` (default) or `tls1.3`.
    pub minimum_tls13: bool,
}

/// `http.debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DebugConfig {
    /// `addr`.
    pub addr: SocketAddr,
    /// `prometheus.path` when `prometheus.enabled`.
    pub prometheus_path: Option<String>,
}

/// `health.storagedriver`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageHealth {
    /// `interval`, default 10s.
    pub interval: Duration,
    /// `threshold`: failed checks in a row before the registry reports itself down.
    pub threshold: u32,
}

/// A loaded configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// `log`.
    pub log: LogConfig,
    /// `storage` (the driver and its parameters).
    pub storage: StorageConfig,
    /// `storage.maintenance.uploadpurging`, when enabled.
    pub upload_purging: Option<UploadPurging>,
    /// `storage.maintenance.garbagecollect`, when enabled.
    pub garbage_collection: Option<GarbageCollection>,
    /// `policy.retention`, when set.
    #[cfg(feature = "policy")]
    pub retention: Option<Retention>,
    /// `notifications.endpoints`: where `Server` sends events, each queued durably in the
    /// registry's store.
    #[cfg(feature = "mirror")]
    pub notifications: Vec<wharf_mirror::notify::Endpoint>,
    /// `replication`, when set.
    #[cfg(feature = "mirror")]
    pub replication: Option<Replication>,
    /// `http.addr`: where to listen.
    pub addr: SocketAddr,
    /// `http.draintimeout`: how long requests in flight may take at shutdown.
    pub drain_timeout: Duration,
    /// `http.tls`.
    pub tls: Option<TlsConfig>,
    /// `http.debug`.
    pub debug: Option<DebugConfig>,
    /// `health.storagedriver`, when enabled.
    pub storage_health: Option<StorageHealth>,
    /// What the registry takes from the file: `validation.manifests`.
    pub registry: RegistryOptions,
    /// What the API router takes from the file.
    pub server: ServerOptions,
    /// Keys found and not acted on, by path.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads a file, then applies the `REGISTRY_*` variables of the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file or the key.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Config, ConfigError> {
        let path = path.into();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        Config::from_yaml(&text, &path.display().to_string(), std::env::vars())
    }

    /// Reads YAML text, then applies `REGISTRY_*` variables from `env`.
    ///
    /// # Errors
    /// [`ConfigError`] naming `origin` or the key.
    pub fn from_yaml(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut root: Value = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_yaml_ng::from_str(text)
                .map_err(|e| ConfigError::Syntax { origin: origin.to_owned(), message: e.to_string() })?
        };
        if root.is_null() {
            root = Value::Object(Map::new());
        }
        apply_env(&mut root, env)?;
        Config::from_value(root)
    }

    fn from_value(root: Value) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let mut root = Section::new("", root)?;
        root.take("version");
        let log = root.read("log", &mut warnings, log_config)?;
        let storage = storage_config(&mut root, &mut warnings)?;
        let http = root.read("http", &mut warnings, http_config)?;
        let storage_health = root.read("health", &mut warnings, health_config)?;
        let registry = root.section("validation")?.finish_with(validation_config, &mut warnings)?;
        let max_catalog_entries =
            root.section("catalog")?.finish_with(|s| s.number("maxentries"), &mut warnings)?.unwrap_or(1000);
        let max_tags = root.section("tags")?.finish_with(|s| s.number("maxtags"), &mut warnings)?;
        let (htpasswd, token) = root.read("auth", &mut warnings, auth_config)?;
        #[cfg(feature = "policy")]
        let (policy, retention) = root.section("policy")?.finish_with(policy_config, &mut warnings)?;
        #[cfg(feature = "mirror")]
        let proxy = root.section("proxy")?.finish_with(proxy_config, &mut warnings)?;
        #[cfg(feature = "mirror")]
        let (notifications, event_references) = root.read("notifications", &mut warnings, notifications_config)?;
        #[cfg(feature = "mirror")]
        let replication = root.read("replication", &mut warnings, replication_config)?;
        #[cfg(feature = "console")]
        let console = root.section("console")?.finish_with(console_config, &mut warnings)?;
        root.finish(&mut warnings);

        let mut server = ServerOptions::default()
            .with_delete_enabled(storage.delete_enabled)
            .with_read_only(storage.read_only)
            .with_prefix(&http.prefix)
            .with_max_catalog_entries(usize::try_from(max_catalog_entries).unwrap_or(usize::MAX))
            .with_max_tags(max_tags.map(|n| usize::try_from(n).unwrap_or(usize::MAX)));
        server.redirect = !storage.redirect_disabled;
        server.relative_urls = http.relative_urls;
        server.host = http.host;
        server.headers = http.headers;
        server.htpasswd = htpasswd;
        server.token = token;
        #[cfg(feature = "policy")]
        {
            server.policy = policy.map(std::sync::Arc::new);
        }
        #[cfg(feature = "mirror")]
        {
            server.proxy = proxy;
            server.event_references = event_references;
        }
        #[cfg(feature = "console")]
        {
            server.console = console;
        }
        Ok(Config {
            log,
            storage: storage.driver,
            upload_purging: storage.upload_purging,
            garbage_collection: storage.garbage_collection,
            #[cfg(feature = "policy")]
            retention,
            #[cfg(feature = "mirror")]
            notifications,
            #[cfg(feature = "mirror")]
            replication,
            addr: http.addr,
            drain_timeout: http.drain_timeout,
            tls: http.tls,
            debug: http.debug,
            storage_health,
            registry,
            server,
            warnings,
        })
    }
}

/// `console`: a Wharf key: `enabled` (default yes) and `path` (default `/ui`), where the
/// console's pages are served; the path may not be the API's.
#[cfg(feature = "console")]
fn console_config(console: &mut Section) -> Result<Option<String>, ConfigError> {
    if !console.boolean("enabled")?.unwrap_or(true) {
        let _ = console.string("path")?;
        return Ok(None);
    }
    let path = console.string("path")?.unwrap_or_else(|| "/ui".to_owned());
    let trimmed = path.trim_matches('/');
    let valid = !trimmed.is_empty()
        && trimmed.split('/').all(|segment| {
            !matches!(segment, "" | "." | "..")
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        && trimmed.split('/').next() != Some("v2");
    if !valid {
        return Err(invalid(
            "console.path",
            format!("{path:?} is not a path for the console (letters, digits, '-', '_', '.' between slashes; not /v2)"),
        ));
    }
    Ok(Some(format!("/{trimmed}")))
}

/// `policy`: a Wharf key (Distribution ignores it) naming the tag policy file that pushes
/// must respect, and `policy.retention`, the schedule of its retention rules.
#[cfg(feature = "policy")]
fn policy_config(policy: &mut Section) -> Result<(Option<wharf_policy::Policy>, Option<Retention>), ConfigError> {
    let Some(file) = policy.string("file")? else {
        return if policy.is_empty() {
            Ok((None, None))
        } else {
            Err(invalid("policy.file", "the policy file is needed"))
        };
    };
    let text =
        std::fs::read_to_string(&file).map_err(|e| invalid("policy.file", format!("cannot read {file}: {e}")))?;
    let read = wharf_policy::Policy::from_yaml(&text).map_err(|e| invalid("policy.file", format!("{file}: {e}")))?;
    let mut retention = policy.section("retention")?;
    let schedule = if retention.is_empty() {
        None
    } else {
        Some(Retention {
            interval: retention.period("interval")?.unwrap_or(Duration::from_secs(24 * 3600)),
            dry_run: retention.boolean("dryrun")?.unwrap_or(false),
            in_use: retention.string("inuse")?.map(PathBuf::from),
        })
    };
    let mut warnings = Vec::new();
    retention.finish(&mut warnings);
    if let Some(left) = warnings.first() {
        let key = left.split_whitespace().next().unwrap_or("policy.retention");
        return Err(invalid(key, "not a key of policy.retention (interval, dryrun, inuse)"));
    }
    Ok((Some(read), schedule))
}

/// `proxy`: Distribution's pull-through cache of one upstream (`remoteurl`, `username`,
/// `password`, `ttl`), and Wharf's `upstreams` (the same keys each, with `name`, what
/// containerd's `ns` calls it, and `prefix`, the path it is served below) and `allowpush`.
#[cfg(feature = "mirror")]
fn proxy_config(proxy: &mut Section) -> Result<Option<crate::Proxy>, ConfigError> {
    if proxy.is_empty() {
        return Ok(None);
    }
    let mut upstreams = Vec::new();
    let mut syncs = Vec::new();
    if let Some(url) = proxy.string("remoteurl")? {
        upstreams.push(upstream_config(proxy, &url)?);
    }
    match proxy.take("upstreams") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (index, item) in items.into_iter().enumerate() {
                let mut section = Section::new(&format!("proxy.upstreams[{index}]"), item)?;
                let url = section
                    .string("remoteurl")?
                    .ok_or_else(|| invalid(&section.key("remoteurl"), "the upstream's URL is needed"))?;
                let sync = section.section("sync")?;
                let upstream = upstream_config(&mut section, &url)?;
                if !sync.is_empty() {
                    syncs.push(sync_config(sync, &upstream.name)?);
                }
                upstreams.push(upstream);
                if let Some(key) = section.map.keys().next() {
                    return Err(invalid(
                        &section.key(key),
                        "not a key of an upstream (name, remoteurl, prefix, username, password, ttl, sync)",
                    ));
                }
            }
        }
        Some(other) => return Err(invalid("proxy.upstreams", format!("expected a list, found {other}"))),
    }
    if upstreams.is_empty() {
        return Err(invalid("proxy.remoteurl", "the upstream's URL is needed (or proxy.upstreams)"));
    }
    if upstreams.iter().filter(|u| u.prefix.is_none()).count() > 1 {
        return Err(invalid(
            "proxy.upstreams",
            "only one upstream may be served at the root; give the others a prefix",
        ));
    }
    let allow_push = proxy.boolean("allowpush")?.unwrap_or(false);
    let pinned = match proxy.take("pinned") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let at = format!("proxy.pinned[{index}]");
                let Value::String(image) = item else {
                    return Err(invalid(&at, "expected repository:tag or repository@digest"));
                };
                wharf_mirror::pinned_image(&image).map_err(|e| invalid(&at, e))?;
                Ok(image)
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(invalid("proxy.pinned", format!("expected a list, found {other}"))),
    };
    let expiry_interval = proxy.period("expiryinterval")?.unwrap_or(Duration::from_secs(3600));
    Ok(Some(crate::Proxy { upstreams, allow_push, pinned, expiry_interval, syncs }))
}

/// `replication`: Wharf's rules of what is copied to which registries.
#[cfg(feature = "mirror")]
#[derive(Debug, Clone)]
pub struct Replication {
    /// The rules.
    pub rules: Vec<wharf_mirror::replicate::ReplicationRule>,
    /// How often everything the rules take is synced (`replication.interval`); only on push
    /// when `None`.
    pub sync_interval: Option<Duration>,
}

/// `notifications.endpoints` (those not `disabled`).
#[cfg(feature = "mirror")]
fn notifications_config(
    notifications: &mut Section,
    warnings: &mut Vec<String>,
) -> Result<(Vec<wharf_mirror::notify::Endpoint>, bool), ConfigError> {
    use wharf_mirror::notify::{Action, Endpoint};
    let mut events = notifications.section("events")?;
    let references = events.boolean("includereferences")?.unwrap_or(false);
    events.finish(warnings);
    let strings = |at: &str, value: Value| -> Result<Vec<String>, ConfigError> {
        match value {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text),
                    other => Err(invalid(at, format!("expected a list of strings, found {other}"))),
                })
                .collect(),
            other => Err(invalid(at, format!("expected a list of strings, found {other}"))),
        }
    };
    let mut endpoints = Vec::new();
    let items = match notifications.take("endpoints") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(invalid("notifications.endpoints", format!("expected a list, found {other}"))),
    };
    for (index, item) in items.into_iter().enumerate() {
        let mut section = Section::new(&format!("notifications.endpoints[{index}]"), item)?;
        let name = section.string("name")?.ok_or_else(|| invalid(&section.key("name"), "an endpoint needs a name"))?;
        let url = section.string("url")?.ok_or_else(|| invalid(&section.key("url"), "an endpoint needs a url"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(&section.key("url"), format!("{url:?} is not an http:// or https:// URL")));
        }
        let mut endpoint = Endpoint::new(name, url);
        endpoint.headers = section
            .headers()?
            .into_iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_owned()))
            .collect();
        if let Some(timeout) = section.duration("timeout")? {
            endpoint.timeout = timeout;
        }
        if let Some(threshold) = section.number("threshold")? {
            endpoint.threshold = u32::try_from(threshold).unwrap_or(u32::MAX);
        }
        if let Some(backoff) = section.duration("backoff")? {
            endpoint.backoff = backoff;
        }
        let at = section.key("ignoredmediatypes");
        endpoint.ignored_media_types = strings(&at, section.take("ignoredmediatypes").unwrap_or(Value::Null))?;
        let mut ignore = section.section("ignore")?;
        let at = ignore.key("mediatypes");
        endpoint.ignored_media_types.extend(strings(&at, ignore.take("mediatypes").unwrap_or(Value::Null))?);
        let at = ignore.key("actions");
        for action in strings(&at, ignore.take("actions").unwrap_or(Value::Null))? {
            endpoint.ignored_actions.push(match action.as_str() {
                "push" => Action::Push,
                "pull" => Action::Pull,
                "mount" => Action::Mount,
                "delete" => Action::Delete,
                other => return Err(invalid(&at, format!("{other:?} is not push, pull, mount or delete"))),
            });
        }
        ignore.finish(warnings);
        let disabled = section.boolean("disabled")?.unwrap_or(false);
        section.finish(warnings);
        if let Err(e) =
            wharf_mirror::notify::Queue::new(std::sync::Arc::new(wharf_storage::MemoryDriver::new()), &endpoint.name)
        {
            return Err(invalid(&format!("notifications.endpoints[{index}].name"), e));
        }
        if !disabled {
            endpoints.push(endpoint);
        }
    }
    Ok((endpoints, references))
}

/// `proxy.upstreams[].sync`: `repositories` (as the upstream names them), `tags` (the tag
/// policy's selectors) and `interval`.
#[cfg(feature = "mirror")]
fn sync_config(mut sync: Section, upstream: &str) -> Result<crate::ProxySync, ConfigError> {
    let repositories = match sync.take("repositories") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("{}[{i}]", sync.key("repositories"));
                match item {
                    Value::String(name) if name.parse::<wharf_oci::RepositoryName>().is_ok() => Ok(name),
                    other => Err(invalid(&at, format!("{other} is not a repository name"))),
                }
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(invalid(&sync.key("repositories"), "a sync needs a list of repositories")),
    };
    let tags = match sync.take("tags") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            wharf_policy::TagSelector::from_value(value, &sync.key("tags"))
                .map_err(|e| invalid(&sync.key("tags"), e.to_string()))?,
        ),
    };
    let interval =
        sync.period("interval")?.ok_or_else(|| invalid(&sync.key("interval"), "a sync needs an interval"))?;
    if let Some(key) = sync.map.keys().next() {
        return Err(invalid(&sync.key(key), "not a key of a sync (repositories, tags, interval)"));
    }
    Ok(crate::ProxySync { upstream: upstream.to_owned(), repositories, tags, interval })
}

/// The host and the client of a registry at `url` (the section's `url_key`), with the
/// section's `username` and `password`.
#[cfg(feature = "mirror")]
fn remote_client(
    section: &mut Section,
    url_key: &str,
    url: &str,
    retry: wharf_client::Retry,
) -> Result<(String, wharf_client::Client), ConfigError> {
    let at = section.key(url_key);
    let parsed = url::Url::parse(url).map_err(|e| invalid(&at, format!("{url:?} is not a URL: {e}")))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => return Err(invalid(&at, format!("{url:?} names no host"))),
    };
    let mut builder = wharf_client::Client::builder().retry(retry).connect_timeout(Duration::from_secs(5));
    match parsed.scheme() {
        "https" => {}
        "http" => builder = builder.plain_http(&host),
        other => return Err(invalid(&at, format!("{other}:// is not http:// or https://"))),
    }
    let mut tls = section.section("tls")?;
    if !tls.is_empty() {
        builder = remote_tls(&mut tls, &host, builder)?;
    }
    let exec = section.section("exec")?;
    match (section.string("username")?, section.string("password")?) {
        (Some(_), Some(_)) if !exec.is_empty() => {
            return Err(invalid(&exec.key("command"), "a credential helper or username and password, not both"));
        }
        (Some(user), Some(password)) => {
            let credential = wharf_client::Credential::basic(user, password);
            builder = builder.credentials(wharf_client::StaticCredentials::new().with_fallback(credential));
        }
        (None, None) => {}
        _ => return Err(invalid(&section.key("password"), "username and password go together")),
    }
    if !exec.is_empty() {
        // Distribution's `exec`: a docker credential helper run for the upstream.
        let mut exec = exec;
        let command =
            exec.string("command")?.ok_or_else(|| invalid(&exec.key("command"), "the helper's command is needed"))?;
        let lifetime = exec.duration("lifetime")?.unwrap_or(Duration::ZERO);
        if let Some(key) = exec.map.keys().next() {
            return Err(invalid(&exec.key(key), "not a key of exec (command, lifetime)"));
        }
        builder = builder.credentials(wharf_client::CredentialHelper::new(command).lifetime(lifetime));
    }
    let client = builder.build().map_err(|e| invalid(&at, format!("cannot build its client: {e}")))?;
    Ok((host, client))
}

/// `replication`: Wharf's (Distribution has none): rules of repositories (globs) and tags
/// (the tag policy's selectors) copied to targets on push, deletions where a rule asks, and
/// a sync every `interval`.
#[cfg(feature = "mirror")]
fn replication_config(
    replication: &mut Section,
    warnings: &mut Vec<String>,
) -> Result<Option<Replication>, ConfigError> {
    if replication.is_empty() {
        return Ok(None);
    }
    let sync_interval = replication.period("interval")?;
    let items = match replication.take("rules") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(invalid("replication.rules", format!("expected a list, found {other}"))),
    };
    let mut rules = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let mut section = Section::new(&format!("replication.rules[{index}]"), item)?;
        let name = section.string("name")?.ok_or_else(|| invalid(&section.key("name"), "a rule needs a name"))?;
        let repositories = match section.take("repositories") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(globs)) => globs
                .into_iter()
                .enumerate()
                .map(|(i, glob)| {
                    let at = format!("{}[{i}]", section.key("repositories"));
                    let Value::String(glob) = glob else { return Err(invalid(&at, "expected a glob")) };
                    globset::GlobBuilder::new(&glob)
                        .literal_separator(true)
                        .build()
                        .map(|g| g.compile_matcher())
                        .map_err(|e| invalid(&at, format!("bad glob: {e}")))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(invalid(&section.key("repositories"), format!("expected a list of globs, found {other}")));
            }
        };
        let tags = match section.take("tags") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                wharf_policy::TagSelector::from_value(value, &section.key("tags"))
                    .map_err(|e| invalid(&section.key("tags"), e.to_string()))?,
            ),
        };
        let deletes = section.boolean("deletes")?.unwrap_or(false);
        let targets = match section.take("targets") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            _ => return Err(invalid(&section.key("targets"), "a rule needs a list of targets")),
        };
        let mut replicas = Vec::new();
        for (t, item) in targets.into_iter().enumerate() {
            let mut target = Section::new(&format!("{}[{t}]", section.key("targets")), item)?;
            let url = target.string("url")?.ok_or_else(|| invalid(&target.key("url"), "a target needs a url"))?;
            let retry = wharf_client::Retry::default();
            let (host, client) = remote_client(&mut target, "url", &url, retry)?;
            let name = target.string("name")?.unwrap_or_else(|| host.replace(':', "-"));
            let prefix = target.string("prefix")?;
            target.finish(warnings);
            replicas.push(wharf_mirror::replicate::ReplicaTarget { name, host, prefix, client });
        }
        section.finish(warnings);
        rules.push(wharf_mirror::replicate::ReplicationRule { name, repositories, tags, targets: replicas, deletes });
    }
    // The names name queues: checked here rather than when the server starts.
    let driver: std::sync::Arc<dyn wharf_storage::StorageDriver> =
        std::sync::Arc::new(wharf_storage::MemoryDriver::new());
    let registry = wharf_registry::Registry::new(driver, RegistryOptions::default());
    wharf_mirror::replicate::Replicator::new(&registry, rules.clone(), "check")
        .map_err(|e| invalid("replication.rules", e))?;
    Ok(Some(Replication { rules, sync_interval }))
}

/// A remote's `tls`: `rootcas` (files of certificates to trust besides the system's),
/// `certificate` and `key` (a client certificate), `certdir` (a folder laid out as docker's
/// `certs.d/<host>`) and `insecureskipverify`.
#[cfg(feature = "mirror")]
fn remote_tls(
    tls: &mut Section,
    host: &str,
    mut builder: wharf_client::ClientBuilder,
) -> Result<wharf_client::ClientBuilder, ConfigError> {
    let read =
        |key: &str, path: &str| std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path}: {e}")));
    let rootcas = tls.key("rootcas");
    let paths = match tls.take("rootcas") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(path)) => vec![path],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(path) => Ok(path),
                _ => Err(invalid(&rootcas, "expected a list of file paths")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(&rootcas, "expected a list of file paths")),
    };
    for path in paths {
        let pem = read(&rootcas, &path)?;
        builder = builder.root_certificates(&pem).map_err(|e| invalid(&rootcas, format!("{path}: {e}")))?;
    }
    match (tls.string("certificate")?, tls.string("key")?) {
        (Some(certificate), Some(key)) => {
            let at = tls.key("certificate");
            let mut pem = read(&at, &certificate)?;
            pem.push(b'\n');
            pem.extend(read(&tls.key("key"), &key)?);
            builder = builder.client_certificate(&pem).map_err(|e| invalid(&at, format!("{certificate}: {e}")))?;
        }
        (None, None) => {}
        _ => return Err(invalid(&tls.key("key"), "certificate and key go together")),
    }
    if let Some(dir) = tls.string("certdir")? {
        builder =
            builder.cert_dir(std::path::Path::new(&dir)).map_err(|e| invalid(&tls.key("certdir"), e.to_string()))?;
    }
    if tls.boolean("insecureskipverify")?.unwrap_or(false) {
        builder = builder.insecure(host);
    }
    if let Some(key) = tls.map.keys().next() {
        return Err(invalid(
            &tls.key(key),
            "not a key of tls (rootcas, certificate, key, certdir, insecureskipverify)",
        ));
    }
    Ok(builder)
}

/// One upstream: `url`, and the section's `name`, `prefix`, `username`, `password`, `ttl`.
#[cfg(feature = "mirror")]
fn upstream_config(section: &mut Section, url: &str) -> Result<wharf_mirror::Upstream, ConfigError> {
    // A client waits for the cache's answer: an upstream that does not answer is given up
    // on soon, and the cache answers instead where it can.
    let retry =
        wharf_client::Retry { attempts: 2, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
    let (host, client) = remote_client(section, "remoteurl", url, retry)?;
    // Docker Hub's API host is what containerd calls docker.io.
    let default_name = if host == "registry-1.docker.io" { "docker.io".to_owned() } else { host.clone() };
    let name = section.string("name")?.unwrap_or(default_name);
    let mut upstream = wharf_mirror::Upstream::new(name, host, client);
    if let Some(prefix) = section.string("prefix")? {
        upstream = upstream.with_prefix(prefix);
    }
    if let Some(ttl) = section.duration("ttl")? {
        upstream = upstream.with_ttl(ttl);
    }
    Ok(upstream)
}

/// `log`.
fn log_config(log: &mut Section, warnings: &mut Vec<String>) -> Result<LogConfig, ConfigError> {
    let level = log.string("level")?.unwrap_or_else(|| "info".to_owned()).to_ascii_lowercase();
    if !["error", "warn", "info", "debug"].contains(&level.as_str()) {
        return Err(invalid("log.level", format!("expected error, warn, info or debug, found {level:?}")));
    }
    let json = match log.string("formatter")?.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => return Err(invalid("log.formatter", format!("expected text or json, found {other:?}"))),
    };
    let fields = log.section("fields")?.into_strings()?;
    let access_log = !log.section("accesslog")?.finish_with(|s| s.boolean("disabled"), warnings)?.unwrap_or(false);
    Ok(LogConfig { level, json, fields, access_log })
}

/// What `storage` says: the driver and its parameters, and the registry's own keys.
struct StorageSection {
    driver: StorageConfig,
    delete_enabled: bool,
    redirect_disabled: bool,
    read_only: bool,
    upload_purging: Option<UploadPurging>,
    garbage_collection: Option<GarbageCollection>,
}

/// `storage`: the registry's own keys are read here; the rest is the driver's.
fn storage_config(root: &mut Section, warnings: &mut Vec<String>) -> Result<StorageSection, ConfigError> {
    let mut storage = Section::new("storage", root.take("storage").unwrap_or(Value::Null))?;
    let delete_enabled = storage.section("delete")?.finish_with(|s| s.boolean("enabled"), warnings)?.unwrap_or(false);
    let redirect_disabled =
        storage.section("redirect")?.finish_with(|s| s.boolean("disable"), warnings)?.unwrap_or(false);
    let mut maintenance = storage.section("maintenance")?;
    let upload_purging = maintenance.section("uploadpurging")?.finish_with(upload_purging_config, warnings)?;
    let garbage_collection = maintenance.section("garbagecollect")?.finish_with(garbage_collection_config, warnings)?;
    let read_only = maintenance.section("readonly")?.finish_with(|s| s.boolean("enabled"), warnings)?.unwrap_or(false);
    maintenance.finish(warnings);
    if let Some(cache) = storage.take("cache") {
        warnings.push(format!("storage.cache ({cache}): Wharf keeps no blob descriptor cache; ignored"));
    }
    let driver = Value::Object(storage.rest());
    if driver.as_object().is_some_and(Map::is_empty) {
        return Err(invalid("storage", "no storage driver is configured (filesystem, inmemory or s3)"));
    }
    let driver = StorageConfig::deserialize(driver).map_err(|e| invalid("storage", e.to_string()))?;
    Ok(StorageSection { driver, delete_enabled, redirect_disabled, read_only, upload_purging, garbage_collection })
}

/// `storage.maintenance.uploadpurging`, on when `enabled` or when anything is set.
fn upload_purging_config(purging: &mut Section) -> Result<Option<UploadPurging>, ConfigError> {
    if !purging.boolean("enabled")?.unwrap_or(!purging.is_empty()) {
        return Ok(None);
    }
    Ok(Some(UploadPurging {
        age: purging.duration("age")?.unwrap_or(Duration::from_secs(168 * 3600)),
        interval: purging.period("interval")?.unwrap_or(Duration::from_secs(24 * 3600)),
        dry_run: purging.boolean("dryrun")?.unwrap_or(false),
    }))
}

/// `storage.maintenance.garbagecollect`, on when `enabled` or when anything is set.
fn garbage_collection_config(collecting: &mut Section) -> Result<Option<GarbageCollection>, ConfigError> {
    if !collecting.boolean("enabled")?.unwrap_or(!collecting.is_empty()) {
        return Ok(None);
    }
    Ok(Some(GarbageCollection {
        interval: collecting.period("interval")?.unwrap_or(Duration::from_secs(24 * 3600)),
        dry_run: collecting.boolean("dryrun")?.unwrap_or(false),
        delete_untagged: collecting.boolean("deleteuntagged")?.unwrap_or(false),
        grace_period: collecting.duration("grace")?.unwrap_or(Duration::from_secs(3600)),
    }))
}

/// What `http` says.
struct HttpSection {
    addr: SocketAddr,
    prefix: String,
    host: Option<String>,
    relative_urls: Option<bool>,
    drain_timeout: Duration,
    headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
    tls: Option<TlsConfig>,
    debug: Option<DebugConfig>,
}

/// `http`.
fn http_config(http: &mut Section, warnings: &mut Vec<String>) -> Result<HttpSection, ConfigError> {
    let addr = parse_addr(&http.string("addr")?.unwrap_or_else(|| ":5000".to_owned()))?;
    if let Some(net) = http.string("net")?
        && net != "tcp"
    {
        return Err(invalid("http.net", format!("only tcp is supported, found {net:?}")));
    }
    let prefix = http.string("prefix")?.unwrap_or_default();
    let host = http.string("host")?;
    let relative_urls = http.boolean("relativeurls")?;
    let drain_timeout = http.duration("draintimeout")?.unwrap_or(Duration::from_secs(10));
    // The secret signs Distribution's upload state; Wharf keeps that state in the store.
    http.take("secret");
    let headers = http.headers()?;
    let tls = http.section("tls")?.finish_with(tls_config, warnings)?;
    let debug = http.section("debug")?.finish_with(debug_config, warnings)?;
    Ok(HttpSection { addr, prefix, host, relative_urls, drain_timeout, headers, tls, debug })
}

/// `health.storagedriver`, when enabled.
fn health_config(health: &mut Section, warnings: &mut Vec<String>) -> Result<Option<StorageHealth>, ConfigError> {
    health.section("storagedriver")?.finish_with(
        |driver| {
            if !driver.boolean("enabled")?.unwrap_or(false) {
                return Ok(None);
            }
            Ok(Some(StorageHealth {
                interval: driver.period("interval")?.unwrap_or(Duration::from_secs(10)),
                threshold: u32::try_from(driver.number("threshold")?.unwrap_or(1))
                    .map_err(|_| invalid("health.storagedriver.threshold", "too large"))?,
            }))
        },
        warnings,
    )
}

/// `auth`: `htpasswd` or `token`, not both.
fn auth_config(
    auth: &mut Section,
    warnings: &mut Vec<String>,
) -> Result<(Option<Htpasswd>, Option<TokenAuth>), ConfigError> {
    let mut htpasswd_section = auth.section("htpasswd")?;
    let configured = !htpasswd_section.is_empty();
    let htpasswd = match (htpasswd_section.string("realm")?, htpasswd_section.string("path")?) {
        (_, None) if !configured => None,
        (realm, Some(path)) => Some(
            Htpasswd::from_file(realm.as_deref().unwrap_or("Registry Realm"), std::path::Path::new(&path))
                .map_err(|e| invalid("auth.htpasswd.path", e.to_string()))?,
        ),
        (_, None) => return Err(invalid("auth.htpasswd.path", "the htpasswd file is not given")),
    };
    htpasswd_section.finish(warnings);
    let mut token_section = auth.section("token")?;
    let token = if token_section.is_empty() { None } else { Some(token_config(&mut token_section)?) };
    token_section.finish(warnings);
    if htpasswd.is_some() && token.is_some() {
        return Err(invalid("auth", "htpasswd and token cannot both be configured; choose one"));
    }
    Ok((htpasswd, token))
}

/// `validation`: which parts of a pushed manifest must be in the repository.
/// `manifests.indexes.platforms` is Distribution's (`all`, `none`, or `list` with
/// `platformlist: [{os, architecture}]`); `manifests.images.blobs` (`all` or `none`) is
/// Wharf's, for image manifests whose config and layers are pushed later or never.
fn validation_config(section: &mut Section) -> Result<RegistryOptions, ConfigError> {
    let mut options = RegistryOptions::default();
    let mut manifests = section.section("manifests")?;
    let mut indexes = manifests.section("indexes")?;
    let platforms = indexes.string("platforms")?;
    let list = indexes.take("platformlist");
    options.index_children = match (platforms.as_deref().map(str::to_ascii_lowercase).as_deref(), list) {
        (None | Some("all"), None | Some(Value::Null)) => IndexChildren::All,
        (Some("none"), None | Some(Value::Null)) => IndexChildren::None,
        (Some("list"), Some(Value::Array(items))) => {
            let mut platforms = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let mut platform = Section::new(&format!("validation.manifests.indexes.platformlist[{i}]"), item)?;
                let pick = |platform: &mut Section, key: &str| {
                    platform
                        .string(key)?
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| invalid(&platform.key(key), "missing"))
                };
                let (os, architecture) = (pick(&mut platform, "os")?, pick(&mut platform, "architecture")?);
                if let Some(other) = platform.map.keys().next() {
                    return Err(invalid(&platform.key(other), "expected only os and architecture"));
                }
                platforms.push((os, architecture));
            }
            IndexChildren::Platforms(platforms)
        }
        (Some("list"), _) => {
            return Err(invalid(
                "validation.manifests.indexes.platformlist",
                "platforms: list needs a list of {os, architecture}",
            ));
        }
        (Some("all" | "none"), Some(_)) => {
            return Err(invalid("validation.manifests.indexes.platformlist", "only used with platforms: list"));
        }
        (Some(other), _) => {
            return Err(invalid(
                "validation.manifests.indexes.platforms",
                format!("expected all, none or list, found {other:?}"),
            ));
        }
        (None, Some(_)) => {
            return Err(invalid("validation.manifests.indexes.platformlist", "only used with platforms: list"));
        }
    };
    let mut images = manifests.section("images")?;
    options.require_image_blobs = match images.string("blobs")?.as_deref() {
        None | Some("all") => true,
        Some("none") => false,
        Some(other) => {
            return Err(invalid("validation.manifests.images.blobs", format!("expected all or none, found {other:?}")));
        }
    };
    // Checks Wharf does not make (`urls.allow`, say) are refused rather than ignored: a
    // registry that accepts what its configuration says to refuse is worse than one that
    // does not start.
    for rest in [&indexes, &images, &manifests] {
        if let Some(key) = rest.map.keys().next() {
            return Err(invalid(&rest.key(key), "this check is not supported by Wharf"));
        }
    }
    Ok(options)
}

fn tls_config(section: &mut Section) -> Result<Option<TlsConfig>, ConfigError> {
    let certificate = section.string("certificate")?;
    let key = section.string("key")?;
    let client_cas = match section.take("clientcas") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| {
                item.as_str()
                    .map(PathBuf::from)
                    .ok_or_else(|| invalid("http.tls.clientcas", "expected a list of file paths"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("http.tls.clientcas", "expected a list of file paths")),
    };
    let minimum_tls13 = match section.string("minimumtls")?.as_deref() {
        None | Some("tls1.2") => false,
        Some("tls1.3") => true,
        Some(other) => {
            return Err(invalid("http.tls.minimumtls", format!("expected tls1.2 or tls1.3, found {other:?}")));
        }
    };
    match (certificate, key) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) if !cfg!(feature = "tls") => {
            Err(invalid("http.tls", "wharf-server was built without its `tls` feature"))
        }
        (Some(certificate), Some(key)) => {
            Ok(Some(TlsConfig { certificate: certificate.into(), key: key.into(), client_cas, minimum_tls13 }))
        }
        _ => Err(invalid("http.tls", "certificate and key go together")),
    }
}

fn token_config(section: &mut Section) -> Result<TokenAuth, ConfigError> {
    let required = |section: &mut Section, key: &str| -> Result<String, ConfigError> {
        section.string(key)?.ok_or_else(|| invalid(&format!("auth.token.{key}"), "is required"))
    };
    let realm = required(section, "realm")?;
    let service = required(section, "service")?;
    let issuer = required(section, "issuer")?;
    let read = |key: &str, path: Option<String>| -> Result<Option<String>, ConfigError> {
        path.map(|path| {
            std::fs::read_to_string(&path)
                .map_err(|e| invalid(&format!("auth.token.{key}"), format!("cannot read {path}: {e}")))
        })
        .transpose()
    };
    let certificates = read("rootcertbundle", section.string("rootcertbundle")?)?;
    let jwks = read("jwks", section.string("jwks")?)?;
    if certificates.is_none() && jwks.is_none() {
        return Err(invalid("auth.token", "rootcertbundle or jwks is required to verify tokens"));
    }
    TokenAuth::new(&realm, &service, &issuer, certificates.as_deref(), jwks.as_deref())
        .map_err(|e| invalid("auth.token", e))
}

fn debug_config(section: &mut Section) -> Result<Option<DebugConfig>, ConfigError> {
    let Some(addr) = section.string("addr")? else { return Ok(None) };
    let mut prometheus = section.section("prometheus")?;
    let enabled = prometheus.boolean("enabled")?.unwrap_or(false);
    let path = prometheus.string("path")?.unwrap_or_else(|| "/metrics".to_owned());
    let mut ignored = Vec::new();
    prometheus.finish(&mut ignored);
    if let Some(key) = ignored.first() {
        return Err(invalid("http.debug.prometheus", format!("unknown key {key}")));
    }
    if enabled && !cfg!(feature = "metrics") {
        return Err(invalid("http.debug.prometheus.enabled", "wharf-server was built without its `metrics` feature"));
    }
    Ok(Some(DebugConfig {
        addr: parse_addr(&addr)
            .map_err(|_| invalid("http.debug.addr", format!("expected host:port, found {addr:?}")))?,
        prometheus_path: enabled.then_some(path),
    }))
}

/// `:5000`, `0.0.0.0:5000`, `localhost:5000`, `[::1]:5000`.
fn parse_addr(text: &str) -> Result<SocketAddr, ConfigError> {
    let bad = || invalid("http.addr", format!("expected [host]:port, found {text:?}"));
    let full = if text.starts_with(':') { format!("0.0.0.0{text}") } else { text.replace("localhost:", "127.0.0.1:") };
    full.parse().map_err(|_| bad())
}

/// Applies `REGISTRY_SECTION_KEY=value` variables: each `_` goes one level down (keys are
/// matched without regard to case), and the value is read as YAML, as Distribution does.
fn apply_env(root: &mut Value, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    let mut overrides: Vec<(String, String)> =
        env.into_iter().filter(|(name, _)| name.starts_with("REGISTRY_") && name.len() > "REGISTRY_".len()).collect();
    // Shorter paths first, so that `REGISTRY_STORAGE_S3` is applied before its keys.
    overrides.sort_by_key(|(name, _)| name.len());
    for (name, text) in overrides {
        let path: Vec<String> = name["REGISTRY_".len()..].split('_').map(str::to_ascii_lowercase).collect();
        let value: Value = serde_yaml_ng::from_str(&text).unwrap_or(Value::String(text.clone()));
        let mut node = &mut *root;
        for (depth, part) in path.iter().enumerate() {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else { unreachable!("made an object above") };
            let key = map.keys().find(|k| k.eq_ignore_ascii_case(part)).cloned().unwrap_or_else(|| part.clone());
            if depth + 1 == path.len() {
                map.insert(key, value.clone());
                break;
            }
            node = map.entry(key).or_insert(Value::Null);
        }
        if path.iter().any(String::is_empty) {
            return Err(invalid(&name, "an environment override needs a key between every two underscores"));
        }
    }
    Ok(())
}

/// A mapping being read, with its path for messages; what is not taken is warned about.
struct Section {
    path: String,
    map: Map<String, Value>,
}

impl Section {
    fn new(path: &str, value: Value) -> Result<Section, ConfigError> {
        match value {
            Value::Null => Ok(Section { path: path.to_owned(), map: Map::new() }),
            Value::Object(map) => Ok(Section { path: path.to_owned(), map }),
            other => Err(invalid(
                if path.is_empty() { "configuration" } else { path },
                format!("expected a mapping, found {other}"),
            )),
        }
    }

    fn key(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    fn section(&mut self, key: &str) -> Result<Section, ConfigError> {
        let path = self.key(key);
        Section::new(&path, self.take(key).unwrap_or(Value::Null))
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(Value::Bool(flag)) => Ok(Some(flag.to_string())),
            Some(other) => Err(invalid(&self.key(key), format!("expected a string, found {other}"))),
        }
    }

    fn boolean(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(flag)),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(invalid(&self.key(key), format!("expected true or false, found {other}"))),
        }
    }

    fn number(&mut self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) if number.as_u64().is_some() => Ok(number.as_u64()),
            Some(Value::String(text)) if text.parse::<u64>().is_ok() => Ok(text.parse().ok()),
            Some(other) => Err(invalid(&self.key(key), format!("expected a non-negative whole number, found {other}"))),
        }
    }

    /// A Go-style duration (`10s`, `1h30m`, `168h`).
    fn duration(&mut self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let path = self.key(key);
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => humantime::parse_duration(&text)
                .map(Some)
                .map_err(|e| invalid(&path, format!("expected a duration such as 10s or 1h30m, found {text:?} ({e})"))),
            Some(other) => Err(invalid(&path, format!("expected a duration such as 10s or 1h30m, found {other}"))),
        }
    }

    /// A duration that sets how often something runs: zero is refused.
    fn period(&mut self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let path = self.key(key);
        match self.duration(key)? {
            Some(period) if period.is_zero() => Err(invalid(&path, "expected a duration above zero")),
            period => Ok(period),
        }
    }

    /// `http.headers`: names to lists of values (a single value is taken too).
    fn headers(&mut self) -> Result<Vec<(axum::http::HeaderName, axum::http::HeaderValue)>, ConfigError> {
        let path = self.key("headers");
        let mut headers = Vec::new();
        for (name, values) in self.section("headers")?.map {
            let header = axum::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&path, format!("{name:?} is not a header name")))?;
            let values = match values {
                Value::Array(items) => items,
                single => vec![single],
            };
            for value in values {
                let text = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                let value = axum::http::HeaderValue::from_str(&text)
                    .map_err(|_| invalid(&format!("{path}.{name}"), format!("{text:?} is not a header value")))?;
                headers.push((header.clone(), value));
            }
        }
        Ok(headers)
    }

    /// Every string value of the section.
    fn into_strings(self) -> Result<BTreeMap<String, String>, ConfigError> {
        let path = self.path.clone();
        self.map
            .into_iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key, text)),
                Value::Number(_) | Value::Bool(_) => Ok((key, value.to_string())),
                other => Err(invalid(&format!("{path}.{key}"), format!("expected a plain value, found {other}"))),
            })
            .collect()
    }

    /// Reads the section at `key` with `read` (which may warn of what it finds), then warns
    /// about what is left.
    fn read<T>(
        &mut self,
        key: &str,
        warnings: &mut Vec<String>,
        read: impl FnOnce(&mut Section, &mut Vec<String>) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        let mut section = self.section(key)?;
        let value = read(&mut section, warnings)?;
        section.finish(warnings);
        Ok(value)
    }

    /// Reads with `read`, then warns about what is left.
    fn finish_with<T>(
        mut self,
        read: impl FnOnce(&mut Section) -> Result<T, ConfigError>,
        warnings: &mut Vec<String>,
    ) -> Result<T, ConfigError> {
        let value = read(&mut self)?;
        self.finish(warnings);
        Ok(value)
    }

    /// Warns about every key not taken.
    fn finish(self, warnings: &mut Vec<String>) {
        for key in self.map.keys() {
            warnings.push(format!("{} is not supported by Wharf; ignored", self.key(key)));
        }
    }

    fn rest(self) -> Map<String, Value> {
        self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE: &str = r"
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_yaml(text, "config.yml", env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    /// What a build without a feature cannot serve is refused by name, and loads with it.
    #[test]
    fn tls_and_metrics_need_their_features() {
        let tls = "storage: {inmemory: {}}\nhttp:\n  tls:\n    certificate: /etc/registry/cert.pem\n    key: /etc/registry/key.pem\n";
        let metrics = "storage: {inmemory: {}}\nhttp:\n  debug:\n    addr: 127.0.0.1:5001\n    prometheus:\n      enabled: true\n";
        for (text, feature, key) in [
            (tls, cfg!(feature = "tls"), "http.tls"),
            (metrics, cfg!(feature = "metrics"), "http.debug.prometheus.enabled"),
        ] {
            match load(text, &[]) {
                Ok(_) => assert!(feature, "{key} loaded without its feature"),
                Err(e) => {
                    assert!(!feature, "{key}: {e}");
                    let text = e.to_string();
                    assert!(text.contains(key) && text.contains("built without its"), "{text}");
                }
            }
        }
    }

    #[test]
    fn the_guide_config_loads() {
        let config = load(GUIDE, &[]).unwrap();
        assert_eq!(config.addr, "0.0.0.0:5000".parse().unwrap());
        assert!(config.server.delete_enabled);
        assert_eq!(config.log.fields.get("service").map(String::as_str), Some("registry"));
        assert_eq!(config.server.headers.len(), 1);
        assert_eq!(config.storage_health, Some(StorageHealth { interval: Duration::from_secs(10), threshold: 3 }));
        let StorageConfig::Filesystem(fs) = &config.storage else { panic!("{:?}", config.storage) };
        assert_eq!(fs.root_directory, PathBuf::from("/var/lib/registry"));
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(config.warnings[0].starts_with("storage.cache"), "{:?}", config.warnings);
    }

    #[test]
    fn environment_overrides() {
        let config = load(
            GUIDE,
            &[
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/srv/registry"),
                ("REGISTRY_HTTP_ADDR", "127.0.0.1:5001"),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "false"),
                ("REGISTRY_CATALOG_MAXENTRIES", "5"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        let StorageConfig::Filesystem(fs) = &config.storage else { panic!() };
        assert_eq!(fs.root_directory, PathBuf::from("/srv/registry"));
        assert_eq!(config.addr, "127.0.0.1:5001".parse().unwrap());
        assert!(!config.server.delete_enabled);
        assert_eq!(config.server.max_catalog_entries, 5);
        // An empty file with the environment alone.
        let config = load("", &[("REGISTRY_STORAGE_INMEMORY", "")]).unwrap();
        assert!(matches!(config.storage, StorageConfig::InMemory(_)));
    }

    #[cfg(feature = "policy")]
    #[test]
    fn a_policy_file_is_read_and_its_mistakes_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        std::fs::write(&good, "version: 1\nnaming:\n  - tags: {semver: '*'}\n").unwrap();
        let config = load(&format!("storage: {{inmemory: {{}}}}\npolicy:\n  file: {}\n", good.display()), &[]).unwrap();
        let policy = config.server.policy.expect("the policy");
        let digest = wharf_oci::Digest::sha256(b"m");
        assert!(policy.check_tag_push("a", "latest", None, &digest).is_err());
        assert!(load("storage: {inmemory: {}}", &[]).unwrap().server.policy.is_none());
        assert_eq!(config.retention, None);
        let scheduled = load(
            &format!(
                "storage: {{inmemory: {{}}}}\npolicy:\n  file: {}\n  retention:\n    interval: 6h\n    dryrun: true\n    inuse: /etc/wharf/in-use.txt\n",
                good.display()
            ),
            &[],
        )
        .unwrap();
        assert_eq!(
            scheduled.retention,
            Some(Retention {
                interval: Duration::from_secs(6 * 3600),
                dry_run: true,
                in_use: Some("/etc/wharf/in-use.txt".into())
            })
        );
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "version: 1\nrules:\n  - {name: x, tags: {glob: '[x'}, keep: {}}\n").unwrap();
        for (text, says) in [
            (
                format!("storage: {{inmemory: {{}}}}\npolicy:\n  file: {}\n", bad.display()),
                "rules[0] (x).tags.glob: bad glob",
            ),
            (
                "storage: {inmemory: {}}\npolicy:\n  file: /nonexistent/policy.yaml\n".to_owned(),
                "cannot read /nonexistent",
            ),
            (
                "storage: {inmemory: {}}\npolicy:\n  retention: {}\n".to_owned(),
                "policy.file: the policy file is needed",
            ),
            (
                format!(
                    "storage: {{inmemory: {{}}}}\npolicy:\n  file: {}\n  retention: {{every: 1h}}\n",
                    good.display()
                ),
                "policy.retention.every: not a key of policy.retention",
            ),
            (
                format!(
                    "storage: {{inmemory: {{}}}}\npolicy:\n  file: {}\n  retention: {{interval: 0s}}\n",
                    good.display()
                ),
                "policy.retention.interval",
            ),
        ] {
            let error = Config::from_yaml(&text, "test", Vec::new()).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn garbage_collection_schedule() {
        let config = load("storage: {inmemory: {}}", &[]).unwrap();
        assert_eq!(config.garbage_collection, None);
        let text = "storage:\n  inmemory: {}\n  maintenance:\n    garbagecollect:\n      interval: 6h\n      deleteuntagged: true\n      grace: 30m\n";
        let config = load(text, &[]).unwrap();
        assert_eq!(
            config.garbage_collection,
            Some(GarbageCollection {
                interval: Duration::from_secs(6 * 3600),
                dry_run: false,
                delete_untagged: true,
                grace_period: Duration::from_secs(1800),
            })
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let config = load(text, &[("REGISTRY_STORAGE_MAINTENANCE_GARBAGECOLLECT_ENABLED", "false")]).unwrap();
        assert_eq!(config.garbage_collection, None);
    }

    #[test]
    fn manifest_validation() {
        let config = load("storage: {inmemory: {}}", &[]).unwrap();
        assert_eq!(config.registry.index_children, IndexChildren::All);
        assert!(config.registry.require_image_blobs);
        let text = "storage: {inmemory: {}}\nvalidation:\n  manifests:\n    indexes:\n      platforms: list\n      platformlist:\n        - os: linux\n          architecture: amd64\n        - {os: windows, architecture: arm64}\n    images:\n      blobs: none\n";
        let config = load(text, &[]).unwrap();
        assert_eq!(
            config.registry.index_children,
            IndexChildren::Platforms(vec![("linux".into(), "amd64".into()), ("windows".into(), "arm64".into())])
        );
        assert!(!config.registry.require_image_blobs);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let none = load("storage: {inmemory: {}}\nvalidation: {manifests: {indexes: {platforms: none}}}", &[]).unwrap();
        assert_eq!(none.registry.index_children, IndexChildren::None);
        for (text, key) in [
            ("validation: {manifests: {indexes: {platforms: some}}}", "validation.manifests.indexes.platforms"),
            ("validation: {manifests: {indexes: {platforms: list}}}", "validation.manifests.indexes.platformlist"),
            (
                "validation: {manifests: {indexes: {platforms: all, platformlist: []}}}",
                "validation.manifests.indexes.platformlist",
            ),
            (
                "validation: {manifests: {indexes: {platforms: list, platformlist: [{os: linux}]}}}",
                "validation.manifests.indexes.platformlist[0].architecture",
            ),
            ("validation: {manifests: {images: {blobs: some}}}", "validation.manifests.images.blobs"),
            ("validation: {manifests: {urls: {allow: ['^https://']}}}", "validation.manifests.urls"),
        ] {
            match load(&format!("storage: {{inmemory: {{}}}}\n{text}"), &[]) {
                Err(ConfigError::Invalid { key: found, .. }) => assert_eq!(found, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    /// Checks that `text` (below an in-memory storage) is refused at `key`, saying `words`.
    #[cfg(feature = "mirror")]
    fn refused(text: &str, key: &str, words: &str) {
        match load(&format!("storage: {{inmemory: {{}}}}\n{text}"), &[]) {
            Err(ConfigError::Invalid { key: found, message }) => {
                assert_eq!(found, key, "{text}: {message}");
                assert!(message.contains(words), "{text}: {message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }

    #[cfg(feature = "mirror")]
    #[test]
    fn the_proxy_section_names_its_upstreams_and_its_mistakes() {
        let config = load(
            "storage: {inmemory: {}}\nproxy:\n  remoteurl: https://registry-1.docker.io\n  username: u\n  password: p\n  ttl: 1h\n  allowpush: true\n  pinned: ['library/alpine:3.20']\n  expiryinterval: 10m\n  upstreams:\n    - {name: quay.io, remoteurl: 'http://127.0.0.1:5001', prefix: quay, sync: {repositories: [coreos/etcd], tags: {semver: '*'}, interval: 6h}}\n",
            &[],
        )
        .unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let proxy = config.server.proxy.expect("the proxy");
        assert!(proxy.allow_push);
        assert_eq!(
            (proxy.pinned, proxy.expiry_interval),
            (vec!["library/alpine:3.20".to_owned()], Duration::from_secs(600))
        );
        let upstreams: Vec<(&str, &str, Option<&str>, Duration)> =
            proxy.upstreams.iter().map(|u| (u.name.as_str(), u.host.as_str(), u.prefix.as_deref(), u.ttl)).collect();
        assert_eq!(
            upstreams,
            [
                ("docker.io", "registry-1.docker.io", None, Duration::from_secs(3600)),
                ("quay.io", "127.0.0.1:5001", Some("quay"), Duration::from_secs(168 * 3600)),
            ]
        );
        assert!(load("storage: {inmemory: {}}", &[]).unwrap().server.proxy.is_none());
        let helped = load(
            "storage: {inmemory: {}}\nproxy: {remoteurl: 'https://a', exec: {command: docker-credential-ecr-login, lifetime: 1h}}\n",
            &[],
        )
        .unwrap();
        assert!(helped.warnings.is_empty() && helped.server.proxy.is_some(), "{:?}", helped.warnings);
        for (text, key, words) in [
            ("proxy: {username: u}", "proxy.remoteurl", "URL is needed"),
            ("proxy: {remoteurl: 'ftp://x'}", "proxy.remoteurl", "ftp:// is not"),
            ("proxy: {remoteurl: 'https://a', username: u}", "proxy.password", "go together"),
            ("proxy: {remoteurl: 'https://a', exec: {lifetime: 1h}}", "proxy.exec.command", "command is needed"),
            (
                "proxy: {remoteurl: 'https://a', exec: {command: h, colour: red}}",
                "proxy.exec.colour",
                "not a key of exec",
            ),
            (
                "proxy: {remoteurl: 'https://a', username: u, password: p, exec: {command: h}}",
                "proxy.exec.command",
                "not both",
            ),
            ("proxy: {remoteurl: 'https://a', upstreams: [{remoteurl: 'https://b'}]}", "proxy.upstreams", "only one"),
            (
                "proxy: {upstreams: [{remoteurl: 'https://b', prefix: b, color: red}]}",
                "proxy.upstreams[0].color",
                "not a key",
            ),
            ("proxy: {upstreams: {remoteurl: 'https://b'}}", "proxy.upstreams", "expected a list"),
            ("proxy: {remoteurl: 'https://a', pinned: ['alpine']}", "proxy.pinned[0]", "names no tag"),
            (
                "proxy: {upstreams: [{remoteurl: 'https://b', sync: {interval: 1h}}]}",
                "proxy.upstreams[0].sync.repositories",
                "needs a list",
            ),
            (
                "proxy: {upstreams: [{remoteurl: 'https://b', sync: {repositories: [a]}}]}",
                "proxy.upstreams[0].sync.interval",
                "needs an interval",
            ),
            (
                "proxy: {upstreams: [{remoteurl: 'https://b', sync: {repositories: ['A b'], interval: 1h}}]}",
                "proxy.upstreams[0].sync.repositories[0]",
                "not a repository",
            ),
        ] {
            refused(text, key, words);
        }
    }

    #[cfg(feature = "console")]
    #[test]
    fn the_console_is_on_at_ui_unless_moved_or_turned_off() {
        let console = |text: &str| load(&format!("storage: {{inmemory: {{}}}}\n{text}"), &[]).unwrap().server.console;
        assert_eq!(console(""), Some("/ui".to_owned()));
        assert_eq!(console("console: {path: /admin/console/}"), Some("/admin/console".to_owned()));
        assert_eq!(console("console: {enabled: false}"), None);
        for path in ["/v2", "/", "/a/../b", "/a b", "/ui//x"] {
            refused(&format!("console: {{path: '{path}'}}"), "console.path", "not a path for the console");
        }
    }

    #[cfg(feature = "mirror")]
    #[test]
    fn the_replication_section_names_its_rules_and_its_mistakes() {
        let config = load(
            "storage: {inmemory: {}}\nreplication:\n  interval: 1h\n  rules:\n    - name: releases\n      repositories: ['team/**']\n      tags: {semver: '>=1.0.0'}\n      deletes: true\n      targets:\n        - {name: dr, url: 'https://dr.example:5000', prefix: site, username: u, password: p}\n",
            &[],
        )
        .unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let replication = config.replication.expect("replication");
        assert_eq!(replication.sync_interval, Some(Duration::from_secs(3600)));
        let rule = &replication.rules[0];
        assert!(rule.deletes && rule.takes("team/app", "v1.2.0"));
        assert!(!rule.takes("team/app", "v0.9.0") && !rule.takes("other/app", "v1.2.0"));
        assert_eq!(
            (rule.targets[0].host.as_str(), rule.targets[0].prefix.as_deref()),
            ("dr.example:5000", Some("site"))
        );
        for (text, key, words) in [
            ("replication: {rules: [{name: r}]}", "replication.rules[0].targets", "needs a list of targets"),
            ("replication: {rules: [{targets: [{url: 'https://a'}]}]}", "replication.rules[0].name", "needs a name"),
            (
                "replication: {rules: [{name: r, repositories: ['['], targets: [{url: 'https://a'}]}]}",
                "replication.rules[0].repositories[0]",
                "bad glob",
            ),
            (
                "replication: {rules: [{name: r, tags: {semver: '>>1'}, targets: [{url: 'https://a'}]}]}",
                "replication.rules[0].tags",
                "bad version range",
            ),
            (
                "replication: {rules: [{name: r, targets: [{url: 'ftp://a'}]}]}",
                "replication.rules[0].targets[0].url",
                "ftp://",
            ),
            (
                "replication: {rules: [{name: 'r r', targets: [{url: 'https://a'}]}]}",
                "replication.rules",
                "letters, digits",
            ),
            ("replication: {interval: 0s, rules: []}", "replication.interval", "above zero"),
            (
                "replication: {rules: [{name: r, targets: [{url: 'https://a', tls: {rootcas: [/nonexistent/ca.pem]}}]}]}",
                "replication.rules[0].targets[0].tls.rootcas",
                "cannot read /nonexistent/ca.pem",
            ),
            (
                "replication: {rules: [{name: r, targets: [{url: 'https://a', tls: {rootcas: 7}}]}]}",
                "replication.rules[0].targets[0].tls.rootcas",
                "a list of file paths",
            ),
            (
                "replication: {rules: [{name: r, targets: [{url: 'https://a', tls: {certificate: /c.pem}}]}]}",
                "replication.rules[0].targets[0].tls.key",
                "go together",
            ),
            (
                "replication: {rules: [{name: r, targets: [{url: 'https://a', tls: {verify: false}}]}]}",
                "replication.rules[0].targets[0].tls.verify",
                "not a key of tls",
            ),
            (
                "proxy: {remoteurl: 'https://a', tls: {certdir: /nonexistent/certs.d}}",
                "proxy.tls.certdir",
                "/nonexistent/certs.d",
            ),
        ] {
            refused(text, key, words);
        }
        // A file that holds no certificate is named too.
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let text = format!(
            "replication: {{rules: [{{name: r, targets: [{{url: 'https://a', tls: {{rootcas: [{}]}}}}]}}]}}",
            empty.display()
        );
        refused(&text, "replication.rules[0].targets[0].tls.rootcas", &empty.display().to_string());
        // insecureskipverify for one target: read, and nothing left over.
        let config = load(
            "storage: {inmemory: {}}\nreplication: {rules: [{name: r, targets: [{url: 'https://a', tls: {insecureskipverify: true}}]}]}\n",
            &[],
        )
        .unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn unknown_keys_are_warnings() {
        let text = "storage: {inmemory: {}}\nredis: {addr: 'localhost:6379'}\nhttp: {addr: ':5000', bogus: 1}\n";
        let config = load(text, &[]).unwrap();
        let mut warnings = config.warnings;
        warnings.sort();
        assert_eq!(
            warnings,
            ["http.bogus is not supported by Wharf; ignored", "redis is not supported by Wharf; ignored",]
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("storage: {inmemory: {}}\nhttp: {addr: 'nowhere'}", "http.addr"),
            ("storage: {inmemory: {}}\nlog: {level: loud}", "log.level"),
            ("storage: {inmemory: {}}\nlog: {formatter: xml}", "log.formatter"),
            ("storage: {inmemory: {}}\nstorage: {delete: {enabled: maybe}}", "storage.delete.enabled"),
            ("storage: {inmemory: {}, delete: {enabled: maybe}}", "storage.delete.enabled"),
            (
                "storage: {inmemory: {}}\nhealth: {storagedriver: {enabled: true, interval: soon}}",
                "health.storagedriver.interval",
            ),
            ("storage: {inmemory: {}}\ncatalog: {maxentries: -1}", "catalog.maxentries"),
            (
                "storage: {inmemory: {}, maintenance: {uploadpurging: {enabled: true, interval: 0s}}}",
                "storage.maintenance.uploadpurging.interval",
            ),
            (
                "storage: {inmemory: {}, maintenance: {garbagecollect: {interval: 0s}}}",
                "storage.maintenance.garbagecollect.interval",
            ),
            (
                "storage: {inmemory: {}, maintenance: {garbagecollect: {deleteuntagged: sometimes}}}",
                "storage.maintenance.garbagecollect.deleteuntagged",
            ),
            ("storage: {inmemory: {}}\nhttp: {headers: {'Bad Header': [x]}}", "http.headers"),
            ("storage: {filesystem: {rootdirectory: 5, maxthreads: lots}}", "storage"),
            ("http: {addr: ':5000'}", "storage"),
            (
                "storage: {inmemory: {}}\nauth: {htpasswd: {realm: r, path: /nonexistent/htpasswd}}",
                "auth.htpasswd.path",
            ),
            ("storage: {inmemory: {}}\nauth: {htpasswd: {realm: r}}", "auth.htpasswd.path"),
            ("storage: {inmemory: {}}\nauth: {token: {realm: r}}", "auth.token.service"),
            ("storage: {inmemory: {}}\nauth: {token: {realm: r, service: s, issuer: i}}", "auth.token"),
            (
                "storage: {inmemory: {}}\nauth: {token: {realm: r, service: s, issuer: i, jwks: /nonexistent}}",
                "auth.token.jwks",
            ),
        ] {
            match load(text, &[]) {
                Err(ConfigError::Invalid { key: found, message }) => assert_eq!(found, key, "{text}: {message}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(load("storage: [", &[]), Err(ConfigError::Syntax { .. })));
    }
}
