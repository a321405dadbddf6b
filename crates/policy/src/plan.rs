//! Plans: what a policy decides for every tag and manifest of an inventory, with the rule
//! and the reason, deterministic whatever the inventory's order. Blobs are left to garbage
//! collection; a plan says how many bytes it frees.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use semver::Version;
use serde::{Deserialize, Serialize};
use wharf_oci::Digest;

use crate::in_use::InUse;
use crate::inventory::{Inventory, ManifestRecord, RepositoryInventory, TagRecord};
use crate::policy::{By, Conditions, Decision, Per, Policy, Rule, in_repositories};
use crate::selector::{Candidate, SIGNATURE_TYPES, VersionPattern};
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
    pub rule: Option<Arc<str>>,
    /// Why, in words.
    pub reason: Arc<str>,
    /// Every rule whose repositories and selector took the tag, in the file's order.
    pub matched: Arc<[Arc<str>]>,
}

/// What becomes of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPlan {
    /// The manifest.
    pub digest: Digest,
    /// Kept or deleted.
    pub decision: Decision,
    /// Why, in words.
    pub reason: Arc<str>,
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
/// Repositories are planned side by side, one thread a core.
pub fn plan(inventory: &Inventory, policy: &Policy, in_use: &InUse, now: Timestamp) -> Plan {
    let mut grouped: BTreeMap<&str, Vec<&RepositoryInventory>> = BTreeMap::new();
    for repository in &inventory.repositories {
        grouped.entry(repository.name.as_str()).or_default().push(repository);
    }
    let grouped: Vec<(&str, Vec<&RepositoryInventory>)> = grouped.into_iter().collect();
    let planner = Planner::new(policy, in_use, now, false);
    let decided = parallel_map(&grouped, |(name, parts)| planner.repository(name, parts).0);

    // The blobs (manifests included) that deleted manifests reference, each once: what
    // the plan may free, unless a kept manifest (or any of a refused repository) references
    // it too.
    let references = decided.iter().flat_map(|r| &r.deleted).map(|m| m.blobs.len() + 1).sum();
    let mut freeable: DigestMap<'_, usize> = DigestMap::with_capacity_and_hasher(references, Default::default());
    let mut sizes: Vec<u64> = Vec::with_capacity(references);
    for repository in &decided {
        for manifest in &repository.deleted {
            for (blob, size) in referenced(manifest) {
                freeable.entry(DigestKey(blob)).or_insert_with(|| {
                    sizes.push(size);
                    sizes.len() - 1
                });
            }
        }
    }
    let still_referenced: Vec<AtomicBool> = sizes.iter().map(|_| AtomicBool::new(false)).collect();
    parallel_map(&decided, |repository| {
        for (blob, _) in repository.kept.iter().flat_map(|manifest| referenced(manifest)) {
            if let Some(&slot) = freeable.get(&DigestKey(blob)) {
                still_referenced[slot].store(true, Ordering::Relaxed);
            }
        }
    });
    let freed = |slot: usize| !still_referenced[slot].load(Ordering::Relaxed);
    let reclaimed = parallel_map(&decided, |repository| {
        let mut counted: HashSet<usize, foldhash::fast::RandomState> = HashSet::default();
        let mut bytes = 0u64;
        for (blob, _) in repository.deleted.iter().flat_map(|manifest| referenced(manifest)) {
            if let Some(&slot) = freeable.get(&DigestKey(blob))
                && freed(slot)
                && counted.insert(slot)
            {
                bytes = bytes.saturating_add(sizes[slot]);
            }
        }
        bytes
    });
    let mut summary = Summary {
        reclaimed_bytes: (0..sizes.len())
            .filter(|&slot| freed(slot))
            .fold(0u64, |sum, slot| sum.saturating_add(sizes[slot])),
        ..Summary::default()
    };
    let mut plans = Vec::with_capacity(decided.len());
    for (repository, reclaimed_bytes) in decided.into_iter().zip(reclaimed) {
        let mut plan = repository.plan;
        plan.reclaimed_bytes = reclaimed_bytes;
        if plan.refused.is_none() {
            summary.tags_deleted += plan.tags.iter().filter(|t| t.decision == Decision::Delete).count() as u64;
            summary.manifests_deleted +=
                plan.manifests.iter().filter(|m| m.decision == Decision::Delete).count() as u64;
        }
        plans.push(plan);
    }
    Plan { repositories: plans, summary }
}

/// The digests a manifest references, itself included, with their sizes.
fn referenced(manifest: &ManifestRecord) -> impl Iterator<Item = (&str, u64)> {
    std::iter::once((manifest.digest.as_str(), manifest.size))
        .chain(manifest.blobs.iter().map(|b| (b.digest.as_str(), b.size)))
}

