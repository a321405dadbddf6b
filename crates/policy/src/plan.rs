//! Plans: what a policy decides for every tag and manifest of an inventory, with the rule
//! and the reason, deterministic whatever the inventory's order. Blobs are left to garbage
//! collection; a plan says how many bytes it frees.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use regex::Regex;
use semver::Version;
use serde::{Deserialize, Serialize};
use wharf_oci::Digest;

use crate::in_use::InUse;
use crate::inventory::{Inventory, ManifestRecord, RepositoryInventory, TagRecord};
use crate::policy::{By, Conditions, Decision, Per, Policy, Rule, in_repositories};
use crate::selector::{Candidate, SIGNATURE_TYPES, default_version_pattern, version_in};
use crate::time::{Timestamp, format_duration};

/// A plan: every repository's tags and manifests with what becomes of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Repositories, by name.
    pub repositories: Vec<RepositoryPlan>,
    /// What the whole plan deletes and frees.
    pub summary: Summary,
}

/// One repository's part of a plan. A refused repository shows what the policy decided,
/// and none of it is carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryPlan {
    /// The repository.
    pub name: String,
    /// Its tags, by name.
    pub tags: Vec<TagPlan>,
    /// Its manifests, by digest.
    pub manifests: Vec<ManifestPlan>,
    /// Why nothing is deleted here, when the plan would cross a limit.
    pub refused: Option<String>,
    /// Bytes freed once the deleted manifests are collected: each blob once, and only when
    /// nothing kept anywhere in the inventory still references it.
    pub reclaimed_bytes: u64,
}

/// What becomes of a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagPlan {
    /// The tag.
    pub name: String,
    /// The manifest it points at.
    pub digest: Digest,
    /// Kept or deleted.
    pub decision: Decision,
    /// The rule that decided (`releases`, `immutable[0]`, `in-use`, `grace`), if one did.
    pub rule: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// Every rule whose repositories and selector took the tag, in the file's order.
    pub matched: Vec<String>,
}

/// What becomes of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPlan {
    /// The manifest.
    pub digest: Digest,
    /// Kept or deleted.
    pub decision: Decision,
    /// Why, in words.
    pub reason: String,
}

/// Totals over the repositories that are not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Tags deleted.
    pub tags_deleted: u64,
    /// Manifests deleted.
    pub manifests_deleted: u64,
    /// Bytes freed, each blob once across repositories.
    pub reclaimed_bytes: u64,
}

impl Plan {
    /// The plan as JSON, in its stable order.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a plan written by [`Plan::to_json`].
    ///
    /// # Errors
    /// What serde says is wrong, with its place.
    pub fn from_json(text: &str) -> Result<Plan, String> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| format!("plan: {}: {}", e.path(), e.inner()))
    }
}

