//! Where credentials come from: a fixed set given by the caller, or the files docker and
//! podman write (`auths`, `credHelpers`, `credsStore`), behind [`CredentialSource`] so a
//! caller can plug in its own (a vault, a cloud's token service).
//!
//! The files are read here rather than through the `docker_credential` crate: it runs
//! helpers without a time limit, so a helper waiting on a locked keyring would hang a copy
//! for ever, and it reads neither podman's files nor `DOCKER_CONFIG`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::error::{Error, Result};

/// What proves who the client is to one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password (or a personal access token used as one).
    Basic {
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in docker's config), exchanged at the
    /// token server for access tokens.
    IdentityToken(String),
    /// A bearer token sent as it is (`registrytoken`), with no token server involved.
    RegistryToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username:?}, <password>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<secret>)"),
            Credential::RegistryToken(_) => f.write_str("RegistryToken(<secret>)"),
        }
    }
}

impl Credential {
    /// A user name and password.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Credential {
        Credential::Basic { username: username.into(), password: password.into() }
    }
}

/// Finds the credential for a registry host (`host[:port]`, as in an image reference).
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// The credential for `host`, or `None` to go anonymous.
    ///
    /// # Errors
    /// Whatever stopped the source from answering (an unreadable file, a helper that failed
    /// or hung); the client reports it with the host.
    fn credential<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Option<Credential>>>;
}

/// No credentials: every registry is asked anonymously.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl CredentialSource for Anonymous {
    fn credential<'a>(&'a self, _host: &'a str) -> BoxFuture<'a, Result<Option<Credential>>> {
        Box::pin(async { Ok(None) })
    }
}

/// Credentials given by the caller, per host, with an optional one for every other host.
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials {
    hosts: BTreeMap<String, Credential>,
    fallback: Option<Credential>,
}

impl StaticCredentials {
    /// No credentials yet.
    pub fn new() -> StaticCredentials {
        StaticCredentials::default()
    }

    /// `credential` for `host`.
    #[must_use]
    pub fn with(mut self, host: &str, credential: Credential) -> StaticCredentials {
        self.hosts.insert(normalize_host(host), credential);
        self
    }

    /// `credential` for every host not given one of its own.
    #[must_use]
    pub fn with_fallback(mut self, credential: Credential) -> StaticCredentials {
        self.fallback = Some(credential);
        self
    }
}

impl CredentialSource for StaticCredentials {
    fn credential<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Option<Credential>>> {
        let found = self.hosts.get(&normalize_host(host)).or(self.fallback.as_ref()).cloned();
        Box::pin(async move { Ok(found) })
    }
}

/// How long a credential helper may take before it is killed, unless told otherwise.
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// The credentials docker and podman store: every config file found, first match wins, in
/// the order podman reads them (`REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
/// then docker's `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
#[derive(Debug, Clone)]
pub struct ConfigFiles {
    files: Vec<PathBuf>,
    helper_timeout: Duration,
    helper_dirs: Vec<PathBuf>,
}

impl ConfigFiles {
    /// The files named by the environment, as podman and docker find them; files that do
    /// not exist are passed over when asked.
    pub fn from_env() -> ConfigFiles {
        let mut files = Vec::new();
        if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE") {
            files.push(PathBuf::from(file));
        }
        if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
            files.push(Path::new(&dir).join("containers/auth.json"));
        }
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            files.push(Path::new(&dir).join("config.json"));
        } else if let Some(home) = std::env::var_os("HOME") {
            files.push(Path::new(&home).join(".docker/config.json"));
        }
        ConfigFiles { files, helper_timeout: DEFAULT_HELPER_TIMEOUT, helper_dirs: Vec::new() }
    }

    /// Exactly these files, in this order.
    pub fn from_files(files: impl IntoIterator<Item = PathBuf>) -> ConfigFiles {
        ConfigFiles {
            files: files.into_iter().collect(),
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
            helper_dirs: Vec::new(),
        }
    }

    /// How long a credential helper may run before it is killed and named in the error.
    #[must_use]
    pub fn helper_timeout(mut self, timeout: Duration) -> ConfigFiles {
        self.helper_timeout = timeout;
        self
    }

    /// Look for `docker-credential-*` helpers in these folders only, instead of `PATH`
    /// (a service that must not run whatever a user put on its `PATH`).
    #[must_use]
    pub fn helper_dirs(mut self, dirs: impl IntoIterator<Item = PathBuf>) -> ConfigFiles {
        self.helper_dirs = dirs.into_iter().collect();
        self
    }

    /// The helper program `name` names: found in the helper folders when given, else
    /// left to `PATH`.
    fn helper_program(&self, name: &str) -> PathBuf {
        let program = format!("docker-credential-{name}");
        if self.helper_dirs.is_empty() {
            return PathBuf::from(program);
        }
        self.helper_dirs
            .iter()
            .map(|dir| dir.join(&program))
            .find(|path| path.is_file())
            .unwrap_or_else(|| self.helper_dirs[0].join(&program))
    }

    /// The files this source reads, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    async fn lookup(&self, host: &str) -> Result<Option<Credential>> {
        let host = normalize_host(host);
        for file in &self.files {
            let text = match tokio::fs::read(file).await {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(credentials_error(file, format!("cannot read it: {e}"))),
            };
            let config: ConfigFile = serde_json::from_slice(&text)
                .map_err(|e| credentials_error(file, format!("not a config file: {e}")))?;
            if let Some(helper) = config.cred_helpers.get(&host).or_else(|| {
                config.cred_helpers.iter().find(|(key, _)| normalize_host(key) == host).map(|(_, helper)| helper)
            }) {
                return run_helper(&self.helper_program(helper), &host, self.helper_timeout).await;
            }
            if let Some(credential) = config.stored(&host, file)? {
                return Ok(Some(credential));
            }
            if let Some(store) = &config.creds_store
                && let Some(credential) = run_helper(&self.helper_program(store), &host, self.helper_timeout).await?
            {
                return Ok(Some(credential));
            }
        }
        Ok(None)
    }
}

