//! The pull-through cache: requests for a proxied repository are answered from a local
//! [`Registry`], which is filled from the upstream on a miss. Tags are trusted for the
//! upstream's `ttl`, then checked with a HEAD (an unchanged tag costs no download), and
//! served from the cache while the upstream cannot be reached. An uncached blob is fetched
//! once: the request that misses first streams it while it is stored; requests for the same
//! blob meanwhile wait for that transfer and are then served from the cache. A blob is kept
//! only when its bytes hash to its digest.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use tokio::sync::{mpsc, watch};
use wharf_client::Client;
use wharf_oci::{Digest, RepositoryName};
use wharf_registry::{IndexChildren, ManifestReference, Registry, Repository};

use crate::error::{Error, Result};

/// Distribution's default `proxy.ttl`.
const DEFAULT_TTL: Duration = Duration::from_secs(168 * 3600);

/// Chunks buffered between the upstream, the store and the first client.
const CHUNKS_IN_FLIGHT: usize = 16;

/// A registry the cache fetches from.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// What clients call it: the `ns` containerd sends a mirror (`docker.io`).
    pub name: String,
    /// Where the client reaches it: `host[:port]`.
    pub host: String,
    /// The path it is served below (`hub`: `/v2/hub/library/alpine` is `library/alpine`
    /// there), which is also where its cache is kept; `None` at the root, as Distribution's
    /// one upstream.
    pub prefix: Option<String>,
    /// How long a cached tag is trusted before it is checked upstream again.
    pub ttl: Duration,
    /// The client that reaches it, with its credentials and TLS settings.
    pub client: Client,
}

impl Upstream {
    /// An upstream at `host`, named `name`, served at the root, tags trusted for a week.
    pub fn new(name: impl Into<String>, host: impl Into<String>, client: Client) -> Upstream {
        Upstream { name: name.into(), host: host.into(), prefix: None, ttl: DEFAULT_TTL, client }
    }

    /// Served below `prefix`, and cached there.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Upstream {
        self.prefix = Some(prefix.into().trim_matches('/').to_owned()).filter(|p| !p.is_empty());
        self
    }

    /// Tags trusted for `ttl`.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Upstream {
        self.ttl = ttl;
        self
    }
}

/// Where a request for a proxied repository is cached, and fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRoute {
    upstream: usize,
    /// The repository the cache keeps it in, which the request is answered from.
    pub local: RepositoryName,
    /// Its name upstream.
    pub remote: String,
}

/// What a request for a blob does.
pub enum BlobFetch {
    /// The cache has the blob: answer from its repository.
    Cached,
    /// This request fetches it: its bytes as they come from upstream (and are stored), the
    /// last item an error when they are not the digest's.
    Streaming {
        /// Its size, as the upstream says.
        size: u64,
        /// Its bytes.
        stream: BoxStream<'static, std::io::Result<Bytes>>,
    },
}

impl std::fmt::Debug for BlobFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobFetch::Cached => f.write_str("Cached"),
            BlobFetch::Streaming { size, .. } => {
                f.debug_struct("Streaming").field("size", size).finish_non_exhaustive()
            }
        }
    }
}

/// A pull-through cache of one or several upstreams in a [`Registry`]. Cheap to clone.
#[derive(Clone)]
pub struct PullThrough {
    inner: Arc<Inner>,
}

struct Inner {
    /// The cache: the registry's store, taking manifests whose blobs are not cached yet.
    registry: Registry,
    upstreams: Vec<Upstream>,
    /// Blobs being fetched, by digest.
    flights: Mutex<HashMap<Digest, Arc<Flight>>>,
    /// When each cached tag was last found current upstream, by repository and tag.
    checked: Mutex<HashMap<(RepositoryName, String), Instant>>,
    /// Images no expiry removes: (repository, tag or digest).
    pinned: BTreeSet<(String, String)>,
}

/// A pinned image as (repository, tag or digest): `repository:tag` or `repository@digest`.
///
/// # Errors
/// When it names no tag or digest, in words.
pub fn pinned_image(image: &str) -> std::result::Result<(String, String), String> {
    let (repository, reference) = match image.split_once('@') {
        Some(split) => split,
        None => image
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .ok_or_else(|| format!("{image:?} names no tag (repository:tag) or digest (repository@digest)"))?,
    };
    repository.parse::<RepositoryName>().map_err(|e| format!("{image:?}: {e}"))?;
    if image.contains('@') {
        reference.parse::<Digest>().map_err(|e| format!("{image:?}: {e}"))?;
    } else {
        reference.parse::<wharf_oci::Tag>().map_err(|e| format!("{image:?}: {e}"))?;
    }
    Ok((repository.to_owned(), reference.to_owned()))
}

