//! Image references (`ghcr.io/org/app:1.2@sha256:…`), repository names and tags, following the
//! grammar of CNCF Distribution's `reference` package and Docker's normalisation.
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain "/"] path
//! domain           := host [":" port]
//! host             := domain-name | IPv4 | "[" IPv6 "]"
//! domain-name      := domain-component ("." domain-component)*
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path             := path-component ("/" path-component)*      (at most 255 characters)
//! path-component   := [a-z0-9]+ (separator [a-z0-9]+)*
//! separator        := "." | "_" | "__" | "-"+
//! tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! ```

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, Result, excerpt};

/// The registry that references without a host name point to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The host name Docker used for its registry before `docker.io`; normalised to it.
pub const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
/// The namespace of single-component names on the default registry.
pub const OFFICIAL_NAMESPACE: &str = "library";
/// The longest repository name a reference may carry.
pub const MAX_REPOSITORY_LEN: usize = 255;
/// The longest tag.
pub const MAX_TAG_LEN: usize = 128;

/// A validated repository name without a registry host, such as `library/ubuntu`.
///
/// This is the `<name>` of the distribution API's paths and the directory name in storage:
/// components of lowercase letters and digits, joined inside by `.`, `_`, `__` or runs of `-`,
/// separated by `/`, at most 255 characters in all.
///
/// ```
/// use wharf_oci::RepositoryName;
///
/// let name: RepositoryName = "team/app-server".parse()?;
/// assert_eq!(name.as_str(), "team/app-server");
/// assert!("Team/App".parse::<RepositoryName>().is_err());
/// # Ok::<(), wharf_oci::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepositoryName(Box<str>);

impl RepositoryName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl FromStr for RepositoryName {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        check_path(input).map_err(|reason| Error::InvalidRepositoryName { input: excerpt(input), reason })?;
        Ok(RepositoryName(input.into()))
    }
}

impl TryFrom<&str> for RepositoryName {
    type Error = Error;

    fn try_from(value: &str) -> Result<Self> {
        value.parse()
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepositoryName({})", self.0)
    }
}

impl AsRef<str> for RepositoryName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for RepositoryName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RepositoryName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A tag, checked: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. It reads as the text it holds.
///
/// ```
/// use wharf_oci::Tag;
///
/// let tag: Tag = "v1.2-alpine".parse()?;
/// assert_eq!(tag, "v1.2-alpine");
/// assert!(".hidden".parse::<Tag>().is_err());
/// # Ok::<(), wharf_oci::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(Box<str>);

impl Tag {
    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        validate_tag(input)?;
        Ok(Tag(input.into()))
    }
}

impl TryFrom<&str> for Tag {
    type Error = Error;

    fn try_from(value: &str) -> Result<Self> {
        value.parse()
    }
}

