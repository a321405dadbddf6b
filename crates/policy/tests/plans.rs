//! Plans for small inventories, one behaviour each, and the properties every plan keeps:
//! nothing protected or kept is deleted, a kept index keeps its children, a plan carried
//! out and planned again deletes nothing more, and the inventory's order does not matter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use wharf_oci::Digest;
use wharf_policy::{
    BlobRecord, Decision, InUse, Inventory, ManifestRecord, Plan, Policy, RepositoryInventory, TagRecord, Timestamp,
    plan,
};

const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const COSIGN: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

fn now() -> Timestamp {
    "2026-12-07T00:00:00Z".parse().unwrap()
}

/// `days` days before [`now`].
fn ago(days: u64) -> Timestamp {
    now().minus(std::time::Duration::from_secs(days * 86_400))
}

fn digest(name: &str) -> Digest {
    Digest::sha256(name.as_bytes())
}

/// A repository built a manifest and a tag at a time.
struct Repo(RepositoryInventory);

impl Repo {
    fn new(name: &str) -> Repo {
        Repo(RepositoryInventory { name: name.into(), ..Default::default() })
    }

    /// An image manifest `name` with one layer of its own and a shared base layer.
    fn image(mut self, name: &str, pushed_days_ago: u64) -> Repo {
        self.0.manifests.push(ManifestRecord {
            digest: digest(name),
            media_type: IMAGE.into(),
            artifact_type: None,
            size: 1000,
            blobs: vec![
                BlobRecord { digest: digest("base-layer"), size: 1_000_000 },
                BlobRecord { digest: digest(&format!("{name}-layer")), size: 10_000 },
            ],
            pushed: ago(pushed_days_ago),
            pulled: None,
            subject: None,
            children: Vec::new(),
            annotations: BTreeMap::new(),
        });
        self
    }

    fn index(mut self, name: &str, children: &[&str], pushed_days_ago: u64) -> Repo {
        self.0.manifests.push(ManifestRecord {
            digest: digest(name),
            media_type: INDEX.into(),
            artifact_type: None,
            size: 500,
            blobs: Vec::new(),
            pushed: ago(pushed_days_ago),
            pulled: None,
            subject: None,
            children: children.iter().map(|c| digest(c)).collect(),
            annotations: BTreeMap::new(),
        });
        self
    }

    /// An artifact `name` of `artifact_type` whose subject is `subject`.
    fn referrer(mut self, name: &str, artifact_type: &str, subject: &str, pushed_days_ago: u64) -> Repo {
        self.0.manifests.push(ManifestRecord {
            digest: digest(name),
            media_type: IMAGE.into(),
            artifact_type: Some(artifact_type.into()),
            size: 300,
            blobs: vec![BlobRecord { digest: digest(&format!("{name}-payload")), size: 700 }],
            pushed: ago(pushed_days_ago),
            pulled: None,
            subject: Some(digest(subject)),
            children: Vec::new(),
            annotations: BTreeMap::new(),
        });
        self
    }

    fn tag(mut self, tag: &str, manifest: &str, pushed_days_ago: u64, pulled_days_ago: Option<u64>) -> Repo {
        self.0.tags.push(TagRecord {
            name: tag.into(),
            digest: digest(manifest),
            pushed: ago(pushed_days_ago),
            pulled: pulled_days_ago.map(ago),
        });
        self
    }

    /// An image and a tag on it, pushed together.
    fn tagged(self, tag: &str, days: u64) -> Repo {
        self.image(tag, days).tag(tag, tag, days, None)
    }
}

fn inventory(repositories: Vec<Repo>) -> Inventory {
    Inventory { repositories: repositories.into_iter().map(|r| r.0).collect() }
}

fn run(policy: &str, inventory: &Inventory) -> Plan {
    plan(inventory, &Policy::from_yaml(policy).unwrap(), &InUse::default(), now())
}

