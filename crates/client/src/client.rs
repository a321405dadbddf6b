//! The client: one connection pool, one authentication state and one retry policy for every
//! registry it talks to, and the request loop they meet in.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::{Auth, Scope};
use crate::credentials::{Anonymous, CredentialSource};
use crate::error::{Error, Result};
use crate::push::UploadOptions;

/// How often and how patiently a request is tried again after a failure that may pass: a
/// connection refused or cut, 408, 429 and 5xx answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// How many times a request is tried again before its failure is returned.
    pub attempts: u32,
    /// The wait before the first retry; each retry waits up to twice as long as the one
    /// before, a random share of it (full jitter), unless the server says `Retry-After`.
    pub base_delay: Duration,
    /// The longest wait between two tries, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry { attempts: 5, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(30) }
    }
}

impl Retry {
    /// Never try again.
    pub const NEVER: Retry = Retry { attempts: 0, base_delay: Duration::ZERO, max_delay: Duration::ZERO };

    /// The wait before retry number `attempt` (0 for the first), honouring the server's
    /// `Retry-After` when it sent one.
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_delay);
        }
        let ceiling =
            self.base_delay.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX)).min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(nanos / 2..=nanos.max(1)))
    }
}

/// How the client reaches registries. Start from [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    credentials: Arc<dyn CredentialSource>,
    plain_http: BTreeSet<String>,
    insecure: BTreeSet<String>,
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    verify_tls: bool,
    retry: Retry,
    max_manifest_bytes: u64,
    connect_timeout: Duration,
    user_agent: String,
    uploads: UploadOptions,
    transfers_per_host: usize,
}

impl ClientBuilder {
    /// Where credentials come from (default: none, every registry asked anonymously).
    #[must_use]
    pub fn credentials(mut self, source: impl CredentialSource + 'static) -> ClientBuilder {
        self.credentials = Arc::new(source);
        self
    }

    /// Talk plain HTTP to `host` (`host[:port]`); every other host is HTTPS.
    #[must_use]
    pub fn plain_http(mut self, host: &str) -> ClientBuilder {
        self.plain_http.insert(host.to_ascii_lowercase());
        self
    }

    /// Reach `host` as skopeo's `--tls-verify=false` does: HTTPS without checking its
    /// certificate, or plain HTTP when it does not speak TLS. Other hosts keep checks.
    #[must_use]
    pub fn insecure(mut self, host: &str) -> ClientBuilder {
        self.insecure.insert(host.to_ascii_lowercase());
        self
    }

