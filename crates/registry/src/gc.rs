//! Garbage collection that may run while the registry serves pushes.
//!
//! Distribution's collector assumes nothing is pushed while it runs. This one does not:
//!
//! 1. **Mark.** It records its start time `T`, then reads every repository (several at once):
//!    its manifest revisions, its tags, and every manifest's references. With
//!    `delete_untagged`, the manifests kept are the tagged ones, those pushed within the grace
//!    period, the children of every kept index (Distribution's bug #3004 deletes them), and
//!    the referrers of kept manifests; the referrers of deleted or absent subjects go only
//!    when `delete_orphaned_referrers` asks. Every blob a kept manifest references is marked.
//! 2. **Set aside.** Unmarked blobs whose data is older than `T - grace` are *moved* to a
//!    trash folder (`/docker/registry/v2/_wharf/trash`, which Distribution ignores) rather
//!    than deleted; untagged manifests to delete lose their revision link, whose digest is
//!    kept in the report.
//! 3. **Re-check.** It then reads what changed meanwhile: manifest revisions that were not
//!    there at the mark (or were put again after their removal), repository links to a blob
//!    in the trash written since `T - grace` (or `T - clock_slack`, if earlier: file times come
//!    from the store's clock, which may be coarse or behind), and tags. Whatever a new
//!    manifest, link or tag needs is put back.
//! 4. **Delete** what is left in the trash. Repository links to deleted blobs stay, as in
//!    Distribution: a link without data is no blob, since every read checks the data.
//!
//! The other half of the protocol is on the writing side: a push writes first and verifies
//! after. [`Repository::put_manifest`](crate::Repository::put_manifest) stores the revision
//! and then checks that every reference is still there (failing, and removing the revision,
//! if not); [`Repository::tag`](crate::Repository::tag) and
//! [`Repository::mount_blob`](crate::Repository::mount_blob) do the same. So for any push,
//! either its write happens before the collector's re-check, which then sees it and restores
//! what it needs, or its verification happens after the collector set the content aside,
//! and the push fails cleanly (the client uploads again) instead of leaving a manifest that
//! points to nothing. Uploads in progress are never touched: their data is not a blob until
//! they finish, and a finished upload's blob is newer than `T - grace`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use wharf_oci::{Digest, Manifest, RepositoryName};
use wharf_storage::{FileInfo, StorageDriver};

use crate::error::{Error, Result};
use crate::lease::{Lease, LeaseError};
use crate::{Registry, layout};

/// What [`Registry::collect_garbage`] may delete.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GcOptions {
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (directly, or through a kept index or subject).
    pub delete_untagged: bool,
    /// With `delete_untagged`, also delete referrers whose subject is deleted or absent.
    pub delete_orphaned_referrers: bool,
    /// Content written this recently is never deleted (uploads whose manifest is still to
    /// come). Default one hour.
    pub grace_period: Duration,
    /// Repositories read at once. Default 16.
    pub concurrency: usize,
    /// How far the clocks that stamp stored files (the filesystem's, S3's) may lag behind
    /// this process's: the re-check looks at everything written this long before the run
    /// started. Default one minute.
    pub clock_slack: Duration,
    /// The term of the lease in the store that keeps one collection at a time, whichever
    /// process runs it; renewed every third of it while the run goes on, and taken over after
    /// it ends when the process holding it stopped. Default one minute.
    pub lease_term: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            delete_untagged: false,
            delete_orphaned_referrers: false,
            grace_period: Duration::from_secs(3600),
            concurrency: 16,
            clock_slack: Duration::from_secs(60),
            lease_term: Duration::from_secs(60),
        }
    }
}

/// What a collection deleted, or in a dry run would delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Manifests removed from their repository.
    pub manifests_deleted: Vec<(RepositoryName, Digest)>,
    /// Blobs deleted, sorted.
    pub blobs_deleted: Vec<Digest>,
    /// The bytes those blobs held.
    pub bytes_freed: u64,
    /// Blobs that were set aside and put back because a push needed them meanwhile.
    pub blobs_restored: usize,
    /// Manifests kept, in all repositories.
    pub manifests_kept: usize,
    /// Blobs marked as in use.
    pub blobs_marked: usize,
}

/// One repository as the mark phase read it.
struct RepositoryScan {
    name: RepositoryName,
    /// Manifests to delete (with `delete_untagged`).
    doomed: Vec<Digest>,
    /// Blobs the kept manifests use (manifests included).
    marked: HashSet<Digest>,
    kept: usize,
    /// The revisions read (their links found), to tell the re-check which ones are new.
    revisions: HashSet<Digest>,
}