impl CredentialSource for ConfigFiles {
    fn credential<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Option<Credential>>> {
        Box::pin(self.lookup(host))
    }
}

/// The credential a docker or podman config file (`config.json`, `auth.json`) stores for
/// `host` in its `auths`, without running any helper it names.
///
/// # Errors
/// [`Error::Credentials`] naming `file` when the text is not such a file or the entry for
/// `host` cannot be read (an `auth` that is not base64 `user:password`).
pub fn stored_credential(text: &[u8], host: &str, file: &Path) -> Result<Option<Credential>> {
    let config: ConfigFile =
        serde_json::from_slice(text).map_err(|e| credentials_error(file, format!("not a config file: {e}")))?;
    config.stored(&normalize_host(host), file)
}

impl ConfigFile {
    fn stored(&self, host: &str, file: &Path) -> Result<Option<Credential>> {
        match self.auths.iter().find(|(key, _)| normalize_host(key) == host) {
            Some((_, entry)) => entry.credential().map_err(|reason| credentials_error(file, reason)),
            None => Ok(None),
        }
    }
}

/// One of docker's or podman's files: only the keys that hold credentials.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigFile {
    auths: BTreeMap<String, AuthEntry>,
    #[serde(rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
    registrytoken: Option<String>,
}

impl AuthEntry {
    fn credential(&self) -> Result<Option<Credential>, String> {
        if let Some(token) = self.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(token.clone())));
        }
        if let Some(token) = self.registrytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::RegistryToken(token.clone())));
        }
        if let Some(auth) = self.auth.as_ref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("an `auth` value is not base64: {e}"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| "an `auth` value is not UTF-8".to_owned())?;
            let (username, password) =
                decoded.split_once(':').ok_or_else(|| "an `auth` value is not `user:password`".to_owned())?;
            return Ok(Some(Credential::basic(username, password)));
        }
        match (&self.username, &self.password) {
            (Some(username), Some(password)) => Ok(Some(Credential::basic(username, password))),
            _ => Ok(None),
        }
    }
}

/// Docker Hub's credentials are filed under its old index address.
const DOCKER_HUB_KEYS: [&str; 4] = ["index.docker.io", "registry-1.docker.io", "docker.io", "registry.hub.docker.com"];

/// A config key or a reference's host as one comparable name: no scheme, no path, Docker
/// Hub's aliases as one.
fn normalize_host(key: &str) -> String {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    if DOCKER_HUB_KEYS.contains(&host.as_str()) { "docker.io".to_owned() } else { host }
}

fn credentials_error(file: &Path, reason: String) -> Error {
    Error::Credentials { source_name: file.display().to_string(), reason }
}

/// What a credential helper prints for `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// One docker credential helper asked for every host, its answers kept for a while: what
/// Distribution's `proxy.exec` runs for an upstream.
#[derive(Debug)]
pub struct CredentialHelper {
    program: PathBuf,
    timeout: Duration,
    lifetime: Duration,
    /// Answers by host, with when they were given.
    answers: std::sync::Mutex<BTreeMap<String, (std::time::Instant, Option<Credential>)>>,
}

