//! Where everything lives: CNCF Distribution's storage layout, byte for byte, so a root that
//! Distribution wrote opens here and the other way round.
//!
//! ```text
//! /docker/registry/v2/
//! ├── blobs/<alg>/<first two hex>/<hex>/data                      the content
//! └── repositories/<name>/
//!     ├── _layers/<alg>/<hex>/link                                 blob is in the repository
//!     ├── _manifests/
//!     │   ├── revisions/<alg>/<hex>/link                           manifest is in the repository
//!     │   └── tags/<tag>/
//!     │       ├── current/link                                     what the tag points to
//!     │       └── index/<alg>/<hex>/link                           what it ever pointed to
//!     └── _uploads/<id>/
//!         ├── data                                                 the upload's bytes
//!         ├── startedat                                            RFC 3339 start time
//!         ├── lease                                                who writes it now (Wharf's)
//!         └── hashstates/<alg>/<offset>                            saved hash state at offset
//! ```
//!
//! Entries Distribution does not have live under names starting with `_` that it ignores
//! (`_referrers/`, `_wharf/`), never by changing the entries above.

use wharf_oci::{Digest, RepositoryName};

/// The root of everything a registry stores.
pub const ROOT: &str = "/docker/registry/v2";

/// The folder of all blob data.
pub fn blobs() -> String {
    format!("{ROOT}/blobs")
}

/// A blob's folder: `blobs/<alg>/<xx>/<hex>`.
pub fn blob_dir(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{ROOT}/blobs/{}/{}/{hex}", digest.algorithm(), &hex[..2])
}

/// A blob's content.
pub fn blob_data(digest: &Digest) -> String {
    format!("{}/data", blob_dir(digest))
}