/// What a sync brought into the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// Tags made current.
    pub tags: u64,
    /// Manifests looked at (tagged, and the images of indexes).
    pub manifests: u64,
    /// Blobs fetched (those cached already are not counted).
    pub blobs: u64,
}

/// What an expiry removed from the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Tags untagged.
    pub tags: u64,
    /// Manifests deleted (their blobs are left to garbage collection, which keeps every blob
    /// something still references).
    pub manifests: u64,
}

/// One transfer of a blob from upstream, which other requests wait for: `None` while it
/// runs, then how it ended.
struct Flight {
    done: watch::Sender<Option<Result<(), String>>>,
}

impl std::fmt::Debug for PullThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.inner.upstreams.iter().map(|u| u.name.as_str()).collect();
        f.debug_struct("PullThrough").field("upstreams", &names).finish_non_exhaustive()
    }
}

fn status_is(error: &wharf_client::Error, status: u16) -> bool {
    error.status().is_some_and(|s| s.as_u16() == status)
}

impl PullThrough {
    /// A cache in `registry`'s store of `upstreams`. Manifests are cached before their blobs,
    /// so the cache takes them without the registry's checks that what they reference is there.
    pub fn new(registry: &Registry, upstreams: Vec<Upstream>) -> PullThrough {
        let mut options = registry.options().clone();
        options.index_children = IndexChildren::None;
        options.require_image_blobs = false;
        PullThrough {
            inner: Arc::new(Inner {
                registry: Registry::new(registry.driver().clone(), options),
                upstreams,
                flights: Mutex::default(),
                checked: Mutex::default(),
                pinned: BTreeSet::new(),
            }),
        }
    }

    /// The same cache, with `images` (`repository:tag` or `repository@digest`, as the cache
    /// names its repositories) never expired.
    ///
    /// # Errors
    /// The first reference that names no tag or digest, in words.
    pub fn with_pinned(self, images: &[String]) -> std::result::Result<PullThrough, String> {
        let pinned = images.iter().map(|image| pinned_image(image)).collect::<std::result::Result<_, _>>()?;
        let inner = Inner {
            registry: self.inner.registry.clone(),
            upstreams: self.inner.upstreams.clone(),
            flights: Mutex::default(),
            checked: Mutex::default(),
            pinned,
        };
        Ok(PullThrough { inner: Arc::new(inner) })
    }

    /// Brings the tags of `route.remote` upstream that `tags` takes (every tag for `None`)
    /// into the cache, with everything they reference: zot's `sync`, for a site that must
    /// hold images before anyone asks for them (an offline or edge site). What is cached
    /// already is not fetched again.
    ///
    /// # Errors
    /// As [`PullThrough::manifest`] and [`PullThrough::blob`]; what was brought in before
    /// stays.
    pub async fn sync(&self, route: &CacheRoute, tags: Option<&wharf_policy::TagSelector>) -> Result<Synced> {
        let names = self
            .remote(route)
            .tags()
            .await
            .map_err(|e| self.upstream_error(route, format!("the tags of {}", route.remote), &e))?;
        let mut synced = Synced::default();
        for tag in names.iter().filter(|tag| tags.is_none_or(|selector| selector.matches(tag))) {
            let reference: ManifestReference = tag.parse().map_err(|e: wharf_registry::Error| Error::Upstream {
                upstream: self.upstream(route).name.clone(),
                what: format!("tag {tag:?} of {}", route.remote),
                reason: e.to_string(),
            })?;
            let digest = self.manifest(route, &reference).await?;
            synced.tags += 1;
            self.sync_manifest(route, digest, &mut synced).await?;
        }
        Ok(synced)
    }

