//! Carrying out a plan, whatever the registry: what to delete in what order, what to skip
//! because the registry changed since the plan, and the audit trail. The adapters (the
//! modules `registry` and `remote`, behind their features) read the registry and make the
//! deletions.

#[cfg(any(feature = "registry", feature = "client"))]
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use wharf_oci::Digest;

#[cfg(any(feature = "registry", feature = "client"))]
use crate::{
    inventory::{ManifestRecord, RepositoryInventory},
    plan::{ManifestPlan, RepositoryPlan, TagPlan},
    policy::Decision,
};

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

#[cfg(any(feature = "registry", feature = "client"))]
impl AuditEntry {
    pub(crate) fn tag(action: &'static str, repository: &str, tag: &TagPlan, reason: String) -> AuditEntry {
        AuditEntry {
            action,
            repository: repository.to_owned(),
            tag: Some(tag.name.clone()),
            digest: tag.digest.clone(),
            rule: tag.rule.as_deref().map(str::to_owned),
            reason,
        }
    }

    pub(crate) fn manifest(action: &'static str, repository: &str, digest: &Digest, reason: String) -> AuditEntry {
        AuditEntry { action, repository: repository.to_owned(), tag: None, digest: digest.clone(), rule: None, reason }
    }
}

/// What applying a plan did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Applied {
    /// Tags deleted.
    pub tags_deleted: u64,
    /// Manifests deleted.
    pub manifests_deleted: u64,
    /// Deletions not made because the registry changed since the plan (a tag moved, a
    /// manifest tagged again or newly referenced), or because the registry cannot make them.
    pub skipped: u64,
    /// Deletions already made (by an earlier run of the same plan).
    pub already_gone: u64,
}

#[cfg(any(feature = "registry", feature = "client"))]
/// One step of a repository's part of a plan, against what the repository holds now.
#[derive(Debug)]
pub(crate) enum Step<'p> {
    /// Already done: the tag or manifest is gone.
    Gone,
    /// Not to be done: the registry changed since the plan.
    Skip(AuditEntry),
    DeleteTag(&'p TagPlan),
    DeleteManifest(&'p ManifestPlan),
}

#[cfg(any(feature = "registry", feature = "client"))]
/// The steps that carry out `planned` on a repository that holds `now`: first the tags
/// that still point where the plan says, then the manifests nothing names any more, indexes
/// before what they list, so that an interrupted run leaves no index without a child.
pub(crate) fn steps<'p>(planned: &'p RepositoryPlan, now: &RepositoryInventory) -> Vec<Step<'p>> {
    let mut steps = Vec::new();
    if planned.refused.is_some() {
        return steps;
    }
    let doomed: BTreeSet<&Digest> =
        planned.manifests.iter().filter(|m| m.decision == Decision::Delete).map(|m| &m.digest).collect();
    let mut tags: BTreeMap<&str, &Digest> = now.tags.iter().map(|t| (t.name.as_str(), &t.digest)).collect();
    for tag in planned.tags.iter().filter(|t| t.decision == Decision::Delete) {
        match tags.get(tag.name.as_str()) {
            None => steps.push(Step::Gone),
            Some(now_at) if **now_at != tag.digest => {
                let reason = format!("the tag points at {now_at} now, not at {} as planned", tag.digest);
                steps.push(Step::Skip(AuditEntry::tag("skip", &planned.name, tag, reason)));
            }
            Some(_) => {
                tags.remove(tag.name.as_str());
                steps.push(Step::DeleteTag(tag));
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
    let present: BTreeMap<&Digest, &ManifestRecord> = now.manifests.iter().map(|m| (&m.digest, m)).collect();
    let mut order: Vec<&ManifestPlan> = planned.manifests.iter().filter(|m| m.decision == Decision::Delete).collect();
    order.sort_by_key(|m| present.get(&m.digest).is_none_or(|record| record.children.is_empty()));
    for manifest in order {
        if !present.contains_key(&manifest.digest) {
            steps.push(Step::Gone);
        } else if let Some(why) = held.get(&manifest.digest) {
            steps.push(Step::Skip(AuditEntry::manifest(
                "skip",
                &planned.name,
                &manifest.digest,
                format!("{why}; kept"),
            )));
        } else {
            steps.push(Step::DeleteManifest(manifest));
        }
    }
    steps
}

#[cfg(any(feature = "registry", feature = "client"))]
/// Whether `planned` deletes anything at all.
pub(crate) fn deletes_anything(planned: &RepositoryPlan) -> bool {
    planned.refused.is_none()
        && (planned.tags.iter().any(|t| t.decision == Decision::Delete)
            || planned.manifests.iter().any(|m| m.decision == Decision::Delete))
}