/// The plan `policy` makes for `inventory` at `now`, nothing named in `in_use` deleted.
/// The same inputs give the same plan, whatever the order of the inventory's lists.
pub fn plan(inventory: &Inventory, policy: &Policy, in_use: &InUse, now: Timestamp) -> Plan {
    let mut repositories: BTreeMap<&str, Vec<&RepositoryInventory>> = BTreeMap::new();
    for repository in &inventory.repositories {
        repositories.entry(repository.name.as_str()).or_default().push(repository);
    }
    let planner = Planner { policy, in_use, now, default_versions: default_version_pattern(), explaining: false };
    let decided: Vec<Decided<'_>> =
        repositories.into_iter().map(|(name, parts)| planner.repository(name, &parts)).collect();

    // Every blob a kept manifest (or any manifest of a refused repository) references.
    let mut kept_blobs: HashSet<&Digest> = HashSet::new();
    for repository in &decided {
        for (digest, manifest) in &repository.manifests {
            if repository.refused.is_some() || repository.kept.contains_key(digest) {
                kept_blobs.insert(digest);
                kept_blobs.extend(manifest.blobs.iter().map(|b| &b.digest));
            }
        }
    }
    let mut freed_anywhere: HashMap<&Digest, u64> = HashMap::new();
    let mut summary = Summary::default();
    let mut plans = Vec::with_capacity(decided.len());
    for repository in &decided {
        let mut freed: HashMap<&Digest, u64> = HashMap::new();
        if repository.refused.is_none() {
            for (digest, manifest) in &repository.manifests {
                if repository.kept.contains_key(digest) {
                    continue;
                }
                let referenced =
                    std::iter::once((*digest, manifest.size)).chain(manifest.blobs.iter().map(|b| (&b.digest, b.size)));
                for (blob, size) in referenced {
                    if !kept_blobs.contains(blob) {
                        freed.insert(blob, size);
                    }
                }
            }
        }
        let plan = repository.plan(freed.values().fold(0u64, |sum, size| sum.saturating_add(*size)));
        if plan.refused.is_none() {
            summary.tags_deleted += plan.tags.iter().filter(|t| t.decision == Decision::Delete).count() as u64;
            summary.manifests_deleted +=
                plan.manifests.iter().filter(|m| m.decision == Decision::Delete).count() as u64;
        }
        freed_anywhere.extend(freed);
        plans.push(plan);
    }
    summary.reclaimed_bytes = freed_anywhere.values().fold(0u64, |sum, size| sum.saturating_add(*size));
    Plan { repositories: plans, summary }
}

/// A rule's verdict on one tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleVerdict {
    /// The rule.
    pub rule: String,
    /// What the rule does when it holds.
    pub decision: Decision,
    /// Whether it is for the repository, selects the tag, and holds.
    pub verdict: String,
}

impl RuleVerdict {
    fn new(rule: &Rule, verdict: String) -> RuleVerdict {
        RuleVerdict { rule: rule.name.clone(), decision: rule.decision, verdict }
    }
}

/// Why a tag is kept or deleted: the plan's entry for it, and every rule's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The repository.
    pub repository: String,
    /// The tag's entry in the plan.
    pub tag: TagPlan,
    /// Each rule of the policy, in the file's order.
    pub verdicts: Vec<RuleVerdict>,
    /// Why nothing is deleted in the repository, when the plan is refused there.
    pub refused: Option<String>,
}

/// Every rule's verdict on `tag` of `repository`, and the decision the plan makes for it;
/// `None` when the inventory has no such tag.
pub fn explain(
    inventory: &Inventory,
    policy: &Policy,
    in_use: &InUse,
    now: Timestamp,
    repository: &str,
    tag: &str,
) -> Option<Explanation> {
    let parts: Vec<&RepositoryInventory> = inventory.repositories.iter().filter(|r| r.name == repository).collect();
    if parts.is_empty() {
        return None;
    }
    let planner = Planner { policy, in_use, now, default_versions: default_version_pattern(), explaining: true };
    let mut decided = planner.repository(repository, &parts);
    let entry = decided.tags.iter().find(|t| t.name == tag)?.clone();
    Some(Explanation {
        repository: repository.to_owned(),
        tag: entry,
        verdicts: decided.verdicts.remove(tag).unwrap_or_default(),
        refused: decided.refused,
    })
}

struct Planner<'p> {
    policy: &'p Policy,
    in_use: &'p InUse,
    now: Timestamp,
    default_versions: Regex,
    /// Whether every rule's verdict on every unit is kept, for [`explain`].
    explaining: bool,
}

/// A tag, or a manifest no tag, index or subject holds: what rules decide.
struct Unit<'a> {
    tag: Option<&'a TagRecord>,
    digest: &'a Digest,
    manifest: Option<&'a ManifestRecord>,
    /// The later of the tag's push and its manifest's: a re-tag counts as activity.
    pushed: Timestamp,
    pulled: Option<Timestamp>,
    signed: bool,
    matched: Vec<String>,
    /// Every rule's verdict, when explaining.
    verdicts: Vec<RuleVerdict>,
    /// The first keep rule and the first delete rule whose conditions held, with why.
    keep: Option<(String, String)>,
    delete: Option<(String, String)>,
}

