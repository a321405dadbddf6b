//! Manifests: GET and HEAD by tag or digest, PUT with `?tag=`, DELETE.

use super::*;

impl Api {
    pub(super) async fn get_manifest(
        &self,
        name: &RepositoryName,
        reference: &str,
        head: bool,
        headers: &HeaderMap,
    ) -> ApiResult {
        // A name that can be no tag names no manifest: unknown, as the conformance suite
        // expects of a GET or HEAD (a push with it is refused as TAG_INVALID).
        let reference = parse_reference(reference).map_err(|e| match e.code {
            ErrorCode::TagInvalid => ApiError::new(
                ErrorCode::ManifestUnknown,
                format!("manifest {reference:?} is not in repository {name}: it is neither a tag nor a digest"),
            ),
            _ => e,
        })?;
        let repository = self.repository(name);
        let stored = repository.get_manifest(&reference).await?;
        if !accepts(headers, &stored.media_type) {
            return Err(ApiError::new(
                ErrorCode::ManifestUnknown,
                format!(
                    "manifest {reference} is a {}, which the request's Accept header does not list",
                    stored.media_type
                ),
            ));
        }
        if !head {
            repository.record_pull(&stored.digest);
        }
        let length = stored.content.len();
        let mut response = if head { empty(StatusCode::OK) } else { Response::new(Body::from(stored.content)) };
        let out = response.headers_mut();
        out.insert(header::CONTENT_TYPE, header_value(&stored.media_type)?);
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        out.insert(CONTENT_DIGEST, header_value(stored.digest.as_str())?);
        out.insert(header::ETAG, header_value(&format!("\"{}\"", stored.digest))?);
        Ok(response)
    }

    pub(super) async fn put_manifest(
        &self,
        urls: &Urls,
        name: &RepositoryName,
        reference: &str,
        request: Request,
    ) -> ApiResult {
        let reference = parse_reference(reference)?;
        // The spec's tag parameters (`?tag=a&tag=b`): tags the manifest gets once stored,
        // each checked before anything is.
        let tags: Vec<String> = Query::parse(request.uri().query()).all("tag").map(str::to_owned).collect();
        for tag in &tags {
            wharf_oci::validate_tag(tag).map_err(|e| ApiError::new(ErrorCode::TagInvalid, e.to_string()))?;
        }
        let limit = self.registry.options().max_manifest_bytes;
        let too_large = |size: String| {
            ApiError::new(ErrorCode::ManifestTooLarge, format!("manifest of {size} bytes is over the limit of {limit}"))
        };
        if let Some(length) = content_length(request.headers())?
            && length > limit
        {
            return Err(too_large(length.to_string()));
        }
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // Read no further than the limit: a larger body is refused without being read whole.
        let read_limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let content = axum::body::to_bytes(request.into_body(), read_limit)
            .await
            .map_err(|_| too_large(format!("more than {limit}")))?;
        let subject = Manifest::parse(content.clone(), content_type.as_deref())
            .ok()
            .and_then(|manifest| manifest.subject().map(|s| s.digest.clone()));
        self.count(Count::Received(content.len() as u64));
        let repository = self.repository(name);
        #[cfg(feature = "policy")]
        if let Some(policy) = self.options.policy.clone() {
            return self
                .put_manifest_under_policy(urls, name, &reference, tags, content, content_type, subject, &policy)
                .await;
        }
        let digest = repository.put_manifest(&reference, content, content_type.as_deref()).await?;
        for tag in &tags {
            repository.tag(tag, &digest).await?;
        }
        self.manifest_created(urls, name, &digest, &tags, subject)
    }

