//! Replication: an image of the registry copied to another registry over the distribution
//! API, everything it references first (blobs, an index's images) and the manifests that
//! refer to it (signatures, SBOMs) after, each piece skipped when the target has it, so that
//! a replication that failed resumes where it stopped when it is run again.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use wharf_client::{BlobSource, Client};
use wharf_oci::{Descriptor, Digest, Manifest, RepositoryName};
use wharf_registry::{ManifestReference, Registry, Repository};

/// A registry images are copied to.
#[derive(Debug, Clone)]
pub struct ReplicaTarget {
    /// What logs and metrics call it.
    pub name: String,
    /// Where the client reaches it: `host[:port]`.
    pub host: String,
    /// A repository prefix there (`dr` puts `team/app` at `dr/team/app`); none by default.
    pub prefix: Option<String>,
    /// The client that reaches it, with its credentials and TLS settings.
    pub client: Client,
}

/// What a replication copied and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replicated {
    /// Blobs uploaded.
    pub blobs_copied: u64,
    /// Blobs the target had (or mounted).
    pub blobs_skipped: u64,
    /// Manifests pushed (the image's, its index's images, its referrers).
    pub manifests: u64,
}

/// Why a replication failed.
#[derive(Debug, thiserror::Error)]
#[error("replicating {what} to {target}: {reason}")]
pub struct ReplicationError {
    /// The target.
    pub target: String,
    /// What was being copied.
    pub what: String,
    /// What failed.
    pub reason: String,
}

/// A blob of the registry, as the client reads what it uploads.
struct LocalBlob {
    repository: Repository,
    digest: Digest,
}

impl BlobSource for LocalBlob {
    fn open(
        &self,
        offset: u64,
    ) -> BoxFuture<'_, wharf_client::Result<BoxStream<'static, wharf_client::Result<Bytes>>>> {
        Box::pin(async move {
            let protocol = |e: &dyn std::fmt::Display| wharf_client::Error::Protocol {
                what: format!("blob {} of {}", self.digest, self.repository.name()),
                reason: e.to_string(),
            };
            let (_, stream) = self.repository.read_blob(&self.digest, offset).await.map_err(|e| protocol(&e))?;
            let what = format!("blob {} of {}", self.digest, self.repository.name());
            Ok(stream
                .map_err(move |e| wharf_client::Error::Protocol { what: what.clone(), reason: e.to_string() })
                .boxed())
        })
    }
}

impl ReplicaTarget {
    /// Where `repository` goes there.
    pub fn repository_name(&self, repository: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{}/{repository}", prefix.trim_matches('/')),
            None => repository.to_owned(),
        }
    }

    /// Copies the image `reference` (a tag or a digest) names in `repository` of `registry`
    /// here, with what it references and what refers to it; the tag, when it is one, is
    /// pushed last.
    ///
    /// # Errors
    /// A [`ReplicationError`] naming what could not be read or copied; what was copied
    /// before stays, and a later run skips it.
    pub async fn replicate(
        &self,
        registry: &Registry,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<Replicated, ReplicationError> {
        let local = registry.repository(repository);
        let remote = self.client.repository(&self.host, &self.repository_name(repository.as_str()));
        let fail = |what: String, reason: &dyn std::fmt::Display| ReplicationError {
            target: self.name.clone(),
            what,
            reason: reason.to_string(),
        };
        let digest = local.resolve(reference).await.map_err(|e| fail(format!("{repository}:{reference}"), &e))?;
        let mut done = Replicated::default();
        let mut copier = Copier { local: &local, remote: &remote, done: &mut done, fail: &fail };
        copier.manifest(&digest, None).await?;
        if let ManifestReference::Tag(tag) = reference {
            copier.manifest(&digest, Some(tag.as_str())).await?;
        }
        // What refers to it (signatures, SBOMs), after it.
        let referrers =
            local.referrers(&digest, None).await.map_err(|e| fail(format!("the referrers of {digest}"), &e))?;
        for referrer in referrers {
            copier.manifest(&referrer.digest, None).await?;
        }
        Ok(done)
    }
}