impl std::ops::Deref for Tag {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Tag {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Tag {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Checks a tag against `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
///
/// # Errors
/// [`Error::InvalidTag`] saying which rule the tag breaks.
pub fn validate_tag(tag: &str) -> Result<()> {
    check_tag(tag).map_err(|reason| Error::InvalidTag { input: excerpt(tag), reason })
}

fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    match chars.next() {
        None => return Err("a tag cannot be empty".into()),
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {}
        Some(c) => {
            return Err(format!("a tag must start with a letter, digit or '_', not {c:?}"));
        }
    }
    if let Some(c) = chars.find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("character {c:?} is not allowed in a tag"));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("a tag has at most {MAX_TAG_LEN} characters, this one has {}", tag.len()));
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("a repository name cannot be empty".into());
    }
    if path.len() > MAX_REPOSITORY_LEN {
        return Err(format!(
            "a repository name has at most {MAX_REPOSITORY_LEN} characters, this one has {}",
            path.len()
        ));
    }
    for component in path.split('/') {
        check_path_component(component)?;
    }
    Ok(())
}

fn check_path_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("empty path component (a leading, trailing or doubled '/')".into());
    }
    if let Some(c) = component.chars().find(|c| c.is_ascii_uppercase()) {
        return Err(format!("repository names must be lowercase, found {c:?} in {component:?}"));
    }
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return Err(format!("path component {component:?} must start and end with a lowercase letter or digit"));
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or any number of "-".
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return Err(if separator.chars().all(|c| matches!(c, '.' | '_' | '-')) {
                format!("separator {separator:?} in {component:?} is not one of '.', '_', '__' or a run of '-'")
            } else {
                let c = separator.chars().find(|c| !matches!(c, '.' | '_' | '-')).unwrap_or('?');
                format!("character {c:?} is not allowed in repository names")
            });
        }
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (address, after) =
            rest.split_once(']').ok_or_else(|| format!("IPv6 host {domain:?} lacks its closing ']'"))?;
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{address:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| format!("unexpected {after:?} after the IPv6 host"))?),
        };
        (None, port)
    } else {
        match domain.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("the registry host is empty".into());
        }
        for component in host.split('.') {
            let bytes = component.as_bytes();
            let valid = !bytes.is_empty()
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-';
            if !valid {
                return Err(format!(
                    "registry host {host:?} has an invalid component {component:?} \
                     (letters, digits and inner '-' only)"
                ));
            }
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("registry port {port:?} is not a number"));
    }
    Ok(())
}

/// A parsed, normalised image reference: registry, repository, and an optional tag and digest.
///
/// Parsing applies Docker's normalisation: a reference without a registry host points to
/// `docker.io`, a single-component name there gets the `library/` namespace, and
/// `index.docker.io` becomes `docker.io`. [`Display`](fmt::Display) prints the full form,
/// [`Reference::familiar`] the short one people type.
///
/// ```
/// use wharf_oci::Reference;
///
/// let r: Reference = "ubuntu:24.04".parse()?;
/// assert_eq!(r.registry(), "docker.io");
/// assert_eq!(r.repository(), "library/ubuntu");
/// assert_eq!(r.tag(), Some("24.04"));
/// assert_eq!(r.to_string(), "docker.io/library/ubuntu:24.04");
/// assert_eq!(r.familiar(), "ubuntu:24.04");
///
/// let r: Reference = "localhost:5000/team/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
/// assert_eq!(r.registry(), "localhost:5000");
/// assert!(r.digest().is_some());
/// # Ok::<(), wharf_oci::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: Box<str>,
    repository: RepositoryName,
    tag: Option<Box<str>>,
    digest: Option<Digest>,
}

impl Reference {
    /// Builds a reference from its parts, normalising the registry as parsing does.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] when the registry host is not valid or the tag breaks the
    /// tag grammar.
    pub fn new(
        registry: &str,
        repository: RepositoryName,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Reference> {
        let invalid = |reason: String| Error::InvalidReference { input: excerpt(registry), reason };
        check_domain(registry).map_err(invalid)?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(|reason| Error::InvalidReference { input: excerpt(tag), reason })?;
        }
        let registry = if registry == LEGACY_DEFAULT_REGISTRY { DEFAULT_REGISTRY } else { registry };
        let repository = if registry == DEFAULT_REGISTRY && !repository.as_str().contains('/') {
            // Both parts are valid, and the prefix adds 8 characters: re-check the length.
            format!("{OFFICIAL_NAMESPACE}/{repository}").parse()?
        } else {
            repository
        };
        Ok(Reference { registry: registry.into(), repository, tag: tag.map(Into::into), digest })
    }

    /// The registry host, with its port if any (`docker.io`, `localhost:5000`, `[::1]:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/ubuntu`).
    pub fn repository(&self) -> &str {
        self.repository.as_str()
    }

    /// The repository path as a validated [`RepositoryName`].
    pub fn repository_name(&self) -> &RepositoryName {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference has one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same reference with `tag` instead of its tag.
    ///
    /// # Errors
    /// [`Error::InvalidTag`] when `tag` breaks the tag grammar.
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        validate_tag(tag)?;
        Ok(Reference { tag: Some(tag.into()), ..self.clone() })
    }

    /// The same reference with `digest` instead of its digest.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { digest: Some(digest), ..self.clone() }
    }

    /// The short form people type: `docker.io/` and `library/` left out where they are implied.
    ///
    /// Unlike Docker's, this form always parses back to the same reference: `docker.io/` stays
    /// when the path's first component would otherwise read as a registry host
    /// (`docker.io/example.com/app`), and `library/` stays before a name that would read as an
    /// image ID (64 hexadecimal characters).
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        if &*self.registry != DEFAULT_REGISTRY {
            return full;
        }
        let path = self.repository.as_str();
        let short = &full[DEFAULT_REGISTRY.len() + 1..];
        match path.strip_prefix(OFFICIAL_NAMESPACE).and_then(|rest| rest.strip_prefix('/')) {
            Some(official) if !official.contains('/') && !reads_as_image_id(official) => {
                short[OFFICIAL_NAMESPACE.len() + 1..].to_owned()
            }
            _ => match path.split_once('/') {
                Some((first, _)) if reads_as_registry(first) => full,
                _ => short.to_owned(),
            },
        }
    }
}

