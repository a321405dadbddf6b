//! The policy file: rules that keep or delete tags, what happens to untagged manifests,
//! immutable tags, naming rules and the rails a plan must stay within; read, checked and
//! compiled once, so a mistake is named at load rather than found when it deletes.

use std::collections::BTreeSet;
use std::time::Duration;

use globset::GlobMatcher;
use serde::{Deserialize, Serialize};
use wharf_oci::Digest;

use crate::error::{Error, Result};
use crate::selector::{Candidate, Selector, SelectorFile, policy_error, repository_glob};
use crate::time::parse_duration;

/// What becomes of a tag (or a manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// It stays.
    Keep,
    /// It goes.
    Delete,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    #[serde(default = "keep")]
    default: Decision,
    #[serde(default)]
    rules: Vec<RuleFile>,
    #[serde(default)]
    untagged: Option<UntaggedFile>,
    #[serde(default)]
    immutable: Vec<ScopeFile>,
    #[serde(default)]
    naming: Vec<NamingFile>,
    #[serde(default)]
    limits: LimitsFile,
}

fn keep() -> Decision {
    Decision::Keep
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    repositories: Option<Vec<String>>,
    tags: Option<SelectorFile>,
    keep: Option<ConditionsFile>,
    delete: Option<ConditionsFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionsFile {
    newest: Option<usize>,
    per: Option<Per>,
    by: Option<By>,
    pushed_within: Option<String>,
    pushed_older_than: Option<String>,
    pulled_within: Option<String>,
    pulled_older_than: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UntaggedFile {
    delete_older_than: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeFile {
    repositories: Option<Vec<String>>,
    tags: Option<SelectorFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamingFile {
    repositories: Option<Vec<String>>,
    tags: SelectorFile,
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_delete_fraction: Option<f64>,
    min_tags: Option<usize>,
    grace: Option<String>,
}

/// How the tags a `newest` condition ranks are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// All of the repository's tags the rule selects, together.
    #[default]
    Repository,
    /// One group per major version.
    Major,
    /// One group per major and minor version.
    Minor,
}

/// What a `newest` condition ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// The latest push (of the tag or of its manifest).
    #[default]
    Pushed,
    /// The latest pull; never pulled ranks last.
    Pulled,
    /// The semantic version in the tag; tags without one rank last.
    Version,
}

/// A compiled policy. Read one with [`Policy::from_yaml`].
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) default: Decision,
    pub(crate) rules: Vec<Rule>,
    pub(crate) untagged_older_than: Option<Duration>,
    pub(crate) immutable: Vec<Scope>,
    pub(crate) naming: Vec<Naming>,
    pub(crate) limits: Limits,
}

/// A rule: which tags, and when they are kept or deleted.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) repositories: Option<Vec<GlobMatcher>>,
    pub(crate) selector: Option<Selector>,
    pub(crate) decision: Decision,
    pub(crate) conditions: Conditions,
}

/// The conditions of a rule, all of which must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    pub(crate) newest: Option<(usize, Per, By)>,
    pub(crate) pushed_within: Option<Duration>,
    pub(crate) pushed_older_than: Option<Duration>,
    pub(crate) pulled_within: Option<Duration>,
    pub(crate) pulled_older_than: Option<Duration>,
}

/// Repositories and tags: an immutability scope.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) place: std::sync::Arc<str>,
    pub(crate) repositories: Option<Vec<GlobMatcher>>,
    pub(crate) tags: Option<Selector>,
}

/// A naming rule: in its repositories, pushed tags must be selected by `tags`.
#[derive(Debug, Clone)]
pub(crate) struct Naming {
    pub(crate) place: String,
    pub(crate) repositories: Option<Vec<GlobMatcher>>,
    pub(crate) tags: Selector,
    pub(crate) message: Option<String>,
}

/// The rails a plan must stay within, per repository.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    pub(crate) max_delete_fraction: f64,
    pub(crate) min_tags: usize,
    pub(crate) grace: Duration,
}

/// Why a push or a tag deletion is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that refuses it (`naming[0]`, `immutable[1]`).
    pub rule: String,
    /// What to tell the client.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.rule)
    }
}

/// Whether `repository` is among `globs` (`None`: every repository).
pub(crate) fn in_repositories(globs: &Option<Vec<GlobMatcher>>, repository: &str) -> bool {
    globs.as_ref().is_none_or(|globs| globs.iter().any(|g| g.is_match(repository)))
}