/// One replication's copying.
struct Copier<'a, F: Fn(String, &dyn std::fmt::Display) -> ReplicationError> {
    local: &'a Repository,
    remote: &'a wharf_client::Repository,
    done: &'a mut Replicated,
    fail: &'a F,
}

impl<F: Fn(String, &dyn std::fmt::Display) -> ReplicationError + Sync> Copier<'_, F> {
    /// Pushes manifest `digest` (under `tag` when given), after its blobs and, for an
    /// index, its images.
    fn manifest<'s>(
        &'s mut self,
        digest: &'s Digest,
        tag: Option<&'s str>,
    ) -> BoxFuture<'s, Result<(), ReplicationError>> {
        Box::pin(async move {
            let what = || format!("manifest {digest} of {}", self.local.name());
            let stored = self
                .local
                .get_manifest(&ManifestReference::Digest(digest.clone()))
                .await
                .map_err(|e| (self.fail)(what(), &e))?;
            let manifest =
                Manifest::parse(stored.content, Some(&stored.media_type)).map_err(|e| (self.fail)(what(), &e))?;
            let present = self.remote.manifest_descriptor(digest.as_str()).await.is_ok_and(|d| d.is_some());
            if let Some(tag) = tag {
                // What it references went first, with the manifest by digest.
                self.remote.push_manifest(tag, &manifest).await.map_err(|e| (self.fail)(what(), &e))?;
                self.done.manifests += 1;
                return Ok(());
            }
            if present {
                return Ok(());
            }
            for child in manifest.manifests() {
                // A child of a sparse index the registry does not have is not copied.
                if self.local.get_manifest(&ManifestReference::Digest(child.digest.clone())).await.is_ok() {
                    self.manifest(&child.digest, None).await?;
                }
            }
            for blob in manifest.config().into_iter().chain(manifest.layers()) {
                self.blob(blob).await?;
            }
            self.remote
                .push_manifest(tag.unwrap_or(digest.as_str()), &manifest)
                .await
                .map_err(|e| (self.fail)(what(), &e))?;
            self.done.manifests += 1;
            Ok(())
        })
    }

    async fn blob(&mut self, blob: &Descriptor) -> Result<(), ReplicationError> {
        let source = LocalBlob { repository: self.local.clone(), digest: blob.digest.clone() };
        match self.remote.push_blob(blob, &source, None).await {
            Ok(wharf_client::BlobOutcome::Uploaded { .. }) => self.done.blobs_copied += 1,
            Ok(_) => self.done.blobs_skipped += 1,
            Err(e) => return Err((self.fail)(format!("blob {} of {}", blob.digest, self.local.name()), &e)),
        }
        Ok(())
    }
}

/// A replication rule: which repositories and tags of the registry go to which targets.
#[derive(Debug, Clone)]
pub struct ReplicationRule {
    /// Its name, which names its queues too (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Globs of the repositories it copies (`*` within one path component, `**` across
    /// them); every repository when empty.
    pub repositories: Vec<globset::GlobMatcher>,
    /// The tags it copies, in the policy file's selector syntax; every tag when `None`.
    pub tags: Option<wharf_policy::TagSelector>,
    /// Where it copies them.
    pub targets: Vec<ReplicaTarget>,
    /// Whether a tag deleted here is deleted there too.
    pub deletes: bool,
}

impl ReplicationRule {
    /// Whether the rule copies `tag` of `repository`.
    pub fn takes(&self, repository: &str, tag: &str) -> bool {
        self.covers(repository) && self.tags.as_ref().is_none_or(|tags| tags.matches(tag))
    }

    /// Whether the rule copies tags of `repository` (some of them).
    pub fn covers(&self, repository: &str) -> bool {
        self.repositories.is_empty() || self.repositories.iter().any(|g| g.is_match(repository))
    }
}

/// Replication driven by the registry's own events: a push (or, where a rule asks, a
/// delete) of a tag a rule takes is queued durably for each of its targets and carried out
/// in order by one instance at a time, again after a failure until it succeeds; and a
/// sync that copies whatever a target lacks, for a schedule.
#[derive(Debug, Clone)]
pub struct Replicator {
    registry: Registry,
    /// Each rule's targets with their queues: (rule, target, queue).
    lanes: std::sync::Arc<Vec<(usize, usize, crate::notify::Queue)>>,
    rules: std::sync::Arc<Vec<ReplicationRule>>,
    instance: String,
    stats: std::sync::Arc<crate::Stats>,
}