impl Unit<'_> {
    fn candidate(&self) -> Candidate<'_> {
        Candidate { tag: self.tag.map(|t| t.name.as_str()), manifest: self.manifest, signed: self.signed }
    }

    fn name(&self) -> &str {
        self.tag.map_or(self.digest.as_str(), |t| t.name.as_str())
    }
}

/// A repository with its decisions made, before blobs are counted.
struct Decided<'a> {
    name: &'a str,
    manifests: BTreeMap<&'a Digest, &'a ManifestRecord>,
    tags: Vec<TagPlan>,
    /// Kept manifests, with why.
    kept: BTreeMap<&'a Digest, String>,
    /// Deleted manifests, with why.
    deleted: BTreeMap<&'a Digest, String>,
    refused: Option<String>,
    /// Each tag's rule verdicts, when explaining.
    verdicts: BTreeMap<String, Vec<RuleVerdict>>,
}

impl Decided<'_> {
    fn plan(&self, reclaimed_bytes: u64) -> RepositoryPlan {
        let manifests = self
            .manifests
            .keys()
            .map(|digest| {
                let (decision, reason) = match self.kept.get(digest) {
                    Some(reason) => (Decision::Keep, reason.clone()),
                    None => (Decision::Delete, self.deleted.get(digest).cloned().unwrap_or_default()),
                };
                ManifestPlan { digest: (*digest).clone(), decision, reason }
            })
            .collect();
        RepositoryPlan {
            name: self.name.to_owned(),
            tags: self.tags.clone(),
            manifests,
            refused: self.refused.clone(),
            reclaimed_bytes,
        }
    }
}

/// The subject an attached tag follows: the referrers tag schema's `sha256-<hex>`, and
/// cosign's `sha256-<hex>.sig`, `.att` and `.sbom`.
fn attached_subject(tag: &str) -> Option<Digest> {
    if !(tag.starts_with("sha256-") || tag.starts_with("sha512-")) {
        return None;
    }
    let base = [".sig", ".att", ".sbom"].iter().find_map(|suffix| tag.strip_suffix(suffix)).unwrap_or(tag);
    let (algorithm, hex) = base.split_once('-')?;
    format!("{algorithm}:{hex}").parse().ok()
}