    /// Trust `pem` (one or more certificates) as roots besides the system's.
    ///
    /// # Errors
    /// [`Error::Tls`] when the text holds no certificate.
    pub fn root_certificates(mut self, pem: &[u8]) -> Result<ClientBuilder> {
        let certificates =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error::Tls(format!("root certificates: {e}")))?;
        if certificates.is_empty() {
            return Err(Error::Tls("root certificates: no PEM certificate found".into()));
        }
        self.roots.extend(certificates);
        Ok(self)
    }

    /// Present a client certificate (mTLS): `pem` holds the certificate chain and its
    /// private key.
    ///
    /// # Errors
    /// [`Error::Tls`] when the text holds no usable certificate and key.
    pub fn client_certificate(mut self, pem: &[u8]) -> Result<ClientBuilder> {
        self.identity =
            Some(reqwest::Identity::from_pem(pem).map_err(|e| Error::Tls(format!("client certificate: {e}")))?);
        Ok(self)
    }

    /// Reads a certificate folder as docker and skopeo lay it out (`/etc/docker/certs.d/<host>`):
    /// every `*.crt` is a root to trust, a `*.cert` with the `*.key` of the same name is
    /// the client certificate.
    ///
    /// # Errors
    /// [`Error::Tls`] naming the file that cannot be read or used.
    pub fn cert_dir(mut self, dir: &Path) -> Result<ClientBuilder> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::Tls(format!("{}: {e}", dir.display())))?;
        let mut names: Vec<_> = entries.filter_map(|entry| entry.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            let read = |path: &Path| std::fs::read(path).map_err(|e| Error::Tls(format!("{}: {e}", path.display())));
            match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => self = self.root_certificates(&read(&path)?)?,
                Some("cert") => {
                    let key = path.with_extension("key");
                    let mut pem = read(&path)?;
                    pem.push(b'\n');
                    pem.extend(read(&key)?);
                    self = self.client_certificate(&pem).map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
                }
                _ => {}
            }
        }
        Ok(self)
    }

    /// Whether to check servers' certificates (default: yes). Turning it off is for test
    /// registries with self-signed certificates one cannot install.
    #[must_use]
    pub fn verify_tls(mut self, verify: bool) -> ClientBuilder {
        self.verify_tls = verify;
        self
    }

    /// The retry policy (default: [`Retry::default`]).
    #[must_use]
    pub fn retry(mut self, retry: Retry) -> ClientBuilder {
        self.retry = retry;
        self
    }

    /// The largest manifest the client reads (default: 4 MiB, as registries cap them).
    #[must_use]
    pub fn max_manifest_bytes(mut self, limit: u64) -> ClientBuilder {
        self.max_manifest_bytes = limit;
        self
    }

    /// How blobs are uploaded (default: [`UploadOptions::default`]); a host that refuses a
    /// body as too large gets smaller chunks from then on.
    #[must_use]
    pub fn upload_options(mut self, options: UploadOptions) -> ClientBuilder {
        self.uploads = options;
        self
    }

    /// How many blobs move to or from one host at once, across every copy, push and pull
    /// of this client and its clones (default: 8; at least 1). A copy between two hosts
    /// takes a place at each.
    #[must_use]
    pub fn transfers_per_host(mut self, limit: usize) -> ClientBuilder {
        self.transfers_per_host = limit.max(1);
        self
    }

    /// How long to wait for a connection (default: 30 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// The client.
    ///
    /// # Errors
    /// [`Error::Tls`] when the TLS settings cannot be put together.
    pub fn build(self) -> Result<Client> {
        let make = |verify: bool| -> Result<reqwest::Client> {
            let mut http = reqwest::Client::builder()
                .user_agent(&self.user_agent)
                .connect_timeout(self.connect_timeout)
                .tcp_nodelay(true)
                .danger_accept_invalid_certs(!verify);
            for root in &self.roots {
                http = http.add_root_certificate(root.clone());
            }
            if let Some(identity) = &self.identity {
                http = http.identity(identity.clone());
            }
            http.build().map_err(|e| Error::Tls(format!("building the HTTP client: {}", chain(&e))))
        };
        let http = make(self.verify_tls)?;
        let unchecked = if self.insecure.is_empty() { None } else { Some(make(false)?) };
        let auth = Auth::new(self.credentials, http.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                auth,
                plain_http: self.plain_http,
                insecure: self.insecure,
                unchecked,
                downgraded: Mutex::default(),
                retry: self.retry,
                max_manifest_bytes: self.max_manifest_bytes,
                upload_defaults: self.uploads,
                hosts: Mutex::default(),
                transfers_per_host: self.transfers_per_host,
                transfers: Mutex::default(),
            }),
        })
    }
}

/// A registry client. Cheap to clone: clones share connections, tokens and settings.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    auth: Auth,
    plain_http: BTreeSet<String>,
    /// Hosts reached without certificate checks, through `unchecked`.
    insecure: BTreeSet<String>,
    unchecked: Option<reqwest::Client>,
    /// Insecure hosts found to speak plain HTTP.
    downgraded: Mutex<BTreeSet<String>>,
    pub(crate) retry: Retry,
    pub(crate) max_manifest_bytes: u64,
    upload_defaults: UploadOptions,
    /// What was learnt of each host's uploads: its chunk limits.
    hosts: Mutex<HashMap<String, HostUploads>>,
    transfers_per_host: usize,
    /// The places for blob transfers, one semaphore per host.
    transfers: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Places held for one blob transfer, one at each host it touches; given back on drop.
#[derive(Debug)]
pub(crate) struct TransferSlots {
    _permits: Vec<OwnedSemaphorePermit>,
}

#[derive(Debug, Default, Clone, Copy)]
struct HostUploads {
    max_chunk: Option<u64>,
    min_chunk: Option<u64>,
}