/// The longest a lane waits after failures in a row.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(300);

/// The waits after failures in a row: the first, doubled after each failure up to
/// [`MAX_BACKOFF`] (or the first, when that is longer), the first again after a success.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    first: std::time::Duration,
    next: std::time::Duration,
}

impl Backoff {
    fn new(first: std::time::Duration) -> Backoff {
        Backoff { first, next: first }
    }

    /// How long to wait after this failure.
    fn failed(&mut self) -> std::time::Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(MAX_BACKOFF.max(self.first));
        wait
    }

    fn succeeded(&mut self) {
        self.next = self.first;
    }
}

/// The lease term of a replication lane, as for notifications.
const LANE_LEASE: std::time::Duration = std::time::Duration::from_secs(15);

impl Replicator {
    /// A replicator of `registry` by `rules`, queueing in its store; `instance` names this
    /// process among those that share it.
    ///
    /// # Errors
    /// A rule or target whose name cannot name a queue, in words.
    pub fn new(registry: &Registry, rules: Vec<ReplicationRule>, instance: &str) -> Result<Replicator, String> {
        let mut lanes = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            for (t, target) in rule.targets.iter().enumerate() {
                let queue = crate::notify::Queue::new(
                    registry.driver().clone(),
                    &format!("replicate-{}-{}", rule.name, target.name),
                )?;
                lanes.push((r, t, queue));
            }
        }
        Ok(Replicator {
            registry: registry.clone(),
            lanes: std::sync::Arc::new(lanes),
            rules: std::sync::Arc::new(rules),
            instance: instance.to_owned(),
            stats: std::sync::Arc::default(),
        })
    }

    /// The same replicator, counting its work in `stats`.
    #[must_use]
    pub fn with_stats(mut self, stats: std::sync::Arc<crate::Stats>) -> Replicator {
        self.stats = stats;
        self
    }

    /// Queues what `event` (one of the registry's own) calls for: a tag pushed, or deleted
    /// where a rule replicates deletions, that a rule takes; and a manifest pushed by digest
    /// that refers to another (a signature, an SBOM), to follow its subject where that went.
    ///
    /// # Errors
    /// The first queue that could not take it, in words.
    pub async fn on_event(&self, event: &crate::notify::Event) -> Result<(), String> {
        use crate::notify::Action;
        let target = &event.target;
        let referrer = event.action == Action::Push
            && target.tag.is_empty()
            && self.rules.iter().any(|rule| rule.covers(&target.repository))
            && self.subject_of(&target.repository, &target.digest).await.is_some();
        let wanted = |rule: &ReplicationRule| match event.action {
            // A manifest pushed under a tag (blobs go with their manifests).
            Action::Push if !target.tag.is_empty() => rule.takes(&target.repository, &target.tag),
            Action::Push => referrer && rule.covers(&target.repository),
            // A tag, or a manifest by digest, where the rule replicates deletions.
            Action::Delete if rule.deletes => {
                if target.tag.is_empty() {
                    rule.covers(&target.repository)
                } else {
                    rule.takes(&target.repository, &target.tag)
                }
            }
            _ => false,
        };
        for (rule, _, queue) in self.lanes.iter() {
            let rule = &self.rules[*rule];
            if wanted(rule) {
                queue.push(event).await.map_err(|e| format!("queueing a replication of rule {}: {e}", rule.name))?;
            }
        }
        Ok(())
    }

    /// Carries out what lane `index` has queued, in order; answers how many. Another
    /// instance holding the lane's lease does it instead (0 here).
    ///
    /// # Errors
    /// What failed; the event that failed stays first in the queue.
    pub async fn process(&self, index: usize) -> Result<usize, String> {
        use crate::notify::Action;
        let Some((rule, target, queue)) = self.lanes.get(index) else { return Ok(0) };
        let target = &self.rules[*rule].targets[*target];
        let fail = |e: &dyn std::fmt::Display| format!("replication to {}: {e}", target.name);
        let mut done = 0;
        while queue.lease(&self.instance, LANE_LEASE).await.map_err(|e| fail(&e))? {
            let Some(next) = queue.pending(1).await.map_err(|e| fail(&e))?.pop() else { return Ok(done) };
            let event = &next.event;
            let repository: RepositoryName = event.target.repository.parse().map_err(|e| fail(&e))?;
            if event.action == Action::Delete {
                let remote = target.client.repository(&target.host, &target.repository_name(repository.as_str()));
                let reference = if event.target.tag.is_empty() { &event.target.digest } else { &event.target.tag };
                match remote.delete_manifest(reference).await {
                    Ok(()) => {}
                    Err(e) if e.status().is_some_and(|s| s.as_u16() == 404) => {}
                    // A registry that deletes no tag alone (Distribution): the manifest
                    // stays there.
                    Err(e)
                        if !event.target.tag.is_empty()
                            && (e.has_code("UNSUPPORTED") || e.has_code("DIGEST_INVALID")) =>
                    {
                        tracing::warn!(target = %target.name, %repository, tag = %event.target.tag, error = %e, "the target deletes no tag alone");
                    }
                    Err(e) => return Err(fail(&e)),
                }
            } else if event.target.tag.is_empty() {
                self.follow_subject(target, &repository, &event.target.digest).await?;
            } else {
                let tag: ManifestReference = event.target.tag.parse().map_err(|e| fail(&e))?;
                match target.replicate(&self.registry, &repository, &tag).await {
                    Ok(copied) => {
                        crate::Stats::add(&self.stats.replicated_blobs, copied.blobs_copied);
                        tracing::info!(target = %target.name, %repository, tag = %event.target.tag, ?copied, "replicated");
                    }
                    Err(e) => match self.registry.repository(&repository).resolve(&tag).await {
                        // Deleted here since: nothing to copy.
                        Err(wharf_registry::Error::ManifestUnknown { .. }) => {}
                        _ => return Err(e.to_string()),
                    },
                }
            }
            queue.delivered(next.number).await.map_err(|e| fail(&e))?;
            crate::Stats::add(&self.stats.replications, 1);
            done += 1;
        }
        Ok(done)
    }

    /// The subject of manifest `digest` of `repository`, when it is stored and has one.
    async fn subject_of(&self, repository: &str, digest: &str) -> Option<Digest> {
        let repository: RepositoryName = repository.parse().ok()?;
        let digest: Digest = digest.parse().ok()?;
        let stored =
            self.registry.repository(&repository).get_manifest(&ManifestReference::Digest(digest)).await.ok()?;
        let manifest = Manifest::parse(stored.content, Some(&stored.media_type)).ok()?;
        manifest.subject().map(|subject| subject.digest.clone())
    }

    /// Copies referrer `digest` of `repository` to `target` when its subject is there: a
    /// subject copied later takes its referrers with it.
    async fn follow_subject(
        &self,
        target: &ReplicaTarget,
        repository: &RepositoryName,
        digest: &str,
    ) -> Result<(), String> {
        // Deleted here since, or no referrer: nothing to copy.
        let Some(subject) = self.subject_of(repository.as_str(), digest).await else { return Ok(()) };
        let remote = target.client.repository(&target.host, &target.repository_name(repository.as_str()));
        let there = remote
            .manifest_descriptor(subject.as_str())
            .await
            .map_err(|e| format!("replication to {}: the subject {subject}: {e}", target.name))?;
        if there.is_none() {
            return Ok(());
        }
        let reference = ManifestReference::Digest(digest.parse().map_err(|e: wharf_oci::Error| e.to_string())?);
        let copied = target.replicate(&self.registry, repository, &reference).await.map_err(|e| e.to_string())?;
        crate::Stats::add(&self.stats.replicated_blobs, copied.blobs_copied);
        tracing::info!(target = %target.name, %repository, referrer = digest, %subject, ?copied, "replicated");
        Ok(())
    }

    /// Gives up this instance's leases, so that another carries on at once: for a process
    /// that stops gracefully.
    pub async fn release(&self) {
        for (_, _, queue) in self.lanes.iter() {
            if let Err(e) = queue.release(&self.instance).await {
                tracing::warn!(error = %e, "a replication lease was not given up");
            }
        }
    }

    /// Copies every tag the rules take that a target lacks or has at another manifest:
    /// what a schedule runs, and what catches a target up after it was down.
    ///
    /// # Errors
    /// The first failure, in words; what was copied before stays.
    pub async fn sync(&self) -> Result<Replicated, String> {
        let mut total = Replicated::default();
        let names = self.registry.catalog(None, None).await.map_err(|e| format!("the catalog: {e}"))?;
        for name in names {
            let tags = self.registry.repository(&name).tags(None, None).await.map_err(|e| format!("{name}: {e}"))?;
            for rule in self.rules.iter() {
                for tag in tags.iter().filter(|tag| rule.takes(name.as_str(), tag)) {
                    let reference: ManifestReference = tag.parse().map_err(|e: wharf_registry::Error| e.to_string())?;
                    let Ok(here) = self.registry.repository(&name).resolve(&reference).await else { continue };
                    for target in &rule.targets {
                        let remote = target.client.repository(&target.host, &target.repository_name(name.as_str()));
                        if remote.manifest_descriptor(tag).await.ok().flatten().is_some_and(|d| d.digest == here)
                            && self.referrers_there(&name, &here, &remote).await
                        {
                            continue;
                        }
                        let copied =
                            target.replicate(&self.registry, &name, &reference).await.map_err(|e| e.to_string())?;
                        total.blobs_copied += copied.blobs_copied;
                        total.blobs_skipped += copied.blobs_skipped;
                        total.manifests += copied.manifests;
                    }
                }
            }
        }
        Ok(total)
    }

    /// Whether `remote` has every referrer of `digest` of `repository` (those signed or
    /// described after it was copied, too).
    async fn referrers_there(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        remote: &wharf_client::Repository,
    ) -> bool {
        let Ok(referrers) = self.registry.repository(repository).referrers(digest, None).await else { return false };
        for referrer in referrers {
            if !remote.manifest_descriptor(referrer.digest.as_str()).await.is_ok_and(|d| d.is_some()) {
                return false;
            }
        }
        true
    }

    /// Carries out queued replications for as long as it runs, each lane looking at its
    /// queue every `poll`; after a failure a lane waits `backoff`, twice that after a second
    /// in a row, and so on up to [`MAX_BACKOFF`]. With `sync_every`, a sync on that schedule
    /// too.
    pub async fn run(
        self,
        poll: std::time::Duration,
        backoff: std::time::Duration,
        sync_every: Option<std::time::Duration>,
    ) {
        let lanes = (0..self.lanes.len()).map(|index| {
            let replicator = self.clone();
            async move {
                let mut failures = Backoff::new(backoff);
                loop {
                    match replicator.process(index).await {
                        Ok(_) => {
                            failures.succeeded();
                            tokio::time::sleep(poll).await;
                        }
                        Err(e) => {
                            crate::Stats::add(&replicator.stats.replication_failures, 1);
                            let wait = failures.failed();
                            tracing::warn!(error = %e, retry_in = ?wait, "a replication failed; it is tried again");
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        });
        let syncing = async {
            let Some(every) = sync_every else { return };
            loop {
                tokio::time::sleep(every).await;
                match self.sync().await {
                    Ok(copied) => tracing::info!(?copied, "replication sync"),
                    Err(e) => tracing::warn!(error = %e, "a replication sync failed"),
                }
            }
        };
        futures::join!(futures::future::join_all(lanes), syncing);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Backoff;

    #[test]
    fn failures_in_a_row_wait_longer_up_to_the_most() {
        let mut backoff = Backoff::new(Duration::from_secs(5));
        let waits: Vec<u64> = (0..9).map(|_| backoff.failed().as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        backoff.succeeded();
        assert_eq!(backoff.failed(), Duration::from_secs(5), "a success starts again");
        // A first wait past the most stays as it is; one near the end of time does not wrap.
        let mut long = Backoff::new(Duration::from_secs(3600));
        assert_eq!([long.failed(), long.failed()], [Duration::from_secs(3600); 2]);
        let mut huge = Backoff::new(Duration::MAX);
        assert_eq!([huge.failed(), huge.failed()], [Duration::MAX; 2]);
    }
}