    /// The answer to a manifest stored under `tags`.
    fn manifest_created(
        &self,
        urls: &Urls,
        name: &RepositoryName,
        digest: &Digest,
        tags: &[String],
        subject: Option<Digest>,
    ) -> ApiResult {
        self.count(Count::ManifestPushed);
        let mut response = empty(StatusCode::CREATED);
        let out = response.headers_mut();
        for tag in tags {
            out.append(OCI_TAG, header_value(tag)?);
        }
        out.insert(header::LOCATION, header_value(&urls.url(&format!("/v2/{name}/manifests/{digest}")))?);
        out.insert(CONTENT_DIGEST, header_value(digest.as_str())?);
        if let Some(subject) = subject {
            out.insert(OCI_SUBJECT, header_value(subject.as_str())?);
        }
        Ok(response)
    }

    /// A manifest PUT under a tag policy: every tag it would get is checked against the
    /// naming rules and immutable tags before anything is stored, and each tag is then moved
    /// only while the policy still allows it (two pushes of one immutable tag at once, from
    /// any two processes: one wins, the other is refused).
    #[cfg(feature = "policy")]
    #[allow(clippy::too_many_arguments, reason = "the parts of one request, already read")]
    async fn put_manifest_under_policy(
        &self,
        urls: &Urls,
        name: &RepositoryName,
        reference: &ManifestReference,
        mut tags: Vec<String>,
        content: bytes::Bytes,
        content_type: Option<String>,
        subject: Option<Digest>,
        policy: &wharf_policy::Policy,
    ) -> ApiResult {
        let repository = self.repository(name);
        let digest = match reference {
            ManifestReference::Digest(digest) => digest.clone(),
            ManifestReference::Tag(tag) => {
                tags.insert(0, tag.to_string());
                Digest::sha256(&content)
            }
        };
        let repository_name = name.to_string();
        for tag in &tags {
            let current = match repository
                .resolve(&ManifestReference::Tag(
                    tag.parse().map_err(|e: wharf_oci::Error| ApiError::new(ErrorCode::TagInvalid, e.to_string()))?,
                ))
                .await
            {
                Ok(current) => Some(current),
                Err(wharf_registry::Error::ManifestUnknown { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            policy
                .check_tag_push(&repository_name, tag, current.as_ref(), &digest)
                .map_err(|refusal| ApiError::new(ErrorCode::Denied, refusal.to_string()))?;
        }
        let digest =
            repository.put_manifest(&ManifestReference::Digest(digest), content, content_type.as_deref()).await?;
        for tag in &tags {
            let guard = |current: Option<&Digest>| {
                policy.check_tag_push(&repository_name, tag, current, &digest).map_err(|refusal| refusal.to_string())
            };
            repository.tag_guarded(tag, &digest, &guard).await?;
        }
        // The reference tag is answered like the `?tag=` ones only when it was asked as one.
        let asked: Vec<String> = match reference {
            ManifestReference::Tag(_) => tags.split_off(1),
            ManifestReference::Digest(_) => tags,
        };
        self.manifest_created(urls, name, &digest, &asked, subject)
    }

    pub(super) async fn delete_manifest(&self, name: &RepositoryName, reference: &str) -> ApiResult {
        self.check_delete_enabled()?;
        let repository = self.repository(name);
        #[cfg(feature = "policy")]
        if let Some(policy) = &self.options.policy {
            let repository_name = name.to_string();
            let refused = |tag: &str| {
                policy
                    .check_tag_delete(&repository_name, tag)
                    .map_err(|refusal| ApiError::new(ErrorCode::Denied, refusal.to_string()))
            };
            match parse_reference(reference)? {
                ManifestReference::Tag(tag) => refused(tag.as_str())?,
                // A manifest goes with every tag that points at it.
                ManifestReference::Digest(digest) => {
                    for link in repository.tag_links().await?.iter().filter(|link| link.digest == digest) {
                        refused(&link.tag)?;
                    }
                }
            }
        }
        match parse_reference(reference)? {
            ManifestReference::Tag(tag) => repository.untag(&tag).await?,
            ManifestReference::Digest(digest) => repository.delete_manifest(&digest).await?,
        }
        Ok(empty(StatusCode::ACCEPTED))
    }
}
