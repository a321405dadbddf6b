//! Media types of registry content: OCI's and Docker's.

/// OCI image manifest.
pub const OCI_IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (a list of manifests, usually one per platform).
pub const OCI_IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image configuration.
pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, an uncompressed tar archive.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, a gzip-compressed tar archive.
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, a zstd-compressed tar archive.
pub const OCI_LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable layer, uncompressed (deprecated by the image spec, still seen).
pub const OCI_LAYER_NONDISTRIBUTABLE_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable layer, gzip-compressed.
pub const OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI non-distributable layer, zstd-compressed.
pub const OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// The empty descriptor's media type: the blob `{}`, used by artifacts without a config.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The digest of the two bytes `{}` that the empty descriptor points to.
pub const OCI_EMPTY_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// Docker image manifest, schema version 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (the multi-platform index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, a gzip-compressed tar archive.
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign layer, fetched from its `urls` rather than the registry.
pub const DOCKER_FOREIGN_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker plugin configuration.
pub const DOCKER_PLUGIN_CONFIG: &str = "application/vnd.docker.plugin.v1+json";
/// Docker schema 1 manifest (unsupported: refused with a message saying so).
pub const DOCKER_SCHEMA1_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 signed manifest (unsupported).
pub const DOCKER_SCHEMA1_SIGNED_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The manifest media types this crate parses, in the order a server prefers to offer them.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] =
    [OCI_IMAGE_MANIFEST, OCI_IMAGE_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST];

/// Whether `media_type` is one of the manifest kinds this crate parses.
pub fn is_manifest(media_type: &str) -> bool {
    MANIFEST_MEDIA_TYPES.contains(&media_type)
}

/// Whether `media_type` is a Docker schema 1 manifest type.
pub fn is_schema1(media_type: &str) -> bool {
    media_type == DOCKER_SCHEMA1_MANIFEST || media_type == DOCKER_SCHEMA1_SIGNED_MANIFEST
}

/// Whether `media_type` has the shape RFC 6838 gives media types (`type/subtype`, restricted
/// names of at most 127 characters each), which is what the OCI image spec asks of descriptors.
pub fn is_well_formed(media_type: &str) -> bool {
    fn is_restricted_name(name: &str) -> bool {
        let bytes = name.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 127
            && bytes[0].is_ascii_alphanumeric()
            && bytes[1..].iter().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(b))
    }
    match media_type.split_once('/') {
        Some((kind, subtype)) => is_restricted_name(kind) && is_restricted_name(subtype),
        None => false,
    }
}

/// The bare media type of a `Content-Type` value: parameters (`; charset=…`) dropped, spaces
/// trimmed.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed() {
        for ok in [OCI_IMAGE_MANIFEST, DOCKER_LAYER_TAR_GZIP, "application/x.y+z", "a/b"] {
            assert!(is_well_formed(ok), "{ok}");
        }
        for bad in ["", "application", "/json", "application/", "a/b/c", "a /b", "-a/b", "ä/b"] {
            assert!(!is_well_formed(bad), "{bad}");
        }
        assert!(!is_well_formed(&format!("a/{}", "b".repeat(128))));
    }

    #[test]
    fn essence_drops_parameters() {
        assert_eq!(essence(" application/json ; charset=utf-8"), "application/json");
        assert_eq!(essence(OCI_IMAGE_INDEX), OCI_IMAGE_INDEX);
        assert_eq!(essence(""), "");
    }

    #[test]
    fn empty_digest_matches_its_content() {
        assert_eq!(crate::Digest::sha256(b"{}").as_str(), OCI_EMPTY_DIGEST);
    }
}
