//! One repository on one registry: its manifests, blobs, tags and referrers.

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LINK};
use reqwest::{Method, Response, StatusCode};
use wharf_oci::{Descriptor, Digest, Manifest, Reference, media_type};

use crate::auth::Scope;
use crate::client::{Call, Client};
use crate::error::{Error, Result};

/// Every manifest media type the client reads, for `Accept`.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// The header registries put a content digest in.
pub(crate) const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// The largest page of tags or referrers the client reads in one answer.
const MAX_LISTING_BYTES: u64 = 16 << 20;

/// A repository on a registry, reached through a [`Client`].
#[derive(Debug, Clone)]
pub struct Repository {
    pub(crate) client: Client,
    pub(crate) host: String,
    pub(crate) name: String,
}

impl Client {
    /// The repository `name` on `host` (`host[:port]`, as in a reference).
    pub fn repository(&self, host: &str, name: &str) -> Repository {
        Repository { client: self.clone(), host: host.to_owned(), name: name.to_owned() }
    }

    /// The repository `reference` names (its tag or digest is not used).
    pub fn repository_of(&self, reference: &Reference) -> Repository {
        self.repository(reference.registry(), reference.repository())
    }

    /// Every repository name on `host`, following the catalog's `Link` pages.
    ///
    /// # Errors
    /// [`Error::Status`] when the registry has no catalog or refuses it.
    pub async fn catalog(&self, host: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let mut names = Vec::new();
        let mut url = self.url(host, "_catalog");
        loop {
            let call = Call::new(Method::GET, host, url, vec![Scope::catalog()]);
            let response = self.send(&call, |r| r).await?;
            let response = Client::expect(&call, response, &[StatusCode::OK]).await?;
            let next = next_link(&call.url, response.headers());
            let body = read_capped(response, MAX_LISTING_BYTES, &call.url).await?;
            let page: Page = serde_json::from_slice(&body)
                .map_err(|e| Error::Protocol { what: call.url.clone(), reason: format!("not a catalog: {e}") })?;
            names.extend(page.repositories.unwrap_or_default());
            match next {
                Some(next) => url = next,
                None => return Ok(names),
            }
        }
    }
}

/// The tag the referrers tag schema files `subject`'s referrers under.
pub(crate) fn fallback_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm(), subject.hex())
}

/// Where a manifest is: by tag or by digest.
pub(crate) fn manifest_path(name: &str, reference: &str) -> String {
    format!("{name}/manifests/{reference}")
}