/// Each tag's decision, by name.
fn tags(plan: &Plan, repository: &str) -> BTreeMap<String, Decision> {
    let repository = plan.repositories.iter().find(|r| r.name == repository).unwrap();
    repository.tags.iter().map(|t| (t.name.clone(), t.decision)).collect()
}

fn deleted_tags(plan: &Plan, repository: &str) -> Vec<String> {
    tags(plan, repository).into_iter().filter(|(_, d)| *d == Decision::Delete).map(|(n, _)| n).collect()
}

fn manifest_decision(plan: &Plan, repository: &str, name: &str) -> (Decision, String) {
    let repository = plan.repositories.iter().find(|r| r.name == repository).unwrap();
    let manifest = repository.manifests.iter().find(|m| m.digest == digest(name)).unwrap();
    (manifest.decision, manifest.reason.to_string())
}

#[test]
fn newest_per_major_by_version() {
    let mut repo = Repo::new("team/app");
    for (tag, days) in [("v1.0.0", 90), ("v1.1.0", 80), ("v1.2.0", 70), ("v1.3.0", 95), ("v2.0.0", 60), ("v2.1.0", 50)]
    {
        repo = repo.tagged(tag, days);
    }
    let plan = run(
        "version: 1\ndefault: delete\nrules:\n  - name: releases\n    tags: {semver: '>=1.0.0'}\n    keep: {newest: 2, per: major, by: version}\n",
        &inventory(vec![repo]),
    );
    assert_eq!(deleted_tags(&plan, "team/app"), ["v1.0.0", "v1.1.0"]);
    let kept = &plan.repositories[0].tags.iter().find(|t| t.name == "v1.3.0").unwrap();
    assert_eq!(&*kept.reason, "among the newest 2 of major 1 by version");
    assert_eq!(kept.rule.as_deref(), Some("releases"));
    let deleted = &plan.repositories[0].tags[0];
    assert_eq!((deleted.rule.as_deref(), &*deleted.reason), (None, "no rule decided; the default"));
    assert_eq!(*deleted.matched, [Arc::from("releases")], "a rule that matched but did not decide is recorded");
}

#[test]
fn newest_by_push_and_by_pull() {
    let repo = Repo::new("a")
        .tagged("old", 50)
        .tagged("mid", 40)
        .tagged("new", 30)
        .tag("retagged", "old", 1, None)
        .tag("pulled", "mid", 45, Some(1));
    let by_push = run(
        "version: 1\ndefault: delete\nrules:\n  - {name: recent, keep: {newest: 2}}\n",
        &inventory(vec![Repo(repo.0.clone())]),
    );
    // A tag's push time is the later of its own and its manifest's: re-tagging is activity.
    assert_eq!(deleted_tags(&by_push, "a"), ["mid", "old", "pulled"]);
    let by_pull = run(
        "version: 1\ndefault: delete\nrules:\n  - {name: used, keep: {newest: 1, by: pulled}}\n",
        &inventory(vec![Repo(repo.0)]),
    );
    assert_eq!(deleted_tags(&by_pull, "a"), ["mid", "new", "old", "retagged"]);
}

#[test]
fn keep_wins_over_delete_whatever_the_order() {
    let repo =
        Repo::new("a").tagged("1.0.0-dev", 60).tagged("2.0.0-dev", 60).tag("2.0.0-dev", "2.0.0-dev", 60, Some(2));
    for policy in [
        "version: 1\nrules:\n  - {name: dev, tags: {glob: '*-dev'}, delete: {pushed_older_than: 30d}}\n  - {name: used, keep: {pulled_within: 14d}}\n",
        "version: 1\nrules:\n  - {name: used, keep: {pulled_within: 14d}}\n  - {name: dev, tags: {glob: '*-dev'}, delete: {pushed_older_than: 30d}}\n",
    ] {
        let plan = run(policy, &inventory(vec![Repo(repo.0.clone())]));
        assert_eq!(deleted_tags(&plan, "a"), ["1.0.0-dev"], "{policy}");
        let kept = plan.repositories[0].tags.iter().find(|t| t.name == "2.0.0-dev").unwrap();
        assert_eq!(kept.rule.as_deref(), Some("used"));
        assert_eq!(kept.matched.len(), 2);
    }
}

