//! Listings: the catalog, tags and referrers, paged.

use super::*;

impl Api {
    pub(super) async fn tags(&self, urls: &Urls, name: &RepositoryName, query: Option<&str>) -> ApiResult {
        let query = Query::parse(query);
        let (n, last) = (query.page_size()?, query.get("last"));
        let n = match (n, self.options.max_tags) {
            (Some(n), Some(max)) => Some(n.min(max)),
            (n, max) => n.or(max),
        };
        let repository = self.repository(name);
        // One more than asked tells whether a next page exists.
        let mut tags = repository.tags(n.map(|n| n.saturating_add(1)), last).await?;
        if tags.is_empty() && last.is_none() && !repository.exists().await? {
            return Err(ApiError::new(ErrorCode::NameUnknown, format!("repository {name} is not known")));
        }
        let more = n.is_some_and(|n| tags.len() > n);
        if let Some(n) = n {
            tags.truncate(n);
        }
        let mut response = json_response(StatusCode::OK, &serde_json::json!({ "name": name.as_str(), "tags": tags }));
        if more && let (Some(n), Some(last)) = (n, tags.last()) {
            let next = format!("/v2/{name}/tags/list?n={n}&last={}", encode_query(last));
            response.headers_mut().insert(header::LINK, header_value(&format!("<{}>; rel=\"next\"", urls.url(&next)))?);
        }
        Ok(response)
    }

    pub(super) async fn catalog(&self, urls: &Urls, query: Option<&str>) -> ApiResult {
        let query = Query::parse(query);
        let n = query.page_size()?.unwrap_or(self.options.max_catalog_entries).min(self.options.max_catalog_entries);
        let last = match query.get("last") {
            Some(last) => {
                Some(last.parse::<RepositoryName>().map_err(|e| ApiError::new(ErrorCode::NameInvalid, e.to_string()))?)
            }
            None => None,
        };
        let mut names = self.registry.catalog(Some(n.saturating_add(1)), last.as_ref()).await?;
        let more = names.len() > n;
        names.truncate(n);
        let names: Vec<&str> = names.iter().map(RepositoryName::as_str).collect();
        let mut response = json_response(StatusCode::OK, &serde_json::json!({ "repositories": names }));
        if more && let Some(last) = names.last() {
            let next = format!("/v2/_catalog?n={n}&last={}", encode_query(last));
            response.headers_mut().insert(header::LINK, header_value(&format!("<{}>; rel=\"next\"", urls.url(&next)))?);
        }
        Ok(response)
    }

    pub(super) async fn referrers(&self, name: &RepositoryName, digest: &str, query: Option<&str>) -> ApiResult {
        let digest = parse_digest(digest)?;
        let query = Query::parse(query);
        let artifact_type = query.get("artifactType");
        let descriptors = self.repository(name).referrers(&digest, artifact_type).await?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_IMAGE_INDEX,
            "manifests": descriptors,
        });
        let mut response = json_response(StatusCode::OK, &index);
        let out = response.headers_mut();
        out.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type::OCI_IMAGE_INDEX));
        if artifact_type.is_some() {
            out.insert(OCI_FILTERS_APPLIED, HeaderValue::from_static("artifactType"));
        }
        Ok(response)
    }
}