/// The lease that keeps one collection at a time (not in Distribution's layout).
fn gc_lease() -> String {
    format!("{}/_wharf/gc/lease", layout::ROOT)
}

fn lease_error(e: LeaseError) -> Error {
    match e {
        LeaseError::Held => Error::CollectionInProgress,
        LeaseError::Storage(e) => e.into(),
    }
}

/// Where a blob's data waits between set-aside and deletion: sharded like the blob store,
/// so that moves and deletions in parallel do not all queue on one folder.
fn trash(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{}/_wharf/trash/{}/{}/{hex}", layout::ROOT, digest.algorithm(), &hex[..2])
}

impl Registry {
    /// Collects garbage; see the [module documentation](crate::gc) for why this is safe while
    /// pushes go on.
    ///
    /// # Errors
    /// Storage errors; what was set aside before an error stays in the trash and is put back
    /// or deleted by the next run.
    /// Only one collection runs at a time across every process sharing the store (through a
    /// lease at `_wharf/gc/lease`): a run that finds another going on ends at once with
    /// [`Error::CollectionInProgress`], and a run that
    /// loses its lease (it could not renew it in time) stops before its next change.
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport> {
        let lease = match Lease::acquire(self.inner.driver.clone(), gc_lease(), options.lease_term).await {
            Ok(lease) => futures::lock::Mutex::new(lease),
            Err(LeaseError::Held) => return Err(Error::CollectionInProgress),
            Err(LeaseError::Storage(e)) => return Err(e.into()),
        };
        let outcome = {
            use futures::future::{Either, select};
            let done = tokio::sync::Notify::new();
            let renewing = async {
                loop {
                    let wait = std::pin::pin!(tokio::time::sleep(options.lease_term / 3));
                    if let Either::Right(_) = select(wait, std::pin::pin!(done.notified())).await {
                        return Ok(());
                    }
                    if let Err(e) = lease.lock().await.renew().await {
                        return Err(lease_error(e));
                    }
                }
            };
            let run = std::pin::pin!(self.collect_leased(options, &lease));
            match select(run, std::pin::pin!(renewing)).await {
                // A renewal under way is let finish: dropped, its request could still reach
                // the store after the release and hold the lease for another term.
                Either::Left((outcome, renewing)) => {
                    done.notify_one();
                    let _ = renewing.await;
                    outcome
                }
                // What was set aside stays in the trash, for the next run to put back.
                Either::Right((Err(lost), _)) => Err(lost),
                Either::Right((Ok(()), run)) => run.await,
            }
        };
        let _ = lease.into_inner().release().await;
        if let Ok(report) = &outcome
            && !report.dry_run
        {
            let summary = format!(
                "garbage collection: {} blobs deleted ({} bytes), {} manifests deleted, {} blobs put back for pushes",
                report.blobs_deleted.len(),
                report.bytes_freed,
                report.manifests_deleted.len(),
                report.blobs_restored
            );
            if let Err(e) = self.record_maintenance("gc", &summary).await {
                tracing::warn!(error = %e, "the collection's record was not written");
            }
        }
        outcome
    }