/// The blob whose data file `path` is (`blobs/<alg>/<xx>/<hex>/data`), if it is one.
pub fn blob_of_data_path(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix(ROOT)?.strip_prefix("/blobs/")?.strip_suffix("/data")?;
    let mut parts = rest.split('/');
    let (Some(algorithm), Some(_prefix), Some(hex), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let digest: Digest = format!("{algorithm}:{hex}").parse().ok()?;
    (blob_data(&digest) == path).then_some(digest)
}

/// The folder of all repositories.
pub fn repositories() -> String {
    format!("{ROOT}/repositories")
}

/// A repository's folder.
pub fn repository(name: &RepositoryName) -> String {
    format!("{ROOT}/repositories/{name}")
}

/// The link that puts a blob in a repository.
pub fn layer_link(name: &RepositoryName, digest: &Digest) -> String {
    format!("{}/_layers/{}/{}/link", repository(name), digest.algorithm(), digest.hex())
}

/// The folder of one layer link.
pub fn layer_dir(name: &RepositoryName, digest: &Digest) -> String {
    format!("{}/_layers/{}/{}", repository(name), digest.algorithm(), digest.hex())
}

/// The folder of one manifest revision link.
pub fn revision_dir(name: &RepositoryName, digest: &Digest) -> String {
    format!("{}/_manifests/revisions/{}/{}", repository(name), digest.algorithm(), digest.hex())
}

/// The folder of a repository's layer links.
pub fn layers(name: &RepositoryName) -> String {
    format!("{}/_layers", repository(name))
}

/// The link that puts a manifest in a repository.
pub fn revision_link(name: &RepositoryName, digest: &Digest) -> String {
    format!("{}/_manifests/revisions/{}/{}/link", repository(name), digest.algorithm(), digest.hex())
}

/// The folder of a repository's manifest revisions.
pub fn revisions(name: &RepositoryName) -> String {
    format!("{}/_manifests/revisions", repository(name))
}

/// The folder of a repository's tags.
pub fn tags(name: &RepositoryName) -> String {
    format!("{}/_manifests/tags", repository(name))
}

/// A tag's folder.
pub fn tag_dir(name: &RepositoryName, tag: &str) -> String {
    format!("{}/{tag}", tags(name))
}

/// What a tag points to now.
pub fn tag_current(name: &RepositoryName, tag: &str) -> String {
    format!("{}/current/link", tag_dir(name, tag))
}

/// A manifest a tag pointed to at some time.
pub fn tag_index_entry(name: &RepositoryName, tag: &str, digest: &Digest) -> String {
    format!("{}/index/{}/{}/link", tag_dir(name, tag), digest.algorithm(), digest.hex())
}

/// The folder of a repository's uploads.
pub fn uploads(name: &RepositoryName) -> String {
    format!("{}/_uploads", repository(name))
}

/// An upload's folder.
pub fn upload_dir(name: &RepositoryName, id: &str) -> String {
    format!("{}/{id}", uploads(name))
}

/// An upload's bytes.
pub fn upload_data(name: &RepositoryName, id: &str) -> String {
    format!("{}/data", upload_dir(name, id))
}

/// When an upload started.
pub fn upload_started_at(name: &RepositoryName, id: &str) -> String {
    format!("{}/startedat", upload_dir(name, id))
}

/// The lease that keeps one writer per upload (not in Distribution's layout, which ignores it).
pub fn upload_lease(name: &RepositoryName, id: &str) -> String {
    format!("{}/lease", upload_dir(name, id))
}

/// The hash state of an upload after `offset` bytes.
pub fn upload_hash_state(name: &RepositoryName, id: &str, algorithm: wharf_oci::Algorithm, offset: u64) -> String {
    format!("{}/hashstates/{algorithm}/{offset}", upload_dir(name, id))
}

/// The folder of an upload's hash states for one algorithm.
pub fn upload_hash_states(name: &RepositoryName, id: &str, algorithm: wharf_oci::Algorithm) -> String {
    format!("{}/hashstates/{algorithm}", upload_dir(name, id))
}

/// The folder of the referrers of `subject` in a repository (not in Distribution's layout:
/// it ignores folders starting with `_`).
pub fn referrers(name: &RepositoryName, subject: &Digest) -> String {
    format!("{}/_referrers/{}/{}", repository(name), subject.algorithm(), subject.hex())
}

/// One referrer's entry: its descriptor as JSON, ready for a referrers listing.
pub fn referrer_entry(name: &RepositoryName, subject: &Digest, referrer: &Digest) -> String {
    format!("{}/{}/{}/descriptor", referrers(name, subject), referrer.algorithm(), referrer.hex())
}

/// The folder of one referrer's entry.
pub fn referrer_dir(name: &RepositoryName, subject: &Digest, referrer: &Digest) -> String {
    format!("{}/{}/{}", referrers(name, subject), referrer.algorithm(), referrer.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_distribution() {
        let name: RepositoryName = "library/ubuntu".parse().unwrap();
        let digest: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
        let hex = digest.hex();
        assert_eq!(blob_data(&digest), format!("/docker/registry/v2/blobs/sha256/e3/{hex}/data"));
        assert_eq!(
            layer_link(&name, &digest),
            format!("/docker/registry/v2/repositories/library/ubuntu/_layers/sha256/{hex}/link")
        );
        assert_eq!(
            revision_link(&name, &digest),
            format!("/docker/registry/v2/repositories/library/ubuntu/_manifests/revisions/sha256/{hex}/link")
        );
        assert_eq!(
            tag_current(&name, "24.04"),
            "/docker/registry/v2/repositories/library/ubuntu/_manifests/tags/24.04/current/link"
        );
        assert_eq!(
            tag_index_entry(&name, "24.04", &digest),
            format!("/docker/registry/v2/repositories/library/ubuntu/_manifests/tags/24.04/index/sha256/{hex}/link")
        );
        assert_eq!(
            upload_hash_state(&name, "u1", wharf_oci::Algorithm::Sha256, 42),
            "/docker/registry/v2/repositories/library/ubuntu/_uploads/u1/hashstates/sha256/42"
        );
        for path in [blob_data(&digest), layer_link(&name, &digest), tag_current(&name, "x"), upload_data(&name, "u1")]
        {
            wharf_storage::validate_path("test", &path).unwrap();
        }
    }

    #[test]
    fn blob_data_paths_read_back() {
        let digest: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
        assert_eq!(blob_of_data_path(&blob_data(&digest)), Some(digest.clone()));
        let hex = digest.hex();
        for other in [
            format!("/docker/registry/v2/blobs/sha256/ff/{hex}/data"),
            format!("/docker/registry/v2/blobs/sha256/e3/{hex}/data/x"),
            format!("/docker/registry/v2/blobs/sha256/e3/{hex}/other"),
            format!("/docker/registry/v2/blobs/sha256/{hex}/data"),
            "/docker/registry/v2/blobs/sha256/e3/e3b0/data".to_owned(),
            format!("/elsewhere/blobs/sha256/e3/{hex}/data"),
        ] {
            assert_eq!(blob_of_data_path(&other), None, "{other}");
        }
    }
}
