//! Platforms as people write them (`linux/arm64/v8`, `windows(10.0.17763)/amd64`), and
//! which entries of an index they choose.

use wharf_oci::Platform;

use crate::error::{Error, Result};

/// A platform as `os[(os.version)]/architecture[/variant]` names it: `linux/arm64/v8`,
/// `windows(10.0.17763)/amd64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// `linux`, `windows`, …
    pub os: String,
    /// The OS version, when it matters (Windows images): `10.0.17763` chooses
    /// `10.0.17763` and any `10.0.17763.<revision>`.
    pub os_version: Option<String>,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v7`, `v8`, … when it matters.
    pub variant: Option<String>,
}

/// Whether `text` may be one part of a platform: not empty, and none of the characters
/// that separate parts.
fn is_part(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl std::str::FromStr for PlatformSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<PlatformSpec> {
        let bad = |reason: &str| Error::Address { address: text.chars().take(80).collect(), reason: reason.into() };
        let shape = "a platform is os[(os.version)]/architecture[/variant]";
        let mut parts = text.split('/');
        let (Some(os), Some(architecture)) = (parts.next(), parts.next()) else { return Err(bad(shape)) };
        let variant = parts.next();
        if parts.next().is_some() {
            return Err(bad(shape));
        }
        let (os, os_version) = match os.split_once('(') {
            Some((os, version)) => {
                let version = version.strip_suffix(')').ok_or_else(|| bad("the OS version has no closing ')'"))?;
                if !is_part(version) {
                    return Err(bad(
                        "the OS version is empty or holds characters other than letters, digits, '.', '_' and '-'",
                    ));
                }
                (os, Some(version.to_owned()))
            }
            None => (os, None),
        };
        for (name, part) in [("OS", Some(os)), ("architecture", Some(architecture)), ("variant", variant)] {
            if let Some(part) = part
                && !is_part(part)
            {
                return Err(bad(&format!(
                    "the {name} is empty or holds characters other than letters, digits, '.', '_' and '-'"
                )));
            }
        }
        Ok(PlatformSpec {
            os: os.to_owned(),
            os_version,
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        })
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.os)?;
        if let Some(version) = &self.os_version {
            write!(f, "({version})")?;
        }
        write!(f, "/{}", self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl PlatformSpec {
    /// The platform this program was built for, in Go's names as images use them.
    pub fn host() -> PlatformSpec {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        PlatformSpec {
            os: std::env::consts::OS.to_owned(),
            os_version: None,
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// Whether an index entry's platform is this one: the same OS and architecture, and
    /// the variant and OS version when they are asked for (an OS version asked for as
    /// `10.0.17763` is met by `10.0.17763` and `10.0.17763.<anything>`).
    pub fn matches(&self, platform: &Platform) -> bool {
        let version_matches = |wanted: &str| {
            platform.os_version().as_deref().is_some_and(|actual| {
                actual == wanted || actual.strip_prefix(wanted).is_some_and(|rest| rest.starts_with('.'))
            })
        };
        platform.os().to_string() == self.os
            && platform.architecture().to_string() == self.architecture
            && self.variant.as_deref().is_none_or(|variant| platform.variant().as_deref() == Some(variant))
            && self.os_version.as_deref().is_none_or(version_matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The platform of an index entry, read as an index is read.
    fn platform(json: &str) -> Platform {
        let entry = format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"{}","platform":{json}}}"#,
            wharf_oci::Digest::sha256(b"")
        );
        serde_json::from_str::<wharf_oci::Descriptor>(&entry).unwrap().platform.unwrap()
    }

    #[test]
    fn reads_and_matches() {
        let spec: PlatformSpec = "linux/arm64/v8".parse().unwrap();
        assert_eq!(
            (spec.os.as_str(), spec.architecture.as_str(), spec.variant.as_deref(), spec.os_version.as_deref()),
            ("linux", "arm64", Some("v8"), None)
        );
        assert_eq!("linux/amd64".parse::<PlatformSpec>().unwrap().variant, None);
        let arm = platform(r#"{"os":"linux","architecture":"arm64","variant":"v8"}"#);
        assert!("linux/arm64".parse::<PlatformSpec>().unwrap().matches(&arm));
        assert!("linux/arm64/v8".parse::<PlatformSpec>().unwrap().matches(&arm));
        assert!(!"linux/arm64/v9".parse::<PlatformSpec>().unwrap().matches(&arm));
        assert!(!"linux/amd64".parse::<PlatformSpec>().unwrap().matches(&arm));
    }

    #[test]
    fn os_versions() {
        let spec: PlatformSpec = "windows(10.0.17763)/amd64".parse().unwrap();
        assert_eq!((spec.os.as_str(), spec.os_version.as_deref()), ("windows", Some("10.0.17763")));
        let ltsc2019 = platform(r#"{"os":"windows","architecture":"amd64","os.version":"10.0.17763.6659"}"#);
        let ltsc2022 = platform(r#"{"os":"windows","architecture":"amd64","os.version":"10.0.20348.2966"}"#);
        let unversioned = platform(r#"{"os":"windows","architecture":"amd64"}"#);
        assert!(spec.matches(&ltsc2019));
        assert!(!spec.matches(&ltsc2022));
        assert!(!spec.matches(&unversioned));
        assert!(!"windows(10.0.1776)/amd64".parse::<PlatformSpec>().unwrap().matches(&ltsc2019));
        assert!("windows/amd64".parse::<PlatformSpec>().unwrap().matches(&ltsc2022));
    }

    #[test]
    fn names_what_is_wrong() {
        for (text, says) in [
            ("linux", "os[(os.version)]/architecture"),
            ("linux/arm/v7/x", "os[(os.version)]/architecture"),
            ("linux/", "the architecture is empty"),
            ("/amd64", "the OS is empty"),
            ("linux/arm/", "the variant is empty"),
            ("linux/am d64", "the architecture is empty or holds"),
            ("windows(10.0/amd64", "no closing ')'"),
            ("windows()/amd64", "the OS version is empty"),
            ("windows(1)x/amd64", "no closing ')'"),
        ] {
            let error = text.parse::<PlatformSpec>().unwrap_err().to_string();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }

    proptest! {
        /// A platform prints as it was read.
        #[test]
        fn round_trips(
            os in "[a-z0-9]{1,8}",
            version in proptest::option::of("[0-9]{1,3}(\\.[0-9]{1,5}){0,3}"),
            architecture in "[a-z0-9_]{1,8}",
            variant in proptest::option::of("v[0-9]"),
        ) {
            let spec = PlatformSpec { os, os_version: version, architecture, variant };
            let text = spec.to_string();
            prop_assert_eq!(text.parse::<PlatformSpec>().unwrap(), spec);
        }

        /// Any text is a platform that prints back to itself, or an error; never a panic.
        #[test]
        fn any_text(text in "\\PC{0,40}") {
            if let Ok(spec) = text.parse::<PlatformSpec>() {
                prop_assert_eq!(spec.to_string(), text);
            }
        }
    }
}
