//! Selectors: which tags (or untagged manifests) a rule, an immutability scope or a naming
//! rule is about, as the policy file writes them and compiled for matching.

use std::collections::BTreeMap;

use globset::{Glob, GlobBuilder, GlobMatcher};
use regex::Regex;
use semver::{Version, VersionReq};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::inventory::ManifestRecord;

/// Artifact types of signatures: cosign's and notation's.
pub(crate) const SIGNATURE_TYPES: [&str; 2] =
    ["application/vnd.dev.cosign.artifact.sig.v1+json", "application/vnd.cncf.notary.signature"];

/// A selector as the file writes it: every key given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SelectorFile {
    glob: Option<String>,
    regex: Option<String>,
    semver: Option<String>,
    version_pattern: Option<String>,
    untagged: Option<bool>,
    signed: Option<bool>,
    artifact_type: Option<String>,
    media_type: Option<String>,
    annotation: Option<BTreeMap<String, String>>,
    any: Option<Vec<SelectorFile>>,
    all: Option<Vec<SelectorFile>>,
    not: Option<Box<SelectorFile>>,
}

/// What a selector looks at: a tag, or a manifest no tag names, with what is known of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    /// The tag; `None` for an untagged manifest.
    pub(crate) tag: Option<&'a str>,
    /// The manifest, when the inventory has it (at push time it is not asked).
    pub(crate) manifest: Option<&'a ManifestRecord>,
    /// Whether a signature refers to the manifest.
    pub(crate) signed: bool,
}

/// A compiled selector.
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    Glob(GlobMatcher),
    Regex(Regex),
    Semver { range: VersionReq, pattern: VersionPattern },
    Untagged(bool),
    Signed(bool),
    ArtifactType(GlobMatcher),
    MediaType(GlobMatcher),
    Annotation(String, GlobMatcher),
    Any(Vec<Selector>),
    All(Vec<Selector>),
    Not(Box<Selector>),
}

/// A glob over tags or media types: `*` and `?` match any character, `/` included.
fn glob(place: &str, pattern: &str) -> Result<GlobMatcher> {
    Glob::new(pattern).map(|g| g.compile_matcher()).map_err(|e| policy_error(place, format!("bad glob: {e}")))
}

/// A glob over repository names: `*` stays within one path component, `**` crosses them.
pub(crate) fn repository_glob(place: &str, pattern: &str) -> Result<GlobMatcher> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| policy_error(place, format!("bad glob: {e}")))
}

/// A regex matched against the whole text.
fn whole(place: &str, pattern: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| policy_error(place, format!("bad regex: {e}")))
}

pub(crate) fn policy_error(place: &str, reason: impl Into<String>) -> Error {
    Error::Policy { place: place.to_owned(), reason: reason.into() }
}

impl SelectorFile {
    /// The selector, checked: each key's value, and that it can match something.
    pub(crate) fn compile(&self, place: &str) -> Result<Selector> {
        let at = |key: &str| format!("{place}.{key}");
        let mut parts = Vec::new();
        if let Some(pattern) = &self.glob {
            parts.push(Selector::Glob(glob(&at("glob"), pattern)?));
        }
        if let Some(pattern) = &self.regex {
            parts.push(Selector::Regex(whole(&at("regex"), pattern)?));
        }
        match (&self.semver, &self.version_pattern) {
            (Some(range), pattern) => {
                let range = VersionReq::parse(range)
                    .map_err(|e| policy_error(&at("semver"), format!("bad version range {range:?}: {e}")))?;
                let pattern = match pattern {
                    None => VersionPattern::Default,
                    Some(pattern) => {
                        let pattern = whole(&at("version_pattern"), pattern)?;
                        if !pattern.capture_names().any(|name| name == Some("version")) {
                            return Err(policy_error(&at("version_pattern"), "needs a named group (?P<version>…)"));
                        }
                        VersionPattern::Custom(pattern)
                    }
                };
                parts.push(Selector::Semver { range, pattern });
            }
            (None, Some(_)) => return Err(policy_error(&at("version_pattern"), "goes with semver")),
            (None, None) => {}
        }
        if let Some(untagged) = self.untagged {
            parts.push(Selector::Untagged(untagged));
        }
        if let Some(signed) = self.signed {
            parts.push(Selector::Signed(signed));
        }
        if let Some(pattern) = &self.artifact_type {
            parts.push(Selector::ArtifactType(glob(&at("artifact_type"), pattern)?));
        }
        if let Some(pattern) = &self.media_type {
            parts.push(Selector::MediaType(glob(&at("media_type"), pattern)?));
        }
        for (key, pattern) in self.annotation.iter().flatten() {
            parts.push(Selector::Annotation(key.clone(), glob(&at(&format!("annotation.{key}")), pattern)?));
        }
        if let Some(any) = &self.any {
            if any.is_empty() {
                return Err(policy_error(&at("any"), "an empty list can never match"));
            }
            let any =
                any.iter().enumerate().map(|(i, s)| s.compile(&at(&format!("any[{i}]")))).collect::<Result<_>>()?;
            parts.push(Selector::Any(any));
        }
        if let Some(all) = &self.all {
            let all = all
                .iter()
                .enumerate()
                .map(|(i, s)| s.compile(&at(&format!("all[{i}]"))))
                .collect::<Result<Vec<_>>>()?;
            parts.extend(all);
        }
        if let Some(not) = &self.not {
            parts.push(Selector::Not(Box::new(not.compile(&at("not"))?)));
        }
        let selector = match parts.len() {
            0 => {
                return Err(policy_error(
                    place,
                    "names nothing to select by (glob, regex, semver, untagged, signed, artifact_type, media_type, \
                     annotation, any, all or not)",
                ));
            }
            1 => parts.remove(0),
            _ => Selector::All(parts),
        };
        if selector.never_matches() {
            return Err(policy_error(
                place,
                "can never match: untagged: true selects manifests without a tag, which no tag pattern matches",
            ));
        }
        Ok(selector)
    }
}

