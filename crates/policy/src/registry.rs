//! Retention on an embedded registry ([`wharf_registry`], feature `registry`): its inventory
//! read from the store, and a plan carried out on it, exactly as planned or not at all for
//! whatever changed since.

use futures::{StreamExt as _, TryStreamExt as _};
use wharf_oci::{Manifest, RepositoryName};
use wharf_registry::{ManifestReference, Registry, Repository};

pub use crate::apply::{Applied, AuditEntry};
use crate::apply::{Step, deletes_anything, steps};
use crate::error::{Error, Result};
use crate::inventory::{Inventory, ManifestRecord, RepositoryInventory, TagRecord};
use crate::plan::Plan;
use crate::time::Timestamp;

fn registry_error(what: impl Into<String>, error: impl std::fmt::Display) -> Error {
    Error::Registry { what: what.into(), reason: error.to_string() }
}

/// Everything `registry` holds, as a plan reads it: every repository of its catalog, each
/// manifest with the blobs it references and when it was pushed and last pulled, each tag
/// with when it was last pushed.
///
/// # Errors
/// [`Error::Registry`] naming the repository or manifest that could not be read. A manifest
/// that does not parse is an error rather than left out: what it holds cannot be known.
pub async fn inventory(registry: &Registry) -> Result<Inventory> {
    let names = registry.catalog(None, None).await.map_err(|e| registry_error("the catalog", e))?;
    let mut repositories = Vec::with_capacity(names.len());
    for name in names {
        repositories.push(repository_inventory(&registry.repository(&name)).await?);
    }
    Ok(Inventory { repositories })
}

/// One repository's manifests and tags.
async fn repository_inventory(repository: &Repository) -> Result<RepositoryInventory> {
    let name = repository.name().to_string();
    let revisions =
        repository.manifest_revisions().await.map_err(|e| registry_error(format!("the manifests of {name}"), e))?;
    let manifests: Vec<Option<ManifestRecord>> = futures::stream::iter(revisions)
        .map(|revision| manifest_record(repository, revision))
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let manifests = manifests.into_iter().flatten().collect();
    let tags = repository
        .tag_links()
        .await
        .map_err(|e| registry_error(format!("the tags of {name}"), e))?
        .into_iter()
        .map(|link| TagRecord { name: link.tag, digest: link.digest, pushed: Timestamp(link.linked), pulled: None })
        .collect();
    Ok(RepositoryInventory { name, manifests, tags })
}

async fn manifest_record(
    repository: &Repository,
    revision: wharf_registry::ManifestRevision,
) -> Result<Option<ManifestRecord>> {
    let what = || format!("manifest {} of {}", revision.digest, repository.name());
    let stored = match repository.get_manifest(&ManifestReference::Digest(revision.digest.clone())).await {
        Ok(stored) => stored,
        // Deleted since the listing (by another process's retention, say): not there.
        Err(wharf_registry::Error::ManifestUnknown { .. }) => return Ok(None),
        Err(e) => return Err(registry_error(what(), e)),
    };
    let manifest =
        Manifest::parse(stored.content.clone(), Some(&stored.media_type)).map_err(|e| registry_error(what(), e))?;
    let pulled = repository.last_pulled(&revision.digest).await.map_err(|e| registry_error(what(), e))?;
    Ok(Some(ManifestRecord::of(revision.digest, &manifest, Timestamp(revision.linked), pulled.map(Timestamp))))
}

/// Carries out `plan` on `registry`: its tag and manifest deletions, repository by
/// repository, but never for a refused repository; each deletion told to `audit`. What
/// changed since the plan is not deleted: a tag that points elsewhere now, a manifest that a
/// tag, or a manifest the plan keeps, now names. Blobs are left to garbage collection. A
/// plan applied twice deletes nothing the second time.
///
/// # Errors
/// [`Error::Registry`] when the registry cannot be read or a deletion fails; the deletions
/// told to `audit` before it were made.
pub async fn apply(plan: &Plan, registry: &Registry, audit: &mut (dyn FnMut(&AuditEntry) + Send)) -> Result<Applied> {
    let mut applied = Applied::default();
    for planned in plan.repositories.iter().filter(|r| deletes_anything(r)) {
        let name: RepositoryName =
            planned.name.parse().map_err(|e| registry_error(format!("repository {:?}", planned.name), e))?;
        let repository = registry.repository(&name);
        let now = repository_inventory(&repository).await?;
        for step in steps(planned, &now) {
            match step {
                Step::Gone => applied.already_gone += 1,
                Step::Skip(entry) => {
                    applied.skipped += 1;
                    audit(&entry);
                }
                Step::DeleteTag(tag) => match repository.untag(&tag.name).await {
                    Ok(()) => {
                        applied.tags_deleted += 1;
                        audit(&AuditEntry::tag("delete-tag", &planned.name, tag, tag.reason.to_string()));
                    }
                    // Another run of the plan (another process) deleted it meanwhile.
                    Err(wharf_registry::Error::ManifestUnknown { .. }) => applied.already_gone += 1,
                    Err(e) => return Err(registry_error(format!("deleting tag {} of {}", tag.name, planned.name), e)),
                },
                Step::DeleteManifest(manifest) => match repository.delete_manifest(&manifest.digest).await {
                    Ok(()) => {
                        applied.manifests_deleted += 1;
                        let reason = manifest.reason.to_string();
                        audit(&AuditEntry::manifest("delete-manifest", &planned.name, &manifest.digest, reason));
                    }
                    Err(wharf_registry::Error::ManifestUnknown { .. }) => applied.already_gone += 1,
                    Err(e) => {
                        let what = format!("deleting manifest {} of {}", manifest.digest, planned.name);
                        return Err(registry_error(what, e));
                    }
                },
            }
        }
    }
    let summary = format!(
        "retention: {} tags and {} manifests deleted, {} skipped, {} already gone",
        applied.tags_deleted, applied.manifests_deleted, applied.skipped, applied.already_gone
    );
    if let Err(e) = registry.record_maintenance("retention", &summary).await {
        tracing::warn!(error = %e, "the retention run's record was not written");
    }
    Ok(applied)
}