/// What orders digests as [`Digest`]'s `Ord` does, up to a tie in the first 8 hex digits:
/// sorting by it first spares comparing whole strings.
fn order_key(digest: &Digest) -> (wharf_oci::Algorithm, u64) {
    let hex = digest.hex().as_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hex[..8]);
    (digest.algorithm(), u64::from_be_bytes(first))
}

/// A digest's text, hashed by its last hex digits alone: a digest is a hash already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DigestKey<'a>(&'a str);

impl Hash for DigestKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let bytes = self.0.as_bytes();
        state.write(&bytes[bytes.len().saturating_sub(16)..]);
    }
}

type DigestMap<'a, V> = HashMap<DigestKey<'a>, V, foldhash::fast::RandomState>;

/// `f` over `items` on one thread a core, the results in the items' order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else { return done };
                        done.push((index, f(item)));
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    results.sort_unstable_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
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
        RuleVerdict { rule: rule.name.to_string(), decision: rule.decision, verdict }
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
    let planner = Planner::new(policy, in_use, now, true);
    let (decided, mut verdicts) = planner.repository(repository, &parts);
    let entry = decided.plan.tags.iter().find(|t| t.name == tag)?.clone();
    Some(Explanation {
        repository: repository.to_owned(),
        tag: entry,
        verdicts: verdicts.remove(tag).unwrap_or_default(),
        refused: decided.plan.refused,
    })
}

struct Planner<'p> {
    policy: &'p Policy,
    in_use: &'p InUse,
    now: Timestamp,
    /// Whether every rule's verdict on every unit is kept, for [`explain`].
    explaining: bool,
    /// The names the plan gives to what protects a tag.
    in_use_rule: Arc<str>,
    grace_rule: Arc<str>,
    untagged_rule: Arc<str>,
}

/// A tag, or a manifest no tag, index or subject holds: what rules decide.
struct Unit<'a> {
    tag: Option<&'a TagRecord>,
    digest: &'a Digest,
    /// The manifest's place in the repository's list, when the inventory has it.
    index: Option<usize>,
    manifest: Option<&'a ManifestRecord>,
    /// The later of the tag's push and its manifest's: a re-tag counts as activity.
    pushed: Timestamp,
    pulled: Option<Timestamp>,
    signed: bool,
    matched: Vec<Arc<str>>,
    /// Every rule's verdict, when explaining.
    verdicts: Vec<RuleVerdict>,
    /// The first keep rule and the first delete rule whose conditions held, with why.
    keep: Option<(Arc<str>, String)>,
    delete: Option<(Arc<str>, String)>,
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
    /// The plan, `reclaimed_bytes` not yet counted.
    plan: RepositoryPlan,
    /// The manifests the plan keeps (all of them when it is refused here).
    kept: Vec<&'a ManifestRecord>,
    /// The manifests it deletes (none when it is refused here).
    deleted: Vec<&'a ManifestRecord>,
}

/// Reasons and lists of rule names, one copy of each in a repository's plan: most tags
/// share theirs.
#[derive(Default)]
struct Words {
    texts: HashSet<Arc<str>, foldhash::fast::RandomState>,
    lists: HashSet<Arc<[Arc<str>]>, foldhash::fast::RandomState>,
}

impl Words {
    fn text(&mut self, text: String) -> Arc<str> {
        if let Some(shared) = self.texts.get(text.as_str()) {
            return shared.clone();
        }
        let shared: Arc<str> = text.into();
        self.texts.insert(shared.clone());
        shared
    }