#[test]
fn conditions_are_anded_and_never_pulled_is_old() {
    let repo = Repo::new("a").tagged("never", 40).tag("recent", "never", 40, Some(3)).tagged("young", 5);
    let plan = run(
        "version: 1\nrules:\n  - {name: stale, delete: {pushed_older_than: 30d, pulled_older_than: 7d}}\n",
        &inventory(vec![repo]),
    );
    assert_eq!(deleted_tags(&plan, "a"), ["never"]);
    let never = &plan.repositories[0].tags.iter().find(|t| t.name == "never").unwrap();
    assert_eq!(&*never.reason, "pushed more than 30d ago, never pulled");
}

#[test]
fn repositories_are_globs() {
    let plan = run(
        "version: 1\nrules:\n  - {name: team, repositories: ['team/*'], tags: {glob: '*'}, delete: {}}\n",
        &inventory(vec![
            Repo::new("team/app").tagged("x", 40),
            Repo::new("team/app/sub").tagged("x", 40),
            Repo::new("other").tagged("x", 40),
        ]),
    );
    assert_eq!(deleted_tags(&plan, "team/app"), ["x"]);
    assert!(deleted_tags(&plan, "team/app/sub").is_empty(), "* stays within a path component");
    assert!(deleted_tags(&plan, "other").is_empty());
}

#[test]
fn protected_tags_immutable_in_use_and_grace() {
    let repo =
        Repo::new("prod/api").tagged("v1.0.0", 90).tagged("v1.0.1-hotfix", 90).tagged("latest", 90).tagged("fresh", 0);
    let policy = Policy::from_yaml(
        "version: 1\ndefault: delete\nimmutable:\n  - repositories: ['prod/**']\n    tags: {semver: '*'}\nlimits: {grace: 1h}\n",
    )
    .unwrap();
    let in_use = InUse::parse("registry.example.com/prod/api:latest\n").unwrap();
    let plan = plan(&inventory(vec![repo]), &policy, &in_use, now());
    let decided: BTreeMap<&str, (Decision, Option<&str>)> =
        plan.repositories[0].tags.iter().map(|t| (t.name.as_str(), (t.decision, t.rule.as_deref()))).collect();
    assert_eq!(decided["v1.0.0"], (Decision::Keep, Some("immutable[0]")));
    assert_eq!(decided["latest"], (Decision::Keep, Some("in-use")));
    assert_eq!(decided["fresh"], (Decision::Keep, Some("grace")));
    assert_eq!(decided["v1.0.1-hotfix"], (Decision::Delete, None), "a prerelease is outside semver '*'");
}

#[test]
fn an_index_keeps_its_children_and_goes_with_them() {
    let repo = Repo::new("a")
        .image("amd64", 60)
        .image("arm64", 60)
        .index("multi", &["amd64", "arm64"], 60)
        .tag("v1", "multi", 60, None)
        .image("old-amd64", 90)
        .index("old-multi", &["old-amd64"], 90)
        .tag("v0", "old-multi", 90, None);
    let plan = run("version: 1\nrules:\n  - {name: old, tags: {glob: v0}, delete: {}}\n", &inventory(vec![repo]));
    assert_eq!(manifest_decision(&plan, "a", "amd64").0, Decision::Keep);
    assert!(manifest_decision(&plan, "a", "amd64").1.starts_with("listed by kept index"));
    assert_eq!(manifest_decision(&plan, "a", "old-multi"), (Decision::Delete, "its tags are deleted (v0)".into()));
    assert_eq!(manifest_decision(&plan, "a", "old-amd64"), (Decision::Delete, "only deleted indexes list it".into()));
}