impl<'p> Planner<'p> {
    fn repository<'a>(&self, name: &'a str, parts: &[&'a RepositoryInventory]) -> Decided<'a> {
        // The inventory's lists in a total order; a record listed twice counts once (the
        // greatest, so the choice does not depend on the order).
        let mut manifest_list: Vec<&ManifestRecord> = parts.iter().flat_map(|p| &p.manifests).collect();
        manifest_list.sort();
        let manifests: BTreeMap<&Digest, &ManifestRecord> = manifest_list.into_iter().map(|m| (&m.digest, m)).collect();
        let mut tag_list: Vec<&TagRecord> = parts.iter().flat_map(|p| &p.tags).collect();
        tag_list.sort();
        let tags: BTreeMap<&str, &TagRecord> = tag_list.into_iter().map(|t| (t.name.as_str(), t)).collect();

        let mut parents: BTreeMap<&Digest, Vec<&Digest>> = BTreeMap::new();
        let mut referrers: BTreeMap<&Digest, Vec<&Digest>> = BTreeMap::new();
        for manifest in manifests.values() {
            for child in &manifest.children {
                parents.entry(child).or_default().push(&manifest.digest);
            }
            if let Some(subject) = &manifest.subject {
                referrers.entry(subject).or_default().push(&manifest.digest);
            }
        }
        let mut attached: BTreeMap<&str, Digest> = BTreeMap::new();
        for tag in tags.keys() {
            if let Some(subject) = attached_subject(tag).filter(|s| manifests.contains_key(s)) {
                attached.insert(tag, subject);
            }
        }
        // Subjects with a cosign signature tag (`sha256-<hex>.sig`).
        let signature_tagged: BTreeSet<&Digest> =
            attached.iter().filter(|(tag, _)| tag.ends_with(".sig")).map(|(_, subject)| subject).collect();
        let signed = |digest: &Digest| {
            let by_referrer = referrers.get(digest).is_some_and(|list| {
                list.iter().any(|r| {
                    manifests
                        .get(r)
                        .and_then(|m| m.artifact_type.as_deref())
                        .is_some_and(|t| SIGNATURE_TYPES.contains(&t))
                })
            });
            by_referrer || signature_tagged.contains(digest)
        };
        let tagged: BTreeSet<&Digest> = tags.values().map(|t| &t.digest).collect();

        let mut units: Vec<Unit<'a>> = Vec::new();
        for tag in tags.values().filter(|t| !attached.contains_key(t.name.as_str())) {
            let manifest = manifests.get(&tag.digest).copied();
            let pushed = manifest.map_or(tag.pushed, |m| m.pushed.max(tag.pushed));
            let pulled = tag.pulled.max(manifest.and_then(|m| m.pulled));
            units.push(Unit {
                tag: Some(tag),
                digest: &tag.digest,
                manifest,
                pushed,
                pulled,
                signed: signed(&tag.digest),
                matched: Vec::new(),
                verdicts: Vec::new(),
                keep: None,
                delete: None,
            });
        }
        for manifest in manifests.values() {
            let held = tagged.contains(&manifest.digest)
                || parents.contains_key(&manifest.digest)
                || manifest.subject.as_ref().is_some_and(|s| manifests.contains_key(s));
            if !held {
                units.push(Unit {
                    tag: None,
                    digest: &manifest.digest,
                    manifest: Some(manifest),
                    pushed: manifest.pushed,
                    pulled: manifest.pulled,
                    signed: signed(&manifest.digest),
                    matched: Vec::new(),
                    verdicts: Vec::new(),
                    keep: None,
                    delete: None,
                });
            }
        }

        for rule in &self.policy.rules {
            if in_repositories(&rule.repositories, name) {
                self.apply(rule, &mut units);
            } else if self.explaining {
                for unit in &mut units {
                    unit.verdicts.push(RuleVerdict::new(rule, "not for this repository".to_owned()));
                }
            }
        }

        // Decisions for tags and untagged manifests.
        let grace_start = self.now.minus(self.policy.limits.grace);
        let mut tag_plans: Vec<TagPlan> = Vec::new();
        let mut kept: BTreeMap<&'a Digest, String> = BTreeMap::new();
        let mut deleted: BTreeMap<&'a Digest, String> = BTreeMap::new();
        let mut deleted_tags: BTreeMap<&'a Digest, Vec<&'a str>> = BTreeMap::new();
        for unit in &units {
            let candidate = unit.candidate();
            let protected = if let Some(scope) = self.policy.immutable_scope(name, &candidate) {
                Some((scope.place.clone(), "an immutable tag".to_owned()))
            } else if self.in_use.protects(name, unit.tag.map(|t| t.name.as_str()), unit.digest) {
                Some(("in-use".to_owned(), "named in the in-use list".to_owned()))
            } else if unit.pushed > grace_start {
                Some((
                    "grace".to_owned(),
                    format!("pushed within the grace period ({})", format_duration(self.policy.limits.grace)),
                ))
            } else {
                None
            };
            let (decision, rule, reason) = if let Some((rule, reason)) = protected {
                (Decision::Keep, Some(rule), reason)
            } else if let Some((rule, reason)) = &unit.keep {
                (Decision::Keep, Some(rule.clone()), reason.clone())
            } else if let Some((rule, reason)) = &unit.delete {
                (Decision::Delete, Some(rule.clone()), reason.clone())
            } else if unit.tag.is_none() {
                match self.policy.untagged_older_than {
                    Some(age) if unit.pushed < self.now.minus(age) => (
                        Decision::Delete,
                        Some("untagged".to_owned()),
                        format!("untagged, pushed more than {} ago", format_duration(age)),
                    ),
                    _ => (Decision::Keep, None, "untagged; no rule deletes it".to_owned()),
                }
            } else {
                (self.policy.default, None, "no rule decided; the default".to_owned())
            };
            match unit.tag {
                Some(tag) => {
                    if decision == Decision::Keep {
                        kept.entry(unit.digest).or_insert_with(|| format!("tag {} is kept", tag.name));
                    } else {
                        deleted_tags.entry(unit.digest).or_default().push(&tag.name);
                    }
                    tag_plans.push(TagPlan {
                        name: tag.name.clone(),
                        digest: tag.digest.clone(),
                        decision,
                        rule,
                        reason,
                        matched: unit.matched.clone(),
                    });
                }
                None => {
                    let reason = match rule.as_deref() {
                        Some("untagged") | None => reason,
                        Some(rule) => format!("untagged; {reason} (rule {rule})"),
                    };
                    if decision == Decision::Keep {
                        kept.insert(unit.digest, reason);
                    } else {
                        deleted.insert(unit.digest, reason);
                    }
                }
            }
        }
        for manifest in manifests.values() {
            if self.in_use.protects_digest(name, &manifest.digest) {
                kept.entry(&manifest.digest).or_insert_with(|| "named in the in-use list".to_owned());
            } else if manifest.pushed > grace_start {
                kept.entry(&manifest.digest).or_insert_with(|| "pushed within the grace period".to_owned());
            }
        }

        // What kept manifests hold: an index its children, a referrer its subject, a
        // subject its referrers; attached tags follow their subject.
        let mut attached_kept: BTreeSet<&str> = BTreeSet::new();
        let mut work: Vec<&'a Digest> = kept.keys().copied().collect();
        loop {
            while let Some(digest) = work.pop() {
                let Some(manifest) = manifests.get(digest) else { continue };
                let mut hold = |held: &'a Digest, why: String| {
                    if manifests.contains_key(held) && !kept.contains_key(held) {
                        kept.insert(held, why);
                        work.push(held);
                    }
                };
                for child in &manifest.children {
                    hold(child, format!("listed by kept index {digest}"));
                }
                if let Some(subject) = &manifest.subject {
                    hold(subject, format!("the subject of kept {digest}"));
                }
                for referrer in referrers.get(digest).into_iter().flatten() {
                    hold(referrer, format!("refers to kept {digest}"));
                }
            }
            let newly: Vec<&str> = attached
                .iter()
                .filter(|(tag, subject)| !attached_kept.contains(*tag) && kept.contains_key(subject))
                .map(|(tag, _)| *tag)
                .collect();
            if newly.is_empty() {
                break;
            }
            for tag in newly {
                attached_kept.insert(tag);
                let digest = &tags[tag].digest;
                if manifests.contains_key(digest) && !kept.contains_key(digest) {
                    kept.insert(digest, format!("tag {tag} follows its kept subject"));
                    work.push(digest);
                }
            }
        }
        for (tag, subject) in &attached {
            let record = tags[tag];
            let (decision, reason) = if attached_kept.contains(tag) {
                (Decision::Keep, format!("follows its subject {subject}, which is kept"))
            } else {
                deleted_tags.entry(&record.digest).or_default().push(tag);
                (Decision::Delete, format!("follows its subject {subject}, which is deleted"))
            };
            tag_plans.push(TagPlan {
                name: record.name.clone(),
                digest: record.digest.clone(),
                decision,
                rule: None,
                reason,
                matched: Vec::new(),
            });
        }
        tag_plans.sort_by(|a, b| a.name.cmp(&b.name));
        for manifest in manifests.values() {
            let digest = &manifest.digest;
            if kept.contains_key(digest) || deleted.contains_key(digest) {
                continue;
            }
            let reason = if let Some(names) = deleted_tags.get(digest) {
                let mut names = names.clone();
                names.sort_unstable();
                format!("its tags are deleted ({})", names.join(", "))
            } else if parents.contains_key(digest) {
                "only deleted indexes list it".to_owned()
            } else if let Some(subject) = &manifest.subject {
                format!("its subject {subject} is deleted")
            } else {
                "nothing keeps it".to_owned()
            };
            deleted.insert(digest, reason);
        }

        let normal: Vec<&TagPlan> = tag_plans.iter().filter(|t| !attached.contains_key(t.name.as_str())).collect();
        let total = normal.len();
        let removed = normal.iter().filter(|t| t.decision == Decision::Delete).count();
        let limits = self.policy.limits;
        let refused = if removed == 0 {
            None
        } else if removed as f64 > limits.max_delete_fraction * total as f64 {
            Some(format!(
                "the plan deletes {removed} of {total} tags, more than limits.max_delete_fraction ({})",
                limits.max_delete_fraction
            ))
        } else if total - removed < limits.min_tags {
            Some(format!(
                "the plan leaves {} of {total} tags, fewer than limits.min_tags ({})",
                total - removed,
                limits.min_tags
            ))
        } else {
            None
        };
        let verdicts = units
            .iter_mut()
            .filter_map(|unit| Some((unit.tag?.name.clone(), std::mem::take(&mut unit.verdicts))))
            .collect();
        Decided { name, manifests, tags: tag_plans, kept, deleted, refused, verdicts }
    }