impl CredentialHelper {
    /// The helper `command` (a `docker-credential-*` program, by name on `PATH` or by
    /// path), asked anew every time, killed after [`DEFAULT_HELPER_TIMEOUT`].
    pub fn new(command: impl Into<PathBuf>) -> CredentialHelper {
        CredentialHelper {
            program: command.into(),
            timeout: DEFAULT_HELPER_TIMEOUT,
            lifetime: Duration::ZERO,
            answers: std::sync::Mutex::default(),
        }
    }

    /// Its answers kept for `lifetime` (Distribution's `exec.lifetime`).
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> CredentialHelper {
        self.lifetime = lifetime;
        self
    }
}

impl CredentialSource for CredentialHelper {
    fn credential<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Option<Credential>>> {
        Box::pin(async move {
            let kept = |answers: &BTreeMap<String, (std::time::Instant, Option<Credential>)>| {
                answers.get(host).filter(|(at, _)| at.elapsed() < self.lifetime).map(|(_, answer)| answer.clone())
            };
            if let Some(answer) = kept(&self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)) {
                return Ok(answer);
            }
            let answer = run_helper(&self.program, host, self.timeout).await?;
            self.answers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(host.to_owned(), (std::time::Instant::now(), answer.clone()));
            Ok(answer)
        })
    }
}

/// Runs `<program> get` with `host` on its input, killed after `timeout`.
async fn run_helper(program: &Path, host: &str, timeout: Duration) -> Result<Option<Credential>> {
    let fail = |reason: String| Error::Credentials { source_name: program.display().to_string(), reason };
    let server = if host == "docker.io" { "https://index.docker.io/v1/" } else { host };
    let mut child = tokio::process::Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| fail("no input pipe".into()))?;
    let mut stdout = child.stdout.take().ok_or_else(|| fail("no output pipe".into()))?;
    let mut stderr = child.stderr.take().ok_or_else(|| fail("no error pipe".into()))?;
    let talk = async {
        // A helper that answers without reading its input closes the pipe early.
        match stdin.write_all(server.as_bytes()).await {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
            _ => drop(stdin),
        }
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (read_out, read_err) = futures::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        read_out?;
        read_err?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out, err))
    };
    let (status, out, err) = match tokio::time::timeout(timeout, talk).await {
        Ok(answer) => answer.map_err(|e| fail(format!("talking to it: {e}")))?,
        Err(_) => return Err(fail(format!("no answer for {host} within {timeout:?}; killed"))),
    };
    if !status.success() {
        let out = String::from_utf8_lossy(&out);
        // Helpers say "credentials not found in native keychain" on their output and exit 1.
        if out.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let err = String::from_utf8_lossy(&err);
        return Err(fail(format!("{status} for {host}: {}", err.trim().chars().take(200).collect::<String>())));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out)
        .map_err(|e| fail(format!("its answer for {host} is not JSON credentials: {e}")))?;
    Ok(Some(if answer.username == "<token>" {
        Credential::IdentityToken(answer.secret)
    } else {
        Credential::basic(answer.username, answer.secret)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_without_scheme_path_or_hub_alias() {
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_host("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_host("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(normalize_host("Quay.IO"), "quay.io");
    }

    #[test]
    fn auth_entries_in_every_form() {
        let entry = |json: &str| serde_json::from_str::<AuthEntry>(json).unwrap().credential();
        assert_eq!(entry(r#"{"auth":"dXNlcjpwYTpzcw=="}"#), Ok(Some(Credential::basic("user", "pa:ss"))));
        assert_eq!(entry(r#"{"username":"u","password":"p"}"#), Ok(Some(Credential::basic("u", "p"))));
        assert_eq!(entry(r#"{"auth":"","identitytoken":"r"}"#), Ok(Some(Credential::IdentityToken("r".into()))));
        assert_eq!(entry(r#"{"registrytoken":"t"}"#), Ok(Some(Credential::RegistryToken("t".into()))));
        assert_eq!(entry("{}"), Ok(None));
        assert!(entry(r#"{"auth":"not base64!"}"#).unwrap_err().contains("not base64"));
        assert!(entry(r#"{"auth":"bm9jb2xvbg=="}"#).unwrap_err().contains("user:password"));
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", Credential::basic("alice", "hunter2"));
        assert!(shown.contains("alice") && !shown.contains("hunter2"));
        assert!(!format!("{:?}", Credential::IdentityToken("refresh".into())).contains("refresh"));
    }
}