#[test]
fn referrers_and_attached_tags_follow_their_subject() {
    let repo = Repo::new("a")
        .tagged("keep-me", 60)
        .referrer("keep-sig", COSIGN, "keep-me", 60)
        .tagged("drop-me", 60)
        .referrer("drop-sbom", "application/spdx+json", "drop-me", 60)
        .image("drop-me-sig-legacy", 60)
        .tag(&format!("sha256-{}.sig", digest("drop-me").hex()), "drop-me-sig-legacy", 60, None)
        .image("keep-me-sig-legacy", 60)
        .tag(&format!("sha256-{}.sig", digest("keep-me").hex()), "keep-me-sig-legacy", 60, None);
    let plan = run(
        "version: 1\nrules:\n  - {name: kept, tags: {glob: keep-me}, keep: {}}\n  - {name: rest, tags: {glob: '*-me'}, delete: {}}\n",
        &inventory(vec![repo]),
    );
    assert_eq!(manifest_decision(&plan, "a", "keep-sig").0, Decision::Keep);
    let (decision, reason) = manifest_decision(&plan, "a", "drop-sbom");
    assert_eq!((decision, reason.starts_with("its subject")), (Decision::Delete, true), "{reason}");
    let decided = tags(&plan, "a");
    assert_eq!(decided["keep-me"], Decision::Keep);
    assert_eq!(decided["drop-me"], Decision::Delete);
    assert_eq!(decided[&format!("sha256-{}.sig", digest("keep-me").hex())], Decision::Keep);
    assert_eq!(decided[&format!("sha256-{}.sig", digest("drop-me").hex())], Decision::Delete);
    assert_eq!(manifest_decision(&plan, "a", "drop-me-sig-legacy").0, Decision::Delete);
    assert_eq!(manifest_decision(&plan, "a", "keep-me-sig-legacy").0, Decision::Keep);

    // signed: true takes an image a signature refers to, or one with a cosign .sig tag.
    let repo = Repo::new("b")
        .tagged("by-referrer", 60)
        .referrer("sig", COSIGN, "by-referrer", 60)
        .tagged("by-tag", 60)
        .image("legacy", 60)
        .tag(&format!("sha256-{}.sig", digest("by-tag").hex()), "legacy", 60, None)
        .tagged("plain", 60)
        .referrer("sbom", "application/spdx+json", "plain", 60);
    let plan = run(
        "version: 1\ndefault: delete\nrules:\n  - {name: signed, tags: {signed: true}, keep: {}}\n",
        &inventory(vec![repo]),
    );
    assert_eq!(deleted_tags(&plan, "b"), ["plain"]);
}

#[test]
fn untagged_manifests_and_the_rules_that_ask_for_them() {
    let repo = Repo::new("a").image("old-orphan", 10).image("new-orphan", 0).tagged("tagged", 10).referrer(
        "dangling",
        "application/spdx+json",
        "not-here",
        10,
    );
    let plan = run("version: 1\nuntagged: {delete_older_than: 1d}\n", &inventory(vec![Repo(repo.0.clone())]));
    assert_eq!(manifest_decision(&plan, "a", "old-orphan").0, Decision::Delete);
    assert_eq!(manifest_decision(&plan, "a", "dangling").0, Decision::Delete, "its subject is not in the repository");
    assert_eq!(manifest_decision(&plan, "a", "new-orphan").0, Decision::Keep);
    assert_eq!(manifest_decision(&plan, "a", "tagged").0, Decision::Keep);
    // Without the key they stay; a rule that asks for untagged manifests decides them too.
    let plan = run(
        "version: 1\nrules:\n  - {name: all, tags: {glob: '*'}, delete: {}}\n",
        &inventory(vec![Repo(repo.0.clone())]),
    );
    assert_eq!(manifest_decision(&plan, "a", "old-orphan").0, Decision::Keep);
    let plan = run(
        "version: 1\nrules:\n  - {name: orphans, tags: {untagged: true}, delete: {pushed_older_than: 5d}}\n",
        &inventory(vec![repo]),
    );
    assert_eq!(manifest_decision(&plan, "a", "old-orphan").0, Decision::Delete);
    assert_eq!(manifest_decision(&plan, "a", "new-orphan").0, Decision::Keep);
    assert_eq!(tags(&plan, "a")["tagged"], Decision::Keep, "untagged: true takes no tag");
}