    /// Brings manifest `digest` (cached already) in whole: an index's images, an image's
    /// blobs.
    fn sync_manifest<'s>(
        &'s self,
        route: &'s CacheRoute,
        digest: Digest,
        synced: &'s mut Synced,
    ) -> futures::future::BoxFuture<'s, Result<()>> {
        Box::pin(async move {
            let local = self.inner.registry.repository(&route.local);
            let stored = local.get_manifest(&ManifestReference::Digest(digest.clone())).await?;
            let manifest =
                wharf_oci::Manifest::parse(stored.content, Some(&stored.media_type)).map_err(|e| Error::Upstream {
                    upstream: self.upstream(route).name.clone(),
                    what: format!("manifest {digest} of {}", route.remote),
                    reason: e.to_string(),
                })?;
            synced.manifests += 1;
            for child in manifest.manifests() {
                let child = self.manifest(route, &ManifestReference::Digest(child.digest.clone())).await?;
                self.sync_manifest(route, child, synced).await?;
            }
            for blob in manifest.config().into_iter().chain(manifest.layers()) {
                if let BlobFetch::Streaming { stream, .. } = self.blob(route, &blob.digest).await? {
                    stream.try_for_each(|_| async { Ok(()) }).await.map_err(|e| Error::Transfer {
                        upstream: self.upstream(route).name.clone(),
                        digest: blob.digest.clone(),
                        reason: e.to_string(),
                    })?;
                    synced.blobs += 1;
                }
            }
            Ok(())
        })
    }

    /// Removes from the cache what has not been used within its upstream's `ttl` (an upstream
    /// whose `ttl` is zero keeps its cache): a manifest cached and not pulled since (as the
    /// registry's pull tracking tells, when it is on), and the tags that point at it, but no
    /// pinned image. Blobs are left to garbage collection, which keeps every blob that
    /// another repository or image still references. A removed image is fetched again when
    /// it is next asked for.
    ///
    /// # Errors
    /// [`Error::Registry`] when the store cannot be read or changed.
    pub async fn expire(&self, now: std::time::SystemTime) -> Result<Expired> {
        let registry = &self.inner.registry;
        let mut expired = Expired::default();
        for name in registry.catalog(None, None).await? {
            let Some(route) = self.route(&name, None) else { continue };
            let ttl = self.upstream(&route).ttl;
            if ttl.is_zero() {
                continue;
            }
            let repository = registry.repository(&name);
            let tags = repository.tag_links().await?;
            let pinned = |reference: &str| self.inner.pinned.contains(&(name.to_string(), reference.to_owned()));
            let mut kept: BTreeSet<Digest> = tags.iter().filter(|t| pinned(&t.tag)).map(|t| t.digest.clone()).collect();
            let mut stale = Vec::new();
            for revision in repository.manifest_revisions().await? {
                let pulled = repository.last_pulled(&revision.digest).await?;
                let used = pulled.map_or(revision.linked, |pulled| pulled.max(revision.linked));
                // A ttl past the end of time never expires anything.
                if pinned(revision.digest.as_str()) || used.checked_add(ttl).is_none_or(|until| until > now) {
                    kept.insert(revision.digest.clone());
                } else {
                    stale.push(revision.digest);
                }
            }
            stale.retain(|digest| !kept.contains(digest));
            for tag in tags.iter().filter(|t| stale.contains(&t.digest)) {
                match repository.untag(&tag.tag).await {
                    Ok(()) => expired.tags += 1,
                    Err(wharf_registry::Error::ManifestUnknown { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            for digest in &stale {
                match repository.delete_manifest(digest).await {
                    Ok(()) => expired.manifests += 1,
                    Err(wharf_registry::Error::ManifestUnknown { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(expired)
    }

    /// The upstreams.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.inner.upstreams
    }

    /// The upstream `route` fetches from.
    pub fn upstream(&self, route: &CacheRoute) -> &Upstream {
        &self.inner.upstreams[route.upstream]
    }

    /// Which upstream serves `repository`, as a request names it: the one `ns` names (cached
    /// below its prefix), else the one whose prefix the name starts with, else the one at
    /// the root; `None` when no upstream serves it (a repository of the registry's own).
    pub fn route(&self, repository: &RepositoryName, ns: Option<&str>) -> Option<CacheRoute> {
        let name = repository.as_str();
        let upstreams = &self.inner.upstreams;
        if let Some((index, upstream)) = ns.and_then(|ns| upstreams.iter().enumerate().find(|(_, u)| u.name == ns)) {
            let local = match &upstream.prefix {
                Some(prefix) => format!("{prefix}/{name}").parse().ok()?,
                None => repository.clone(),
            };
            return Some(CacheRoute { upstream: index, local, remote: name.to_owned() });
        }
        for (index, upstream) in upstreams.iter().enumerate() {
            let below = upstream.prefix.as_deref().and_then(|p| name.strip_prefix(p)?.strip_prefix('/'));
            if let Some(remote) = below {
                return Some(CacheRoute { upstream: index, local: repository.clone(), remote: remote.to_owned() });
            }
        }
        let index = upstreams.iter().position(|u| u.prefix.is_none())?;
        Some(CacheRoute { upstream: index, local: repository.clone(), remote: name.to_owned() })
    }

    fn remote(&self, route: &CacheRoute) -> wharf_client::Repository {
        let upstream = self.upstream(route);
        upstream.client.repository(&upstream.host, &route.remote)
    }

    fn upstream_error(&self, route: &CacheRoute, what: String, error: &wharf_client::Error) -> Error {
        let upstream = self.upstream(route).name.clone();
        if status_is(error, 404) {
            Error::NotFound { upstream, what }
        } else {
            Error::Upstream { upstream, what, reason: error.to_string() }
        }
    }

    /// Makes the cache hold the manifest `reference` names in `route.local`, current, and
    /// returns its digest. A manifest asked by digest is fetched once and kept. A tag is
    /// checked upstream when it was last found current longer than the `ttl` ago; while the
    /// upstream cannot be reached, the cached tag is served (with a warning in the log).
    ///
    /// # Errors
    /// [`Error::NotFound`] when the upstream has no such manifest; [`Error::Upstream`] when it
    /// fails and the cache has nothing to answer with; [`Error::Registry`].
    pub async fn manifest(&self, route: &CacheRoute, reference: &ManifestReference) -> Result<Digest> {
        let local = self.inner.registry.repository(&route.local);
        let tag = match reference {
            ManifestReference::Digest(digest) => {
                if local.get_manifest(reference).await.is_ok() {
                    return Ok(digest.clone());
                }
                return self.fetch_manifest(route, &local, digest, None).await;
            }
            ManifestReference::Tag(tag) => tag.as_str(),
        };
        let cached = local.resolve(reference).await.ok();
        let key = (route.local.clone(), tag.to_owned());
        let ttl = self.upstream(route).ttl;
        let fresh = self.checked().get(&key).is_some_and(|at| at.elapsed() < ttl);
        if let (Some(digest), true) = (&cached, fresh) {
            return Ok(digest.clone());
        }
        let digest = match self.remote(route).manifest_descriptor(tag).await {
            Ok(Some(descriptor)) => descriptor.digest,
            Ok(None) => {
                let what = format!("manifest {}:{tag}", route.remote);
                return Err(Error::NotFound { upstream: self.upstream(route).name.clone(), what });
            }
            Err(e) => {
                return match cached {
                    Some(digest) => {
                        tracing::warn!(
                            upstream = %self.upstream(route).name, repository = %route.remote, tag, error = %e,
                            "the upstream cannot be reached: serving the cached tag"
                        );
                        Ok(digest)
                    }
                    None => Err(self.upstream_error(route, format!("manifest {}:{tag}", route.remote), &e)),
                };
            }
        };
        if cached.as_ref() != Some(&digest) {
            if local.get_manifest(&ManifestReference::Digest(digest.clone())).await.is_ok() {
                local.tag(tag, &digest).await?;
            } else {
                self.fetch_manifest(route, &local, &digest, Some(tag)).await?;
            }
        }
        self.checked().insert(key, Instant::now());
        Ok(digest)
    }

    fn checked(&self) -> std::sync::MutexGuard<'_, HashMap<(RepositoryName, String), Instant>> {
        self.inner.checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fetches manifest `digest` (checked against it by the client) into the cache, under
    /// `tag` when given.
    async fn fetch_manifest(
        &self,
        route: &CacheRoute,
        local: &Repository,
        digest: &Digest,
        tag: Option<&str>,
    ) -> Result<Digest> {
        let what = || format!("manifest {}@{digest}", route.remote);
        let manifest =
            self.remote(route).manifest(digest.as_str()).await.map_err(|e| self.upstream_error(route, what(), &e))?;
        let reference = match tag {
            Some(tag) => ManifestReference::Tag(tag.parse().map_err(|e: wharf_oci::Error| Error::Upstream {
                upstream: self.upstream(route).name.clone(),
                what: what(),
                reason: e.to_string(),
            })?),
            None => ManifestReference::Digest(digest.clone()),
        };
        Ok(local.put_manifest(&reference, manifest.raw().clone(), Some(manifest.media_type())).await?)
    }

    /// The size of blob `digest` of `route.local`: the cache's, or the upstream's without
    /// fetching it.
    ///
    /// # Errors
    /// [`Error::NotFound`] when neither has it; [`Error::Upstream`].
    pub async fn blob_size(&self, route: &CacheRoute, digest: &Digest) -> Result<u64> {
        if let Ok(info) = self.inner.registry.repository(&route.local).stat_blob(digest).await {
            return Ok(info.size);
        }
        let what = || format!("blob {}@{digest}", route.remote);
        match self.remote(route).blob_size(digest).await {
            Ok(Some(size)) => Ok(size),
            Ok(None) => Err(Error::NotFound { upstream: self.upstream(route).name.clone(), what: what() }),
            Err(e) => Err(self.upstream_error(route, what(), &e)),
        }
    }

    /// What answers a request for blob `digest` of `route.local`: the cache, or the one
    /// transfer from upstream. A request that finds another fetching the blob waits for that
    /// transfer to end and is answered from the cache.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the upstream repository has no such blob; [`Error::Upstream`];
    /// [`Error::Transfer`] when the transfer waited for failed; [`Error::Registry`].
    pub async fn blob(&self, route: &CacheRoute, digest: &Digest) -> Result<BlobFetch> {
        let local = self.inner.registry.repository(&route.local);
        loop {
            if local.stat_blob(digest).await.is_ok() {
                return Ok(BlobFetch::Cached);
            }
            let (flight, leader) = self.join(digest);
            if let Some(leader) = leader {
                return self.fetch_blob(route, local, digest.clone(), leader).await;
            }
            let mut done = flight.done.subscribe();
            let ended = done.wait_for(Option::is_some).await.map(|outcome| outcome.clone());
            match ended {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(reason))) => {
                    return Err(Error::Transfer {
                        upstream: self.upstream(route).name.clone(),
                        digest: digest.clone(),
                        reason,
                    });
                }
                // The leader went away without a word: try again.
                Ok(None) | Err(_) => {}
            }
        }
    }

    /// The transfer of `digest` under way, and a [`Leader`] when this request starts it.
    fn join(&self, digest: &Digest) -> (Arc<Flight>, Option<Leader>) {
        let mut flights = self.inner.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(flight) = flights.get(digest) {
            return (flight.clone(), None);
        }
        let flight = Arc::new(Flight { done: watch::channel(None).0 });
        flights.insert(digest.clone(), flight.clone());
        let leader = Leader { inner: self.inner.clone(), digest: digest.clone(), flight: Some(flight.clone()) };
        (flight, Some(leader))
    }

    async fn fetch_blob(
        &self,
        route: &CacheRoute,
        local: Repository,
        digest: Digest,
        leader: Leader,
    ) -> Result<BlobFetch> {
        let remote = self.remote(route);
        let what = || format!("blob {}@{digest}", route.remote);
        // The upstream repository must have it: a blob the registry holds elsewhere is not
        // shown to whoever names its digest here.
        let size = match remote.blob_size(&digest).await {
            Ok(Some(size)) => size,
            Ok(None) => {
                let error = Error::NotFound { upstream: self.upstream(route).name.clone(), what: what() };
                leader.finish(Err(error.to_string()));
                return Err(error);
            }
            Err(e) => {
                let error = self.upstream_error(route, what(), &e);
                leader.finish(Err(error.to_string()));
                return Err(error);
            }
        };
        if local.link_blob(&digest).await.is_ok() {
            leader.finish(Ok(()));
            return Ok(BlobFetch::Cached);
        }
        // Hashed once, by the store, which keeps it only when it is the digest's; the first
        // client's last chunk waits for that check, so that a corrupt blob ends in an error.
        let upstream = remote.pull_blob_unverified(&digest, Some(size));
        let (to_client, for_client) = mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
        let (to_store, mut for_store) = mpsc::channel::<wharf_storage::Result<Bytes>>(CHUNKS_IN_FLIGHT);
        let name = self.upstream(route).name.clone();
        tokio::spawn(async move {
            // Storing (hashing, writing) on a task of its own: it runs beside the transfer.
            let stored = {
                let digest = digest.clone();
                tokio::spawn(async move {
                    local.put_blob(&digest, futures::stream::poll_fn(move |cx| for_store.poll_recv(cx))).await
                })
            };
            let Pumped { outcome, client, last } = pump(upstream, to_store, to_client).await;
            let stored = stored.await.unwrap_or_else(|e| {
                Err(wharf_registry::Error::Storage(wharf_storage::Error::ContentFailed { source: Box::new(e) }))
            });
            let outcome = match (outcome, stored) {
                (Err(reason), _) => Err(reason),
                (Ok(()), Err(e)) => Err(format!("the cache did not keep it: {e}")),
                (Ok(()), Ok(_)) => Ok(()),
            };
            if let Err(reason) = &outcome {
                tracing::warn!(upstream = %name, %digest, reason, "a blob's transfer from upstream failed");
            }
            // The transfer ends for everyone before the first client hears of it: a client
            // that asks again once told makes a transfer of its own.
            leader.finish(outcome.clone());
            if let Some(client) = client {
                let _ = match (outcome, last) {
                    (Ok(()), Some(last)) => client.send(Ok(last)).await,
                    (Ok(()), None) => Ok(()),
                    (Err(reason), _) => client.send(Err(std::io::Error::other(reason))).await,
                };
            }
        });
        let stream = futures::stream::unfold(for_client, |mut rx| async move { Some((rx.recv().await?, rx)) });
        Ok(BlobFetch::Streaming { size, stream: stream.boxed() })
    }
}

/// How a transfer from upstream went: whether every byte came, the first client if it still
/// listens, and the last chunk, held back from it until the store has checked the blob.
struct Pumped {
    outcome: Result<(), String>,
    client: Option<mpsc::Sender<std::io::Result<Bytes>>>,
    last: Option<Bytes>,
}

/// Moves a blob's chunks from upstream to the store and, while it listens, to the first
/// client, one chunk behind.
async fn pump(
    mut upstream: wharf_client::BlobPull,
    to_store: mpsc::Sender<wharf_storage::Result<Bytes>>,
    to_client: mpsc::Sender<std::io::Result<Bytes>>,
) -> Pumped {
    let mut client = Some(to_client);
    let mut held: Option<Bytes> = None;
    loop {
        let chunk = match upstream.try_next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Pumped { outcome: Ok(()), client, last: held },
            Err(e) => {
                let reason = e.to_string();
                let _ = to_store.send(Err(wharf_storage::Error::ContentFailed { source: Box::new(e) })).await;
                return Pumped { outcome: Err(reason), client, last: None };
            }
        };
        if to_store.send(Ok(chunk.clone())).await.is_err() {
            return Pumped { outcome: Err("the cache stopped taking it".to_owned()), client, last: None };
        }
        // A first client that went away leaves the transfer to finish for the others.
        if let (Some(sender), Some(previous)) = (&client, held.take())
            && sender.send(Ok(previous)).await.is_err()
        {
            client = None;
        }
        held = Some(chunk);
    }
}

/// The request that fetches a blob for the others: it tells them how the transfer ended,
/// or, should it be dropped before, that it went away.
struct Leader {
    inner: Arc<Inner>,
    digest: Digest,
    flight: Option<Arc<Flight>>,
}

impl Leader {
    fn finish(mut self, outcome: Result<(), String>) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: Result<(), String>) {
        let Some(flight) = self.flight.take() else { return };
        self.inner.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.digest);
        flight.done.send_replace(Some(outcome));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.end(Err("the request that fetched it went away".to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::pinned_image;

    proptest! {
        #[test]
        fn pinned_images_read_back_what_names_them(
            repository in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
            tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}",
            hex in "[0-9a-f]{64}",
        ) {
            prop_assert_eq!(pinned_image(&format!("{repository}:{tag}")), Ok((repository.clone(), tag)));
            let digest = format!("sha256:{hex}");
            prop_assert_eq!(pinned_image(&format!("{repository}@{digest}")), Ok((repository, digest)));
        }

        #[test]
        fn anything_else_is_refused_by_name(text in "\\PC{0,40}") {
            if let Err(reason) = pinned_image(&text) {
                prop_assert!(reason.contains(&format!("{text:?}")), "{}", reason);
            }
        }
    }

    #[test]
    fn what_is_no_pinned_image() {
        for text in ["alpine", "Alpine:1", "alpine:", ":1", "alpine@sha256:12", "a/b:c/d", "alpine:-x"] {
            assert!(pinned_image(text).is_err(), "{text}");
        }
    }
}