impl Repository {
    /// The registry host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn call(&self, method: Method, path: &str, scopes: Vec<Scope>) -> Call<'_> {
        Call::new(method, &self.host, self.client.url(&self.host, path), scopes)
    }

    pub(crate) fn pull_scope(&self) -> Vec<Scope> {
        vec![Scope::pull(&self.name)]
    }

    pub(crate) fn push_scope(&self) -> Vec<Scope> {
        vec![Scope::push(&self.name)]
    }

    /// The manifest `reference` (a tag or a digest) names, checked against the digest it
    /// was asked by and against the registry's `Docker-Content-Digest`, and no larger than
    /// the client's cap.
    ///
    /// # Errors
    /// [`Error::Status`] with `MANIFEST_UNKNOWN` when there is none; [`Error::TooLarge`],
    /// [`Error::DigestMismatch`]; [`Error::Protocol`] when the bytes are not a manifest.
    pub async fn manifest(&self, reference: &str) -> Result<Manifest> {
        let call = self.call(Method::GET, &manifest_path(&self.name, reference), self.pull_scope());
        let response = self.client.send(&call, |r| r.header(ACCEPT, MANIFEST_ACCEPT)).await?;
        let response = Client::expect(&call, response, &[StatusCode::OK]).await?;
        let content_type = header_str(response.headers(), CONTENT_TYPE.as_str()).map(str::to_owned);
        let announced = header_str(response.headers(), DOCKER_CONTENT_DIGEST).and_then(|d| d.parse::<Digest>().ok());
        let bytes = read_capped(response, self.client.inner.max_manifest_bytes, &call.url).await?;
        let what = || format!("manifest {}/{}:{reference}", self.host, self.name);
        let asked = reference.parse::<Digest>().ok();
        for expected in asked.iter().chain(announced.iter()) {
            let actual = Digest::compute(expected.algorithm(), &bytes);
            if &actual != expected {
                return Err(Error::DigestMismatch {
                    what: what(),
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        Manifest::parse(bytes, content_type.as_deref())
            .map_err(|e| Error::Protocol { what: what(), reason: e.to_string() })
    }

    /// The descriptor of the manifest `reference` names (from a HEAD: its digest, size and
    /// media type), or `None` when the registry has no such manifest.
    ///
    /// # Errors
    /// [`Error::Protocol`] when the answer lacks the digest or size; others as for
    /// [`Repository::manifest`].
    pub async fn manifest_descriptor(&self, reference: &str) -> Result<Option<Descriptor>> {
        let call = self.call(Method::HEAD, &manifest_path(&self.name, reference), self.pull_scope());
        let response = self.client.send(&call, |r| r.header(ACCEPT, MANIFEST_ACCEPT)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = Client::expect(&call, response, &[StatusCode::OK]).await?;
        let headers = response.headers();
        let missing =
            |name: &str| Error::Protocol { what: call.url.clone(), reason: format!("no valid {name} header") };
        let digest = match reference.parse::<Digest>() {
            Ok(digest) => digest,
            Err(_) => header_str(headers, DOCKER_CONTENT_DIGEST)
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| missing("Docker-Content-Digest"))?,
        };
        let size = header_str(headers, CONTENT_LENGTH.as_str())
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| missing("Content-Length"))?;
        let media_type = header_str(headers, CONTENT_TYPE.as_str())
            .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned())
            .unwrap_or_else(|| media_type::OCI_IMAGE_MANIFEST.to_owned());
        Ok(Some(Descriptor::new(media_type, digest, size)))
    }

    /// The size of blob `digest`, or `None` when the repository does not have it.
    ///
    /// # Errors
    /// [`Error::Status`] for anything but 200 and 404.
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let call = self.call(Method::HEAD, &format!("{}/blobs/{digest}", self.name), self.pull_scope());
        let response = self.client.send(&call, |r| r).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = Client::expect(&call, response, &[StatusCode::OK]).await?;
        Ok(Some(header_str(response.headers(), CONTENT_LENGTH.as_str()).and_then(|s| s.parse().ok()).ok_or_else(
            || Error::Protocol { what: call.url.clone(), reason: "no valid Content-Length header".into() },
        )?))
    }

    /// A small blob (an image config) read whole, checked against its digest.
    ///
    /// # Errors
    /// [`Error::TooLarge`] past `limit` bytes; [`Error::DigestMismatch`]; others as for
    /// [`Repository::pull_blob`].
    pub async fn blob_bytes(&self, digest: &Digest, limit: u64) -> Result<Bytes> {
        let mut pull = self.pull_blob(digest, None);
        let mut bytes = BytesMut::new();
        while let Some(chunk) = pull.next().await {
            let chunk = chunk?;
            if u64::try_from(bytes.len() + chunk.len()).unwrap_or(u64::MAX) > limit {
                return Err(Error::TooLarge { what: format!("blob {}/{}@{digest}", self.host, self.name), limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.freeze())
    }

    /// The tags of the repository, following `Link` pages.
    ///
    /// # Errors
    /// [`Error::Status`] with `NAME_UNKNOWN` when there is no such repository.
    pub async fn tags(&self) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut url = self.client.url(&self.host, &format!("{}/tags/list", self.name));
        loop {
            let call = Call::new(Method::GET, &self.host, url, self.pull_scope());
            let response = self.client.send(&call, |r| r).await?;
            let response = Client::expect(&call, response, &[StatusCode::OK]).await?;
            let next = next_link(&call.url, response.headers());
            let body = read_capped(response, MAX_LISTING_BYTES, &call.url).await?;
            let page: Page = serde_json::from_slice(&body)
                .map_err(|e| Error::Protocol { what: call.url.clone(), reason: format!("not a tag list: {e}") })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
    }

    /// The manifests that refer to `subject` (signatures, SBOMs), from the referrers API,
    /// following its pages; filtered to `artifact_type` when given. A registry without
    /// the API is read through the tag schema: the index tagged `<alg>-<hex>`.
    ///
    /// # Errors
    /// [`Error::Status`] for refusals other than a missing API; [`Error::Protocol`] when
    /// an answer is not an index.
    pub async fn referrers(&self, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>> {
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let mut found = Vec::new();
        let mut url = self.client.url(&self.host, &format!("{}/referrers/{subject}", self.name));
        if let Some(artifact_type) = artifact_type {
            url = reqwest::Url::parse_with_params(&url, [("artifactType", artifact_type)])
                .map(String::from)
                .unwrap_or(url);
        }
        loop {
            let call = Call::new(Method::GET, &self.host, url, self.pull_scope());
            let response = self.client.send(&call, |r| r.header(ACCEPT, media_type::OCI_IMAGE_INDEX)).await?;
            if response.status() == StatusCode::NOT_FOUND && found.is_empty() {
                let tagged = self.fallback_referrers(subject).await?;
                return Ok(tagged
                    .into_iter()
                    .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
                    .collect());
            }
            let response = Client::expect(&call, response, &[StatusCode::OK]).await?;
            let next = next_link(&call.url, response.headers());
            let body = read_capped(response, MAX_LISTING_BYTES, &call.url).await?;
            let page: Index = serde_json::from_slice(&body).map_err(|e| Error::Protocol {
                what: call.url.clone(),
                reason: format!("not a referrers index: {e}"),
            })?;
            // A registry that does not filter (no OCI-Filters-Applied) is filtered here.
            found.extend(
                page.manifests
                    .into_iter()
                    .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t))),
            );
            match next {
                Some(next) => url = next,
                None => return Ok(found),
            }
        }
    }

    /// The referrers index under the tag schema's `<alg>-<hex>` tag, or nothing.
    pub(crate) async fn fallback_referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        match self.manifest(&fallback_tag(subject)).await {
            Ok(index) => Ok(index.manifests().to_vec()),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the manifest `reference` names: by digest the manifest, by tag only the tag
    /// (where the registry allows it). A manifest with a `subject` is also taken out of the
    /// tag schema's referrers index of its subject, where that index lists it (a registry
    /// without the referrers API).
    ///
    /// # Errors
    /// [`Error::Status`]: 404 when there is none, 405 when the registry does not delete.
    pub async fn delete_manifest(&self, reference: &str) -> Result<()> {
        // The subject is read before the manifest goes. One that cannot be read (a media
        // type this client does not know) is deleted all the same.
        let referrer = match reference.parse::<Digest>() {
            Ok(digest) => match self.manifest(reference).await {
                Ok(manifest) => manifest.subject().map(|subject| (subject.digest.clone(), digest)),
                Err(e) => {
                    tracing::debug!(reference, error = %e, "manifest unread before its deletion");
                    None
                }
            },
            Err(_) => None,
        };
        let call = self.call(Method::DELETE, &manifest_path(&self.name, reference), vec![Scope::delete(&self.name)]);
        let response = self.client.send(&call, |r| r).await?;
        Client::expect(&call, response, &[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT]).await?;
        if let Some((subject, digest)) = referrer {
            self.remove_fallback_referrer(&subject, &digest).await?;
        }
        Ok(())
    }

    /// Deletes blob `digest` from the repository.
    ///
    /// # Errors
    /// [`Error::Status`]: 404 when there is none, 405 when the registry does not delete.
    pub async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        let call = self.call(Method::DELETE, &format!("{}/blobs/{digest}", self.name), vec![Scope::delete(&self.name)]);
        let response = self.client.send(&call, |r| r).await?;
        Client::expect(&call, response, &[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT]).await?;
        Ok(())
    }
}

pub(crate) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Reads a whole answer that should be small, refusing it past `limit` bytes without
/// reading further.
pub(crate) async fn read_capped(response: Response, limit: u64, what: &str) -> Result<Bytes> {
    let too_large = || Error::TooLarge { what: what.to_owned(), limit };
    if response.content_length().is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut body = response.bytes_stream();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|source| Error::Transport { method: "GET".into(), url: what.to_owned(), source })?;
        if u64::try_from(bytes.len().saturating_add(chunk.len())).unwrap_or(u64::MAX) > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// The next page a `Link` header names, resolved against the page's address.
fn next_link(current: &str, headers: &HeaderMap) -> Option<String> {
    crate::headers::next_link(current, headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok()))
}