#[test]
fn limits_refuse_a_repository() {
    let many = (0..10).fold(Repo::new("many"), |repo, i| repo.tagged(&format!("t{i}"), 60));
    let few = Repo::new("few").tagged("only", 60);
    let plan = run(
        "version: 1\nrules:\n  - {name: old, delete: {pushed_older_than: 30d}}\n  - {name: some, tags: {glob: 't[0-3]'}, keep: {}}\nlimits: {max_delete_fraction: 0.5, min_tags: 1}\n",
        &inventory(vec![many, few]),
    );
    let many = plan.repositories.iter().find(|r| r.name == "many").unwrap();
    let refused = many.refused.as_deref().unwrap();
    assert!(refused.contains("deletes 6 of 10 tags, more than limits.max_delete_fraction"), "{refused}");
    assert_eq!(many.reclaimed_bytes, 0);
    let few = plan.repositories.iter().find(|r| r.name == "few").unwrap();
    assert!(few.refused.as_deref().unwrap().contains("deletes 1 of 1 tags"));
    assert_eq!(plan.summary.tags_deleted, 0);
    assert_eq!(plan.summary.reclaimed_bytes, 0);

    let four = (0..4).fold(Repo::new("four"), |repo, i| repo.tagged(&format!("t{i}"), 60));
    let plan = run(
        "version: 1\nrules:\n  - {name: two, tags: {glob: 't[01]'}, delete: {}}\nlimits: {max_delete_fraction: 0.5, min_tags: 3}\n",
        &inventory(vec![four]),
    );
    let refused = plan.repositories[0].refused.as_deref().unwrap();
    assert!(refused.contains("leaves 2 of 4 tags, fewer than limits.min_tags (3)"), "{refused}");
    assert_eq!(deleted_tags(&plan, "four"), ["t0", "t1"], "the decisions are shown, none carried out");
}

#[test]
fn reclaimed_bytes_count_a_blob_once_and_only_when_nothing_kept_holds_it() {
    let a = Repo::new("a").tagged("x", 60).tagged("y", 60);
    let b = Repo::new("b").tagged("z", 60);
    let plan = run("version: 1\nrules:\n  - {name: x, tags: {glob: '[xz]'}, delete: {}}\n", &inventory(vec![a, b]));
    // x's manifest and its own layer go; the base layer stays for y.
    assert_eq!(plan.repositories[0].reclaimed_bytes, 1000 + 10_000);
    assert_eq!(plan.repositories[1].reclaimed_bytes, 1000 + 10_000);
    assert_eq!(plan.summary.reclaimed_bytes, 2 * 11_000);
    let plan = run("version: 1\ndefault: delete\n", &inventory(vec![Repo::new("a").tagged("x", 60).tagged("y", 60)]));
    assert_eq!(plan.summary.reclaimed_bytes, 2 * 11_000 + 1_000_000, "the shared layer counted once");
}

// Properties, over generated inventories and a set of policies.

const POLICIES: [&str; 4] = [
    include_str!("fixtures/example-policy.yaml"),
    "version: 1\ndefault: delete\nrules:\n  - {name: newest, keep: {newest: 2}}\nuntagged: {delete_older_than: 1d}\n",
    "version: 1\nrules:\n  - {name: releases, tags: {semver: '*'}, keep: {newest: 1, per: minor, by: version}}\n  - {name: others, tags: {not: {semver: '*'}}, delete: {pushed_older_than: 10d}}\n  - {name: signed, tags: {signed: true}, keep: {}}\n",
    "version: 1\ndefault: delete\nrules:\n  - {name: used, keep: {pulled_within: 14d}}\nlimits: {grace: 2d}\n",
];

