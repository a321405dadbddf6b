//! Retention over the distribution API, through [`wharf_client`] (feature `client`): the
//! inventory of any registry read over HTTP, and a plan carried out on it.
//!
//! The API does not tell when a manifest was pushed or last pulled. A manifest's time is
//! read, in this order, from its `org.opencontainers.image.created` annotation, from its
//! image config's `created`, or (an index) as the newest of its children's; a manifest with
//! none of them counts as pushed at the time of the reading, so that no age-based rule
//! deletes it. No manifest or tag has a pull time. Untagged manifests are found as what an
//! index lists and as referrers of what is found; others are out of the API's sight.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt as _, TryStreamExt as _};
use wharf_client::{Client, Repository};
use wharf_oci::{Digest, Manifest};

use crate::apply::{Applied, AuditEntry, Step, deletes_anything, steps};
use crate::error::{Error, Result};
use crate::inventory::{IMAGE_CONFIGS, Inventory, ManifestRecord, RepositoryInventory, TagRecord};
use crate::plan::{Plan, TagPlan};
use crate::policy::Decision;
use crate::time::Timestamp;

/// Requests in flight at once within a repository.
const CONCURRENCY: usize = 16;

/// The largest image config read for its `created` time.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// The annotation that tells when an image was built.
const CREATED: &str = "org.opencontainers.image.created";

fn remote_error(what: impl Into<String>, error: impl std::fmt::Display) -> Error {
    Error::Registry { what: what.into(), reason: error.to_string() }
}