    /// Records which units `rule` selects, and whether its conditions hold for each.
    fn apply(&self, rule: &Rule, units: &mut [Unit<'_>]) {
        let takes_untagged = rule.selector.as_ref().is_some_and(|s| s.selects_untagged());
        let selected: Vec<usize> = (0..units.len())
            .filter(|&i| {
                let unit = &units[i];
                match (&rule.selector, unit.tag.is_some()) {
                    (None, tagged) => tagged,
                    (Some(selector), true) => selector.matches(&unit.candidate()),
                    (Some(selector), false) => takes_untagged && selector.matches(&unit.candidate()),
                }
            })
            .collect();
        let pattern = rule.selector.as_ref().and_then(|s| s.version_pattern()).unwrap_or(&self.default_versions);
        let ranks = rule.conditions.newest.map(|(count, per, by)| rank(units, &selected, pattern, count, per, by));
        if self.explaining {
            let mut is_selected = vec![false; units.len()];
            selected.iter().for_each(|&i| is_selected[i] = true);
            for (unit, _) in units.iter_mut().zip(is_selected).filter(|(_, selected)| !selected) {
                unit.verdicts.push(RuleVerdict::new(rule, "does not select it".to_owned()));
            }
        }
        for (position, &i) in selected.iter().enumerate() {
            let unit = &mut units[i];
            unit.matched.push(rule.name.clone());
            let decided = match rule.decision {
                Decision::Keep => &unit.keep,
                Decision::Delete => &unit.delete,
            };
            if decided.is_some() && !self.explaining {
                continue;
            }
            let newest = ranks.as_ref().map(|ranks| &ranks[position]);
            let verdict = holds(&rule.conditions, unit, newest, self.now);
            if self.explaining {
                let words = match (&verdict, decided) {
                    (Ok(reason), None) => format!("selects it, and holds: {reason}"),
                    (Ok(reason), Some((earlier, _))) => {
                        format!("selects it, and holds ({reason}), but rule {earlier} decided first")
                    }
                    (Err(failed), _) => format!("selects it, but does not hold: {failed}"),
                };
                unit.verdicts.push(RuleVerdict::new(rule, words));
            }
            if let (Ok(reason), None) = (verdict, decided) {
                let verdict = Some((rule.name.clone(), reason));
                match rule.decision {
                    Decision::Keep => unit.keep = verdict,
                    Decision::Delete => unit.delete = verdict,
                }
            }
        }
    }
}

/// Where a unit stands among those a `newest` condition ranks: within the count or not,
/// and the words for its group.
struct Rank {
    within: bool,
    words: std::sync::Arc<str>,
}

/// Ranks the `selected` units in their groups, newest first.
fn rank(units: &[Unit<'_>], selected: &[usize], pattern: &Regex, count: usize, per: Per, by: By) -> Vec<Rank> {
    let versions: Vec<Option<Version>> =
        selected.iter().map(|&i| units[i].tag.and_then(|t| version_in(pattern, &t.name))).collect();
    // Groups by (has a version, major, minor); the words come once per group.
    let group = |version: &Option<Version>| match (per, version) {
        (Per::Repository, _) => (true, 0, 0),
        (_, None) => (false, 0, 0),
        (Per::Major, Some(v)) => (true, v.major, 0),
        (Per::Minor, Some(v)) => (true, v.major, v.minor),
    };
    let words = |(versioned, major, minor): (bool, u64, u64)| match per {
        Per::Repository => String::new(),
        _ if !versioned => " of the tags without a version".to_owned(),
        Per::Major => format!(" of major {major}"),
        Per::Minor => format!(" of {major}.{minor}"),
    };
    let mut groups: BTreeMap<(bool, u64, u64), Vec<usize>> = BTreeMap::new();
    for (position, version) in versions.iter().enumerate() {
        groups.entry(group(version)).or_default().push(position);
    }
    let by_words = match by {
        By::Pushed => "push",
        By::Pulled => "pull",
        By::Version => "version",
    };
    let mut ranks: Vec<Option<Rank>> = (0..selected.len()).map(|_| None).collect();
    for (key, mut members) in groups {
        let words: std::sync::Arc<str> = format!("the newest {count}{} by {by_words}", words(key)).into();
        members.sort_by(|&a, &b| {
            let (ua, ub) = (&units[selected[a]], &units[selected[b]]);
            let primary = match by {
                By::Pushed => ub.pushed.cmp(&ua.pushed),
                // Never pulled ranks last.
                By::Pulled => ub.pulled.cmp(&ua.pulled),
                By::Version => match (&versions[a], &versions[b]) {
                    (Some(va), Some(vb)) => vb.cmp(va),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                },
            };
            primary.then_with(|| ub.pushed.cmp(&ua.pushed)).then_with(|| ua.name().cmp(ub.name()))
        });
        for (place, position) in members.into_iter().enumerate() {
            ranks[position] = Some(Rank { within: place < count, words: words.clone() });
        }
    }
    ranks.into_iter().map(|r| r.unwrap_or(Rank { within: false, words: "".into() })).collect()
}

/// Why `conditions` all hold for `unit`, or the first that does not.
fn holds(conditions: &Conditions, unit: &Unit<'_>, newest: Option<&Rank>, now: Timestamp) -> Result<String, String> {
    let mut why = Vec::new();
    if let Some(rank) = newest {
        if !rank.within {
            return Err(format!("not among {}", rank.words));
        }
        why.push(format!("among {}", rank.words));
    }
    if let Some(within) = conditions.pushed_within {
        if unit.pushed < now.minus(within) {
            return Err(format!("not pushed within {}", format_duration(within)));
        }
        why.push(format!("pushed within {}", format_duration(within)));
    }
    if let Some(older) = conditions.pushed_older_than {
        if unit.pushed >= now.minus(older) {
            return Err(format!("pushed less than {} ago", format_duration(older)));
        }
        why.push(format!("pushed more than {} ago", format_duration(older)));
    }
    if let Some(within) = conditions.pulled_within {
        match unit.pulled {
            None => return Err("never pulled".to_owned()),
            Some(pulled) if pulled < now.minus(within) => {
                return Err(format!("not pulled within {}", format_duration(within)));
            }
            Some(_) => why.push(format!("pulled within {}", format_duration(within))),
        }
    }
    if let Some(older) = conditions.pulled_older_than {
        match unit.pulled {
            Some(pulled) if pulled >= now.minus(older) => {
                return Err(format!("pulled within {}", format_duration(older)));
            }
            Some(_) => why.push(format!("not pulled for {}", format_duration(older))),
            None => why.push("never pulled".to_owned()),
        }
    }
    Ok(if why.is_empty() { "selected by the rule".to_owned() } else { why.join(", ") })
}