    async fn collect_leased(&self, options: &GcOptions, lease: &futures::lock::Mutex<Lease>) -> Result<GcReport> {
        let confirm = async || lease.lock().await.confirm().await.map_err(lease_error);
        confirm().await?;
        let started = SystemTime::now();
        let since = started.checked_sub(options.grace_period).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = GcReport { dry_run: options.dry_run, ..GcReport::default() };

        // A previous run that stopped midway left its trash: it goes back first.
        self.restore_trash().await?;

        // 1. Mark.
        let repositories = self.all_repositories().await?;
        let scans: Vec<RepositoryScan> = futures::stream::iter(repositories)
            .map(|name| self.scan_repository(name, options, since))
            .buffer_unordered(options.concurrency.max(1))
            .try_collect()
            .await?;
        let mut marked: HashSet<Digest> = HashSet::new();
        for scan in &scans {
            marked.extend(scan.marked.iter().cloned());
            report.manifests_kept += scan.kept;
        }
        report.blobs_marked = marked.len();

        // Blobs nobody uses, written before the grace period. (Those linked to a repository
        // since are put back by the re-check.) One walk of the blob store tells each blob's
        // size and time: a thousand blobs a request on S3.
        let mut candidates: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut blobs = self.inner.driver.walk(&layout::blobs(), None);
        while let Some(file) = blobs.try_next().await? {
            if let Some(digest) = layout::blob_of_data_path(&file.path)
                && !marked.contains(&digest)
                && file.modified < since
            {
                candidates.insert(digest, file.size);
            }
        }
        for scan in &scans {
            report.manifests_deleted.extend(scan.doomed.iter().map(|d| (scan.name.clone(), d.clone())));
        }
        if options.dry_run {
            report.bytes_freed = candidates.values().sum();
            report.blobs_deleted = candidates.into_keys().collect();
            return Ok(report);
        }

        // 2. Set aside.
        confirm().await?;
        for (name, digest) in &report.manifests_deleted {
            self.remove_revision(name, digest).await?;
        }
        // Not synced: after a crash, what is in the trash is put back by the next run.
        let moves = candidates.keys().map(|digest| (layout::blob_data(digest), trash(digest))).collect();
        let moved = self.inner.driver.rename_many(moves).await?;
        let aside: Vec<Digest> =
            candidates.keys().zip(moved).filter(|(_, moved)| *moved).map(|(digest, _)| digest.clone()).collect();

        // 3. Re-check what was written meanwhile, and put back what it needs. File times come
        // from the store's clock, coarser than ours and maybe behind: look back further.
        let recheck_since = since.min(started.checked_sub(options.clock_slack).unwrap_or(SystemTime::UNIX_EPOCH));
        let seen: HashMap<&RepositoryName, &HashSet<Digest>> =
            scans.iter().map(|scan| (&scan.name, &scan.revisions)).collect();
        let aside_set: HashSet<Digest> = aside.iter().cloned().collect();
        let recheck = Recheck { since: recheck_since, doomed: &report.manifests_deleted, seen, aside: &aside_set };
        let needed = self.needed_since(&recheck, options.concurrency).await?;
        for (name, digest) in &needed.manifests {
            self.write_link(&layout::revision_link(name, digest), digest).await?;
        }
        report.manifests_deleted.retain(|entry| !needed.manifests.contains(entry));
        // Owned digests keep the future `Send` for any caller.
        let put_back: Vec<Digest> = aside.iter().filter(|d| needed.blobs.contains(*d)).cloned().collect();
        // One by one, durably: a push is waiting for these.
        confirm().await?;
        futures::stream::iter(put_back.clone())
            .map(|digest| async move { self.inner.driver.rename(&trash(&digest), &layout::blob_data(&digest)).await })
            .buffer_unordered(options.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        report.blobs_restored = put_back.len();
        for digest in &put_back {
            candidates.remove(digest);
        }

        // 4. Delete the set-aside data. Links to it stay, as Distribution leaves them: a link
        // to no data is no blob (every read checks the data), and a link written meanwhile by
        // a push must not be taken away.
        let doomed_paths: Vec<String> = aside.iter().filter(|d| candidates.contains_key(*d)).map(trash).collect();
        confirm().await?;
        self.inner.driver.delete_files(doomed_paths).await?;
        let deleted: BTreeMap<Digest, u64> = candidates.into_iter().filter(|(d, _)| aside_set.contains(d)).collect();
        report.bytes_freed = deleted.values().sum();
        report.blobs_deleted = deleted.into_keys().collect();
        Ok(report)
    }

    /// The digests named by the `<algorithm>/<hex>` folders below `dir` (a repository's
    /// `_layers` or revisions), or by `<algorithm>/<xx>/<hex>` with `prefixed` (the blob
    /// store), listed without reading the folders themselves.
    pub(crate) async fn digest_folders(&self, dir: &str, prefixed: bool) -> Result<Vec<Digest>> {
        let driver = &self.inner.driver;
        let mut parents: Vec<(String, String)> = Vec::new();
        for algorithm_dir in list_or_empty(driver.as_ref(), dir).await? {
            let algorithm = last_component(&algorithm_dir).to_owned();
            if prefixed {
                for prefix in list_or_empty(driver.as_ref(), &algorithm_dir).await? {
                    parents.push((algorithm.clone(), prefix));
                }
            } else {
                parents.push((algorithm, algorithm_dir));
            }
        }
        let lists: Vec<Vec<Digest>> = futures::stream::iter(parents)
            .map(|(algorithm, parent)| async move {
                let children = list_or_empty(driver.as_ref(), &parent).await?;
                Ok::<_, crate::Error>(
                    children
                        .iter()
                        .filter_map(|child| format!("{algorithm}:{}", last_component(child)).parse().ok())
                        .collect(),
                )
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        Ok(lists.into_iter().flatten().collect())
    }

    /// Puts back whatever an interrupted run left in the trash.
    async fn restore_trash(&self) -> Result<()> {
        let trash_root = format!("{}/_wharf/trash", layout::ROOT);
        let left: Vec<FileInfo> = self.inner.driver.walk(&trash_root, None).try_collect().await?;
        for file in left {
            let mut parts = file.path.rsplit('/');
            let (Some(hex), Some(_prefix), Some(algorithm)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(digest) = format!("{algorithm}:{hex}").parse::<Digest>() else { continue };
            if self.blob_size(&digest).await?.is_none() {
                self.inner.driver.rename(&file.path, &layout::blob_data(&digest)).await?;
            } else {
                self.inner.driver.delete(&file.path).await?;
            }
        }
        Ok(())
    }

    async fn remove_revision(&self, name: &RepositoryName, digest: &Digest) -> Result<()> {
        // Its entry among its subject's referrers goes too.
        if let Ok(content) = self.inner.driver.get_content(&layout::blob_data(digest)).await
            && let Ok(manifest) = Manifest::parse(content, None)
            && let Some(subject) = manifest.subject()
        {
            let _ = self.inner.driver.delete(&layout::referrer_dir(name, &subject.digest, digest)).await;
        }
        match self.inner.driver.delete(&layout::revision_dir(name, digest)).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads one repository for the mark phase.
    async fn scan_repository(
        &self,
        name: RepositoryName,
        options: &GcOptions,
        since: SystemTime,
    ) -> Result<RepositoryScan> {
        let driver = &self.inner.driver;
        let revisions: Vec<Digest> = self.digest_folders(&layout::revisions(&name), false).await?;
        // When the revisions were written matters only for what may be deleted.
        let listed: Vec<(Digest, SystemTime)> = if options.delete_untagged {
            let links = revisions.iter().map(|digest| layout::revision_link(&name, digest)).collect();
            let written = driver.stat_many(links).await?;
            revisions.iter().zip(written).filter_map(|(digest, info)| Some((digest.clone(), info?.modified))).collect()
        } else {
            revisions.iter().map(|digest| (digest.clone(), SystemTime::UNIX_EPOCH)).collect()
        };
        let manifests: BTreeMap<Digest, (Option<Manifest>, SystemTime)> = futures::stream::iter(listed)
            .map(|(digest, written)| async move {
                let manifest = match driver.get_content(&layout::blob_data(&digest)).await {
                    Ok(content) => Manifest::parse(content, None).ok(),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e),
                };
                Ok((digest, (manifest, written)))
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;

        let kept: BTreeSet<Digest> = if options.delete_untagged {
            let repository = self.repository(&name);
            let mut roots: Vec<Digest> = Vec::new();
            for tag in repository.tags(None, None).await? {
                if let Some(digest) = self.read_link(&layout::tag_current(&name, &tag)).await? {
                    roots.push(digest);
                }
            }
            roots.extend(manifests.iter().filter(|(_, (_, written))| *written >= since).map(|(d, _)| d.clone()));
            reachable(&manifests, roots, options.delete_orphaned_referrers)
        } else {
            manifests.keys().cloned().collect()
        };

        let mut marked = HashSet::new();
        for digest in &kept {
            marked.insert(digest.clone());
            if let Some((Some(manifest), _)) = manifests.get(digest) {
                let subject = manifest.subject().map(|s| &s.digest);
                marked.extend(manifest.references().filter(|d| Some(&d.digest) != subject).map(|d| d.digest.clone()));
            }
        }
        let doomed = manifests.keys().filter(|d| !kept.contains(*d)).cloned().collect();
        // Only the revisions read count as seen: a folder listed before its link was written
        // (a push under way) is new to the re-check, which keeps what it needs.
        let revisions = manifests.keys().cloned().collect();
        Ok(RepositoryScan { name, doomed, marked, kept: kept.len(), revisions })
    }

    /// What was written since the re-check's start needs: blobs set aside, and manifests
    /// among the doomed that a tag or a newer manifest points to.
    async fn needed_since(&self, recheck: &Recheck<'_>, concurrency: usize) -> Result<Needed> {
        let mut doomed_by_repository: HashMap<RepositoryName, HashSet<Digest>> = HashMap::new();
        for (name, digest) in recheck.doomed {
            doomed_by_repository.entry(name.clone()).or_default().insert(digest.clone());
        }
        let doomed_by_repository = &doomed_by_repository;
        let found: Vec<Needed> = futures::stream::iter(self.all_repositories().await?)
            .map(|name| async move {
                let doomed = doomed_by_repository.get(&name);
                self.needed_in(name, recheck, doomed).await
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        let mut needed = Needed::default();
        for found in found {
            needed.blobs.extend(found.blobs);
            needed.manifests.extend(found.manifests);
        }
        Ok(needed)
    }

    /// [`needed_since`](Self::needed_since) for one repository.
    async fn needed_in(
        &self,
        name: RepositoryName,
        recheck: &Recheck<'_>,
        doomed: Option<&HashSet<Digest>>,
    ) -> Result<Needed> {
        let mut needed = Needed::default();
        let driver = &self.inner.driver;
        // Revisions not there at the mark are new; doomed ones still there were put again.
        let seen = recheck.seen.get(&name);
        let mut fresh: Vec<Digest> = self
            .digest_folders(&layout::revisions(&name), false)
            .await?
            .into_iter()
            .filter(|digest| {
                seen.is_none_or(|seen| !seen.contains(digest)) || doomed.is_some_and(|d| d.contains(digest))
            })
            .collect();
        // Links (new or written again) to a blob set aside want it back.
        let linked: Vec<Digest> = self
            .digest_folders(&layout::layers(&name), false)
            .await?
            .into_iter()
            .filter(|digest| recheck.aside.contains(digest))
            .collect();
        let links = driver.stat_many(linked.iter().map(|digest| layout::layer_link(&name, digest)).collect()).await?;
        needed.blobs.extend(
            linked
                .into_iter()
                .zip(links)
                .filter(|(_, link)| link.as_ref().is_some_and(|l| l.modified >= recheck.since))
                .map(|(d, _)| d),
        );
        // Tags that point at a manifest set aside want it back.
        if let Some(doomed) = doomed {
            for tag in self.repository(&name).tags(None, None).await? {
                if let Some(digest) = self.read_link(&layout::tag_current(&name, &tag)).await?
                    && doomed.contains(&digest)
                {
                    fresh.push(digest);
                }
            }
        }
        let mut seen = HashSet::new();
        while let Some(digest) = fresh.pop() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            if doomed.is_some_and(|d| d.contains(&digest)) {
                needed.manifests.push((name.clone(), digest.clone()));
            }
            needed.blobs.insert(digest.clone());
            let content = match driver.get_content(&layout::blob_data(&digest)).await {
                Ok(content) => content,
                Err(e) if e.is_not_found() => match driver.get_content(&trash(&digest)).await {
                    Ok(content) => content,
                    Err(_) => Bytes::new(),
                },
                Err(e) => return Err(e.into()),
            };
            if let Ok(manifest) = Manifest::parse(content, None) {
                for reference in manifest.references() {
                    needed.blobs.insert(reference.digest.clone());
                    if manifest.kind().is_index() {
                        fresh.push(reference.digest.clone());
                    }
                }
            }
        }
        Ok(needed)
    }
}

/// What the re-check compares against.
struct Recheck<'a> {
    /// Links written since are new.
    since: SystemTime,
    /// Manifests whose revisions were removed.
    doomed: &'a [(RepositoryName, Digest)],
    /// The revisions of each repository at the mark.
    seen: HashMap<&'a RepositoryName, &'a HashSet<Digest>>,
    /// Blobs moved to the trash.
    aside: &'a HashSet<Digest>,
}

#[derive(Default)]
struct Needed {
    blobs: HashSet<Digest>,
    manifests: Vec<(RepositoryName, Digest)>,
}

/// A folder's entries, none when it is missing.
async fn list_or_empty(driver: &dyn StorageDriver, dir: &str) -> Result<Vec<String>> {
    match driver.list(dir).await {
        Ok(children) => Ok(children),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn last_component(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The manifests reachable from `roots` through index children and, for kept subjects, their
/// referrers; referrers of absent or unreachable subjects too unless `drop_orphans`.
fn reachable(
    manifests: &BTreeMap<Digest, (Option<Manifest>, SystemTime)>,
    roots: Vec<Digest>,
    drop_orphans: bool,
) -> BTreeSet<Digest> {
    let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for (digest, (manifest, _)) in manifests {
        if let Some(subject) = manifest.as_ref().and_then(Manifest::subject) {
            referrers.entry(&subject.digest).or_default().push(digest);
        }
    }
    let mut kept = BTreeSet::new();
    let mut pending = roots;
    if !drop_orphans {
        // Referrers stay unless their removal with the subject was asked for.
        pending.extend(referrers.values().flatten().map(|d| (*d).clone()));
    }
    while let Some(digest) = pending.pop() {
        if !manifests.contains_key(&digest) || !kept.insert(digest.clone()) {
            continue;
        }
        if let Some((Some(manifest), _)) = manifests.get(&digest)
            && manifest.kind().is_index()
        {
            pending.extend(manifest.manifests().iter().map(|d| d.digest.clone()));
        }
        if let Some(children) = referrers.get(&digest) {
            pending.extend(children.iter().map(|d| (*d).clone()));
        }
    }
    kept
}