/// One request, as the request loop needs it: where it goes, what access it needs, and how
/// to build it again for a retry.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) host: &'a str,
    pub(crate) url: String,
    pub(crate) scopes: Vec<Scope>,
    /// Whether sending it twice does no harm. A request that is not (a chunk of an upload)
    /// is tried again only when it cannot have reached the server (the connection was
    /// refused) or was turned away with 429; any other failure goes to its caller, which
    /// asks the server where things stand.
    pub(crate) idempotent: bool,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, host: &'a str, url: String, scopes: Vec<Scope>) -> Call<'a> {
        Call { method, host, url, scopes, idempotent: true }
    }

    pub(crate) fn once(mut self) -> Call<'a> {
        self.idempotent = false;
        self
    }
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl Client {
    /// A client with the defaults: anonymous, HTTPS with the system's roots, retries.
    ///
    /// # Panics
    /// When the system's TLS roots cannot be loaded at all; [`Client::builder`] returns
    /// that as an error instead.
    pub fn new() -> Client {
        Client::builder().build().expect("a client with default settings")
    }

    /// Settings for a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            credentials: Arc::new(Anonymous),
            plain_http: BTreeSet::new(),
            insecure: BTreeSet::new(),
            roots: Vec::new(),
            identity: None,
            verify_tls: true,
            retry: Retry::default(),
            max_manifest_bytes: wharf_oci::MAX_MANIFEST_BYTES as u64,
            connect_timeout: Duration::from_secs(30),
            user_agent: concat!("wharf-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            uploads: UploadOptions::default(),
            transfers_per_host: 8,
        }
    }

    /// Waits for a place at each of `hosts` for one blob transfer. Places are taken in the
    /// hosts' order, each host once, so transfers that need the same two hosts in either
    /// direction cannot each hold what the other waits for.
    pub(crate) async fn transfer_slots(&self, hosts: &[&str]) -> TransferSlots {
        let mut hosts: Vec<String> = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        hosts.sort();
        hosts.dedup();
        let mut held = Vec::with_capacity(hosts.len());
        for host in hosts {
            let semaphore = self
                .inner
                .transfers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(host)
                .or_insert_with(|| Arc::new(Semaphore::new(self.inner.transfers_per_host)))
                .clone();
            // The semaphore is never closed.
            if let Ok(permit) = semaphore.acquire_owned().await {
                held.push(permit);
            }
        }
        TransferSlots { _permits: held }
    }

    /// How to upload to `host`: the client's options with what the host taught it.
    pub(crate) fn upload_options(&self, host: &str) -> UploadOptions {
        let learnt =
            self.inner.hosts.lock().unwrap_or_else(PoisonError::into_inner).get(host).copied().unwrap_or_default();
        let mut options = self.inner.upload_defaults;
        options.max_chunk = match (options.max_chunk, learnt.max_chunk) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let (Some(max), Some(min)) = (options.max_chunk, learnt.min_chunk) {
            options.max_chunk = Some(max.max(min));
        }
        options
    }

    /// `host` refused a body of more than `max` bytes.
    pub(crate) fn learn_max_chunk(&self, host: &str, max: u64) {
        let mut hosts = self.inner.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = hosts.entry(host.to_owned()).or_default();
        entry.max_chunk = Some(entry.max_chunk.map_or(max, |known| known.min(max)));
    }

    /// `host` asks for chunks of at least `min` bytes (`OCI-Chunk-Min-Length`).
    pub(crate) fn learn_min_chunk(&self, host: &str, min: Option<u64>) {
        if let Some(min) = min {
            self.inner
                .hosts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(host.to_owned())
                .or_default()
                .min_chunk = Some(min);
        }
    }

    /// The address of `path` under `/v2/` on `host`. Docker Hub's API lives on
    /// `registry-1.docker.io`.
    pub(crate) fn url(&self, host: &str, path: &str) -> String {
        let host_key = host.to_ascii_lowercase();
        let plain = self.inner.plain_http.contains(&host_key)
            || self.inner.downgraded.lock().unwrap_or_else(PoisonError::into_inner).contains(&host_key);
        let scheme = if plain { "http" } else { "https" };
        let api_host = if host == "docker.io" { "registry-1.docker.io" } else { host };
        format!("{scheme}://{api_host}/v2/{path}")
    }

    /// Sends the request `build` makes, answering authentication challenges and retrying
    /// what may pass. Returns the first answer that is neither, whatever its status.
    pub(crate) async fn send(
        &self,
        call: &Call<'_>,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let inner = &self.inner;
        let mut attempt = 0;
        let mut challenged = false;
        let host = call.host.to_ascii_lowercase();
        let insecure = inner.insecure.contains(&host);
        let http = match (&inner.unchecked, insecure) {
            (Some(unchecked), true) => unchecked,
            _ => &inner.http,
        };
        loop {
            let downgraded =
                insecure && inner.downgraded.lock().unwrap_or_else(PoisonError::into_inner).contains(&host);
            let url = match call.url.strip_prefix("https://") {
                Some(rest) if downgraded => format!("http://{rest}"),
                _ => call.url.clone(),
            };
            let mut request = build(http.request(call.method.clone(), &url));
            if let Some(authorization) = inner.auth.authorization(call.host, &call.scopes).await? {
                request = request.header(AUTHORIZATION, authorization);
            }
            let failure = match request.send().await {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    let header = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
                    if !challenged && inner.auth.challenged(call.host, &call.scopes, header)? {
                        challenged = true;
                        continue;
                    }
                    let reason = match header {
                        Some(header) => format!("{} {} refused (challenge: {header})", call.method, call.url),
                        None => format!("{} {} refused without a challenge", call.method, call.url),
                    };
                    return Err(Error::Unauthorized { host: call.host.to_owned(), reason });
                }
                Ok(response)
                    if attempt < inner.retry.attempts
                        && (response.status() == StatusCode::TOO_MANY_REQUESTS
                            || (call.idempotent && retryable(response.status()))) =>
                {
                    Some(retry_after(response.headers()))
                }
                Ok(response) => return Ok(response),
                Err(e) if insecure && !downgraded && url.starts_with("https://") && e.is_connect() => {
                    // No TLS there: an insecure host may speak plain HTTP.
                    tracing::debug!(host = call.host, error = %e, "no TLS; trying plain HTTP");
                    inner.downgraded.lock().unwrap_or_else(PoisonError::into_inner).insert(host.clone());
                    continue;
                }
                Err(e) if attempt < inner.retry.attempts && (e.is_connect() || (call.idempotent && transient(&e))) => {
                    tracing::debug!(url = %call.url, error = %e, attempt, "request failed; retrying");
                    None
                }
                Err(source) => {
                    return Err(Error::Transport { method: call.method.to_string(), url: call.url.clone(), source });
                }
            };
            let delay = inner.retry.delay(attempt, failure.flatten());
            tracing::debug!(url = %call.url, ?delay, attempt, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// `response` when its status is one of `expected`, otherwise the registry's error.
    pub(crate) async fn expect(call: &Call<'_>, response: Response, expected: &[StatusCode]) -> Result<Response> {
        if expected.contains(&response.status()) {
            return Ok(response);
        }
        Err(status_error(call, response).await)
    }
}

/// The error for an answer the caller did not expect, with the registry's `errors` codes.
pub(crate) async fn status_error(call: &Call<'_>, response: Response) -> Error {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let (codes, message) = match serde_json::from_slice::<ErrorsBody>(&body) {
        Ok(errors) => {
            let message = errors.errors.first().and_then(|e| e.message.clone()).unwrap_or_default();
            (errors.errors.into_iter().filter_map(|e| e.code).collect(), message)
        }
        Err(_) => (Vec::new(), String::from_utf8_lossy(&body).trim().chars().take(200).collect()),
    };
    Error::Status { method: call.method.to_string(), url: call.url.clone(), status, codes, message }
}

