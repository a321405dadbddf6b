//! Helpers shared by the registry's test files.

use std::sync::Arc;

use wharf_oci::{Digest, media_type};
use wharf_storage::StorageDriver;

/// An OCI image index over child manifests, given as (digest, size).
#[allow(dead_code, reason = "not every test file pushes indexes")]
pub(crate) fn image_index(children: &[(&Digest, usize)]) -> String {
    let entries: Vec<String> = children
        .iter()
        .map(|(d, s)| {
            format!(
                r#"{{"mediaType":"{}","digest":"{d}","size":{s},"platform":{{"architecture":"amd64","os":"linux"}}}}"#,
                media_type::OCI_IMAGE_MANIFEST
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{}]}}"#,
        media_type::OCI_IMAGE_INDEX,
        entries.join(",")
    )
}

/// An OCI image manifest over a config and layers, given as (digest, size).
#[allow(dead_code, reason = "not every test file pushes images")]
pub(crate) fn image_manifest(config: &Digest, config_size: usize, layers: &[(&Digest, usize)]) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| format!(r#"{{"mediaType":"{}","digest":"{d}","size":{s}}}"#, media_type::OCI_LAYER_TAR_GZIP))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":{config_size}}},"layers":[{}]}}"#,
        media_type::OCI_IMAGE_MANIFEST,
        media_type::OCI_IMAGE_CONFIG,
        layers.join(",")
    )
}

/// The S3 test server from `scripts/test`, under a root of the test's own; `None` (after saying
/// so) without one, a failure under `WHARF_REQUIRE_PEERS=1`.
#[allow(dead_code, reason = "not every test file wraps the driver")]
pub(crate) async fn s3_driver(test: &str) -> Option<Arc<dyn StorageDriver>> {
    Some(Arc::new(s3(test).await?))
}

/// [`s3_driver`], as the driver's own type (to wrap it in a `FaultInjector`).
pub(crate) async fn s3(test: &str) -> Option<wharf_storage::S3Driver> {
    Some(wharf_testing::peers::s3_driver(wharf_testing::peers::s3_config(test)?).await)
}