/// A single-component name of 64 hexadecimal characters is an image ID to Docker, so it only
/// names a repository with a namespace before it.
fn reads_as_image_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Docker's rule for the first component of a name: it is a registry host when it contains
/// '.' or ':', is `localhost`, or has an uppercase letter (which a path never has).
fn reads_as_registry(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost" || component.chars().any(|c| c.is_ascii_uppercase())
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidReference { input: excerpt(input), reason };
        if input.is_empty() {
            return Err(invalid("a reference cannot be empty".into()));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest.parse::<Digest>().map_err(|e| invalid(e.to_string()))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // The tag separator is the last ':' after the last '/', so a registry port is not a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(invalid)?;
        }
        if name.is_empty() {
            return Err(invalid("the repository name is missing".into()));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if reads_as_registry(first) => {
                check_domain(first).map_err(invalid)?;
                (first, rest)
            }
            _ => (DEFAULT_REGISTRY, name),
        };
        let repository: RepositoryName = path.parse().map_err(|e| match e {
            Error::InvalidRepositoryName { reason, .. } => invalid(reason),
            other => other,
        })?;
        if registry == DEFAULT_REGISTRY && !path.contains('/') && reads_as_image_id(path) {
            return Err(invalid("a 64-character hexadecimal string is an image ID, not a repository name".into()));
        }
        Reference::new(registry, repository, tag, digest).map_err(|e| match e {
            Error::InvalidRepositoryName { reason, .. } => invalid(reason),
            other => other,
        })
    }
}

impl TryFrom<&str> for Reference {
    type Error = Error;