#[derive(serde::Deserialize)]
struct ErrorsBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
struct ErrorEntry {
    code: Option<String>,
    message: Option<String>,
}

/// An error and its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Statuses that say "not now" rather than "no".
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Failures of the connection rather than of the request: worth another try.
pub(crate) fn transient(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

/// The server's `Retry-After`, in seconds or as a date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    crate::headers::retry_after(value, std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_their_ceiling() {
        let retry = Retry { attempts: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(2) };
        for attempt in 0..40 {
            let ceiling = Duration::from_millis(100).saturating_mul(1 << attempt.min(20)).min(Duration::from_secs(2));
            let delay = retry.delay(attempt, None);
            assert!(delay <= ceiling && delay >= ceiling / 2, "attempt {attempt}: {delay:?} vs {ceiling:?}");
        }
        assert_eq!(retry.delay(0, Some(Duration::from_secs(1))), Duration::from_secs(1));
        assert_eq!(retry.delay(0, Some(Duration::from_secs(600))), Duration::from_secs(2));
    }

    #[test]
    fn statuses_worth_a_retry() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(status).unwrap()), "{status}");
        }
        for status in [200, 201, 202, 400, 401, 403, 404, 413, 416] {
            assert!(!retryable(StatusCode::from_u16(status).unwrap()), "{status}");
        }
    }

    #[test]
    fn plain_http_only_where_asked() {
        let client = Client::builder().plain_http("127.0.0.1:5000").build().unwrap();
        assert_eq!(client.url("127.0.0.1:5000", "a/tags/list"), "http://127.0.0.1:5000/v2/a/tags/list");
        assert_eq!(client.url("127.0.0.1:5001", ""), "https://127.0.0.1:5001/v2/");
        assert_eq!(
            client.url("docker.io", "library/alpine/manifests/3"),
            "https://registry-1.docker.io/v2/library/alpine/manifests/3"
        );
    }
}
