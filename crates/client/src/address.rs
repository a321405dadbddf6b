//! Where an image is, as skopeo writes it: `docker://host[:port]/repo:tag|@digest` for a
//! registry, `oci:DIR[:tag|@digest]` for an OCI image layout directory.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use wharf_oci::{Digest, Reference, Tag};

use crate::error::{Error, Result};

/// An image in a registry or in an OCI image layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageAddress {
    /// `docker://…`: an image in a registry.
    Registry(Reference),
    /// `oci:DIR[:…]`: an image in an OCI image layout.
    Layout {
        /// The layout's directory.
        dir: PathBuf,
        /// The image in it: a tag (`org.opencontainers.image.ref.name`) or a digest; `None`
        /// for the layout's only image.
        image: Option<LayoutImage>,
    },
}

/// Which image of an OCI layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutImage {
    /// The image whose `org.opencontainers.image.ref.name` annotation is this tag.
    Tag(Tag),
    /// The image with this digest.
    Digest(Digest),
}

impl FromStr for ImageAddress {
    type Err = Error;

    /// # Errors
    /// [`Error::Address`] naming the transport expected or what is wrong with the reference.
    fn from_str(text: &str) -> Result<ImageAddress> {
        let invalid = |reason: String| Error::Address { address: text.chars().take(200).collect(), reason };
        if let Some(rest) = text.strip_prefix("docker://") {
            let reference: Reference = rest.parse().map_err(|e: wharf_oci::Error| invalid(e.to_string()))?;
            return Ok(ImageAddress::Registry(reference));
        }
        if let Some(rest) = text.strip_prefix("oci:") {
            // As skopeo does: the directory ends at the first colon.
            let (dir, image) = match rest.split_once(':') {
                Some((dir, image)) => (dir, Some(image)),
                None => (rest, None),
            };
            if dir.is_empty() {
                return Err(invalid("the layout's directory is empty".into()));
            }
            let image = match image {
                None => None,
                Some(image)
                    if image.starts_with("sha256:") || image.starts_with("sha512:") || image.starts_with('@') =>
                {
                    let digest: Digest =
                        image.trim_start_matches('@').parse().map_err(|e: wharf_oci::Error| invalid(e.to_string()))?;
                    Some(LayoutImage::Digest(digest))
                }
                Some(tag) => Some(LayoutImage::Tag(tag.parse().map_err(|e: wharf_oci::Error| invalid(e.to_string()))?)),
            };
            return Ok(ImageAddress::Layout { dir: PathBuf::from(dir), image });
        }
        Err(invalid("expected docker://host/repository:tag or oci:DIR:tag".into()))
    }
}

impl fmt::Display for ImageAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageAddress::Registry(reference) => write!(f, "docker://{reference}"),
            ImageAddress::Layout { dir, image } => {
                write!(f, "oci:{}", dir.display())?;
                match image {
                    None => Ok(()),
                    Some(LayoutImage::Tag(tag)) => write!(f, ":{tag}"),
                    Some(LayoutImage::Digest(digest)) => write!(f, ":{digest}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_both_transports() {
        let registry: ImageAddress = "docker://127.0.0.1:5000/team/app:v1".parse().unwrap();
        let ImageAddress::Registry(reference) = &registry else { panic!("{registry:?}") };
        assert_eq!(
            (reference.registry(), reference.repository(), reference.tag()),
            ("127.0.0.1:5000", "team/app", Some("v1"))
        );

        let digest = Digest::sha256(b"x");
        let pinned: ImageAddress = format!("docker://localhost/a@{digest}").parse().unwrap();
        let ImageAddress::Registry(reference) = &pinned else { panic!() };
        assert_eq!(reference.digest(), Some(&digest));

        assert_eq!(
            "oci:/srv/export:v1".parse::<ImageAddress>().unwrap(),
            ImageAddress::Layout { dir: "/srv/export".into(), image: Some(LayoutImage::Tag("v1".parse().unwrap())) }
        );
        assert_eq!(
            format!("oci:out:{digest}").parse::<ImageAddress>().unwrap(),
            ImageAddress::Layout { dir: "out".into(), image: Some(LayoutImage::Digest(digest)) }
        );
        assert_eq!("oci:out".parse::<ImageAddress>().unwrap(), ImageAddress::Layout { dir: "out".into(), image: None });
    }

    #[test]
    fn names_what_is_wrong() {
        for (text, says) in [
            ("127.0.0.1:5000/app:v1", "expected docker://"),
            ("docker://", "docker://"),
            ("docker://Host/UPPER:v1", "UPPER"),
            ("oci::v1", "directory is empty"),
            ("oci:dir:bad tag", "bad tag"),
            ("oci:dir:sha256:abc", "sha256:abc"),
        ] {
            let e = text.parse::<ImageAddress>().unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    proptest! {
        /// A registry address or a layout address prints as it was read.
        #[test]
        fn round_trips(
            host in "(localhost|127\\.0\\.0\\.1:[1-9][0-9]{0,3}|registry\\.example\\.com)",
            name in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
            tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}",
            dir in "[A-Za-z0-9_./-]{1,20}",
        ) {
            for text in [format!("docker://{host}/{name}:{tag}"), format!("oci:{dir}:{tag}"), format!("oci:{dir}")] {
                let address: ImageAddress = text.parse().unwrap();
                prop_assert_eq!(address.to_string(), text);
            }
        }

        /// Any text is an address or an error, never a panic.
        #[test]
        fn any_text(text in "\\PC{0,80}") {
            let _ = text.parse::<ImageAddress>();
        }
    }
}