impl Selector {
    /// Whether `candidate` is selected.
    pub(crate) fn matches(&self, candidate: &Candidate<'_>) -> bool {
        let manifest = candidate.manifest;
        match self {
            Selector::Glob(glob) => candidate.tag.is_some_and(|tag| glob.is_match(tag)),
            Selector::Regex(regex) => candidate.tag.is_some_and(|tag| regex.is_match(tag)),
            Selector::Semver { range, pattern } => {
                candidate.tag.and_then(|tag| pattern.version_in(tag)).is_some_and(|v| range.matches(&v))
            }
            Selector::Untagged(untagged) => candidate.tag.is_none() == *untagged,
            Selector::Signed(signed) => candidate.signed == *signed,
            Selector::ArtifactType(glob) => {
                manifest.and_then(|m| m.artifact_type.as_deref()).is_some_and(|t| glob.is_match(t))
            }
            Selector::MediaType(glob) => manifest.is_some_and(|m| glob.is_match(&m.media_type)),
            Selector::Annotation(key, glob) => {
                manifest.and_then(|m| m.annotations.get(key)).is_some_and(|value| glob.is_match(value))
            }
            Selector::Any(any) => any.iter().any(|s| s.matches(candidate)),
            Selector::All(all) => all.iter().all(|s| s.matches(candidate)),
            Selector::Not(not) => !not.matches(candidate),
        }
    }

    /// Whether the selector asks for untagged manifests (an `untagged: true` that is not
    /// negated); only such rules decide them.
    pub(crate) fn selects_untagged(&self) -> bool {
        match self {
            Selector::Untagged(true) => true,
            Selector::Any(parts) | Selector::All(parts) => parts.iter().any(Selector::selects_untagged),
            _ => false,
        }
    }

    /// The pattern versions are read with: the first `semver` selector's, else the default.
    pub(crate) fn version_pattern(&self) -> Option<&VersionPattern> {
        match self {
            Selector::Semver { pattern, .. } => Some(pattern),
            Selector::Any(parts) | Selector::All(parts) => parts.iter().find_map(Selector::version_pattern),
            _ => None,
        }
    }

    /// Whether nothing can be selected: a conjunction that asks for an untagged manifest
    /// and for a tag pattern at once.
    fn never_matches(&self) -> bool {
        match self {
            Selector::All(parts) => {
                let untagged = parts.iter().any(|p| matches!(p, Selector::Untagged(true)));
                let named =
                    parts.iter().any(|p| matches!(p, Selector::Glob(_) | Selector::Regex(_) | Selector::Semver { .. }));
                (untagged && named) || parts.iter().any(Selector::never_matches)
            }
            Selector::Any(parts) => parts.iter().all(Selector::never_matches),
            _ => false,
        }
    }
}

/// A selector of tags in the policy file's syntax (`glob`, `regex`, `semver` with
/// `version_pattern`, `any`, `all`, `not`), for other rules that pick tags by name, such as
/// replication's. What needs a manifest (`signed`, `artifact_type`, `media_type`,
/// `annotation`, `untagged`) never holds for a name alone.
#[derive(Debug, Clone)]
pub struct TagSelector(Selector);