/// Whether `name` is `prefix` or below it.
fn under(name: &str, prefix: Option<&str>) -> bool {
    prefix.is_none_or(|prefix| {
        let prefix = prefix.trim_matches('/');
        prefix.is_empty() || name == prefix || name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The inventory of the repositories of `host`'s catalog at or below `prefix` (all of them
/// for `None`), read over the API at `now`.
///
/// # Errors
/// [`Error::Registry`] naming the catalog, repository or manifest that could not be read.
pub async fn inventory(client: &Client, host: &str, prefix: Option<&str>, now: Timestamp) -> Result<Inventory> {
    let names = client.catalog(host).await.map_err(|e| remote_error(format!("the catalog of {host}"), e))?;
    let mut repositories = Vec::new();
    for name in names.into_iter().filter(|name| under(name, prefix)) {
        repositories.push(repository_inventory(&client.repository(host, &name), now, &[]).await?);
    }
    Ok(Inventory { repositories })
}

/// One repository's tags (each read by a HEAD) and the manifests they and `also` name, with
/// what those list and what refers to them.
async fn repository_inventory(
    repository: &Repository,
    now: Timestamp,
    also: &[&Digest],
) -> Result<RepositoryInventory> {
    let name = repository.name().to_owned();
    let tag_names = match repository.tags().await {
        Ok(tags) => tags,
        // Listed by the catalog, deleted since.
        Err(e) if not_found(&e) => Vec::new(),
        Err(e) => return Err(remote_error(format!("the tags of {name}"), e)),
    };
    let tagged: Vec<Option<(String, Digest)>> = futures::stream::iter(tag_names)
        .map(|tag| async move {
            match repository.manifest_descriptor(&tag).await {
                Ok(found) => Ok(found.map(|descriptor| (tag, descriptor.digest))),
                Err(e) => Err(remote_error(format!("tag {tag} of {name}", name = repository.name()), e)),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut tagged: Vec<(String, Digest)> = tagged.into_iter().flatten().collect();
    tagged.sort();

    // Manifests in waves: those the tags name, then what they list and what refers to them.
    let mut manifests: BTreeMap<Digest, (Manifest, Option<Timestamp>)> = BTreeMap::new();
    let mut seen: BTreeSet<Digest> =
        tagged.iter().map(|(_, digest)| digest.clone()).chain(also.iter().map(|d| (*d).clone())).collect();
    let mut wave: Vec<Digest> = seen.iter().cloned().collect();
    while !wave.is_empty() {
        let read: Vec<Option<Read>> = futures::stream::iter(wave)
            .map(|digest| read_manifest(repository, digest))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        wave = Vec::new();
        for Read { digest, manifest, created, referrers } in read.into_iter().flatten() {
            let next = manifest.manifests().iter().map(|d| d.digest.clone()).chain(referrers);
            for found in next {
                if seen.insert(found.clone()) {
                    wave.push(found);
                }
            }
            manifests.insert(digest, (manifest, created));
        }
    }

    // Times: an index without its own is as new as its newest child.
    let mut times: BTreeMap<Digest, Timestamp> =
        manifests.iter().filter_map(|(digest, (_, created))| Some((digest.clone(), (*created)?))).collect();
    for (digest, (manifest, created)) in &manifests {
        if created.is_none() {
            let newest = manifest.manifests().iter().filter_map(|child| times.get(&child.digest)).max().copied();
            if let Some(newest) = newest {
                times.insert(digest.clone(), newest);
            }
        }
    }
    let pushed = |digest: &Digest| times.get(digest).copied().unwrap_or(now);
    let tags = tagged
        .iter()
        .map(|(tag, digest)| TagRecord {
            name: tag.clone(),
            digest: digest.clone(),
            pushed: pushed(digest),
            pulled: None,
        })
        .collect();
    let manifests = manifests
        .iter()
        .map(|(digest, (manifest, _))| ManifestRecord::of(digest.clone(), manifest, pushed(digest), None))
        .collect();
    Ok(RepositoryInventory { name, manifests, tags })
}

/// Whether the registry answered 404: no such repository, tag or manifest.
fn not_found(error: &wharf_client::Error) -> bool {
    error.status().is_some_and(|status| status.as_u16() == 404)
}

/// A manifest read over the API.
struct Read {
    digest: Digest,
    manifest: Manifest,
    /// When it was built, if it says.
    created: Option<Timestamp>,
    /// The manifests that refer to it.
    referrers: Vec<Digest>,
}

/// Manifest `digest`, when the repository still has it.
async fn read_manifest(repository: &Repository, digest: Digest) -> Result<Option<Read>> {
    let what = || format!("manifest {digest} of {}", repository.name());
    let manifest = match repository.manifest(digest.as_str()).await {
        Ok(manifest) => manifest,
        // Deleted since it was named (by another process's retention, say): not there.
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(remote_error(what(), e)),
    };
    let referrers = repository.referrers(&digest, None).await.map_err(|e| remote_error(what(), e))?;
    let mut created = manifest.annotations().get(CREATED).and_then(|time| time.parse().ok());
    let image_config = manifest.config().filter(|config| IMAGE_CONFIGS.contains(&config.media_type.as_str()));
    if let (None, Some(config)) = (created, image_config) {
        created = config_created(repository, &config.digest).await;
    }
    Ok(Some(Read { digest, manifest, created, referrers: referrers.into_iter().map(|r| r.digest).collect() }))
}

/// The `created` time of image config `digest`, when it can be read and has one.
async fn config_created(repository: &Repository, digest: &Digest) -> Option<Timestamp> {
    #[derive(serde::Deserialize)]
    struct Config {
        created: Option<String>,
    }
    let bytes = match repository.blob_bytes(digest, MAX_CONFIG_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::debug!(%digest, error = %e, "image config unread: its manifest's time is unknown");
            return None;
        }
    };
    serde_json::from_slice::<Config>(&bytes).ok()?.created?.parse().ok()
}

/// Carries out `plan` on `host` over the API: its tag and manifest deletions, repository by
/// repository, never for a refused repository, each deletion told to `audit`. What changed
/// since the plan is skipped, as by the embedded adapter's `apply`. A registry that cannot
/// delete a tag alone (Distribution answers `DIGEST_INVALID`) loses it with its manifest when
/// the plan deletes that too; otherwise the tag is skipped with the reason. Blobs are left
/// to garbage collection. A plan applied twice deletes nothing the second time.
///
/// Between reading a repository and deleting, a tag may still be pushed onto a manifest
/// being deleted; on a registry that deletes a manifest's tags with it (Distribution),
/// that tag goes too. The embedded adapter has no such window.
///
/// # Errors
/// [`Error::Registry`] when the registry cannot be read or a deletion fails; the deletions
/// told to `audit` before it were made.
pub async fn apply(
    plan: &Plan,
    client: &Client,
    host: &str,
    audit: &mut (dyn FnMut(&AuditEntry) + Send),
) -> Result<Applied> {
    let mut applied = Applied::default();
    let now = Timestamp(std::time::SystemTime::now());
    for planned in plan.repositories.iter().filter(|r| deletes_anything(r)) {
        let repository = client.repository(host, &planned.name);
        // The manifests to delete are read by digest too: nothing may name them any more.
        let doomed: Vec<&Digest> =
            planned.manifests.iter().filter(|m| m.decision == Decision::Delete).map(|m| &m.digest).collect();
        let present = repository_inventory(&repository, now, &doomed).await?;
        let steps = steps(planned, &present);
        let deleting: BTreeSet<&Digest> = steps
            .iter()
            .filter_map(|step| match step {
                Step::DeleteManifest(manifest) => Some(&manifest.digest),
                _ => None,
            })
            .collect();
        // Tags the registry could not delete alone, which go with their manifest.
        let mut with_manifest: BTreeMap<&Digest, Vec<&TagPlan>> = BTreeMap::new();
        for step in &steps {
            match step {
                Step::Gone => applied.already_gone += 1,
                Step::Skip(entry) => {
                    applied.skipped += 1;
                    audit(entry);
                }
                Step::DeleteTag(tag) => match repository.delete_manifest(&tag.name).await {
                    Ok(()) => {
                        applied.tags_deleted += 1;
                        audit(&AuditEntry::tag("delete-tag", &planned.name, tag, tag.reason.to_string()));
                    }
                    Err(e) if not_found(&e) => applied.already_gone += 1,
                    Err(e) if cannot_delete_tags(&e) && deleting.contains(&tag.digest) => {
                        with_manifest.entry(&tag.digest).or_default().push(tag);
                    }
                    Err(e) if cannot_delete_tags(&e) => {
                        applied.skipped += 1;
                        let reason = format!("the registry cannot delete a tag alone ({e}), and its manifest is kept");
                        audit(&AuditEntry::tag("skip", &planned.name, tag, reason));
                    }
                    Err(e) => return Err(remote_error(format!("deleting tag {} of {}", tag.name, planned.name), e)),
                },
                Step::DeleteManifest(manifest) => match repository.delete_manifest(manifest.digest.as_str()).await {
                    Ok(()) => {
                        applied.manifests_deleted += 1;
                        let reason = manifest.reason.to_string();
                        audit(&AuditEntry::manifest("delete-manifest", &planned.name, &manifest.digest, reason));
                        for tag in with_manifest.remove(&manifest.digest).unwrap_or_default() {
                            applied.tags_deleted += 1;
                            let reason = format!("{} (with its manifest)", tag.reason);
                            audit(&AuditEntry::tag("delete-tag", &planned.name, tag, reason));
                        }
                    }
                    Err(e) if not_found(&e) => applied.already_gone += 1,
                    Err(e) => {
                        let what = format!("deleting manifest {} of {}", manifest.digest, planned.name);
                        return Err(remote_error(what, e));
                    }
                },
            }
        }
    }
    Ok(applied)
}

/// Whether the registry refused to delete a tag because it deletes manifests only by digest
/// (Distribution takes the tag for a bad digest).
fn cannot_delete_tags(error: &wharf_client::Error) -> bool {
    error.has_code("UNSUPPORTED")
        || error.has_code("DIGEST_INVALID")
        || error.status().is_some_and(|s| s.as_u16() == 405)
}
