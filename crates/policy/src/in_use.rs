//! The in-use list: what is deployed, one reference or digest a line, protected from any
//! rule.

use std::collections::{BTreeMap, BTreeSet};

use wharf_oci::Digest;

use crate::error::{Error, Result};

/// References (`team/app:v1`, `registry.example.com/team/app@sha256:…`) and bare digests
/// that no plan deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InUse {
    /// Tags, by repository.
    tags: BTreeMap<String, BTreeSet<String>>,
    /// Digests named with their repository, by repository.
    pinned: BTreeMap<String, BTreeSet<Digest>>,
    digests: BTreeSet<Digest>,
}

impl InUse {
    /// Reads a list: a reference or a digest a line; blank lines and `#` comments are
    /// skipped. A registry host before the repository (a first part with a `.` or a `:`,
    /// or `localhost`) is dropped: the list speaks of the registry it is applied to.
    ///
    /// # Errors
    /// [`Error::InUse`] naming the first line that is neither.
    pub fn parse(text: &str) -> Result<InUse> {
        let mut list = InUse::default();
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: &str| Error::InUse { line: index + 1, reason: format!("{line:?}: {reason}") };
            if let Ok(digest) = line.parse::<Digest>() {
                list.digests.insert(digest);
                continue;
            }
            if let Some((name, digest)) = line.split_once('@') {
                let digest = digest.parse::<Digest>().map_err(|e| bad(&format!("bad digest: {e}")))?;
                list.pinned.entry(repository(name).map_err(|r| bad(&r))?).or_default().insert(digest);
                continue;
            }
            let (name, tag) = match line.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => (name, tag),
                _ => return Err(bad("a reference names a tag (repo:tag) or a digest (repo@sha256:…)")),
            };
            if tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
                return Err(bad("the tag is empty or holds characters a tag cannot"));
            }
            list.tags.entry(repository(name).map_err(|r| bad(&r))?).or_default().insert(tag.to_owned());
        }
        Ok(list)
    }

    /// Whether the list names `tag` of `repository`, or `digest` there or anywhere.
    pub fn protects(&self, repository: &str, tag: Option<&str>, digest: &Digest) -> bool {
        self.digests.contains(digest)
            || self.pinned.get(repository).is_some_and(|pinned| pinned.contains(digest))
            || tag.is_some_and(|tag| self.tags.get(repository).is_some_and(|tags| tags.contains(tag)))
    }

    /// Whether the list names `digest` in `repository`, by digest (pinned or bare).
    pub fn protects_digest(&self, repository: &str, digest: &Digest) -> bool {
        self.protects(repository, None, digest)
    }
}

/// The repository of a reference's name part, without a registry host.
fn repository(name: &str) -> std::result::Result<String, String> {
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost") {
        parts.remove(0);
    }
    let repository = parts.join("/");
    let valid = !repository.is_empty()
        && parts.iter().all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        });
    if valid { Ok(repository) } else { Err(format!("{name:?} is not a repository name")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn references_and_digests() {
        let digest = Digest::sha256(b"deployed");
        let other = Digest::sha256(b"other");
        let list = InUse::parse(&format!(
            "# deployed on 2026-12-07\nteam/app:v1.2.3\nregistry.example.com:5000/team/api@{digest}\n\n{other}  # pinned anywhere\nlocalhost/solo:latest\n"
        ))
        .unwrap();
        assert!(list.protects("team/app", Some("v1.2.3"), &Digest::sha256(b"x")));
        assert!(!list.protects("team/app", Some("v1.2.4"), &Digest::sha256(b"x")));
        assert!(list.protects_digest("team/api", &digest));
        assert!(!list.protects_digest("team/app", &digest));
        assert!(list.protects_digest("anything", &other));
        assert!(list.protects("solo", Some("latest"), &digest));
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, says) in [
            ("team/app", "line 1: \"team/app\": a reference names a tag"),
            ("ok/a:v1\nTeam/App:v1", "line 2"),
            ("a@sha256:zz", "bad digest"),
            ("a:", "the tag is empty"),
            ("a:b c", "holds characters"),
            ("registry.example.com:5000/a", "a reference names a tag"),
            ("//x:v1", "not a repository name"),
        ] {
            let error = InUse::parse(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }

    proptest! {
        /// Any text is a list or an error naming a line, never a panic.
        #[test]
        fn any_text(text in "\\PC{0,80}") {
            if let Err(error) = InUse::parse(&text) {
                prop_assert!(error.to_string().starts_with("in-use list, line "));
            }
        }

        /// A listed reference protects exactly its tag.
        #[test]
        fn listed_tags_are_protected(name in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}") {
            let list = InUse::parse(&format!("{name}:{tag}")).unwrap();
            let digest = Digest::sha256(tag.as_bytes());
            prop_assert!(list.protects(&name, Some(&tag), &digest));
            let other_tag = format!("{tag}x");
            prop_assert!(!list.protects(&name, Some(other_tag.as_str()), &digest));
        }
    }
}