/// A repository of images, indexes and signatures, some tagged, drawn from small numbers.
fn arb_repository(name: String) -> impl Strategy<Value = RepositoryInventory> {
    let tags = prop::collection::vec(
        ("v[0-2]\\.[0-2]\\.[0-2]|[a-c]-dev|latest|git-[0-9a-f]{7}", 0usize..12, 0u64..60, prop::option::of(0u64..60)),
        0..10,
    );
    let images = prop::collection::vec(0u64..60, 1..12);
    let indexes = prop::collection::vec((prop::collection::vec(0usize..12, 1..3), 0u64..60), 0..3);
    let signatures = prop::collection::vec((0usize..12, 0u64..60), 0..3);
    (tags, images, indexes, signatures).prop_map(move |(tags, images, indexes, signatures)| {
        let mut repo = Repo::new(&name);
        let count = images.len();
        for (i, days) in images.iter().enumerate() {
            repo = repo.image(&format!("{name}-image{i}"), *days);
        }
        for (i, (children, days)) in indexes.iter().enumerate() {
            let children: Vec<String> = children.iter().map(|c| format!("{name}-image{}", c % count)).collect();
            let children: Vec<&str> = children.iter().map(String::as_str).collect();
            repo = repo.index(&format!("{name}-index{i}"), &children, *days);
        }
        for (i, (subject, days)) in signatures.iter().enumerate() {
            repo = repo.referrer(&format!("{name}-sig{i}"), COSIGN, &format!("{name}-image{}", subject % count), *days);
        }
        let targets = count + indexes.len();
        for (tag, target, days, pulled) in tags {
            let target = target % targets;
            let manifest = if target < count {
                format!("{name}-image{target}")
            } else {
                format!("{name}-index{}", target - count)
            };
            repo = repo.tag(&tag, &manifest, days, pulled);
        }
        repo.0
    })
}

fn arb_inventory() -> impl Strategy<Value = Inventory> {
    prop::collection::vec(prop::sample::select(vec!["team/app", "team/api", "prod/api", "tools"]), 1..4)
        .prop_flat_map(|names| {
            let names: BTreeSet<&str> = names.into_iter().collect();
            names.into_iter().map(|n| arb_repository(n.to_owned())).collect::<Vec<_>>()
        })
        .prop_map(|repositories| Inventory { repositories })
}

/// The inventory after `plan` is carried out: deleted tags and manifests gone.
fn carried_out(inventory: &Inventory, plan: &Plan) -> Inventory {
    let mut after = inventory.clone();
    for repository in &mut after.repositories {
        let Some(decided) = plan.repositories.iter().find(|r| r.name == repository.name) else { continue };
        if decided.refused.is_some() {
            continue;
        }
        let gone_tags: BTreeSet<&str> =
            decided.tags.iter().filter(|t| t.decision == Decision::Delete).map(|t| t.name.as_str()).collect();
        let gone: BTreeSet<&Digest> =
            decided.manifests.iter().filter(|m| m.decision == Decision::Delete).map(|m| &m.digest).collect();
        repository.tags.retain(|t| !gone_tags.contains(t.name.as_str()));
        repository.manifests.retain(|m| !gone.contains(&m.digest));
    }
    after
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn plans_keep_their_promises(inventory in arb_inventory(), which in 0..POLICIES.len(), seed in any::<u64>()) {
        let policy = Policy::from_yaml(POLICIES[which]).unwrap();
        let plan = plan(&inventory, &policy, &InUse::default(), now());
        for (repository, decided) in inventory.repositories.iter().zip(&plan.repositories) {
            prop_assert_eq!(&repository.name, &decided.name);
            let kept: BTreeSet<&Digest> =
                decided.manifests.iter().filter(|m| m.decision == Decision::Keep).map(|m| &m.digest).collect();
            // A kept tag's manifest is kept; so is every child of a kept index and the
            // subject of a kept referrer; protection always keeps.
            for tag in &decided.tags {
                if tag.decision == Decision::Keep {
                    prop_assert!(kept.contains(&tag.digest), "tag {} kept, its manifest not", tag.name);
                }
                if matches!(tag.rule.as_deref(), Some("grace" | "in-use")) || tag.rule.as_deref().is_some_and(|r| r.starts_with("immutable")) {
                    prop_assert_eq!(tag.decision, Decision::Keep);
                }
            }
            for manifest in &repository.manifests {
                if kept.contains(&manifest.digest) {
                    for child in &manifest.children {
                        prop_assert!(kept.contains(child), "kept index {} lost child {}", manifest.digest, child);
                    }
                    if let Some(subject) = manifest.subject.as_ref().filter(|s| repository.manifests.iter().any(|m| &m.digest == *s)) {
                        prop_assert!(kept.contains(subject));
                    }
                }
            }
        }
        // Carried out and planned again: nothing more to delete.
        let again = wharf_policy::plan(&carried_out(&inventory, &plan), &policy, &InUse::default(), now());
        prop_assert_eq!(again.summary.tags_deleted, 0, "{}", again.to_json());
        prop_assert_eq!(again.summary.manifests_deleted, 0, "{}", again.to_json());
        // The same plan whatever the order of the inventory.
        let mut shuffled = inventory;
        let mut rng = seed;
        let mut next = move |n: usize| { rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (rng >> 33) as usize % n.max(1) };
        shuffled.repositories.reverse();
        for repository in &mut shuffled.repositories {
            for i in (1..repository.manifests.len()).rev() { let j = next(i + 1); repository.manifests.swap(i, j); }
            for i in (1..repository.tags.len()).rev() { let j = next(i + 1); repository.tags.swap(i, j); }
        }
        let reordered = wharf_policy::plan(&shuffled, &policy, &InUse::default(), now());
        prop_assert_eq!(reordered.to_json(), plan.to_json());
    }
}