impl TagSelector {
    /// Reads a selector from its value (a mapping, as a YAML or JSON document holds it),
    /// checked as a policy file's are; `place` names it in errors.
    ///
    /// # Errors
    /// [`Error::Policy`] naming the place and what is wrong.
    pub fn from_value(value: serde_json::Value, place: &str) -> Result<TagSelector> {
        let file: SelectorFile = serde_json::from_value(value).map_err(|e| policy_error(place, e.to_string()))?;
        Ok(TagSelector(file.compile(place)?))
    }

    /// Whether the selector takes `tag`.
    pub fn matches(&self, tag: &str) -> bool {
        self.0.matches(&Candidate { tag: Some(tag), manifest: None, signed: false })
    }
}

/// How a version is read from a tag: by default an optional `v`, then a semantic version;
/// or by a policy's `version_pattern`, whose group `version` is the version.
#[derive(Debug, Clone, Default)]
pub(crate) enum VersionPattern {
    #[default]
    Default,
    Custom(Regex),
}

impl VersionPattern {
    /// The semantic version read from `tag`, if any.
    pub(crate) fn version_in(&self, tag: &str) -> Option<Version> {
        match self {
            // An optional `v`, then what semver reads: the same as matching the pattern
            // `v?(?P<version>…)` with semver's grammar first, as a test checks.
            VersionPattern::Default => Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok(),
            VersionPattern::Custom(pattern) => Version::parse(pattern.captures(tag)?.name("version")?.as_str()).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The version a tag carries by default, as a regex: an optional `v`, then a semantic version.
    const DEFAULT_VERSION_PATTERN: &str =
        r"v?(?P<version>(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)";

    proptest! {
        #[test]
        fn the_default_reading_is_the_documented_pattern(tag in "v?v?[0-9]{1,3}(\\.[0-9]{1,3}){0,3}(-[0-9A-Za-z.+-]{0,6})?(\\+[0-9A-Za-z.+-]{0,6})?[ a]?") {
            let documented = VersionPattern::Custom(Regex::new(&format!("^(?:{DEFAULT_VERSION_PATTERN})$")).unwrap());
            prop_assert_eq!(VersionPattern::Default.version_in(&tag), documented.version_in(&tag));
        }
    }

    fn selector(yaml: &str) -> Selector {
        let file: SelectorFile = serde_yaml_ng::from_str(yaml).unwrap();
        file.compile("tags").unwrap()
    }

    #[test]
    fn tag_selectors_read_as_the_policy_file_does() {
        let selector = TagSelector::from_value(
            serde_json::json!({"any": [{"semver": ">=1.0.0"}, {"glob": "*-prod"}], "not": {"regex": "v1\\.0\\..*"}}),
            "replication.rules[0].tags",
        )
        .unwrap();
        assert!(selector.matches("v1.1.0") && selector.matches("api-prod"));
        assert!(!selector.matches("v1.0.3") && !selector.matches("v0.9.0") && !selector.matches("latest"));
        let error = TagSelector::from_value(serde_json::json!({"glob": "["}), "replication.rules[0].tags").unwrap_err();
        assert!(error.to_string().contains("replication.rules[0].tags.glob: bad glob"), "{error}");
        let error = TagSelector::from_value(serde_json::json!({"colour": "red"}), "here").unwrap_err();
        assert!(error.to_string().contains("here") && error.to_string().contains("colour"), "{error}");
    }

    fn compile_error(yaml: &str) -> String {
        let file: SelectorFile = serde_yaml_ng::from_str(yaml).unwrap();
        file.compile("rules[0] (x).tags").unwrap_err().to_string()
    }

    fn tag(name: &str) -> Candidate<'_> {
        Candidate { tag: Some(name), manifest: None, signed: false }
    }

    fn manifest(artifact_type: Option<&str>, annotations: &[(&str, &str)]) -> ManifestRecord {
        ManifestRecord {
            digest: wharf_oci::Digest::sha256(b"m"),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            artifact_type: artifact_type.map(str::to_owned),
            size: 10,
            blobs: Vec::new(),
            pushed: "2026-01-01T00:00:00Z".parse().unwrap(),
            pulled: None,
            subject: None,
            children: Vec::new(),
            annotations: annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn globs_and_regexes_match_whole_tags() {
        let dev = selector("glob: '*-dev'");
        assert!(dev.matches(&tag("1.2-dev")) && !dev.matches(&tag("1.2-dev2")));
        let git = selector("regex: 'git-[0-9a-f]{7,40}'");
        assert!(git.matches(&tag("git-abc1234")));
        assert!(!git.matches(&tag("xgit-abc1234")) && !git.matches(&tag("git-abc1234-dirty")));
        assert!(!dev.matches(&Candidate { tag: None, manifest: None, signed: false }));
    }

    #[test]
    fn semver_ranges_and_version_patterns() {
        let releases = selector("semver: '>=1.0.0'");
        assert!(releases.matches(&tag("v1.2.3")) && releases.matches(&tag("2.0.0")));
        assert!(!releases.matches(&tag("v0.9.9")) && !releases.matches(&tag("latest")));
        assert!(!releases.matches(&tag("v1.2")), "not a semantic version");
        assert!(!releases.matches(&tag("v2.0.0-rc.1")), "a range leaves prereleases out unless it names them");
        let any = selector("semver: '*'");
        assert!(any.matches(&tag("v0.0.1")));
        let suffixed = selector("semver: '^2'\nversion_pattern: 'release-(?P<version>.+)-prod'");
        assert!(suffixed.matches(&tag("release-2.4.1-prod")));
        assert!(!suffixed.matches(&tag("release-3.0.0-prod")) && !suffixed.matches(&tag("2.4.1")));
    }

    #[test]
    fn manifest_fields_signatures_and_untagged() {
        let signed = selector("signed: true");
        assert!(signed.matches(&Candidate { tag: Some("a"), manifest: None, signed: true }));
        assert!(!signed.matches(&tag("a")));
        let sbom =
            manifest(Some("application/spdx+json"), &[("org.opencontainers.image.source", "https://git.example/a")]);
        let candidate = Candidate { tag: Some("a"), manifest: Some(&sbom), signed: false };
        assert!(selector("artifact_type: 'application/spdx*'").matches(&candidate));
        assert!(selector("media_type: '*oci.image.manifest*'").matches(&candidate));
        assert!(selector("annotation: {org.opencontainers.image.source: 'https://git.example/*'}").matches(&candidate));
        assert!(!selector("annotation: {other: '*'}").matches(&candidate));
        let untagged = selector("untagged: true");
        assert!(untagged.matches(&Candidate { tag: None, manifest: Some(&sbom), signed: false }));
        assert!(!untagged.matches(&candidate));
        assert!(untagged.selects_untagged() && !selector("not: {untagged: true}").selects_untagged());
    }

    #[test]
    fn any_all_not() {
        let naming = selector("any: [{semver: '*'}, {regex: 'git-[0-9a-f]{7,40}'}, {regex: '.+-(prod|dev|staging)'}]");
        for good in ["v1.0.0", "git-0123abc", "blue-prod"] {
            assert!(naming.matches(&tag(good)), "{good}");
        }
        for bad in ["latest", "git-xyz", "-prod"] {
            assert!(!naming.matches(&tag(bad)), "{bad}");
        }
        let both = selector("all: [{glob: 'v*'}, {not: {glob: '*-rc*'}}]");
        assert!(both.matches(&tag("v1")) && !both.matches(&tag("v1-rc1")));
        let keys_and = selector("glob: 'v*'\nsigned: true");
        assert!(!keys_and.matches(&tag("v1")));
        assert!(keys_and.matches(&Candidate { tag: Some("v1"), manifest: None, signed: true }));
    }

    #[test]
    fn bad_selectors_are_named_with_their_place() {
        for (yaml, says) in [
            ("glob: '[a'", "rules[0] (x).tags.glob: bad glob"),
            ("regex: '('", "rules[0] (x).tags.regex: bad regex"),
            ("semver: '>>1'", "rules[0] (x).tags.semver: bad version range"),
            ("semver: '*'\nversion_pattern: 'v(.+)'", "version_pattern: needs a named group"),
            ("version_pattern: '(?P<version>.+)'", "version_pattern: goes with semver"),
            ("any: []", "tags.any: an empty list can never match"),
            ("{}", "rules[0] (x).tags: names nothing to select by"),
            ("untagged: true\nglob: 'v*'", "can never match"),
            ("any: [{all: [{untagged: true}, {semver: '*'}]}]", "any[0]: can never match"),
            ("any: [{glob: 'a'}, {glob: '[b'}]", "tags.any[1].glob: bad glob"),
        ] {
            let error = compile_error(yaml);
            assert!(error.contains(says), "{yaml:?}: {error}");
        }
    }
}