    fn try_from(value: &str) -> Result<Self> {
        value.parse()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(input: &str) -> Reference {
        input.parse().unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
    }

    fn refusal(input: &str) -> String {
        match input.parse::<Reference>() {
            Ok(r) => panic!("{input:?} should be refused, parsed as {r}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn normalisation() {
        let cases = [
            ("ubuntu", "docker.io", "library/ubuntu", None, "docker.io/library/ubuntu", "ubuntu"),
            (
                "ubuntu:24.04",
                "docker.io",
                "library/ubuntu",
                Some("24.04"),
                "docker.io/library/ubuntu:24.04",
                "ubuntu:24.04",
            ),
            ("bitnami/redis", "docker.io", "bitnami/redis", None, "docker.io/bitnami/redis", "bitnami/redis"),
            ("docker.io/ubuntu", "docker.io", "library/ubuntu", None, "docker.io/library/ubuntu", "ubuntu"),
            ("index.docker.io/ubuntu", "docker.io", "library/ubuntu", None, "docker.io/library/ubuntu", "ubuntu"),
            ("index.docker.io/foo/bar:v1", "docker.io", "foo/bar", Some("v1"), "docker.io/foo/bar:v1", "foo/bar:v1"),
            ("docker.io/library/a/b", "docker.io", "library/a/b", None, "docker.io/library/a/b", "library/a/b"),
            ("localhost/app", "localhost", "app", None, "localhost/app", "localhost/app"),
            (
                "localhost:5000/app:1",
                "localhost:5000",
                "app",
                Some("1"),
                "localhost:5000/app:1",
                "localhost:5000/app:1",
            ),
            (
                "ghcr.io/org/team/app:v1.2.3",
                "ghcr.io",
                "org/team/app",
                Some("v1.2.3"),
                "ghcr.io/org/team/app:v1.2.3",
                "ghcr.io/org/team/app:v1.2.3",
            ),
            ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", None, "127.0.0.1:5000/app", "127.0.0.1:5000/app"),
            ("[::1]:5000/app", "[::1]:5000", "app", None, "[::1]:5000/app", "[::1]:5000/app"),
            ("[2001:db8::1]/app", "[2001:db8::1]", "app", None, "[2001:db8::1]/app", "[2001:db8::1]/app"),
            ("Registry.Example/app", "Registry.Example", "app", None, "Registry.Example/app", "Registry.Example/app"),
            ("example.com", "docker.io", "library/example.com", None, "docker.io/library/example.com", "example.com"),
            (
                "localhost:5000",
                "docker.io",
                "library/localhost",
                Some("5000"),
                "docker.io/library/localhost:5000",
                "localhost:5000",
            ),
            (
                "a__b/c---d/e.f_g",
                "docker.io",
                "a__b/c---d/e.f_g",
                None,
                "docker.io/a__b/c---d/e.f_g",
                "a__b/c---d/e.f_g",
            ),
            (
                "docker.io/example.com/app",
                "docker.io",
                "example.com/app",
                None,
                "docker.io/example.com/app",
                "docker.io/example.com/app",
            ),
            (
                "library/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef:1",
                "docker.io",
                "library/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                Some("1"),
                "docker.io/library/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef:1",
                "library/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef:1",
            ),
            (
                "docker.io/localhost/app:1",
                "docker.io",
                "localhost/app",
                Some("1"),
                "docker.io/localhost/app:1",
                "docker.io/localhost/app:1",
            ),
        ];
        for (input, registry, repository, tag, full, familiar) in cases {
            let r = parse(input);
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repository, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(parse(full), r, "{input}: the full form parses back");
            assert_eq!(parse(familiar), r, "{input}: the familiar form parses back");
        }
    }

    #[test]
    fn digests_and_tags_together() {
        let r = parse(&format!("nginx:1.25@{DIGEST}"));
        assert_eq!(r.tag(), Some("1.25"));
        assert_eq!(r.digest().map(Digest::as_str), Some(DIGEST));
        assert_eq!(r.to_string(), format!("docker.io/library/nginx:1.25@{DIGEST}"));
        let r = parse(&format!("localhost:5000/app@{DIGEST}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.familiar(), format!("localhost:5000/app@{DIGEST}"));
    }

    #[test]
    fn rejections_name_the_rule() {
        let cases = [
            ("", "empty"),
            (":tag", "missing"),
            ("UPPER", "lowercase"),
            ("docker.io/Upper/case", "lowercase"),
            ("app:", "empty"),
            ("app:-tag", "must start"),
            ("app:ta g", "not allowed"),
            ("a//b", "empty path component"),
            ("a/", "empty path component"),
            ("/a", "empty path component"),
            ("-a", "start and end"),
            ("a-", "start and end"),
            ("a...b", "separator"),
            ("a___b", "separator"),
            ("a._b", "separator"),
            ("a$b", "'$'"),
            ("app@sha256:abc", "sha256 needs 64"),
            ("app@md5:abc", "unsupported algorithm"),
            ("-bad.host/app", "invalid component"),
            ("bad-.host/app", "invalid component"),
            ("host:port/app", "not a number"),
            ("host:/app", "not a number"),
            ("[::1/app", "closing"),
            ("[zz::1]/app", "IPv6"),
            ("[::1]x/app", "unexpected"),
            ("ex_ample.com/app", "invalid component"),
            ("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "image ID"),
        ];
        for (input, expected) in cases {
            let message = refusal(input);
            assert!(message.contains(expected), "{input:?}: {message:?} should mention {expected:?}");
        }
    }

    #[test]
    fn length_limits() {
        let long_tag = format!("app:{}", "t".repeat(128));
        assert_eq!(parse(&long_tag).tag().map(str::len), Some(128));
        assert!(refusal(&format!("app:{}", "t".repeat(129))).contains("at most 128"));

        let name_255 = format!("org/{}", "a".repeat(251));
        assert_eq!(parse(&name_255).repository().len(), 255);
        assert!(refusal(&format!("org/{}", "a".repeat(252))).contains("at most 255"));
        // The implied "library/" prefix counts.
        assert!(refusal(&"a".repeat(250)).contains("at most 255"));
    }

    #[test]
    fn repository_names() {
        for ok in ["a", "library/ubuntu", "a0/b-c/d.e/f_g/h__i", "x--y"] {
            assert_eq!(ok.parse::<RepositoryName>().unwrap().as_str(), ok);
        }
        for bad in ["", "A", "a/", "a//b", "localhost:5000/a", "a b", "é"] {
            let err = bad.parse::<RepositoryName>().unwrap_err();
            assert!(matches!(err, Error::InvalidRepositoryName { .. }), "{bad:?}: {err}");
        }
        let name: RepositoryName = "a/b/c".parse().unwrap();
        assert_eq!(name.components().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"a/b/c\"");
        assert!(serde_json::from_str::<RepositoryName>("\"A\"").is_err());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "_", "v1.2.3-rc.1", "A_b", &"x".repeat(128)] {
            validate_tag(ok).unwrap();
        }
        for bad in ["", ".hidden", "-x", "a/b", "a:b", "ü", &"x".repeat(129)] {
            assert!(matches!(validate_tag(bad), Err(Error::InvalidTag { .. })), "{bad:?}");
        }
    }

    #[test]
    fn builders() {
        let r = parse("app").with_tag("v2").unwrap().with_digest(DIGEST.parse().unwrap());
        assert_eq!(r.to_string(), format!("docker.io/library/app:v2@{DIGEST}"));
        assert!(parse("app").with_tag("bad tag").is_err());
        let built = Reference::new("index.docker.io", "redis".parse().unwrap(), Some("7"), None).unwrap();
        assert_eq!(built, parse("redis:7"));
        assert!(Reference::new("bad host", "redis".parse().unwrap(), None, None).is_err());
    }
}