fn repositories(place: &str, globs: &Option<Vec<String>>) -> Result<Option<Vec<GlobMatcher>>> {
    let Some(globs) = globs else { return Ok(None) };
    if globs.is_empty() {
        return Err(policy_error(&format!("{place}.repositories"), "an empty list can never match"));
    }
    globs
        .iter()
        .enumerate()
        .map(|(i, g)| repository_glob(&format!("{place}.repositories[{i}]"), g))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn duration(place: &str, text: &Option<String>) -> Result<Option<Duration>> {
    text.as_deref().map(|t| parse_duration(t).map_err(|reason| policy_error(place, reason))).transpose()
}

impl ConditionsFile {
    fn compile(&self, place: &str, decision: Decision) -> Result<Conditions> {
        let at = |key: &str| format!("{place}.{key}");
        let newest = match (self.newest, self.per, self.by) {
            (Some(0), ..) => return Err(policy_error(&at("newest"), "newest: 0 can never keep a tag")),
            (Some(_), ..) if decision == Decision::Delete => {
                return Err(policy_error(
                    &at("newest"),
                    "goes in keep rules (a delete rule would delete the newest); keep the newest with a keep rule \
                     and delete the rest with a delete rule",
                ));
            }
            (Some(n), per, by) => Some((n, per.unwrap_or_default(), by.unwrap_or_default())),
            (None, Some(_), _) => return Err(policy_error(&at("per"), "goes with newest")),
            (None, _, Some(_)) => return Err(policy_error(&at("by"), "goes with newest")),
            (None, None, None) => None,
        };
        let conditions = Conditions {
            newest,
            pushed_within: duration(&at("pushed_within"), &self.pushed_within)?,
            pushed_older_than: duration(&at("pushed_older_than"), &self.pushed_older_than)?,
            pulled_within: duration(&at("pulled_within"), &self.pulled_within)?,
            pulled_older_than: duration(&at("pulled_older_than"), &self.pulled_older_than)?,
        };
        for (within, older, what) in [
            (conditions.pushed_within, conditions.pushed_older_than, "pushed"),
            (conditions.pulled_within, conditions.pulled_older_than, "pulled"),
        ] {
            if let (Some(within), Some(older)) = (within, older)
                && older >= within
            {
                return Err(policy_error(
                    place,
                    format!("can never hold: {what}_within is no longer than {what}_older_than"),
                ));
            }
        }
        Ok(conditions)
    }
}

impl Policy {
    /// Reads a policy from its YAML (or JSON) text, checking every key, glob, regex, version
    /// range and duration, and that every rule can match something.
    ///
    /// # Errors
    /// [`Error::Policy`] naming the place in the file and what is wrong there.
    pub fn from_yaml(text: &str) -> Result<Policy> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let file: PolicyFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let place = e.path().to_string();
            let inner = e.into_inner();
            let place = match inner.location() {
                Some(at) => format!("{place} (line {}, column {})", at.line(), at.column()),
                None => place,
            };
            Error::Policy { place, reason: inner.to_string() }
        })?;
        Policy::compile(file)
    }

    fn compile(file: PolicyFile) -> Result<Policy> {
        if file.version != 1 {
            return Err(policy_error("version", format!("{} is not a version this engine reads (1)", file.version)));
        }
        let mut names = BTreeSet::new();
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, rule) in file.rules.iter().enumerate() {
            let place = format!("rules[{i}] ({})", rule.name);
            if rule.name.trim().is_empty() {
                return Err(policy_error(&format!("rules[{i}].name"), "a rule needs a name"));
            }
            if !names.insert(rule.name.clone()) {
                return Err(policy_error(&format!("{place}.name"), "another rule has this name"));
            }
            let (decision, conditions) = match (&rule.keep, &rule.delete) {
                (Some(keep), None) => (Decision::Keep, keep.compile(&format!("{place}.keep"), Decision::Keep)?),
                (None, Some(delete)) => {
                    (Decision::Delete, delete.compile(&format!("{place}.delete"), Decision::Delete)?)
                }
                _ => return Err(policy_error(&place, "a rule has exactly one of keep and delete")),
            };
            rules.push(Rule {
                name: rule.name.as_str().into(),
                repositories: repositories(&place, &rule.repositories)?,
                selector: rule.tags.as_ref().map(|s| s.compile(&format!("{place}.tags"))).transpose()?,
                decision,
                conditions,
            });
        }
        let untagged_older_than = match &file.untagged {
            Some(untagged) => Some(
                parse_duration(&untagged.delete_older_than)
                    .map_err(|reason| policy_error("untagged.delete_older_than", reason))?,
            ),
            None => None,
        };
        let immutable = file
            .immutable
            .iter()
            .enumerate()
            .map(|(i, scope)| {
                let place = format!("immutable[{i}]");
                Ok(Scope {
                    repositories: repositories(&place, &scope.repositories)?,
                    tags: scope.tags.as_ref().map(|s| s.compile(&format!("{place}.tags"))).transpose()?,
                    place: place.into(),
                })
            })
            .collect::<Result<_>>()?;
        let naming = file
            .naming
            .iter()
            .enumerate()
            .map(|(i, naming)| {
                let place = format!("naming[{i}]");
                Ok(Naming {
                    repositories: repositories(&place, &naming.repositories)?,
                    tags: naming.tags.compile(&format!("{place}.tags"))?,
                    message: naming.message.clone(),
                    place,
                })
            })
            .collect::<Result<_>>()?;
        let fraction = file.limits.max_delete_fraction.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&fraction) {
            return Err(policy_error("limits.max_delete_fraction", format!("{fraction} is not between 0 and 1")));
        }
        let limits = Limits {
            max_delete_fraction: fraction,
            min_tags: file.limits.min_tags.unwrap_or(0),
            grace: duration("limits.grace", &file.limits.grace)?.unwrap_or(Duration::ZERO),
        };
        Ok(Policy { default: file.default, rules, untagged_older_than, immutable, naming, limits })
    }

    /// The immutability scope that covers `tag` in `repository`, if any.
    pub(crate) fn immutable_scope(&self, repository: &str, candidate: &Candidate<'_>) -> Option<&Scope> {
        self.immutable.iter().find(|scope| {
            candidate.tag.is_some()
                && in_repositories(&scope.repositories, repository)
                && scope.tags.as_ref().is_none_or(|tags| tags.matches(candidate))
        })
    }

    /// Whether pushing `tag` to `repository`, pointing it at `digest`, is allowed: its name
    /// must satisfy every naming rule of the repository, and an immutable tag that exists
    /// (at `current`) may not move.
    ///
    /// # Errors
    /// The [`Refusal`] of the first rule that forbids it.
    pub fn check_tag_push(
        &self,
        repository: &str,
        tag: &str,
        current: Option<&Digest>,
        digest: &Digest,
    ) -> Result<(), Refusal> {
        let candidate = Candidate { tag: Some(tag), manifest: None, signed: false };
        for naming in &self.naming {
            if in_repositories(&naming.repositories, repository) && !naming.tags.matches(&candidate) {
                let message = naming
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("tag {tag:?} does not follow the naming rule of {repository}"));
                return Err(Refusal { rule: naming.place.clone(), message });
            }
        }
        if let (Some(current), Some(scope)) = (current, self.immutable_scope(repository, &candidate))
            && current != digest
        {
            return Err(Refusal {
                rule: scope.place.to_string(),
                message: format!("tag {tag:?} of {repository} is immutable: it stays at {current}"),
            });
        }
        Ok(())
    }

    /// Whether deleting `tag` from `repository` is allowed: not when it is immutable.
    ///
    /// # Errors
    /// The [`Refusal`] of the immutability scope that covers it.
    pub fn check_tag_delete(&self, repository: &str, tag: &str) -> Result<(), Refusal> {
        let candidate = Candidate { tag: Some(tag), manifest: None, signed: false };
        match self.immutable_scope(repository, &candidate) {
            Some(scope) => Err(Refusal {
                rule: scope.place.to_string(),
                message: format!("tag {tag:?} of {repository} is immutable: it cannot be deleted"),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The issue's example policy, as written there.
    pub(crate) const EXAMPLE: &str = include_str!("../tests/fixtures/example-policy.yaml");

    fn error(yaml: &str) -> String {
        Policy::from_yaml(yaml).unwrap_err().to_string()
    }

    #[test]
    fn reads_the_example() {
        let policy = Policy::from_yaml(EXAMPLE).unwrap();
        assert_eq!(policy.rules.len(), 3);
        assert_eq!(policy.rules[0].conditions.newest, Some((3, Per::Major, By::Version)));
        assert_eq!(policy.rules[1].conditions.pushed_older_than, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(policy.untagged_older_than, Some(Duration::from_secs(86_400)));
        assert_eq!(policy.limits.grace, Duration::from_secs(3600));
        assert_eq!(policy.limits.min_tags, 1);
    }

    #[test]
    fn json_is_read_too() {
        let policy = Policy::from_yaml(
            r#"{"version": 1, "default": "delete", "rules": [{"name": "keep-v", "tags": {"glob": "v*"}, "keep": {}}]}"#,
        )
        .unwrap();
        assert_eq!((policy.default, policy.rules.len()), (Decision::Delete, 1));
    }

    #[test]
    fn mistakes_are_named_with_their_place() {
        for (yaml, says) in [
            ("version: 2", "policy: version: 2 is not a version"),
            ("version: 1\nrules:\n  - name: a\n    keep: {newst: 3}", "rules[0].keep"),
            ("version: 1\nrules:\n  - name: a\n    keep: {newst: 3}", "unknown field `newst`"),
            ("version: 1\nrules:\n  - name: a\n    keep: {newst: 3}", "line 4"),
            ("version: 1\nretention: {}", "unknown field `retention`"),
            ("version: 1\nrules:\n  - name: a\n    keep: {pushed_within: 3y}", "rules[0] (a).keep.pushed_within"),
            (
                "version: 1\nrules:\n  - name: a\n    tags: {regex: '('}\n    keep: {}",
                "rules[0] (a).tags.regex: bad regex",
            ),
            ("version: 1\nrules:\n  - {name: a, keep: {}, delete: {}}", "exactly one of keep and delete"),
            ("version: 1\nrules:\n  - {name: a}", "exactly one of keep and delete"),
            ("version: 1\nrules:\n  - {name: a, keep: {}}\n  - {name: a, keep: {}}", "rules[1] (a).name: another rule"),
            (
                "version: 1\nrules:\n  - {name: a, delete: {newest: 3}}",
                "rules[0] (a).delete.newest: goes in keep rules",
            ),
            ("version: 1\nrules:\n  - {name: a, keep: {newest: 0}}", "newest: 0 can never keep"),
            ("version: 1\nrules:\n  - {name: a, keep: {per: major}}", "keep.per: goes with newest"),
            ("version: 1\nrules:\n  - {name: a, keep: {newest: 1, per: patch}}", "unknown variant `patch`"),
            (
                "version: 1\nrules:\n  - {name: a, delete: {pushed_within: 1d, pushed_older_than: 2d}}",
                "rules[0] (a).delete: can never hold",
            ),
            (
                "version: 1\nrules:\n  - {name: a, repositories: [], keep: {}}",
                "rules[0] (a).repositories: an empty list",
            ),
            (
                "version: 1\nrules:\n  - {name: a, repositories: ['[x'], keep: {}}",
                "rules[0] (a).repositories[0]: bad glob",
            ),
            ("version: 1\nuntagged: {delete_older_than: soon}", "untagged.delete_older_than"),
            ("version: 1\nimmutable:\n  - tags: {semver: '>>1'}", "immutable[0].tags.semver: bad version range"),
            ("version: 1\nnaming:\n  - repositories: ['a']", "missing field `tags`"),
            ("version: 1\nlimits: {max_delete_fraction: 1.5}", "limits.max_delete_fraction: 1.5 is not between"),
            ("version: 1\nlimits: {grace: 1}", "limits.grace"),
            ("version: 1\nrules: [", "policy: "),
        ] {
            let error = error(yaml);
            assert!(error.contains(says), "{yaml:?}: {error}");
        }
    }

    #[test]
    fn naming_and_immutability_at_push() {
        let policy = Policy::from_yaml(EXAMPLE).unwrap();
        let (a, b) = (Digest::sha256(b"a"), Digest::sha256(b"b"));
        for good in ["v1.2.3", "git-0123abcd", "blue-prod"] {
            assert_eq!(policy.check_tag_push("prod/api", good, None, &a), Ok(()), "{good}");
        }
        let refused = policy.check_tag_push("prod/api", "latest", None, &a).unwrap_err();
        assert_eq!(refused.rule, "naming[0]");
        assert!(refused.message.starts_with("tags in prod/ are vX.Y.Z"), "{refused}");
        assert_eq!(policy.check_tag_push("team/api", "latest", None, &a), Ok(()), "no naming rule there");
        // An immutable tag may be created and pushed again as it is, never moved or deleted.
        assert_eq!(policy.check_tag_push("prod/api", "v1.2.3", Some(&a), &a), Ok(()));
        let moved = policy.check_tag_push("prod/api", "v1.2.3", Some(&a), &b).unwrap_err();
        assert_eq!(moved.rule, "immutable[0]");
        assert_eq!(policy.check_tag_push("prod/api", "blue-prod", Some(&a), &b), Ok(()), "not a version");
        assert!(policy.check_tag_delete("prod/api", "v1.2.3").is_err());
        assert_eq!(policy.check_tag_delete("prod/api", "blue-prod"), Ok(()));
        assert_eq!(policy.check_tag_delete("team/api", "v1.2.3"), Ok(()));
    }
}