    fn list(&mut self, list: Vec<Arc<str>>) -> Arc<[Arc<str>]> {
        if let Some(shared) = self.lists.get(list.as_slice()) {
            return shared.clone();
        }
        let shared: Arc<[Arc<str>]> = list.into();
        self.lists.insert(shared.clone());
        shared
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

/// A repository's manifests and tags, one record each, in a total order, with what links
/// them: manifests by their place in `manifests`.
struct Graph<'a> {
    /// By digest.
    manifests: Vec<&'a ManifestRecord>,
    /// By name.
    tags: Vec<&'a TagRecord>,
    /// Each manifest's children that the repository has, in the index's order.
    children: Vec<Vec<usize>>,
    /// Each manifest's subject, when the repository has it.
    subject: Vec<Option<usize>>,
    /// The manifests whose subject each manifest is, by digest.
    referrers: Vec<Vec<usize>>,
    /// Whether an index lists the manifest.
    listed: Vec<bool>,
    /// Whether a tag names the manifest.
    tagged: Vec<bool>,
    /// Whether a signature refers to the manifest, by referrer or cosign `.sig` tag.
    signed: Vec<bool>,
    /// Digests not in the repository that a signature refers to.
    signed_elsewhere: BTreeSet<&'a Digest>,
    /// Attached tags (by their place in `tags`) and the subject each follows.
    attached: Vec<(usize, usize)>,
    /// Each manifest's place in `manifests`, by digest.
    places: DigestMap<'a, usize>,
}

impl<'a> Graph<'a> {
    fn new(parts: &[&'a RepositoryInventory]) -> Graph<'a> {
        // A record listed twice counts once: the greatest, so the choice does not depend on
        // the order.
        let mut manifests: Vec<&ManifestRecord> = parts.iter().flat_map(|p| &p.manifests).collect();
        manifests.sort_unstable_by(|a, b| order_key(&a.digest).cmp(&order_key(&b.digest)).then_with(|| a.cmp(b)));
        manifests.reverse();
        manifests.dedup_by(|later, greater| later.digest == greater.digest);
        manifests.reverse();
        let mut tags: Vec<&TagRecord> = parts.iter().flat_map(|p| &p.tags).collect();
        tags.sort_unstable();
        tags.reverse();
        tags.dedup_by(|later, greater| later.name == greater.name);
        tags.reverse();

        let places: DigestMap<'a, usize> =
            manifests.iter().enumerate().map(|(index, m)| (DigestKey(m.digest.as_str()), index)).collect();
        let find = |digest: &Digest| places.get(&DigestKey(digest.as_str())).copied();
        let count = manifests.len();
        let mut graph = Graph {
            children: vec![Vec::new(); count],
            subject: vec![None; count],
            referrers: vec![Vec::new(); count],
            listed: vec![false; count],
            tagged: vec![false; count],
            signed: vec![false; count],
            signed_elsewhere: BTreeSet::new(),
            attached: Vec::new(),
            manifests: Vec::new(),
            tags: Vec::new(),
            places: DigestMap::default(),
        };
        for (index, manifest) in manifests.iter().enumerate() {
            let signature = manifest.artifact_type.as_deref().is_some_and(|t| SIGNATURE_TYPES.contains(&t));
            for child in manifest.children.iter().filter_map(&find) {
                graph.children[index].push(child);
                graph.listed[child] = true;
            }
            if let Some(subject) = &manifest.subject {
                match find(subject) {
                    Some(subject) => {
                        graph.subject[index] = Some(subject);
                        graph.referrers[subject].push(index);
                        graph.signed[subject] |= signature;
                    }
                    None if signature => {
                        graph.signed_elsewhere.insert(subject);
                    }
                    None => {}
                }
            }
        }
        for (place, tag) in tags.iter().enumerate() {
            if let Some(index) = find(&tag.digest) {
                graph.tagged[index] = true;
            }
            if let Some(subject) = attached_subject(&tag.name).and_then(|s| find(&s)) {
                graph.attached.push((place, subject));
                if tag.name.ends_with(".sig") {
                    graph.signed[subject] = true;
                }
            }
        }
        graph.manifests = manifests;
        graph.tags = tags;
        graph.places = places;
        graph
    }

    fn find(&self, digest: &Digest) -> Option<usize> {
        self.places.get(&DigestKey(digest.as_str())).copied()
    }

    fn is_attached(&self, place: usize) -> bool {
        self.attached.binary_search_by_key(&place, |(tag, _)| *tag).is_ok()
    }
}

impl<'p> Planner<'p> {
    fn new(policy: &'p Policy, in_use: &'p InUse, now: Timestamp, explaining: bool) -> Planner<'p> {
        Planner {
            policy,
            in_use,
            now,
            explaining,
            in_use_rule: "in-use".into(),
            grace_rule: "grace".into(),
            untagged_rule: "untagged".into(),
        }
    }

    /// The repository's decisions, and each tag's rule verdicts when explaining.
    fn repository<'a>(
        &self,
        name: &'a str,
        parts: &[&'a RepositoryInventory],
    ) -> (Decided<'a>, BTreeMap<String, Vec<RuleVerdict>>) {
        let graph = Graph::new(parts);
        let manifests = &graph.manifests;

        let mut units: Vec<Unit<'a>> = Vec::with_capacity(graph.tags.len());
        for (place, tag) in graph.tags.iter().enumerate() {
            if graph.is_attached(place) {
                continue;
            }
            let index = graph.find(&tag.digest);
            let manifest = index.map(|i| manifests[i]);
            units.push(Unit {
                tag: Some(tag),
                digest: &tag.digest,
                index,
                manifest,
                pushed: manifest.map_or(tag.pushed, |m| m.pushed.max(tag.pushed)),
                pulled: tag.pulled.max(manifest.and_then(|m| m.pulled)),
                signed: index.map_or_else(|| graph.signed_elsewhere.contains(&tag.digest), |i| graph.signed[i]),
                matched: Vec::new(),
                verdicts: Vec::new(),
                keep: None,
                delete: None,
            });
        }
        for (index, manifest) in manifests.iter().enumerate() {
            if !(graph.tagged[index] || graph.listed[index] || graph.subject[index].is_some()) {
                units.push(Unit {
                    tag: None,
                    digest: &manifest.digest,
                    index: Some(index),
                    manifest: Some(manifest),
                    pushed: manifest.pushed,
                    pulled: manifest.pulled,
                    signed: graph.signed[index],
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
        let immutable: Vec<_> =
            self.policy.immutable.iter().filter(|scope| in_repositories(&scope.repositories, name)).collect();
        let grace_start = self.now.minus(self.policy.limits.grace);
        let mut tag_plans: Vec<TagPlan> = Vec::with_capacity(graph.tags.len());
        let mut kept: Vec<Option<String>> = vec![None; manifests.len()];
        let mut deleted: Vec<Option<String>> = vec![None; manifests.len()];
        let mut deleted_tags: Vec<Vec<&'a str>> = vec![Vec::new(); manifests.len()];
        let mut verdicts = BTreeMap::new();
        let mut words = Words::default();
        // The tags rules decide (attached tags follow their subject), and how many go.
        let (mut total, mut removed) = (0usize, 0usize);
        for mut unit in units {
            let candidate = unit.candidate();
            let scope = match unit.tag {
                Some(_) => immutable.iter().find(|scope| scope.tags.as_ref().is_none_or(|t| t.matches(&candidate))),
                None => None,
            };
            let protected = if let Some(scope) = scope {
                Some((scope.place.clone(), "an immutable tag".to_owned()))
            } else if self.in_use.protects(name, unit.tag.map(|t| t.name.as_str()), unit.digest) {
                Some((self.in_use_rule.clone(), "named in the in-use list".to_owned()))
            } else if unit.pushed > grace_start {
                Some((
                    self.grace_rule.clone(),
                    format!("pushed within the grace period ({})", format_duration(self.policy.limits.grace)),
                ))
            } else {
                None
            };
            let (decision, rule, reason) = if let Some((rule, reason)) = protected {
                (Decision::Keep, Some(rule), reason)
            } else if let Some((rule, reason)) = unit.keep.take() {
                (Decision::Keep, Some(rule), reason)
            } else if let Some((rule, reason)) = unit.delete.take() {
                (Decision::Delete, Some(rule), reason)
            } else if unit.tag.is_none() {
                match self.policy.untagged_older_than {
                    Some(age) if unit.pushed < self.now.minus(age) => (
                        Decision::Delete,
                        Some(self.untagged_rule.clone()),
                        format!("untagged, pushed more than {} ago", format_duration(age)),
                    ),
                    _ => (Decision::Keep, None, "untagged; no rule deletes it".to_owned()),
                }
            } else {
                (self.policy.default, None, "no rule decided; the default".to_owned())
            };
            match unit.tag {
                Some(tag) => {
                    total += 1;
                    removed += usize::from(decision == Decision::Delete);
                    if let Some(index) = unit.index {
                        if decision == Decision::Keep {
                            kept[index].get_or_insert_with(|| format!("tag {} is kept", tag.name));
                        } else {
                            deleted_tags[index].push(&tag.name);
                        }
                    }
                    if self.explaining {
                        verdicts.insert(tag.name.clone(), std::mem::take(&mut unit.verdicts));
                    }
                    tag_plans.push(TagPlan {
                        name: tag.name.clone(),
                        digest: tag.digest.clone(),
                        decision,
                        rule,
                        reason: words.text(reason),
                        matched: words.list(unit.matched),
                    });
                }
                None => {
                    let reason = match rule.as_deref() {
                        Some("untagged") | None => reason,
                        Some(rule) => format!("untagged; {reason} (rule {rule})"),
                    };
                    let index = unit.index.unwrap_or_default();
                    if decision == Decision::Keep {
                        kept[index] = Some(reason);
                    } else {
                        deleted[index] = Some(reason);
                    }
                }
            }
        }
        for (index, manifest) in manifests.iter().enumerate() {
            if self.in_use.protects_digest(name, &manifest.digest) {
                kept[index].get_or_insert_with(|| "named in the in-use list".to_owned());
            } else if manifest.pushed > grace_start {
                kept[index].get_or_insert_with(|| "pushed within the grace period".to_owned());
            }
        }

        // What kept manifests hold: an index its children, a referrer its subject, a
        // subject its referrers; attached tags follow their subject.
        let mut attached_kept = vec![false; graph.attached.len()];
        let mut work: Vec<usize> = (0..manifests.len()).filter(|&i| kept[i].is_some()).collect();
        loop {
            while let Some(holder) = work.pop() {
                let digest = &manifests[holder].digest;
                let mut hold = |held: usize, why: &dyn Fn() -> String| {
                    if kept[held].is_none() {
                        kept[held] = Some(why());
                        work.push(held);
                    }
                };
                for &child in &graph.children[holder] {
                    hold(child, &|| format!("listed by kept index {digest}"));
                }
                if let Some(subject) = graph.subject[holder] {
                    hold(subject, &|| format!("the subject of kept {digest}"));
                }
                for &referrer in &graph.referrers[holder] {
                    hold(referrer, &|| format!("refers to kept {digest}"));
                }
            }
            let newly: Vec<usize> = (0..graph.attached.len())
                .filter(|&a| !attached_kept[a] && kept[graph.attached[a].1].is_some())
                .collect();
            if newly.is_empty() {
                break;
            }
            for a in newly {
                attached_kept[a] = true;
                let tag = graph.tags[graph.attached[a].0];
                if let Some(index) = graph.find(&tag.digest).filter(|&i| kept[i].is_none()) {
                    kept[index] = Some(format!("tag {} follows its kept subject", tag.name));
                    work.push(index);
                }
            }
        }
        for (&(place, subject), &is_kept) in graph.attached.iter().zip(&attached_kept) {
            let tag = graph.tags[place];
            let subject = &manifests[subject].digest;
            let (decision, reason) = if is_kept {
                (Decision::Keep, format!("follows its subject {subject}, which is kept"))
            } else {
                if let Some(index) = graph.find(&tag.digest) {
                    deleted_tags[index].push(&tag.name);
                }
                (Decision::Delete, format!("follows its subject {subject}, which is deleted"))
            };
            tag_plans.push(TagPlan {
                name: tag.name.clone(),
                digest: tag.digest.clone(),
                decision,
                rule: None,
                reason: words.text(reason),
                matched: words.list(Vec::new()),
            });
        }
        tag_plans.sort_by(|a, b| a.name.cmp(&b.name));

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

        let mut manifest_plans = Vec::with_capacity(manifests.len());
        let (mut kept_records, mut deleted_records) = (Vec::new(), Vec::new());
        for (index, manifest) in manifests.iter().enumerate() {
            let (decision, reason) = if let Some(reason) = kept[index].take() {
                (Decision::Keep, reason)
            } else if let Some(reason) = deleted[index].take() {
                (Decision::Delete, reason)
            } else if !deleted_tags[index].is_empty() {
                let names = &mut deleted_tags[index];
                names.sort_unstable();
                (Decision::Delete, format!("its tags are deleted ({})", names.join(", ")))
            } else if graph.listed[index] {
                (Decision::Delete, "only deleted indexes list it".to_owned())
            } else if let Some(subject) = &manifest.subject {
                (Decision::Delete, format!("its subject {subject} is deleted"))
            } else {
                (Decision::Delete, "nothing keeps it".to_owned())
            };
            if decision == Decision::Keep || refused.is_some() {
                kept_records.push(*manifest);
            } else {
                deleted_records.push(*manifest);
            }
            manifest_plans.push(ManifestPlan { digest: manifest.digest.clone(), decision, reason: words.text(reason) });
        }
        let plan = RepositoryPlan {
            name: name.to_owned(),
            tags: tag_plans,
            manifests: manifest_plans,
            refused,
            reclaimed_bytes: 0,
        };
        (Decided { plan, kept: kept_records, deleted: deleted_records }, verdicts)
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
        let default = VersionPattern::Default;
        let pattern = rule.selector.as_ref().and_then(|s| s.version_pattern()).unwrap_or(&default);
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
fn rank(units: &[Unit<'_>], selected: &[usize], pattern: &VersionPattern, count: usize, per: Per, by: By) -> Vec<Rank> {
    let versions: Vec<Option<Version>> =
        selected.iter().map(|&i| units[i].tag.and_then(|t| pattern.version_in(&t.name))).collect();
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
