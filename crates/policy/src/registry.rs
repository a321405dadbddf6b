//! Retention on an embedded registry ([`wharf_registry`], feature `registry`): its inventory
//! read from the store, and a plan carried out on it, exactly as planned or not at all for
//! whatever changed since.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use wharf_oci::{Digest, Manifest, RepositoryName, media_type};
use wharf_registry::{ManifestReference, Registry, Repository};

use crate::error::{Error, Result};
use crate::inventory::{BlobRecord, Inventory, ManifestRecord, RepositoryInventory, TagRecord};
use crate::plan::Plan;
use crate::policy::Decision;
use crate::time::Timestamp;

fn registry_error(what: impl Into<String>, error: impl std::fmt::Display) -> Error {
    Error::Registry { what: what.into(), reason: error.to_string() }
}

/// Config media types of images (as opposed to artifacts, whose config type is their
/// artifact type).
const IMAGE_CONFIGS: [&str; 2] = [media_type::OCI_IMAGE_CONFIG, "application/vnd.docker.container.image.v1+json"];

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
    let artifact_type = manifest
        .artifact_type()
        .or_else(|| manifest.config().map(|c| c.media_type.as_str()).filter(|t| !IMAGE_CONFIGS.contains(t)))
        .map(str::to_owned);
    Ok(Some(ManifestRecord {
        digest: revision.digest.clone(),
        media_type: stored.media_type,
        artifact_type,
        size: stored.content.len() as u64,
        blobs: manifest
            .config()
            .into_iter()
            .chain(manifest.layers())
            .map(|d| BlobRecord { digest: d.digest.clone(), size: d.size })
            .collect(),
        pushed: Timestamp(revision.linked),
        pulled: pulled.map(Timestamp),
        subject: manifest.subject().map(|d| d.digest.clone()),
        children: manifest.manifests().iter().map(|d| d.digest.clone()).collect(),
        annotations: manifest.annotations().clone(),
    }))
}

/// One line of the audit trail a plan's application leaves: a deletion, or a deletion not
/// made and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// `delete-tag`, `delete-manifest`, or `skip`.
    pub action: &'static str,
    /// The repository.
    pub repository: String,
    /// The tag, for a tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The manifest (a tag's, as planned).
    pub digest: Digest,
    /// The rule that decided, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The plan's reason, or why the deletion was not made.
    pub reason: String,
}

/// What applying a plan did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Applied {
    /// Tags deleted.
    pub tags_deleted: u64,
    /// Manifests deleted.
    pub manifests_deleted: u64,
    /// Deletions not made because the registry changed since the plan (a tag moved, a
    /// manifest tagged again or newly referenced).
    pub skipped: u64,
    /// Deletions already made (by an earlier run of the same plan).
    pub already_gone: u64,
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
    for planned in plan.repositories.iter().filter(|r| r.refused.is_none()) {
        let doomed_tags: Vec<_> = planned.tags.iter().filter(|t| t.decision == Decision::Delete).collect();
        let doomed: BTreeSet<&Digest> =
            planned.manifests.iter().filter(|m| m.decision == Decision::Delete).map(|m| &m.digest).collect();
        if doomed_tags.is_empty() && doomed.is_empty() {
            continue;
        }
        let name: RepositoryName =
            planned.name.parse().map_err(|e| registry_error(format!("repository {:?}", planned.name), e))?;
        let repository = registry.repository(&name);
        let now = repository_inventory(&repository).await?;
        let mut tags: BTreeMap<&str, &Digest> = now.tags.iter().map(|t| (t.name.as_str(), &t.digest)).collect();
        let entry = |action, tag: Option<&str>, digest: &Digest, rule: Option<&Arc<str>>, reason: String| AuditEntry {
            action,
            repository: planned.name.clone(),
            tag: tag.map(str::to_owned),
            digest: digest.clone(),
            rule: rule.map(|r| r.to_string()),
            reason,
        };
        for tag in doomed_tags {
            match tags.get(tag.name.as_str()) {
                None => applied.already_gone += 1,
                Some(now_at) if **now_at != tag.digest => {
                    applied.skipped += 1;
                    let reason = format!("the tag points at {now_at} now, not at {} as planned", tag.digest);
                    audit(&entry("skip", Some(&tag.name), &tag.digest, tag.rule.as_ref(), reason));
                }
                Some(_) => {
                    tags.remove(tag.name.as_str());
                    match repository.untag(&tag.name).await {
                        Ok(()) => {
                            applied.tags_deleted += 1;
                            let reason = tag.reason.clone();
                            audit(&entry(
                                "delete-tag",
                                Some(&tag.name),
                                &tag.digest,
                                tag.rule.as_ref(),
                                reason.to_string(),
                            ));
                        }
                        // Another run of the plan (another process) deleted it meanwhile.
                        Err(wharf_registry::Error::ManifestUnknown { .. }) => applied.already_gone += 1,
                        Err(e) => {
                            return Err(registry_error(format!("deleting tag {} of {}", tag.name, planned.name), e));
                        }
                    }
                }
            }
        }
        // What still names each manifest: tags, and manifests the plan does not delete.
        let mut held: BTreeMap<&Digest, String> = BTreeMap::new();
        for (tag, digest) in &tags {
            held.entry(*digest).or_insert_with(|| format!("tag {tag} points at it now"));
        }
        for manifest in now.manifests.iter().filter(|m| !doomed.contains(&m.digest)) {
            for named in manifest.children.iter().chain(&manifest.subject) {
                held.entry(named).or_insert_with(|| format!("manifest {} names it now", manifest.digest));
            }
        }
        // Indexes before what they list, so that an interrupted run leaves no index without
        // a child.
        let present: BTreeMap<&Digest, &ManifestRecord> = now.manifests.iter().map(|m| (&m.digest, m)).collect();
        let mut order: Vec<&crate::plan::ManifestPlan> =
            planned.manifests.iter().filter(|m| m.decision == Decision::Delete).collect();
        order.sort_by_key(|m| present.get(&m.digest).is_none_or(|record| record.children.is_empty()));
        for manifest in order {
            if !present.contains_key(&manifest.digest) {
                applied.already_gone += 1;
            } else if let Some(why) = held.get(&manifest.digest) {
                applied.skipped += 1;
                audit(&entry("skip", None, &manifest.digest, None, format!("{why}; kept")));
            } else {
                match repository.delete_manifest(&manifest.digest).await {
                    Ok(()) => {
                        applied.manifests_deleted += 1;
                        audit(&entry("delete-manifest", None, &manifest.digest, None, manifest.reason.to_string()));
                    }
                    Err(wharf_registry::Error::ManifestUnknown { .. }) => applied.already_gone += 1,
                    Err(e) => {
                        let what = format!("deleting manifest {} of {}", manifest.digest, planned.name);
                        return Err(registry_error(what, e));
                    }
                }
            }
        }
    }
    Ok(applied)
}