#[test]
fn explain_gives_every_rules_verdict() {
    let repo =
        Repo::new("team/a").tagged("1.0.0-dev", 60).tag("used-dev", "1.0.0-dev", 60, Some(2)).tagged("young-dev", 3);
    let policy = Policy::from_yaml(
        "version: 1\nrules:\n  - {name: elsewhere, repositories: ['prod/**'], keep: {}}\n  - {name: dev, tags: {glob: '*-dev'}, delete: {pushed_older_than: 30d}}\n  - {name: used, keep: {pulled_within: 14d}}\n  - {name: releases, tags: {semver: '*'}, keep: {}}\n",
    )
    .unwrap();
    let inventory = inventory(vec![repo]);
    let explained = wharf_policy::explain(&inventory, &policy, &InUse::default(), now(), "team/a", "used-dev").unwrap();
    assert_eq!((explained.tag.decision, explained.tag.rule.as_deref()), (Decision::Keep, Some("used")));
    let verdicts: Vec<(&str, &str)> =
        explained.verdicts.iter().map(|v| (v.rule.as_str(), v.verdict.as_str())).collect();
    assert_eq!(
        verdicts,
        [
            ("elsewhere", "not for this repository"),
            ("dev", "selects it, and holds: pushed more than 30d ago"),
            ("used", "selects it, and holds: pulled within 14d"),
            ("releases", "does not select it"),
        ]
    );
    let young = wharf_policy::explain(&inventory, &policy, &InUse::default(), now(), "team/a", "young-dev").unwrap();
    assert_eq!(young.verdicts[1].verdict, "selects it, but does not hold: pushed less than 30d ago");
    assert_eq!(young.verdicts[2].verdict, "selects it, but does not hold: never pulled");
    // The explanation's entry is the plan's.
    let planned = run_with(&policy, &inventory);
    assert_eq!(planned.repositories[0].tags.iter().find(|t| t.name == "young-dev"), Some(&young.tag));
    assert!(wharf_policy::explain(&inventory, &policy, &InUse::default(), now(), "team/a", "nope").is_none());
    assert!(wharf_policy::explain(&inventory, &policy, &InUse::default(), now(), "team/b", "young-dev").is_none());
}

fn run_with(policy: &Policy, inventory: &Inventory) -> Plan {
    plan(inventory, policy, &InUse::default(), now())
}
