//! Which endpoint a request path names.
//!
//! Repository names contain slashes, so the path is read from its end: the last segments
//! say the endpoint (`…/blobs/<digest>`, `…/manifests/<reference>`, `…/blobs/uploads/<id>`,
//! `…/tags/list`, `…/referrers/<digest>`), and what comes before is the name. Each segment
//! is percent-decoded on its own, so an encoded slash or dot cannot change how the path
//! splits: `%2F` or `%2e%2e` end up inside one segment, and fail the name's grammar.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use wharf_oci::RepositoryName;

use crate::error::{ApiError, ErrorCode};

/// An endpoint of the distribution API, with what its path says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/` (end-1).
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/blobs/<digest>` (end-2, end-10); the digest is checked by the handler.
    Blob {
        /// The repository.
        name: RepositoryName,
        /// The digest as written.
        digest: String,
    },
    /// `/v2/<name>/blobs/uploads/` (end-4, end-11).
    Uploads {
        /// The repository.
        name: RepositoryName,
    },
    /// `/v2/<name>/blobs/uploads/<id>` (end-5, end-6, end-13, end-14).
    Upload {
        /// The repository.
        name: RepositoryName,
        /// The upload's id.
        id: String,
    },
    /// `/v2/<name>/manifests/<reference>` (end-3, end-7, end-9).
    Manifest {
        /// The repository.
        name: RepositoryName,
        /// The tag or digest as written.
        reference: String,
    },
    /// `/v2/<name>/tags/list` (end-8).
    Tags {
        /// The repository.
        name: RepositoryName,
    },
    /// `/v2/<name>/referrers/<digest>` (end-12).
    Referrers {
        /// The repository.
        name: RepositoryName,
        /// The subject's digest as written.
        digest: String,
    },
}

/// What a path segment cannot hold as it is.
const SEGMENT: &AsciiSet = &CONTROLS.add(b' ').add(b'/').add(b'%').add(b'?').add(b'#').add(b'"').add(b'<').add(b'>');

impl Route {
    /// The path of the endpoint, below any prefix; [`Route::parse`] reads it back as the
    /// same route.
    pub fn path(&self) -> String {
        let segment = |text: &str| utf8_percent_encode(text, SEGMENT).to_string();
        match self {
            Route::Base => "/v2/".to_owned(),
            Route::Catalog => "/v2/_catalog".to_owned(),
            Route::Blob { name, digest } => format!("/v2/{name}/blobs/{}", segment(digest)),
            Route::Uploads { name } => format!("/v2/{name}/blobs/uploads/"),
            Route::Upload { name, id } => format!("/v2/{name}/blobs/uploads/{}", segment(id)),
            Route::Manifest { name, reference } => format!("/v2/{name}/manifests/{}", segment(reference)),
            Route::Tags { name } => format!("/v2/{name}/tags/list"),
            Route::Referrers { name, digest } => format!("/v2/{name}/referrers/{}", segment(digest)),
        }
    }

    /// The endpoint's name, as metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Blob { .. } => "blob",
            Route::Uploads { .. } => "uploads",
            Route::Upload { .. } => "upload",
            Route::Manifest { .. } => "manifest",
            Route::Tags { .. } => "tags",
            Route::Referrers { .. } => "referrers",
        }
    }

    /// The repository and the tag, digest or upload the path names, where it names them.
    pub fn subject(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Route::Base | Route::Catalog => (None, None),
            Route::Uploads { name } | Route::Tags { name } => (Some(name.as_str()), None),
            Route::Blob { name, digest } | Route::Referrers { name, digest } => (Some(name.as_str()), Some(digest)),
            Route::Upload { name, id } => (Some(name.as_str()), Some(id)),
            Route::Manifest { name, reference } => (Some(name.as_str()), Some(reference)),
        }
    }

    /// Reads a request path (as sent, percent-encoded), below any configured prefix.
    ///
    /// # Errors
    /// `NAME_INVALID` for a repository name that breaks the grammar, `NOT_FOUND` for a path
    /// that is no endpoint.
    pub fn parse(path: &str) -> Result<Route, ApiError> {
        let unknown = || ApiError::new(ErrorCode::NotFound, format!("no endpoint at {path}"));
        let rest = path.strip_prefix("/v2").ok_or_else(unknown)?;
        if rest.is_empty() || rest == "/" {
            return Ok(Route::Base);
        }
        let rest = rest.strip_prefix('/').ok_or_else(unknown)?;
        if rest == "_catalog" {
            return Ok(Route::Catalog);
        }
        let segments: Vec<Cow<'_, str>> =
            rest.split('/').map(|s| percent_decode_str(s).decode_utf8_lossy()).collect::<Vec<_>>();
        let count = segments.len();
        let tail = |n: usize| segments.get(count.wrapping_sub(n)).map(|s| s.as_ref());
        let name_of = |end: usize| -> Result<RepositoryName, ApiError> {
            if end == 0 {
                return Err(unknown());
            }
            if let Some(segment) = segments[..end].iter().find(|s| s.contains('/')) {
                return Err(ApiError::new(
                    ErrorCode::NameInvalid,
                    format!("repository name component {segment:?} holds an encoded slash"),
                ));
            }
            let name = segments[..end].join("/");
            name.parse::<RepositoryName>().map_err(|e| ApiError::new(ErrorCode::NameInvalid, e.to_string()))
        };
        // A trailing slash leaves an empty last segment: `…/blobs/uploads/`.
        match (tail(3), tail(2), tail(1)) {
            (_, Some("blobs"), Some("uploads")) => Ok(Route::Uploads { name: name_of(count - 2)? }),
            (Some("blobs"), Some("uploads"), Some("")) => Ok(Route::Uploads { name: name_of(count - 3)? }),
            (Some("blobs"), Some("uploads"), Some(id)) => {
                Ok(Route::Upload { name: name_of(count - 3)?, id: id.to_owned() })
            }
            (_, Some("tags"), Some("list")) => Ok(Route::Tags { name: name_of(count - 2)? }),
            (_, Some("blobs"), Some(digest)) if !digest.is_empty() => {
                Ok(Route::Blob { name: name_of(count - 2)?, digest: digest.to_owned() })
            }
            (_, Some("manifests"), Some(reference)) if !reference.is_empty() => {
                Ok(Route::Manifest { name: name_of(count - 2)?, reference: reference.to_owned() })
            }
            (_, Some("referrers"), Some(digest)) if !digest.is_empty() => {
                Ok(Route::Referrers { name: name_of(count - 2)?, digest: digest.to_owned() })
            }
            _ => Err(unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> RepositoryName {
        text.parse().unwrap()
    }

    #[test]
    fn endpoints() {
        assert_eq!(Route::parse("/v2/").unwrap(), Route::Base);
        assert_eq!(Route::parse("/v2").unwrap(), Route::Base);
        assert_eq!(Route::parse("/v2/_catalog").unwrap(), Route::Catalog);
        assert_eq!(
            Route::parse("/v2/a/b/c/blobs/sha256:00").unwrap(),
            Route::Blob { name: name("a/b/c"), digest: "sha256:00".into() }
        );
        assert_eq!(Route::parse("/v2/a/blobs/uploads/").unwrap(), Route::Uploads { name: name("a") });
        assert_eq!(Route::parse("/v2/a/blobs/uploads").unwrap(), Route::Uploads { name: name("a") });
        assert_eq!(
            Route::parse("/v2/a/blobs/uploads/x-1").unwrap(),
            Route::Upload { name: name("a"), id: "x-1".into() }
        );
        assert_eq!(
            Route::parse("/v2/blobs/manifests/latest").unwrap(),
            Route::Manifest { name: name("blobs"), reference: "latest".into() }
        );
        assert_eq!(Route::parse("/v2/x/tags/list").unwrap(), Route::Tags { name: name("x") });
        assert_eq!(
            Route::parse("/v2/x/referrers/sha256%3A00").unwrap(),
            Route::Referrers { name: name("x"), digest: "sha256:00".into() }
        );
        // A repository named like an endpoint's segment.
        assert_eq!(
            Route::parse("/v2/tags/list/manifests/v1").unwrap(),
            Route::Manifest { name: name("tags/list"), reference: "v1".into() }
        );
    }

    #[test]
    fn traversal_and_bad_names() {
        for path in [
            "/v2/../blobs/sha256:00",
            "/v2/a/../b/manifests/latest",
            "/v2/a/%2e%2e/manifests/latest",
            "/v2/a%2Fb/manifests/latest",
            "/v2/A/manifests/latest",
            "/v2//manifests/latest",
            "/v2/a//b/tags/list",
        ] {
            let e = Route::parse(path).unwrap_err();
            assert_eq!(e.code, ErrorCode::NameInvalid, "{path}: {e:?}");
        }
        for path in ["/v1/", "/v2x", "/v2/a", "/v2/a/manifests/", "/v2/manifests/x", "/v2/a/unknown/x"] {
            assert!(Route::parse(path).is_err(), "{path}");
        }
    }
}
