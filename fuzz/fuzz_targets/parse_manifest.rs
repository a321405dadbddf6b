//! Manifest parsing: an accepted manifest keeps its exact bytes and digest, is valid JSON,
//! and every descriptor it exposes has a supported digest and a well-formed media type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_oci::{Digest, Manifest, media_type};

const CONTENT_TYPES: [Option<&str>; 5] = [
    None,
    Some(media_type::OCI_IMAGE_MANIFEST),
    Some(media_type::OCI_IMAGE_INDEX),
    Some(media_type::DOCKER_MANIFEST),
    Some("application/json"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, raw)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    let Ok(manifest) = Manifest::parse(raw.to_vec(), content_type) else {
        return;
    };
    assert_eq!(manifest.raw(), raw);
    assert_eq!(manifest.digest(), &Digest::sha256(raw));
    assert!(serde_json::from_slice::<serde_json::Value>(raw).is_ok(), "accepted bytes are JSON");
    assert!(media_type::is_manifest(manifest.kind().media_type()));
    if let Some(content_type) = content_type.filter(|t| media_type::is_manifest(t)) {
        assert_eq!(manifest.kind().media_type(), content_type, "the declared kind is kept");
    }
    assert_eq!(manifest.kind().is_index(), manifest.config().is_none());
    for descriptor in manifest.references() {
        assert!(media_type::is_well_formed(&descriptor.media_type));
        assert_eq!(descriptor.digest.as_str().parse::<Digest>().as_ref(), Ok(&descriptor.digest));
        assert!(descriptor.size <= i64::MAX as u64);
    }
    // A second parse of the same bytes gives the same reading.
    let again = Manifest::parse(raw.to_vec(), content_type).expect("parsing is deterministic");
    assert_eq!(again.references().count(), manifest.references().count());
});
